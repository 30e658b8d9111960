"""The given framework: Layer bookkeeping, Model training loop, clear errors."""
import numpy as np
import pytest

import solution
from interface import Layer, Model, he_initializer


class Scale(Layer):
    """y = a * x with one trainable scalar-per-feature parameter a."""

    def build(self, optimizer, prev_layer=None):
        super().build(optimizer, prev_layer)
        self.a, self.a_grad = self.add_parameter('a', self.input_shape, np.ones)

    def forward(self, inputs):
        return inputs * self.a

    def backward(self, grad_outputs):
        self.a_grad[...] = np.mean(grad_outputs * self.forward_inputs, axis=0)
        return grad_outputs * self.a


class Recorder(Layer):
    """Identity that records is_training at every forward."""

    def __init__(self, input_shape=None):
        super().__init__(input_shape)
        self.modes = []

    def forward(self, inputs):
        self.modes.append(self.is_training)
        return inputs

    def backward(self, grad_outputs):
        return grad_outputs


def model_with(*layers, lr=0.1):
    model = Model(solution.CategoricalCrossentropy(), solution.SGD(lr))
    for layer in layers:
        model.add(layer)
    return model


def test_first_layer_without_input_shape_is_a_clear_error():
    with pytest.raises(ValueError, match='Dense: the first layer of a model needs input_shape'):
        model_with(solution.Dense(3))


def test_add_parameter_before_build_is_a_clear_error():
    with pytest.raises(RuntimeError, match=r"Scale.add_parameter\('a'\): call it inside build"):
        Scale(input_shape=(3,)).add_parameter('a', (3,), np.ones)


def test_build_takes_shapes_from_the_previous_layer():
    model = model_with(solution.Dense(5, input_shape=(7,)), solution.ReLU(), solution.Dense(2))
    assert [layer.input_shape for layer in model.layers] == [(7,), (5,), (5,)]
    assert model.layers[-1].output_shape == (2,)
    assert model.layers[0].weights.dtype == np.float32


def test_forward_inputs_and_outputs_are_read_only():
    class Clobber(Recorder):
        def forward(self, inputs):
            inputs[...] = 0
            return inputs

    with pytest.raises(ValueError, match='read-only'):
        model_with(Clobber(input_shape=(3,))).forward(np.ones((2, 3)))
    layer = model_with(Recorder(input_shape=(3,))).layers[0]
    outputs = layer(np.ones((2, 3)))
    with pytest.raises(ValueError, match='read-only'):
        outputs[0, 0] = 5


def test_wrong_input_and_output_shapes_name_the_layer():
    model = model_with(solution.Dense(4, input_shape=(3,)))
    with pytest.raises(ValueError, match=r'Dense: input of shape \(2, 5\), expected \(n, 3\)'):
        model.forward(np.ones((2, 5)))

    class Squash(Recorder):
        def forward(self, inputs):
            return inputs[:, :1]

    with pytest.raises(ValueError, match=r'Squash: output of shape \(2, 1\), expected \(2, 3\)'):
        model_with(Squash(input_shape=(3,))).forward(np.ones((2, 3)))


def test_forward_returning_none_is_a_clear_error():
    class Forgetful(Recorder):
        def forward(self, inputs):
            inputs + 1

    with pytest.raises(TypeError, match='Forgetful.forward\\(\\) returned None'):
        model_with(Forgetful(input_shape=(3,))).forward(np.ones((2, 3)))


def test_update_parameters_steps_with_the_optimizer():
    layer = model_with(Scale(input_shape=(2,)), lr=0.5).layers[0]
    layer.a_grad[...] = [1.0, -2.0]
    layer.update_parameters()
    np.testing.assert_allclose(layer.a, [0.5, 2.0])


@pytest.mark.parametrize('breakage, error, message', [
    (lambda layer: delattr(layer, 'a_grad'), AttributeError, r'Scale.a_grad is missing'),
    (lambda layer: setattr(layer, 'a_grad', np.ones(5)), ValueError,
     r'Scale.a_grad has shape \(5,\), expected \(2,\)'),
    (lambda layer: layer.a_grad.fill(np.nan), FloatingPointError, r'Scale.a_grad has NaN or inf'),
    (lambda layer: setattr(layer, 'a', 'oops'), AttributeError,
     r'Scale.a is missing or not an ndarray'),
])
def test_update_parameters_reports_broken_parameters(breakage, error, message):
    layer = model_with(Scale(input_shape=(2,))).layers[0]
    breakage(layer)
    with pytest.raises(error, match=message):
        layer.update_parameters()


def test_updater_returning_a_wrong_shape_is_reported():
    layer = model_with(Scale(input_shape=(2,))).layers[0]
    layer.parameter_updaters['a'] = lambda parameter, grad: np.zeros(3)
    with pytest.raises(ValueError, match=r"the updater of 'a' returned shape \(3,\)"):
        layer.update_parameters()


def test_fit_trains_and_predict_evaluate_run_in_test_mode():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(10, 2)).astype(np.float32)
    y = np.eye(2, dtype=np.float32)[(x[:, 0] > 0).astype(int)]
    recorder = Recorder(input_shape=(2,))
    model = model_with(recorder, solution.Dense(2), solution.Softmax(), lr=0.5)
    model.fit(x, y, batch_size=4, epochs=20, verbose=False, x_valid=x, y_valid=y)
    assert len(model.loss_train_history) == len(model.accuracy_valid_history) == 20
    assert model.loss_train_history[-1] < model.loss_train_history[0]
    assert True in recorder.modes
    recorder.modes.clear()
    assert model.predict(x, batch_size=4).shape == (10, 2)
    assert recorder.modes == [False] * 3


def test_evaluate_counts_the_last_partial_batch():
    model = model_with(Recorder(input_shape=(2,)))
    x = np.array([[1, 0]] * 9 + [[0, 1]], dtype=np.float32)
    y = np.array([[1, 0]] * 10, dtype=np.float32)
    _, accuracy = model.evaluate(x, y, batch_size=3)
    assert accuracy == pytest.approx(0.9)


def test_he_initializer_statistics():
    weights = he_initializer(200)((400, 300))
    assert weights.dtype == np.float32 and weights.shape == (400, 300)
    assert abs(weights.mean()) < 5 * 0.1 / np.sqrt(weights.size)
    assert weights.std() == pytest.approx(0.1, rel=0.01)
