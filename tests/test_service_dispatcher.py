"""The checking service's dispatcher with real worker processes and sandboxes:
it grades a run's sections, and a worker killed mid-run makes the next attempt."""
import os
import signal
import time
from pathlib import Path

import pytest

from tests import service_django

DATA = Path(service_django.setup())

from django.contrib.auth.models import User  # noqa: E402

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


def test_a_killed_worker_makes_the_next_attempt(config):
    run = upload(config, 'bob').runs.get()
    only(run, ['2.1.1', '2.1.2', '2.1.3'])
    dispatcher = Dispatcher(config, 'test')
    deadline = time.monotonic() + 60
    while not (dispatcher.active and dispatcher.active[0].handle):
        dispatcher.step()
        assert time.monotonic() < deadline
    os.killpg(dispatcher.active[0].handle.process.pid, signal.SIGKILL)
    while Run.objects.get(id=run.id).attempt == 1:
        dispatcher.step()
        assert time.monotonic() < deadline
    run = grade_until_done(dispatcher, run.id)
    assert (run.attempt, run.failures) == (2, 1)
    assert set(run.result['sections']) == {'2.1.1', '2.1.2', '2.1.3'}
    assert run.result['sections']['2.1.3']['verdict'] == 'passed'


def test_shutdown_gives_running_runs_back(config):
    run = upload(config, 'carol').runs.get()
    dispatcher = Dispatcher(config, 'test')
    while not (dispatcher.active and dispatcher.active[0].handle):
        dispatcher.step()
    process = dispatcher.active[0].handle.process
    dispatcher.shutdown()
    assert process.poll() is not None, 'the worker is stopped'
    run = Run.objects.get(id=run.id)
    assert (run.state, run.attempt, run.failures) == ('queued', 2, 0)
    assert queue.position(run) == 0
    assert not Run.objects.filter(state=Run.LEASED).exists()


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
