"""The web pages: students log in, upload and read their reports; TAs see the
gradebook, submissions, the queue and similar submissions, and rejudge."""
import csv
import io
from datetime import timedelta
from functools import wraps

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import authenticate, login, logout, update_session_auth_hash
from django.contrib.auth.decorators import login_required
from django.contrib.auth.forms import PasswordChangeForm
from django.contrib.auth.models import User
from django.db.models import Count, Min, Q
from django.http import FileResponse, Http404, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.safestring import mark_safe
from django.views.decorators.http import require_POST

from staff import similarity
from staff.service import grading, rules, similar
from staff.service.models import Dispatcher, FailedLogin, Profile, Run, SimilarityReport, Submission

FREE_FAILURES = 5                # failed logins of a username before it slows down
FAILURE_WINDOW = timedelta(minutes=15)


class PasswordChangeFirst:
    """Middleware: a user with an initial password must change it before anything else."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        free = (reverse('password'), reverse('logout'), reverse('login'))
        if (request.user.is_authenticated and request.path not in free
                and not request.path.startswith(settings.STATIC_URL)
                and Profile.objects.filter(user=request.user, must_change_password=True).exists()):
            return redirect('password')
        return self.get_response(request)


def course():
    return settings.COURSE


def staff_only(view):
    @wraps(view)
    def checked(request, *args, **kwargs):
        if not request.user.is_staff:
            raise Http404
        return view(request, *args, **kwargs)
    return login_required(checked)


# ================================ Accounts ==================================

def login_wait(username, now):
    """Seconds this username must wait before another try (0: it may try now)."""
    failures = FailedLogin.objects.filter(username=username, at__gt=now - FAILURE_WINDOW)
    count = failures.count()
    if count < FREE_FAILURES:
        return 0
    wait = min(2 ** (count - FREE_FAILURES) * 5, FAILURE_WINDOW.total_seconds())
    last = failures.order_by('-at').first().at
    return max(0, (last + timedelta(seconds=wait) - now).total_seconds())


def login_view(request):
    error = ''
    if request.method == 'POST':
        username = request.POST.get('username', '').strip()
        now = timezone.now()
        if wait := login_wait(username, now):
            error = f"Too many failed logins for {username}: try again in {wait:.0f} s."
        elif user := authenticate(request, username=username,
                                  password=request.POST.get('password', '')):
            login(request, user)
            target = request.GET.get('next', '')
            safe = url_has_allowed_host_and_scheme(target, {request.get_host()})
            return redirect(target if target and safe else 'home')
        else:
            FailedLogin.objects.create(username=username)
            error = "Wrong student id or password."
    return render(request, 'service/login.html', {'error': error})


def logout_view(request):
    logout(request)
    return redirect('login')


@login_required
def password_view(request):
    form = PasswordChangeForm(request.user, request.POST or None)
    if request.method == 'POST' and form.is_valid():
        user = form.save()
        update_session_auth_hash(request, user)
        Profile.objects.update_or_create(user=user, defaults={'must_change_password': False})
        messages.success(request, 'Your password is changed.')
        return redirect('home')
    first = Profile.objects.filter(user=request.user, must_change_password=True).exists()
    return render(request, 'service/password.html', {'form': form, 'first': first})


# ================================ Students ==================================

@login_required
def home(request):
    if request.method == 'POST':
        upload = request.FILES.get('solution')
        try:
            if upload is None:
                raise rules.Refused("choose your solution.py first")
            if upload.size > rules.MAX_BYTES:
                raise rules.Refused(rules.too_big(upload.size))
            submission = rules.upload(course(), request.user, upload.read())
        except rules.Refused as refusal:
            messages.error(request, f"Not accepted: {refusal}")
            return redirect('home')
        return redirect('submission', submission.id)
    submissions = [rules.report(course(), item) for item in
                   Submission.objects.filter(student=request.user)]
    soft, hard = course().deadlines(rules.extension(request.user))
    return render(request, 'service/home.html', {
        'reports': submissions, 'soft': soft, 'hard': hard,
        'uploads_per_hour': course().uploads_per_hour})


def visible_submission(request, submission_id):
    """The submission if this user may see it; 404 otherwise, whether it exists or not."""
    submission = Submission.objects.filter(id=submission_id).select_related('student').first()
    if submission is None or not (request.user.is_staff or submission.student == request.user):
        raise Http404
    return submission


@login_required
def submission_view(request, submission_id):
    submission = visible_submission(request, submission_id)
    report = rules.report(course(), submission)
    _, training = grading.split_sections(course())
    return render(request, 'service/submission.html', {
        'report': report, 'staff': request.user.is_staff, 'training': training,
        'refresh': report.state != 'graded'})


@login_required
def submission_file(request, submission_id):
    submission = visible_submission(request, submission_id)
    return FileResponse(io.BytesIO(submission.source), as_attachment=True,
                        filename=f"{submission.student.username}-{submission.id}-solution.py",
                        content_type='text/x-python')


@login_required
@require_POST
def request_training(request, submission_id):
    submission = visible_submission(request, submission_id)
    if submission.student != request.user:
        raise Http404
    try:
        rules.request_training(course(), submission)
        messages.success(request, "The training sections are queued.")
    except rules.Refused as refusal:
        messages.error(request, f"Not queued: {refusal}")
    return redirect('submission', submission.id)


# =================================== TAs ====================================

def gradebook_rows():
    """(student, report or None) for every student account, by student id."""
    students = User.objects.filter(is_staff=False).order_by('username')
    return [(student, chosen and rules.report(course(), chosen))
            for student in students
            for chosen in [rules.chosen_submission(course(), student)]]


@staff_only
def gradebook(request):
    return render(request, 'service/gradebook.html', {
        'rows': gradebook_rows(), 'sections': grading.sections(course()),
        'policy': course().gradebook})


@staff_only
def gradebook_csv(request):
    """The columns of ./run.py grade --csv, plus late and submitted_at."""
    numbers = [section.number for section in grading.sections(course())]
    response = HttpResponse(content_type='text/csv')
    response['Content-Disposition'] = 'attachment; filename="gradebook.csv"'
    writer = csv.writer(response)
    writer.writerow(['student', *numbers, 'total', 'verdicts', 'late', 'submitted_at'])
    for student, report in gradebook_rows():
        if report is None:
            continue
        awarded = {row.number: row.awarded for row in report.rows}
        writer.writerow([student.username, *(f"{awarded[number]:g}" for number in numbers),
                         f"{report.total:g}", report.non_passed(), int(report.submission.late),
                         timezone.localtime(report.submission.submitted_at).isoformat()])
    return response


@staff_only
def student_view(request, username):
    student = User.objects.filter(username=username).first()
    if student is None:
        raise Http404
    reports = [rules.report(course(), item) for item in Submission.objects.filter(student=student)]
    return render(request, 'service/student.html', {'student': student, 'reports': reports})


@staff_only
@require_POST
def rejudge(request):
    numbers = [section.number for section in grading.sections(course())]
    submissions, sections = Submission.objects.all(), numbers
    if submission_id := request.POST.get('submission'):
        submissions = Submission.objects.filter(id=submission_id)
    if section := request.POST.get('section'):
        if section not in numbers:
            raise Http404
        sections = [section]
    count = rules.rejudge(course(), submissions, sections)
    messages.success(request, f"Rejudge queued: {count} run(s), behind new uploads.")
    return redirect(request.POST.get('next') or 'queue')


@staff_only
def queue_view(request):
    now = timezone.now()
    alive = now - timedelta(seconds=max(3 * course().heartbeat, 30))
    counts = Run.objects.aggregate(
        queued=Count('id', filter=Q(state=Run.QUEUED)),
        leased=Count('id', filter=Q(state=Run.LEASED)),
        retried=Count('id', filter=Q(attempt__gt=1, state__in=[Run.QUEUED, Run.LEASED])),
        done=Count('id', filter=Q(state=Run.DONE)),
        oldest=Min('created_at', filter=Q(state=Run.QUEUED)))
    return render(request, 'service/queue.html', {
        'counts': counts, 'oldest_wait': counts['oldest'] and now - counts['oldest'],
        'dispatchers': Dispatcher.objects.order_by('name'), 'alive': alive,
        'leased': Run.objects.filter(state=Run.LEASED).select_related('submission__student')})


# ============================ Similar submissions ===========================

def shown_pairs(report):
    """{(a, b): the stored entry with matching regions} of a computed report."""
    return {(entry['student_a'], entry['student_b']): entry for entry in report.result['shown']}


@staff_only
def similarity_view(request):
    """The ranked pairs of the last computed report: its shown pairs and every likely copy."""
    report, waiting = similar.latest(), similar.pending()
    rows, likely = [], 0
    if report:
        shown = shown_pairs(report)
        likely = sum(value >= similarity.THRESHOLD for _, _, value in report.result['pairs'])
        listed = max(len(shown), likely)
        rows = [(rank, a, b, value, value >= similarity.THRESHOLD, shown.get((a, b)))
                for rank, (a, b, value) in enumerate(report.result['pairs'][:listed], 1)]
    return render(request, 'service/similarity.html', {
        'report': report, 'waiting': waiting, 'rows': rows, 'likely': likely,
        'threshold': similarity.THRESHOLD, 'refresh': waiting is not None,
        'failed': SimilarityReport.objects.filter(of=None).order_by('-id').first()})


@staff_only
@require_POST
def similarity_recompute(request):
    similar.request(by=request.user.username)
    messages.success(request, "The similarity report is requested: a dispatcher computes it in "
                              "the background (about 20 s of CPU for 300 students).")
    return redirect('similarity')


@staff_only
def similarity_pair(request, report_id, rank):
    """Both files of the rank-th pair side by side, their matching regions marked; a pair
    without stored regions can be compared in detail (in the background)."""
    report = SimilarityReport.objects.filter(id=report_id, of=None, state=SimilarityReport.DONE,
                                             result__isnull=False).first()
    if report is None or not 1 <= rank <= len(report.result['pairs']):
        raise Http404
    a, b, value = report.result['pairs'][rank - 1]
    entry = shown_pairs(report).get((a, b))
    waiting = similar.pending(report, [(a, b, value)])
    if request.method == 'POST' and entry is None:
        similar.request(request.user.username, report, [(a, b, value)])
        return redirect('similarity_pair', report.id, rank)
    side = entry and mark_safe(similarity.side_by_side(
        similarity.Match.from_json(entry), similar.texts(report.submissions)))
    return render(request, 'service/similarity_pair.html', {
        'report': report, 'rank': rank, 'a': a, 'b': b, 'value': value, 'side': side,
        'style': mark_safe(similarity.STYLE), 'waiting': waiting, 'refresh': waiting is not None,
        'likely': value >= similarity.THRESHOLD})
