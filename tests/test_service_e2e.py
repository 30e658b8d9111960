"""The checking service end to end: real web server and dispatcher processes
(./run.py serve web / dispatcher), a real SQLite database, Debian's chromium
driven by Playwright, as students and TAs meet it. Processes are killed on the
way (web server while queued, dispatcher and sandbox mid-run; on the Dask engine, with
a real scheduler and worker, the worker mid-run): every submission is graded exactly
once. Short limits and non-training sections keep it quick; the MNIST section through
the browser and Dask is a `training` test.

Screenshots go to a temporary directory; NN_SCREENSHOTS=docs refreshes the README's.
"""
import csv
import io
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip('django', reason='the checking service needs Django: ./install.sh')
playwright = pytest.importorskip('playwright.sync_api', reason='pip install playwright')

from tests.mutants import MUTANTS  # noqa: E402

KIT = Path(__file__).resolve().parent.parent
CHROMIUM = '/usr/bin/chromium'
BROWSER_ARGS = ['--no-sandbox', '--disable-gpu', '--disable-background-networking',
                '--disable-component-update', '--disable-sync', '--no-first-run']
SECTIONS = ['2.1.1', '2.1.2', '2.1.3']
TABLE = ('section,title,points,tests\n2.1.1,ReLU,0.5,relu\n2.1.2,Softmax,1.5,softmax\n'
         '2.1.3,Dense,1.5,dense\n')
SOFTMAX_BUG = next(edit for edit in MUTANTS if edit.what.startswith('diagonal-only Jacobian'))
PASSWORD = 'a-long-new-password-7'
pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason='apt-get install chromium')


def reference():
    return (KIT / 'solution.py').read_text()


def softmax_bug():
    return reference().replace(SOFTMAX_BUG.old, SOFTMAX_BUG.new) + '\n# alice-marker-5f3e\n'


def slow_solution():
    """Correct, but each section's import takes 3 s: long enough to kill something mid-run."""
    return 'import time\ntime.sleep(3)\n' + reference()


def hostile(data):
    """Looks for other students' stored files; its import error says what it found."""
    return f'''import os, re
found = []
if os.path.exists({str(data)!r}):
    found.append({str(data)!r})
stored = re.compile(r'\\d{{8}}T\\d{{6}}-[0-9a-f]{{8}}[.]py$')
for top, folders, files in os.walk('/'):
    folders[:] = [f for f in folders
                  if os.path.join(top, f) not in ('/proc', '/sys', '/dev', '/usr')]
    for name in files:
        path = os.path.join(top, name)
        if stored.search(name) or 'alice' in path:
            found.append(path)
raise RuntimeError('found: ' + ', '.join(found) if found else 'found nothing')
'''


class Service:
    """The data directory, the course config and the service's processes."""

    def __init__(self, root, table=TABLE, engine=''):
        self.root, self.data = root, root / 'data'
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        (root / 'table.csv').write_text(table)
        self.config = root / 'course.toml'
        self.config.write_text(f'[course]\npoints = "{root / "table.csv"}"\n'
                               '[limits]\ntime = 20\n'
                               '[quotas]\nuploads_per_hour = 50\n'
                               f'[service]\nslots = 2\nlease = 4\nheartbeat = 1\n{engine}')
        self.processes, self.logs = {}, root / 'logs'
        self.logs.mkdir()

    def command(self, *process):
        return [sys.executable, str(KIT / 'run.py'), 'serve', '--data', str(self.data),
                '--config', str(self.config), '--port', str(self.port), *process]

    def manage(self, *arguments):
        result = subprocess.run(self.command('manage', *arguments), capture_output=True, text=True,
                                timeout=120, check=False)
        assert result.returncode == 0, result.stderr
        return result.stdout

    def start(self, name):
        with open(self.logs / f"{name}.log", 'a') as log:
            self.processes[name] = subprocess.Popen(self.command(name), stdout=log, stderr=log,
                                                    stdin=subprocess.DEVNULL)
        if name == 'web':
            wait_for(lambda: port_open(self.port), 60, 'the web server to listen')
        else:
            wait_for(lambda: 'slots' in (self.logs / f"{name}.log").read_text(), 60,
                     'the dispatcher to start')

    def kill(self, name, how=signal.SIGKILL):
        process = self.processes.pop(name)
        process.send_signal(how)
        process.wait(timeout=15)
        return process

    def stop_all(self):
        for name in list(self.processes):
            self.kill(name, signal.SIGTERM)

    def runs(self, submission):
        with sqlite3.connect(self.data / 'service.sqlite3') as db:
            return db.execute('SELECT state, attempt, failures, result, priority FROM service_run '
                              'WHERE submission_id = ? ORDER BY id', (submission,)).fetchall()

    def leased(self, submission):
        return any(run[0] == 'leased' for run in self.runs(submission))


def free_port():
    with socket.socket() as probe:
        probe.bind(('127.0.0.1', 0))
        return probe.getsockname()[1]


def port_open(port):
    with socket.socket() as probe:
        return probe.connect_ex(('127.0.0.1', port)) == 0


def wait_for(condition, seconds, what):
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def graded_once(service, submission, sections=SECTIONS):
    """Every run of the submission done, and each section's result recorded by exactly one run."""
    import json
    runs = service.runs(submission)
    assert runs and all(run[0] == 'done' for run in runs)
    recorded = [number for run in runs for number in json.loads(run[3])['sections']]
    assert sorted(recorded) == sorted(sections), recorded
    return runs


@pytest.fixture(scope='module')
def service(tmp_path_factory):
    service = with_accounts(Service(tmp_path_factory.mktemp('service')))
    yield service
    service.stop_all()


def with_accounts(service):
    """The roster's students and a TA imported, their initial passwords in service.passwords."""
    root = service.root
    (root / 'roster.csv').write_text('student_id,name,email\nalice,Alice A,a@x\nbob,Bob B,b@x\n'
                                     'carol,Carol C,c@x\ndave,Dave D,d@x\neve,Eve E,e@x\n')
    (root / 'tas.csv').write_text('student_id,name,email\nta,Tom TA,t@x\n')
    assert '5 accounts created' in service.manage('import_roster', str(root / 'roster.csv'),
                                                  str(root / 'passwords.csv'))
    service.manage('import_roster', '--staff', str(root / 'tas.csv'),
                   str(root / 'ta-passwords.csv'))
    service.passwords = {row['student_id']: row['password']
                         for path in ('passwords.csv', 'ta-passwords.csv')
                         for row in csv.DictReader(io.StringIO((root / path).read_text()))}
    return service


@pytest.fixture(scope='module')
def browser():
    with playwright.sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=CHROMIUM, headless=True, args=BROWSER_ARGS)
        yield browser
        browser.close()


@pytest.fixture(scope='module')
def shots(tmp_path_factory):
    folder = Path(os.environ['NN_SCREENSHOTS']) if os.environ.get('NN_SCREENSHOTS') else (
        tmp_path_factory.mktemp('screenshots'))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def log_in(browser, service, user, first=True):
    """A page logged in as `user` (choosing a new password at the first login)."""
    page = browser.new_page(viewport={'width': 1100, 'height': 700})
    page.goto(service.url + '/')
    page.fill('input[name=username]', user)
    page.fill('input[name=password]', service.passwords[user] if first else PASSWORD)
    click(page, 'button[type=submit]')
    if first:
        assert page.url.endswith('/password/'), 'an initial password is changed first'
        page.fill('input[name=old_password]', service.passwords[user])
        page.fill('input[name=new_password1]', PASSWORD)
        page.fill('input[name=new_password2]', PASSWORD)
        click(page, 'button[type=submit]')
    assert page.url.rstrip('/') == service.url, page.url
    return page


def click(page, selector):
    """Clicks a button that submits a form and waits for the next page."""
    with page.expect_navigation():
        page.click(selector)


def upload(page, root, name, text):
    path = root / f"{name}.py"
    path.write_text(text)
    page.set_input_files('input[name=solution]', str(path))
    click(page, 'button:text-is("Upload")')
    match = re.search(r'/submissions/(\d+)/$', page.url)
    assert match, page.content()[:2000]
    return int(match.group(1))


def visit(page, url):
    """Opens url; a pending page's own refresh (every 2 s) may abort one try."""
    for _ in range(3):
        try:
            page.goto(url)
            return
        except playwright.Error:
            time.sleep(0.5)
    page.goto(url)


def wait_graded(page, seconds=120):
    page.wait_for_selector('#state.graded', timeout=seconds * 1000)


def section_row(page, number):
    return page.locator('table.report tr', has=page.locator(f'td:text-is("{number}")'))


def test_student_and_ta_flows(service, browser, shots):
    service.start('web')
    alice = log_in(browser, service, 'alice')
    bad = service.root / 'notes.py'
    bad.write_bytes(b'\xff\xfe not utf-8')
    alice.set_input_files('input[name=solution]', str(bad))
    click(alice, 'button:text-is("Upload")')
    assert 'Not accepted: the file is not UTF-8 text' in alice.inner_text('main')

    submission = upload(alice, service.root, 'softmax_bug', softmax_bug())
    assert 'Queued: 0 runs ahead' in alice.inner_text('#state')
    alice.screenshot(path=shots / 'service-queued.png')
    service.kill('web')  # the web server dies while the submission waits: nothing is lost
    service.start('web')
    visit(alice, f"{service.url}/submissions/{submission}/")
    assert 'Queued' in alice.inner_text('#state')

    service.start('dispatcher')
    wait_graded(alice)
    row = section_row(alice, '2.1.2')
    assert 'failed' in row.inner_text()
    expected = grade_cli(service.root / 'softmax_bug.py')
    assert expected['2.1.2'][0] == 'failed'
    assert expected['2.1.2'][1] in row.inner_text(), "the message of ./run.py grade"
    assert 'passed' in section_row(alice, '2.1.1').inner_text()
    assert 'Graded: 2 / 3.5 points' in alice.inner_text('#state')
    assert 'isolation:' in alice.inner_text('main')
    alice.screenshot(path=shots / 'service-graded.png', full_page=True)
    graded_once(service, submission)

    bob = log_in(browser, service, 'bob')
    for path in (f'/submissions/{submission}/', f'/submissions/{submission}/solution.py', '/ta/'):
        assert bob.goto(service.url + path).status == 404, path

    ta = log_in(browser, service, 'ta')
    ta.goto(service.url + '/ta/')
    assert 'alice' in ta.inner_text('table') and 'no submission' in ta.inner_text('table')
    ta.screenshot(path=shots / 'service-gradebook.png', full_page=True)
    with ta.expect_download() as download:
        ta.click('text=Download CSV')
    rows = list(csv.DictReader(io.StringIO(Path(download.value.path()).read_text())))
    assert list(rows[0]) == ['student', *SECTIONS, 'total', 'verdicts', 'late', 'submitted_at']
    assert rows == [{**rows[0], 'student': 'alice', '2.1.1': '0.5', '2.1.2': '0', '2.1.3': '1.5',
                     'total': '2', 'verdicts': '2.1.2 failed', 'late': '0'}]
    ta.goto(service.url + f'/submissions/{submission}/')
    click(ta, 'button:text-is("Rejudge this submission")')
    assert 'Rejudge queued: 1 run' in ta.inner_text('main')
    wait_graded(ta)
    runs = service.runs(submission)
    assert [run[0] for run in runs] == ['done', 'done'] and runs[1][4] > runs[0][4], \
        'the rejudge ran, behind new uploads'
    ta.goto(service.url + '/ta/queue/')
    assert 'yes' in ta.inner_text('main'), 'the dispatcher is alive'
    ta.screenshot(path=shots / 'service-queue.png', full_page=True)

    ta.goto(service.url + '/ta/similarity/')
    click(ta, 'button:text-is("Recompute")')
    assert re.search(r'A report is (requested|running \(since)', ta.inner_text('main')), \
        'the request is only recorded (a dispatcher idle at the time may have claimed it)'
    ta.wait_for_selector('#summary', timeout=120_000)  # the dispatcher computes it
    assert 'alice ~ [reference]' in ta.inner_text('table.pairs') and 'likely copy' in \
        ta.inner_text('table.pairs'), 'a Softmax bug in the reference is a copy of it'
    ta.screenshot(path=shots / 'service-similarity.png', full_page=True)
    ta.click('text=alice ~ [reference]')
    assert ta.locator('div.file').count() == 2 and ta.locator('mark').count() > 0
    ta.evaluate("window.scrollTo(0, document.querySelectorAll('mark')[2]"
                ".getBoundingClientRect().top + window.scrollY - 300)")  # to a matching region
    ta.screenshot(path=shots / 'service-similarity-pair.png')
    assert bob.goto(service.url + '/ta/similarity/').status == 404


def grade_cli(path):
    """{section: (verdict, message)} from ./run.py grade, the service's reference."""
    import json
    out = path.with_suffix('.json')
    subprocess.run([sys.executable, str(KIT / 'run.py'), 'grade', str(path), '--only',
                    ','.join(SECTIONS), '--json', str(out), '--time', '20'],
                   capture_output=True, check=True, timeout=300)
    return {section['section']: (section['verdict'], section['message'])
            for section in json.loads(out.read_text())['sections']}


def test_a_killed_dispatcher_and_a_killed_sandbox_lose_nothing(service, browser):
    carol = log_in(browser, service, 'carol')
    first = upload(carol, service.root, 'slow_carol', slow_solution())
    wait_for(lambda: service.leased(first), 60, 'the run to start')
    time.sleep(1)
    service.kill('dispatcher')
    service.start('dispatcher')  # the dead dispatcher's lease runs out, this one takes the run
    wait_graded(carol)
    runs = graded_once(service, first)
    assert runs[0][1] == 2 and runs[0][2] == 1, 'graded by the second attempt'
    assert 'Graded: 3.5 / 3.5' in carol.inner_text('#state')

    dave = log_in(browser, service, 'dave')
    second = upload(dave, service.root, 'slow_dave', slow_solution())

    def sandboxes():  # the local engine's: children of the dispatcher running a section
        return children(service.processes['dispatcher'].pid, '"probe": false')

    wait_for(sandboxes, 60, 'a sandbox to start')
    time.sleep(1)
    for sandbox in sandboxes():
        os.kill(sandbox, signal.SIGKILL)
    wait_graded(dave)
    runs = graded_once(service, second)
    assert runs[0][1] == 2 and runs[0][2] == 1, 'the killed sandbox made the next attempt'
    assert 'Graded: 3.5 / 3.5' in dave.inner_text('#state')


def children(parent, command=''):
    """The pids of the parent's child processes whose command line holds `command`."""
    found = []
    for stat in Path('/proc').glob('[0-9]*/stat'):
        try:
            ppid = int(stat.read_text().rsplit(')', 1)[1].split()[1])
            cmdline = (stat.parent / 'cmdline').read_bytes().replace(b'\0', b' ').decode()
        except (OSError, IndexError, ValueError):
            continue  # it ended meanwhile
        if ppid == parent and command in cmdline:
            found.append(int(stat.parent.name))
    return found


def test_a_hostile_upload_finds_no_other_submission(service, browser):
    eve = log_in(browser, service, 'eve')
    upload(eve, service.root, 'hostile', hostile(service.data))
    wait_graded(eve)
    row = section_row(eve, '2.1.1').inner_text()
    assert 'import failed' in row and 'found nothing' in row, row


def test_sigterm_stops_within_10_s_and_requeues(service, browser):
    page = log_in(browser, service, 'bob', first=False)
    submission = upload(page, service.root, 'slow_bob', slow_solution())
    wait_for(lambda: service.leased(submission), 60, 'the run to start')
    start = time.monotonic()
    process = service.kill('dispatcher', signal.SIGTERM)
    assert time.monotonic() - start < 10 and process.returncode == 0
    state, attempt, failures, _, _ = service.runs(submission)[0]
    assert (state, attempt, failures) == ('queued', 2, 0)
    service.start('dispatcher')
    wait_graded(page)
    graded_once(service, submission)


def test_serve_starts_everything_and_stops_on_sigterm(tmp_path):
    port = free_port()
    log = tmp_path / 'serve.log'
    with open(log, 'w') as output:
        serve = subprocess.Popen([sys.executable, str(KIT / 'run.py'), 'serve', '--data',
                                  str(tmp_path / 'data'), '--port', str(port)],
                                 stdout=output, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    wait_for(lambda: port_open(port) and 'slots' in log.read_text(), 90, 'the service to start')
    text = log.read_text()
    assert f"http://127.0.0.1:{port}/" in text
    password = (tmp_path / 'data' / 'instructor-password.txt').read_text().strip()
    assert "log in as 'instructor'" in text and password not in text
    processes = children(serve.pid, 'serve')
    assert len(processes) == 2, 'the web server and the dispatcher are processes of their own'
    start = time.monotonic()
    serve.send_signal(signal.SIGTERM)
    assert serve.wait(timeout=10) == 0 and time.monotonic() - start < 10
    assert not any(Path(f'/proc/{pid}').exists() for pid in processes)
    assert not port_open(port)


# ============================ On the Dask engine ============================

@pytest.fixture(scope='module')
def dask_service(tmp_path_factory):
    """The service with a real Dask scheduler and one worker of 2 slots (run by a nanny,
    which starts it again when it dies); its table has the MNIST section too."""
    from test_engines import start, stop
    address = f"tcp://127.0.0.1:{free_port()}"
    scheduler = start(['dask', 'scheduler', '--host', '127.0.0.1', '--port',
                       address.rsplit(':', 1)[1], '--no-dashboard'])
    nanny = start(['dask', 'worker', address, '--host', '127.0.0.1', '--nthreads', '2',
                   '--resources', 'slots=2', '--no-dashboard'])
    service = with_accounts(Service(tmp_path_factory.mktemp('dask-service'),
                                    TABLE + '2.4,MNIST,1.0,mnist\n',
                                    f'engine = "dask"\nscheduler = "{address}"\n'))
    service.nanny = nanny
    service.start('web')
    service.start('dispatcher')
    yield service
    service.stop_all()
    for process in (nanny, scheduler):
        stop(process)


def test_on_dask_a_killed_worker_loses_nothing(dask_service, browser):
    service = dask_service
    carol = log_in(browser, service, 'carol')
    submission = upload(carol, service.root, 'slow_carol', slow_solution())

    def sections():  # sandboxes on the Dask worker
        return [pid for worker in children(service.nanny.pid)
                for pid in children(worker, '"probe": false')]

    wait_for(sections, 60, 'a section to start on the Dask worker')
    assert not children(service.processes['dispatcher'].pid, '"probe": false')
    time.sleep(1)
    for worker in children(service.nanny.pid, 'spawn_main'):
        os.kill(worker, signal.SIGKILL)
    wait_graded(carol)
    runs = graded_once(service, submission)
    assert runs[0][1] == 2 and runs[0][2] == 1, 'the killed worker made the next attempt'
    assert 'Graded: 3.5 / 4.5' in carol.inner_text('#state'), 'MNIST runs when asked for'
    assert 'Run the training sections (2.4)' in carol.inner_text('main')
    ta = log_in(browser, service, 'ta')
    ta.goto(service.url + '/ta/queue/')
    assert "dask (tcp://127.0.0.1:" in ta.inner_text('main'), 'the engine on the queue page'
    ta.goto(service.url + f'/submissions/{submission}/')
    assert 'engine: dask' in ta.inner_text('main')


@pytest.mark.training
def test_on_dask_a_student_asks_for_the_mnist_section(dask_service, browser, shots):
    service = dask_service
    alice = log_in(browser, service, 'alice')
    submission = upload(alice, service.root, 'reference', reference())
    wait_graded(alice)
    click(alice, 'button:text-is("Run the training sections (2.4) on this submission")')
    assert 'Queued' in alice.inner_text('#state')
    wait_graded(alice, seconds=900)
    row = section_row(alice, '2.4').inner_text()
    assert 'passed' in row and re.search(r'test accuracy 0\.9\d+, trained in \d+ s', row), row
    assert 'Graded: 4.5 / 4.5' in alice.inner_text('#state')
    alice.screenshot(path=shots / 'service-training.png', full_page=True)
    graded_once(service, submission, [*SECTIONS, '2.4'])
