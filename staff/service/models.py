"""The service's tables: students, submissions, and runs (the job queue)."""
from django.conf import settings
from django.db import models


class Profile(models.Model):
    """A student's (or TA's) course data beside Django's User (username = student id)."""
    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE)
    name = models.CharField(max_length=200, blank=True)
    must_change_password = models.BooleanField(default=True)
    extension_hours = models.FloatField(default=0, help_text='added to both deadlines')

    def __str__(self):
        return self.user.username


class FailedLogin(models.Model):
    """One failed login: repeated ones slow down further tries of that username."""
    username = models.CharField(max_length=150, db_index=True)
    at = models.DateTimeField(auto_now_add=True, db_index=True)


class SubmissionManager(models.Manager):
    """Leaves each file's bytes in the database until they are asked for."""

    def get_queryset(self):
        return super().get_queryset().defer('source')


class Submission(models.Model):
    student = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT,
                                related_name='submissions')
    path = models.CharField(max_length=500, help_text='the stored file, in the data directory')
    source = models.BinaryField(help_text="the file's bytes: what dispatchers on any machine read")
    sha256 = models.CharField(max_length=64)
    size = models.IntegerField()
    submitted_at = models.DateTimeField(db_index=True)
    late = models.BooleanField(default=False)
    final_training_queued = models.BooleanField(default=False)

    objects = SubmissionManager()

    class Meta:
        ordering = ('-submitted_at', '-id')

    def __str__(self):
        return f"#{self.id} of {self.student.username}"


class Run(models.Model):
    """One unit of queued work: some sections of one submission.

    state: queued -> leased (a dispatcher's claim, renewed by heartbeat until
    lease_expires) -> done. A lost lease puts it back to queued with attempt + 1;
    only the current attempt's result is accepted, and it is written once.
    """
    QUEUED, LEASED, DONE = 'queued', 'leased', 'done'
    UPLOAD, REJUDGE, TRAINING, TRAINING_REJUDGE = 0, 10, 20, 30  # priority: lower goes first

    submission = models.ForeignKey(Submission, on_delete=models.CASCADE, related_name='runs')
    sections = models.JSONField(help_text='section numbers, graded in this order')
    training = models.BooleanField(default=False)
    requested = models.BooleanField(default=False, help_text='training asked for by the student')
    priority = models.IntegerField(default=UPLOAD)
    state = models.CharField(max_length=10, default=QUEUED)
    attempt = models.IntegerField(default=1)
    failures = models.IntegerField(default=0, help_text='attempts lost (killed worker, lease out)')
    lease_owner = models.CharField(max_length=200, blank=True)
    lease_expires = models.DateTimeField(null=True, blank=True)
    current_section = models.CharField(max_length=20, blank=True)
    partial = models.JSONField(default=dict, help_text='{section: result} recorded so far')
    result = models.JSONField(null=True, blank=True, help_text='{grader, sections: {number: ...}}')
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = (models.Index(fields=['state', 'priority', 'id']),)

    def __str__(self):
        return f"run {self.id} ({', '.join(self.sections)}) of submission {self.submission_id}"


class Dispatcher(models.Model):
    """A dispatcher process, for the queue-health page."""
    name = models.CharField(max_length=200, unique=True)
    engine = models.CharField(max_length=300, blank=True, help_text="the engine's description")
    slots = models.IntegerField(help_text="the engine's slots (on Dask: of the workers now)")
    running = models.IntegerField(default=0)
    started_at = models.DateTimeField()
    last_seen = models.DateTimeField()


class SimilarityReport(models.Model):
    """The similarity report of the current submissions (staff/similarity.py), or the
    detailed comparison of chosen pairs of one (`pairs`, `of`); computed by a dispatcher.

    state: requested -> running (a dispatcher's claim, renewed by heartbeat until
    lease_expires) -> done. A lost lease puts it back to requested with attempt + 1;
    only the current attempt's result is stored.
    """
    REQUESTED, RUNNING, DONE = 'requested', 'running', 'done'

    state = models.CharField(max_length=10, default=REQUESTED)
    requested_by = models.CharField(max_length=150, blank=True,
                                    help_text="a TA's username; blank: new submissions")
    of = models.ForeignKey('self', null=True, blank=True, on_delete=models.CASCADE,
                           related_name='details', help_text='the report whose pairs these are')
    pairs = models.JSONField(default=list, help_text='[[a, b, similarity]] to compare in detail '
                                                     '(empty: the whole report)')
    submissions = models.JSONField(default=dict, help_text='{student: submission id} compared')
    last_submission = models.BigIntegerField(default=0, help_text='the newest submission id then')
    attempt = models.IntegerField(default=1)
    failures = models.IntegerField(default=0)
    lease_owner = models.CharField(max_length=200, blank=True)
    lease_expires = models.DateTimeField(null=True, blank=True)
    result = models.JSONField(null=True, blank=True, help_text='similarity.Report.to_json()')
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    def __str__(self):
        return f"similarity report {self.id} ({self.state})"
