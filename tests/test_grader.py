"""The checking system (staff/grader.py): a corpus of submissions, each with
the verdict it must get per section; isolation; limits; output formats; CLI.

The corpus is graded once per isolation mode, as a batch (2 at a time), with
small time limits; training runs for real only in the `training` test.
"""
import csv
import hashlib
import io
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from mutants import MUTANTS

import common
import datasets
from staff import engines, fixtures, grader, training
from staff.kit import make_template
from staff.points import load_table
from staff.sandbox import GIB, MIB, Limits

REFERENCE = common.KIT_DIR / 'solution.py'
SNIPPETS = Path(__file__).resolve().parent / 'submissions'
TABLE = load_table()
PUBLIC = common.find_fixtures()
QUICK_SECTIONS = [section for section in TABLE.sections  # those with fixtures, no training
                  if all(test in PUBLIC and not PUBLIC[test].is_training
                         for test in section.tests)]
QUICK_TESTS = [test for section in QUICK_SECTIONS for test in section.tests]
FAST = Limits(wall=5, cpu=5, memory=2 * GIB, threads=1)
HIDDEN_SEED = 2

# submission: {test: verdict} for the sections holding those tests ('*': all);
# every other section must pass.
HOSTILE = {
    'syntax_error': {'*': 'import failed'},
    'missing_module': {'*': 'import failed'},
    'exit_at_import': {'*': 'import failed'},
    'os_exit_at_import': {'*': 'import failed'},
    'infinite_loop': {'relu': 'time limit'},
    'memory_bomb': {'dense': 'memory limit'},
    'segfault': {'softmax': 'error'},
    'exit_in_layer': {'flatten': 'error'},
    'allclose_patch': {'sgd': 'failed'},
    'equal_subclass': {'crossentropy': 'failed'},
    'plain_values': {'sgd': 'failed'},
    'network': {},
    'fixture_replay': {},  # the public cases only: see test_hidden_set_catches_replay
    'prints_100mb': {},
    'sleeping_children': {},
    'setsid_escapee': {},
    'deletes_tests': {},
    'reference_hunter': {'*': 'not implemented'},  # on the blank template: finds nothing
    'fork_flood': {'relu': 'error'},
}
ON_BLANK = ('reference_hunter',)  # snippets appended to the blank template, not the reference
HAS_CGROUPS = grader.cgroups.find()[0] is not None
if not HAS_CGROUPS:  # bounded only by a section's cgroup (CI has them): not run without
    del HOSTILE['fork_flood']
SPREAD = Limits(wall=30, cpu=30, memory=640 * MIB, threads=1)  # for memory_spread
# Submissions that are safe to import into this process: their local
# ./run.py unittest verdicts must be the grader's.
IMPORTABLE = ('equal_subclass', 'plain_values')
MUTANT_OF = {test: next(m for m in MUTANTS if m.test == test)
             for test in QUICK_TESTS if any(m.test == test for m in MUTANTS)}
# the commands of sleeping_children, setsid_escapee, fork_flood
SLEEPERS = ('sleep 86397', 'sleep 86396', 'sleep 86395')
FIXTURE_FILES = '*_unittest_*_input/*'  # the kit's files the submissions try to delete


def blank_template(source):
    """The template students get: every region of the reference is a placeholder."""
    return make_template(source, TABLE)


def expected_verdicts(changes, sections=QUICK_SECTIONS):
    return {section.number: changes.get('*') or next(
        (changes[test] for test in section.tests if test in changes), 'passed')
        for section in sections}


def verdicts(report):
    return {result.section.number: result.verdict for result in report.sections}


def local_verdicts(path, name, sections=QUICK_SECTIONS):
    """What ./run.py unittest says, section by section (first non-passed test)."""
    solution = common.load_solution(path, name=name)
    results = {}
    for section in sections:
        tests = [common.run_test(PUBLIC[test], solution) for test in section.tests]
        results[section.number] = next((r for r in tests if not r.passed), tests[0])
    return results


def live_commands():
    """The command lines of all live (not zombie) processes."""
    commands = []
    for entry in Path('/proc').iterdir():
        try:
            commands.append((entry / 'cmdline').read_bytes().replace(b'\0', b' ').decode().strip())
        except OSError:
            pass
    return commands


def file_digests(directory, pattern='**/*'):
    return {str(path.relative_to(directory)): hashlib.md5(path.read_bytes()).hexdigest()
            for path in sorted(Path(directory).glob(pattern)) if path.is_file()}


@pytest.fixture(scope='module')
def hidden_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp('hidden')
    reference = common.load_solution(REFERENCE, name='reference_for_hidden')
    fixtures.build_fixtures(directory, reference, seed=HIDDEN_SEED)
    return directory


@contextmanager
def listening():
    """A TCP port on 127.0.0.1 and the list of connections it accepts."""
    server = socket.create_server(('127.0.0.1', 0))
    server.settimeout(0.2)
    accepted = []

    def accept():
        while not stop.is_set():
            try:
                accepted.append(server.accept()[0])
            except OSError:
                pass

    stop = threading.Event()
    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield server.getsockname()[1], accepted
    finally:
        stop.set()
        thread.join()
        server.close()


@pytest.fixture(scope='module')
def listener():
    with listening() as port_and_connections:
        yield port_and_connections


def write_corpus(directory, decoy, hidden, port, names):
    """directory/<name>.py for each name: the reference, blank, mutant_<test>, or a snippet."""
    directory.mkdir()
    reference = REFERENCE.read_text()
    placeholders = {'@KIT@': decoy, '@HIDDEN@': hidden, '@PORT@': port,
                    '@REAL_KIT@': common.KIT_DIR, '@DATA@': datasets.data_dir().resolve(),
                    '@SUBMISSIONS@': directory.resolve()}
    for name in names:
        if name == 'reference':
            source = reference
        elif name == 'blank':
            source = blank_template(reference)
        elif name.startswith('mutant_'):
            mutant = MUTANT_OF[name.removeprefix('mutant_')]
            assert reference.count(mutant.old) == 1, f"{name}: its text is not in solution.py once"
            source = reference.replace(mutant.old, mutant.new)
        else:
            snippet = (SNIPPETS / f"{name}.py").read_text()
            for placeholder, value in placeholders.items():
                snippet = snippet.replace(placeholder, str(value))
            base = blank_template(reference) if name in ON_BLANK else reference
            source = f"{base}\n\n{snippet}"
        (directory / f"{name}.py").write_text(source)
    return directory


class Corpus:
    """A batch of submissions graded in one isolation mode, and what to check after."""

    def __init__(self, root, hidden, listener, isolation, names, sections=QUICK_SECTIONS,
                 engine=None):
        self.decoy = root / 'decoy'
        shutil.copytree(common.TESTS_DIR, self.decoy / 'tests',
                        ignore=shutil.ignore_patterns('__pycache__'))
        shutil.copyfile(common.KIT_DIR / 'interface.py', self.decoy / 'interface.py')
        self.decoy_before = file_digests(self.decoy)
        self.kit_before = file_digests(common.TESTS_DIR, FIXTURE_FILES)
        port, self.connections = listener
        self.directory = write_corpus(root / 'submissions', self.decoy, hidden, port, names)
        (self.directory / 'ghost.py').symlink_to(root / 'nowhere.py')  # breaks the grader
        self.grader = grader.Grader(TABLE, ','.join(s.number for s in sections), limits=FAST,
                                    isolation=isolation)
        engine = engine or engines.LocalEngine(jobs=2)
        try:
            self.reports = self.grader.grade_all(
                grader.find_submissions(self.directory)[0], engine)
        finally:
            engine.close()


ALL_NAMES = ['reference', 'blank', *(f"mutant_{test}" for test in MUTANT_OF), *HOSTILE]
FALLBACK_NAMES = [name for name in ('reference', 'infinite_loop', 'memory_bomb', 'segfault',
                                     'network', 'sleeping_children', 'setsid_escapee',
                                     'deletes_tests', 'reference_hunter', 'fork_flood')
                  if name == 'reference' or name in HOSTILE]
FALLBACK_SECTIONS = [s for s in QUICK_SECTIONS if {'relu', 'softmax', 'dense'} & set(s.tests)]


@pytest.fixture(scope='module')
def corpus(tmp_path_factory, hidden_dir, listener):
    """The whole corpus, with the best isolation this machine has."""
    return Corpus(tmp_path_factory.mktemp('corpus'), hidden_dir, listener, 'auto', ALL_NAMES)


@pytest.fixture(scope='module')
def fallback(tmp_path_factory, hidden_dir, listener):
    """Part of the corpus again, in the unshare fallback (as without bubblewrap)."""
    if grader.isolation_problem('unshare'):
        pytest.skip(f"unshare does not work here: {grader.isolation_problem('unshare')}")
    return Corpus(tmp_path_factory.mktemp('fallback'), hidden_dir, listener, 'unshare',
                  FALLBACK_NAMES, FALLBACK_SECTIONS)


# ============================ Corpus verdicts ===============================

def test_reference_gets_full_marks(corpus):
    report = corpus.reports['reference']
    assert verdicts(report) == expected_verdicts({})
    assert report.total == report.max_total == sum(s.points for s in QUICK_SECTIONS)


def test_blank_template_gets_zero_and_not_implemented(corpus):
    report = corpus.reports['blank']
    assert verdicts(report) == expected_verdicts({'*': 'not implemented'})
    assert report.total == 0
    assert all('Traceback' not in result.message for result in report.sections)


@pytest.mark.parametrize('test', MUTANT_OF)
def test_wrong_formula_fails_only_its_section_as_locally(corpus, test):
    """A plausible bug fails its section only (and those of the tests the
    catalog says it also breaks), with the verdict and message that
    ./run.py unittest gives."""
    report = corpus.reports[f"mutant_{test}"]
    failing = {test, *MUTANT_OF[test].also}
    section = next(s.number for s in QUICK_SECTIONS if test in s.tests)
    assert [number for number, verdict in verdicts(report).items() if verdict != 'passed'] \
        == [s.number for s in QUICK_SECTIONS if failing & set(s.tests)]
    local = local_verdicts(corpus.directory / f"mutant_{test}.py", f"local_mutant_{test}")
    assert verdicts(report) == {number: result.verdict for number, result in local.items()}
    if local[section].verdict == 'failed':
        graded = next(r for r in report.sections if r.section.number == section)
        prefix = f"{local[section].test}: " if len(graded.section.tests) > 1 else ''
        assert graded.message == prefix + local[section].message.splitlines()[0]


@pytest.mark.parametrize('name', HOSTILE)
def test_hostile_submission_gets_its_verdicts(corpus, name):
    assert verdicts(corpus.reports[name]) == expected_verdicts(HOSTILE[name])


@pytest.mark.parametrize('name', IMPORTABLE)
def test_same_verdicts_as_unittest(corpus, name):
    local = local_verdicts(corpus.directory / f"{name}.py", f"local_{name}")
    assert verdicts(corpus.reports[name]) == {n: r.verdict for n, r in local.items()}


def test_messages_say_what_happened(corpus):
    def message(name, test):
        section = next(s for s in QUICK_SECTIONS if test in s.tests)
        return next(r.message for r in corpus.reports[name].sections if r.section == section)

    assert message('syntax_error', 'relu').startswith("SyntaxError:")
    assert message('missing_module', 'relu') == \
        "ModuleNotFoundError: No module named 'a_module_nobody_installed'"
    assert message('exit_at_import', 'dense') == \
        "solution.py called sys.exit(3) while being imported"
    assert message('os_exit_at_import', 'relu') == \
        "the process exited with status 0 while importing solution.py"
    assert re.fullmatch(rf"case '{PUBLIC['relu'].cases[0]['name']}': the 5 s "
                        rf"(wall-clock|CPU time) limit ran out during this case",
                        message('infinite_loop', 'relu'))
    assert message('memory_bomb', 'dense').endswith(
        "ran out of memory (MemoryError) over the 2 GiB limit")
    assert message('segfault', 'softmax').endswith("killed by SIGSEGV during this case")
    assert message('exit_in_layer', 'flatten').endswith("exited with status 0 during this case")
    assert "dtype complex128" in message('plain_values', 'sgd')


def test_printing_keeps_one_mebibyte_and_changes_nothing(corpus):
    for result in corpus.reports['prints_100mb'].sections:
        kept, _, note = result.output.rpartition('\n[')
        assert kept == 'x' * (1 << 20)
        assert note == f"{(100 << 20) - (1 << 20)} more bytes of output discarded]"


def test_broken_submission_gets_an_error_row(corpus, tmp_path):
    report = corpus.reports['ghost']
    assert report.failure and report.total == 0 and report.non_passed() == 'error'
    path = tmp_path / 'grades.csv'
    grader.write_csv(path, corpus.grader, corpus.reports)
    rows = {row['student']: row for row in csv.DictReader(path.open())}
    assert set(rows) == {*ALL_NAMES, 'ghost'}
    assert list(rows['reference']) == ['student', *(s.number for s in QUICK_SECTIONS),
                                       'total', 'verdicts']
    assert rows['ghost']['total'] == '0' and rows['ghost']['verdicts'] == 'error'
    assert float(rows['reference']['total']) == sum(s.points for s in QUICK_SECTIONS)
    assert rows['reference']['verdicts'] == ''
    dense = next(s.number for s in QUICK_SECTIONS if 'dense' in s.tests)
    assert rows['memory_bomb']['verdicts'] == f"{dense} memory limit"
    assert rows['memory_bomb'][dense] == '0'


# ================================ Isolation =================================

def check_isolation(corpus):
    """Nothing the submissions did outlives grading or reaches outside."""
    assert not [command for command in live_commands() if command in SLEEPERS]
    assert file_digests(corpus.decoy) == corpus.decoy_before
    assert set(corpus.kit_before) <= set(file_digests(common.TESTS_DIR, FIXTURE_FILES))
    assert corpus.connections == []


def explored(report):
    """What reference_hunter saw from inside the sandbox."""
    line = next(line for line in report.sections[0].output.splitlines()
                if line.startswith('EXPLORED '))
    return json.loads(line.removeprefix('EXPLORED '))


def check_isolation_line(report):
    """The report's isolation line says exactly what a submission could see."""
    seen = explored(report)
    assert not any(seen['seen'].values()), seen['seen']  # kit, reference, staff/, data, ...
    visible = re.search(r'the child sees read-only (.*?), and read-write its own work directory',
                        report.isolation)[1].split(', ')
    temporary = Path(tempfile.gettempdir()).resolve()
    assert set(seen['top']) == {Path(path).parts[1] for path in visible} | {
        'proc', 'dev', temporary.parts[1]}
    if temporary == Path('/tmp'):
        assert len(seen['tmp']) == 1 and seen['tmp'][0].startswith('nn-grade-')  # its own only
    assert "the kit's checkout" in report.isolation
    assert 'hidden: everything else' in report.isolation
    bounded = report.isolation.split('bounded: ')[1]
    assert ('cgroup v' in bounded) == HAS_CGROUPS


def test_isolation_holds(corpus):
    check_isolation(corpus)
    check_isolation_line(corpus.reports['reference_hunter'])
    if shutil.which('bwrap'):
        assert corpus.grader.isolation == 'bwrap'
        assert corpus.reports['reference'].isolation.startswith('bwrap (bubblewrap')


def test_unshare_fallback_gives_the_same_verdicts(fallback):
    for name, report in fallback.reports.items():
        expected = HOSTILE.get(name, {'*': 'error'} if name == 'ghost' else {})
        assert verdicts(report) == expected_verdicts(expected, FALLBACK_SECTIONS), name
    assert fallback.reports['reference'].isolation.startswith('unshare:')
    check_isolation(fallback)
    check_isolation_line(fallback.reports['reference_hunter'])


@pytest.mark.skipif(not HAS_CGROUPS, reason="no cgroups here")
def test_fork_flood_is_an_error_and_groups_are_removed(corpus):
    flood = next(r for r in corpus.reports['fork_flood'].sections if 'relu' in r.section.tests)
    assert 'BlockingIOError' in flood.message and flood.awarded == 0
    assert not [folder for parent in corpus.grader.cgroups.parents
                for folder in parent.glob(f"{grader.cgroups.PREFIX}{os.getpid()}-*")]


@pytest.mark.skipif(not HAS_CGROUPS, reason="no cgroups here")
@pytest.mark.parametrize('isolation', ['auto', 'unshare'])
def test_memory_spread_over_children_is_a_memory_limit(tmp_path, isolation):
    directory = write_corpus(tmp_path / 'subs', tmp_path, tmp_path, 0, ['memory_spread'])
    report = grader.Grader(TABLE, 'relu', limits=SPREAD, isolation=isolation).grade(
        directory / 'memory_spread.py')
    assert verdicts(report) == {'2.1.1': 'memory limit'} and report.total == 0
    assert report.sections[0].message == (
        "the kernel killed a process for going over the 640 MiB memory limit of all the "
        "section's processes together while the section ran")


def test_cgroups_left_by_a_killed_grader_are_removed(tmp_path):
    if not HAS_CGROUPS:
        pytest.skip("no cgroups here")
    groups = grader.cgroups.find()[0]
    leftovers = [parent / f"{grader.cgroups.PREFIX}999999999-1"  # above any pid: not running
                 for parent in groups.parents]
    for folder in leftovers:
        folder.mkdir()
    groups.remove_leftovers()  # what the grader does at start-up
    assert not any(folder.exists() for folder in leftovers)


def test_two_finds_of_cgroups_never_name_two_groups_alike():
    """A fresh Dask worker's first two sections may both run cgroups.find() (it is cached,
    not locked): their groups must differ, or the first to end kills the other's child."""
    if not HAS_CGROUPS:
        pytest.skip("no cgroups here")
    found = grader.cgroups.find()[0]
    one, two = (grader.cgroups.Cgroups(found.parents, found.version) for _ in range(2))
    first, second = one.create(8, 256 * MIB), two.create(8, 256 * MIB)
    try:
        assert first.name != second.name
    finally:
        first.remove()
        second.remove()


def test_without_cgroups_the_limits_are_per_process_and_the_report_says_so(tmp_path):
    """The fallback: rlimits only. memory_spread then passes: its test is not vacuous."""
    directory = write_corpus(tmp_path / 'subs', tmp_path, tmp_path, 0, ['memory_spread'])
    rlimits = grader.Grader(TABLE, 'relu', limits=SPREAD, use_cgroups=False)
    report = rlimits.grade(directory / 'memory_spread.py')
    assert verdicts(report) == {'2.1.1': 'passed'}
    assert "NOT bounded: the number of processes and the memory of all a section's processes " \
           "together (no cgroups: not asked for)" in report.isolation


def test_without_bwrap_auto_picks_unshare(tmp_path, monkeypatch):
    if grader.isolation_problem('unshare'):
        pytest.skip("unshare does not work here")
    (tmp_path / 'unshare').symlink_to(shutil.which('unshare'))
    monkeypatch.setenv('PATH', str(tmp_path))
    grader.isolation_problem.cache_clear()
    try:
        assert grader.choose_isolation('auto')[0] == 'unshare'
        with pytest.raises(grader.UsageError, match="bwrap is not installed"):
            grader.choose_isolation('bwrap')
    finally:
        grader.isolation_problem.cache_clear()


def test_no_sandbox_is_reported_and_lets_the_network_through(tmp_path):
    """Without namespaces the grader still grades, says so, and the network
    submission's check can fail: the corpus's network test is not vacuous."""
    with listening() as (port, connections):
        directory = write_corpus(tmp_path / 'subs', tmp_path, tmp_path, port,
                                 ['reference', 'network'])
        none = grader.Grader(TABLE, 'relu', limits=FAST, isolation='none')
        reference = none.grade(directory / 'reference.py')
        assert verdicts(reference) == {'2.1.1': 'passed'}
        assert reference.table().startswith('WARNING: NO SANDBOX (--isolation none): the '
                                            'submission could read and write everything')
        assert reference.to_gradescope()['output'].startswith('WARNING: NO SANDBOX')
        assert next(iter(reference.to_json())) == 'warning'
        assert verdicts(none.grade(directory / 'network.py')) == {'2.1.1': 'failed'}
        assert connections


def test_no_sandbox_lets_the_reference_hunter_win(tmp_path):
    """What the sandbox prevents: the hunter's test is not vacuous."""
    directory = write_corpus(tmp_path / 'subs', tmp_path, tmp_path, 0, ['reference_hunter'])
    report = grader.Grader(TABLE, 'relu,softmax', limits=FAST, isolation='none').grade(
        directory / 'reference_hunter.py')
    assert verdicts(report) == {'2.1.1': 'passed', '2.1.2': 'passed'}
    assert explored(report)['seen']['reference']


def test_data_the_sandbox_would_show_is_a_usage_error(monkeypatch):
    monkeypatch.setenv('NN_DATA_DIR', '/usr/share')
    with pytest.raises(grader.UsageError, match="the data directory /usr/share is inside /usr, "
                                                "which the sandbox shows to the submission"):
        grader.Grader(TABLE, 'relu', limits=FAST)


def test_auto_never_picks_no_sandbox(tmp_path, monkeypatch):
    monkeypatch.setenv('PATH', str(tmp_path))
    grader.isolation_problem.cache_clear()
    try:
        with pytest.raises(grader.UsageError, match="install bubblewrap, or grade without a "
                                                    "sandbox with --isolation none"):
            grader.choose_isolation('auto')
    finally:
        grader.isolation_problem.cache_clear()


@pytest.mark.parametrize('isolation', ['auto', 'unshare'])
def test_hidden_set_catches_replay(corpus, hidden_dir, isolation):
    """Replaying the public expected outputs passes them; the hidden set, which
    the child cannot read even when it knows where it is, fails it."""
    if isolation == 'unshare' and grader.isolation_problem('unshare'):
        pytest.skip("unshare does not work here")
    with_hidden = grader.Grader(TABLE, 'relu', hidden_dir, FAST, isolation=isolation)
    replay = with_hidden.grade(corpus.directory / 'fixture_replay.py')
    assert verdicts(replay) == {'2.1.1': 'failed'}
    assert replay.sections[0].message.startswith("case 'hidden: ")
    assert replay.sections[0].message.endswith(grader.HIDDEN_FAILURE)
    assert verdicts(with_hidden.grade(REFERENCE)) == {'2.1.1': 'passed'}


def test_without_a_sandbox_the_replay_reads_the_hidden_set(corpus, hidden_dir):
    """What the sandbox prevents above: the test is not vacuous."""
    unsafe = grader.Grader(TABLE, 'relu', hidden_dir, FAST, isolation='none')
    assert verdicts(unsafe.grade(corpus.directory / 'fixture_replay.py')) == {'2.1.1': 'passed'}


def test_hidden_set_differs_and_must_cover_the_sections(hidden_dir, tmp_path):
    hidden = common.find_fixtures(hidden_dir)
    public_case = PUBLIC['relu'].load_case(PUBLIC['relu'].cases[0])
    hidden_case = hidden['relu'].load_case(hidden['relu'].cases[0])
    assert not np.array_equal(public_case['calls'][0]['inputs'], hidden_case['calls'][0]['inputs'])
    shutil.copytree(hidden_dir / '00_unittest_relu_input', tmp_path / '00_unittest_relu_input')
    with pytest.raises(grader.UsageError, match="no fixture directory for test 'softmax'"):
        grader.Grader(TABLE, 'relu,softmax', tmp_path, FAST)


# ================================ Training ==================================

def test_training_section_has_its_own_time_limit():
    training = grader.Grader(TABLE, 'mnist', training_time=3, training_threads=1)
    report = training.grade(REFERENCE)
    assert verdicts(report) == {'2.4': 'time limit'}
    assert report.sections[0].message.endswith("the 3 s wall-clock limit ran out during this case")
    assert report.limits['mnist'] == \
        "3 s wall, no CPU limit, 6 GiB memory, 1 BLAS thread, 64 processes"


def test_training_limits_default_to_the_assignments():
    plan = next(p for p in grader.Grader(TABLE, 'mnist').plans if p.training)
    assert plan.limits == Limits(wall=600 + common.TRAINING_ALLOWANCE, cpu=None,
                                 memory=6 * GIB, threads=grader.cores())


def test_missing_cifar_data_is_not_available(tmp_path, monkeypatch):
    monkeypatch.setenv('NN_DATA_DIR', str(tmp_path))
    monkeypatch.setattr(datasets, 'CIFAR10_MIRRORS', ['http://127.0.0.1:9/'])
    cifar = grader.Grader(TABLE, 'cifar')
    report = cifar.grade(REFERENCE)
    assert verdicts(report) == {'3.7': 'not available'}
    assert datasets.CIFAR10_ARCHIVE in report.sections[0].message
    assert report.total == 0 and report.max_total == 2.0
    (warning,) = grader.batch_preamble(cifar, [])  # a batch says it once, with what to do
    assert warning.startswith("WARNING: 3.7 CIFAR-10 is not available, so every submission gets "
                              "0 for it: ") and "download cifar-10-python.tar.gz by hand" in warning


def tiny_mnist(seed=0, train=1500, test=500):
    """A small stand-in for MNIST that the reference learns in a second: 10
    classes of 784 standardized features around random centres."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(10, 784)).astype(np.float32)

    def draw(count):
        labels = rng.integers(0, 10, count)
        return centres[labels] + 2 * rng.normal(size=(count, 784)).astype(np.float32), labels

    (x_train, train_labels), (x_test, test_labels) = draw(train), draw(test)
    return x_train, datasets.one_hot(train_labels, 10), x_test, datasets.one_hot(test_labels, 10)


TINY = tiny_mnist()
TINY_CASE = {'valid_size': 500, 'time_limit': 3}  # the fake clock sleeps 4 s
# submission: (verdict, points) of section 2.4 with the tiny data
TRAINING_HOSTILE = {
    'reference': ('passed', 1.0),
    'label_lookup_loader': ('error', 0),  # the kit's loader finds no data in the sandbox
    'label_table': ('failed', 0),         # the order and the image bytes are the run's own
    'trains_at_import': ('import failed', 0),  # the import has a time limit of its own
    'fake_clock': ('failed', 0),          # the time is measured outside
}


@pytest.fixture
def tiny(monkeypatch):
    """MNIST replaced by TINY in this process: the grader loads the data, not the child."""
    monkeypatch.setitem(datasets.DATASETS, 'mnist', lambda: TINY)


def tiny_grader(isolation='auto'):
    """Grades section 2.4 on the tiny data, with TINY_CASE's validation size and time limit."""
    tiny_grader = grader.Grader(TABLE, 'mnist', limits=FAST, training_time=30,
                                training_threads=1, isolation=isolation)
    plan = tiny_grader.plans[0]
    test, name, case = plan.cases[0]
    plan.cases[0] = (test, name, {**case, **TINY_CASE})
    return tiny_grader


def training_corpus(directory):
    """The training corpus; label_table carries TINY's test labels and image hashes."""
    write_corpus(directory, directory, directory, 0, TRAINING_HOSTILE)
    table = directory / 'label_table.py'
    labels = ''.join(map(str, np.argmax(TINY[3], axis=1)))
    hashes = ' '.join(hashlib.md5(image.tobytes()).hexdigest()[:12] for image in TINY[2])
    table.write_text(table.read_text().replace('@TEST_LABELS@', labels)
                     .replace('@TEST_HASHES@', hashes))
    return directory


@pytest.mark.parametrize('isolation', ['auto', 'unshare'])
def test_training_corpus_gets_its_verdicts(tiny, tmp_path, isolation):
    if isolation == 'unshare' and grader.isolation_problem('unshare'):
        pytest.skip("unshare does not work here")
    directory = training_corpus(tmp_path / 'subs')
    training = tiny_grader(isolation)
    reports = {name: training.grade(directory / f"{name}.py") for name in TRAINING_HOSTILE}
    got = {name: (report.sections[0].verdict, report.total) for name, report in reports.items()}
    assert got == TRAINING_HOSTILE
    messages = {name: report.sections[0].message for name, report in reports.items()}
    assert re.fullmatch(r"test accuracy (0\.9\d+|1\.0+), trained in \d s", messages['reference'])
    assert messages['label_lookup_loader'].startswith(
        "case 'MNIST test accuracy': solution.py tried to load a dataset itself")
    accuracy = float(re.match(r"case '.*': test accuracy ([\d.]+)", messages['label_table'])[1])
    assert accuracy < 0.3
    assert messages['trains_at_import'] == \
        "the 5 s wall-clock limit ran out while importing solution.py"
    assert re.search(r"trained in [3-9]\.\d s: over the limit of 3 s", messages['fake_clock'])


def test_label_table_would_pass_without_the_disguise(tiny, tmp_path, monkeypatch):
    """What shuffling and perturbing prevent: the label table's test is not vacuous."""
    monkeypatch.setattr(training, 'disguise', lambda x_train, y_train, x_test, rng: (
        x_train, y_train, x_test, np.arange(len(x_test))))
    directory = training_corpus(tmp_path / 'subs')
    assert verdicts(tiny_grader().grade(directory / 'label_table.py')) == {'2.4': 'passed'}


def test_the_child_gets_no_test_labels(tiny):
    """What goes down the data pipe: the training set and the test images, nothing more."""
    plan = tiny_grader().plans[0]
    (delivery,) = training.deliveries(plan.cases)
    sent_train, sent_labels, sent_test = delivery.arrays
    x_train, y_train, x_test, y_test = TINY
    assert sent_train.shape == x_train.shape and sent_labels.shape == y_train.shape
    assert sent_test.shape == x_test.shape
    assert not any(array.shape[0] == len(y_test) and array.shape[1:] == y_test.shape[1:]
                   for array in delivery.arrays)


def test_disguise_shuffles_and_perturbs_slightly():
    x_train, y_train, x_test, y_test = TINY
    sent = [training.disguise(x_train, y_train, x_test, np.random.default_rng(seed))
            for seed in (1, 2)]
    for sent_train, sent_labels, sent_test, order in sent:
        assert sorted(order) == list(range(len(x_test)))
        difference = sent_test - x_test[order]
        assert 0 < np.abs(difference).max() < 6 * training.NOISE
        assert not any(a.tobytes() == b.tobytes() for a, b in zip(sent_test, x_test[order]))
        assert np.array_equal(np.sort(sent_train.sum(axis=1)), np.sort(x_train.sum(axis=1)))
        assert np.array_equal(sent_labels.sum(axis=0), y_train.sum(axis=0))  # reordered only
    assert not np.array_equal(sent[0][3], sent[1][3])  # a new order every run
    delivery = training.Delivery(0, (), sent[0][3])
    labels = np.argmax(y_test, axis=1)
    assert np.array_equal(delivery.restore(labels[sent[0][3]]), labels)


@pytest.mark.training
def test_mnist_section_passes_and_reports_accuracy():
    report = grader.Grader(TABLE, 'mnist').grade(REFERENCE)
    assert verdicts(report) == {'2.4': 'passed'}
    assert report.sections[0].message.startswith("test accuracy 0.9")


# ============================= Results channel ==============================

def npy(array, allow_pickle=False):
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, array, allow_pickle=allow_pickle)
    return buffer.getvalue()


def result_message(arrays, special=None, case=0):
    header = {'event': 'result', 'case': case, 'verdict': 'ok', 'arrays': list(arrays),
              'special': special or {}}
    return json.dumps(header).encode() + b'\n' + b''.join(arrays.values())


def test_channel_gives_plain_arrays():
    data = (b'{"event": "imported"}\n'
            + result_message({'outputs': npy(np.arange(6.0).reshape(2, 3).T)},
                             {'grad_inputs': 'none', 'weights_grad': 'object'})
            + b'{"event": "done"}\n')
    report = grader.read_channel(data, 1)
    assert report.imported and not report.problem
    verdict, results = report.results[0]
    assert verdict == 'ok' and type(results['outputs']) is np.ndarray
    assert np.array_equal(results['outputs'], np.arange(6.0).reshape(2, 3).T)
    assert results['grad_inputs'] is None and results['weights_grad'].dtype == object


@pytest.mark.parametrize('data, problem', [
    (result_message({'outputs': npy(np.array([None, 1]), allow_pickle=True)}), 'Python objects'),
    (result_message({'outputs': npy(np.zeros(4))[:-8]}), 'cut short'),
    (result_message({'outputs': b'not an array'}), 'magic string'),
    (result_message({'outputs': npy(np.zeros(2))}, case=5), 'case number 5'),
    (b'{"event": "imported"}', 'cut short'),
    (b'[' * 100000 + b'\n', ''),
    (b'{"event": "surprise"}\n', 'unknown message'),
])
def test_malformed_channel_is_an_error_not_a_crash(data, problem):
    report = grader.read_channel(data, 1)
    assert report.problem.startswith("the child's results are unreadable")
    assert problem in report.problem
    assert 0 not in report.results


def test_huge_declared_array_is_refused_without_allocating():
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {'descr': '<f8', 'fortran_order': False,
                                                  'shape': (10 ** 12,)})
    report = grader.read_channel(result_message({'outputs': header.getvalue()}), 1)
    assert 'cut short' in report.problem


def test_verdict_words_from_the_child_are_limited():
    data = json.dumps({'event': 'result', 'case': 0, 'verdict': 'passed',
                       'message': 'trust me'}).encode() + b'\n'
    assert grader.read_channel(data, 1).results[0] == ('error', 'trust me')


# =============================== Scheduling =================================

def test_training_sections_run_alone():
    slots, log = engines.Slots(), []
    shared_entered, release = threading.Event(), threading.Event()

    def ordinary():
        slots.acquire(alone=False)
        log.append('shared in')
        shared_entered.set()
        release.wait(5)
        log.append('shared out')
        slots.release(alone=False)

    def training():
        slots.acquire(alone=True)
        log.append('exclusive')
        slots.release(alone=True)

    first = threading.Thread(target=ordinary)
    first.start()
    shared_entered.wait(5)
    second = threading.Thread(target=training)
    second.start()
    second.join(0.2)
    assert second.is_alive()
    release.set()
    first.join(5)
    second.join(5)
    assert log == ['shared in', 'shared out', 'exclusive']


# ============================ The command line ==============================

def grade(*args, cwd=common.KIT_DIR):
    return subprocess.run([sys.executable, str(common.KIT_DIR / 'run.py'), 'grade',
                           *map(str, args)],
                          capture_output=True, text=True, cwd=cwd, timeout=300, check=False)


def test_cli_grades_one_submission_with_json_and_gradescope(tmp_path):
    done = grade(REFERENCE, '--only', 'relu,conv', '--json', tmp_path / 'grades.json',
                 '--gradescope', tmp_path / 'results.json')
    assert done.returncode == 0, done.stderr
    assert "total 2 / 2" in done.stdout and "isolation: " in done.stdout
    grades = json.loads((tmp_path / 'grades.json').read_text())
    assert grades['total'] == grades['max_total'] == 2.0
    relu = grades['sections'][0]
    assert {key: relu[key] for key in ('section', 'title', 'tests', 'points', 'awarded',
                                       'verdict', 'message')} == {
        'section': '2.1.1', 'title': 'ReLU', 'tests': ['relu'], 'points': 0.5, 'awarded': 0.5,
        'verdict': 'passed', 'message': ''}
    assert grades['sections'][1]['tests'] == ['im2col', 'conv']
    assert isinstance(relu['seconds'], float)
    gradescope = json.loads((tmp_path / 'results.json').read_text())
    assert gradescope['score'] == 2.0
    assert gradescope['tests'][0] == {'name': '2.1.1 ReLU', 'number': '2.1.1', 'score': 0.5,
                                      'max_score': 0.5, 'output': 'passed', 'status': 'passed',
                                      'visibility': 'visible'}


def test_cli_zero_score_is_still_exit_0_and_mnist_table(tmp_path):
    blank = tmp_path / 'solution.py'
    blank.write_text(blank_template(REFERENCE.read_text()))
    done = grade(blank, '--sections', 'mnist', '--only', 'softmax', '--json', tmp_path / 'g.json')
    assert done.returncode == 0, done.stderr
    grades = json.loads((tmp_path / 'g.json').read_text())
    assert grades['max_total'] == 1.0 and grades['total'] == 0
    assert grades['sections'][0]['verdict'] == 'not implemented'


def test_cli_batch_writes_csv(tmp_path):
    submissions = tmp_path / 'submissions'
    (submissions / 'bob').mkdir(parents=True)
    shutil.copyfile(REFERENCE, submissions / 'alice.py')
    (submissions / 'bob' / 'solution.py').write_text('import sys\nsys.exit(1)\n')
    done = grade(submissions, '--only', 'relu,2.1.2', '--csv', tmp_path / 'grades.csv',
                 '--json', tmp_path / 'grades.json')
    assert done.returncode == 0, done.stderr
    rows = list(csv.reader((tmp_path / 'grades.csv').open()))
    assert rows == [['student', '2.1.1', '2.1.2', 'total', 'verdicts'],
                    ['alice', '0.5', '1.5', '2', ''],
                    ['bob', '0', '0', '0', '2.1.1 import failed;2.1.2 import failed']]
    grades = {line['student']: line for line in map(json.loads, (tmp_path / 'grades.json').open())}
    assert [grades[student]['total'] for student in ('alice', 'bob')] == [2.0, 0]
    assert grades['bob']['sections'][1]['message'] == \
        "solution.py called sys.exit(1) while being imported"


def test_cli_batch_says_what_it_skipped_and_why_imports_failed(tmp_path):
    submissions = tmp_path / 'submissions'
    (submissions / 'empty_folder').mkdir(parents=True)
    (submissions / 'notes.txt').write_text('not a submission')
    (submissions / 'carol.py').write_text('import numpy as np\nraise ValueError("no, thanks")\n')
    done = grade(submissions, '--only', 'relu,2.1.2')
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == ("skipped 2 entries that are not submissions (<student>.py or "
                        "<student>/solution.py): empty_folder/, notes.txt")
    assert "carol: 0 / 2  (import failed: ValueError: no, thanks)" in lines
    assert grader.skipped_lines(['notes.txt']) == [
        "skipped 1 entry that is not a submission (<student>.py or <student>/solution.py): "
        "notes.txt"]


@pytest.mark.parametrize('args, message', [
    (['missing.py'], "no submission at missing.py"),
    ([REFERENCE, '--only', 'relu,nonsense'], "unknown test or section nonsense"),
    ([REFERENCE, '--only', ''], "--only: give test names or section numbers"),
    ([REFERENCE, '--only', ' , '], "--only: give test names or section numbers"),
    ([REFERENCE, '--sections', 'nonsense'], "no such points table"),
    ([REFERENCE, '--sections', '@BINARY@'], "not a CSV points table"),
    ([REFERENCE, '--sections', '@TEXT@'], "the header must be section,title,points,tests"),
    ([REFERENCE, '--sections', '@EMPTY@'], "no sections"),
    ([REFERENCE, '--hidden', 'nowhere'], "--hidden nowhere: no such directory"),
    ([REFERENCE, '--json', '/nonexistent/x.json'], "--json /nonexistent/x.json: no directory"),
    ([REFERENCE, '--gradescope', '/nonexistent/r.json'], "no directory /nonexistent"),
    ([REFERENCE, '--csv', tempfile.gettempdir()], "is a directory"),
    ([REFERENCE, '--time', '0'], "argument --time: '0': give a number above 0"),
    ([REFERENCE, '--time', '-5'], "give a number above 0"),
    ([REFERENCE, '--training-time', 'nan'], "give a number above 0"),
    ([REFERENCE, '--threads', '0'], "argument --threads: '0': give a number above 0"),
    ([REFERENCE, '--jobs', '0'], "argument --jobs: '0': give a number above 0"),
    ([REFERENCE, '--processes', '0'], "argument --processes: '0': give a number above 0"),
    ([REFERENCE, '--memory', '0'], "argument --memory: '0': give a size such as 2G or 512M"),
    ([REFERENCE, '--memory', '1K'], "--memory 1 KiB: a sandboxed child cannot import numpy"),
    ([REFERENCE, '--memory', '64M'], "--memory 64 MiB: a sandboxed child cannot import numpy"),
    ([REFERENCE, '--training-memory', '64M', '--only', 'mnist'],
     "--training-memory 64 MiB: a sandboxed child cannot import numpy"),
])
def test_cli_usage_errors_exit_2_before_grading(args, message, tmp_path):
    """One line, no traceback, and nothing graded (no table on stdout)."""
    tables = {'@BINARY@': b'\x00\xff garbage,\n1,2\n', '@TEXT@': b'a,b\n1,2\n',
              '@EMPTY@': b'section,title,points,tests\n'}
    for name, content in tables.items():
        (tmp_path / f"{name.strip('@')}.csv").write_bytes(content)
    done = grade(*(tmp_path / f"{arg.strip('@')}.csv" if arg in tables else arg for arg in args))
    assert done.returncode == 2 and message in done.stderr, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and 'Traceback' not in done.stderr
    assert done.stdout == ''


def test_cli_memory_that_imports_numpy_is_accepted():
    """numpy imports within 128 MiB (and not within 64 MiB, above)."""
    done = grade(REFERENCE, '--only', 'relu', '--memory', '128M')
    assert done.returncode == 0, done.stderr


def test_cli_same_student_twice_is_a_usage_error(tmp_path):
    (tmp_path / 'alice').mkdir()
    shutil.copyfile(REFERENCE, tmp_path / 'alice.py')
    shutil.copyfile(REFERENCE, tmp_path / 'alice' / 'solution.py')
    done = grade(tmp_path)
    assert done.returncode == 2 and "alice submitted both" in done.stderr
    done = grade(tmp_path / 'alice', '--gradescope', tmp_path / 'r.json')
    assert done.returncode == 2
