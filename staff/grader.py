"""The checking system: grades submitted solution.py files, section by section.

    ./run.py grade path/to/solution.py            one submission: table, total
    ./run.py grade submissions/ --csv grades.csv  a directory of them, in parallel

Each section runs in a fresh sandboxed child (staff/child.py, started by
staff/sandbox.py) that gets the inputs of the section's cases, never their
expected outputs, and sends back plain arrays. This process checks them with
common.verify_case, the function ./run.py unittest uses, so the verdicts are
the students' own; only the limits and the hidden cases differ. A section's
points are awarded when every case of every one of its tests passes, the
hidden set's too (common.section_passes). Verdicts: common.Verdict.
"""
import argparse
import csv
import io
import json
import math
import os
import pickle
import py_compile
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import numpy as np

import common
from common import Verdict
from datasets import DATASETS, DataUnavailable, data_dir
from staff import sandbox
from staff.cli import UsageError, find_table, parse_size, table_names
from staff.fixtures import CIFAR_TIME_LIMIT, MNIST_TIME_LIMIT
from staff.kit import KIT_MODULES
from staff.points import STANDARD_TABLE, Section
from staff.sandbox import GIB, MIB, Limits

CHILD_VERDICTS = {Verdict.NOT_IMPLEMENTED, Verdict.FAILED, Verdict.ERROR, Verdict.MEMORY_LIMIT,
                  Verdict.NOT_AVAILABLE}  # what run_case may say of a case (and RAN)
DEFAULT_LIMITS = Limits(wall=common.TIME_LIMIT, cpu=common.TIME_LIMIT, memory=common.MEMORY_LIMIT,
                        threads=1)
TRAINING_MEMORY = common.TRAINING_MEMORY_LIMIT
TRAINING_ALLOWANCE = common.TRAINING_ALLOWANCE
CHANNEL_LIMIT = 256 * MIB
CHILD_SCRIPT = Path(__file__).resolve().with_name('child.py')
HIDDEN = 'hidden: '  # prefix of the hidden cases' names
HIDDEN_FAILURE = "the results differ from the expected ones (hidden cases show no values)"


def cores():
    return len(os.sched_getaffinity(0))


# ================================== Plans ===================================

@dataclass
class Plan:
    """How to grade one section: its cases in order and the child's limits,
    or why it cannot be graded."""
    section: Section
    cases: list = field(default_factory=list)  # (test, case name, case with expected outputs)
    limits: Limits = DEFAULT_LIMITS
    training: bool = False
    unavailable: str = ''


def fixture_cases(fixture, prefix='', skip_training=False):
    return [(fixture.test, prefix + entry['name'], fixture.load_case(entry))
            for entry in fixture.cases if not (skip_training and common.is_training(entry))]


def dataset_problem(cases):
    """Why the datasets of these training cases cannot be loaded, or ''."""
    for case in cases:
        loader = DATASETS.get(case['dataset'])
        if loader is None:
            return f"the kit has no dataset '{case['dataset']}'"
        try:
            loader()
        except DataUnavailable as error:
            return str(error)
    return ''


def section_names(section):
    """The names of a section on the command line (as ./run.py unittest takes them too):
    its number, its title and its tests, in lower case."""
    return {section.number, section.title.lower(), *section.tests}


def select_sections(table, only):
    """The table's sections named by any of the comma-separated names (see section_names)."""
    if not only:
        return list(table.sections)
    wanted = {name.strip().lower() for name in only.split(',') if name.strip()}
    known = set().union(*map(section_names, table.sections))
    if unknown := wanted - known:
        raise UsageError(f"--only: unknown test or section {', '.join(sorted(unknown))}; valid "
                         f"names: {', '.join(sorted(known))}")
    return [section for section in table.sections if wanted & section_names(section)]


# ============================ Isolation probing =============================

def describe_isolation(isolation):
    version = f" ({sandbox.bwrap_version()})" if isolation == 'bwrap' else ''
    return f"{isolation}{version}: {sandbox.DESCRIPTIONS[isolation]}"


@cache
def isolation_problem(isolation):
    """Why `isolation` cannot run a child on this machine, or ''."""
    if isolation != 'none' and not shutil.which(isolation):
        return f"{isolation} is not installed" + (
            " (apt-get install bubblewrap)" if isolation == 'bwrap' else '')
    with tempfile.TemporaryDirectory(prefix='nn-grade-probe-') as directory:
        submission = Path(directory) / 'solution.py'
        submission.write_text('')
        finished, child = run_child(Plan(Section('probe', 'probe', 0.0, ())), submission,
                                    isolation, hide=(), fixtures={}, probe=True)
    if child.imported:
        return ''
    output = finished.output.decode(errors='replace').strip().splitlines()
    return output[-1] if output else f"the probe child exited with status {finished.exit_code}"


def choose_isolation(requested):
    """(isolation, notes): the requested one, or with 'auto' the best that works here."""
    candidates = sandbox.ISOLATIONS if requested == 'auto' else (requested,)
    notes = []
    for isolation in candidates:
        problem = isolation_problem(isolation)
        if not problem:
            return isolation, notes
        notes.append(f"{isolation} does not work here: {problem}")
    raise UsageError(f"--isolation {requested}: {'; '.join(notes)}")


# ============================== Running a child =============================

@cache
def bytecode(source, mtime_ns):
    """The .pyc of a kit file (valid for a copy with the same size and mtime)."""
    with tempfile.TemporaryDirectory() as directory:
        return Path(py_compile.compile(source, cfile=str(Path(directory) / 'compiled.pyc'),
                                       doraise=True)).read_bytes()


@contextmanager
def work_directory(submission, cases, fixtures):
    """A fresh directory: copies of the kit's files (with their bytecode, which
    saves every child compiling them) and public fixtures, the submission as
    solution.py, the child script and the cases' inputs."""
    stage = Path(tempfile.mkdtemp(prefix='nn-grade-')).resolve()
    try:
        (stage / '__pycache__').mkdir()
        for name in KIT_MODULES:
            source = common.KIT_DIR / name
            shutil.copy2(source, stage / name)
            (stage / '__pycache__' / f"{source.stem}.{sys.implementation.cache_tag}.pyc"
             ).write_bytes(bytecode(source, (stage / name).stat().st_mtime_ns))
        for fixture in fixtures.values():
            shutil.copytree(fixture.directory, stage / 'tests' / fixture.directory.name)
        shutil.copyfile(submission, stage / 'solution.py')
        shutil.copyfile(CHILD_SCRIPT, stage / '_grader_child.py')
        inputs = [common.case_inputs(case) for _, _, case in cases]
        (stage / '_grader_cases.pkl').write_bytes(pickle.dumps(inputs, protocol=4))
        yield stage
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def child_environment(stage, threads):
    """A clean environment: no variables of the grader's, a fixed hash seed."""
    return {'PATH': '/usr/local/bin:/usr/bin:/bin', 'HOME': str(stage), 'TMPDIR': str(stage),
            'LANG': 'C.UTF-8', 'PYTHONHASHSEED': '0',
            'NN_DATA_DIR': str(data_dir().resolve()),
            **{name: str(threads) for name in ('OMP_NUM_THREADS', 'OPENBLAS_NUM_THREADS',
                                               'MKL_NUM_THREADS', 'BLIS_NUM_THREADS',
                                               'VECLIB_MAXIMUM_THREADS', 'NUMEXPR_NUM_THREADS')}}


def run_child(plan, submission, isolation, hide, fixtures, probe=False):
    """Runs the plan's cases in a sandboxed child; returns (Finished, ChildReport).

    A probe only checks that the sandbox starts and imports numpy.
    """
    with work_directory(submission, plan.cases, fixtures) as stage:
        jail = {'writable': str(stage), 'hide': list(hide)} if isolation == 'unshare' else None
        setup = json.dumps({'limits': plan.limits.for_child(), 'jail': jail,
                            'path': sandbox.library_path(), 'probe': probe})
        command = [sys.executable, '-I', '-S', '-B', str(stage / '_grader_child.py'), setup,
                   str(stage / '_grader_cases.pkl')]
        finished = sandbox.run(command, isolation, stage, plan.limits,
                               child_environment(stage, plan.limits.threads), CHANNEL_LIMIT,
                               readable=[str(data_dir().resolve())])
    return finished, read_channel(finished.channel, len(plan.cases))


# ============================ The results channel ===========================

class ChannelError(Exception):
    """The child wrote something that is not a well-formed message."""


@dataclass
class ChildReport:
    """What the child said: whether it imported the solution, and each case's results."""
    imported: bool = False
    import_failure: tuple = ()     # (one-line message, traceback)
    results: dict = field(default_factory=dict)  # index: (RAN, {name: array}) or (Verdict, text)
    problem: str = ''              # why the rest of the channel was unreadable


def text(header, key):
    value = header.get(key, '')
    if not isinstance(value, str):
        raise ChannelError(f"'{key}' is not a string")
    return value


def read_array(stream):
    """One .npy array of plain numbers (or strings) from the stream; never a pickle."""
    version = np.lib.format.read_magic(stream)
    if version == (1, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_1_0(stream)
    elif version == (2, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_2_0(stream)
    else:
        raise ChannelError(f".npy version {version}")
    if dtype.hasobject:
        raise ChannelError("an array of Python objects")
    size = math.prod(shape) * dtype.itemsize
    data = stream.read(size)
    if len(data) != size:
        raise ChannelError("an array is cut short")
    return np.frombuffer(data, dtype).reshape(shape, order='F' if fortran else 'C').copy()


def read_result(header, stream, case_count):
    """(case index, (RAN, {name: value}) or (Verdict, message)) of a result message."""
    index = header.get('case')
    if type(index) is not int or not 0 <= index < case_count:
        raise ChannelError(f"case number {index!r}")
    verdict = header.get('verdict')
    if verdict != common.RAN:
        verdict = Verdict(verdict) if verdict in CHILD_VERDICTS else Verdict.ERROR
        return index, (verdict, text(header, 'message'))
    names, special = header.get('arrays'), header.get('special')
    if not (isinstance(names, list) and all(isinstance(name, str) for name in names)
            and isinstance(special, dict) and set(special.values()) <= {'none', 'object'}):
        raise ChannelError("a malformed result")
    results = {name: read_array(stream) for name in names}
    results.update({name: None if kind == 'none' else np.empty(0, dtype=object)
                    for name, kind in special.items()})  # as_array refuses both, as locally
    return index, (common.RAN, results)


def read_channel(data, case_count):
    """Parses what the child wrote; the first result of each case counts."""
    report = ChildReport()
    stream = io.BytesIO(data)
    try:
        while line := stream.readline():
            if not line.endswith(b'\n'):
                raise ChannelError("a message is cut short")
            header = json.loads(line)
            event = header.get('event') if isinstance(header, dict) else None
            if event == 'imported':
                report.imported = True
            elif event == Verdict.IMPORT_FAILED:
                report.import_failure = (text(header, 'message'), text(header, 'details'))
            elif event == 'result':
                index, result = read_result(header, stream, case_count)
                report.results.setdefault(index, result)
            elif event != 'done':
                raise ChannelError(f"unknown message {line[:80]!r}")
    except (ValueError, TypeError, RecursionError, ChannelError) as error:
        report.problem = f"the child's results are unreadable ({error})"
    return report


# ================================= Verdicts =================================

@dataclass
class SectionResult:
    """The verdict of one section."""
    section: Section
    verdict: Verdict
    message: str = ''
    seconds: float = 0.0
    details: str = ''
    output: str = ''
    test_verdicts: dict = field(default_factory=dict)

    @property
    def awarded(self):
        return self.section.points if self.verdict == Verdict.PASSED else 0.0

    def to_json(self):
        return {'section': self.section.number, 'title': self.section.title,
                'tests': list(self.section.tests), 'points': self.section.points,
                'awarded': self.awarded, 'verdict': self.verdict, 'message': self.message,
                'seconds': round(self.seconds, 3), 'test_verdicts': self.test_verdicts,
                'details': self.details, 'output': self.output}


def stop_reason(finished, limits, child, during):
    """(Verdict, message) for a child that ended before sending all its results."""
    if child.problem:
        return Verdict.ERROR, child.problem
    if finished.timed_out:
        return Verdict.TIME_LIMIT, f"the {limits.wall:g} s wall-clock limit ran out {during}"
    if finished.signal == signal.SIGXCPU or (finished.signal == signal.SIGKILL and limits.cpu
                                             and finished.seconds >= limits.cpu):
        return Verdict.TIME_LIMIT, f"the {limits.cpu:g} s CPU time limit ran out {during}"
    if finished.signal == signal.SIGXFSZ:
        return Verdict.ERROR, f"a file grew over the {limits.memory / GIB:g} GiB limit {during}"
    if finished.signal:
        return (Verdict.ERROR,
                f"the process was killed by {signal.Signals(finished.signal).name} {during}")
    if finished.channel_overflow:
        return Verdict.ERROR, f"over {CHANNEL_LIMIT // MIB} MiB of results were sent {during}"
    return Verdict.ERROR, f"the process exited with status {finished.exit_code} {during}"


def judge_case(case, result, hidden):
    """(verdict, one-line message, full message) of one case from the child's result."""
    verdict, payload = result
    if verdict == common.RAN:
        try:
            verdict, message = common.verify_case(case, payload)
        except Exception as error:  # results the check cannot read: a key missing
            verdict = Verdict.FAILED
            message = f"malformed results ({type(error).__name__}: {error})"
    else:
        message = payload
    if hidden and verdict == Verdict.FAILED:
        message = HIDDEN_FAILURE
    lines = message.strip().splitlines() or ['']
    return verdict, lines[-1] if verdict == Verdict.ERROR else lines[0], message


def child_output(finished):
    """What the child printed, with a note of what was dropped over the limit."""
    output = finished.output.decode(errors='replace')
    if finished.output_dropped:
        output += f"\n[{finished.output_dropped} more bytes of output discarded]"
    return output


def import_failed(plan, child, finished):
    """The section's result when solution.py did not import in the child."""
    message, details = child.import_failure or (
        stop_reason(finished, plan.limits, child, 'while importing solution.py')[1], '')
    message = (message.strip().splitlines() or [''])[0]
    return SectionResult(plan.section, Verdict.IMPORT_FAILED, message, details=details)


def walk_cases(plan, child, finished):
    """({test: [(case name, verdict, message)]}, {(test, case name): full message}, stop).

    The cases in order, judged from the child's results, up to the first one the
    child sent none for: there the child stopped, and stop is stop_reason's
    (verdict, message); None when every case has its result.
    """
    outcomes = {test: [] for test in plan.section.tests}
    full_messages = {}
    for index, (test, name, case) in enumerate(plan.cases):
        if index not in child.results:
            stop = stop_reason(finished, plan.limits, child, 'during this case')
            outcomes[test].append((name, *stop))
            return outcomes, full_messages, stop
        verdict, message, full_messages[test, name] = judge_case(
            case, child.results[index], name.startswith(HIDDEN))
        if verdict == Verdict.MEMORY_LIMIT:  # the child's message cannot know this grader's limit
            message = (f"ran out of memory (MemoryError) over the {plan.limits.memory / GIB:g} "
                       f"GiB limit")
        outcomes[test].append((name, verdict, message))
    return outcomes, full_messages, None


def test_results(outcomes, stop):
    """The Result of each test; a test the child never reached gets the stop's verdict."""
    return [common.Result(test, stop[0], "not run: the section stopped before it")
            if stop and not cases else common.summarize(test, cases, 0.0)
            for test, cases in outcomes.items()]


def section_result(plan, results, outcomes, full_messages):
    """The section's verdict from its tests' Results (common.section_passes): passed, or
    the first bad test's verdict and message, with the full message of its first bad case."""
    verdicts = {result.test: result.verdict for result in results}
    if common.section_passes(results):
        notes = '; '.join(result.message for result in results if result.message)
        return SectionResult(plan.section, Verdict.PASSED, notes, test_verdicts=verdicts)
    first = next(result for result in results if not result.passed)
    first_case = next((name for name, verdict, _ in outcomes[first.test]
                       if verdict != Verdict.PASSED), '')
    details = '\n'.join([*first.details, full_messages.get((first.test, first_case), '')]).strip()
    prefix = f"{first.test}: " if len(results) > 1 else ''
    return SectionResult(plan.section, first.verdict, prefix + first.message, details=details,
                         test_verdicts=verdicts)


def judge(plan, child, finished):
    """The section's result: passed only when every case of every test passed."""
    if child.imported:
        outcomes, full_messages, stop = walk_cases(plan, child, finished)
        result = section_result(plan, test_results(outcomes, stop), outcomes, full_messages)
    else:
        result = import_failed(plan, child, finished)
    result.seconds, result.output = finished.seconds, child_output(finished)
    return result


# ================================= Reports ==================================

def printable(text):
    """text with control characters (terminal escapes a submission may raise) shown as \\xNN."""
    return ''.join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in text)


@dataclass
class Report:
    """One submission's grades."""
    submission: str
    sections: list
    isolation: str
    limits: dict           # {'sections' or a training test: description of its limits}
    seconds: float = 0.0
    failure: str = ''      # why grading this submission broke down, if it did

    @property
    def total(self):
        return sum(result.awarded for result in self.sections)

    @property
    def max_total(self):
        return sum(result.section.points for result in self.sections)

    def to_json(self):
        return {'submission': self.submission, 'total': self.total, 'max_total': self.max_total,
                'sections': [result.to_json() for result in self.sections],
                'isolation': self.isolation, 'limits': self.limits,
                'seconds': round(self.seconds, 3), 'failure': self.failure}

    def to_gradescope(self):
        """Gradescope's results.json: a test per section."""
        tests = []
        for result in self.sections:
            output = result.verdict + (f": {result.message}" if result.message else '')
            if result.verdict in (Verdict.ERROR, Verdict.IMPORT_FAILED) and result.details:
                output += '\n\n' + result.details
            tests.append({'name': f"{result.section.number} {result.section.title}",
                          'number': result.section.number, 'score': result.awarded,
                          'max_score': result.section.points, 'output': output,
                          # Gradescope's own status words
                          'status': 'passed' if result.verdict == Verdict.PASSED else 'failed',
                          'visibility': 'visible'})
        return {'score': self.total, 'execution_time': round(self.seconds, 1),
                'output': self.footer(), 'visibility': 'visible', 'tests': tests}

    def non_passed(self):
        """'2.1.2 failed;3.7 not available': the verdicts other than passed."""
        if self.failure:
            return Verdict.ERROR
        return ';'.join(f"{result.section.number} {result.verdict}" for result in self.sections
                        if result.verdict != Verdict.PASSED)

    def footer(self):
        limits = '; '.join(f"{name}: {text}" for name, text in self.limits.items())
        return f"isolation: {self.isolation}\nlimits: {limits}"

    def table(self):
        lines = [f"{'section':8} {'title':22} {'points':>6} {'awarded':>7}  {'verdict':15} "
                 f"{'time':>7}"]
        for result in self.sections:
            lines.append(f"{result.section.number:8} {result.section.title[:22]:22} "
                         f"{result.section.points:6g} {result.awarded:7g}  {result.verdict:15} "
                         f"{result.seconds:6.1f}s")
            if result.message:
                lines.append(f"{'':9}{printable(result.message)}")
        if self.failure:
            lines.append(f"grading failed: {printable(self.failure)}")
        lines.append(f"total {self.total:g} / {self.max_total:g}")
        return '\n'.join(lines + [self.footer()])


# ================================= Grading ==================================

class Slots:
    """Ordinary sections run side by side; a training section runs alone.

    A training section gets every core, and its time limit is only fair
    when nothing else runs; waiting training sections go first.
    """

    def __init__(self):
        self.condition = threading.Condition()
        self.running, self.alone, self.waiting_alone = 0, False, 0

    @contextmanager
    def shared(self):
        with self.condition:
            self.condition.wait_for(lambda: not self.alone and not self.waiting_alone)
            self.running += 1
        try:
            yield
        finally:
            with self.condition:
                self.running -= 1
                self.condition.notify_all()

    @contextmanager
    def exclusive(self):
        with self.condition:
            self.waiting_alone += 1
            self.condition.wait_for(lambda: not self.alone and not self.running)
            self.waiting_alone -= 1
            self.alone = True
        try:
            yield
        finally:
            with self.condition:
                self.alone = False
                self.condition.notify_all()


class Grader:
    """Grades submissions against the kit's fixtures with one points table."""

    def __init__(self, table, only='', hidden_dir=None, limits=DEFAULT_LIMITS,
                 training_time=None, training_memory=TRAINING_MEMORY, training_threads=None,
                 isolation='auto', private=()):
        self.limits = limits
        self.training_time, self.training_memory = training_time, training_memory
        self.training_threads = training_threads or cores()
        self.fixtures = common.find_fixtures()
        self.hidden = self.hidden_fixtures(hidden_dir)
        self.plans = [self.plan(section) for section in select_sections(table, only)]
        self.isolation, notes = choose_isolation(isolation)
        self.description = '; '.join([describe_isolation(self.isolation), *notes])
        self.hide = [str(Path(path).resolve()) for path in (hidden_dir, *private)
                     if path and Path(path).is_dir() and self.may_hide(Path(path).resolve())]
        self.slots = Slots()

    @staticmethod
    def hidden_fixtures(directory):
        if directory is None:
            return None
        if not Path(directory).is_dir():
            raise UsageError(f"--hidden {directory}: no such directory")
        fixtures = common.find_fixtures(directory)
        if not fixtures:
            raise UsageError(f"--hidden {directory}: no NN_unittest_<test>_input directories in it")
        return fixtures

    def may_hide(self, path):
        """Whether hiding `path` from the child leaves it what it needs."""
        needed = [Path(tempfile.gettempdir()).resolve(), data_dir().resolve(),
                  *map(Path, sandbox.python_paths())]
        return not any(path == other or path in other.parents for other in needed)

    def training_limits(self, cases):
        wall = self.training_time or max(case['time_limit'] for case in cases) + TRAINING_ALLOWANCE
        return Limits(wall=wall, cpu=None, memory=self.training_memory,
                      threads=self.training_threads)

    def plan(self, section):
        cases = []
        for test in section.tests:
            fixture = self.fixtures.get(test)
            if fixture is None:
                return Plan(section, unavailable=f"the kit has no fixture directory for test "
                                                 f"'{test}' in {common.TESTS_DIR}")
            cases += fixture_cases(fixture)
            if self.hidden is not None and not fixture.is_training:
                if test not in self.hidden:
                    raise UsageError(f"--hidden: the hidden set has no fixture directory for "
                                     f"test '{test}'")
                cases += fixture_cases(self.hidden[test], HIDDEN, skip_training=True)
        training = [case for _, _, case in cases if common.is_training(case)]
        if not training:
            return Plan(section, cases, self.limits)
        if problem := dataset_problem(training):
            return Plan(section, unavailable=problem)
        return Plan(section, cases, self.training_limits(training), training=True)

    def limit_descriptions(self):
        limits = {'sections': self.limits.describe()}
        for plan in self.plans:
            if plan.training:
                limits['+'.join(plan.section.tests)] = plan.limits.describe()
        return limits

    def grade(self, submission):
        """The Report of one solution.py."""
        start = time.monotonic()
        results, import_failure = [], None
        for plan in self.plans:
            if plan.unavailable:
                results.append(SectionResult(plan.section, Verdict.NOT_AVAILABLE, plan.unavailable))
            elif import_failure:
                results.append(SectionResult(plan.section, Verdict.IMPORT_FAILED,
                                             import_failure.message,
                                             details=import_failure.details))
            else:
                results.append(self.grade_section(plan, submission))
                if results[-1].verdict == Verdict.IMPORT_FAILED:
                    import_failure = results[-1]
        return Report(str(submission), results, self.description, self.limit_descriptions(),
                      time.monotonic() - start)

    def grade_section(self, plan, submission):
        with self.slots.exclusive() if plan.training else self.slots.shared():
            finished, child = run_child(plan, submission, self.isolation, self.hide, self.fixtures)
        return judge(plan, child, finished)

    def failed_report(self, submission, error):
        """The report of a submission that broke the grader: 0 points, verdict error."""
        message = f"the grader failed on this submission ({type(error).__name__}: {error})"
        return Report(str(submission), [SectionResult(plan.section, Verdict.ERROR, message)
                                        for plan in self.plans],
                      self.description, self.limit_descriptions(), failure=message)

    def grade_all(self, submissions, jobs, progress=print):
        """{student: Report} for {student: path}, `jobs` submissions at a time."""
        reports = {}
        pool = ThreadPoolExecutor(max_workers=jobs)
        try:
            futures = {pool.submit(self.grade, path): student
                       for student, path in submissions.items()}
            for future in as_completed(futures):
                student = futures[future]
                try:
                    reports[student] = future.result()
                except Exception as error:  # whatever the submission did to us: a row, go on
                    reports[student] = self.failed_report(submissions[student], error)
                report = reports[student]
                progress(f"{printable(student)}: {report.total:g} / {report.max_total:g}"
                         + (f"  ({report.non_passed()})" if report.non_passed() else ''))
        finally:  # on Ctrl-C, only the sections already running finish
            pool.shutdown(cancel_futures=True)
        return dict(sorted(reports.items()))


# =================================== CLI ====================================

def find_submissions(directory):
    """{student: path} from <student>.py files and <student>/solution.py folders."""
    files = {path.stem: path for path in directory.glob('*.py')}
    folders = {path.name: path / 'solution.py' for path in directory.iterdir()
               if path.is_dir() and (path / 'solution.py').is_file()}
    if both := sorted(files.keys() & folders.keys()):
        raise UsageError(f"{directory}: {', '.join(both)} submitted both as <name>.py and as "
                         f"<name>/solution.py; keep one")
    if not files and not folders:
        raise UsageError(f"{directory}: no submissions (<student>.py or <student>/solution.py)")
    return {**files, **folders}


# The output formats: write(path, grader, reports, batch) with reports {student: Report};
# batch is False for one submission given as a file.

def write_json(path, grader, reports, batch=True):
    """One submission: its report; a batch: {student: report}."""
    data = ({student: report.to_json() for student, report in reports.items()} if batch
            else next(iter(reports.values())).to_json())
    Path(path).write_text(json.dumps(data, indent=2) + '\n')


def write_gradescope(path, grader, reports, batch=False):
    """Gradescope's results.json of the one submission."""
    data = next(iter(reports.values())).to_gradescope()
    Path(path).write_text(json.dumps(data, indent=2) + '\n')


def write_csv(path, grader, reports, batch=True):
    """A row per student: points per section, total, the verdicts other than passed."""
    numbers = [plan.section.number for plan in grader.plans]
    with open(path, 'w', newline='') as file:
        writer = csv.writer(file)
        writer.writerow(['student', *numbers, 'total', 'verdicts'])
        for student, report in reports.items():
            awarded = {result.section.number: result.awarded for result in report.sections}
            writer.writerow([student, *(f"{awarded[number]:g}" for number in numbers),
                             f"{report.total:g}", report.non_passed()])


@dataclass(frozen=True)
class OutputFormat:
    """An --<name> FILE option: what it writes, and whether a batch can have it."""
    write: Callable
    help: str
    batch: bool = True


OUTPUT_FORMATS = {
    'json': OutputFormat(write_json, 'write the grades as JSON'),
    'gradescope': OutputFormat(write_gradescope, "write Gradescope's results.json (one submission "
                                                 "only)", batch=False),
    'csv': OutputFormat(write_csv, 'write a CSV: student, points per section, total, verdicts'),
}


def add_arguments(parser):
    parser.description = '\n\n'.join(__doc__.split('\n\n')[:2]) + (
        "\n\nExit status: 0 when grading worked, whatever the score; 1 when the grader\n"
        "itself failed; 2 for a usage error.")
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument('submission', type=Path,
                        help='a solution.py, or a directory of <student>.py or '
                             '<student>/solution.py')
    parser.add_argument('--only', default='', metavar='NAMES',
                        help='comma-separated tests or section numbers: grade only their sections')
    parser.add_argument('--sections', default=str(STANDARD_TABLE), metavar='FILE',
                        help=f"points table: a CSV file, or the name of one of the kit's "
                             f"({table_names()}); default standard, the 15-point one")
    parser.add_argument('--hidden', type=Path, metavar='DIR',
                        help='also run the hidden fixture set in DIR (same layout as tests/)')
    for name, output in OUTPUT_FORMATS.items():
        parser.add_argument(f"--{name}", type=Path, metavar='FILE', help=output.help)
    parser.add_argument('--jobs', type=int, default=cores(),
                        help='submissions graded at a time (default: the number of cores)')
    parser.add_argument('--isolation', choices=('auto', *sandbox.ISOLATIONS), default='auto',
                        help='auto (default): bwrap if it works, else unshare, else none')
    limits = parser.add_argument_group('limits of every section but mnist and cifar')
    limits.add_argument('--time', type=float, default=DEFAULT_LIMITS.wall, metavar='SECONDS',
                        help='wall-clock and CPU time (default %(default)g)')
    limits.add_argument('--memory', type=parse_size, default=DEFAULT_LIMITS.memory, metavar='SIZE',
                        help='address space, e.g. 2G (default 2G)')
    limits.add_argument('--threads', type=int, default=DEFAULT_LIMITS.threads,
                        help='BLAS threads (default %(default)s)')
    training = parser.add_argument_group('limits of the training sections (mnist, cifar)')
    training.add_argument('--training-time', type=float, metavar='SECONDS',
                          help=f"wall-clock time (default: the assignment's training limit, "
                               f"{MNIST_TIME_LIMIT} s or {CIFAR_TIME_LIMIT} s, + "
                               f"{TRAINING_ALLOWANCE} s to load data and predict)")
    training.add_argument('--training-memory', type=parse_size, default=TRAINING_MEMORY,
                          metavar='SIZE', help='address space (default 6G)')
    training.add_argument('--training-threads', type=int,
                          help='BLAS threads (default: all cores)')


def make_grader(args, private):
    limits = Limits(wall=args.time, cpu=args.time, memory=args.memory, threads=args.threads)
    return Grader(find_table(args.sections), args.only, args.hidden, limits, args.training_time,
                  args.training_memory, args.training_threads, args.isolation, private)


def main(args):
    """./run.py grade: returns the exit status."""
    target = args.submission
    batch = target.is_dir()
    if batch:
        submissions = find_submissions(target)
        for name, output in OUTPUT_FORMATS.items():
            if getattr(args, name) and not output.batch:
                raise UsageError(f"--{name} takes one submission, not a directory")
    elif not target.is_file():
        raise UsageError(f"no submission at {target}: give a solution.py or a directory")
    grader = make_grader(args, [target if batch else target.parent])
    if batch:
        start = time.monotonic()
        reports = grader.grade_all(submissions, max(args.jobs, 1))
        seconds = time.monotonic() - start
        print(f"graded {len(reports)} submissions in {seconds:.0f} s with {args.jobs} at a time\n"
              f"{next(iter(reports.values())).footer()}")
    else:
        try:
            report = grader.grade(target)
        except Exception as error:  # the grader broke: say so, the status tells
            print(f"./run.py grade: grading failed: {type(error).__name__}: {error}",
                  file=sys.stderr)
            return 1
        print(report.table())
        reports = {target.stem: report}
    for name, output in OUTPUT_FORMATS.items():
        if getattr(args, name):
            output.write(getattr(args, name), grader, reports, batch=batch)
    return 0
