"""Shared helpers: datasets, fixture files, comparisons and the unit-test checks.

./run.py unittest and the course's checking system both grade through
run_test() below, so a test that passes here passes there.
"""
import gzip
import hashlib
import importlib.util
import json
import os
import pickle
import sys
import time
import traceback
import urllib.request
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

KIT_DIR = Path(__file__).resolve().parent
TESTS_DIR = KIT_DIR / 'tests'
RTOL = 1e-4
ATOL = 1e-5


def data_dir():
    """Where datasets live: $NN_DATA_DIR, or data/ beside this file."""
    return Path(os.environ.get('NN_DATA_DIR', KIT_DIR / 'data'))


# ================================ Datasets ==================================

MNIST_FILES = {
    'train-images-idx3-ubyte.gz': 'f68b3c2dcbeaaa9fbdd348bbdeb94873',
    'train-labels-idx1-ubyte.gz': 'd53e105ee54ea40749a09fcbcd1e9432',
    't10k-images-idx3-ubyte.gz': '9fb629c4189551a2d022fa330f9573f3',
    't10k-labels-idx1-ubyte.gz': 'ec29112dd5afa0611ce80d1b7f02629c',
}
MNIST_MIRRORS = [
    'https://ossci-datasets.s3.amazonaws.com/mnist/',
    'https://storage.googleapis.com/cvdf-datasets/mnist/',
    'http://yann.lecun.com/exdb/mnist/',
]


class DataUnavailable(Exception):
    """A dataset is missing and could not be downloaded."""


def md5sum(path):
    digest = hashlib.md5()
    with open(path, 'rb') as file:
        for block in iter(lambda: file.read(1 << 20), b''):
            digest.update(block)
    return digest.hexdigest()


def download(url, path, md5):
    """Downloads url to path atomically, with progress; checks the md5.

    The file appears at `path` only when complete and correct: a failed or
    interrupted download leaves nothing behind.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + '.part')
    try:
        with urllib.request.urlopen(url, timeout=30) as response, open(partial, 'wb') as file:
            size = int(response.headers.get('Content-Length') or 0)
            done, shown = 0, -1
            for block in iter(lambda: response.read(1 << 20), b''):
                file.write(block)
                done += len(block)
                percent = 100 * done // size if size else -1
                if percent != shown and sys.stderr.isatty():
                    print(f"\rdownloading {path.name}: {percent}%", end='', file=sys.stderr)
                    shown = percent
        if md5sum(partial) != md5:
            raise DataUnavailable(f"{url}: checksum mismatch (expected md5 {md5}), "
                                  f"the download is corrupted")
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)


def fetch(name, directory, md5, mirrors):
    """Path of a checked copy of file `name` in `directory`, downloading if missing."""
    path = Path(directory) / name
    if path.exists():
        if md5sum(path) != md5:
            raise DataUnavailable(f"{path} is corrupted (md5 differs from {md5}): delete it "
                                  f"to download it again")
        return path
    errors = []
    for mirror in mirrors:
        try:
            download(mirror + name, path, md5)
            return path
        except (OSError, DataUnavailable) as error:
            errors.append(f"{mirror}: {error}")
    raise DataUnavailable(f"{path} is missing and could not be downloaded "
                          f"({'; '.join(errors)}); put the file there by hand")


def read_idx(path):
    """Parses a gzipped IDX file (the MNIST format) into a uint8 array."""
    with gzip.open(path, 'rb') as file:
        data = file.read()
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], 'big') for i in range(ndim))
    if data[2] != 0x08 or len(data) != 4 + 4 * ndim + int(np.prod(shape)):
        raise DataUnavailable(f"{path} is not a uint8 IDX file of shape {shape}")
    return np.frombuffer(data, np.uint8, offset=4 + 4 * ndim).reshape(shape)


def one_hot(labels, classes):
    """labels (n,) ints -> (n, classes) float32 one-hot rows."""
    return np.eye(classes, dtype=np.float32)[labels]


@lru_cache(maxsize=1)
def load_mnist_raw():
    """(train images (60000, 28, 28), train labels, test images, test labels), uint8."""
    directory = data_dir() / 'mnist'
    return tuple(read_idx(fetch(name, directory, md5, MNIST_MIRRORS))
                 for name, md5 in MNIST_FILES.items())


def load_mnist():
    """MNIST as the assignment gives it: (x_train, y_train, x_test, y_test).

    x is float32 (n, 784) normalized to mean 0, std 1 with the training
    set's statistics; y is one-hot float32 (n, 10).
    """
    train_images, train_labels, test_images, test_labels = load_mnist_raw()
    x_train = train_images.reshape(len(train_images), -1).astype(np.float32)
    x_test = test_images.reshape(len(test_images), -1).astype(np.float32)
    mean, std = x_train.mean(), x_train.std()
    return ((x_train - mean) / std, one_hot(train_labels, 10),
            (x_test - mean) / std, one_hot(test_labels, 10))


DATASETS = {'mnist': load_mnist}


# ================================ Fixtures ==================================

class FixtureError(Exception):
    """A fixture directory or file is missing or malformed."""


class FixtureUnpickler(pickle.Unpickler):
    """Loads numpy arrays and plain Python data, nothing else."""

    ALLOWED = {
        ('numpy', 'ndarray'), ('numpy', 'dtype'),
        ('numpy.core.multiarray', '_reconstruct'), ('numpy._core.multiarray', '_reconstruct'),
        ('numpy.core.multiarray', 'scalar'), ('numpy._core.multiarray', 'scalar'),
        ('builtins', 'slice'), ('builtins', 'complex'),
    }

    def find_class(self, module, name):
        if (module, name) not in self.ALLOWED:
            raise FixtureError(f"refusing to load {module}.{name} from a fixture: only "
                               f"numpy arrays and plain data are allowed")
        return super().find_class(module, name)


def load_pickle(path):
    with open(path, 'rb') as file:
        return FixtureUnpickler(file).load()


@dataclass
class Fixture:
    """One fixture directory tests/NN_unittest_<test>_input/."""
    directory: Path
    section: str
    title: str
    points: float
    test: str
    cases: list

    @classmethod
    def load(cls, directory):
        directory = Path(directory)
        try:
            description = json.loads((directory / 'description.json').read_text())
            return cls(directory, str(description['section']), description['title'],
                       float(description['points']), description['test'],
                       description['cases'])
        except (OSError, ValueError, KeyError) as error:
            raise FixtureError(f"{directory}: bad description.json ({error!r})") from None

    def load_case(self, entry):
        """The case's data: a dict with 'kind', 'name', inputs and 'expected'."""
        try:
            case = load_pickle(self.directory / entry['file'])
        except (OSError, pickle.UnpicklingError, EOFError) as error:
            raise FixtureError(f"{self.directory / entry['file']}: {error}") from None
        return {'kind': entry['kind'], 'name': entry['name'], **case}


def find_fixtures(tests_dir=TESTS_DIR):
    """{test name: Fixture} for every NN_unittest_<test>_input directory, in order."""
    fixtures = [Fixture.load(path) for path in sorted(Path(tests_dir).glob('*_unittest_*_input'))]
    return {fixture.test: fixture for fixture in fixtures}


# =============================== Comparison =================================

class CheckFailed(Exception):
    """A value computed by solution.py differs from the expected one."""


def as_array(value, what):
    """np.asarray(value), refusing what cannot be a numeric result."""
    if value is None:
        raise CheckFailed(f"{what}: got None (a missing return statement?)")
    array = np.asarray(value)
    if array.dtype.kind not in 'biuf':
        raise CheckFailed(f"{what}: got an array of dtype {array.dtype}, expected numbers")
    return array


def compare(what, actual, expected, rtol=RTOL, atol=ATOL):
    """Raises CheckFailed unless actual matches expected elementwise.

    `expected` is an array, or a list of arrays when either of several
    answers is right (each element may match any of them). Tolerance:
    |actual - expected| <= atol * max|expected| + rtol * |expected|.
    """
    actual = as_array(actual, what)
    options = expected if isinstance(expected, list) else [expected]
    if actual.shape != options[0].shape:
        raise CheckFailed(f"{what}: shape {actual.shape}, expected {options[0].shape}")
    scale = max(1.0, max(float(np.max(np.abs(option), initial=0)) for option in options))
    errors = np.stack([np.abs(actual.astype(np.float64) - option) for option in options])
    allowed = np.stack([atol * scale + rtol * np.abs(option) for option in options])
    best = np.argmin(errors / allowed, axis=0)
    error = np.take_along_axis(errors, best[None], 0)[0]
    ok = np.take_along_axis(errors <= allowed, best[None], 0)[0]
    if np.all(ok):
        return
    worst = np.unravel_index(np.argmax(np.where(ok, -np.inf, error)), actual.shape)
    closest = np.take_along_axis(np.stack(options), best[None], 0)[0]
    relative = error / np.maximum(np.abs(closest), 1e-12)
    raise CheckFailed(
        f"{what} differs at {np.count_nonzero(~ok)} of {actual.size} elements "
        f"(shape {actual.shape}): max abs error {np.nanmax(error):.3g}, "
        f"max rel error {np.nanmax(relative):.3g}; at index {tuple(map(int, worst))} "
        f"expected {closest[worst]:.6g}, got {actual[worst]:.6g}")


# ================================= Checks ===================================
# Each kind of check has run(solution, case) -> {quantity: array}, which calls
# the student's code (in the grader: in a sandboxed child), and
# verify(case, results) -> note, which compares with case['expected'].

def solution_attribute(solution, name):
    if not hasattr(solution, name):
        raise CheckFailed(f"solution.py has no {name}")
    return getattr(solution, name)


class NoUpdates:
    """An optimizer whose updaters are never called by the layer checks."""

    def get_parameter_updater(self, parameter_shape):
        return lambda parameter, parameter_grad: parameter


def build_layer(solution, case):
    """The case's layer, built with its input_shape and given parameters."""
    layer = solution_attribute(solution, case['layer'])(**case['args'], input_shape=case['input_shape'])
    layer.build(NoUpdates())
    for name, value in case.get('parameters', {}).items():
        setattr(layer, name, value.copy())
        setattr(layer, name + '_grad', np.zeros_like(value))
    return layer


def run_layer(solution, case):
    """Calls the layer on each of case['calls']; collects outputs, gradients, state."""
    layer = build_layer(solution, case)
    multiple = len(case['calls']) > 1
    results = {}
    for number, call in enumerate(case['calls'], 1):
        prefix = f"call {number}: " if multiple else ''
        layer.is_training = call['is_training']
        results[prefix + 'outputs'] = layer(call['inputs'].copy())
        if call.get('grad_outputs') is not None:
            results[prefix + 'grad_inputs'] = layer.backward(call['grad_outputs'].copy())
            for name in layer.parameter_names:
                results[prefix + name + '_grad'] = getattr(layer, name + '_grad')
        for name in case.get('state', ()):
            results[prefix + name] = getattr(layer, name)
    return results


def run_initialization(solution, case):
    """The freshly built layer's parameters."""
    layer = solution_attribute(solution, case['layer'])(**case['args'], input_shape=case['input_shape'])
    layer.build(NoUpdates())
    return {name: getattr(layer, name) for name in case['statistics']}


def verify_initialization(case, results):
    """Each parameter has the expected zeros, or normal mean and std within 5 sigma."""
    for name, (distribution, std) in case['statistics'].items():
        values = as_array(results[name], name).astype(np.float64)
        if values.shape != tuple(case['shapes'][name]):
            raise CheckFailed(f"{name}: shape {values.shape}, expected {tuple(case['shapes'][name])}")
        if distribution == 'zeros' and np.any(values != 0):
            raise CheckFailed(f"{name}: expected all zeros, got max |value| {np.max(np.abs(values)):.3g}")
        if distribution == 'normal':
            size = values.size
            if abs(values.mean()) > 5 * std / np.sqrt(size):
                raise CheckFailed(f"{name}: mean {values.mean():.4g}, expected 0 ± {5 * std / np.sqrt(size):.2g}")
            if abs(values.std() / std - 1) > 5 / np.sqrt(2 * size):
                raise CheckFailed(f"{name}: std {values.std():.4g}, expected {std:.4g}")


def run_loss(solution, case):
    loss = solution_attribute(solution, case['loss'])(**case['args'])
    return {'loss': loss(case['y_gt'].copy(), case['y_pred'].copy()),
            'gradient': loss.gradient(case['y_gt'].copy(), case['y_pred'].copy())}


def run_optimizer(solution, case):
    """Steps the case's parameters, interleaved as in case['steps'], recording each."""
    optimizer = solution_attribute(solution, case['optimizer'])(**case['args'])
    parameters = {name: value.copy() for name, value in case['parameters'].items()}
    updaters = {name: optimizer.get_parameter_updater(value.shape)
                for name, value in parameters.items()}
    results = {}
    for number, (name, gradient) in enumerate(case['steps'], 1):
        what = f"{name} after step {number}"
        parameters[name] = as_array(updaters[name](parameters[name].copy(), gradient.copy()), what)
        results[what] = parameters[name]
    return results


def run_training(solution, case):
    """Trains the student's model; returns its predicted test labels and the time."""
    x_train, y_train, x_test, _ = DATASETS[case['dataset']]()
    split = len(x_train) - case['valid_size']
    start = time.perf_counter()
    model = solution_attribute(solution, case['function'])(
        x_train[:split], y_train[:split], x_train[split:], y_train[split:])
    seconds = time.perf_counter() - start
    predictions = model.predict(x_test)
    return {'labels': np.argmax(as_array(predictions, 'model.predict(x_test)'), axis=1),
            'seconds': np.float64(seconds)}


def verify_training(case, results):
    """Test accuracy above the bar, within the time limit."""
    *_, y_test = DATASETS[case['dataset']]()
    labels = as_array(results['labels'], 'predicted labels')
    if labels.shape != (len(y_test),):
        raise CheckFailed(f"predicted labels: shape {labels.shape}, expected ({len(y_test)},)")
    accuracy = float(np.mean(labels == np.argmax(y_test, axis=1)))
    seconds = float(results['seconds'])
    note = f"test accuracy {accuracy:.4f}, trained in {seconds:.0f} s"
    if accuracy <= case['min_accuracy']:
        raise CheckFailed(f"{note}: needs more than {case['min_accuracy']:.2f}")
    if seconds > case['time_limit']:
        raise CheckFailed(f"{note}: over the limit of {case['time_limit']} s")
    return note


def verify_expected(case, results):
    """Every quantity in case['expected'] matches the computed one."""
    for what, expected in case['expected'].items():
        if what not in results:
            raise CheckFailed(f"{what}: not computed")
        compare(what, results[what], expected, case.get('rtol', RTOL), case.get('atol', ATOL))


CHECKS = {
    'layer': (run_layer, verify_expected),
    'initialization': (run_initialization, verify_initialization),
    'loss': (run_loss, verify_expected),
    'optimizer': (run_optimizer, verify_expected),
    'training': (run_training, verify_training),
}


# ================================ Running ===================================

@dataclass
class Result:
    """The verdict of one test: passed, failed, not implemented or error."""
    test: str
    verdict: str
    message: str = ''
    seconds: float = 0.0
    details: list = field(default_factory=list)

    @property
    def passed(self):
        return self.verdict == 'passed'


def load_solution(path, name='solution'):
    """Imports solution.py from `path` as a fresh module registered as `name`."""
    path = Path(path).resolve()
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def student_traceback(error, solution_file):
    """The exception's traceback limited to frames in the student's file."""
    frames = [frame for frame in traceback.extract_tb(error.__traceback__)
              if Path(frame.filename).resolve() == Path(solution_file).resolve()]
    lines = traceback.format_list(frames)
    return ''.join(lines) + ''.join(traceback.format_exception_only(type(error), error))


def case_inputs(case):
    """What the student's side of a check may see: everything but the answers."""
    return {key: value for key, value in case.items() if key not in ('expected', 'hint')}


def run_case(solution, case):
    """Runs one case's student side; returns ('ok', results) or (verdict, message)."""
    run, _ = CHECKS[case['kind']]
    np.random.seed(0)
    try:
        return 'ok', run(solution, case_inputs(case))
    except NotImplementedError as error:
        return 'not implemented', str(error) or 'NotImplementedError'
    except CheckFailed as error:
        return 'failed', str(error)
    except Exception as error:  # the student's code raised: report it, go on
        return 'error', student_traceback(error, solution.__file__).rstrip()


def verify_case(case, results):
    """('passed', note) or ('failed', message) for the results of one case."""
    _, verify = CHECKS[case['kind']]
    try:
        return 'passed', verify(case, results) or ''
    except CheckFailed as error:
        hint = f"\n  hint: {case['hint']}" if case.get('hint') else ''
        return 'failed', f"{error}{hint}"


def run_test(fixture, solution):
    """Runs every case of a fixture against the solution module."""
    start = time.perf_counter()
    outcomes = []
    for entry in fixture.cases:
        case = fixture.load_case(entry)
        verdict, results = run_case(solution, case)
        if verdict == 'ok':
            verdict, message = verify_case(case, results)
        else:
            message = results
        outcomes.append((case['name'], verdict, message))
    return summarize(fixture.test, outcomes, time.perf_counter() - start)


def summarize(test, outcomes, seconds):
    """One Result from (case name, verdict, message) per case: the first bad one decides."""
    bad = [outcome for outcome in outcomes if outcome[1] != 'passed']
    if not bad:
        notes = '; '.join(message for _, _, message in outcomes if message)
        return Result(test, 'passed', notes, seconds)
    name, verdict, message = bad[0]
    more = f" (and {len(bad) - 1} more of {len(outcomes)} cases)" if len(bad) > 1 else ''
    return Result(test, verdict, f"case '{name}'{more}: {message}", seconds,
                  [f"case '{n}': {v}: {m}" for n, v, m in bad])


# ============================= Gradient check ===============================

def numerical_gradient(f, x, h=1e-6):
    """Central-difference gradient of the scalar f() w.r.t. array x (changed and restored)."""
    grad = np.zeros_like(x, dtype=np.float64)
    for index in np.ndindex(x.shape):
        old = x[index]
        x[index] = old + h
        plus = f()
        x[index] = old - h
        minus = f()
        x[index] = old
        grad[index] = (plus - minus) / (2 * h)
    return grad


def relative_error(analytic, numeric):
    """max |a - b| / max(|a| + |b|) elementwise, and the index where it is worst."""
    error = np.abs(analytic - numeric) / np.maximum(np.abs(analytic) + np.abs(numeric), 1e-8)
    worst = np.unravel_index(np.argmax(error), error.shape)
    return float(error[worst]), tuple(int(i) for i in worst)


def gradient_check(layer, inputs, seed=0):
    """Compares layer.backward with central differences, all in float64.

    The loss is sum(outputs * G) for a fixed random G; the random state is
    reset before every forward pass, so a random layer (Dropout) keeps one
    mask. Returns {'inputs' or parameter name: (relative error, worst index)}.
    """
    inputs = np.array(inputs, dtype=np.float64)
    for name in layer.parameter_names:
        setattr(layer, name, getattr(layer, name).astype(np.float64))
        setattr(layer, name + '_grad', np.zeros(getattr(layer, name).shape))

    def loss():
        np.random.seed(seed)
        return float(np.sum(np.asarray(layer(inputs), dtype=np.float64) * grad_outputs))

    np.random.seed(seed)
    grad_outputs = np.random.default_rng(seed).normal(size=np.shape(layer(inputs)))
    analytic = {'inputs': np.asarray(layer.backward(grad_outputs), dtype=np.float64)}
    for name in layer.parameter_names:
        analytic[name] = len(inputs) * np.asarray(getattr(layer, name + '_grad'), dtype=np.float64)
    numeric = {'inputs': numerical_gradient(loss, inputs)}
    for name in layer.parameter_names:
        numeric[name] = numerical_gradient(loss, getattr(layer, name))
    return {name: relative_error(analytic[name], numeric[name]) for name in analytic}
