"""./run.py unittest as a student uses it: verdicts, messages, exit codes."""
import subprocess
import sys

import pytest

import common

REFERENCE = common.KIT_DIR / 'solution.py'


def run(*args, solution=None):
    command = [sys.executable, str(common.KIT_DIR / 'run.py'), *args]
    if solution is not None:
        command += ['--solution', str(solution)]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)


def edited(tmp_path, old, new):
    source = REFERENCE.read_text()
    assert source.count(old) == 1
    path = tmp_path / 'solution.py'
    path.write_text(source.replace(old, new))
    return path


def test_one_test_passes_with_a_table_and_score():
    result = run('unittest', 'relu')
    assert result.returncode == 0, result.stdout + result.stderr
    assert 'section' in result.stdout and 'PASSED' in result.stdout
    assert result.stdout.strip().endswith('passed 1/1 sections, 0.5 / 0.5 points')
    assert '\033[' not in result.stdout  # no colour when not on a terminal


def test_unknown_name_is_a_usage_error_listing_valid_names():
    result = run('unittest', 'relu', 'convolution')
    assert result.returncode == 2
    assert 'unknown test convolution' in result.stderr and 'relu, softmax, dense' in result.stderr


def test_missing_solution_file_is_a_usage_error(tmp_path):
    result = run('unittest', 'relu', solution=tmp_path / 'nope.py')
    assert result.returncode == 2 and 'no solution file' in result.stderr


def test_help_explains_the_commands():
    result = run('--help')
    assert result.returncode == 0 and './run.py unittest relu' in result.stdout


def test_failure_names_case_quantity_shapes_errors_and_index(tmp_path):
    path = edited(tmp_path, 'self.weights_grad[...] = self.forward_inputs.T @ grad_outputs / n',
                  'self.weights_grad[...] = self.forward_inputs.T @ grad_outputs')
    result = run('unittest', 'relu', 'dense', solution=path)
    assert result.returncode == 1
    assert 'FAILED' in result.stdout and "case 'batch of 8, 7 -> 5 units'" in result.stdout
    message = result.stdout[result.stdout.index('FAILED'):]
    for part in ('weights_grad differs', 'shape (7, 5)', 'max abs error', 'max rel error',
                 'at index (', 'expected', 'got'):
        assert part in message
    assert result.stdout.strip().endswith('passed 1/2 sections, 0.5 / 2 points')


def test_huge_logit_failure_points_to_the_max_subtraction_tip(tmp_path):
    path = edited(tmp_path, 'exps = np.exp(inputs - np.max(inputs, axis=1, keepdims=True))',
                  'exps = np.exp(inputs)')
    result = run('unittest', 'softmax', solution=path)
    assert result.returncode == 1
    assert "case 'logits around +1000'" in result.stdout
    assert 'subtract the maximum value of the tensor from all its elements' in result.stdout


def test_exception_shows_only_the_students_frames(tmp_path):
    path = edited(tmp_path, 'return np.maximum(inputs, 0)', 'return undefined_name')
    result = run('unittest', 'relu', solution=path)
    assert result.returncode == 1 and 'ERROR' in result.stdout
    assert f'File "{path}"' in result.stdout and "NameError: name 'undefined_name'" in result.stdout
    assert 'common.py' not in result.stdout and 'interface.py' not in result.stdout


def test_not_implemented_is_its_own_verdict(tmp_path):
    path = edited(tmp_path, 'return np.maximum(inputs, 0)',
                  'raise NotImplementedError("ReLU: your code here")')
    result = run('unittest', 'relu', solution=path)
    assert result.returncode == 1 and 'NOT IMPLEMENTED' in result.stdout
    assert 'ReLU: your code here' in result.stdout and 'Traceback' not in result.stdout


@pytest.mark.parametrize('source, message', [
    ('def broken(:\n', 'SyntaxError'),
    ('import no_such_module_here\n', "No module named 'no_such_module_here'"),
])
def test_solution_that_does_not_import_gets_a_clear_message(tmp_path, source, message):
    path = tmp_path / 'solution.py'
    path.write_text(source)
    result = run('unittest', 'relu', solution=path)
    assert result.returncode == 1
    assert 'solution.py does not import' in result.stderr and message in result.stderr
