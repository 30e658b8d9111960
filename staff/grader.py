"""The checking system: grades submitted solution.py files, section by section.

    ./run.py grade path/to/solution.py            one submission: table, total
    ./run.py grade submissions/ --csv grades.csv  a directory of them, in parallel

Each section runs in a fresh sandboxed child (staff/child.py, started by
staff/sandbox.py, in a cgroup of its own: staff/cgroups.py) that gets the
inputs of the section's cases, never their expected outputs, and sends back
plain arrays; a training section's data come through a pipe, shuffled, and
its test labels stay here (staff/training.py). This process checks them with
common.verify_case, the function ./run.py unittest uses, so the verdicts are
the students' own; only the limits and the hidden cases differ. A section's
points are awarded when every case of every one of its tests passes, the
hidden set's too (common.section_passes). Verdicts: common.Verdict.
"""
import argparse
import csv
import hashlib
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
import time
import tomllib
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import numpy as np

import common
from common import Verdict
from datasets import DATASETS, DataUnavailable, data_dir
from staff import cgroups, engines, journal, sandbox, training
from staff.cli import UsageError, existing_file, find_table, parse_size, table_names
from staff.engines import SectionRun, SectionTask
from staff.fixtures import CIFAR_TIME_LIMIT, MNIST_TIME_LIMIT
from staff.kit import KIT_MODULES
from staff.points import STANDARD_TABLE, Section
from staff.sandbox import GIB, MIB, PROCESSES, Limits, size_text

AUTO_ISOLATIONS = ('bwrap', 'unshare')  # what --isolation auto tries, best first
CHILD_VERDICTS = {Verdict.NOT_IMPLEMENTED, Verdict.FAILED, Verdict.ERROR, Verdict.MEMORY_LIMIT,
                  Verdict.NOT_AVAILABLE}  # what run_case may say of a case (and RAN)
DEFAULT_LIMITS = Limits(wall=common.TIME_LIMIT, cpu=common.TIME_LIMIT, memory=common.MEMORY_LIMIT,
                        threads=1)
CHANNEL_LIMIT = 256 * MIB
CHILD_SCRIPT = Path(__file__).resolve().with_name('child.py')
HIDDEN = 'hidden: '  # prefix of the hidden cases' names
WINDOW = 16  # sections in flight in a batch at least
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
    import_wall: float | None = None  # seconds to import solution.py, if not counted in limits.wall


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

@cache
def isolation_problem(isolation):
    """Why `isolation` cannot run a child on this machine, or ''."""
    if isolation != 'none' and not shutil.which(isolation):
        return f"{isolation} is not installed" + (
            " (apt-get install bubblewrap)" if isolation == 'bwrap' else '')
    return probe(isolation, DEFAULT_LIMITS)


def probe(isolation, limits, groups=None):
    """Why a child with these limits cannot import numpy in this sandbox, or ''."""
    plan = Plan(Section('probe', 'probe', 0.0, ()), limits=limits)
    finished, child = run_child(b'', plan, isolation, groups, probe=True)
    if child.imported:
        return ''
    output = finished.output.decode(errors='replace').strip().splitlines()
    if output:
        return output[-1]
    if finished.signal:
        return f"the probe child was killed by {signal.Signals(finished.signal).name}"
    return f"the probe child exited with status {finished.exit_code}"


@cache
def limits_problem(isolation, limits, groups):
    """probe() with these limits, once per set of limits."""
    return '' if limits == DEFAULT_LIMITS and groups is None else probe(isolation, limits, groups)


def check_hidden(path, what):
    """A usage error if the sandbox would show `path` to the child."""
    if shown := sandbox.shown(path):
        raise UsageError(f"{what} {path} is inside {shown}, which the sandbox shows to the "
                         f"submission: move it elsewhere")


def choose_isolation(requested):
    """(isolation, notes): the requested one, or with 'auto' the best that works here.

    'auto' never picks 'none': running without a sandbox must be asked for.
    """
    candidates = AUTO_ISOLATIONS if requested == 'auto' else (requested,)
    notes = []
    for isolation in candidates:
        problem = isolation_problem(isolation)
        if not problem:
            return isolation, notes
        notes.append(f"{isolation} does not work here: {problem}")
    advice = "; install bubblewrap, or grade without a sandbox with --isolation none" \
        if requested == 'auto' else ''
    raise UsageError(f"--isolation {requested}: {'; '.join(notes)}{advice}")


# ============================== Running a child =============================

@cache
def bytecode(source, mtime_ns):
    """The .pyc of a kit file (valid for a copy with the same size and mtime)."""
    with tempfile.TemporaryDirectory() as directory:
        return Path(py_compile.compile(source, cfile=str(Path(directory) / 'compiled.pyc'),
                                       doraise=True)).read_bytes()


@contextmanager
def work_directory(source, cases, fixtures):
    """A fresh directory: copies of the kit's files (with their bytecode, which
    saves every child compiling them) and public fixtures, the submission as
    solution.py, the child script and the cases' inputs."""
    stage = Path(tempfile.mkdtemp(prefix='nn-grade-')).resolve()
    try:
        (stage / '__pycache__').mkdir()
        for name in KIT_MODULES:
            module = common.KIT_DIR / name
            shutil.copy2(module, stage / name)
            (stage / '__pycache__' / f"{module.stem}.{sys.implementation.cache_tag}.pyc"
             ).write_bytes(bytecode(module, (stage / name).stat().st_mtime_ns))
        for fixture in fixtures.values():
            shutil.copytree(fixture.directory, stage / 'tests' / fixture.directory.name)
        (stage / 'solution.py').write_bytes(source)
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
            **{name: str(threads) for name in ('OMP_NUM_THREADS', 'OPENBLAS_NUM_THREADS',
                                               'MKL_NUM_THREADS', 'BLIS_NUM_THREADS',
                                               'VECLIB_MAXIMUM_THREADS', 'NUMEXPR_NUM_THREADS')}}


@contextmanager
def section_group(groups, limits):
    """A cgroup for one section's processes (None without cgroups), removed after."""
    if groups is None:
        yield None
        return
    group = groups.create(limits.pids, limits.memory)
    try:
        yield group
    finally:
        group.remove()


def run_child(source, plan, isolation, groups=None, probe=False):
    """Runs one section's cases against a submission (its source) in a sandboxed child.

    The one entry point for running a section, wherever it runs (this
    machine or a cluster engine's worker): `plan` holds the cases and the
    limits, `groups` the cgroups.Cgroups to bound it with (None: rlimits
    only); the kit's public fixtures are copied beside the child. Training
    cases get their data through the child's data pipe
    (staff/training.py). Returns (sandbox.Finished, ChildReport), the
    training results already in the test set's order and timed here. A
    probe only checks that the sandbox starts and imports numpy.
    """
    deliveries = [] if probe else training.deliveries(plan.cases)
    with work_directory(source, plan.cases, {} if probe else common.find_fixtures()) as stage, \
            section_group(groups, plan.limits) as group:
        jail = sandbox.jail_setup(stage) if isolation == 'unshare' else None
        setup = json.dumps({'limits': plan.limits.for_child(), 'jail': jail,
                            'path': sandbox.library_path(), 'probe': probe})
        command = [sys.executable, '-I', '-S', '-B', str(stage / '_grader_child.py'), setup,
                   str(stage / '_grader_cases.pkl')]
        finished = sandbox.run(command, isolation, stage, plan.limits,
                               child_environment(stage, plan.limits.threads), CHANNEL_LIMIT,
                               group, training.feed(deliveries) if deliveries else None,
                               plan.import_wall)
    child = read_channel(finished.channel, len(plan.cases))
    training.restore_results(deliveries, child, finished)
    return finished, child


def kit_files():
    """The kit's files a child's work directory copies: (name there, path here)."""
    files = [(name, common.KIT_DIR / name) for name in KIT_MODULES]
    for fixture in common.find_fixtures().values():
        files += [(f"tests/{fixture.directory.name}/{path.name}", path)
                  for path in sorted(fixture.directory.iterdir()) if path.is_file()]
    return files


@cache
def kit_digest():
    """SHA-256 of the kit files and the child script: a worker must have the same."""
    digest = hashlib.sha256()
    for name, path in [*kit_files(), ('_grader_child.py', CHILD_SCRIPT)]:
        digest.update(f"{name}\0{path.stat().st_size}\0".encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


@cache
def worker_cgroups():
    """This machine's cgroups for sections (None where there are none)."""
    return cgroups.find()[0]


def run_task(task, worker):
    """One section on this machine, where an engine's worker runs it: run_child,
    and the child's raw results as a SectionRun, for the grading host to judge."""
    start = time.monotonic()
    if task.kit != kit_digest():
        return SectionRun(worker=worker, failure=f"the worker's kit at {common.KIT_DIR} differs "
                                                 f"from the grading host's: run workers from a "
                                                 f"checkout of the same commit")
    if problem := isolation_problem(task.isolation):
        return SectionRun(worker=worker, failure=f"{task.isolation} does not work on the worker: "
                                                 f"{problem}")
    plan = Plan(Section('task', task.name, 0.0, ()), list(task.cases), task.limits, task.training,
                import_wall=task.import_wall)
    finished, child = run_child(task.source, plan, task.isolation,
                                worker_cgroups() if task.cgroups else None)
    return SectionRun(finished, child, worker, task.isolation,
                      seconds=time.monotonic() - start)


# ============================ The results channel ===========================

class ChannelError(Exception):
    """The child wrote something that is not a well-formed message."""


@dataclass
class ChildReport:
    """What the child said: whether it imported the solution, and each case's results."""
    imported: bool = False
    import_failure: tuple = ()     # (one-line message, traceback)
    results: dict = field(default_factory=dict)  # index: (RAN, {name: array}) or (Verdict, text)
    result_ends: dict = field(default_factory=dict)  # index: channel offset where its result ends
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
                if index not in report.results:
                    report.results[index], report.result_ends[index] = result, stream.tell()
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
    worker: str = ''   # where it ran: host name, and a Dask worker's address
    tries: int = 0     # tries of the engine (more than 1 when a worker was lost)
    lost: bool = False  # no verdict of its own: every try was lost with its worker

    @property
    def awarded(self):
        return self.section.points if self.verdict == Verdict.PASSED else 0.0

    def to_json(self):
        return {'section': self.section.number, 'title': self.section.title,
                'tests': list(self.section.tests), 'points': self.section.points,
                'awarded': self.awarded, 'verdict': self.verdict, 'message': self.message,
                'seconds': round(self.seconds, 3), 'test_verdicts': self.test_verdicts,
                'details': self.details, 'output': self.output, 'worker': self.worker,
                'tries': self.tries}


def stop_reason(finished, limits, child, during):
    """(Verdict, message) for a child that ended before sending all its results."""
    if child.problem:
        return Verdict.ERROR, child.problem
    if finished.oom_kills:
        return Verdict.MEMORY_LIMIT, oom_message(limits, during)
    if finished.timed_out:
        return Verdict.TIME_LIMIT, f"the {finished.timed_out:g} s wall-clock limit ran out {during}"
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


def oom_message(limits, during):
    return (f"the kernel killed a process for going over the {size_text(limits.memory)} memory "
            f"limit of all the section's processes together {during}")


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


def judge_run(plan, run):
    """The section's result from what its engine brought back."""
    if run.failure:
        result = SectionResult(plan.section, Verdict.ERROR, run.failure)
    else:
        result = judge(plan, run.child, run.finished)
    result.worker, result.tries, result.lost = run.worker, run.tries, run.lost
    return result


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
    if finished.oom_kills and result.verdict != Verdict.MEMORY_LIMIT:  # whichever process the
        during = 'while the section ran' if child.imported else 'while importing solution.py'
        result.verdict = Verdict.MEMORY_LIMIT  # kernel killed, and even if the child went on
        result.message = oom_message(plan.limits, during)
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
    warning: str = ''      # the first line of every output: no sandbox
    engine: str = ''       # the engine that ran its sections

    @property
    def total(self):
        return sum(result.awarded for result in self.sections)

    @property
    def max_total(self):
        return sum(result.section.points for result in self.sections)

    def to_json(self):
        return {**({'warning': self.warning} if self.warning else {}),
                'submission': self.submission, 'total': self.total, 'max_total': self.max_total,
                'sections': [result.to_json() for result in self.sections],
                'isolation': self.isolation, 'limits': self.limits,
                'seconds': round(self.seconds, 3), 'failure': self.failure,
                'engine': self.engine}

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
                'output': '\n'.join([*self.preamble(), self.footer()]), 'visibility': 'visible',
                'tests': tests}

    def non_passed(self):
        """'2.1.2 failed;3.7 not available': the verdicts other than passed."""
        if self.failure:
            return Verdict.ERROR
        return ';'.join(f"{result.section.number} {result.verdict}" for result in self.sections
                        if result.verdict != Verdict.PASSED)

    def summary(self):
        """non_passed() for a console line: an import failure once, with its reason."""
        failed = next((r for r in self.sections if r.verdict == Verdict.IMPORT_FAILED), None)
        if failed is None or self.failure:
            return self.non_passed()
        return f"import failed: {printable(failed.message)}"

    def footer(self):
        limits = '; '.join(f"{name}: {text}" for name, text in self.limits.items())
        engine = f"\nengine: {self.engine}" if self.engine else ''
        return f"isolation: {self.isolation}\nlimits: {limits}{engine}"

    def preamble(self):
        """The lines every output starts with: a warning when there was no sandbox."""
        return [f"WARNING: {self.warning}"] if self.warning else []

    def table(self):
        header = (f"{'section':8} {'title':22} {'points':>6} {'awarded':>7}  {'verdict':15} "
                  f"{'time':>7}  worker")
        lines = [*self.preamble(), header]
        for result in self.sections:
            lines.append(f"{result.section.number:8} {result.section.title[:22]:22} "
                         f"{result.section.points:6g} {result.awarded:7g}  {result.verdict:15} "
                         f"{result.seconds:6.1f}s  {printable(result.worker)}")
            if result.message:
                lines.append(f"{'':9}{printable(result.message)}")
        if self.failure:
            lines.append(f"grading failed: {printable(self.failure)}")
        lines.append(f"total {self.total:g} / {self.max_total:g}")
        return '\n'.join(lines + [self.footer()])


# ================================= Grading ==================================

class Grader:
    """Grades submissions against the kit's fixtures with one points table."""

    def __init__(self, table, only='', hidden_dir=None, limits=DEFAULT_LIMITS,
                 training_time=None, training_memory=common.TRAINING_MEMORY_LIMIT,
                 training_threads=None,
                 isolation='auto', use_cgroups=True):
        self.limits = limits
        self.training_time, self.training_memory = training_time, training_memory
        self.training_threads = training_threads or cores()
        self.fixtures = common.find_fixtures()
        self.hidden = self.hidden_fixtures(hidden_dir)
        sections = select_sections(table, only)
        self.isolation, notes = choose_isolation(isolation)
        if self.isolation != 'none':
            check_hidden(common.KIT_DIR, "the kit's checkout")
            check_hidden(data_dir(), "the data directory")
        self.cgroups, no_cgroups = cgroups.find() if use_cgroups else (None, "not asked for")
        self.check_limits(self.limits, '--memory')
        self.plans = [self.plan(section) for section in sections]
        if training_plan := next((plan for plan in self.plans if plan.training), None):
            self.check_limits(training_plan.limits, '--training-memory')
        self.description = '; '.join([sandbox.describe(self.isolation), self.bounded(no_cgroups),
                                      *notes])
        self.warning = sandbox.NO_SANDBOX if self.isolation == 'none' else ''

    def bounded(self, no_cgroups):
        """What the limits cover, for the isolation line."""
        always = ("each process's address space, CPU time and file size by rlimits, the "
                  "wall-clock time by the grader")
        if self.cgroups:
            return (f"bounded: the number of processes and the memory of all a section's "
                    f"processes together by {self.cgroups.describe()}; {always}")
        return (f"bounded: {always}; NOT bounded: the number of processes and the memory of "
                f"all a section's processes together (no cgroups: {no_cgroups})")

    def check_limits(self, limits, option):
        """A usage error unless a sandboxed child can import numpy within these limits."""
        if problem := limits_problem(self.isolation, limits, self.cgroups):
            raise UsageError(f"{option} {size_text(limits.memory)}: a sandboxed child cannot "
                             f"import numpy within the limits ({problem}); give more")

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

    def training_limits(self, cases):
        wall = self.training_time or (max(case['time_limit'] for case in cases)
                                      + common.TRAINING_ALLOWANCE)
        return Limits(wall=wall, cpu=None, memory=self.training_memory,
                      threads=self.training_threads, processes=self.limits.processes)

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
        return Plan(section, cases, self.training_limits(training), training=True,
                    import_wall=self.limits.wall)

    def limit_descriptions(self):
        limits = {'sections': self.limits.describe()}
        for plan in self.plans:
            if plan.training:
                limits['+'.join(plan.section.tests)] = plan.limits.describe()
        return limits

    def digest(self):
        """SHA-256 of what decides the verdicts but the submission: the points
        table and limits of the sections graded, the kit and its public
        fixtures, the hidden set."""
        digest = hashlib.sha256(kit_digest().encode())
        for plan in self.plans:
            digest.update(repr((plan.section, plan.limits, plan.unavailable)).encode())
        for fixture in (self.hidden or {}).values():
            for path in sorted(fixture.directory.iterdir()):
                digest.update(path.name.encode() + b'\0' + path.read_bytes())
        return digest.hexdigest()

    def task(self, plan, name, source):
        """The SectionTask of one section of one submission (its source): the cases'
        inputs only, never their expected outputs."""
        cases = [(test, case_name, common.case_inputs(case))
                 for test, case_name, case in plan.cases]
        return SectionTask(name, source, cases, plan.limits, plan.training, self.isolation,
                           kit_digest(), plan.import_wall, self.cgroups is not None)

    def grade(self, submission, engine=None):
        """The Report of one solution.py (on a local engine by default)."""
        return self.grade_all({Path(submission).stem: submission}, engine, strict=True)[
            Path(submission).stem]

    def failed_report(self, submission, error):
        """The report of a submission that broke the grader: 0 points, verdict error."""
        message = f"the grader failed on this submission ({type(error).__name__}: {error})"
        return Report(str(submission), [SectionResult(plan.section, Verdict.ERROR, message)
                                        for plan in self.plans],
                      self.description, self.limit_descriptions(), failure=message,
                      warning=self.warning)

    def grade_all(self, submissions, engine=None, on_report=None, bar=None, strict=False):
        """{student: Report} for {student: path}, every section a task of `engine`.

        on_report(student, report) is called as soon as a submission's last
        section is judged. A submission that breaks the grader gets
        failed_report (strict: the exception goes on). On an interrupt, the
        sections not yet started are cancelled.
        """
        own = engine is None
        engine = engine or engines.LocalEngine()
        batch = Batch(self, engine, iter(submissions.items()), on_report or (lambda *_: None),
                      bar, strict)
        try:
            batch.run()
        finally:
            batch.cancel()
            if own:
                engine.close()
        return dict(sorted(batch.reports.items()))


class Batch:
    """Submissions in flight on an engine: their sections submitted, judged as
    they come back, about twice as many sections queued or running as the
    engine has slots (at least WINDOW)."""

    def __init__(self, grader, engine, waiting, on_report, bar, strict):
        self.grader, self.engine, self.waiting = grader, engine, waiting
        self.on_report, self.bar, self.strict = on_report, bar, strict
        self.window = max(WINDOW, 2 * engine.capacity())
        self.flight = {}   # student: Submission
        self.reports = {}
        self.lost_tries = 0
        self.counted = 0.0  # when the bar's counts were last asked of the engine

    def run(self):
        while self.fill() or self.flight:
            if not self.collect():
                time.sleep(0.05)
            self.show()

    def fill(self):
        """Starts submissions while the window has room; False when none is left."""
        while sum(len(entry.handles) for entry in self.flight.values()) < self.window:
            student, path = next(self.waiting, (None, None))
            if student is None:
                return False
            try:
                self.flight[student] = Submission(self.grader, self.engine, student, path)
            except Exception as error:  # an unreadable file: an error row
                self.finish(student, error=error, path=path)
        return True

    def collect(self):
        """Judges the sections that came back; True when any did."""
        arrived = False
        for student, entry in list(self.flight.items()):
            try:
                arrived |= entry.collect()
            except engines.EngineError:  # the engine lost its scheduler: no section can end
                raise
            except Exception as error:  # a result the grader could not judge
                if self.strict:
                    raise
                entry.cancel()
                self.finish(student, error=error, path=entry.path)
                continue
            if entry.complete():
                self.finish(student, entry.report())
        return arrived

    def finish(self, student, report=None, error=None, path=None):
        if error is not None:
            if self.strict:
                raise error
            report = self.grader.failed_report(path, error)
        report.engine = self.engine.describe()
        self.flight.pop(student, None)
        self.lost_tries += sum(result.tries - 1 for result in report.sections if result.tries)
        self.reports[student] = report
        self.on_report(student, report)
        if self.bar is not None:
            self.bar.update(1)

    def show(self):
        """Once a second: the window (Slurm workers come and go), the progress bar."""
        if time.monotonic() < self.counted + 1:
            return
        self.counted = time.monotonic()
        self.window = max(WINDOW, 2 * self.engine.capacity())
        if self.bar is None:
            return
        counts = self.engine.counts()
        lost = self.lost_tries + sum(handle.tries for entry in self.flight.values()
                                     for handle in entry.handles.values())
        self.bar.set_postfix(running=counts['running'], queued=counts['queued'],
                             failed_tries=lost, refresh=True)

    def cancel(self):
        for entry in self.flight.values():
            entry.cancel()


class Submission:
    """One submission's sections on an engine, and their results so far."""

    def __init__(self, grader, engine, student, path, retries=engines.RETRIES, source=None):
        """Submits the sections of the file at `path` (or of `source`, its bytes)."""
        self.grader, self.path, self.start = grader, path, time.monotonic()
        source = Path(path).read_bytes() if source is None else source
        self.results, self.handles = {}, {}
        for index, plan in enumerate(grader.plans):
            if plan.unavailable:
                self.results[index] = SectionResult(plan.section, Verdict.NOT_AVAILABLE,
                                                    plan.unavailable)
            else:
                self.handles[index] = engine.submit(
                    grader.task(plan, f"{student} {plan.section.number}", source), retries)

    def collect(self):
        arrived = False
        for index, handle in list(self.handles.items()):
            if index in self.handles and handle.done():  # not taken by an import failure
                del self.handles[index]
                self.results[index] = judge_run(self.grader.plans[index], handle.result())
                arrived = True
                if self.results[index].verdict == Verdict.IMPORT_FAILED:
                    self.share_import_failure(self.results[index])
        return arrived

    def share_import_failure(self, failure):
        """The sections not started yet get the import failure without running."""
        for index, handle in list(self.handles.items()):
            if handle.cancel():
                del self.handles[index]
                self.results[index] = SectionResult(
                    self.grader.plans[index].section, Verdict.IMPORT_FAILED, failure.message,
                    details=failure.details, worker=failure.worker, tries=failure.tries)

    def complete(self):
        return not self.handles

    def report(self):
        grader = self.grader
        return Report(str(self.path), [self.results[index] for index in range(len(grader.plans))],
                      grader.description, grader.limit_descriptions(),
                      time.monotonic() - self.start, warning=grader.warning)

    def cancel(self):
        for handle in self.handles.values():
            handle.cancel()


# =================================== CLI ====================================

def find_submissions(directory):
    """({student: path}, [names skipped]) from <student>.py files and <student>/solution.py
    folders; everything else in the directory is skipped."""
    files = {path.stem: path for path in directory.glob('*.py')}
    folders = {path.name: path / 'solution.py' for path in directory.iterdir()
               if path.is_dir() and (path / 'solution.py').is_file()}
    if both := sorted(files.keys() & folders.keys()):
        raise UsageError(f"{directory}: {', '.join(both)} submitted both as <name>.py and as "
                         f"<name>/solution.py; keep one")
    if not files and not folders:
        raise UsageError(f"{directory}: no submissions (<student>.py or <student>/solution.py)")
    taken = {*files.values(), *(path.parent for path in folders.values())}
    skipped = sorted(path.name + ('/' if path.is_dir() else '') for path in directory.iterdir()
                     if path not in taken)
    return {**files, **folders}, skipped


# The output formats of one submission given as a file: write(path, grader, reports) with
# reports {student: Report} (a batch's results go through staff/journal.py).

def write_json(path, grader, reports):
    """One submission's report (a batch's JSON Lines come from staff/journal.py)."""
    Path(path).write_text(json.dumps(next(iter(reports.values())).to_json(), indent=2) + '\n')


def write_gradescope(path, grader, reports):
    """Gradescope's results.json of the one submission."""
    data = next(iter(reports.values())).to_gradescope()
    Path(path).write_text(json.dumps(data, indent=2) + '\n')


def csv_header(grader):
    return ['student', *(plan.section.number for plan in grader.plans), 'total', 'verdicts']


def csv_row(student, report):
    """student, points per section, total, the non-passed verdicts."""
    return [student, *(f"{result.awarded:g}" for result in report.sections),
            f"{report.total:g}", report.non_passed()]


def write_csv(path, grader, reports):
    """A row per student: points per section, total, the verdicts other than passed."""
    with open(path, 'w', newline='') as file:
        writer = csv.writer(file)
        writer.writerow(csv_header(grader))
        writer.writerows(csv_row(student, report) for student, report in reports.items())


@dataclass(frozen=True)
class OutputFormat:
    """An --<name> FILE option: what it writes, and whether a batch can have it."""
    write: Callable
    help: str
    batch: bool = True


def positive(kind):
    """An argparse type: a number of `kind` (int or float) above 0."""
    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            value = None
        if value is None or not value > 0 or not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"{text!r}: give a number above 0")
        return value
    parse.__name__ = kind.__name__
    return parse


def output_problem(path):
    """Why the grades cannot be written to `path`, or ''."""
    folder = path.parent if str(path.parent) else Path('.')
    if path.is_dir():
        return f"{path} is a directory"
    if not folder.is_dir():
        return f"no directory {folder}"
    if not os.access(folder, os.W_OK | os.X_OK) or (path.exists() and not os.access(path, os.W_OK)):
        return f"{path} is not writable"
    return ''


OUTPUT_FORMATS = {
    'json': OutputFormat(write_json, 'write the grades as JSON'),
    'gradescope': OutputFormat(write_gradescope, "write Gradescope's results.json (one submission "
                                                 "only)", batch=False),
    'csv': OutputFormat(write_csv, 'write a CSV: student, points per section, total, verdicts'),
}


def check_outputs(args, batch):
    """A usage error, before any grading, for an output that cannot be written."""
    for name, output in OUTPUT_FORMATS.items():
        path = getattr(args, name)
        if path is None:
            continue
        if batch and not output.batch:
            raise UsageError(f"--{name} takes one submission, not a directory")
        if problem := output_problem(path):
            raise UsageError(f"--{name} {path}: {problem}")


def add_arguments(parser):
    parser.description = '\n\n'.join(__doc__.split('\n\n')[:2]) + (
        "\n\nExit status: 0 when grading worked, whatever the score; 1 when the grader\n"
        "itself failed; 2 for a usage error.")
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument('submission', type=Path,
                        help='a solution.py, or a directory of <student>.py or '
                             '<student>/solution.py')
    parser.add_argument('--only', metavar='NAMES',
                        help='comma-separated tests or section numbers: grade only their sections')
    parser.add_argument('--sections', default=str(STANDARD_TABLE), metavar='FILE',
                        help=f"points table: a CSV file, or the name of one of the kit's "
                             f"({table_names()}); default standard, the 15-point one")
    parser.add_argument('--hidden', type=Path, metavar='DIR',
                        help='also run the hidden fixture set in DIR (same layout as tests/)')
    for name, output in OUTPUT_FORMATS.items():
        parser.add_argument(f"--{name}", type=Path, metavar='FILE', help=output.help)
    parser.add_argument('--restart', action='store_true',
                        help='grade every submission again, dropping the results files\' rows')
    run = parser.add_argument_group('where the sections run')
    run.add_argument('--engine', choices=engines.ENGINES, default='local',
                     help='local (default): this machine; dask: a Dask cluster (--scheduler) or '
                          'worker processes here; slurm: Dask workers as Slurm jobs')
    run.add_argument('--jobs', type=positive(int), default=cores(),
                     help='local: sections at a time (default: the number of cores)')
    run.add_argument('--scheduler', metavar='ADDRESS',
                     help='dask: a running scheduler, e.g. tcp://lab1:8786 (default: start '
                          'worker processes on this machine)')
    run.add_argument('--workers', type=positive(int), metavar='N',
                     help='dask without --scheduler, slurm: worker processes or Slurm jobs '
                          '(default 1)')
    run.add_argument('--worker-cores', type=positive(int), metavar='N',
                     help='dask without --scheduler, slurm: cores (slots) per worker; a training '
                          'section takes them all (default: all cores here; slurm 2)')
    run.add_argument('--worker-memory', metavar='SIZE', help='slurm: memory per job, e.g. 8GB')
    run.add_argument('--partition', help='slurm: the partition (queue) of the jobs')
    run.add_argument('--account', help='slurm: the account charged')
    run.add_argument('--walltime', metavar='HH:MM:SS', help='slurm: the jobs\' time limit')
    run.add_argument('--slurm-config', type=existing_file, metavar='FILE',
                     help='slurm: a TOML file with partition, account, walltime, cores, memory, '
                          'workers, scheduler_host, log_directory (flags override it)')
    parser.add_argument('--isolation', choices=('auto', *sandbox.ISOLATIONS), default='auto',
                        help="auto (default): bwrap if it works, else unshare; none (no sandbox: "
                             "the submission can read everything) only when asked for")
    parser.add_argument('--processes', type=positive(int), default=PROCESSES, metavar='N',
                        help=f"processes and threads of a section besides its BLAS threads, "
                             f"where cgroups work (default {PROCESSES})")
    limits = parser.add_argument_group('limits of every section but mnist and cifar')
    limits.add_argument('--time', type=positive(float), default=DEFAULT_LIMITS.wall,
                        metavar='SECONDS', help='wall-clock and CPU time (default %(default)g); '
                        'also the import time limit of the training sections')
    limits.add_argument('--memory', type=parse_size, default=DEFAULT_LIMITS.memory, metavar='SIZE',
                        help='address space of each process and, with cgroups, memory of all '
                             'the processes together, e.g. 2G (default 2G)')
    limits.add_argument('--threads', type=positive(int), default=DEFAULT_LIMITS.threads,
                        help='BLAS threads (default %(default)s)')
    training = parser.add_argument_group('limits of the training sections (mnist, cifar)')
    training.add_argument('--training-time', type=positive(float), metavar='SECONDS',
                          help=f"wall-clock time from sending the data (default: the assignment's "
                               f"training limit, {MNIST_TIME_LIMIT} s or {CIFAR_TIME_LIMIT} s, + "
                               f"{common.TRAINING_ALLOWANCE} s to predict)")
    training.add_argument('--training-memory', type=parse_size,
                          default=common.TRAINING_MEMORY_LIMIT, metavar='SIZE',
                          help='memory, as --memory (default 6G)')
    training.add_argument('--training-threads', type=positive(int),
                          help='BLAS threads (default: all cores)')


def slurm_options(args):
    """The Slurm workers' options: --slurm-config FILE, then the flags given."""
    options = dict(engines.SLURM_DEFAULTS)
    if args.slurm_config:
        try:
            config = tomllib.loads(args.slurm_config.read_text())
        except (OSError, tomllib.TOMLDecodeError) as error:
            raise UsageError(f"--slurm-config {args.slurm_config}: {error}") from None
        if unknown := set(config) - set(options):
            raise UsageError(f"--slurm-config {args.slurm_config}: unknown keys "
                             f"{', '.join(sorted(unknown))}; known: {', '.join(options)}")
        options.update(config)
    flags = {'partition': args.partition, 'account': args.account, 'walltime': args.walltime,
             'cores': args.worker_cores, 'memory': args.worker_memory, 'workers': args.workers}
    options.update({name: value for name, value in flags.items() if value is not None})
    return options


def open_engine(args):
    """The engine of --engine, started; UsageError when it cannot start."""
    if args.scheduler and args.engine != 'dask':
        raise UsageError("--scheduler is for --engine dask")
    if args.engine == 'local':
        options = {'jobs': args.jobs}
    elif args.engine == 'dask':
        options = ({'scheduler': args.scheduler} if args.scheduler else
                   {'workers': args.workers or 1, 'cores': args.worker_cores})
    else:
        options = slurm_options(args)
    try:
        return engines.open_engine(args.engine, **options)
    except engines.EngineError as error:
        raise UsageError(str(error)) from None


def make_grader(args, engine):
    if args.only is not None and not args.only.replace(',', '').strip():
        raise UsageError("--only: give test names or section numbers, e.g. --only relu,2.1.2")
    limits = Limits(wall=args.time, cpu=args.time, memory=args.memory, threads=args.threads,
                    processes=args.processes)
    return Grader(find_table(args.sections), args.only or '', args.hidden, limits,
                  args.training_time, args.training_memory, args.training_threads or engine.slots,
                  args.isolation)


def batch_preamble(grader, skipped):
    """What a batch says before grading: no sandbox, sections no submission can get
    (with what to do about it), the files it skips."""
    lines = [f"WARNING: {grader.warning}"] if grader.warning else []
    lines += [f"WARNING: {plan.section.number} {plan.section.title} is not available, so every "
              f"submission gets 0 for it: {printable(plan.unavailable.splitlines()[0])}"
              for plan in grader.plans if plan.unavailable]
    return lines + skipped_lines(skipped)


def skipped_lines(skipped):
    """The line that names what find_submissions skipped, if anything."""
    entries = 'entry that is not a submission' if len(skipped) == 1 else \
        'entries that are not submissions'
    return [f"skipped {len(skipped)} {entries} (<student>.py or "
            f"<student>/solution.py): {printable(', '.join(skipped))}"] if skipped else []


def summary_line(student, report):
    return (f"{printable(student)}: {report.total:g} / {report.max_total:g}"
            + (f"  ({report.summary()})" if report.non_passed() else ''))


def grade_one(grader, engine, args):
    try:
        report = grader.grade(args.submission, engine)
    except Exception as error:  # the grader broke: say so, the status tells
        print(f"./run.py grade: grading failed: {type(error).__name__}: {error}", file=sys.stderr)
        return 1
    print(report.table())
    for name, output in OUTPUT_FORMATS.items():
        if getattr(args, name):
            output.write(getattr(args, name), grader, {args.submission.stem: report})
    return 0


def grade_batch(grader, engine, args, submissions):
    """Grades what the results files do not hold yet, appending as it goes."""
    from tqdm import tqdm
    json_path = args.json or (args.csv.with_suffix('.jsonl') if args.csv else None)
    if json_path is None:
        print("./run.py grade: no --json or --csv given: the results are only printed, and a "
              "rerun grades everything again", file=sys.stderr)
    digest = grader.digest()
    keys = {student: submission_key(student, path, digest) for student, path in submissions.items()}
    results = journal.Journal(json_path, args.csv, csv_header(grader), keys, args.restart) \
        if json_path else None
    stored = results.stored() if results else set()
    todo = {student: path for student, path in submissions.items() if student not in stored}
    if stored:
        print(f"{len(stored)} results kept from {json_path}, {len(todo)} to grade "
              f"(--restart grades all)")
    start = time.monotonic()
    with tqdm(total=len(submissions), initial=len(stored), unit='submission', file=sys.stderr,
              disable=None, dynamic_ncols=True) as bar:
        def on_report(student, report):
            bar.write(summary_line(student, report), file=sys.stdout)
            if results:
                results.add(keys[student], report.to_json(), csv_row(student, report))
            done.append(student)
        done = []
        try:
            grader.grade_all(todo, engine, on_report, bar)
        except (KeyboardInterrupt, engines.EngineError) as error:
            print(f"./run.py grade: {error or 'interrupted'}; " + (
                f"{len(stored) + len(done)} of {len(submissions)} results are in {json_path}: "
                f"rerun the same command to grade the rest" if results else "nothing was kept"),
                file=sys.stderr)
            return 130 if isinstance(error, KeyboardInterrupt) else 1
    if results:
        results.rewrite()
    files = ', '.join(str(path) for path in (json_path, args.csv) if path)
    print(f"graded {len(todo)} submissions in {time.monotonic() - start:.0f} s on "
          f"{engine.describe()}" + (f"\nresults: {files}" if files else ''))
    return 0


def submission_key(student, path, digest):
    try:
        return journal.submission_key(student, path, digest)
    except OSError:  # unreadable: never stored, graded (to an error row) every time
        return {'student': student, 'sha256': None, 'grading': digest}


def main(args):
    """./run.py grade: returns the exit status."""
    target = args.submission
    batch = target.is_dir()
    if batch:
        submissions, skipped = find_submissions(target)
    elif not target.is_file():
        raise UsageError(f"no submission at {target}: give a solution.py or a directory")
    check_outputs(args, batch)
    engine = open_engine(args)
    try:
        grader = make_grader(args, engine)
        if not batch:
            try:
                return grade_one(grader, engine, args)
            except engines.EngineError as error:  # its scheduler lost mid-run
                print(f"./run.py grade: {error}", file=sys.stderr)
                return 1
        for line in batch_preamble(grader, skipped):
            print(line, flush=True)
        return grade_batch(grader, engine, args, submissions)
    finally:
        engine.close()
