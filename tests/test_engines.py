"""Grading engines (staff/engines.py) as graders meet them: ./run.py grade
with --engine local and dask gives the same grades; a Dask worker killed
mid-section loses nothing and leaves no sandbox behind; an interrupted batch
resumes where it stopped.

Short limits and small submissions: the module runs in about a minute.
"""
import csv
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_grader import (
    ALL_NAMES,
    HOSTILE,
    QUICK_SECTIONS,
    REFERENCE,
    listening,
    write_corpus,
)

import common
from staff import engines, grader

RUN = [sys.executable, str(common.KIT_DIR / 'run.py'), 'grade']
# Sections the hostile corpus aims at (test_grader.py checks every verdict of it).
TARGETS = ('relu', 'softmax', 'dense', 'sgd', 'flatten')
SECTIONS = ','.join(s.number for s in QUICK_SECTIONS if set(TARGETS) & set(s.tests))
VARYING = ('seconds', 'output', 'worker', 'tries', 'engine')
SLOW_IMPORT = "\n\nimport time\ntime.sleep({seconds})\n"  # every section takes that long


def grade(*args, timeout=600):
    return subprocess.run([*RUN, *map(str, args)], capture_output=True, text=True,
                          cwd=common.KIT_DIR, timeout=timeout, check=False)


def json_rows(path):
    return [json.loads(line) for line in Path(path).read_text().splitlines()]


def comparable(row):
    """A JSON row without what differs from run to run (timing, output, workers)."""
    def same(text):  # either limit may run out first; each child has its own directory
        return re.sub(r"/nn-grade-\w+/", "/nn-grade-/",
                      re.sub(r"(wall-clock|CPU time) limit", "time limit", text))

    def section(data):
        return {key: same(value) if key in ('message', 'details') else value
                for key, value in data.items() if key not in VARYING}
    return {key: value for key, value in row.items() if key not in VARYING} | {
        'sections': [section(data) for data in row['sections']]}


def slow_submissions(directory, count, seconds):
    directory.mkdir()
    source = REFERENCE.read_text() + SLOW_IMPORT.format(seconds=seconds)
    for number in range(count):
        (directory / f"student{number:02}.py").write_text(source)
    return directory


# ========================= Same grades on every engine =======================

@pytest.fixture(scope='module')
def corpus_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp('engines')
    names = [name for name in ALL_NAMES if name in HOSTILE or name in
             ('reference', 'blank', 'mutant_dense')]
    with listening() as (port, _):
        yield write_corpus(root / 'submissions', root, root, port, names), root


def test_local_and_dask_engines_give_the_same_grades(corpus_dir):
    directory, root = corpus_dir
    outputs = {}
    for engine in ('local', 'dask'):
        extra = ['--workers', 2, '--worker-cores', 1] if engine == 'dask' else ['--jobs', 2]
        done = grade(directory, '--only', SECTIONS, '--time', 3, '--engine', engine, *extra,
                     '--csv', root / f"{engine}.csv", '--json', root / f"{engine}.json")
        assert done.returncode == 0, done.stderr
        outputs[engine] = (root / f"{engine}.csv").read_text(), json_rows(root / f"{engine}.json")
    (local_csv, local_json), (dask_csv, dask_json) = outputs['local'], outputs['dask']
    assert local_csv == dask_csv
    assert len(local_csv.splitlines()) == 1 + len(list(directory.glob('*.py')))
    assert [comparable(row) for row in local_json] == [comparable(row) for row in dask_json]
    assert {row['engine'].split()[0] for row in dask_json} == {'dask'}
    workers = {section['worker'] for row in dask_json for section in row['sections']
               if section['tries']}
    assert len(workers) == 2 and all('tcp://127.0.0.1:' in worker for worker in workers)
    assert {section['worker'] for row in local_json for section in row['sections']
            if section['tries']} == {f"{socket.gethostname()} (local)"}


# ============================ A worker killed ================================

def free_port():
    with socket.socket() as probe:
        probe.bind(('127.0.0.1', 0))
        return probe.getsockname()[1]


def descendants(pid):
    """The pids of every live descendant of pid."""
    children = {}
    for entry in Path('/proc').iterdir():
        try:
            state, parent = (entry / 'stat').read_text().rsplit(')', 1)[1].split()[:2]
        except (OSError, ValueError):
            continue
        if entry.name.isdigit() and state != 'Z':
            children.setdefault(int(parent), []).append(int(entry.name))
    found, todo = set(), [pid]
    while todo:
        new = children.get(todo.pop(), [])
        found.update(new)
        todo += new
    return found


def command(pid):
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b''


def alive(pid):
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(')', 1)[1].split()[0] != 'Z'
    except OSError:
        return False


def start(command, **options):
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, 'PYTHONPATH': str(common.KIT_DIR)}, **options)


def stop(process):
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.mark.parametrize('isolation', ['bwrap', 'unshare', 'none'])
def test_killed_worker_loses_nothing_and_leaves_no_sandbox(tmp_path, isolation):
    if problem := grader.isolation_problem(isolation):
        pytest.skip(f"{isolation} does not work here: {problem}")
    address = f"tcp://127.0.0.1:{free_port()}"
    scheduler = start(['dask', 'scheduler', '--host', '127.0.0.1', '--port',
                       address.rsplit(':', 1)[1], '--no-dashboard'])
    workers = [start(['dask', 'worker', address, '--host', '127.0.0.1', '--nthreads', '1',
                      '--resources', 'slots=1', '--no-nanny', '--no-dashboard'])
               for _ in range(2)]
    directory = slow_submissions(tmp_path / 'subs', 2, 4)
    try:
        grading = start([*RUN, directory, '--only', 'relu,softmax', '--engine', 'dask',
                         '--scheduler', address, '--isolation', isolation,
                         '--json', tmp_path / 'grades.json', '--csv', tmp_path / 'grades.csv'],
                        cwd=common.KIT_DIR)
        deadline = time.monotonic() + 120
        while not any(b'"probe": false' in command(pid) for pid in descendants(workers[0].pid)):
            assert time.monotonic() < deadline and grading.poll() is None, "no section started"
            time.sleep(0.05)  # wait until the worker runs a section (not its sandbox probe)
        time.sleep(0.3)
        sandbox = descendants(workers[0].pid)
        workers[0].kill()
        time.sleep(1)  # a surviving child would sleep 2.7 s more
        assert not [pid for pid in sandbox if alive(pid)]
        assert grading.wait(180) == 0
    finally:
        for process in (*workers, scheduler):
            stop(process)
    rows = json_rows(tmp_path / 'grades.json')
    assert sorted(row['student'] for row in rows) == ['student00', 'student01']
    assert all(section['verdict'] == 'passed' for row in rows for section in row['sections'])
    tries = [section['tries'] for row in rows for section in row['sections']]
    assert set(tries) == {1, 2}  # 2: assigned to the killed worker, then run by the other
    survivor = {section['worker'] for row in rows for section in row['sections']
                if section['tries'] == 2}
    assert len(list(csv.reader((tmp_path / 'grades.csv').open()))) == 3
    assert survivor and not [w for w in survivor if str(workers[0].pid) in w]


def test_a_lost_scheduler_stops_the_batch_and_a_rerun_resumes(tmp_path):
    """Sections in flight when the scheduler goes are not the submissions' errors: the
    batch stops with one line, keeps the results it has, and the rerun grades the rest."""
    address = f"tcp://127.0.0.1:{free_port()}"

    def cluster():
        return [start(['dask', 'scheduler', '--host', '127.0.0.1', '--port',
                       address.rsplit(':', 1)[1], '--no-dashboard']),
                start(['dask', 'worker', address, '--host', '127.0.0.1', '--nthreads', '1',
                       '--resources', 'slots=1', '--no-nanny', '--no-dashboard'])]

    directory = slow_submissions(tmp_path / 'subs', 4, 2)
    results = tmp_path / 'grades.json'
    command = [*RUN, directory, '--only', 'relu', '--engine', 'dask', '--scheduler', address,
               '--json', results]
    processes = cluster()
    try:
        grading = subprocess.Popen(list(map(str, command)), cwd=common.KIT_DIR, text=True,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 120
        while not results.is_file() or not results.read_text():
            assert time.monotonic() < deadline and grading.poll() is None
            time.sleep(0.05)
        stop(processes[0])
        _, errors = grading.communicate(timeout=120)
    finally:
        for process in processes:
            stop(process)
    assert grading.returncode == 1, errors
    assert "lost the Dask scheduler" in errors and "rerun the same command" in errors
    kept = json_rows(results)
    assert 1 <= len(kept) < 4 and all(row['total'] == 0.5 for row in kept), 'no error rows'
    processes = cluster()
    try:
        rerun = grade(*command[len(RUN):])
    finally:
        for process in processes:
            stop(process)
    assert rerun.returncode == 0 and f"{len(kept)} results kept" in rerun.stdout, rerun.stderr
    assert sorted(row['total'] for row in json_rows(results)) == [0.5] * 4


@pytest.fixture(scope='module')
def dying_engine():
    """A LocalCluster whose tasks kill their worker (its nanny starts another)."""
    engine = engines.DaskEngine(workers=1, cores=1)
    engine.task_function = lambda task: os._exit(1)
    yield engine
    engine.close()


@pytest.mark.parametrize('retries', [2, 0])
def test_task_lost_on_every_try_is_an_error_after_its_retries(dying_engine, retries):
    """At most `retries` more tries, then verdict error with the reason;
    retries=0 is what the checking service asks for (it counts attempts itself)."""
    relu = grader.Grader(grader.find_table('standard'), 'relu', isolation='none')
    plan = relu.plans[0]
    run = dying_engine.submit(relu.task(plan, 'alice 2.1.1', b''), retries=retries).result(120)
    assert run.lost and run.tries == retries + 1 and run.finished is None
    assert run.failure.startswith(f"lost with its worker on every try ({retries + 1};")
    result = grader.judge_run(plan, run)
    assert (result.verdict, result.awarded, result.tries) == ('error', 0, retries + 1)


def test_training_section_takes_its_whole_worker():
    """Every slot of the worker (as cores), so it never shares the worker;
    ordinary sections share it."""
    def timed(task):  # a stand-in task function (nested: sent by value): when it ran
        import time
        start = time.time()
        time.sleep(1)
        return engines.SectionRun(worker=f"{start} {time.time()}")

    engine = engines.DaskEngine(workers=1, cores=2)
    try:
        engine.task_function = timed
        relu = grader.Grader(grader.find_table('standard'), 'relu', isolation='none')
        task = relu.task(relu.plans[0], 'alice 2.1.1', b'')
        training = engines.SectionTask(**{**task.__dict__, 'training': True})
        handles = [engine.submit(task), engine.submit(task), engine.submit(training),
                   engine.submit(task)]
        (a, b), (c, d), (t0, t1), (e, f) = [map(float, handle.result(60).worker.split())
                                            for handle in handles]
    finally:
        engine.close()
    assert engine.slots == 2
    assert max(a, c) < min(b, d)  # the first two ordinary sections ran side by side
    assert all(t1 <= start or end <= t0 for start, end in ((a, b), (c, d), (e, f)))


# ========================= An interrupted batch ==============================

def test_interrupted_batch_resumes_without_regrading(tmp_path):
    directory = slow_submissions(tmp_path / 'subs', 6, 1)
    results, table = tmp_path / 'grades.json', tmp_path / 'grades.csv'
    command = [*RUN, directory, '--only', 'relu', '--jobs', 1, '--json', results, '--csv', table]
    first = subprocess.Popen(list(map(str, command)), cwd=common.KIT_DIR,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not results.is_file() or len(results.read_text().splitlines()) < 2:
        assert time.monotonic() < deadline and first.poll() is None
        time.sleep(0.05)
    first.send_signal(signal.SIGINT)
    _, errors = first.communicate(timeout=60)
    assert first.returncode == 130, errors
    assert "rerun the same command" in errors
    kept = results.read_text().splitlines()
    assert 2 <= len(kept) < 6
    second = grade(*command[len(RUN):])
    assert second.returncode == 0, second.stderr
    assert f"{len(kept)} results kept" in second.stdout
    assert f"graded {6 - len(kept)} submissions" in second.stdout
    rows = json_rows(results)
    assert sorted(row['student'] for row in rows) == [f"student{n:02}" for n in range(6)]
    assert set(kept) <= set(results.read_text().splitlines())  # the stored lines are reused
    assert [row[0] for row in csv.reader(table.open())] == \
        ['student', *(f"student{n:02}" for n in range(6))]
    assert "graded 0 submissions" in grade(*command[len(RUN):]).stdout
    (directory / 'student03.py').write_text(REFERENCE.read_text())  # a new submission
    assert "graded 1 submissions" in grade(*command[len(RUN):]).stdout
    assert "graded 6 submissions" in grade(*command[len(RUN):], '--time', 30).stdout  # limits
    assert "graded 6 submissions" in grade(*command[len(RUN):], '--restart').stdout
    assert len(json_rows(results)) == 6


def test_engine_usage_errors_are_one_line(tmp_path):
    done = grade(REFERENCE, '--engine', 'dask', '--scheduler', f"tcp://127.0.0.1:{free_port()}")
    assert done.returncode == 2 and "no Dask scheduler answers" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    done = grade(REFERENCE, '--scheduler', 'tcp://127.0.0.1:1')
    assert done.returncode == 2 and "--scheduler is for --engine dask" in done.stderr
    config = tmp_path / 'slurm.toml'
    config.write_text('partition = "cpu"\nwalltme = "01:00:00"\n')
    done = grade(REFERENCE, '--engine', 'slurm', '--slurm-config', config)
    assert done.returncode == 2 and "unknown keys walltme" in done.stderr
