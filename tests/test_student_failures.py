"""What a student meets when things go wrong: an exiting or looping solution.py,
Ctrl-C, NaN results, damaged fixture files, unbuilt layers, the command line."""
import os
import pickle
import shutil
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest

import common
import run
import solution
from staff.kit import KIT_MODULES

REFERENCE = common.KIT_DIR / 'solution.py'
RELU_FORWARD = '''class ReLU(Layer):
    """y = max(x, 0), elementwise; any input shape."""

    def forward(self, inputs):
        """inputs (n, ...) -> outputs (n, ...)."""
        # your code here \\/
'''


def command(*args, kit_dir=common.KIT_DIR, env=None, timeout=120):
    return subprocess.run([sys.executable, str(Path(kit_dir) / 'run.py'), *map(str, args)],
                          capture_output=True, text=True, timeout=timeout, env=env, check=False)


def with_code(tmp_path, code, at_import=False):
    """The reference solution.py with `code` at its top, or as ReLU.forward's first line."""
    source = REFERENCE.read_text()
    if at_import:
        source = code + '\n' + source
    else:
        assert source.count(RELU_FORWARD) == 1
        source = source.replace(RELU_FORWARD, RELU_FORWARD + f"        {code}\n")
    path = tmp_path / 'solution.py'
    path.write_text(source)
    return path


def test_relu_forward_is_where_the_tests_put_code():
    assert REFERENCE.read_text().count(RELU_FORWARD) == 1


# ============================ Exiting solutions =============================

EXITS = ['import sys; sys.exit()', 'import sys; sys.exit(0)', 'exit()', 'import os; os._exit(0)']


@pytest.mark.parametrize('code', EXITS)
@pytest.mark.parametrize('at_import', [True, False], ids=['at import', 'in a layer'])
def test_exiting_is_an_error_with_the_students_line_in_unittest(tmp_path, code, at_import):
    path = with_code(tmp_path, code, at_import)
    result = command('unittest', 'relu', 'softmax', '--solution', path)
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert 'solution.py must not exit, but it called ' in output
    assert f'File "{path}", line' in output and code.split('; ')[-1] in output
    if not at_import:
        assert 'ERROR' in result.stdout and 'passed 1/2 sections' in result.stdout


@pytest.mark.parametrize('code', EXITS)
@pytest.mark.parametrize('at_import', [True, False], ids=['at import', 'in a layer'])
def test_exiting_is_an_error_with_the_students_line_in_gradcheck(tmp_path, code, at_import):
    path = with_code(tmp_path, code, at_import)
    result = command('gradcheck', 'ReLU', '--solution', path)
    assert result.returncode == 1, result.stdout + result.stderr
    assert 'solution.py must not exit, but it called ' in result.stderr
    assert f'File "{path}", line' in result.stderr and code.split('; ')[-1] in result.stderr


# ================================ Time limit ================================

def test_an_infinite_loop_gets_time_limit_with_its_line_and_the_other_tests_run(tmp_path):
    path = with_code(tmp_path, 'while True: pass')
    start = time.perf_counter()
    result = command('unittest', 'softmax', 'relu', 'dense', '--time', '1', '--solution', path)
    assert time.perf_counter() - start < 30
    assert result.returncode == 1, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    relu = next(index for index, line in enumerate(lines) if ' relu ' in line)
    assert 'TIME LIMIT' in lines[relu]
    assert 'stopped after the 1 s limit (--time changes it)' in lines[relu + 1]
    assert f'File "{path}", line' in lines[relu + 2] and 'while True: pass' in lines[relu + 3]
    assert 'PASSED' in lines[relu - 1]  # softmax
    assert 'PASSED' in lines[relu + 4]  # dense, in a new child
    assert lines[-1] == 'passed 2/3 sections, 3 / 3.5 points'


def test_the_default_time_limit_is_the_graders():
    from staff.grader import DEFAULT_LIMITS
    args = run.build_parser().parse_args(['unittest'])
    assert args.time == DEFAULT_LIMITS.wall == common.TIME_LIMIT == 60


def test_an_import_that_loops_is_stopped_with_its_line(tmp_path):
    path = with_code(tmp_path, 'while True: pass', at_import=True)
    result = command('unittest', 'relu', '--time', '1', '--solution', path)
    assert result.returncode == 1
    assert 'solution.py does not import: it ran past the 1 s limit at' in result.stderr
    assert 'while True: pass' in result.stderr


def test_a_crash_of_the_child_is_an_error_and_the_next_test_runs(tmp_path):
    path = with_code(tmp_path, 'import os, signal; os.kill(os.getpid(), signal.SIGKILL)')
    result = command('unittest', 'relu', 'softmax', '--solution', path)
    assert 'the process running the test ended (exit code -9)' in result.stdout
    assert result.stdout.splitlines()[-1] == 'passed 1/2 sections, 1.5 / 2 points'


@pytest.mark.skipif(sys.platform == 'win32', reason='Ctrl-C is sent as SIGINT to the process group')
def test_ctrl_c_names_the_test_and_scores_those_that_finished(tmp_path):
    path = with_code(tmp_path, 'while True: pass')
    argv = [sys.executable, str(common.KIT_DIR / 'run.py'), 'unittest', 'softmax', 'relu', 'dense',
            '--solution', str(path)]
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               start_new_session=True)
    output = b''
    os.set_blocking(process.stdout.fileno(), False)
    deadline = time.monotonic() + 60
    while b' relu ' not in output and time.monotonic() < deadline:  # its name shows as it starts
        output += process.stdout.buffer.read1() or b''
        time.sleep(0.05)
    time.sleep(0.5)
    os.killpg(process.pid, signal.SIGINT)  # what Ctrl-C on a terminal does
    os.set_blocking(process.stdout.fileno(), True)
    rest, errors = process.communicate(timeout=30)
    output = output.decode() + rest
    assert process.returncode == 130, output + errors
    assert 'interrupted (Ctrl-C) during test relu' in output
    assert output.splitlines()[-1] == 'passed 1/1 sections, 1.5 / 1.5 points'
    assert 'Traceback' not in errors and ' dense ' not in output


def children(pid):
    """The pids of a process's children (Linux /proc)."""
    return [int(child) for task in Path(f'/proc/{pid}/task').iterdir()
            for child in (task / 'children').read_text().split()]


@pytest.mark.skipif(not Path('/proc/self/task').is_dir(), reason='reads /proc (Linux)')
def test_the_child_stops_itself_at_the_limit_when_the_parent_is_gone(tmp_path):
    path = with_code(tmp_path, 'while True: pass')
    argv = [sys.executable, str(common.KIT_DIR / 'run.py'), 'unittest', 'relu', '--time', '2',
            '--solution', str(path)]
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1.5)
    test_children = [pid for pid in children(process.pid)
                     if b'spawn_main' in Path(f'/proc/{pid}/cmdline').read_bytes()]
    assert len(test_children) == 1
    process.kill()
    process.wait()
    time.sleep(4)
    assert not Path(f'/proc/{test_children[0]}').exists() or \
        Path(f'/proc/{test_children[0]}/stat').read_text().split()[2] == 'Z'


# ================================ NaN results ===============================

def test_nan_results_say_how_many_elements_are_nan_or_inf_without_warnings():
    expected = np.arange(12, dtype=np.float64).reshape(3, 4)
    actual = expected.copy()
    actual[0, 1], actual[2, 2], actual[1, 3] = np.nan, np.inf, -np.inf
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        with pytest.raises(common.CheckFailed) as failure:
            common.compare('outputs', actual, expected)
        case = {'kind': 'layer', 'expected': {'outputs': expected}}
        verdict, message = common.verify_case(case, {'outputs': np.full((3, 4), np.nan)})
    assert str(failure.value).startswith(
        'outputs: 1 NaN and 2 inf of 12 elements (shape (3, 4)); the first at index (0, 1): '
        'expected 1, got nan')
    assert 'max abs error' not in str(failure.value)
    assert verdict == common.Verdict.FAILED and '12 NaN and 0 inf of 12 elements' in message


def test_a_memory_error_names_the_limit():
    class Greedy:
        __file__ = str(REFERENCE)

        class ReLU(solution.ReLU):
            def forward(self, inputs):
                raise MemoryError

    fixture = common.find_fixtures()['relu']
    verdict, message = common.run_case(Greedy, fixture.load_case(fixture.cases[0]))
    assert verdict == common.Verdict.MEMORY_LIMIT
    assert message.endswith('the checking system allows 2 GiB for this section')


# ============================= Damaged fixtures =============================

@pytest.fixture
def kit_copy(tmp_path):
    """run.py, the kit's modules, the reference and the fixtures of five quick tests."""
    for name in (*KIT_MODULES, 'solution.py'):
        shutil.copyfile(common.KIT_DIR / name, tmp_path / name)
    for fixture in list(common.find_fixtures().values())[:5]:  # relu ... sgd
        shutil.copytree(fixture.directory, tmp_path / 'tests' / fixture.directory.name)
    return tmp_path


def fixture_dir(kit, test):
    return next((kit / 'tests').glob(f'*_unittest_{test}_input'))


def first_case_file(kit, test):
    directory = fixture_dir(kit, test)
    return min(directory.glob('*.pkl'))


DAMAGES = {
    'deleted pickle': (lambda kit: first_case_file(kit, 'softmax').unlink(), 'is missing'),
    'garbage pickle': (lambda kit: first_case_file(kit, 'softmax').write_bytes(b'garbage\x00'),
                       'is damaged'),
    'truncated pickle': (lambda kit: first_case_file(kit, 'softmax').write_bytes(
        first_case_file(kit, 'softmax').read_bytes()[:100]), 'is damaged'),
    'a pickle of something else': (lambda kit: first_case_file(kit, 'softmax').write_bytes(
        pickle.dumps([1, 2])), 'is damaged'),
    'broken description.json': (lambda kit: (fixture_dir(kit, 'softmax') / 'description.json')
                                .write_text('{"section": '), 'description.json is damaged'),
    'deleted description.json': (lambda kit: (fixture_dir(kit, 'softmax') / 'description.json')
                                 .unlink(), 'description.json is missing'),
}


@pytest.mark.parametrize('damage', DAMAGES)
def test_a_damaged_fixture_is_one_line_naming_it_and_the_others_still_run(kit_copy, damage):
    make, what = DAMAGES[damage]
    make(kit_copy)
    result = command('unittest', kit_dir=kit_copy)
    assert result.returncode == 1 and 'Traceback' not in result.stdout + result.stderr
    lines = result.stdout.splitlines()
    softmax = next(index for index, line in enumerate(lines) if ' softmax ' in line)
    assert 'ERROR' in lines[softmax]
    assert str(kit_copy / 'tests') in lines[softmax + 1] and what in lines[softmax + 1]
    assert lines[softmax + 1].endswith("re-extract the kit's tests/ folder from its zip")
    assert sum('PASSED' in line for line in lines) == 4


def test_a_damaged_training_fixture_says_so(kit_copy):
    """The training test's data check reads the case first: a damaged one is reported as
    damaged, not as the test process ending."""
    mnist = common.find_fixtures()['mnist'].directory
    shutil.copytree(mnist, kit_copy / 'tests' / mnist.name)
    first_case_file(kit_copy, 'mnist').write_bytes(b'garbage\x00')
    result = command('unittest', 'mnist', kit_dir=kit_copy)
    assert result.returncode == 1 and 'Traceback' not in result.stdout + result.stderr
    assert 'is damaged' in result.stdout and 'ended' not in result.stdout, result.stdout


@pytest.mark.parametrize('damage', ['no tests/', 'an empty tests/'])
def test_no_fixtures_at_all_is_one_line_saying_what_to_do(kit_copy, damage):
    shutil.rmtree(kit_copy / 'tests')
    if damage == 'an empty tests/':
        (kit_copy / 'tests').mkdir()
    result = command('unittest', kit_dir=kit_copy)
    assert result.returncode == 1 and result.stdout == ''
    assert result.stderr.strip().endswith("re-extract the kit's tests/ folder from its zip")
    assert len(result.stderr.strip().splitlines()) == 1


# ================================ Command line ==============================

@pytest.mark.parametrize('names, tests', [
    (['all', 'relu'], None),
    (['ReLU'], ['relu']),
    (['2.1.1'], ['relu']),
    (['3.1'], ['im2col', 'conv']),
    (['relu', 'ReLU', 'dense'], ['relu', 'dense']),
    (['conv2d', 'Softmax'], ['im2col', 'conv', 'softmax']),
])
def test_unittest_takes_tests_titles_and_section_numbers(names, tests):
    everything = list(common.find_fixtures())
    assert [fixture.test for fixture in run.select_fixtures(names)] == (tests or everything)


@pytest.mark.parametrize('names', [['ReLU'], ['2.1.1'], ['relu'], ['Conv2D', '2.1.2'],
                                   ['im2col', 'adam']])
def test_unittest_and_grade_only_take_the_same_names_for_the_same_sections(names):
    from staff.grader import select_sections
    from staff.points import EXTENDED_TABLE, load_table
    by_unittest = {fixture.section for fixture in run.select_fixtures(names)}
    table = load_table(EXTENDED_TABLE)
    by_grader = {section.number for section in select_sections(table, ','.join(names))}
    assert by_unittest == by_grader


def test_an_unknown_name_lists_the_valid_forms():
    with pytest.raises(run.Stop) as stop:
        run.select_fixtures(['relu', 'convolution'])
    assert stop.value.status == 2
    assert str(stop.value).startswith('unknown test convolution; valid names: all, relu, softmax')
    assert 'e.g. ReLU or 2.1.1' in str(stop.value)


def test_the_student_kit_help_lists_no_staff_commands(kit_copy):
    result = command('--help', kit_dir=kit_copy)
    assert result.returncode == 0
    assert 'unittest' in result.stdout and 'make-kit' not in result.stdout
    assert 'grade' not in result.stdout.replace('gradcheck', '')
    assert 'make-kit' in command('--help').stdout  # the staff's own checkout lists them


def test_a_closed_pipe_ends_quietly():
    process = subprocess.Popen(f'"{sys.executable}" "{common.KIT_DIR / "run.py"}" unittest relu '
                               f'softmax dense | head -1', shell=True, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    output, errors = process.communicate(timeout=60)
    assert output.startswith('section') and len(output.splitlines()) == 1
    assert errors == ''


def test_cifar_without_data_is_not_available_before_any_training(tmp_path):
    environment = {**os.environ, 'NN_DATA_DIR': str(tmp_path), 'https_proxy': 'http://127.0.0.1:9',
                   'http_proxy': 'http://127.0.0.1:9'}
    result = command('unittest', 'cifar', env=environment)
    assert result.returncode == 1
    cifar = next(line for line in result.stdout.splitlines() if ' cifar ' in line)
    assert 'NOT AVAILABLE' in cifar and 'training' not in result.stdout


# =========================== Layers used by hand ============================

def test_calling_forward_directly_hints_at_calling_the_layer():
    layer = common.build_for_check(solution.ReLU(), (3,))
    layer.forward(np.ones((2, 3)))
    with pytest.raises(AttributeError, match=r'ReLU.forward_inputs is not set: call the layer as '
                                             r'layer\(inputs\)'):
        layer.backward(np.ones((2, 3)))


def test_an_unbuilt_layer_hints_at_model_add():
    with pytest.raises(RuntimeError, match=r'Dense is not built: add it to a model with '
                                           r'model.add\(layer\)'):
        solution.Dense(4)(np.ones((2, 3)))
    with pytest.raises(AttributeError, match=r'Dense.weights is not set: the layer is not built: '
                                             r'add it to a model with model.add\(layer\)'):
        solution.Dense(4).forward(np.ones((2, 3)))


# ========================= gradcheck's diagnoses ============================

def gradcheck(*args, solution_path=REFERENCE):
    return command('gradcheck', *args, '--solution', solution_path)


@pytest.fixture(scope='module')
def blank_template(tmp_path_factory):
    from staff.kit import make_template
    from staff.points import EXTENDED_TABLE, load_table
    path = tmp_path_factory.mktemp('blank') / 'solution.py'
    path.write_text(make_template(REFERENCE.read_text(), load_table(EXTENDED_TABLE)))
    return path


@pytest.mark.parametrize('layer', run.GRADCHECK_DEFAULTS)
def test_gradcheck_on_the_blank_template_says_not_implemented(blank_template, layer):
    result = gradcheck(layer, solution_path=blank_template)
    assert result.returncode == 1
    assert result.stderr.strip().endswith('your code here)') and 'not implemented' in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


BUILD_RAISES = '''

class BuildsBadly(Layer):
    def build(self, optimizer, prev_layer=None):
        super().build(optimizer, prev_layer)
        self.output_shape = self.input_shape[5]

    def forward(self, inputs):
        return inputs

    def backward(self, grad_outputs):
        return grad_outputs
'''


def test_gradcheck_of_a_layer_whose_build_raises_shows_the_students_line(tmp_path):
    path = tmp_path / 'solution.py'
    path.write_text(REFERENCE.read_text() + BUILD_RAISES)
    result = gradcheck('BuildsBadly', solution_path=path)
    assert result.returncode == 1
    assert 'BuildsBadly().build() for inputs of shape (4, 8) raised an exception:' in result.stderr
    assert f'File "{path}"' in result.stderr and 'self.input_shape[5]' in result.stderr
    assert 'common.py' not in result.stderr and 'run.py' not in result.stderr
    assert '--input-shape' not in result.stderr


def test_gradcheck_blames_determine_padding_not_the_input_shape(tmp_path):
    source = REFERENCE.read_text()
    padding = "    if mode == 'same':\n        return (kernel_size - 1) // 2\n"
    assert source.count(padding) == 1
    path = tmp_path / 'solution.py'
    path.write_text(source.replace(padding, "    if mode == 'same':\n        return None\n"))
    for options in ([], ['--input-shape', '4,3,6,5']):
        result = gradcheck('Conv2D', *options, solution_path=path)
        assert result.returncode == 1
        assert 'raised an exception' in result.stderr and 'NoneType' in result.stderr
        assert f'File "{path}"' in result.stderr and '--input-shape' not in result.stderr


@pytest.mark.parametrize('argv, message', [
    (['Dense', '--args', '{"units": 0}'],
     'Dense: its outputs are empty (shape (4, 0)), so there is nothing to check'),
    (['MaxPooling2D', '--input-shape', '4,3,1,1'],
     'MaxPooling2D: its outputs are empty (shape (4, 3, 0, 0))'),
    (['Dropout', '--args', '{"p": 1.5}'],
     ('Dropout: the outputs do not depend on inputs (changing it by 1e-3 leaves them the same, '
      'all zeros): check the arguments (--args)')),
])
def test_gradcheck_diagnoses_degenerate_layers(argv, message):
    result = gradcheck(*argv)
    assert result.returncode == 1 and message in result.stderr
    assert 'float32' not in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_gradcheck_refuses_a_negative_seed_in_one_line():
    result = gradcheck('ReLU', '--seed', '-1')
    assert result.returncode == 2
    assert result.stderr.strip() == '--seed -1: give a whole number of 0 or more'


NOT_NUMBERS = '''

class NaNOutputs(Layer):
    def forward(self, inputs):
        return inputs * np.nan

    def backward(self, grad_outputs):
        return grad_outputs


class NaNGradient(Layer):
    def forward(self, inputs):
        return inputs ** 2

    def backward(self, grad_outputs):
        grad_inputs = 2 * grad_outputs * self.forward_inputs
        grad_inputs[0] = np.inf
        return grad_inputs
'''


@pytest.mark.parametrize('layer, message', [
    ('NaNOutputs', 'NaNOutputs: the outputs have 32 NaN and 0 inf of 32 elements (shape (4, 8))'),
    ('NaNGradient',
     'NaNGradient.backward() returned 0 NaN and 8 inf of 32 elements (shape (4, 8))'),
])
def test_gradcheck_counts_nan_and_inf_without_warnings(tmp_path, layer, message):
    path = tmp_path / 'solution.py'
    path.write_text(REFERENCE.read_text() + NOT_NUMBERS)
    result = gradcheck(layer, solution_path=path)
    assert result.returncode == 1 and message in result.stderr
    assert 'Warning' not in result.stderr and len(result.stderr.strip().splitlines()) == 1
