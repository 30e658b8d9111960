"""The checking service's dispatcher with real sandboxes, on the local engine and
on a Dask scheduler with a worker process: it grades a run's sections, a sandbox
or Dask worker killed mid-run makes the next attempt, and a training run (MNIST)
goes through it like any other."""
import os
import re
import signal
import time
from dataclasses import replace
from pathlib import Path

import pytest
from test_engines import command, descendants, free_port, start, stop

from tests import service_django

DATA = Path(service_django.setup())

from django.contrib.auth.models import User  # noqa: E402

from staff import sandbox  # noqa: E402
from staff.service import config as course  # noqa: E402
from staff.service import queue, rules  # noqa: E402
from staff.service.dispatcher import Dispatcher  # noqa: E402
from staff.service.models import Run, Submission  # noqa: E402
from tests.mutants import MUTANTS  # noqa: E402

KIT = Path(__file__).resolve().parent.parent
SOFTMAX_BUG = next(edit for edit in MUTANTS if edit.what.startswith('diagonal-only Jacobian'))


def softmax_bug():
    source = (KIT / 'solution.py').read_text()
    assert source.count(SOFTMAX_BUG.old) == 1
    return source.replace(SOFTMAX_BUG.old, SOFTMAX_BUG.new).encode()


@pytest.fixture
def config():
    Run.objects.all().delete()
    return course.load(None, DATA)


def upload(config, name):
    student, _ = User.objects.get_or_create(username=name)
    return rules.upload(config, student, softmax_bug())


def grade_until_done(dispatcher, run_id, seconds=120):
    deadline = time.monotonic() + seconds
    while Run.objects.get(id=run_id).state != Run.DONE:
        assert time.monotonic() < deadline, 'the run was not graded in time'
        dispatcher.step()
        time.sleep(0.1)
    return Run.objects.get(id=run_id)


def only(run, sections):
    Run.objects.filter(id=run.id).update(sections=sections)


def test_dispatcher_grades_a_run_section_by_section(config):
    submission = upload(config, 'alice')
    run = submission.runs.get()
    only(run, ['2.1.1', '2.1.2'])
    run = grade_until_done(Dispatcher(config, 'test'), run.id)
    assert run.attempt == 1 and run.failures == 0
    sections = run.result['sections']
    assert sections['2.1.1']['verdict'] == 'passed'
    assert sections['2.1.2']['verdict'] == 'failed' and sections['2.1.2']['message']
    report = rules.report(config, Submission.objects.get(id=submission.id))
    assert report.state == 'graded' and report.total == 0.5
    assert run.result['grader']['isolation']
    assert run.result['grader']['engine'].startswith('local')


def slow_upload(config, name):
    """A correct solution whose import takes 3 s in every section: time to kill something."""
    student, _ = User.objects.get_or_create(username=name)
    source = b'import time\ntime.sleep(3)\n' + (KIT / 'solution.py').read_bytes()
    return rules.upload(config, student, source)


def step_until(dispatcher, condition, seconds=60):
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, 'timed out'
        dispatcher.step()
        time.sleep(0.05)


def running_sandboxes():
    """The process groups of the sandboxes this process runs now (the local engine's)."""
    return [supervisor.process.pid for supervisor in list(sandbox.RUNNING.values())]


def test_a_killed_sandbox_makes_the_next_attempt(config):
    run = slow_upload(config, 'bob').runs.get()
    only(run, ['2.1.1', '2.1.2', '2.1.3'])
    dispatcher = Dispatcher(config, 'test')
    step_until(dispatcher, running_sandboxes)
    for group in running_sandboxes():
        os.killpg(group, signal.SIGKILL)
    run = grade_until_done(dispatcher, run.id)
    assert (run.attempt, run.failures) == (2, 1)
    assert set(run.result['sections']) == {'2.1.1', '2.1.2', '2.1.3'}
    assert all(section['verdict'] == 'passed' for section in run.result['sections'].values())
    dispatcher.engine.close()


def test_shutdown_gives_running_runs_back_and_stops_the_sandboxes(config):
    run = slow_upload(config, 'carol').runs.get()
    dispatcher = Dispatcher(config, 'test')
    step_until(dispatcher, running_sandboxes)
    groups = running_sandboxes()
    start = time.monotonic()
    dispatcher.shutdown()
    assert time.monotonic() - start < 2, 'the running sections were killed, not waited for'
    assert not running_sandboxes() and not any(alive(group) for group in groups)
    run = Run.objects.get(id=run.id)
    assert (run.state, run.attempt, run.failures) == ('queued', 2, 0)
    assert queue.position(run) == 0
    assert not Run.objects.filter(state=Run.LEASED).exists()


def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_a_database_error_does_not_stop_the_dispatcher(config, monkeypatch):
    from django.db import OperationalError

    from staff.service import dispatcher as module
    calls = []

    def step(self):
        calls.append(len(calls))
        if len(calls) == 1:
            raise OperationalError('database is locked')
        self.stopping = True

    monkeypatch.setattr(module.Dispatcher, 'step', step)
    monkeypatch.setattr(module, 'DATABASE_RETRY', 0)
    Dispatcher(config, 'flaky').serve()
    assert calls == [0, 1], 'it went on after the error'
    assert not module.DispatcherRow.objects.filter(name='flaky').exists()


# ================================ On Dask ===================================

def start_scheduler(address):
    return start(['dask', 'scheduler', '--host', '127.0.0.1', '--port', address.rsplit(':', 1)[1],
                  '--no-dashboard'])


def start_worker(address):
    return start(['dask', 'worker', address, '--host', '127.0.0.1', '--nthreads', '2',
                  '--resources', 'slots=2', '--no-dashboard'])


@pytest.fixture
def dask_config(config):
    """The course's config with a real Dask scheduler and one worker of 2 slots, run by a
    nanny (a killed worker comes back, as under a process supervisor)."""
    address = f"tcp://127.0.0.1:{free_port()}"
    cluster = {'scheduler': start_scheduler(address), 'nanny': start_worker(address)}
    yield replace(config, engine='dask', scheduler=address), cluster
    for process in cluster.values():
        stop(process)


def sections_running(nanny):
    """The sandboxes running a section under the Dask worker's nanny."""
    return [pid for pid in descendants(nanny.pid) if b'"probe": false' in command(pid)]


def test_on_dask_a_killed_worker_makes_the_next_attempt(dask_config):
    config, cluster = dask_config
    run = slow_upload(config, 'dan').runs.get()
    only(run, ['2.1.1', '2.1.2', '2.1.3'])
    dispatcher = Dispatcher(config, 'test')
    assert dispatcher.capacity == 2 and dispatcher.engine.name == 'dask'
    step_until(dispatcher, lambda: sections_running(cluster['nanny']))
    assert not running_sandboxes(), 'the sections run on the Dask worker, not here'
    for worker in children(cluster['nanny'].pid):
        os.kill(worker, signal.SIGKILL)
    run = grade_until_done(dispatcher, run.id)
    dispatcher.shutdown()
    assert (run.attempt, run.failures) == (2, 1)
    sections = run.result['sections']
    assert set(sections) == {'2.1.1', '2.1.2', '2.1.3'}
    assert all(section['verdict'] == 'passed' for section in sections.values())
    assert all('tcp://127.0.0.1:' in section['worker'] for section in sections.values())
    assert run.result['grader']['engine'].startswith(f"dask ({config.scheduler}, 1 worker")


def test_on_dask_a_killed_scheduler_makes_the_next_attempt(dask_config):
    """The sections in flight come back lost, not as the submission's errors; no run is
    claimed while the scheduler is gone; the dispatcher connects again once a scheduler
    answers at the address (started again with its worker, which ends with its
    scheduler, as their supervisor would), and the next attempt grades the run."""
    config, cluster = dask_config
    run = slow_upload(config, 'erin').runs.get()
    only(run, ['2.1.1', '2.1.2'])
    dispatcher = Dispatcher(config, 'test')
    step_until(dispatcher, lambda: sections_running(cluster['nanny']))
    cluster['scheduler'].kill()
    cluster['scheduler'].wait()
    step_until(dispatcher, lambda: Run.objects.get(id=run.id).attempt == 2)
    assert dispatcher.capacity == 0, 'no claims while the scheduler is gone'
    cluster['scheduler'] = start_scheduler(config.scheduler)
    stop(cluster['nanny'])
    cluster['nanny'] = start_worker(config.scheduler)
    run = grade_until_done(dispatcher, run.id, seconds=180)
    dispatcher.shutdown()
    assert (run.attempt, run.failures) == (2, 1)
    assert all(section['verdict'] == 'passed' for section in run.result['sections'].values())


def test_an_unreachable_scheduler_is_a_one_line_error(config):
    with pytest.raises(course.ConfigError, match=r"^service.engine = 'dask': no Dask scheduler "
                                                 r"answers at tcp://127.0.0.1:\d+"):
        Dispatcher(replace(config, engine='dask', scheduler=f"tcp://127.0.0.1:{free_port()}"))


def children(parent):
    return [pid for pid in descendants(parent)
            if Path(f"/proc/{pid}/stat").exists()
            and int(Path(f"/proc/{pid}/stat").read_text().rsplit(')', 1)[1].split()[1]) == parent]


# ============================ Training runs =================================

TRAINING = {'mnist': '2.4,MNIST,1.0,mnist', 'cifar': '3.7,CIFAR-10,2.0,cifar'}  # table rows


@pytest.mark.training
@pytest.mark.parametrize('engine, test', [
    ('local', 'mnist'), ('dask', 'mnist'),
    pytest.param('local', 'cifar', marks=pytest.mark.cifar)])  # 25 min, the data in NN_DATA_DIR
def test_a_requested_training_run_is_graded(config, engine, test, request, tmp_path):
    """A student asks for the training section on a submission: it runs with the
    assignment's limits, alone on its machine (local) or worker (Dask), its lease renewed
    all along."""
    table = tmp_path / 'table.csv'
    table.write_text(f"section,title,points,tests\n2.1.1,ReLU,0.5,relu\n{TRAINING[test]}\n")
    if engine == 'dask':
        config, _ = request.getfixturevalue('dask_config')
    config = replace(config, points=str(table), lease=10, heartbeat=2)
    student, _ = User.objects.get_or_create(username=f"trainer-{engine}-{test}")
    submission = rules.upload(config, student, (KIT / 'solution.py').read_bytes())
    rules.request_training(config, submission)
    ordinary, training = Run.objects.filter(submission=submission).order_by('id')
    number = TRAINING[test].split(',')[0]
    assert (ordinary.sections, training.sections, training.training) == (['2.1.1'], [number], True)
    dispatcher = Dispatcher(config, 'test')
    training = grade_until_done(dispatcher, training.id, seconds=4000)
    dispatcher.shutdown()
    assert (training.attempt, training.failures) == (1, 0), 'the lease never ran out'
    result = training.result['sections'][number]
    assert result['verdict'] == 'passed', result
    assert re.fullmatch(r"test accuracy 0\.\d+, trained in \d+ s", result['message'])
    assert number not in Run.objects.get(id=ordinary.id).result['sections']
    report = rules.report(config, Submission.objects.get(id=submission.id))
    assert report.state == 'graded' and report.total == 0.5 + result['points']
