"""Fixture directories, generated from the reference solution.py.

Each test is described by data: a list of case specs (which layer, its
arguments, input shapes, which checks). build_fixtures() draws the inputs with
a seed, computes the expected outputs with the reference through the same
run functions the checks use, and writes tests/NN_unittest_<test>_input/.
The same seed gives byte-identical files.
"""
import json
import pickle
import shutil
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

import common
from staff.points import load_table, STANDARD_TABLE

DEFAULT_SEED = 1
PICKLE_PROTOCOL = 4


# ============================ Input generators ==============================

def normal(rng, shape):
    return rng.normal(size=shape)


def with_zeros(rng, shape):
    """Normal values with about a third of them exactly 0."""
    values = rng.normal(size=shape)
    values[rng.random(shape) < 1 / 3] = 0.0
    return values


def huge_logits(rng, shape):
    """Rows of logits around +1000 and -1000 alternately, where a plain exp() overflows."""
    signs = np.where(np.arange(shape[0]) % 2 == 0, 1000.0, -1000.0)
    return signs.reshape((-1,) + (1,) * (len(shape) - 1)) + 3 * rng.normal(size=shape)


def one_hot_rows(rng, shape):
    n, d = shape
    return np.eye(d)[rng.integers(0, d, size=n)]


def probability_rows(rng, shape):
    """Rows of probabilities, every one >= 1e-6 (where clipping changes nothing)."""
    p = np.maximum(np.exp(2 * rng.normal(size=shape)), 1e-3)
    p /= p.sum(axis=1, keepdims=True)
    return np.maximum(p, 1e-6)


GENERATORS = {f.__name__: f for f in (normal, with_zeros, huge_logits, one_hot_rows, probability_rows)}


# ============================== Alternatives ================================

def relu_subgradient_at_zero(case, expected):
    """At x == 0 the ReLU gradient may be 0 or the incoming gradient: accept both."""
    call = case['calls'][0]
    at_zero = call['inputs'] == 0
    return [expected, np.where(at_zero, call['grad_outputs'], expected)]


ALTERNATIVES = {'relu_subgradient_at_zero': relu_subgradient_at_zero}


# ================================ Case specs ================================

@dataclass
class LayerCase:
    """A layer called on random inputs of `shape` (batch first), then backward."""
    name: str
    layer: str
    shape: tuple
    args: dict = field(default_factory=dict)
    inputs: str = 'normal'
    calls: tuple = (True,)
    state: tuple = ()
    alternatives: dict = field(default_factory=dict)
    hint: str = ''
    kind = 'layer'

    def generate(self, rng, reference):
        layer = getattr(reference, self.layer)(**self.args, input_shape=self.shape[1:])
        layer.build(common.NoUpdates())
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
class InitializationCase:
    """A freshly built layer's parameters against their distributions."""
    name: str
    layer: str
    args: dict
    input_shape: tuple
    statistics: dict
    kind = 'initialization'

    def generate(self, rng, reference):
        layer = getattr(reference, self.layer)(**self.args, input_shape=self.input_shape)
        layer.build(common.NoUpdates())
        return {'layer': self.layer, 'args': self.args, 'input_shape': self.input_shape,
                'statistics': self.statistics,
                'shapes': {name: getattr(layer, name).shape for name in self.statistics}}


@dataclass
class LossCase:
    """A loss and its gradient on one batch."""
    name: str
    loss: str
    shape: tuple
    args: dict = field(default_factory=dict)
    kind = 'loss'

    def generate(self, rng, reference):
        return {'loss': self.loss, 'args': self.args,
                'y_gt': one_hot_rows(rng, self.shape), 'y_pred': probability_rows(rng, self.shape)}


@dataclass
class OptimizerCase:
    """Updaters of several parameters stepped interleaved: A, B, A, B, ..."""
    name: str
    optimizer: str
    args: dict
    shapes: dict
    rounds: int = 3
    kind = 'optimizer'

    def generate(self, rng, reference):
        return {'optimizer': self.optimizer, 'args': self.args,
                'parameters': {name: rng.normal(size=shape) for name, shape in self.shapes.items()},
                'steps': [(name, rng.normal(size=shape))
                          for _ in range(self.rounds) for name, shape in self.shapes.items()]}


@dataclass
class TrainingCase:
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


SOFTMAX_HINT = ("exp() overflows for large logits: subtract each row's maximum before "
                "exponentiating (the assignment's closing tip); the result does not change")
TWO_PARAMETERS = {'A': (3, 4), 'B': (5,)}

SPECS = {
    'relu': [
        LayerCase('batch of 1', 'ReLU', (1, 6)),
        LayerCase('batch of 8, images, some inputs exactly 0', 'ReLU', (8, 3, 4, 5),
                  inputs='with_zeros', alternatives={'grad_inputs': 'relu_subgradient_at_zero'}),
        LayerCase('batch of 32', 'ReLU', (32, 20)),
    ],
    'softmax': [
        LayerCase('batch of 1', 'Softmax', (1, 5)),
        LayerCase('batch of 6', 'Softmax', (6, 10)),
        LayerCase('logits of +-1000', 'Softmax', (4, 7), inputs='huge_logits', hint=SOFTMAX_HINT),
    ],
    'dense': [
        LayerCase('batch of 1', 'Dense', (1, 4), args={'units': 3}),
        LayerCase('batch of 8, 7 -> 5 units', 'Dense', (8, 7), args={'units': 5}),
        LayerCase('batch of 32, 20 -> 10 units', 'Dense', (32, 20), args={'units': 10}),
        InitializationCase('He initialization, 400 -> 300 units', 'Dense', {'units': 300}, (400,),
                           {'weights': ('normal', float(np.sqrt(2 / 400))), 'biases': ('zeros', 0.0)}),
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
                     min_accuracy=0.9, time_limit=600),
    ],
}


# ================================= Building =================================

def expected_results(spec, case, reference):
    """The reference's results for a case, in float64, with accepted alternatives."""
    if spec.kind not in ('layer', 'loss', 'optimizer'):
        return None
    run, _ = common.CHECKS[spec.kind]
    results = run(reference, case)
    expected = {what: np.asarray(value, dtype=np.float64) for what, value in results.items()}
    for what, rule in getattr(spec, 'alternatives', {}).items():
        expected[what] = ALTERNATIVES[rule](case, expected[what])
    return expected


def directory_name(number, test):
    return f"{number:02d}_unittest_{test}_input"


def build_fixtures(out_dir, reference, seed=DEFAULT_SEED, table=STANDARD_TABLE, tests=None):
    """Writes the fixture directory of every test in `table` that has specs."""
    out_dir = Path(out_dir)
    for number, (section, test) in enumerate(load_table(table).numbered_tests()):
        if test not in SPECS or (tests is not None and test not in tests):
            continue
        write_fixture(out_dir / directory_name(number, test), section, test, SPECS[test],
                      reference, np.random.default_rng([seed, zlib.crc32(test.encode())]))


def write_fixture(directory, section, test, specs, reference, rng):
    """One fixture directory: description.json plus a pickle per case."""
    if directory.exists():
        shutil.rmtree(directory)
    directory.mkdir(parents=True)
    entries = []
    for number, spec in enumerate(specs):
        np.random.seed(0)
        case = spec.generate(rng, reference)
        if getattr(spec, 'hint', ''):
            case['hint'] = spec.hint
        expected = expected_results(spec, case, reference)
        if expected is not None:
            case['expected'] = expected
        file = f"case_{number:02d}.pkl"
        (directory / file).write_bytes(pickle.dumps(case, protocol=PICKLE_PROTOCOL))
        entries.append({'file': file, 'kind': spec.kind, 'name': spec.name})
    description = {'section': section.number, 'title': section.title, 'points': section.points,
                   'test': test, 'cases': entries}
    (directory / 'description.json').write_text(json.dumps(description, indent=2) + '\n')
