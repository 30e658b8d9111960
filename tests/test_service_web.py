"""The checking service's pages and rules, in-process (Django's test client, SQLite):
accounts from a roster, slowed failed logins, uploads and their refusals, deadlines,
quotas, training on request and after the deadline, what a student may see, the
gradebook CSV and rejudging. The end-to-end test drives the same through a browser."""
import csv
import hashlib
import io
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest

from tests import service_django

DATA = Path(service_django.setup())

from django.conf import settings  # noqa: E402
from django.contrib.auth.models import User  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.test import Client, override_settings  # noqa: E402
from django.utils import timezone  # noqa: E402

from staff.service import config as course  # noqa: E402
from staff.service import grading, queue, rules  # noqa: E402
from staff.service.models import FailedLogin, Profile, Run, Submission  # noqa: E402

KIT = Path(__file__).resolve().parent.parent
SOLUTION = (KIT / 'solution.py').read_bytes()
PASSWORD = 'a-long-new-password-7'


@pytest.fixture
def config():
    Run.objects.all().delete()
    Submission.objects.all().delete()
    FailedLogin.objects.all().delete()
    User.objects.all().delete()
    return course.load(None, DATA)


def student(name, staff=False):
    user = User.objects.create_user(name, f"{name}@example.org", PASSWORD, is_staff=staff)
    Profile.objects.create(user=user, name=name.title(), must_change_password=False)
    return user


def client(user=None):
    browser = Client(HTTP_HOST='127.0.0.1')
    if user:
        browser.force_login(user)
    return browser


def test_roster_import_writes_initial_passwords_changed_at_first_login(config, tmp_path):
    roster = tmp_path / 'roster.csv'
    roster.write_text('student_id,name,email\ns001,Ann One,ann@example.org\n'
                      's002,Bo Two,bo@example.org\n')
    call_command('import_roster', str(roster), str(tmp_path / 'passwords.csv'),
                 stdout=io.StringIO())
    call_command('import_roster', str(roster), str(tmp_path / 'again.csv'), stdout=io.StringIO())
    rows = list(csv.DictReader(io.StringIO((tmp_path / 'passwords.csv').read_text())))
    assert [row['student_id'] for row in rows] == ['s001', 's002']
    assert list(csv.DictReader(io.StringIO((tmp_path / 'again.csv').read_text()))) == [], \
        'a second import leaves existing accounts alone'
    ann = User.objects.get(username='s001')
    assert ann.password.startswith('pbkdf2_') and rows[0]['password'] not in ann.password
    assert ann.profile.name == 'Ann One' and not ann.is_staff
    browser = client()
    response = browser.post('/login/', {'username': 's001', 'password': rows[0]['password']})
    assert response.url == '/'
    assert browser.get('/').url == '/password/', 'the initial password is changed first'
    browser.post('/password/', {'old_password': rows[0]['password'], 'new_password1': PASSWORD,
                                'new_password2': PASSWORD})
    assert browser.get('/').status_code == 200


def test_failed_logins_are_slowed_down(config):
    student('s001')
    browser = client()
    for _ in range(5):
        assert 'Wrong student id or password' in browser.post(
            '/login/', {'username': 's001', 'password': 'guess'}).content.decode()
    response = browser.post('/login/', {'username': 's001', 'password': PASSWORD})
    assert 'Too many failed logins for s001' in response.content.decode()
    FailedLogin.objects.update(at=timezone.now() - timedelta(minutes=16))
    assert browser.post('/login/', {'username': 's001', 'password': PASSWORD}).url == '/'


@pytest.mark.parametrize('data, reason', [
    (b'\xff\xfe\x00', 'not UTF-8 text'),
    (b'x = 1\n' + b'#' * (1 << 20), 'may have at most 1048576'),
    (b'def f(:\n', 'solution.py line 1: '),
    (None, 'choose your solution.py first'),
])
def test_bad_uploads_are_refused_with_one_line(config, data, reason):
    browser = client(student('s001'))
    page = browser.post('/', {'solution': io.BytesIO(data)} if data is not None else {},
                        follow=True).content.decode()
    assert 'Not accepted: ' in page and reason in page
    assert not Submission.objects.exists()


def test_an_upload_is_stored_and_queued_before_the_response(config):
    browser = client(student('s001'))
    response = browser.post('/', {'solution': io.BytesIO(SOLUTION)})
    submission = Submission.objects.get()
    assert response.url == f'/submissions/{submission.id}/'
    stored = DATA / submission.path
    assert stored.read_bytes() == SOLUTION
    assert bytes(submission.source) == SOLUTION, 'the bytes dispatchers read, on any machine'
    assert submission.sha256 == hashlib.sha256(SOLUTION).hexdigest()
    assert stored.parent.name == 's001' and not list(stored.parent.glob('.*.part'))
    ordinary, training = grading.split_sections(config)
    assert training == ['2.4', '3.7'] and '2.1.2' in ordinary
    assert [run.sections for run in submission.runs.all()] == [ordinary], 'training runs on request'
    page = browser.get(response.url).content.decode()
    assert 'Queued: 0 runs ahead' in page and 'runs on request' in page
    assert browser.get(f'/submissions/{submission.id}/solution.py').getvalue() == SOLUTION


def test_other_students_and_ta_pages_are_404(config):
    alice, bob, ta = student('alice'), student('bob'), student('ta', staff=True)
    client(alice).post('/', {'solution': io.BytesIO(SOLUTION)})
    submission = Submission.objects.get()
    for path in (f'/submissions/{submission.id}/', f'/submissions/{submission.id}/solution.py',
                 f'/submissions/{submission.id + 1}/', '/ta/', '/ta/gradebook.csv', '/ta/queue/',
                 '/ta/students/alice/'):
        assert client(bob).get(path).status_code == 404, path
    assert client(bob).post(f'/submissions/{submission.id}/training').status_code == 404
    assert client(ta).get(f'/submissions/{submission.id}/').status_code == 200
    assert client(ta).get('/ta/students/alice/').status_code == 200


def test_deadlines_extensions_and_the_hourly_quota(config):
    now = timezone.now()
    config = replace(config, soft_deadline=now - timedelta(hours=1),
                     hard_deadline=now + timedelta(hours=1), uploads_per_hour=2)
    alice = student('alice')
    assert rules.upload(config, alice, SOLUTION, now).late
    assert not rules.upload(config, alice, SOLUTION, now - timedelta(hours=2)).late
    rules.upload(config, alice, SOLUTION, now + timedelta(minutes=1))
    with pytest.raises(rules.Refused, match='at most 2 uploads an hour'):
        rules.upload(config, alice, SOLUTION, now + timedelta(minutes=2))
    with pytest.raises(rules.Refused, match='hard deadline .* has passed'):
        rules.upload(config, alice, SOLUTION, now + timedelta(hours=3))
    Profile.objects.filter(user=alice).update(extension_hours=5)
    assert not rules.upload(config, alice, SOLUTION, now + timedelta(hours=3)).late


def test_training_on_request_at_most_n_a_day(config):
    alice = student('alice')
    submission = rules.upload(config, alice, SOLUTION)
    page = client(alice).post(f'/submissions/{submission.id}/training',
                              follow=True).content.decode()
    assert 'The training sections are queued' in page
    page = client(alice).post(f'/submissions/{submission.id}/training',
                              follow=True).content.decode()
    assert 'Not queued: training sections may be asked for 1 time(s) a day' in page
    runs = list(submission.runs.order_by('priority', 'id'))
    assert [(run.sections, run.training) for run in runs] == [
        (grading.split_sections(config)[0], False), (['2.4'], True), (['3.7'], True)]
    assert runs[1].priority > runs[0].priority, 'ordinary sections go first'


def test_final_on_time_submission_gets_its_training_after_the_deadline(config):
    now = timezone.now()
    alice = student('alice')
    config = replace(config, soft_deadline=now)
    final = rules.upload(config, alice, SOLUTION, now - timedelta(hours=1))
    rules.upload(config, alice, SOLUTION, now - timedelta(hours=2))
    rules.upload(config, alice, SOLUTION, now + timedelta(minutes=1))  # late: not the final one
    rules.queue_final_training(config, now - timedelta(minutes=1))
    assert not Run.objects.filter(training=True).exists(), 'not before the deadline'
    rules.queue_final_training(config, now + timedelta(minutes=2))
    rules.queue_final_training(config, now + timedelta(minutes=3))
    training = Run.objects.filter(training=True)
    assert sorted(run.sections[0] for run in training) == ['2.4', '3.7']
    assert {run.submission_id for run in training} == {final.id}, 'once, on the final on-time one'


def test_gradebook_csv_and_rejudge(config):
    alice, ta = student('alice'), student('ta', staff=True)
    student('bob')
    old = rules.upload(config, alice, SOLUTION, timezone.now() - timedelta(minutes=5))
    new = rules.upload(config, alice, SOLUTION)
    for submission, verdict in ((old, 'passed'), (new, 'failed')):
        run = submission.runs.get()
        assert queue.claim('d', 30).id == run.id
        for number in run.sections:
            queue.record_section(run.id, 1, 'd', number, {
                'verdict': verdict if number == '2.1.2' else 'passed', 'message': '',
                'awarded': 0.0 if verdict == 'failed' and number == '2.1.2' else
                next(s.points for s in grading.sections(config) if s.number == number)})
        queue.finish(run.id, 1, 'd', {})
    ta_client = client(ta)
    rows = list(csv.reader(io.StringIO(ta_client.get('/ta/gradebook.csv').content.decode())))
    numbers = [section.number for section in grading.sections(config)]
    assert rows[0] == ['student', *numbers, 'total', 'verdicts', 'late', 'submitted_at']
    assert len(rows) == 2 and rows[1][0] == 'alice', 'bob has no submission'
    assert rows[1][numbers.index('2.1.2') + 1] == '0', 'the last on-time submission counts'
    assert rows[1][-3] == '2.1.2 failed;2.4 not run;3.7 not run' and rows[1][-2] == '0'
    with override_settings(COURSE=replace(settings.COURSE, gradebook='best')):
        best = list(csv.reader(io.StringIO(ta_client.get('/ta/gradebook.csv').content.decode())))
    assert best[1][numbers.index('2.1.2') + 1] == '1.5'
    ta_client.post('/ta/rejudge', {'section': '2.1.2'})
    rejudged = Run.objects.filter(state=Run.QUEUED)
    assert sorted(run.submission_id for run in rejudged) == [old.id, new.id]
    assert all(run.sections == ['2.1.2'] and run.priority == Run.REJUDGE for run in rejudged)
    ta_client.post('/ta/rejudge', {'submission': new.id})
    assert Run.objects.filter(state=Run.QUEUED, submission=new).count() == 2
    page = ta_client.get('/ta/queue/').content.decode()
    assert 'No dispatcher is running' in page and '<td id="queued">3</td>' in page


def test_the_readme_example_config_loads_and_bad_keys_are_named(tmp_path):
    readme = (KIT / 'README.md').read_text()
    example = next(block.split('```', 1)[0] for block in readme.split('```toml\n')[1:]
                   if block.startswith('[course]'))
    (tmp_path / 'course.toml').write_text(example)
    loaded = course.load(tmp_path / 'course.toml', tmp_path / 'data')
    assert loaded == replace(course.load(None, tmp_path / 'data'), path=tmp_path / 'course.toml')
    (tmp_path / 'course.toml').write_text(example.replace('# soft =', 'soft ='))
    assert course.load(tmp_path / 'course.toml', tmp_path / 'data').soft_deadline.hour == 23
    cluster = example.replace('engine = "local"', 'engine = "dask"')
    (tmp_path / 'course.toml').write_text(cluster.replace('# scheduler =', 'scheduler ='))
    assert course.load(tmp_path / 'course.toml', tmp_path / 'data').scheduler.startswith('tcp://')
    (tmp_path / 'course.toml').write_text(cluster)
    with pytest.raises(course.ConfigError, match="'dask' needs service.scheduler"):
        course.load(tmp_path / 'course.toml', tmp_path / 'data')
    (tmp_path / 'bad.toml').write_text('[limits]\ntimeout = 5\n')
    with pytest.raises(course.ConfigError, match='unknown key limits.timeout'):
        course.load(tmp_path / 'bad.toml', tmp_path / 'data')
    with pytest.raises(course.ConfigError, match='inside /usr, which submissions can read'):
        course.load(None, Path('/usr/local/nn-service'))
