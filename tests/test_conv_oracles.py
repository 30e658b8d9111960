"""The convolutional layers of the reference solution.py against independent oracles:
straightforward loop implementations written here (convolution, max pooling,
im2col), the adjointness of col2im, and a float64 central-difference gradient
check of every layer of part 2."""
import numpy as np
import pytest

import common
import gradcheck

solution = common.load_solution(common.KIT_DIR / 'solution.py', name='reference_for_oracles')


def built(layer, rng):
    """The layer built for tests, with random float64 parameters and float64 gradients."""
    common.build_for_check(layer, layer.input_shape)
    for name in layer.parameter_names:
        setattr(layer, name, rng.normal(size=getattr(layer, name).shape))
        setattr(layer, name + '_grad', np.zeros(getattr(layer, name).shape))
    return layer


def padding_of(kernel_size, mode):
    return {'same': (kernel_size - 1) // 2, 'valid': 0}[mode]


def pad(images, padding):
    return np.pad(images, ((0, 0), (0, 0), (padding, padding), (padding, padding)))


# ================================ Loop oracles ==============================

def loop_im2col(images, kernel_size, padding):
    """cols[:, c*K*K + ki*K + kj, ho*Wo + wo] = x_padded[:, c, ho + ki, wo + kj], by loops."""
    padded = pad(images, padding)
    n, channels, height, width = padded.shape
    K = kernel_size
    Ho, Wo = height - K + 1, width - K + 1
    cols = np.zeros((n, channels * K * K, Ho * Wo))
    for c in range(channels):
        for ki in range(K):
            for kj in range(K):
                for ho in range(Ho):
                    for wo in range(Wo):
                        row, column = c * K * K + ki * K + kj, ho * Wo + wo
                        cols[:, row, column] = padded[:, c, ho + ki, wo + kj]
    return cols


def loop_conv(images, kernels, biases, padding, grad_outputs):
    """Cross-correlation by loops over samples, kernels and positions.

    Returns the outputs and the gradients of sum(outputs * grad_outputs) with
    respect to the images, and to the kernels and biases divided by n.
    """
    padded = pad(images, padding)
    n, height, width = len(images), padded.shape[2], padded.shape[3]
    D, _, K, _ = kernels.shape
    outputs = np.zeros((n, D, height - K + 1, width - K + 1))
    grad_padded, grad_kernels = np.zeros_like(padded), np.zeros_like(kernels)
    grad_biases = np.zeros(D)
    for sample in range(n):
        for d in range(D):
            for row in range(outputs.shape[2]):
                for column in range(outputs.shape[3]):
                    window = padded[sample, :, row:row + K, column:column + K]
                    outputs[sample, d, row, column] = np.sum(window * kernels[d]) + biases[d]
                    g = grad_outputs[sample, d, row, column]
                    grad_padded[sample, :, row:row + K, column:column + K] += g * kernels[d]
                    grad_kernels[d] += g * window
                    grad_biases[d] += g
    height, width = images.shape[2:]
    grad_images = grad_padded[:, :, padding:padding + height, padding:padding + width]
    return outputs, grad_images, grad_kernels / n, grad_biases / n


def loop_max_pooling(images, size, grad_outputs):
    """Max over size x size windows with stride size, and the gradient routed to each maximum."""
    n, channels, height, width = images.shape
    outputs = np.zeros((n, channels, height // size, width // size))
    grad_images = np.zeros_like(images)
    for sample in range(n):
        for c in range(channels):
            for row in range(height // size):
                for column in range(width // size):
                    top, left = row * size, column * size
                    window = images[sample, c, top:top + size, left:left + size]
                    ki, kj = np.unravel_index(np.argmax(window), window.shape)
                    outputs[sample, c, row, column] = window[ki, kj]
                    grad_images[sample, c, top + ki, left + kj] = grad_outputs[sample, c, row,
                                                                                column]
    return outputs, grad_images


IM2COL_CONFIGS = [((1, 1, 4, 4), 1, 0), ((2, 3, 5, 6), 3, 1), ((2, 2, 6, 5), 3, 0),
                  ((1, 2, 7, 6), 5, 2), ((2, 1, 5, 7), 5, 0)]


@pytest.mark.parametrize('shape, kernel_size, padding', IM2COL_CONFIGS)
def test_im2col_and_its_indices_match_loops(shape, kernel_size, padding):
    images = np.random.default_rng(0).normal(size=shape)
    expected = loop_im2col(images, kernel_size, padding)
    np.testing.assert_array_equal(solution.im2col(images, kernel_size, padding), expected)
    k, i, j = solution.get_im2col_indices(shape, kernel_size, padding)
    np.testing.assert_array_equal(pad(images, padding)[:, k, i, j], expected)


@pytest.mark.parametrize('shape, kernel_size, padding', IM2COL_CONFIGS)
def test_col2im_is_the_adjoint_of_im2col(shape, kernel_size, padding):
    """<im2col(x), c> == <x, col2im(c)> for random x and c."""
    rng = np.random.default_rng(1)
    images = rng.normal(size=shape)
    cols = rng.normal(size=solution.im2col(images, kernel_size, padding).shape)
    image_grad = solution.col2im(cols, shape, kernel_size, padding)
    assert image_grad.shape == shape
    assert np.isclose(np.sum(solution.im2col(images, kernel_size, padding) * cols),
                      np.sum(images * image_grad), rtol=1e-12, atol=0)


def test_im2col_keeps_float32():
    images = np.ones((2, 3, 5, 5), dtype=np.float32)
    cols = solution.im2col(images, 3, 1)
    assert cols.dtype == np.float32
    assert solution.col2im(cols, images.shape, 3, 1).dtype == np.float32


def test_determine_padding_rejects_an_unknown_mode_by_name():
    assert [solution.determine_padding(K, mode) for K, mode in
            ((1, 'same'), (3, 'same'), (5, 'same'), (5, 'valid'))] == [0, 1, 2, 0]
    with pytest.raises(ValueError, match="'full'"):
        solution.determine_padding(3, 'full')


@pytest.mark.parametrize('shape, output_channels, kernel_size, mode', [
    ((1, 1, 5, 5), 2, 3, 'same'), ((2, 3, 6, 5), 4, 3, 'valid'), ((2, 2, 4, 6), 3, 1, 'same'),
    ((2, 2, 7, 6), 2, 5, 'same'), ((3, 1, 6, 7), 1, 5, 'valid')])
def test_conv2d_matches_loops(shape, output_channels, kernel_size, mode):
    rng = np.random.default_rng(2)
    layer = built(solution.Conv2D(output_channels, kernel_size, mode, input_shape=shape[1:]), rng)
    images = rng.normal(size=shape)
    outputs = layer(images)
    grad_outputs = rng.normal(size=outputs.shape)
    expected = loop_conv(images, layer.kernels, layer.biases, padding_of(kernel_size, mode),
                         grad_outputs)
    actual = (outputs, layer.backward(grad_outputs), layer.kernels_grad, layer.biases_grad)
    for what, value, oracle in zip(('outputs', 'grad_inputs', 'kernels_grad', 'biases_grad'),
                                   actual, expected):
        np.testing.assert_allclose(value, oracle, rtol=1e-10, atol=1e-12, err_msg=what)


@pytest.mark.parametrize('shape', [(1, 1, 4, 4), (2, 3, 5, 7), (3, 2, 6, 3)])
def test_max_pooling_matches_loops(shape):
    rng = np.random.default_rng(3)
    layer = built(solution.MaxPooling2D(2, input_shape=shape[1:]), rng)
    images = rng.normal(size=shape)
    outputs = layer(images)
    grad_outputs = rng.normal(size=outputs.shape)
    expected_outputs, expected_grad = loop_max_pooling(images, 2, grad_outputs)
    np.testing.assert_array_equal(outputs, expected_outputs)
    np.testing.assert_array_equal(layer.backward(grad_outputs), expected_grad)


@pytest.mark.parametrize('shape', [(4, 3, 2, 5), (6, 4)])
def test_batchnorm_running_statistics_follow_the_formulas(shape):
    """Training: batch statistics, running = 0.9 running + 0.1 batch; test: running ones,
    unchanged."""
    rng = np.random.default_rng(6)
    layer = built(solution.BatchNormalization(0.9, input_shape=shape[1:]), rng)
    axes, channel = (0,) + tuple(range(2, len(shape))), (1, -1) + (1,) * (len(shape) - 2)
    mean, var = np.zeros(shape[1]), np.ones(shape[1])
    for is_training in (True, True, False, True, False):
        x = 2 + 3 * rng.normal(size=shape)
        layer.is_training = is_training
        outputs = layer(x)
        used_mean, used_var = (x.mean(axis=axes), x.var(axis=axes)) if is_training else (mean, var)
        if is_training:
            mean, var = 0.9 * mean + 0.1 * used_mean, 0.9 * var + 0.1 * used_var
        normalized = (x - used_mean.reshape(channel)) / np.sqrt(used_var.reshape(channel) + 1e-5)
        np.testing.assert_allclose(outputs, layer.gamma.reshape(channel) * normalized
                                   + layer.beta.reshape(channel), rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(layer.running_mean, mean, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(layer.running_var, var, rtol=1e-5, atol=1e-6)


# ============================== Gradient checks =============================

# name: (layer class, constructor arguments, input shape with the batch)
GRADIENT_CHECKS = {
    'Conv2D K=3 same': ('Conv2D', (3, 3, 'same'), (2, 2, 5, 4)),
    'Conv2D K=5 valid': ('Conv2D', (2, 5, 'valid'), (2, 2, 6, 7)),
    'Conv2D K=1': ('Conv2D', (2, 1, 'same'), (2, 3, 3, 3)),
    'MaxPooling2D odd sizes': ('MaxPooling2D', (2,), (2, 2, 5, 7)),
    'GlobalAveragePooling': ('GlobalAveragePooling', (), (2, 3, 4, 5)),
    'BatchNormalization images': ('BatchNormalization', (), (2, 3, 3, 4)),
    'BatchNormalization vectors': ('BatchNormalization', (), (8, 6)),
    'Dropout p=0.5, mask fixed': ('Dropout', (0.5,), (3, 4, 6)),
    'Flatten': ('Flatten', (), (2, 2, 3, 4)),
}


def make_layer(name):
    """The layer of GRADIENT_CHECKS[name], not built, and its input shape."""
    layer, args, shape = GRADIENT_CHECKS[name]
    return getattr(solution, layer)(*args, input_shape=shape[1:]), shape


@pytest.mark.parametrize('name', GRADIENT_CHECKS)
def test_float64_gradient_check(name):
    rng = np.random.default_rng(4)
    layer, shape = make_layer(name)
    layer = built(layer, rng)
    errors = gradcheck.gradient_check(layer, rng.normal(size=shape))
    assert {what: error for what, (error, _) in errors.items() if error >= 1e-6} == {}
    assert set(errors) == {'inputs', *layer.parameter_names}


@pytest.mark.parametrize('name', GRADIENT_CHECKS)
def test_float32_end_to_end(name):
    """float32 inputs and parameters give float32 outputs and input gradients."""
    layer, shape = make_layer(name)
    common.build_for_check(layer, shape[1:])
    outputs = layer(np.random.default_rng(5).normal(size=shape).astype(np.float32))
    grad_inputs = layer.backward(np.ones_like(outputs))
    assert (outputs.dtype, grad_inputs.dtype) == (np.float32, np.float32)
