"""Students of the original course kit: their solutions run here, and every unit test is
fair to the assignment's text (Softmax's tip, ties in max pooling) with messages that
point at their bugs (gradients summed over the batch, a forgotten eps)."""
import numpy as np
import pytest
from mutants import MUTANTS

import common
import solution
from interface import Layer, Model, conv_initializer, normal_initializer

# The first part of a solution in the original kit's style: layers that take *args,
# **kwargs, set output_shape and name in __init__, replace their gradients instead of
# filling them, keep the learning rate as _lr, shift Softmax by the whole tensor's maximum.
ORIGINAL_STYLE = '''
from interface import *


class ReLU(Layer):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.name = "ReLU"

    def forward(self, inputs):
        self.mask = inputs > 0
        return inputs * self.mask

    def backward(self, grad_outputs):
        return np.where(self.mask, grad_outputs, 0)


class Softmax(Layer):
    def forward(self, inputs):
        exps = np.exp(inputs - np.max(inputs))
        return exps / np.sum(exps, axis=1, keepdims=True)

    def backward(self, grad_outputs):
        y = self.forward_outputs
        return y * grad_outputs - np.sum(y * grad_outputs, axis=1, keepdims=True) * y


class Dense(Layer):
    def __init__(self, units, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.output_shape = (units,)
        self.weights, self.weights_grad = None, None
        self.biases, self.biases_grad = None, None

    def build(self, *args, **kwargs):
        super().build(*args, **kwargs)
        input_units, = self.input_shape
        output_units, = self.output_shape
        self.weights, self.weights_grad = self.add_parameter(
            name='weights', shape=(input_units, output_units),
            initializer=he_initializer(input_units))
        self.biases, self.biases_grad = self.add_parameter(
            name='biases', shape=(output_units,), initializer=np.zeros)

    def forward(self, inputs):
        return inputs @ self.weights + self.biases

    def backward(self, grad_outputs):
        batch_size = grad_outputs.shape[0]
        self.weights_grad = self.forward_inputs.T @ grad_outputs / batch_size
        self.biases_grad = grad_outputs.mean(axis=0)
        return grad_outputs @ self.weights.T


class CategoricalCrossentropy(Loss):
    def __call__(self, y_gt, y_pred):
        return -np.sum(y_gt * np.log(y_pred + 1e-9), axis=1)

    def gradient(self, y_gt, y_pred):
        return -y_gt / (y_pred + 1e-9)


class SGD(Optimizer):
    def __init__(self, lr):
        self._lr = lr

    def get_parameter_updater(self, parameter_shape):
        return lambda parameter, parameter_grad: parameter - self._lr * parameter_grad


class SGDMomentum(Optimizer):
    def __init__(self, lr, momentum=0.0):
        self._lr, self._momentum = lr, momentum

    def get_parameter_updater(self, parameter_shape):
        inertia = np.zeros(parameter_shape)

        def updater(parameter, parameter_grad):
            inertia[...] = self._momentum * inertia + self._lr * parameter_grad
            return parameter - inertia
        return updater
'''
FIRST_PART = ('relu', 'softmax', 'dense', 'crossentropy', 'sgd', 'momentum')


@pytest.fixture(scope='module')
def original(tmp_path_factory):
    path = tmp_path_factory.mktemp('original') / 'solution.py'
    path.write_text(ORIGINAL_STYLE)
    return common.load_solution(path, name='original_style_solution')


def test_an_original_style_first_part_passes_its_unit_tests(original):
    fixtures = common.find_fixtures()
    verdicts = {test: common.run_test(fixtures[test], original).verdict for test in FIRST_PART}
    assert verdicts == dict.fromkeys(FIRST_PART, 'passed')


def test_original_style_layers_train_in_a_model_and_print_parameters(original, capsys):
    model = Model(original.CategoricalCrossentropy(), original.SGDMomentum(0.1, 0.9))
    model.add(original.Dense(16, input_shape=(784,)))
    model.add(original.ReLU(16))  # an int input_shape, replaced by the previous layer's
    model.add(original.Dense(10))
    model.add(original.Softmax())
    model.print_parameters()
    assert capsys.readouterr().out == str(model) + '\n'
    assert [layer.output_shape for layer in model.layers] == [(16,), (16,), (10,), (10,)]
    x = np.random.default_rng(0).normal(size=(32, 784)).astype(np.float32)
    y = np.eye(10, dtype=np.float32)[np.arange(32) % 10]
    model.fit(x, y, batch_size=8, epochs=3, verbose=False)
    assert model.loss_train_history[-1] < model.loss_train_history[0]


class Identity(Layer):
    def forward(self, inputs):
        return inputs

    def backward(self, grad_outputs):
        return grad_outputs


def test_build_keeps_an_output_shape_set_in_init_but_not_one_of_an_earlier_build():
    class Widen(Identity):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.output_shape = (6,)

        def forward(self, inputs):
            return np.concatenate([inputs, inputs], axis=1)

    widen = Widen(input_shape=(3,))
    widen.build(common.NoUpdates())
    assert (widen.input_shape, widen.output_shape) == ((3,), (6,))
    assert widen(np.ones((2, 3))).shape == (2, 6)
    narrow = Identity(input_shape=(2,))
    narrow.build(common.NoUpdates())
    identity = Identity()
    identity.build(common.NoUpdates(), widen)
    identity.build(common.NoUpdates(), narrow)  # built again, after another layer
    assert identity.output_shape == identity.input_shape == (2,)


def test_int_input_shape_is_a_one_dimensional_shape():
    layer = Identity(100)
    layer.build(common.NoUpdates())
    assert layer.input_shape == layer.output_shape == (100,)
    assert solution.ReLU(input_shape=np.int64(5)).input_shape == (5,)


def test_name_is_the_class_name_unless_set_and_messages_use_it():
    class MaxPooling(Identity):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.name = "MaxPool2D"

    assert Identity().name == 'Identity'
    layer = MaxPooling(input_shape=(3,))
    layer.build(common.NoUpdates())
    with pytest.raises(ValueError, match=r'MaxPool2D: input of shape \(2, 5\), expected \(n, 3\)'):
        layer(np.ones((2, 5)))


def test_training_is_is_training_under_the_original_name():
    layer = Identity(input_shape=(3,))
    model = Model(solution.CategoricalCrossentropy(), solution.SGD(0.1))
    model.add(layer)
    model.set_training(False)
    assert layer.training is False
    layer.training = True
    assert layer.is_training is True


def test_normal_initializer_draws_float32_normal_values():
    np.random.seed(0)
    for std, init in ((0.01, normal_initializer()), (0.5, normal_initializer(0.5))):
        values = init((300, 200))
        assert values.dtype == np.float32 and values.shape == (300, 200)
        assert abs(values.mean()) < 5 * std / np.sqrt(values.size)
        assert values.std() == pytest.approx(std, rel=5 / np.sqrt(2 * values.size))


def test_conv_initializer_is_he_initialization_of_the_kernels():
    np.random.seed(0)
    kernels = conv_initializer(64, 8)((64, 8, 3, 3))
    assert kernels.dtype == np.float32
    assert kernels.std() == pytest.approx(np.sqrt(2 / (8 * 3 * 3)),
                                          rel=5 / np.sqrt(2 * kernels.size))
    with pytest.raises(ValueError, match=r'conv_initializer\(64, 8\) got shape \(8, 64, 3, 3\)'):
        conv_initializer(64, 8)((8, 64, 3, 3))


# ================================ Fairness ==================================

def edited_solution(tmp_path, test, what, kind=MUTANTS):
    edit, = [edit for edit in kind if edit.test == test and edit.what == what]
    path = tmp_path / 'solution.py'
    path.write_text(common.KIT_DIR.joinpath('solution.py').read_text().replace(edit.old, edit.new))
    return common.load_solution(path, name=f"edited_{tmp_path.name}")


def message(tmp_path, test, what):
    edited = edited_solution(tmp_path, test, what)
    result = common.run_test(common.find_fixtures()[test], edited)
    assert result.verdict == 'failed'
    return result.message


def test_huge_logit_cases_tell_a_whole_tensor_shift_from_none():
    """Every row's maximum within 1000 ± 5 (or -1000 ± 5): exp() overflows (underflows)
    without a shift, while the whole tensor's maximum is within 10 of each row's."""
    fixture = common.find_fixtures()['softmax']
    cases = [case for case in map(fixture.load_case, fixture.cases) if 'hint' in case]
    assert len(cases) == 2
    for case in cases:
        row_maxima = np.max(case['calls'][0]['inputs'], axis=1)
        assert np.all(np.abs(np.abs(row_maxima) - 1000) <= 5)
        for dtype in (np.float32, np.float64):
            x = case['calls'][0]['inputs'].astype(dtype)
            exps = np.exp(x - np.max(x))
            common.compare('outputs', exps / exps.sum(axis=1, keepdims=True),
                           case['expected']['outputs'])
            with np.errstate(all='ignore'), pytest.raises(common.CheckFailed,
                                                          match=r'\d+ NaN and \d+ inf of'):
                common.compare('outputs', np.exp(x) / np.exp(x).sum(axis=1, keepdims=True),
                               case['expected']['outputs'])


def test_softmax_hint_quotes_the_assignments_tip(tmp_path):
    with np.errstate(all='ignore'):
        text = message(tmp_path, 'softmax', 'no max subtraction: exp overflows on large logits')
    assert 'subtract the maximum value of the tensor from all its elements' in text


def max_pooling_case(grad_inputs):
    """One 2x2 window with inputs [[3, 3], [1, 3]] and gradient 2, and the results."""
    case = {'args': {'pool_size': 2}, 'expected': {},
            'calls': [{'inputs': np.array([[[[3.0, 3.0], [1.0, 3.0]]]]),
                       'grad_outputs': np.array([[[[2.0]]]])}]}
    return case, {'grad_inputs': np.array(grad_inputs, dtype=np.float64).reshape(1, 1, 2, 2)}


@pytest.mark.parametrize('grad_inputs', [[2, 0, 0, 0], [0, 0, 0, 2], [2 / 3, 2 / 3, 0, 2 / 3],
                                         [0.5, 1.5, 0, 0], [1, 0.2, 0, 0.8]])
def test_max_pooling_accepts_any_split_of_the_gradient_among_tied_maxima(grad_inputs):
    common.verify_max_pooling(*max_pooling_case(grad_inputs))


@pytest.mark.parametrize('grad_inputs, why', [
    ([2, 2, 0, 2], 'the whole gradient to every tied maximum'),
    ([3, -1, 0, 0], 'a negative share'),
    ([1, 0, 0, 0], 'shares adding up to half of it'),
    ([1, 0.5, 0.5, 0], 'a share to an input below the maximum'),
])
def test_max_pooling_refuses_what_is_not_a_subgradient(grad_inputs, why):
    with pytest.raises(common.CheckFailed, match='in shares that add up to it'):
        common.verify_max_pooling(*max_pooling_case(grad_inputs))


@pytest.mark.parametrize('test, what, cause', [
    ('dense', 'weight gradient summed over the batch, not averaged',
     'n = 8 times too large: a sum over the batch where the mean belongs?'),
    ('conv', 'kernel gradient summed over the batch, not averaged',
     'n = 2 times too large: a sum over the batch where the mean belongs?'),
    ('batchnorm', 'gamma gradient summed over the batch, not averaged',
     'n = 6 times too large: a sum over the batch where the mean belongs?'),
    ('dense', 'input gradient averaged over the batch too',
     'n = 8 times too small: divided by the batch size where it should not be?'),
    ('crossentropy', 'gradient divided by the batch size',
     'n = 16 times too small: divided by the batch size where it should not be?'),
    ('crossentropy', 'gradient with the wrong sign', 'its sign is flipped'),
    ('dense', 'bias gradient forgotten', 'it is all zeros: is it computed and stored?'),
])
def test_a_gradient_off_by_the_batch_size_is_named(tmp_path, test, what, cause):
    assert f"; {cause}" in message(tmp_path, test, what)


def test_a_forgotten_eps_in_batch_norm_gets_a_hint_about_eps(tmp_path):
    with np.errstate(all='ignore'):
        text = message(tmp_path, 'batchnorm',
                       'eps forgotten: divides by the bare standard deviation')
    assert 'hint: normalize by sqrt(var + eps)' in text and 'running' not in text


def test_an_original_conv2d_constructor_points_at_the_readme_table(tmp_path):
    path = tmp_path / 'solution.py'
    path.write_text((common.KIT_DIR / 'solution.py').read_text() + """

class Conv2D(Conv2D):
    def __init__(self, filters, kernel_size, padding='same', strides=1, *args, **kwargs):
        super().__init__(filters, kernel_size, *args, **kwargs)
""")
    result = common.run_test(common.find_fixtures()['conv'],
                             common.load_solution(path, name='original_conv2d'))
    assert result.verdict == 'error'
    assert "missing 1 required positional argument: 'filters'" in result.message
    assert "see 'Coming from the original course kit' in README.md" in result.message
