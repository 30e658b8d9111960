"""The course's rules: deadlines, quotas, what runs when, and how a
submission's runs add up to its report and the gradebook."""
import hashlib
import os
import uuid
from dataclasses import dataclass, field
from datetime import timedelta

from django.db import transaction
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone

from staff.service import grading, queue
from staff.service.models import Profile, Run, Submission

MAX_BYTES = 1 << 20


class Refused(Exception):
    """An upload or request the rules refuse: the one-line reason for the student."""


def extension(user):
    profile = Profile.objects.filter(user=user).first()
    return profile.extension_hours if profile else 0


def too_big(size):
    return f"the file has {size} bytes; solution.py may have at most {MAX_BYTES} (1 MiB)"


def check_source(data):
    """The text of an uploaded solution.py, or Refused with the reason."""
    if not data:
        raise Refused("the file is empty: upload your solution.py")
    if len(data) > MAX_BYTES:
        raise Refused(too_big(len(data)))
    try:
        text = data.decode('utf-8')
    except UnicodeDecodeError as error:
        raise Refused(f"the file is not UTF-8 text (byte {error.start}): upload solution.py "
                      f"itself, not an archive or a notebook") from None
    if '\0' in text:
        raise Refused("the file holds NUL bytes: it is not Python source")
    try:
        compile(text, 'solution.py', 'exec', dont_inherit=True)
    except SyntaxError as error:
        raise Refused(f"solution.py line {error.lineno}: {error.msg}; fix it and upload "
                      f"again") from None
    except ValueError as error:
        raise Refused(f"solution.py is not Python source ({error})") from None
    return text


def store(config, user, data):
    """Writes the file (fsynced, renamed into place) and returns its path in the data directory."""
    folder = config.submissions_dir / user.username
    folder.mkdir(parents=True, exist_ok=True)
    name = f"{timezone.now():%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}.py"
    temporary = folder / f".{name}.part"
    with open(temporary, 'wb') as file:
        file.write(data)
        file.flush()
        os.fsync(file.fileno())
    os.replace(temporary, folder / name)
    directory = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
    return (folder / name).relative_to(config.data)


def upload(config, user, data, now=None):
    """Stores a student's solution.py and queues its ordinary sections; Refused if the
    rules say no."""
    now = now or timezone.now()
    soft, hard = config.deadlines(extension(user))
    if hard and now > hard:
        raise Refused(f"the hard deadline ({timezone.localtime(hard):%Y-%m-%d %H:%M %Z}) has "
                      f"passed: uploads are closed")
    recent = Submission.objects.filter(student=user, submitted_at__gt=now - timedelta(hours=1))
    if recent.count() >= config.uploads_per_hour:
        oldest = recent.order_by('submitted_at').first().submitted_at
        raise Refused(f"at most {config.uploads_per_hour} uploads an hour: the next one is "
                      f"possible at {timezone.localtime(oldest + timedelta(hours=1)):%H:%M}")
    check_source(data)
    path = store(config, user, data)
    ordinary, _ = grading.split_sections(config)
    with transaction.atomic():
        submission = Submission.objects.create(
            student=user, path=str(path), source=data, sha256=hashlib.sha256(data).hexdigest(),
            size=len(data), submitted_at=now, late=bool(soft and now > soft))
        queue.enqueue(submission, ordinary)
    return submission


def request_training(config, submission, now=None):
    """Queues the training sections of a student's submission, at most N times a day."""
    now = now or timezone.now()
    requests = Run.objects.filter(submission__student=submission.student, requested=True,
                                  created_at__gt=now - timedelta(days=1)).count()
    if requests >= config.training_per_day:
        raise Refused(f"training sections may be asked for {config.training_per_day} time(s) a "
                      f"day; ask again tomorrow")
    _, training = grading.split_sections(config)
    if not training:
        raise Refused("this course has no training sections")
    with transaction.atomic():
        for number in training:
            queue.enqueue(submission, [number], Run.TRAINING, training=True, requested=True)


def queue_final_training(config, now=None):
    """After a student's (soft) deadline, queues the training sections of their
    final on-time submission, once."""
    now = now or timezone.now()
    _, training = grading.split_sections(config)
    if not training or not config.soft_deadline or now <= config.soft_deadline:
        return
    newer = Submission.objects.filter(
        Q(submitted_at__gt=OuterRef('submitted_at'))
        | Q(submitted_at=OuterRef('submitted_at'), id__gt=OuterRef('id')),
        student=OuterRef('student'), late=False)
    finals = (Submission.objects.filter(late=False, final_training_queued=False)
              .exclude(Exists(newer)).select_related('student'))
    for submission in finals:  # each student's last on-time submission, not queued yet
        soft, _ = config.deadlines(extension(submission.student))
        if now <= soft:
            continue
        with transaction.atomic():
            for number in training:
                queue.enqueue(submission, [number], Run.TRAINING, training=True)
            Submission.objects.filter(id=submission.id).update(final_training_queued=True)


def rejudge(config, submissions, sections):
    """Queues the sections again for each submission, behind new uploads (a
    training section only where it ran before); returns the number of runs."""
    _, training = grading.split_sections(config)
    ordinary = [number for number in sections if number not in training]
    count = 0
    with transaction.atomic():
        for submission in submissions:
            if ordinary:
                queue.enqueue(submission, ordinary, Run.REJUDGE)
                count += 1
            ran = {number for run in submission.runs.all() for number in run.sections}
            for number in sections:
                if number in training and number in ran:
                    queue.enqueue(submission, [number], Run.TRAINING_REJUDGE, training=True)
                    count += 1
    return count


# ================================= Reports ==================================

@dataclass
class Row:
    """One section of a submission's report."""
    number: str
    title: str
    points: float
    verdict: str = 'not run'
    message: str = ''
    awarded: float = 0.0
    seconds: float = 0.0
    details: str = ''
    output: str = ''
    state: str = ''          # 'queued' or 'running' while a run for it is pending


@dataclass
class Report:
    submission: Submission
    rows: list
    state: str               # 'queued', 'running' or 'graded'
    position: int = 0        # runs ahead in the queue, while queued
    running: str = ''        # the section being graded
    grader: dict = field(default_factory=dict)

    @property
    def total(self):
        return sum(row.awarded for row in self.rows)

    @property
    def max_total(self):
        return sum(row.points for row in self.rows)

    def non_passed(self):
        """'2.1.2 failed;2.4 not run', as in ./run.py grade --csv."""
        return ';'.join(f"{row.number} {row.verdict}" for row in self.rows
                        if row.verdict != 'passed')


def report(config, submission):
    """The submission's report: the newest result of each section, and what is pending."""
    rows = {section.number: Row(section.number, section.title, section.points)
            for section in grading.sections(config)}
    runs = list(submission.runs.order_by('id'))
    grader = {}
    for run in runs:
        if run.state == Run.DONE:
            grader = run.result.get('grader') or grader
            for number, result in run.result['sections'].items():
                if number in rows:
                    row = rows[number]
                    row.verdict, row.message = result['verdict'], result.get('message', '')
                    row.awarded = result.get('awarded', 0.0)
                    row.seconds = result.get('seconds', 0.0)
                    row.details, row.output = result.get('details', ''), result.get('output', '')
                    row.state = ''
        else:
            for number in run.sections:
                if number in rows:
                    rows[number].state = 'running' if (run.state == Run.LEASED and
                                                       number == run.current_section) else 'queued'
    pending = [run for run in runs if run.state != Run.DONE]
    leased = [run for run in pending if run.state == Run.LEASED]
    state = 'graded' if not pending else 'running' if leased else 'queued'
    position = min((queue.position(run) for run in pending if run.state == Run.QUEUED), default=0)
    running = leased[0].current_section if leased else ''
    return Report(submission, list(rows.values()), state, position, running, grader)


def chosen_submission(config, user):
    """The submission the gradebook counts: the last on-time one (or the last
    late one if none was on time), or with gradebook = 'best' the best one."""
    submissions = list(Submission.objects.filter(student=user).order_by('-submitted_at', '-id'))
    if not submissions:
        return None
    if config.gradebook == 'best':
        return max(submissions, key=lambda item: (report(config, item).total, item.submitted_at))
    return next((item for item in submissions if not item.late), submissions[0])
