"""The job queue: the Run table, claimed under a lease.

The database is the one source of truth. A dispatcher claims the first
queued run (lowest priority number, then oldest) in one transaction:
SQLite's BEGIN IMMEDIATE (settings: transaction_mode) makes claims take
turns, PostgreSQL's SELECT ... FOR UPDATE SKIP LOCKED lets them pass each
other. The claim holds until lease_expires, which heartbeats push forward.
A run whose lease ran out goes back to the queue with attempt + 1, so the
old holder's late result no longer matches and is dropped; every write of
a holder names the attempt it holds. The attempt count is the only retry
count: after `max_failures` lost attempts a run is recorded as an error.
"""
from datetime import timedelta

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from staff.service.models import Run

RUN_KINDS = {'all': (False, True), 'ordinary': (False,), 'training': (True,)}  # Run.training
LOST = ("grading was lost {failures} times (a sandbox, worker or dispatcher was killed); "
        "a TA can rejudge it")


def enqueue(submission, sections, priority=Run.UPLOAD, training=False, requested=False):
    return Run.objects.create(submission=submission, sections=list(sections), priority=priority,
                              training=training, requested=requested)


def claim(owner, lease, now=None, kinds=RUN_KINDS['all']):
    """The next queued run of the kinds (training or not), now leased to `owner`
    for `lease` seconds; or None."""
    if not Run.objects.filter(state=Run.QUEUED, training__in=kinds).exists():
        return None  # the usual case, without taking SQLite's write lock
    now = now or timezone.now()
    with transaction.atomic():
        run = (Run.objects.select_for_update(skip_locked=True)
               .filter(state=Run.QUEUED, training__in=kinds).order_by('priority', 'id').first())
        if run is None:
            return None
        run.state, run.lease_owner = Run.LEASED, owner
        run.lease_expires = now + timedelta(seconds=lease)
        run.started_at = now
        run.current_section = next(
            (number for number in run.sections if number not in run.partial), '')
        run.save(update_fields=['state', 'lease_owner', 'lease_expires', 'started_at',
                                'current_section'])
    return run


def held(run_id, attempt, owner):
    """The runs (0 or 1) that `owner` still holds under `attempt`."""
    return Run.objects.filter(id=run_id, attempt=attempt, state=Run.LEASED, lease_owner=owner)


def heartbeat(run_id, attempt, owner, lease):
    """Extends the lease; False when the run is no longer ours (then stop grading it)."""
    return held(run_id, attempt, owner).update(
        lease_expires=timezone.now() + timedelta(seconds=lease)) == 1


def record_section(run_id, attempt, owner, number, result):
    """Keeps one finished section of the current attempt; a later attempt skips it."""
    with transaction.atomic():
        run = held(run_id, attempt, owner).select_for_update().first()
        if run is None:
            return False
        run.partial = {**run.partial, number: result}
        run.current_section = next(
            (section for section in run.sections if section not in run.partial), '')
        run.save(update_fields=['partial', 'current_section'])
    return True


def finish(run_id, attempt, owner, grader, sections=None):
    """Records the run's result once: the sections recorded so far with any of
    `sections` not among them, and the grader's description; False, recording
    nothing, for a superseded attempt."""
    with transaction.atomic():
        run = held(run_id, attempt, owner).select_for_update().first()
        if run is None:
            return False
        run.result = {'grader': grader, 'sections': {**(sections or {}), **run.partial}}
        run.state, run.lease_owner, run.lease_expires = Run.DONE, '', None
        run.current_section, run.finished_at = '', timezone.now()
        run.save()
    return True


def requeue(run_id, attempt, owner, failed, max_failures):
    """Gives the run back: after a crash (failed) or a shutdown. False if it was not ours."""
    with transaction.atomic():
        run = held(run_id, attempt, owner).select_for_update().first()
        if run is None:
            return False
        give_back(run, failed, max_failures)
    return True


def give_back(run, failed, max_failures):
    run.failures += failed
    run.attempt += 1
    run.lease_owner, run.lease_expires, run.current_section = '', None, ''
    if run.failures >= max_failures:
        message = LOST.format(failures=run.failures)
        sections = {number: run.partial.get(number) or lost_section(number, message)
                    for number in run.sections}
        run.result = {'grader': {}, 'sections': sections}
        run.state, run.finished_at = Run.DONE, timezone.now()
    else:
        run.state = Run.QUEUED
    run.save()


def lost_section(number, message):
    return {'section': number, 'verdict': 'error', 'message': message, 'awarded': 0.0}


def requeue_expired(max_failures, now=None):
    """Puts every run whose lease ran out back in the queue; returns how many."""
    now = now or timezone.now()
    count = 0
    with transaction.atomic():
        for run in (Run.objects.select_for_update(skip_locked=True)
                    .filter(state=Run.LEASED, lease_expires__lt=now)):
            give_back(run, True, max_failures)
            count += 1
    return count


def position(run):
    """How many queued runs go before this one (0: it is next)."""
    if run.state != Run.QUEUED:
        return 0
    ahead = Q(priority__lt=run.priority) | Q(priority=run.priority, id__lt=run.id)
    return Run.objects.filter(ahead, state=Run.QUEUED).count()
