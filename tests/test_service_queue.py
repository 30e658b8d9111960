"""The checking service's job queue: claim, lease, heartbeat, expiry, superseded attempts.

On SQLite by default; on PostgreSQL when DATABASE_URL is set (test_queue_on_postgres
runs this file so, with the dispatcher's and the web pages' tests, against the server
staff/service/ci_postgres.sh starts).
"""
import os
import subprocess
import sys
import threading
from datetime import timedelta
from pathlib import Path

import pytest

from tests import service_django

DATA = service_django.setup()

from django.contrib.auth.models import User  # noqa: E402
from django.db import connection, connections  # noqa: E402
from django.utils import timezone  # noqa: E402

from staff.service import queue  # noqa: E402
from staff.service.models import Run, Submission  # noqa: E402

KIT = Path(__file__).resolve().parent.parent
LEASE = 30


@pytest.fixture(autouse=True)
def empty_queue():
    Run.objects.all().delete()
    Submission.objects.all().delete()
    yield


def submission(name='s1'):
    student, _ = User.objects.get_or_create(username=name)
    return Submission.objects.create(student=student, path='x.py', sha256='0' * 64, size=1,
                                     submitted_at=timezone.now())


def test_claims_go_by_priority_then_age():
    upload = submission()
    training = queue.enqueue(upload, ['2.4'], Run.TRAINING, training=True)
    rejudge = queue.enqueue(upload, ['2.1.1'], Run.REJUDGE)
    first = queue.enqueue(upload, ['2.1.1', '2.1.2'])
    second = queue.enqueue(upload, ['2.1.3'])
    assert [queue.position(run) for run in (first, second, rejudge, training)] == [0, 1, 2, 3]
    order = [queue.claim('d', LEASE).id for _ in range(4)]
    assert order == [first.id, second.id, rejudge.id, training.id]
    assert queue.claim('d', LEASE) is None
    run = Run.objects.get(id=first.id)
    assert (run.state, run.lease_owner, run.attempt) == ('leased', 'd', 1)
    assert run.current_section == '2.1.1'


def test_a_dispatcher_takes_only_the_kinds_of_runs_it_is_for():
    upload = submission()
    training = queue.enqueue(upload, ['2.4'], Run.TRAINING, training=True)
    ordinary = queue.enqueue(upload, ['2.1.1'], Run.REJUDGE)
    assert queue.claim('t', LEASE, kinds=queue.RUN_KINDS['training']).id == training.id
    assert queue.claim('t', LEASE, kinds=queue.RUN_KINDS['training']) is None
    assert queue.claim('o', LEASE, kinds=queue.RUN_KINDS['ordinary']).id == ordinary.id


def test_finish_records_the_result_once():
    run = queue.enqueue(submission(), ['2.1.1', '2.1.2'])
    queue.claim('d', LEASE)
    assert queue.record_section(run.id, 1, 'd', '2.1.1', {'verdict': 'passed'})
    assert Run.objects.get(id=run.id).current_section == '2.1.2'
    assert queue.record_section(run.id, 1, 'd', '2.1.2', {'verdict': 'failed'})
    assert queue.finish(run.id, 1, 'd', {'isolation': 'bwrap'})
    assert not queue.finish(run.id, 1, 'd', {'isolation': 'again'})
    assert not queue.record_section(run.id, 1, 'd', '2.1.2', {'verdict': 'passed'})
    run = Run.objects.get(id=run.id)
    assert run.state == 'done' and run.result == {
        'grader': {'isolation': 'bwrap'},
        'sections': {'2.1.1': {'verdict': 'passed'}, '2.1.2': {'verdict': 'failed'}}}


def test_finish_adds_the_sections_the_worker_reported_last():
    run = queue.enqueue(submission(), ['2.1.1', '2.1.2'])
    queue.claim('d', LEASE)
    queue.record_section(run.id, 1, 'd', '2.1.1', {'verdict': 'passed'})
    reported = {'2.1.1': {'verdict': 'other'}, '2.1.2': {'verdict': 'failed'}}
    assert queue.finish(run.id, 1, 'd', {}, reported)
    assert Run.objects.get(id=run.id).result['sections'] == {
        '2.1.1': {'verdict': 'passed'}, '2.1.2': {'verdict': 'failed'}}


def test_heartbeat_keeps_the_lease_and_expiry_requeues_with_the_next_attempt():
    run = queue.enqueue(submission(), ['2.1.1', '2.1.2'])
    queue.claim('old', LEASE)
    queue.record_section(run.id, 1, 'old', '2.1.1', {'verdict': 'passed'})
    later = timezone.now() + timedelta(seconds=LEASE + 1)
    assert queue.heartbeat(run.id, 1, 'old', LEASE * 2)
    assert queue.requeue_expired(3, now=later) == 0  # the heartbeat pushed the lease past `later`
    assert queue.requeue_expired(3, now=later + timedelta(seconds=LEASE * 2)) == 1
    run = Run.objects.get(id=run.id)
    assert (run.state, run.attempt, run.failures, run.lease_owner) == ('queued', 2, 1, '')
    assert not queue.heartbeat(run.id, 1, 'old', LEASE), "a superseded holder is told to stop"
    new = queue.claim('new', LEASE)
    assert new.id == run.id and new.current_section == '2.1.2', "finished sections are kept"
    assert not queue.record_section(run.id, 1, 'old', '2.1.2', {'verdict': 'late'})
    assert not queue.finish(run.id, 1, 'old', {}), "the late result of attempt 1 is dropped"
    assert queue.record_section(run.id, 2, 'new', '2.1.2', {'verdict': 'failed'})
    assert queue.finish(run.id, 2, 'new', {})
    assert Run.objects.get(id=run.id).result['sections'] == {
        '2.1.1': {'verdict': 'passed'}, '2.1.2': {'verdict': 'failed'}}


def test_a_shutdown_gives_the_run_back_without_a_failure():
    run = queue.enqueue(submission(), ['2.1.1'])
    queue.claim('d', LEASE)
    assert not queue.requeue(run.id, 1, 'someone else', False, 3)
    assert queue.requeue(run.id, 1, 'd', False, 3)
    run = Run.objects.get(id=run.id)
    assert (run.state, run.attempt, run.failures) == ('queued', 2, 0)


def test_too_many_lost_attempts_record_an_error():
    run = queue.enqueue(submission(), ['2.1.1', '2.1.2'])
    for attempt in (1, 2):
        queue.claim('d', LEASE)
        assert queue.requeue(run.id, attempt, 'd', True, 3)
    queue.claim('d', LEASE)
    queue.record_section(run.id, 3, 'd', '2.1.1', {'verdict': 'passed'})
    assert queue.requeue(run.id, 3, 'd', True, 3)
    run = Run.objects.get(id=run.id)
    assert run.state == 'done' and run.failures == 3
    assert run.result['sections']['2.1.1'] == {'verdict': 'passed'}
    assert run.result['sections']['2.1.2']['verdict'] == 'error'
    assert 'lost 3 times' in run.result['sections']['2.1.2']['message']
    assert queue.claim('d', LEASE) is None


def test_concurrent_dispatchers_claim_each_run_once():
    upload = submission()
    runs = [queue.enqueue(upload, [str(index)]).id for index in range(40)]
    claimed, errors = [], []

    def dispatcher(name):
        try:
            while run := queue.claim(name, LEASE):
                claimed.append(run.id)
                assert queue.finish(run.id, run.attempt, name, {})
        except Exception as error:  # shown by the assertion below
            errors.append(error)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=dispatcher, args=(f"d{index}",)) for index in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert sorted(claimed) == runs
    assert Run.objects.filter(state='done').count() == 40


def test_sqlite_runs_in_wal_mode_with_immediate_transactions():
    assert connection.vendor == 'sqlite', 'the PostgreSQL run deselects this test'
    with connection.cursor() as cursor:
        cursor.execute('PRAGMA journal_mode')
        assert cursor.fetchone()[0] == 'wal'
    assert connection.settings_dict['OPTIONS']['transaction_mode'] == 'IMMEDIATE'


def test_queue_on_postgres():
    """The tests above on PostgreSQL (Debian's, started by ci_postgres.sh), and the
    dispatcher's and web pages' (the submissions' bytes come back as memoryview there)."""
    assert not os.environ.get('DATABASE_URL'), 'run it on SQLite: it runs the rest on PostgreSQL'
    script = KIT / 'staff' / 'service' / 'ci_postgres.sh'
    started = subprocess.run(['bash', str(script)], capture_output=True, text=True, timeout=120,
                             check=False)
    if started.returncode == 3:
        pytest.skip(started.stderr.strip())
    assert started.returncode == 0, started.stderr
    url = started.stdout.strip().splitlines()[-1]
    result = subprocess.run([sys.executable, '-m', 'pytest', '-q', '-p', 'no:cacheprovider',
                             __file__, KIT / 'tests' / 'test_service_dispatcher.py',
                             KIT / 'tests' / 'test_service_web.py',
                             '-k', 'not sqlite and not on_postgres'], cwd=KIT,
                            env={**os.environ, 'DATABASE_URL': url},
                            capture_output=True, text=True, timeout=600, check=False)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert ' passed' in result.stdout and 'failed' not in result.stdout
