"""Fixture directories, generated from the reference solution.py.

Each test is described by data: a list of case specs (which layer, its
arguments, input shapes, which checks). build_fixtures() draws the inputs with
a seed, computes the expected outputs with the reference through the same
run functions the checks use, and writes tests/NN_unittest_<test>_input/.
The same seed gives byte-identical files.

The hidden set for the grader (build_fixtures(..., hidden=True)) comes from the
same specs with other random streams and grown shapes (hidden_variant), so
that replaying the public expected outputs fails.
"""
import argparse
import json
import pickle
import shutil
import zlib
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

import common
from staff.cli import UsageError, add_reference_argument
from staff.points import EXTENDED_TABLE, load_table

DEFAULT_SEED = 1
PICKLE_PROTOCOL = 4
HIDDEN_STREAM = 1  # appended to the seed of every random stream of the hidden set
GROWTH = 2  # hidden cases: every size above 1 grows by this much
MNIST_TIME_LIMIT = 600  # seconds of training, the assignment's limits
CIFAR_TIME_LIMIT = 3600

# ============================ Input generators ==============================

def normal(rng, shape):
    return rng.normal(size=shape)


def with_zeros(rng, shape):
    """Normal values with about a third of them exactly 0."""
    values = rng.normal(size=shape)
    values[rng.random(shape) < 1 / 3] = 0.0
    return values


def huge_logits(rng, shape):
    """Rows of logits whose maxima lie within 1000 ± 5, where a plain exp() overflows.

    Subtracting each row's maximum or the whole tensor's (the assignment's tip)
    both work: the row maxima differ by less than 10, far from float32's
    underflow of exp() below -87.
    """
    logits = 3 * rng.normal(size=shape)
    return logits - logits.max(axis=1, keepdims=True) + rng.uniform(995, 1005, size=(shape[0], 1))


def tiny_logits(rng, shape):
    """huge_logits moved to -1000, where a plain exp() underflows to 0 / 0."""
    return huge_logits(rng, shape) - 2000


def one_hot_rows(rng, shape):
    n, d = shape
    return np.eye(d)[rng.integers(0, d, size=n)]


def probability_rows(rng, shape):
    """Rows of probabilities, every one >= 1e-6 (where clipping changes nothing)."""
    p = np.maximum(np.exp(2 * rng.normal(size=shape)), 1e-3)
    p /= p.sum(axis=1, keepdims=True)
    return np.maximum(p, 1e-6)


def with_ties(rng, shape):
    """Small integers, so that pooling windows often hold several equal maxima."""
    return rng.integers(-2, 3, size=shape).astype(np.float64)


def shifted_channels(rng, shape):
    """Normal values, each channel (axis 1) with its own mean in [-3, 3] and std in [0.5, 3]."""
    channels = (1, shape[1]) + (1,) * (len(shape) - 2)
    return rng.uniform(-3, 3, channels) + rng.uniform(0.5, 3, channels) * rng.normal(size=shape)


def one_flat_channel(rng, shape):
    """shifted_channels, but channel 0 with std 0.001: its variance 1e-6 is below eps."""
    values = shifted_channels(rng, shape)
    values[:, 0] = values[:, 0].mean() + 0.001 * rng.normal(size=values[:, 0].shape)
    return values


GENERATORS = {f.__name__: f for f in (normal, with_zeros, huge_logits, tiny_logits, one_hot_rows,
                                      probability_rows, with_ties, shifted_channels,
                                      one_flat_channel)}


# ============================== Alternatives ================================

# A rule(case, expected) adds other correct answers to the expected results.

def accept(expected, what, alternative):
    """Lets expected[what] match `alternative` too."""
    options = expected[what] if isinstance(expected[what], list) else [expected[what]]
    expected[what] = options + [np.asarray(alternative, dtype=np.float64)]


def relu_subgradient_at_zero(case, expected, reference):
    """At x == 0 the gradient of ReLU or LeakyReLU may take the slope on the left (0 or
    alpha, as the reference does) or the one on the right (1): accept both."""
    call = case['calls'][0]
    accept(expected, 'grad_inputs', np.where(call['inputs'] == 0, call['grad_outputs'],
                                             expected['grad_inputs']))


def unbiased_running_var(case, expected, reference):
    """The running variance may be updated with the unbiased batch variance (m / (m - 1)
    times the biased one): accept that reading for running_var after every call and for
    the test-mode outputs, which use it. Computed here from the inputs; only eps is the
    reference's."""
    momentum = case['args']['momentum']
    eps = common.build_for_check(reference.BatchNormalization(**case['args']),
                                 case['input_shape']).eps
    gamma, beta = case['parameters']['gamma'], case['parameters']['beta']
    running_mean, running_var = np.zeros(len(gamma)), np.ones(len(gamma))
    for number, call in enumerate(case['calls'], 1):
        x = call['inputs']
        axes, shape = (0,) + tuple(range(2, x.ndim)), (1, -1) + (1,) * (x.ndim - 2)
        if call['is_training']:
            running_mean = momentum * running_mean + (1 - momentum) * x.mean(axis=axes)
            running_var = momentum * running_var + (1 - momentum) * x.var(axis=axes, ddof=1)
        else:
            normalized = ((x - running_mean.reshape(shape))
                          / np.sqrt(running_var.reshape(shape) + eps))
            accept(expected, f"call {number}: outputs",
                   gamma.reshape(shape) * normalized + beta.reshape(shape))
        accept(expected, f"call {number}: running_var", running_var)


ALTERNATIVES = {rule.__name__: rule for rule in (relu_subgradient_at_zero, unbiased_running_var)}


# ================================ Case specs ================================

class Spec:
    """What every case spec may set: its kind (a common.CHECKS name), the quantities its
    kind checks by property (no expected values), the ALTERNATIVES rules accepted, a hint
    shown when it fails, and the fields holding shapes that the hidden set grows."""
    kind = ''
    by_property = ()
    alternatives = ()
    hint = ''
    shape_fields = ()


@dataclass
class LayerCase(Spec):
    """A layer called on random inputs of `shape` (batch first), then backward."""
    name: str
    layer: str
    shape: tuple
    args: dict = field(default_factory=dict)
    inputs: str = 'normal'
    calls: tuple = (True,)  # is_training of each call; backward follows the training ones
    state: tuple = ()
    alternatives: tuple = ()  # names of ALTERNATIVES rules
    hint: str = ''
    kind = 'layer'
    shape_fields = ('shape',)

    def generate(self, rng, reference):
        layer = common.build_for_check(getattr(reference, self.layer)(**self.args), self.shape[1:])
        case = {'layer': self.layer, 'args': self.args, 'input_shape': tuple(self.shape[1:]),
                'parameters': {name: rng.normal(size=getattr(layer, name).shape)
                               for name in layer.parameter_names},
                'state': list(self.state), 'calls': []}
        output_shape = (self.shape[0],) + tuple(layer.output_shape)
        for is_training in self.calls:
            case['calls'].append({
                'is_training': is_training,
                'inputs': GENERATORS[self.inputs](rng, self.shape),
                'grad_outputs': rng.normal(size=output_shape) if is_training else None})
        return case


@dataclass
class MaxPoolingCase(LayerCase):
    """A max pooling layer: with tied maxima the window's gradient may go to any of them,
    or be split among them, so grad_inputs is checked by property, not against the reference."""
    by_property = ('grad_inputs',)
    kind = 'max_pooling'


@dataclass
class DropoutCase(LayerCase):
    """Dropout: a training call, then a test call; checked by properties only, so that
    any random mask passes."""
    calls: tuple = (True, False)
    kind = 'dropout'


@dataclass(frozen=True)
class Draw:
    """A function argument drawn as GENERATORS[generator](rng, shape)."""
    shape: tuple
    generator: str = 'normal'

    def __call__(self, rng):
        return GENERATORS[self.generator](rng, self.shape)


@dataclass
class FunctionCase(Spec):
    """A function called on positional args (Draw entries become random arrays).

    index_into: the result (k, i, j) is checked as x_padded[:, k, i, j] of an
    array drawn so. must_raise: the call must raise ValueError.
    """
    name: str
    function: str
    args: tuple
    index_into: Draw = None
    must_raise: bool = False
    kind = 'function'

    def generate(self, rng, reference):
        case = {'function': self.function, 'must_raise': self.must_raise,
                'args': [arg(rng) if isinstance(arg, Draw) else arg for arg in self.args]}
        if self.index_into is not None:
            case['index_into'] = self.index_into(rng)
        return case


@dataclass
class InitializationCase(Spec):
    """A freshly built layer's parameters against their distributions."""
    name: str
    layer: str
    args: dict
    input_shape: tuple
    statistics: dict  # the std of a normal distribution follows from input_shape: kept as is
    kind = 'initialization'

    def generate(self, rng, reference):
        layer = common.build_for_check(getattr(reference, self.layer)(**self.args),
                                       self.input_shape)
        return {'layer': self.layer, 'args': self.args, 'input_shape': self.input_shape,
                'statistics': self.statistics,
                'shapes': {name: getattr(layer, name).shape for name in self.statistics}}


@dataclass
class LossCase(Spec):
    """A loss and its gradient on one batch."""
    name: str
    loss: str
    shape: tuple
    args: dict = field(default_factory=dict)
    kind = 'loss'
    shape_fields = ('shape',)

    def generate(self, rng, reference):
        return {'loss': self.loss, 'args': self.args,
                'y_gt': one_hot_rows(rng, self.shape), 'y_pred': probability_rows(rng, self.shape)}


@dataclass
class OptimizerCase(Spec):
    """Updaters of several parameters stepped interleaved: A, B, A, B, ...

    shapes: {parameter name: shape}; gradients: the GENERATORS entry that
    draws each step's gradient.
    """
    name: str
    optimizer: str
    args: dict
    shapes: dict
    rounds: int = 3
    gradients: str = 'normal'
    hint: str = ''
    kind = 'optimizer'
    shape_fields = ('shapes',)

    def generate(self, rng, reference):
        return {'optimizer': self.optimizer, 'args': self.args,
                'parameters': {name: rng.normal(size=shape) for name, shape in self.shapes.items()},
                'steps': [(name, GENERATORS[self.gradients](rng, shape))
                          for _ in range(self.rounds) for name, shape in self.shapes.items()]}


@dataclass
class TrainingCase(Spec):
    """Trains the student's model; passes above an accuracy bar within a time limit."""
    name: str
    function: str
    dataset: str
    valid_size: int
    min_accuracy: float
    time_limit: float
    kind = 'training'

    def generate(self, rng, reference):
        return {'function': self.function, 'dataset': self.dataset, 'valid_size': self.valid_size,
                'min_accuracy': self.min_accuracy, 'time_limit': self.time_limit}


BATCHNORM_EPS_HINT = ("normalize by sqrt(var + eps), with self.eps as build() sets it: without "
                      "eps, a channel whose variance is tiny (or 0) blows up")
BATCHNORM_HINT = ("training normalizes with the batch mean and variance, then sets running = "
                  "momentum * running + (1 - momentum) * batch statistic; test mode normalizes "
                  "with running_mean and running_var and does not change them")
DROPOUT_HINT = ("the assignment's dropout is not inverted: training keeps the other elements as "
                "they are (no division by 1 - p), backward reuses the forward mask, and test mode "
                "multiplies by 1 - p")


@dataclass
class Im2colCase(Spec):
    """get_im2col_indices, im2col or col2im for images of `shape` (n, C, H, W), kernel
    size K and padding P: a FunctionCase whose arguments follow from these three."""
    name: str
    function: str
    shape: tuple
    kernel_size: int
    padding: int
    kind = 'function'
    shape_fields = ('shape',)

    def generate(self, rng, reference):
        n, channels, height, width = self.shape
        K, P = self.kernel_size, self.padding
        padded = (n, channels, height + 2 * P, width + 2 * P)
        cols = (n, channels * K * K, (padded[2] - K + 1) * (padded[3] - K + 1))
        calls = {'get_im2col_indices': ((self.shape, K, P), Draw(padded)),
                 'im2col': ((Draw(self.shape), K, P), None),
                 'col2im': ((Draw(cols), self.shape, K, P), None)}
        args, index_into = calls[self.function]
        return FunctionCase(self.name, self.function, args, index_into).generate(rng, reference)


def im2col_cases(shape, kernel_size, padding):
    """get_im2col_indices, im2col and col2im on images of shape (n, C, H, W)."""
    title = f"images {shape}, K={kernel_size}, padding {padding}"
    return [Im2colCase(f"{function}, {title}", function, shape, kernel_size, padding)
            for function in ('get_im2col_indices', 'im2col', 'col2im')]


def conv_args(output_channels, kernel_size, padding):
    return {'output_channels': output_channels, 'kernel_size': kernel_size, 'padding': padding}


def batchnorm_case(name, shape, momentum, calls, inputs='shifted_channels', hint=BATCHNORM_HINT):
    """BatchNormalization called in training (True) and test (False) mode in turn,
    with its running statistics checked after every call."""
    return LayerCase(name, 'BatchNormalization', shape, args={'momentum': momentum},
                     inputs=inputs, calls=calls, state=('running_mean', 'running_var'),
                     alternatives=('unbiased_running_var',), hint=hint)


def dropout_case(name, shape, p):
    return DropoutCase(name, 'Dropout', shape, args={'p': p}, hint=DROPOUT_HINT)


SOFTMAX_HINT = ("exp() overflows for large logits: before exponentiating, subtract the maximum "
                "value of the tensor from all its elements (the assignment's closing tip) or "
                "each row's maximum from its row; softmax does not change")
EPS_HINT = ("eps goes outside the square root, sqrt(...) + eps, as in the lectures' formula; "
            "it keeps a zero gradient from giving 0 / 0")
ADAM_HINT = ("m and v start at 0 and are divided by 1 - beta1**t and 1 - beta2**t, where t counts "
             "the steps of this parameter only (1 at its first step)")
TWO_PARAMETERS = {'A': (3, 4), 'B': (5,)}
POOL_2 = {'pool_size': 2}

SPECS = {
    'relu': [
        LayerCase('batch of 1', 'ReLU', (1, 6)),
        LayerCase('batch of 8, images, some inputs exactly 0', 'ReLU', (8, 3, 4, 5),
                  inputs='with_zeros', alternatives=('relu_subgradient_at_zero',)),
        LayerCase('batch of 32', 'ReLU', (32, 20)),
    ],
    'softmax': [
        LayerCase('batch of 1', 'Softmax', (1, 5)),
        LayerCase('batch of 6', 'Softmax', (6, 10)),
        LayerCase('logits around +1000', 'Softmax', (4, 7), inputs='huge_logits',
                  hint=SOFTMAX_HINT),
        LayerCase('logits around -1000', 'Softmax', (3, 6), inputs='tiny_logits',
                  hint=SOFTMAX_HINT),
    ],
    'dense': [
        LayerCase('batch of 1', 'Dense', (1, 4), args={'units': 3}),
        LayerCase('batch of 8, 7 -> 5 units', 'Dense', (8, 7), args={'units': 5}),
        LayerCase('batch of 32, 20 -> 10 units', 'Dense', (32, 20), args={'units': 10}),
        InitializationCase('He initialization, 400 -> 300 units', 'Dense', {'units': 300}, (400,),
                           {'weights': ('normal', float(np.sqrt(2 / 400))),
                            'biases': ('zeros', 0.0)}),
    ],
    'crossentropy': [
        LossCase('batch of 1', 'CategoricalCrossentropy', (1, 4)),
        LossCase('batch of 16', 'CategoricalCrossentropy', (16, 10)),
    ],
    'sgd': [
        OptimizerCase('lr 0.1', 'SGD', {'lr': 0.1}, TWO_PARAMETERS),
        OptimizerCase('lr 0.003', 'SGD', {'lr': 0.003}, TWO_PARAMETERS),
    ],
    'momentum': [
        OptimizerCase('lr 0.05, momentum 0.9', 'SGDMomentum', {'lr': 0.05, 'momentum': 0.9},
                      TWO_PARAMETERS, rounds=4),
        OptimizerCase('lr 0.1, momentum 0.5', 'SGDMomentum', {'lr': 0.1, 'momentum': 0.5},
                      TWO_PARAMETERS, rounds=4),
        OptimizerCase('lr 0.1, momentum 0 (plain SGD)', 'SGDMomentum', {'lr': 0.1, 'momentum': 0.0},
                      TWO_PARAMETERS),
    ],
    'mnist': [
        TrainingCase('MNIST test accuracy', 'train_mnist_model', 'mnist', valid_size=5000,
                     min_accuracy=0.9, time_limit=MNIST_TIME_LIMIT),
    ],
    'im2col': [
        *[FunctionCase(f"determine_padding({K}, {mode!r})", 'determine_padding', (K, mode))
          for K, mode in ((1, 'same'), (3, 'same'), (5, 'same'), (3, 'valid'), (5, 'valid'))],
        FunctionCase("determine_padding(3, 'full'), an unknown mode", 'determine_padding',
                     (3, 'full'), must_raise=True),
        *im2col_cases((1, 1, 4, 4), 1, 0),
        *im2col_cases((2, 3, 5, 6), 3, 1),
        *im2col_cases((3, 2, 6, 5), 3, 0),
        *im2col_cases((2, 2, 7, 6), 5, 2),
        *im2col_cases((1, 2, 5, 7), 5, 0),
    ],
    'conv': [
        LayerCase('batch of 1, 1 -> 2 channels, 5x5, K=3 same', 'Conv2D', (1, 1, 5, 5),
                  args=conv_args(2, 3, 'same')),
        LayerCase('batch of 2, 3 -> 4 channels, 6x5, K=3 same', 'Conv2D', (2, 3, 6, 5),
                  args=conv_args(4, 3, 'same')),
        LayerCase('batch of 3, 2 -> 3 channels, 5x8, K=3 valid', 'Conv2D', (3, 2, 5, 8),
                  args=conv_args(3, 3, 'valid')),
        LayerCase('K=1 same, 3 -> 2 channels', 'Conv2D', (2, 3, 4, 4),
                  args=conv_args(2, 1, 'same')),
        LayerCase('K=1 valid, 2 -> 3 channels, 3x5', 'Conv2D', (3, 2, 3, 5),
                  args=conv_args(3, 1, 'valid')),
        LayerCase('K=5 same, 2 -> 3 channels, 6x7', 'Conv2D', (2, 2, 6, 7),
                  args=conv_args(3, 5, 'same')),
        LayerCase('K=5 valid, 3 -> 2 channels, 7x6', 'Conv2D', (2, 3, 7, 6),
                  args=conv_args(2, 5, 'valid')),
        LayerCase('batch of 8, 4 -> 1 channel, 5x5, K=3 same', 'Conv2D', (8, 4, 5, 5),
                  args=conv_args(1, 3, 'same')),
        InitializationCase('He initialization, 16 -> 32 channels, K=3', 'Conv2D',
                           conv_args(32, 3, 'same'), (16, 8, 8),
                           {'kernels': ('normal', float(np.sqrt(2 / (16 * 3 * 3)))),
                            'biases': ('zeros', 0.0)}),
    ],
    'maxpool': [
        MaxPoolingCase('batch of 1, 1 channel, 4x4', 'MaxPooling2D', (1, 1, 4, 4), args=POOL_2),
        MaxPoolingCase('batch of 4, 3 channels, 6x8, tied maxima', 'MaxPooling2D', (4, 3, 6, 8),
                       args=POOL_2, inputs='with_ties'),
        MaxPoolingCase('odd sizes 5x7: the last row and column are dropped, tied maxima',
                       'MaxPooling2D', (2, 2, 5, 7), args=POOL_2, inputs='with_ties'),
        MaxPoolingCase('3x3 images -> 1x1', 'MaxPooling2D', (3, 2, 3, 3), args=POOL_2),
        MaxPoolingCase('batch of 16, 8 channels, 8x8', 'MaxPooling2D', (16, 8, 8, 8), args=POOL_2),
    ],
    'avgpool': [
        LayerCase('batch of 1, 1 channel, 3x3', 'GlobalAveragePooling', (1, 1, 3, 3)),
        LayerCase('batch of 4, 3 channels, 5x7', 'GlobalAveragePooling', (4, 3, 5, 7)),
        LayerCase('1x1 images, 8 channels', 'GlobalAveragePooling', (2, 8, 1, 1)),
    ],
    'batchnorm': [
        batchnorm_case('channel 0 nearly constant (variance 1e-6 < eps): train, test', (6, 3, 4, 4),
                       0.9, calls=(True, False), inputs='one_flat_channel',
                       hint=BATCHNORM_EPS_HINT),
        batchnorm_case('images (4, 3, 5, 6): train, train, test, train, test', (4, 3, 5, 6), 0.9,
                       calls=(True, True, False, True, False)),
        batchnorm_case('batch of 1 image (1, 2, 3, 4), momentum 0.7: train, test, train, test',
                       (1, 2, 3, 4), 0.7, calls=(True, False, True, False)),
        batchnorm_case('1 channel (8, 1, 4, 4), momentum 0.5: train, train, test', (8, 1, 4, 4),
                       0.5, calls=(True, True, False)),
        batchnorm_case('vectors (16, 5): train, train, test, train, test', (16, 5), 0.9,
                       calls=(True, True, False, True, False)),
        batchnorm_case('vectors (2, 3), momentum 0.8: test first, then train, test', (2, 3), 0.8,
                       calls=(False, True, False)),
    ],
    'dropout': [
        dropout_case('p = 0: the identity', (4, 50), 0.0),
        dropout_case('p = 0.2, vectors (200, 64)', (200, 64), 0.2),
        dropout_case('p = 0.5, images (32, 4, 10, 10)', (32, 4, 10, 10), 0.5),
        dropout_case('p = 0.8, batch of 1 (1, 12800)', (1, 12800), 0.8),
    ],
    'flatten': [
        LayerCase('batch of 1, (1, 2, 3, 4)', 'Flatten', (1, 2, 3, 4)),
        LayerCase('images (5, 3, 4, 6)', 'Flatten', (5, 3, 4, 6)),
        LayerCase('5-d (2, 2, 3, 4, 5)', 'Flatten', (2, 2, 3, 4, 5)),
        LayerCase('3-d (3, 4, 5)', 'Flatten', (3, 4, 5)),
    ],
    'cifar': [
        TrainingCase('CIFAR-10 test accuracy', 'train_cifar10_model', 'cifar10', valid_size=5000,
                     min_accuracy=0.7, time_limit=CIFAR_TIME_LIMIT),
    ],
    'leakyrelu': [
        LayerCase('batch of 1, alpha 0.1', 'LeakyReLU', (1, 6), args={'alpha': 0.1}),
        LayerCase('batch of 8, images, alpha 0.2, some inputs exactly 0', 'LeakyReLU', (8, 3, 4, 5),
                  args={'alpha': 0.2}, inputs='with_zeros',
                  alternatives=('relu_subgradient_at_zero',)),
        LayerCase('batch of 32, alpha 0.01', 'LeakyReLU', (32, 20), args={'alpha': 0.01}),
    ],
    'rmsprop': [
        OptimizerCase('lr 0.01, rho 0.9', 'RMSProp', {'lr': 0.01, 'rho': 0.9, 'eps': 1e-8},
                      TWO_PARAMETERS, rounds=4),
        OptimizerCase('lr 0.1, rho 0.5', 'RMSProp', {'lr': 0.1, 'rho': 0.5, 'eps': 1e-8},
                      TWO_PARAMETERS),
        OptimizerCase('eps 0.1', 'RMSProp', {'lr': 0.01, 'rho': 0.9, 'eps': 0.1}, TWO_PARAMETERS,
                      hint=EPS_HINT),
        OptimizerCase('some gradients exactly 0', 'RMSProp', {'lr': 0.01, 'rho': 0.9, 'eps': 1e-8},
                      TWO_PARAMETERS, gradients='with_zeros', hint=EPS_HINT),
    ],
    'adam': [
        OptimizerCase('lr 0.01, beta1 0.9, beta2 0.999', 'Adam',
                      {'lr': 0.01, 'beta1': 0.9, 'beta2': 0.999, 'eps': 1e-8}, TWO_PARAMETERS,
                      rounds=4, hint=ADAM_HINT),
        OptimizerCase('lr 0.1, beta1 0.5, beta2 0.8', 'Adam',
                      {'lr': 0.1, 'beta1': 0.5, 'beta2': 0.8, 'eps': 1e-8}, TWO_PARAMETERS,
                      rounds=4, hint=ADAM_HINT),
        OptimizerCase('eps 0.1', 'Adam', {'lr': 0.01, 'beta1': 0.9, 'beta2': 0.999, 'eps': 0.1},
                      TWO_PARAMETERS, hint=EPS_HINT),
        OptimizerCase('some gradients exactly 0', 'Adam',
                      {'lr': 0.01, 'beta1': 0.9, 'beta2': 0.999, 'eps': 1e-8}, TWO_PARAMETERS,
                      gradients='with_zeros', hint=EPS_HINT),
    ],
}


# ================================= Building =================================

def reference_results(spec, case, reference):
    """The reference's results for a case, in float64, with accepted alternatives.

    Quantities in the spec's by_property are left to the kind's verify.
    """
    results = common.CHECKS[spec.kind].run(reference, case)
    expected = {what: np.asarray(value, dtype=np.float64) for what, value in results.items()
                if what not in spec.by_property}
    for rule in spec.alternatives:
        ALTERNATIVES[rule](case, expected, reference)
    return expected


def checked_without_reference(spec, case, reference):
    """No expected values: the kind's verify checks properties (any random mask passes),
    distributions or a trained model's accuracy."""
    return None


EXPECTED_VALUES = {  # common.CHECKS kind: how the case's expected values are made
    'layer': reference_results, 'max_pooling': reference_results,
    'function': reference_results, 'loss': reference_results, 'optimizer': reference_results,
    'dropout': checked_without_reference, 'initialization': checked_without_reference,
    'training': checked_without_reference,
}


def directory_name(number, test):
    return f"{number:02d}_unittest_{test}_input"


def grown(shape):
    """A hidden case's shape: sizes of 1 stay (batch of 1, 1 channel, 1x1 images), the
    others grow by GROWTH, which is even, so odd sizes stay odd and 'valid' kernels fit."""
    if isinstance(shape, dict):  # OptimizerCase.shapes
        return {name: grown(value) for name, value in shape.items()}
    return tuple(size if size == 1 else size + GROWTH for size in shape)


def hidden_variant(spec):
    """The spec with every shape in its shape_fields grown, named after the new shapes."""
    if not spec.shape_fields:
        return spec
    changes = {name: grown(getattr(spec, name)) for name in spec.shape_fields}
    shown = ', '.join(str(value) for value in changes.values())
    return replace(spec, name=f"{spec.name}; hidden variant {shown}", **changes)


def build_fixtures(out_dir, reference, seed=DEFAULT_SEED, table=EXTENDED_TABLE, hidden=False):
    """Writes the fixture directory of every test in `table`, numbered in its order.

    hidden: the grader's hidden set instead, from other random streams and
    with grown shapes (hidden_variant); training cases are copied as they are.
    """
    out_dir = Path(out_dir)
    numbered = load_table(table).numbered_tests()
    if missing := [test for _, test in numbered if test not in SPECS]:
        raise ValueError(f"{table}: no case specs for test {', '.join(missing)} in "
                         f"staff/fixtures.py SPECS")
    for number, (section, test) in enumerate(numbered):
        streams = [seed, zlib.crc32(test.encode())] + ([HIDDEN_STREAM] if hidden else [])
        specs = [hidden_variant(spec) for spec in SPECS[test]] if hidden else SPECS[test]
        write_fixture(out_dir / directory_name(number, test), section, test, specs,
                      reference, np.random.default_rng(streams))


def write_fixture(directory, section, test, specs, reference, rng):
    """One fixture directory: description.json plus a pickle per case."""
    if directory.exists():
        shutil.rmtree(directory)
    directory.mkdir(parents=True)
    entries = []
    for number, spec in enumerate(specs):
        np.random.seed(0)
        case = spec.generate(rng, reference)
        if spec.hint:
            case['hint'] = spec.hint
        expected = EXPECTED_VALUES[spec.kind](spec, case, reference)
        if expected is not None:
            case['expected'] = expected
        file = f"case_{number:02d}.pkl"
        (directory / file).write_bytes(pickle.dumps(case, protocol=PICKLE_PROTOCOL))
        entries.append({'file': file, 'kind': spec.kind, 'name': spec.name})
    write_description(directory, section, test, entries)


def write_description(directory, section, test, entries):
    """directory/description.json: the test's section, title and points, and its cases."""
    description = {'section': section.number, 'title': section.title, 'points': section.points,
                   'test': test, 'cases': entries}
    (directory / 'description.json').write_text(json.dumps(description, indent=2) + '\n')


# =================================== CLI ====================================

def add_arguments(parser):
    parser.description = __doc__
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument('--seed', type=int, default=DEFAULT_SEED,
                        help=f"the same seed gives byte-identical files; the default "
                             f"{DEFAULT_SEED} reproduces the committed public fixtures")
    parser.add_argument('--out', type=Path, metavar='DIR', help='where to write (default: tests/)')
    parser.add_argument('--hidden', type=Path, metavar='DIR',
                        help="write the grader's hidden set into DIR instead (other random "
                             "streams, grown shapes); DIR must be outside tests/")
    add_reference_argument(parser)


def main(args):
    """./run.py make-fixtures: the public fixtures into --out (default tests/), or the hidden
    set into --hidden; returns the exit status."""
    hidden = args.hidden is not None
    out = args.hidden if hidden else args.out or common.TESTS_DIR
    if hidden and args.out is not None:
        raise UsageError("--hidden DIR writes the hidden set into DIR; leave out --out")
    if hidden and common.TESTS_DIR in (out.resolve(), *out.resolve().parents):
        raise UsageError(f"--hidden {out}: keep the hidden set outside {common.TESTS_DIR}, "
                         f"which students and submissions see")
    reference = common.load_solution(args.reference)
    try:
        build_fixtures(out, reference, seed=args.seed, hidden=hidden)
    except ValueError as error:
        raise UsageError(str(error)) from None
    print(f"{'hidden' if hidden else 'public'} fixtures (seed {args.seed}) written to {out}")
    return 0
