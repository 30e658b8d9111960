"""The checking service's similarity page: the web request only records a request, a
dispatcher computes the report in its worker process (for real, on a small generated
course: independent solutions and disguised copies, tests/disguise.py), the TA sees the
ranked pairs and each pair side by side, a student gets 404, and a report survives a
killed dispatcher."""
import os
import signal
import time
from datetime import timedelta
from pathlib import Path

import disguise
import pytest

from tests import service_django

DATA = Path(service_django.setup())

from django.contrib.auth.models import User  # noqa: E402
from django.utils import timezone  # noqa: E402

import common  # noqa: E402
from staff import similarity  # noqa: E402
from staff.cli import find_table  # noqa: E402
from staff.kit import make_template  # noqa: E402
from staff.service import config as course  # noqa: E402
from staff.service import rules, similar  # noqa: E402
from staff.service.dispatcher import Dispatcher  # noqa: E402
from staff.service.models import Profile, Run, SimilarityReport, Submission  # noqa: E402
from tests.test_service_web import client  # noqa: E402

REFERENCE = (common.KIT_DIR / 'solution.py').read_text()
MNIST_TESTS = {'relu', 'softmax', 'dense', 'crossentropy', 'sgd', 'momentum'}


@pytest.fixture(scope='module')
def generated():
    """A small course of the MNIST table: 3 independent solutions (the reference's regions,
    honest_a's, honest_b's), a disguised copy of the first and one of the reference."""
    template = make_template(REFERENCE, find_table('mnist'))
    sources = disguise.honest_sources(REFERENCE, MNIST_TESTS)
    return disguise.corpus(template, REFERENCE, sources, disguise.seeded(3), 3, 1)


@pytest.fixture
def config(tmp_path):
    SimilarityReport.objects.all().delete()
    Run.objects.all().delete()
    Submission.objects.all().delete()
    User.objects.all().delete()
    toml = tmp_path / 'course.toml'
    toml.write_text('[course]\npoints = "mnist"\n')
    return course.load(toml, DATA)


def account(name, staff=False):
    user = User.objects.create_user(name, f"{name}@example.org", 'a-long-password-7',
                                    is_staff=staff)
    Profile.objects.create(user=user, must_change_password=False)
    return user


@pytest.fixture
def course_with_copies(config, generated):
    """Every generated file uploaded by its student (an older draft first for one of them);
    their grading runs removed (this test is about the similarity report only)."""
    files, base, copied = generated
    earlier = timezone.now() - timedelta(minutes=10)
    for name, text in files.items():
        user = account(name)
        if name == 'honest1':
            rules.upload(config, user, REFERENCE.encode(), earlier)  # replaced by the last one
        rules.upload(config, user, text.encode(), earlier + timedelta(minutes=1))
    Run.objects.all().delete()
    return files, base, copied


def compute(dispatcher, seconds=120, kill=False):
    """Runs the dispatcher's steps until no report is requested or running (killing each
    worker it starts, with kill); returns the newest whole report."""
    deadline = time.monotonic() + seconds
    while SimilarityReport.objects.filter(
            state__in=[SimilarityReport.REQUESTED, SimilarityReport.RUNNING]).exists():
        assert time.monotonic() < deadline, 'the report was not computed in time'
        dispatcher.step()
        if kill and dispatcher.similarity:
            os.killpg(dispatcher.similarity.process.pid, signal.SIGKILL)
        time.sleep(0.1)
    return SimilarityReport.objects.filter(of=None).latest('id')


def test_ta_sees_disguised_copies_on_top_computed_in_the_background(course_with_copies, config):
    files, base, copied = course_with_copies
    ta, alice = account('ta', staff=True), User.objects.get(username='honest0')
    start = time.monotonic()
    response = client(ta).post('/ta/similarity/recompute')
    assert response.status_code == 302 and time.monotonic() - start < 2
    request = SimilarityReport.objects.get()
    assert (request.state, request.result, request.requested_by) == ('requested', None, 'ta'), \
        'the web request only records the request'
    assert 'A report is requested' in client(ta).get('/ta/similarity/').content.decode()

    report = compute(Dispatcher(config, name='similarity-test'))
    assert report.id == request.id and report.state == 'done' and not report.error
    last = {name: Submission.objects.filter(student__username=name).latest('submitted_at').id
            for name in files}
    assert report.submissions == last, 'the last submission of each student, staff left out'
    ranked = [{a, b} for a, b, _ in report.result['pairs']]
    independent = [rank for rank, pair in enumerate(ranked) if len({base[n] for n in pair}) == 2]
    assert max(ranked.index(pair) for pair in copied) < min(independent), \
        'the disguised copies rank above every pair of independent solutions'
    assert not list((config.data / 'similarity').iterdir()), 'the worker files are removed'

    page = client(ta).get('/ta/similarity/').content.decode()
    first_a, first_b, value = report.result['pairs'][0]
    assert value >= similarity.THRESHOLD and 'likely copy' in page
    assert {first_a, first_b} in copied + [{'honest0', '[reference]'}]
    links = [page.index(f'/ta/similarity/{report.id}/{rank}/">{a} ~ {b}</a>')
             for rank, (a, b, _) in enumerate(report.result['pairs'], 1)]
    assert links == sorted(links), 'every pair listed (all are shown here), most similar first'

    pair = client(ta).get(f'/ta/similarity/{report.id}/1/').content.decode()
    assert '<mark>' in pair and pair.count('class="file"') == 2
    for name in (first_a, first_b):
        assert f"<h3>{name}</h3>" in pair
    assert '<style>' in pair and '.side' in pair

    for path in ('/ta/similarity/', f'/ta/similarity/{report.id}/1/'):
        assert client(alice).get(path).status_code == 404, path
    assert client(alice).post('/ta/similarity/recompute').status_code == 404
    assert client(ta).get(f'/ta/similarity/{report.id}/9999/').status_code == 404
    assert SimilarityReport.objects.count() == 1, "a student's post requests nothing"


def test_a_pair_without_stored_regions_is_compared_in_the_background(course_with_copies, config):
    ta = account('ta', staff=True)
    similar.request('ta')
    dispatcher = Dispatcher(config, name='similarity-test')
    report = compute(dispatcher)
    stored = report.result['shown'].pop(0)  # as if it were below the report's top
    report.save()
    page = client(ta).get(f'/ta/similarity/{report.id}/1/').content.decode()
    assert 'Compare in detail' in page and '<mark>' not in page
    client(ta).post(f'/ta/similarity/{report.id}/1/')
    client(ta).post(f'/ta/similarity/{report.id}/1/')
    detail = SimilarityReport.objects.get(of=report)
    assert detail.state == 'requested', 'asked for twice, requested once, computed later'
    compute(dispatcher)
    report.refresh_from_db()
    again = next(entry for entry in report.result['shown']
                 if (entry['student_a'], entry['student_b']) ==
                 (stored['student_a'], stored['student_b']))
    assert again == stored, 'the same regions as the whole report gave'
    assert '<mark>' in client(ta).get(f'/ta/similarity/{report.id}/1/').content.decode()


def test_a_killed_dispatchers_report_is_taken_again(course_with_copies, config):
    similar.request('ta')
    lost = similar.claim('killed-dispatcher', lease=1)
    assert lost.state == 'running'
    similar.requeue_expired(config.max_failures, timezone.now() + timedelta(seconds=2))
    report = compute(Dispatcher(config, name='restarted'))
    assert (report.id, report.attempt, report.failures) == (lost.id, 2, 1)
    assert report.result['pairs'] and not report.error

    similar.request('ta')
    training = Dispatcher(config, name='training', runs='training')
    training.step()
    assert training.similarity is None, 'a dispatcher of training runs leaves it to the others'
    stopping = Dispatcher(config, name='stopping')
    stopping.step()
    assert stopping.similarity is not None
    stopping.shutdown()
    back = SimilarityReport.objects.latest('id')
    assert (back.state, back.failures, back.attempt) == ('requested', 0, 2), \
        'a dispatcher that stops gives it back, not as a failure'


def test_new_submissions_request_a_report_once_uploads_pause(course_with_copies, config):
    newest = Submission.objects.latest('submitted_at').submitted_at
    assert similar.request_when_new(newest + timedelta(seconds=10)) is None, 'uploads go on'
    first = similar.request_when_new(newest + timedelta(seconds=similar.DEBOUNCE + 1))
    assert first is not None and first.requested_by == ''
    assert similar.request_when_new(newest + timedelta(hours=1)) is None, 'one at a time'
    compute(Dispatcher(config, name='similarity-test'))
    assert similar.request_when_new(newest + timedelta(hours=1)) is None, 'nothing new since'
    rules.upload(config, User.objects.get(username='honest2'), REFERENCE.encode(), newest)
    assert similar.request_when_new(newest + timedelta(hours=1)) is not None


def test_staff_uploads_are_left_out_and_no_report_yet(config):
    """A TA's own upload is not a student's; the page says when there is no report yet."""
    ta = account('ta', staff=True)
    rules.upload(config, ta, REFERENCE.encode())
    assert similar.current_submissions() == {}
    page = client(ta).get('/ta/similarity/').content.decode()
    assert 'No report yet' in page and 'Similarity</a>' in page


def test_a_failing_worker_is_retried_then_reported(course_with_copies, config):
    """A worker that dies (here: killed, as by the OOM killer) makes the next attempt;
    after max_failures lost attempts the page says so, and the old report stays shown."""
    ta = account('ta', staff=True)
    similar.request('ta')
    dispatcher = Dispatcher(config, name='similarity-test')
    computed = compute(dispatcher)
    similar.request('ta')
    failed = compute(dispatcher, kill=True)
    assert (failed.failures, failed.attempt, failed.result) == (config.max_failures,
                                                               config.max_failures + 1, None)
    page = client(ta).get('/ta/similarity/').content.decode()
    assert 'the similarity worker was lost 3 times: the worker ended with status -9' in page
    assert f'/ta/similarity/{computed.id}/1/' in page
