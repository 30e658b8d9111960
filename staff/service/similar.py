"""Similar submissions in the service: the TA's similarity report, computed in the background.

A TA's "recompute" button, or new submissions once uploads have paused for
DEBOUNCE seconds, records a requested SimilarityReport; the web request does
nothing more. A dispatcher claims it under a lease, as it claims runs
(SELECT ... FOR UPDATE SKIP LOCKED; BEGIN IMMEDIATE on SQLite), takes the
current submissions (the last one per student) and has a worker process
(python -m staff.service.similar_worker, niced) compute staff/similarity.py's
report; it heartbeats the lease meanwhile and stores the result only under the
attempt it holds. A killed dispatcher's lease runs out and the report goes back
to requested with the next attempt, for the next dispatcher to take. A pair
below the stored top is compared in detail the same way: a report with `pairs`
whose result joins the shown pairs of the report it belongs to.
"""
import json
import subprocess
import sys
import time
from datetime import timedelta

from django.db import transaction
from django.utils import timezone

import common
from staff import sandbox, similarity
from staff.service.models import SimilarityReport, Submission
from staff.service.similar_worker import reference_text

DEBOUNCE = 60.0  # seconds without uploads before new submissions make a new report
LOST = "the similarity worker was lost {failures} times: {reason}; recompute to try again"


def current_submissions():
    """{student id: the student's last submission}, students only."""
    last = {}
    for submission in (Submission.objects.filter(student__is_staff=False)
                       .select_related('student').order_by('submitted_at', 'id')):
        last[submission.student.username] = submission
    return last


def pending(of=None, pairs=()):
    """The report (or detail) of these pairs already requested or running, if any."""
    return (SimilarityReport.objects.filter(
        of=of, pairs=[list(pair) for pair in pairs],
        state__in=[SimilarityReport.REQUESTED, SimilarityReport.RUNNING]).first())


def request(by='', of=None, pairs=()):
    """Records a request (unless the same one waits already); returns it. Cheap: the web
    request does only this."""
    with transaction.atomic():
        return pending(of, pairs) or SimilarityReport.objects.create(
            requested_by=by, of=of, pairs=[list(pair) for pair in pairs])


def request_when_new(now=None):
    """Requests a report when submissions arrived since the last one asked for (and none came
    in the last DEBOUNCE seconds); returns it or None."""
    now = now or timezone.now()
    newest = Submission.objects.filter(student__is_staff=False).order_by('-id').first()
    if newest is None or newest.submitted_at > now - timedelta(seconds=DEBOUNCE):
        return None
    reports = SimilarityReport.objects.filter(of=None)
    if reports.filter(state__in=[SimilarityReport.REQUESTED, SimilarityReport.RUNNING]).exists():
        return None
    last = reports.order_by('-id').first()
    if last and last.last_submission >= newest.id:
        return None
    return request()


def latest():
    """The newest computed whole report, or None."""
    return (SimilarityReport.objects.filter(of=None, state=SimilarityReport.DONE,
                                            result__isnull=False).order_by('-id').first())


def claim(owner, lease, now=None):
    """The oldest requested report, now running under `owner`'s lease; or None. A whole
    report takes the current submissions now."""
    if not SimilarityReport.objects.filter(state=SimilarityReport.REQUESTED).exists():
        return None  # the usual case, without taking SQLite's write lock
    now = now or timezone.now()
    with transaction.atomic():
        report = (SimilarityReport.objects.select_for_update(skip_locked=True)
                  .filter(state=SimilarityReport.REQUESTED).order_by('id').first())
        if report is None:
            return None
        if report.of_id is None:
            current = current_submissions()
            report.submissions = {student: item.id for student, item in current.items()}
            report.last_submission = max(report.submissions.values(), default=0)
        else:
            report.submissions = report.of.submissions
        report.state, report.lease_owner = SimilarityReport.RUNNING, owner
        report.lease_expires, report.started_at = now + timedelta(seconds=lease), now
        report.save()
    return report


def held(report_id, attempt, owner):
    return SimilarityReport.objects.filter(id=report_id, attempt=attempt, lease_owner=owner,
                                           state=SimilarityReport.RUNNING)


def heartbeat(report, owner, lease):
    """Extends the lease; False when the report is no longer ours."""
    return held(report.id, report.attempt, owner).update(
        lease_expires=timezone.now() + timedelta(seconds=lease)) == 1


def finish(report, owner, result):
    """Stores the result of the held attempt (a detail's joins its report's shown pairs);
    False, storing nothing, for a superseded attempt."""
    with transaction.atomic():
        mine = held(report.id, report.attempt, owner).select_for_update().first()
        if mine is None:
            return False
        if mine.of_id is not None:
            whole = SimilarityReport.objects.select_for_update().get(id=mine.of_id)
            whole.result['shown'] += result['shown']
            whole.save(update_fields=['result'])
        mine.result, mine.state, mine.finished_at = result, SimilarityReport.DONE, timezone.now()
        mine.lease_owner, mine.lease_expires = '', None
        mine.save()
    return True


def requeue(report, owner, failed, max_failures, reason=''):
    """Gives the report back (after a lost worker: failed; after a shutdown: not)."""
    with transaction.atomic():
        mine = held(report.id, report.attempt, owner).select_for_update().first()
        if mine is not None:
            give_back(mine, failed, max_failures, reason)
    return mine is not None


def give_back(report, failed, max_failures, reason):
    report.failures += failed
    report.attempt += 1
    report.lease_owner, report.lease_expires = '', None
    if report.failures >= max_failures:
        report.error = LOST.format(failures=report.failures, reason=reason)
        report.state, report.finished_at = SimilarityReport.DONE, timezone.now()
    else:
        report.state = SimilarityReport.REQUESTED
    report.save()


def requeue_expired(max_failures, now=None):
    """Puts every report whose lease ran out (a killed dispatcher's) back to requested."""
    now = now or timezone.now()
    with transaction.atomic():
        expired = (SimilarityReport.objects.select_for_update(skip_locked=True)
                   .filter(state=SimilarityReport.RUNNING, lease_expires__lt=now))
        for report in expired:
            give_back(report, True, max_failures, 'its lease ran out')


def texts(submissions):
    """{student: text} of {student: submission id}, and the reference's."""
    return {**stored_texts(submissions), similarity.REFERENCE: reference_text()}


def stored_texts(submissions):
    """{student: the submission's text} of {student: submission id}, from the database."""
    sources = dict(Submission.objects.filter(id__in=submissions.values())
                   .values_list('id', 'source'))
    return {student: bytes(sources[number]).decode('utf-8', errors='replace')
            for student, number in submissions.items()}


class Job:
    """A claimed report being computed in a worker process; its input and output are files in
    the data directory (similarity/<id>-<attempt>.*.json)."""

    def __init__(self, config, report):
        self.report, self.beat = report, time.monotonic()
        folder = config.data / 'similarity'
        folder.mkdir(exist_ok=True)
        stem = folder / f"{report.id}-{report.attempt}"
        self.input, self.output = stem.with_suffix('.in.json'), stem.with_suffix('.out.json')
        self.input.write_text(json.dumps({'points': config.points,
                                          'texts': stored_texts(report.submissions),
                                          'pairs': report.pairs}))
        self.process = subprocess.Popen(
            sandbox.die_with_parent([sys.executable, '-m', 'staff.service.similar_worker',
                                     str(self.input), str(self.output)]),
            cwd=common.KIT_DIR, stdin=subprocess.DEVNULL, start_new_session=True)

    def done(self):
        return self.process.poll() is not None

    def result(self):
        """The worker's JSON; None (with the reason in self.failure) if it died."""
        self.failure = f"the worker ended with status {self.process.returncode}"
        try:
            return json.loads(self.output.read_text()) if self.process.returncode == 0 else None
        except (OSError, ValueError):
            return None

    def cancel(self):
        sandbox.kill_group(self.process.pid)
        self.process.wait()

    def clean(self):
        for path in (self.input, self.output):
            path.unlink(missing_ok=True)


def record(job, owner, max_failures):
    """Stores a finished job's result, or gives the report back after a lost worker."""
    result = job.result()
    if result is None:
        print(f"{job.report}: {job.failure}; it goes back to the requests", flush=True)
        requeue(job.report, owner, True, max_failures, job.failure)
    else:
        finish(job.report, owner, result)
    job.clean()

