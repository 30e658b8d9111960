"""The numerical gradient check behind ./run.py gradcheck.

You need not read this file to use the command; read it to see how a
backward pass is compared with central differences: gradients() runs the
layer in float64 and returns both gradients, relative_error() compares them.
"""
import numpy as np

from common import non_finite


def numerical_gradient(f, x, h=1e-6, grad_outputs=1.0):
    """Central-difference gradient of sum(f() * grad_outputs) w.r.t. array x.

    x is changed and restored. f() returns a scalar or an array; an array's
    two values are subtracted before the sum, which keeps the rounding
    error of every element small.
    """
    grad = np.zeros_like(x, dtype=np.float64)
    for index in np.ndindex(x.shape):
        old = x[index]
        x[index] = old + h
        plus = np.array(f(), dtype=np.float64)
        x[index] = old - h
        minus = np.array(f(), dtype=np.float64)
        x[index] = old
        grad[index] = np.sum((plus - minus) * grad_outputs) / (2 * h)
    return grad


def relative_error(analytic, numeric):
    """The largest |a - b| / (|a| + |b|) over the elements, and its index.

    The denominator is at least 1% of the array's largest |a| + |b| (and
    1e-8): on elements close to zero next to the others, rounding noise
    would dominate.
    """
    size = np.abs(analytic) + np.abs(numeric)
    error = np.abs(analytic - numeric) / np.maximum(size, max(0.01 * np.max(size), 1e-8))
    worst = np.unravel_index(np.argmax(error), error.shape)
    return float(error[worst]), tuple(int(i) for i in worst)


class GradientCheckError(Exception):
    """The layer cannot be gradient-checked as it is (float32 outputs, randomness, bad shapes)."""


def check_float64(layer, inputs, seed):
    """An error unless a change of 1e-12 in the inputs and each parameter reaches the outputs.

    It does in float64; a layer that computes in float32 inside loses it, and
    central differences would then measure rounding noise.
    """
    np.random.seed(seed)
    outputs = np.array(layer(inputs))
    if not np.all(np.isfinite(outputs)):
        raise GradientCheckError(f"{layer.name}: the outputs have {non_finite(outputs)}: an "
                                 f"overflow (exp of a large number?) or a division by zero")
    if outputs.size == 0:
        raise GradientCheckError(f"{layer.name}: its outputs are empty (shape {outputs.shape}), so "
                                 f"there is nothing to check: give other --args or a larger "
                                 f"--input-shape")
    for name in ['inputs', *layer.parameter_names]:
        if not changes_outputs(layer, inputs, name, 1e-3, seed, outputs):
            raise GradientCheckError(
                f"{layer.name}: the outputs do not depend on {name} (changing it by 1e-3 leaves "
                f"them the same{', all zeros' if not np.any(outputs) else ''}): check the "
                f"arguments (--args) or the forward pass")
        if not changes_outputs(layer, inputs, name, 1e-12, seed, outputs):
            raise GradientCheckError(
                f"{layer.name}: changing {name} by 1e-12 leaves the outputs exactly the same, so "
                f"the layer computes in float32 (astype(np.float32)?): the check needs float64 "
                f"throughout")


def changes_outputs(layer, inputs, name, step, seed, outputs):
    """Whether a relative change of `step` in `name` (inputs or a parameter) changes the outputs."""
    array = inputs if name == 'inputs' else getattr(layer, name)
    original = array.copy()
    signs = np.random.default_rng((seed, 2)).choice([-1, 1], size=array.shape)
    array += step * (1 + np.abs(array)) * signs
    np.random.seed(seed)
    changed = np.any(np.asarray(layer(inputs)) != outputs)
    array[...] = original
    return changed


def forward_repeatably(layer, inputs, seed):
    """layer(inputs) with np.random reseeded; an error unless repeatable."""
    outputs = []
    for _ in range(2):
        np.random.seed(seed)
        outputs.append(np.asarray(layer(inputs)))
    if not np.array_equal(*outputs, equal_nan=True):
        raise GradientCheckError(
            f"{layer.name}: two forward passes on the same inputs differ, with np.random "
            f"reseeded before each: outputs must depend only on the inputs, the parameters and "
            f"np.random (draw masks with np.random.*, not np.random.default_rng())")
    return outputs[0]


def backward_gradients(layer, grad_outputs, inputs):
    """{'inputs' or parameter name: gradient} from layer.backward, parameter ones times n."""
    grad_inputs = layer.backward(grad_outputs)
    if grad_inputs is None:
        raise GradientCheckError(f"{layer.name}.backward() returned None: return dL/dinputs")
    gradients = {'inputs': np.asarray(grad_inputs, dtype=np.float64)}
    for name in layer.parameter_names:
        gradients[name] = len(inputs) * np.asarray(getattr(layer, name + '_grad'), dtype=np.float64)
    for name, gradient in gradients.items():
        expected = np.shape(inputs if name == 'inputs' else getattr(layer, name))
        what = 'backward() returned' if name == 'inputs' else f"{name}_grad has"
        if gradient.shape != expected:
            raise GradientCheckError(f"{layer.name}.{what} shape {gradient.shape}, "
                                     f"expected {expected}")
        if not np.all(np.isfinite(gradient)):
            raise GradientCheckError(f"{layer.name}.{what} {non_finite(gradient)}")
    return gradients


def gradients(layer, inputs, seed=0):
    """(analytic, numeric): layer.backward's gradients and central differences, in float64.

    Both are dicts {'inputs' or parameter name: array}. The loss is
    sum(outputs * G) for a fixed random G (from a stream of its own, not the
    one of inputs drawn with the same seed), in training mode; np.random is
    reseeded before every forward pass, so a random layer (Dropout) keeps one
    mask. Parameter gradients, averaged over the batch by the layer, are
    multiplied by n to compare them with the gradient of the summed loss.
    Raises GradientCheckError when the layer cannot be checked as it is.
    """
    inputs = np.array(inputs, dtype=np.float64)
    layer.is_training = True
    for name in layer.parameter_names:
        setattr(layer, name, getattr(layer, name).astype(np.float64))
        setattr(layer, name + '_grad', np.zeros(getattr(layer, name).shape))
    check_float64(layer, inputs, seed)
    outputs_shape = forward_repeatably(layer, inputs, seed).shape
    grad_outputs = np.random.default_rng((seed, 1)).normal(size=outputs_shape)
    analytic = backward_gradients(layer, grad_outputs, inputs)

    def outputs():
        np.random.seed(seed)
        return layer(inputs)

    numeric = {name: numerical_gradient(outputs,
                                        inputs if name == 'inputs' else getattr(layer, name),
                                        grad_outputs=grad_outputs) for name in analytic}
    return analytic, numeric


def gradient_check(layer, inputs, seed=0):
    """{'inputs' or parameter name: (relative error, worst index)} of layer.backward.

    See gradients() for how the layer is run.
    """
    analytic, numeric = gradients(layer, inputs, seed)
    return {name: relative_error(analytic[name], numeric[name]) for name in analytic}
