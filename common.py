"""What you need to understand a failed test: the comparison, the checks, running a case.

./run.py unittest and the course's checking system both grade through
run_test() below, so a test that passes here passes there. A failed test's
message comes from compare() or from one of the checks: a kind of check
runs your code (run_*) and judges its results (verify_*).

You do not need to read the other given modules: datasets.py (MNIST and
CIFAR-10), gradcheck.py (./run.py gradcheck's numerical gradients) and
pickles.py (safe loading of the fixture files).
"""
import importlib.util
import json
import os
import sys
import time
import traceback
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

import numpy as np

from datasets import DATASETS, DataUnavailable
from datasets import load_cifar10 as load_cifar10  # importable from common, as before
from datasets import load_mnist as load_mnist
from pickles import FixtureError, load_pickle

KIT_DIR = Path(__file__).resolve().parent
TESTS_DIR = KIT_DIR / 'tests'
RTOL = 1e-4
ATOL = 1e-5
GIB = 1 << 30
TIME_LIMIT = 60  # seconds (wall and CPU) of each section in the checking system
MEMORY_LIMIT = 2 * GIB  # bytes of memory of each section in the checking system
TRAINING_MEMORY_LIMIT = 6 * GIB  # the same for the training sections (mnist, cifar)
TRAINING_ALLOWANCE = 60  # seconds of wall time beyond their training limit: data, predicting
REEXTRACT = "re-extract the kit's tests/ folder from its zip"


class Verdict(StrEnum):
    """The verdict of a test (./run.py unittest) or of a section (the grader)."""
    PASSED = 'passed'
    FAILED = 'failed'
    NOT_IMPLEMENTED = 'not implemented'
    ERROR = 'error'
    NOT_AVAILABLE = 'not available'
    MEMORY_LIMIT = 'memory limit'
    IMPORT_FAILED = 'import failed'  # the grader's: solution.py does not import
    TIME_LIMIT = 'time limit'  # the grader's: a section ran out of its time


RAN = 'ok'  # run_case's mark that a case ran and its results follow, for verify_case


class CheckFailed(Exception):
    """A value computed by solution.py differs from the expected one."""


def as_array(value, what):
    """np.asarray(value), refusing what cannot be a numeric result."""
    if value is None:
        raise CheckFailed(f"{what}: got None (a missing return statement?)")
    try:
        array = np.asarray(value)
    except (ValueError, TypeError) as error:  # ragged lists and the like
        raise CheckFailed(f"{what}: cannot be made an array of numbers ({error})") from None
    if array.dtype.kind not in 'biuf':
        raise CheckFailed(f"{what}: got an array of dtype {array.dtype}, expected numbers")
    return array


def non_finite(array):
    """'2 NaN and 1 inf of 12 elements (shape (3, 4))': how much of an array is not a number."""
    return (f"{np.count_nonzero(np.isnan(array))} NaN and {np.count_nonzero(np.isinf(array))} inf "
            f"of {array.size} elements (shape {array.shape})")


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
    if not np.all(np.isfinite(actual)):
        first = tuple(map(int, np.argwhere(~np.isfinite(actual))[0]))
        raise CheckFailed(
            f"{what}: {non_finite(actual)}; the first at index {first}: expected "
            f"{options[0][first]:.6g}, got {actual[first]} (an overflow, e.g. exp of a large "
            f"number, or a division by zero?)")
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


def gradient_hint(actual, expected, n):
    """A likely cause when a wrong gradient is a simple multiple of the right one, or ''.

    n is the batch size: parameter gradients are averaged over the batch.
    """
    if not np.any(actual):
        return 'it is all zeros: is it computed and stored?'
    causes = {n: f"n = {n} times too large: a sum over the batch where the mean belongs?",
              1 / n: f"n = {n} times too small: divided by the batch size where it should not be?",
              -1: 'its sign is flipped'}
    for factor, cause in causes.items():
        if (n > 1 or factor == -1) and actual.shape == np.shape(expected) and np.allclose(
                actual, factor * expected, rtol=1e-4, atol=1e-6 * np.max(np.abs(expected))):
            return cause
    return ''


# ================================= Checks ===================================
# Each kind of check (CheckKind, at the end) has run(solution, case), which calls
# the student's code, and verify(case, results), which compares with case['expected'].

def solution_attribute(solution, name):
    if not hasattr(solution, name):
        raise CheckFailed(f"solution.py has no {name}")
    return getattr(solution, name)


class NoUpdates:
    """An optimizer whose updaters are never called by the layer checks."""

    def get_parameter_updater(self, parameter_shape):
        return lambda parameter, parameter_grad: parameter


def build_for_check(layer, input_shape):
    """The layer, built alone for samples of input_shape (no batch) with NoUpdates; returned.

    How the checks, ./run.py gradcheck and the fixture builder make a layer ready.
    """
    layer.input_shape = tuple(input_shape)
    layer.build(NoUpdates())
    return layer


def construct(solution, name, args):
    """solution.<name>(**args); a call that does not fit the constructor says where the kit's
    arguments differ from the original course kit's."""
    try:
        return solution_attribute(solution, name)(**args)
    except TypeError as error:
        if error.__traceback__.tb_next is None:  # raised by the call itself, not in __init__
            error.add_note(f"hint: the tests call {name}({', '.join(args)}) with the kit's "
                           f"arguments; a layer written for the original course kit: see "
                           f"'Coming from the original course kit' in README.md")
        raise


def build_layer(solution, case):
    """The case's layer, built with its input_shape and given parameters."""
    layer = build_for_check(construct(solution, case['layer'], case['args']), case['input_shape'])
    for name, value in case.get('parameters', {}).items():
        setattr(layer, name, value.copy())
        setattr(layer, name + '_grad', np.zeros_like(value))
    return layer


def snapshot(value):
    """A copy of an array, so that a layer updating it in place later cannot change it."""
    return np.array(value) if isinstance(value, np.ndarray) else value


def run_layer(solution, case):
    """Calls the layer on each of case['calls']; collects outputs, gradients, state."""
    layer = build_layer(solution, case)
    multiple = len(case['calls']) > 1
    results = {}
    for number, call in enumerate(case['calls'], 1):
        prefix = f"call {number}: " if multiple else ''
        layer.is_training = call['is_training']
        results[prefix + 'outputs'] = snapshot(layer(call['inputs'].copy()))
        if call.get('grad_outputs') is not None:
            results[prefix + 'grad_inputs'] = snapshot(layer.backward(call['grad_outputs'].copy()))
            for name in layer.parameter_names:
                results[prefix + name + '_grad'] = snapshot(getattr(layer, name + '_grad'))
        for name in case.get('state', ()):
            results[prefix + name] = snapshot(getattr(layer, name))
    return results


def pooling_windows(images, size):
    """(n, C, H, W) -> (n, C, H // size, W // size, size * size): the windows of a
    pooling with stride = size (rows and columns left over are dropped)."""
    n, channels, height, width = images.shape
    rows, columns = height // size, width // size
    windows = images[:, :, :rows * size, :columns * size]
    windows = windows.reshape(n, channels, rows, size, columns, size)
    return windows.transpose(0, 1, 2, 4, 3, 5).reshape(n, channels, rows, columns, size * size)


def verify_max_pooling(case, results):
    """As expected, but each window's gradient may be split among its tied maxima.

    case['expected'] has no grad_inputs: where a window with gradient g has
    tied maxima, each of them may take w * g for any weights w >= 0 that sum
    to 1 (a subgradient: all to one of them, or split evenly); its other
    inputs, and inputs no window covers, get 0.
    """
    verify_expected(case, results)
    call, size = case['calls'][0], case['args']['pool_size']
    inputs, grad_outputs = call['inputs'], call['grad_outputs'][..., None]
    grad_inputs = as_array(results['grad_inputs'], 'grad_inputs').astype(np.float64)
    if grad_inputs.shape != inputs.shape:
        raise CheckFailed(f"grad_inputs: shape {grad_inputs.shape}, expected {inputs.shape}")
    windows, grad_windows = pooling_windows(inputs, size), pooling_windows(grad_inputs, size)
    tolerance = ATOL * max(1.0, np.max(np.abs(grad_outputs))) + RTOL * np.abs(grad_outputs)
    maximal = windows == np.max(windows, axis=-1, keepdims=True)
    at_maxima = np.where(maximal, grad_windows, 0)
    same_sign = np.all(at_maxima * np.sign(grad_outputs) >= -tolerance, axis=-1)  # w >= 0
    zero_elsewhere = np.all(maximal | (np.abs(grad_windows) <= tolerance), axis=-1)
    adds_up = np.abs(np.sum(at_maxima, axis=-1) - grad_outputs[..., 0]) <= tolerance[..., 0]
    routed = same_sign & zero_elsewhere & adds_up
    if not np.all(routed):
        index = tuple(int(i) for i in np.argwhere(~routed)[0])
        raise CheckFailed(
            f"grad_inputs: in {np.count_nonzero(~routed)} of {routed.size} windows the gradient "
            f"does not go to the maximal inputs alone, in shares that add up to it; window {index} "
            f"has inputs {np.round(windows[index], 6).tolist()}, grad_outputs "
            f"{grad_outputs[index][0]:.6g}, got gradient "
            f"{np.round(grad_windows[index], 6).tolist()}")
    uncovered = grad_inputs.copy()
    uncovered[:, :, :windows.shape[2] * size, :windows.shape[3] * size] = 0
    if np.any(np.abs(uncovered) > ATOL):
        raise CheckFailed("grad_inputs: the last rows/columns, which no window covers, must "
                          "get 0")


def verify_dropout(case, results):
    """Properties of dropout with probability p: a training call, then a test call.

    Training keeps each input as is or zeroes it, zeroes a fraction within
    5 binomial sigma of p, and backward zeroes the same elements; test mode
    multiplies by 1 - p.
    """
    p = case['args']['p']
    training, test = case['calls']
    inputs = training['inputs']
    outputs = as_array(results['call 1: outputs'], 'call 1: outputs')
    if outputs.shape != inputs.shape:
        raise CheckFailed(f"call 1: outputs: shape {outputs.shape}, expected {inputs.shape}")
    zeroed = outputs == 0
    compare("call 1 (training): outputs that are not zeroed", outputs, np.where(zeroed, 0, inputs))
    fraction, bound = np.mean(zeroed), 5 * np.sqrt(p * (1 - p) / zeroed.size)
    if abs(fraction - p) > bound:
        raise CheckFailed(f"call 1 (training) zeroed a fraction {fraction:.4f} of {zeroed.size} "
                          f"inputs, expected p = {p} ± {bound:.4f}")
    compare("call 1: grad_inputs (zero where the outputs are zeroed, grad_outputs elsewhere)",
            results['call 1: grad_inputs'], np.where(zeroed, 0, training['grad_outputs']))
    compare("call 2 (test mode): outputs", results['call 2: outputs'], test['inputs'] * (1 - p))


def run_function(solution, case):
    """Calls case['function'] on the positional case['args'].

    With case['index_into'] the result (k, i, j) indexes that array as
    x_padded[:, k, i, j]. With case['must_raise'] the call must raise
    ValueError: the results are empty when it did.
    """
    function = solution_attribute(solution, case['function'])
    args = [arg.copy() if isinstance(arg, np.ndarray) else arg for arg in case['args']]
    if case['must_raise']:
        try:
            return {'returned': function(*args)}
        except ValueError:
            return {}
    result = function(*args)
    if 'index_into' not in case:
        return {case['function']: result}
    try:
        k, i, j = result
        return {'x_padded[:, k, i, j]': case['index_into'][:, k, i, j]}
    except (TypeError, ValueError, IndexError) as error:
        raise CheckFailed(f"x_padded[:, k, i, j] with the (k, i, j) that {case['function']} "
                          f"returned fails: {error}") from None


def verify_function(case, results):
    """The call raised ValueError when it must; otherwise its result is as expected."""
    if 'returned' in results:
        arguments = ', '.join(map(repr, case['args']))
        returned = results['returned']  # an array when it came back from the grader's sandbox
        shown = returned.tolist() if isinstance(returned, np.ndarray) else returned
        raise CheckFailed(f"{case['function']}({arguments}) returned {shown!r}, "
                          f"expected it to raise ValueError")
    verify_expected(case, results)


def run_initialization(solution, case):
    """The freshly built layer's parameters."""
    layer = build_for_check(solution_attribute(solution, case['layer'])(**case['args']),
                            case['input_shape'])
    return {name: getattr(layer, name) for name in case['statistics']}


def verify_initialization(case, results):
    """Each parameter has the expected zeros, or normal mean and std within 5 sigma."""
    for name, (distribution, std) in case['statistics'].items():
        values = as_array(results[name], name).astype(np.float64)
        if values.shape != tuple(case['shapes'][name]):
            raise CheckFailed(f"{name}: shape {values.shape}, "
                              f"expected {tuple(case['shapes'][name])}")
        if distribution == 'zeros' and np.any(values != 0):
            raise CheckFailed(f"{name}: expected all zeros, "
                              f"got max |value| {np.max(np.abs(values)):.3g}")
        if distribution == 'normal':
            size = values.size
            if abs(values.mean()) > 5 * std / np.sqrt(size):
                raise CheckFailed(f"{name}: mean {values.mean():.4g}, "
                                  f"expected 0 ± {5 * std / np.sqrt(size):.2g}")
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


def train_model(solution, case, x_train, y_train):
    """Calls the case's training function with the last valid_size samples for validation.

    Returns (the trained model, seconds).
    """
    split = len(x_train) - case['valid_size']
    start = time.perf_counter()
    model = solution_attribute(solution, case['function'])(
        x_train[:split], y_train[:split], x_train[split:], y_train[split:])
    return model, time.perf_counter() - start


def run_training(solution, case):
    """Trains the student's model; returns its predicted test labels and the time.

    The data come from the case's dataset, or from case['data'] (x_train,
    y_train, x_test): the grader sends them, and measures the time itself.
    """
    x_train, y_train, x_test = case.get('data') or DATASETS[case['dataset']]()[:3]
    model, seconds = train_model(solution, case, x_train, y_train)
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
    over = seconds > case['time_limit']
    note = f"test accuracy {accuracy:.4f}, trained in {seconds:.{1 if over else 0}f} s"
    if accuracy <= case['min_accuracy']:
        raise CheckFailed(f"{note}: needs more than {case['min_accuracy']:.2f}")
    if over:
        raise CheckFailed(f"{note}: over the limit of {case['time_limit']} s")
    return note


def batch_size(case):
    """n of a layer case (its calls' inputs) or a loss case (y_gt); None for other kinds."""
    if 'calls' in case:
        return len(case['calls'][0]['inputs'])
    return len(case['y_gt']) if 'y_gt' in case else None


def verify_expected(case, results):
    """Every quantity in case['expected'] matches the computed one.

    A wrong gradient that is a simple multiple of the right one says so
    (n times too large: summed over the batch where the mean belongs).
    """
    n = batch_size(case)
    for what, expected in case['expected'].items():
        if what not in results:
            raise CheckFailed(f"{what}: not computed")
        actual = as_array(results[what], what)
        try:
            compare(what, actual, expected, case.get('rtol', RTOL), case.get('atol', ATOL))
        except CheckFailed as error:
            right = expected[0] if isinstance(expected, list) else expected
            hint = gradient_hint(actual, right, n) if 'grad' in what and n else ''
            raise CheckFailed(f"{error}; {hint}" if hint else str(error)) from None


@dataclass(frozen=True)
class CheckKind:
    """A kind of check: run(solution, case) -> {quantity: value} calls the student's code
    (in the grader: in a sandboxed child); verify(case, results) -> note raises CheckFailed
    unless the results are right. A training kind trains a model: minutes, not seconds.

    The course staff's tools add their own step for every kind: the reference's expected
    values (staff/fixtures.py EXPECTED_VALUES), the shape checks (staff/validate.py
    SHAPE_CHECKS).
    """
    name: str
    run: Callable
    verify: Callable
    is_training: bool = False


CHECKS = {kind.name: kind for kind in (
    CheckKind('layer', run_layer, verify_expected),
    CheckKind('max_pooling', run_layer, verify_max_pooling),
    CheckKind('dropout', run_layer, verify_dropout),
    CheckKind('function', run_function, verify_function),
    CheckKind('initialization', run_initialization, verify_initialization),
    CheckKind('loss', run_loss, verify_expected),
    CheckKind('optimizer', run_optimizer, verify_expected),
    CheckKind('training', run_training, verify_training, is_training=True),
)}


def is_training(case):
    """Whether a case (or a fixture's entry of it) trains a model."""
    return case['kind'] in CHECKS and CHECKS[case['kind']].is_training


# ================================ Fixtures ==================================

@dataclass
class Fixture:
    """One fixture directory tests/NN_unittest_<test>_input/.

    A directory whose description.json cannot be read is a Fixture too, with
    the test name of its directory, no cases and `damage` saying what is wrong.
    """
    directory: Path
    section: str
    title: str
    points: float
    test: str
    cases: list
    damage: str = ''

    @classmethod
    def load(cls, directory):
        directory = Path(directory)
        try:
            description = json.loads((directory / 'description.json').read_text())
            fixture = cls(directory, str(description['section']), str(description['title']),
                          float(description['points']), str(description['test']),
                          list(description['cases']))
            if not all(isinstance(entry, dict) and {'file', 'kind', 'name'} <= entry.keys()
                       for entry in fixture.cases):
                raise ValueError("a case without 'file', 'kind' and 'name'")
            return fixture
        except FileNotFoundError:
            raise FixtureError(f"{directory / 'description.json'} is missing: "
                               f"{REEXTRACT}") from None
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise FixtureError(f"{directory / 'description.json'} is damaged (bad "
                               f"description.json: {error!r}): {REEXTRACT}") from None

    @classmethod
    def damaged(cls, directory, error):
        """The stand-in for a directory that Fixture.load refused."""
        test = Path(directory).name.split('_unittest_', 1)[-1].removesuffix('_input')
        return cls(Path(directory), '?', test, 0.0, test, [], str(error))

    @property
    def is_training(self):
        """Whether the test trains a model (mnist, cifar): minutes, not seconds."""
        return any(is_training(entry) for entry in self.cases)

    def load_case(self, entry):
        """The case's data: a dict with 'kind', 'name', inputs and 'expected'."""
        path = self.directory / entry['file']
        if not path.is_file():
            raise FixtureError(f"{path} is missing: {REEXTRACT}")
        try:
            case = load_pickle(path)
        except FixtureError:
            raise
        except Exception as error:  # a damaged pickle fails in many ways
            raise FixtureError(f"{path} is damaged ({type(error).__name__}: {error}): "
                               f"{REEXTRACT}") from None
        if not isinstance(case, dict):
            raise FixtureError(f"{path} is damaged (it holds {type(case).__name__}, not a "
                               f"case): {REEXTRACT}")
        return {'kind': entry['kind'], 'name': entry['name'], **case}


def find_fixtures(tests_dir=TESTS_DIR, keep_damaged=False):
    """{test name: Fixture} for every NN_unittest_<test>_input directory, in order.

    A directory with a bad description.json raises FixtureError, or with
    keep_damaged is kept as Fixture.damaged, so that the others still run.
    """
    fixtures = []
    for path in sorted(Path(tests_dir).glob('*_unittest_*_input')):
        try:
            fixtures.append(Fixture.load(path))
        except FixtureError as error:
            if not keep_damaged:
                raise
            fixtures.append(Fixture.damaged(path, error))
    return {fixture.test: fixture for fixture in fixtures}


# ================================ Running ===================================

@dataclass
class Result:
    """The Verdict of one test, with its message."""
    test: str
    verdict: Verdict
    message: str = ''
    seconds: float = 0.0
    details: list = field(default_factory=list)

    @property
    def passed(self):
        return self.verdict == Verdict.PASSED


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
    """Runs one case's student side; returns (RAN, results) or (Verdict, message)."""
    np.random.seed(0)
    try:
        return RAN, CHECKS[case['kind']].run(solution, case_inputs(case))
    except NotImplementedError as error:
        return Verdict.NOT_IMPLEMENTED, str(error) or 'NotImplementedError'
    except DataUnavailable as error:
        return Verdict.NOT_AVAILABLE, str(error)
    except MemoryError:
        limit = TRAINING_MEMORY_LIMIT if is_training(case) else MEMORY_LIMIT
        return Verdict.MEMORY_LIMIT, (f"ran out of memory (MemoryError); the checking system "
                                      f"allows {limit / GIB:g} GiB for this section")
    except CheckFailed as error:
        return Verdict.FAILED, str(error)
    except SystemExit as error:  # sys.exit(), exit() or, see os_exit_forbidden, os._exit()
        return Verdict.ERROR, exit_message(error, solution.__file__)
    except Exception as error:  # the student's code raised: report it, go on
        return Verdict.ERROR, student_traceback(error, solution.__file__).rstrip()


class ExitCalled(SystemExit):
    """Raised by os._exit while it is forbidden (os_exit_forbidden), so that it can be reported."""

    def __init__(self, status):
        super().__init__(status)
        self.call = f"os._exit({status!r})"


@contextmanager
def os_exit_forbidden():
    """Within it, os._exit raises ExitCalled: solution.py's call is reported, not obeyed."""
    def refuse(status):
        raise ExitCalled(status)
    original, os._exit = os._exit, refuse
    try:
        yield
    finally:
        os._exit = original


def exit_message(error, solution_file):
    """What a SystemExit of the student's code (sys.exit, exit, os._exit) says, with their lines."""
    call = getattr(error, 'call', f"sys.exit({'' if error.code is None else repr(error.code)})")
    return (f"solution.py must not exit, but it called {call}:\n"
            f"{student_traceback(error, solution_file).rstrip()}")


def verify_case(case, results):
    """(Verdict.PASSED, note) or (Verdict.FAILED, message) for the results of one case."""
    try:
        with np.errstate(all='ignore'):  # NaN and inf results are reported, not warned about
            return Verdict.PASSED, CHECKS[case['kind']].verify(case, results) or ''
    except CheckFailed as error:
        hint = f"\n  hint: {case['hint']}" if case.get('hint') else ''
        return Verdict.FAILED, f"{error}{hint}"


def run_test(fixture, solution):
    """Runs every case of a fixture against the solution module."""
    start = time.perf_counter()
    if fixture.damage:
        return Result(fixture.test, Verdict.ERROR, fixture.damage)
    outcomes = []
    for entry in fixture.cases:
        try:
            case = fixture.load_case(entry)
        except FixtureError as error:  # one damaged file fails its own case only
            outcomes.append((entry['name'], Verdict.ERROR, str(error)))
            continue
        verdict, results = run_case(solution, case)
        if verdict == RAN:
            verdict, message = verify_case(case, results)
        else:
            message = results
        outcomes.append((case['name'], verdict, message))
    return summarize(fixture.test, outcomes, time.perf_counter() - start)


def summarize(test, outcomes, seconds):
    """One Result from (case name, verdict, message) per case: the first bad one decides."""
    bad = [outcome for outcome in outcomes if outcome[1] != Verdict.PASSED]
    if not bad:
        notes = '; '.join(message for _, _, message in outcomes if message)
        return Result(test, Verdict.PASSED, notes, seconds)
    name, verdict, message = bad[0]
    more = f" (and {len(bad) - 1} more of {len(outcomes)} cases)" if len(bad) > 1 else ''
    return Result(test, verdict, f"case '{name}'{more}: {message}", seconds,
                  [f"case '{n}': {v}: {m}" for n, v, m in bad])


def section_passes(results):
    """A section counts when all its tests pass: the rule of ./run.py unittest's score
    and of the grader's points. results: the Result of each of the section's tests."""
    return all(result.passed for result in results)
