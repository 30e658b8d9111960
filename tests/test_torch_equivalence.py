"""The reference solution.py against torch: the same small network with the same weights
gives the same outputs, input gradient, parameter gradients, parameters after one
SGD-with-momentum step, batch-norm running statistics and test-mode outputs (float64,
1e-8). Runs when torch is installed (.ci/run installs torch==2.13.0).

Scaling: the kit's loss is per sample and its parameter gradients are averaged over
the batch, so they are the gradients of the batch-mean loss, which is what torch
differentiates here. The kit's input gradient is that of the summed loss (each sample's
own loss, chained through batch norm), so it is n times torch's. torch's running
variance uses the unbiased batch variance (m / (m - 1)), the reference the biased one;
the test converts torch's to the biased reading.
"""
import numpy as np
import pytest

import common

torch = pytest.importorskip('torch')
nn = torch.nn

solution = common.load_solution(common.KIT_DIR / 'solution.py', name='reference_for_torch')

MOMENTUM = 0.9  # of the batch-norm running averages
LR, SGD_MOMENTUM = 0.1, 0.9
INPUT_SHAPE = (3, 8, 10)
BATCH = 5
# [Conv2D same, BN, ReLU, pool] -> [Conv2D valid, ReLU] -> head -> [Dense, BN 2-D, ReLU]
# -> [Dense, Softmax]; no batch norm after the second convolution, so its bias gradient is not 0
BODY = [('Conv2D', (4, 3, 'same')), ('BatchNormalization', (MOMENTUM,)), ('ReLU', ()),
        ('MaxPooling2D', (2,)), ('Conv2D', (6, 3, 'valid')), ('ReLU', ())]
TOP = [('Dense', (5,)), ('BatchNormalization', (MOMENTUM,)), ('ReLU', ()), ('Dense', (4,)),
       ('Softmax', ())]
HEADS = {'GlobalAveragePooling': ('GlobalAveragePooling', ()), 'Flatten': ('Flatten', ())}


def random_parameter(name, shape, rng):
    """A float64 value for a kit parameter: gamma near 1, beta and biases near 0, weights
    He-scaled."""
    if name == 'gamma':
        return 1 + 0.2 * rng.normal(size=shape)
    if name in ('beta', 'biases'):
        return 0.2 * rng.normal(size=shape)
    # kernels (D, C, K, K) have fan-in C*K*K, Dense weights (c, units) c
    fan_in = np.prod(shape[1:]) if name == 'kernels' else shape[0]
    return rng.normal(size=shape) * np.sqrt(2 / fan_in)


def kit_model(layers, rng):
    """The kit's Model of `layers` with random float64 parameters and float64 running statistics."""
    model = solution.Model(solution.CategoricalCrossentropy(),
                           solution.SGDMomentum(lr=LR, momentum=SGD_MOMENTUM))
    for number, (name, args) in enumerate(layers):
        shape = {'input_shape': INPUT_SHAPE} if number == 0 else {}
        model.add(getattr(solution, name)(*args, **shape))
        layer = model.layers[-1]
        for parameter in layer.parameter_names:
            size = getattr(layer, parameter).shape
            setattr(layer, parameter, random_parameter(parameter, size, rng))
            setattr(layer, parameter + '_grad', np.zeros(size))
        for state in layer.state_names:
            setattr(layer, state, getattr(layer, state).astype(np.float64))
    return model


def tensor(array):
    return torch.tensor(np.asarray(array), dtype=torch.float64)


def torch_twin(layer):
    """(torch module computing what the built kit layer computes with the same parameters,
    {kit parameter name: (torch parameter, torch layout -> kit layout)})."""
    same, transposed = (lambda value: value), (lambda value: value.T)
    if layer.name == 'Conv2D':
        output_channels, input_channels, kernel_size, _ = layer.kernels.shape
        module = nn.Conv2d(input_channels, output_channels, kernel_size, padding=layer.padding_mode,
                           dtype=torch.float64)
        pairs = {'kernels': (module.weight, same), 'biases': (module.bias, same)}
    elif layer.name == 'Dense':
        module = nn.Linear(*layer.weights.shape, dtype=torch.float64)
        pairs = {'weights': (module.weight, transposed), 'biases': (module.bias, same)}
    elif layer.name == 'BatchNormalization':
        batch_norm = nn.BatchNorm2d if len(layer.input_shape) == 3 else nn.BatchNorm1d
        module = batch_norm(len(layer.gamma), eps=1e-5, momentum=1 - MOMENTUM, dtype=torch.float64)
        pairs = {'gamma': (module.weight, same), 'beta': (module.bias, same)}
    else:
        parameterless = {'ReLU': nn.ReLU, 'MaxPooling2D': lambda: nn.MaxPool2d(layer.pool_size),
                         'GlobalAveragePooling': lambda: nn.Sequential(nn.AdaptiveAvgPool2d(1),
                                                                       nn.Flatten()),
                         'Flatten': nn.Flatten, 'Softmax': lambda: nn.Softmax(dim=1)}
        module, pairs = parameterless[layer.name](), {}
    with torch.no_grad():
        for name, (parameter, to_kit) in pairs.items():
            parameter.copy_(tensor(to_kit(getattr(layer, name))))
    return module, pairs


def values_per_channel(layer, batch):
    """m: how many values a batch-norm layer averages per channel."""
    return batch * int(np.prod(layer.input_shape[1:]))


def assert_close(actual, expected, what):
    """Within 1e-8 relative; values are of order 1, so 1e-12 absolute covers the gradients
    that are 0 in exact arithmetic (the biases of a convolution followed by batch norm)."""
    expected = expected.detach().numpy() if isinstance(expected, torch.Tensor) else expected
    np.testing.assert_allclose(actual, expected, rtol=1e-8, atol=1e-12, err_msg=what)


@pytest.mark.parametrize('head', HEADS)
def test_network_matches_torch(head):
    rng = np.random.default_rng(7)
    model = kit_model(BODY + [HEADS[head]] + TOP, rng)
    twins = [torch_twin(layer) for layer in model.layers]
    network = nn.Sequential(*(module for module, _ in twins))
    optimizer = torch.optim.SGD(network.parameters(), lr=LR, momentum=SGD_MOMENTUM)
    x = rng.normal(size=(BATCH,) + INPUT_SHAPE)
    y = np.eye(4)[rng.permutation(np.arange(BATCH) % 4)]

    # one training step in the kit, keeping the input gradient
    y_pred = model.forward(x)
    grad = model.loss.gradient(y, y_pred)
    for layer in reversed(model.layers):
        grad = layer.backward(grad)
    grad_inputs = grad
    for layer in model.layers:
        layer.update_parameters()

    # the same step in torch, on the batch-mean loss
    x_torch = tensor(x).requires_grad_()
    probabilities = network(x_torch)
    loss = -(tensor(y) * torch.log(probabilities)).sum(dim=1).mean()
    loss.backward()

    assert_close(y_pred, probabilities, 'outputs')
    assert_close(model.loss(y, y_pred).mean(), loss, 'loss')
    assert_close(grad_inputs, BATCH * x_torch.grad, 'input gradient (kit: summed loss)')
    for number, (layer, (_, pairs)) in enumerate(zip(model.layers, twins)):
        for name, (parameter, to_kit) in pairs.items():
            assert_close(getattr(layer, name + '_grad'), to_kit(parameter.grad),
                         f"layer {number} {layer.name}.{name}_grad")
    optimizer.step()
    for number, (layer, (module, pairs)) in enumerate(zip(model.layers, twins)):
        for name, (parameter, to_kit) in pairs.items():
            assert_close(getattr(layer, name), to_kit(parameter),
                         f"layer {number} {layer.name}.{name}")
        if layer.name == 'BatchNormalization':
            m = values_per_channel(layer, BATCH)
            with torch.no_grad():  # torch's unbiased running variance -> the biased reading
                module.running_var.copy_(MOMENTUM + (module.running_var - MOMENTUM) * (m - 1) / m)
            assert_close(layer.running_mean, module.running_mean, f"layer {number} running_mean")
            assert_close(layer.running_var, module.running_var, f"layer {number} running_var")

    # test mode: running statistics, left unchanged
    x_test = rng.normal(size=(BATCH,) + INPUT_SHAPE)
    network.eval()
    with torch.no_grad():
        expected = network(tensor(x_test))
    model.set_training(False)
    assert_close(model.forward(x_test), expected, 'test-mode outputs')
    for number, (layer, (module, _)) in enumerate(zip(model.layers, twins)):
        if layer.name == 'BatchNormalization':
            assert_close(layer.running_var, module.running_var,
                         f"layer {number} running_var in test mode")
