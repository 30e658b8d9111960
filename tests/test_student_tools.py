"""The student's tools: ./run.py gradcheck and train, the unit-test score line,
Model.summary, Model.save/load, Ctrl-C and the epoch limit of Model.fit."""
import re
import subprocess
import sys
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest
from mutants import MUTANTS

import common
import datasets
import run
import solution
from interface import Layer, Model

REFERENCE = common.KIT_DIR / 'solution.py'

OWN_LAYERS = '''

class Cube(Layer):
    """A student's own layer: y = x ** 3."""

    def forward(self, inputs):
        return inputs ** 3

    def backward(self, grad_outputs):
        return 3 * grad_outputs * self.forward_inputs ** 2


class CubeForgetsTheThree(Cube):
    def backward(self, grad_outputs):
        return grad_outputs * self.forward_inputs ** 2


class CubeInFloat32(Cube):
    def forward(self, inputs):
        return inputs.astype(np.float32) ** 3


class UnseededMask(Layer):
    """Right as a dropout, but its mask changes although np.random is reseeded."""

    def forward(self, inputs):
        self.mask = np.random.default_rng().random(inputs.shape) < 0.5
        return inputs * self.mask

    def backward(self, grad_outputs):
        return grad_outputs * self.mask


class Unfinished(Layer):
    def forward(self, inputs):
        raise NotImplementedError("Unfinished: your code here")

    def backward(self, grad_outputs):
        raise NotImplementedError("Unfinished: your code here")


class Crashing(Layer):
    def forward(self, inputs):
        return inputs[:, undefined_name]

    def backward(self, grad_outputs):
        return grad_outputs
'''


def mutant(test, what):
    """The catalog's edit of that test and description (tests/mutants.py)."""
    found = [edit for edit in MUTANTS if (edit.test, edit.what) == (test, what)]
    assert len(found) == 1, f"no mutant {test}: {what} in tests/mutants.py"
    return found[0]


def solution_file(tmp_path, edits=(), extra=''):
    """The reference solution.py with text edits applied and code appended."""
    source = REFERENCE.read_text()
    for edit in edits:
        assert source.count(edit.old) == 1, edit.old
        source = source.replace(edit.old, edit.new)
    path = tmp_path / 'solution.py'
    path.write_text(source + extra)
    return path


@pytest.fixture
def cli(monkeypatch, capsys):
    """Runs ./run.py in this process: cli(*argv) -> (exit status, stdout, stderr)."""
    monkeypatch.setitem(sys.modules, 'solution', sys.modules['solution'])

    def invoke(*argv):
        status = run.main([str(arg) for arg in argv])
        out, err = capsys.readouterr()
        return status, out, err
    return invoke


def verdicts(out):
    """{array: verdict} from the table that gradcheck prints."""
    rows = re.findall(r'^(\w+) +\([\d, ]*\) +[\d.e+-]+ +(right|doubtful|WRONG) ', out, re.MULTILINE)
    return dict(rows)


# ================================ gradcheck =================================

KIT_LAYERS = [name for name in run.GRADCHECK_DEFAULTS if hasattr(solution, name)]


def test_every_layer_of_the_kit_has_gradcheck_defaults():
    assert set(run.layer_classes(solution)) <= set(run.GRADCHECK_DEFAULTS)
    assert {'ReLU', 'Softmax', 'Dense'} <= set(KIT_LAYERS)


@pytest.mark.parametrize('name', KIT_LAYERS)
def test_gradcheck_finds_every_reference_layer_right_with_no_options(cli, name):
    status, out, err = cli('gradcheck', name)
    assert status == 0, out + err
    shape, arguments = run.GRADCHECK_DEFAULTS[name]
    layer = run.layer_for_check(getattr(solution, name), shape, arguments, np.random.default_rng(0))
    assert verdicts(out) == dict.fromkeys(['inputs', *layer.parameter_names], 'right')
    assert f"{name}: backward is right" in out


@pytest.mark.parametrize('test, what, wrong_array, hint', [
    ('relu', 'backward passes the gradient through unchanged', 'inputs', ''),
    ('softmax', 'diagonal-only Jacobian y(1 - y)', 'inputs', ''),
    ('dense', 'weight gradient summed over the batch, not averaged', 'weights',
     'n = 4 times too large: a sum over the batch'),
    ('dense', 'bias gradient forgotten', 'biases', 'all zeros'),
    ('dense', 'input gradient averaged over the batch too', 'inputs', 'n = 4 times too small'),
    ('conv', 'input gradient through the flipped kernel', 'inputs', ''),
    ('conv', 'kernel gradient summed over the batch, not averaged', 'kernels',
     'n = 4 times too large: a sum over the batch'),
    ('maxpool', 'gradient spread evenly over the pooling window', 'inputs', ''),
    ('avgpool', 'backward not divided by H * W', 'inputs', ''),
    ('batchnorm', 'backward ignores that the batch mean and variance depend on x', 'inputs', ''),
    ('batchnorm', 'gamma gradient summed over the batch, not averaged', 'gamma',
     'n = 4 times too large: a sum over the batch'),
    ('dropout', 'a fresh mask in backward', 'inputs', ''),
    ('flatten', 'Fortran order in backward', 'inputs', ''),
], ids=lambda value: value if isinstance(value, str) and ' ' in value else None)
def test_gradcheck_flags_a_broken_backward_on_its_own_array(cli, tmp_path, test, what, wrong_array,
                                                            hint):
    edit = mutant(test, what)
    layer = {'relu': 'ReLU', 'softmax': 'Softmax', 'dense': 'Dense', 'conv': 'Conv2D',
             'maxpool': 'MaxPooling2D', 'avgpool': 'GlobalAveragePooling',
             'batchnorm': 'BatchNormalization', 'dropout': 'Dropout', 'flatten': 'Flatten'}[test]
    status, out, err = cli('gradcheck', layer, '--solution', solution_file(tmp_path, [edit]))
    assert status == 1, out + err
    found = verdicts(out)
    assert found[wrong_array] == 'WRONG'
    assert all(verdict == 'right' for array, verdict in found.items() if array != wrong_array), out
    assert f"{layer}: backward WRONG for {wrong_array}" in out
    assert hint in out


def test_gradcheck_checks_the_students_own_layers(cli, tmp_path):
    path = solution_file(tmp_path, extra=OWN_LAYERS)
    status, out, _ = cli('gradcheck', 'cube', '--solution', path)  # any letter case
    assert status == 0 and verdicts(out) == {'inputs': 'right'}
    assert 'Cube() on random inputs (4, 8)' in out
    status, out, _ = cli('gradcheck', 'CubeForgetsTheThree', '--input-shape', '3,2,2', '--solution',
                         path)
    assert status == 1 and verdicts(out) == {'inputs': 'WRONG'} and '(3, 2, 2)' in out


@pytest.mark.parametrize('layer, message', [
    ('CubeInFloat32', 'the layer computes in float32'),
    ('UnseededMask', 'two forward passes on the same inputs differ'),
    ('Unfinished', 'Unfinished: not implemented (Unfinished: your code here)'),
])
def test_gradcheck_says_why_it_cannot_check(cli, tmp_path, layer, message):
    status, out, err = cli('gradcheck', layer, '--solution',
                           solution_file(tmp_path, extra=OWN_LAYERS))
    assert status == 1 and message in err
    assert 'WRONG' not in out and 'Traceback' not in err and len(err.strip().splitlines()) == 1


def test_gradcheck_shows_the_students_frames_of_an_exception(cli, tmp_path):
    path = solution_file(tmp_path, extra=OWN_LAYERS)
    status, _, err = cli('gradcheck', 'Crashing', '--solution', path)
    assert status == 1 and f'File "{path}"' in err and "NameError: name 'undefined_name'" in err
    assert 'common.py' not in err


@pytest.mark.parametrize('argv, message', [
    (['Convolution'], 'no layer Convolution in'),
    (['Dense', '--args', '{units: 3}'], 'not JSON'),
    (['Dense', '--args', '[3]'], 'give a JSON object'),
    (['Dense', '--args', '{"unit": 3}'], "it takes (units, input_shape=None)"),
    (['Dense', '--input-shape', '4x9'], 'give positive sizes with the batch first'),
    (['Dense', '--input-shape', '9'], 'give positive sizes with the batch first'),
    (['Dense', '--input-shape', '4,3,8,8'], 'cannot take inputs of shape (4, 3, 8, 8)'),
])
def test_gradcheck_usage_errors_are_one_clear_line(cli, argv, message):
    status, out, err = cli('gradcheck', *argv)
    assert status == 2 and out == '' and message in err and len(err.strip().splitlines()) == 1
    if argv == ['Convolution']:
        assert 'ReLU, Softmax, Dense' in err


# ============================ Model: summary ================================

def test_summary_lists_layers_output_shapes_and_parameter_counts(capsys):
    model = Model(solution.CategoricalCrossentropy(), solution.SGDMomentum(lr=0.1, momentum=0.9))
    for layer in (solution.Dense(5, input_shape=(3,)), solution.ReLU(), solution.Dense(2),
                  solution.Softmax()):
        model.add(layer)
    text = str(model)
    lines = text.splitlines()
    assert lines[0] == ('Model: loss CategoricalCrossentropy(), '
                        'optimizer SGDMomentum(lr=0.1, momentum=0.9)')
    assert lines[1].split() == ['layer', 'output', 'shape', 'parameters']
    assert lines[2].split() == ['input', '(n,', '3)']
    assert lines[3].split() == ['Dense(5,', 'input_shape=(3,))', '(n,', '5)', '20']
    assert lines[4].split() == ['ReLU()', '(n,', '5)', '0']
    assert lines[5].split() == ['Dense(2)', '(n,', '2)', '12']
    assert lines[7].split() == ['total', '32']
    model.summary()
    assert capsys.readouterr().out == text + '\n'


def test_summary_of_a_convolutional_network_counts_its_parameters():
    model = Model(solution.CategoricalCrossentropy(), solution.SGD(lr=0.1))
    for layer in (solution.Conv2D(4, input_shape=(3, 6, 6)), solution.BatchNormalization(),
                  solution.MaxPooling2D(), solution.Flatten(), solution.Dense(2)):
        model.add(layer)
    rows = {line.split('  ')[0].strip(): line.split() for line in str(model).splitlines()[3:]}
    assert rows['Conv2D(4, input_shape=(3, 6, 6))'][-5:] == ['(n,', '4,', '6,', '6)', '112']
    assert rows['BatchNormalization()'][-1] == '8'
    assert rows['MaxPooling2D()'][-5:] == ['(n,', '4,', '3,', '3)', '0']
    assert rows['Dense(2)'][-1] == '74'
    assert rows['total'] == ['total', '194']


# ============================ Model: save, load =============================

def trained_convolutional_model():
    """A small BN network after two epochs on random data, so its running statistics moved."""
    np.random.seed(0)
    model = Model(solution.CategoricalCrossentropy(), solution.SGDMomentum(lr=0.05, momentum=0.9))
    for layer in (solution.Conv2D(4, kernel_size=3, input_shape=(2, 5, 5)),
                  solution.BatchNormalization(),
                  solution.ReLU(), solution.MaxPooling2D(), solution.Dropout(0.3),
                  solution.Flatten(),
                  solution.Dense(3), solution.Softmax()):
        model.add(layer)
    x = np.random.normal(2.0, 3.0, size=(40, 2, 5, 5)).astype(np.float32)
    y = np.eye(3, dtype=np.float32)[np.random.randint(0, 3, size=40)]
    model.fit(x, y, batch_size=8, epochs=2, verbose=False, x_valid=x[:10], y_valid=y[:10])
    return model, x


def test_save_and_load_give_a_model_that_predicts_exactly_the_same(tmp_path):
    model, x = trained_convolutional_model()
    batchnorm = model.layers[1]
    assert not np.allclose(batchnorm.running_mean, 0) and not np.allclose(batchnorm.running_var, 1)
    model.save(tmp_path / 'model.npz')
    loaded = Model.load(tmp_path / 'model.npz')
    assert loaded is not model and str(loaded) == str(model)
    assert np.array_equal(loaded.predict(x), model.predict(x))
    assert np.array_equal(loaded.layers[1].running_mean, batchnorm.running_mean)
    assert np.array_equal(loaded.layers[1].running_var, batchnorm.running_var)
    for name in ('loss_train_history', 'loss_valid_history', 'accuracy_train_history',
                 'accuracy_valid_history'):
        assert getattr(loaded, name) == getattr(model, name) and len(getattr(model, name)) == 2
    loaded.fit(x, np.eye(3, dtype=np.float32)[np.zeros(40, int)], batch_size=8, epochs=1,
               verbose=False)
    assert len(loaded.loss_train_history) == 3  # a loaded model trains on


def test_running_statistics_matter_so_the_round_trip_test_can_fail(tmp_path):
    model, x = trained_convolutional_model()
    model.save(tmp_path / 'model.npz')
    loaded = Model.load(tmp_path / 'model.npz')
    loaded.layers[1].running_mean[...] = 0
    loaded.layers[1].running_var[...] = 1
    assert not np.allclose(loaded.predict(x), model.predict(x))


def test_layers_remember_their_constructor_arguments():
    dense = solution.Dense(10, input_shape=(784,))
    momentum = solution.SGDMomentum(0.1, momentum=0.5)
    assert dense.constructor_arguments == ((10,), {'input_shape': (784,)})
    assert momentum.constructor_arguments == ((0.1,), {'momentum': 0.5})


class Pickled:
    """Unpickling this would create a file: loading a model must never unpickle."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return Path.touch, (Path(self.marker),)


def write_npz(path, **arrays):
    np.savez(path, **arrays)
    return path


def write_text(path, text):
    path.write_text(text)
    return path


@pytest.mark.parametrize('make', [lambda tmp: tmp / 'missing.npz', lambda tmp: tmp])
def test_loading_a_missing_file_is_a_clear_error(tmp_path, make):
    with pytest.raises(FileNotFoundError,
                       match=f"no model file at {re.escape(str(make(tmp_path)))}$"):
        Model.load(make(tmp_path))


@pytest.mark.parametrize('make, message', [
    (lambda tmp: write_text(tmp / 'notes.npz', 'hello'), 'not an .npz file'),
    (lambda tmp: write_npz(tmp / 'weights.npz', weights=np.ones(3)), 'it has no architecture'),
    (lambda tmp: write_npz(tmp / 'json.npz', architecture=np.array('{"format": "keras"}')),
     "its architecture is not of format 'numpy-nn-kit model 1'"),
    (lambda tmp: write_npz(tmp / 'evil.npz',
                           architecture=np.array([Pickled(tmp / 'pwned')], dtype=object)),
     'Object arrays cannot be loaded'),
])
def test_loading_a_file_of_the_wrong_format_is_a_clear_error(tmp_path, make, message):
    path = make(tmp_path)
    with pytest.raises(ValueError, match=re.escape(message)) as raised:
        Model.load(path)
    assert str(raised.value).startswith(f"{path} is not a model written by Model.save")
    assert not (tmp_path / 'pwned').exists()


def test_loading_with_changed_layers_names_what_differs(tmp_path):
    model, _ = trained_convolutional_model()
    model.save(tmp_path / 'model.npz')
    with np.load(tmp_path / 'model.npz') as archive:
        arrays = dict(archive)
    arrays['layer6.weights'] = arrays['layer6.weights'][:-1]
    np.savez(tmp_path / 'changed.npz', **arrays)
    with pytest.raises(ValueError,
                       match=r'layer 6 Dense.weights of shape \(16, 3\) is missing or has '
                             r'another shape'):
        Model.load(tmp_path / 'changed.npz')
    renamed = str(arrays['architecture']).replace('"Flatten"', '"Flattener"')
    arrays['architecture'] = np.array(renamed)
    np.savez(tmp_path / 'renamed.npz', **arrays)
    with pytest.raises(ValueError,
                       match='no Layer subclass named Flattener is defined: import the module'):
        Model.load(tmp_path / 'renamed.npz')


def test_save_refuses_what_it_could_not_rebuild(tmp_path):
    model = Model(solution.CategoricalCrossentropy(), common.NoUpdates())
    model.add(solution.Dense(2, input_shape=(3,)))
    with pytest.raises(TypeError, match='NoUpdates is not a Layer, Loss or Optimizer subclass'):
        model.save(tmp_path / 'model.npz')
    model = Model(solution.CategoricalCrossentropy(), solution.SGD(lr=0.1))
    model.add(solution.Dense(2, input_shape=(3,)))
    model.add(solution.Dropout(p=lambda: 0.5))
    with pytest.raises(TypeError, match=r'Dropout\(p=<function .*cannot be saved'):
        model.save(tmp_path / 'model.npz')


# ======================= Model: fit, Ctrl-C, epochs ========================

class InterruptAt(Layer):
    """Identity that raises KeyboardInterrupt (as Ctrl-C does) at its `at`-th training
    forward pass."""

    def __init__(self, at, input_shape=None):
        super().__init__(input_shape)
        self.at, self.calls = at, 0

    def forward(self, inputs):
        self.calls += self.is_training
        if self.is_training and self.calls == self.at:
            raise KeyboardInterrupt
        return inputs

    def backward(self, grad_outputs):
        return grad_outputs


def small_problem():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(20, 4)).astype(np.float32)
    return x, np.eye(3, dtype=np.float32)[rng.integers(0, 3, size=20)]


def test_ctrl_c_ends_training_cleanly_keeping_weights_and_histories(capsys):
    x, y = small_problem()
    model = Model(solution.CategoricalCrossentropy(), solution.SGD(lr=0.1))
    for layer in (InterruptAt(7, input_shape=(4,)), solution.Dense(3), solution.Softmax()):
        model.add(layer)
    start = model.layers[1].weights.copy()
    # 4 batches per epoch
    model.fit(x, y, batch_size=5, epochs=5, verbose=False, x_valid=x, y_valid=y)
    assert len(model.loss_train_history) == len(model.loss_valid_history) == 1
    assert not np.array_equal(model.layers[1].weights, start)  # the 6 steps before Ctrl-C stay
    assert not any(layer.is_training for layer in model.layers)
    assert model.predict(x).shape == (20, 3)
    assert ('training interrupted: the model keeps its weights and the histories of its 1 '
            'finished epochs') in capsys.readouterr().err


def test_fit_prints_one_summary_line_per_epoch(capsys):
    x, y = small_problem()
    model = Model(solution.CategoricalCrossentropy(), solution.SGD(lr=0.1))
    model.add(solution.Dense(3, input_shape=(4,)))
    model.add(solution.Softmax())
    model.fit(x, y, batch_size=5, epochs=3, x_valid=x, y_valid=y)
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3
    for epoch, line in enumerate(lines, 1):
        assert re.fullmatch(rf'epoch {epoch}: train loss [\d.]+, accuracy [\d.]+; '
                            rf'valid loss [\d.]+, accuracy [\d.]+ \([\d.]+ s\)', line), line
    assert f"valid loss {model.loss_valid_history[-1]:.4f}" in lines[-1]


def test_epoch_limit_caps_the_epochs_of_every_fit_call(monkeypatch):
    x, y = small_problem()
    model = Model(solution.CategoricalCrossentropy(), solution.SGD(lr=0.1))
    model.add(solution.Dense(3, input_shape=(4,)))
    model.add(solution.Softmax())
    monkeypatch.setattr(Model, 'epoch_limit', 4)
    model.fit(x, y, batch_size=5, epochs=3, verbose=False)
    model.fit(x, y, batch_size=5, epochs=3, verbose=False)
    assert len(model.loss_train_history) == 4
    monkeypatch.setattr(Model, 'epoch_limit', None)
    model.fit(x, y, batch_size=5, epochs=2, verbose=False)
    assert len(model.loss_train_history) == 6


# ================================== train ===================================

@lru_cache(maxsize=1)
def small_mnist():
    """1000 training and 5000 validation images (the unit test's split), 500 test images."""
    x_train, y_train, x_test, y_test = datasets.load_mnist()
    return x_train[:6000], y_train[:6000], x_test[:500], y_test[:500]


@pytest.fixture
def mnist_subset(monkeypatch):
    monkeypatch.setitem(datasets.DATASETS, 'mnist', small_mnist)


def test_train_caps_the_epochs_reports_accuracy_and_saves(cli, mnist_subset, tmp_path):
    status, out, err = cli('train', 'mnist', '--epochs', '1', '--save', tmp_path / 'model.npz')
    assert status == 0, out + err
    assert Model.epoch_limit is None
    accuracy = float(re.search(r'train_mnist_model: final test accuracy ([\d.]+), test loss [\d.]+ '
                               r'\(1 epoch, \d+ s of training\)', out).group(1))
    loaded = Model.load(tmp_path / 'model.npz')
    assert len(loaded.loss_train_history) == 1  # the reference asks for more
    *_, x_test, y_test = small_mnist()
    assert loaded.evaluate(x_test, y_test)[1] == pytest.approx(accuracy, abs=5e-5)
    assert f"model saved to {tmp_path / 'model.npz'}" in out


def test_train_plots_the_curves(cli, mnist_subset, tmp_path):
    pytest.importorskip('matplotlib')
    status, out, err = cli('train', 'mnist', '--epochs', '2', '--plot', tmp_path / 'curves.png')
    assert status == 0, out + err
    assert (tmp_path / 'curves.png').read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
    assert f"loss and accuracy curves saved to {tmp_path / 'curves.png'}" in out


def test_one_epoch_is_plotted_on_an_axis_of_whole_epochs(tmp_path):
    from matplotlib.figure import Figure
    figures = []

    class Kept(Figure):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            figures.append(self)

    model = Model(solution.CategoricalCrossentropy(), solution.SGD(lr=0.1))
    model.loss_train_history, model.loss_valid_history = [0.5], [0.4]
    model.accuracy_train_history, model.accuracy_valid_history = [0.8], [0.9]
    run.plot_curves(Kept, model, tmp_path / 'curves.png', 'one epoch')
    for axes in figures[0].axes:
        assert axes.get_xlim() == (0.5, 1.5)
        assert [tick for tick in axes.get_xticks() if 0.5 <= tick <= 1.5] == [1]


INTERRUPTED_TRAINING = '''

class StopAtOnce(Layer):
    def forward(self, inputs):
        if self.is_training:
            raise KeyboardInterrupt  # as Ctrl-C in the first epoch
        return inputs

    def backward(self, grad_outputs):
        return grad_outputs


def train_mnist_model(x_train, y_train, x_valid, y_valid):
    model = Model(CategoricalCrossentropy(), SGD(lr=0.1))
    model.add(StopAtOnce(input_shape=(784,)))
    model.add(Dense(10))
    model.add(Softmax())
    model.fit(x_train, y_train, batch_size=32, epochs=3, x_valid=x_valid, y_valid=y_valid)
    return model
'''


def test_ctrl_c_in_the_first_epoch_says_so_instead_of_plotting(cli, mnist_subset, tmp_path):
    pytest.importorskip('matplotlib')
    status, out, err = cli('train', 'mnist', '--plot', tmp_path / 'curves.png',
                           '--solution', solution_file(tmp_path, extra=INTERRUPTED_TRAINING))
    assert status == 0, out + err
    assert '(0 epochs, ' in out
    assert 'no curves to plot: training was stopped (Ctrl-C) before its first epoch finished' in out
    assert not (tmp_path / 'curves.png').exists()


def test_train_without_matplotlib_says_so_before_training(cli, monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, 'matplotlib', None)
    monkeypatch.setitem(sys.modules, 'matplotlib.figure', None)
    monkeypatch.setitem(datasets.DATASETS, 'mnist', lambda: pytest.fail('training started'))
    status, out, err = cli('train', 'mnist', '--plot', tmp_path / 'curves.png')
    assert status == 2 and out == ''
    assert err.strip() == ('--plot needs matplotlib, which is not installed: '
                           'pip install matplotlib (or leave out --plot)')


@pytest.mark.parametrize('argv, message', [
    (['fashion'], 'unknown training test fashion; valid names: mnist'),
    (['mnist', '--save', 'no/such/directory/model.npz'],
     '--save no/such/directory/model.npz: not a file in'),
    (['mnist', '--epochs', '0'], '--epochs 0: give at least 1'),
])
def test_train_usage_errors_come_before_training(cli, monkeypatch, argv, message):
    monkeypatch.setitem(datasets.DATASETS, 'mnist', lambda: pytest.fail('training started'))
    status, out, err = cli('train', *argv)
    assert status == 2 and out == '' and message in err and len(err.strip().splitlines()) == 1


def test_train_reports_an_unfinished_training_function(cli, mnist_subset, tmp_path):
    extra = '\n\ndef train_mnist_model(x_train, y_train, x_valid, y_valid):\n' \
            '    raise NotImplementedError("MNIST: your code here")\n'
    status, out, err = cli('train', 'mnist', '--solution', solution_file(tmp_path, extra=extra))
    assert status == 1
    assert err.strip() == 'train_mnist_model: not implemented (MNIST: your code here)'


@pytest.mark.training
def test_train_command_on_full_mnist_for_one_epoch(tmp_path):
    result = subprocess.run([sys.executable, str(common.KIT_DIR / 'run.py'), 'train', 'mnist',
                             '--epochs', '1',
                             '--save', str(tmp_path / 'model.npz')],
                            capture_output=True, text=True, timeout=600, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(r'epoch 1: train loss [\d.]+, accuracy [\d.]+; valid loss', result.stdout)
    assert float(re.search(r'final test accuracy ([\d.]+)', result.stdout).group(1)) > 0.9
    assert 'epoch 2' not in result.stdout and (tmp_path / 'model.npz').is_file()


# ============================ unittest score line ===========================

def test_score_counts_a_section_only_when_all_its_tests_ran_and_passed(cli, tmp_path):
    status, out, _ = cli('unittest', 'relu', 'conv')
    assert status == 0
    assert out.strip().splitlines()[-1] == ('passed 1/1 sections, 0.5 / 0.5 points; '
                                            'not scored: 3.1 (also run im2col)')
    broken = solution_file(tmp_path,
                           [mutant('im2col',
                                   'get_im2col_indices swaps the row and column indices')])
    status, out, _ = cli('unittest', 'im2col', 'conv', 'relu', '--solution', broken)
    assert status == 1 and re.search(r'^3\.1 +conv .*PASSED', out, re.MULTILINE)
    assert out.strip().splitlines()[-1] == 'passed 1/2 sections, 0.5 / 2 points'


# ================================= profile ==================================

MNIST_NETWORK = ['Dense(512, input_shape=(784,))', 'ReLU()', 'Dense(10)', 'Softmax()']


def test_profile_times_each_layer_of_the_students_network_and_projects_the_training(cli):
    status, out, err = cli('profile', 'mnist', '--batches', '2')
    assert status in (0, 1), err  # 1: the projection is over the limit on a busy machine
    lines = out.splitlines()
    assert lines[0] == ('train_mnist_model: batch size 64, 8 epochs; median of 2 training steps '
                        'on random inputs (64, 784)')
    assert [line.split('  ')[0] for line in lines[2:6]] == MNIST_NETWORK
    shares = [int(re.search(r'(\d+)%$', line).group(1)) for line in lines[2:6]]
    assert 98 <= sum(shares) <= 102 and max(shares) == shares[0]  # the big Dense dominates
    assert lines[6].startswith('one training step')
    assert re.fullmatch(r'projected training: 8 epochs x \(860 steps of [\d.]+ s \+ validation\) = '
                        r'[\d.]+ min, (within|OVER) the limit of 10 min \(on this machine, as busy '
                        r'as it is now\)', lines[7])
    assert (status == 0) == ('within' in lines[7])
    assert model_fit_is_restored()


def model_fit_is_restored():
    return Model.fit.__qualname__ == 'Model.fit'


def test_profile_counts_the_epochs_of_every_fit_call(cli):
    status, out, err = cli('profile', 'cifar', '--batches', '1')
    assert status in (0, 1), err
    # 12 fit calls of 1 epoch each
    assert out.startswith('train_cifar10_model: batch size 128, 12 epochs;')
    assert 'Conv2D(16, input_shape=(3, 32, 32))' in out and model_fit_is_restored()


@pytest.mark.parametrize('body, message', [
    ('    return Model(CategoricalCrossentropy(), SGD(lr=0.1))\n',
     'train_mnist_model never called model.fit: nothing to profile'),
    ('    raise NotImplementedError("MNIST: your code here")\n',
     'train_mnist_model: not implemented (MNIST: your code here)'),
])
def test_profile_says_why_it_cannot_profile(cli, tmp_path, body, message):
    extra = '\n\ndef train_mnist_model(x_train, y_train, x_valid, y_valid):\n' + body
    status, _, err = cli('profile', 'mnist', '--solution', solution_file(tmp_path, extra=extra))
    assert status == 1 and err.strip() == message and model_fit_is_restored()


@pytest.mark.parametrize('argv, message', [
    (['conv'], 'unknown training test conv; valid names: mnist, cifar'),
    (['mnist', '--batches', '0'], '--batches 0: give at least 1'),
])
def test_profile_usage_errors(cli, argv, message):
    status, _, err = cli('profile', *argv)
    assert status == 2 and err.strip() == message
