"""Independent oracle: every layer's and loss's backward pass against float64
central differences of the reference solution's forward pass."""
import numpy as np
import pytest

import common
import gradcheck
import solution

LAYERS = [
    ('ReLU', {}, (4, 3, 5)),
    ('Softmax', {}, (5, 7)),
    ('Dense', {'units': 6}, (4, 9)),
    ('LeakyReLU', {'alpha': 0.1}, (4, 3, 5)),
]


def built(name, args, shape):
    layer = common.build_for_check(getattr(solution, name)(**args), shape[1:])
    for parameter in layer.parameter_names:
        setattr(layer, parameter,
                np.random.default_rng(1).normal(size=getattr(layer, parameter).shape))
    return layer


@pytest.mark.parametrize('name, args, shape', LAYERS, ids=[layer[0] for layer in LAYERS])
def test_layer_backward_matches_central_differences(name, args, shape):
    inputs = np.random.default_rng(0).normal(size=shape)
    errors = gradcheck.gradient_check(built(name, args, shape), inputs)
    assert set(errors) == {'inputs', *built(name, args, shape).parameter_names}
    assert all(error < 1e-6 for error, _ in errors.values()), errors


def test_crossentropy_gradient_matches_central_differences():
    rng = np.random.default_rng(2)
    y_gt = np.eye(6)[rng.integers(0, 6, size=5)]
    y_pred = rng.uniform(0.05, 1, size=(5, 6))
    loss = solution.CategoricalCrossentropy()
    numeric = gradcheck.numerical_gradient(lambda: float(np.sum(loss(y_gt, y_pred))), y_pred)
    error, _ = gradcheck.relative_error(loss.gradient(y_gt, y_pred), numeric)
    assert error < 1e-6


def test_gradient_check_flags_a_wrong_backward():
    layer = built('Dense', {'units': 3}, (4, 5))
    layer.backward = lambda grad_outputs: grad_outputs @ layer.weights.T * 2
    errors = gradcheck.gradient_check(layer, np.random.default_rng(0).normal(size=(4, 5)))
    assert errors['inputs'][0] > 0.1
