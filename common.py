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
import shutil
import sys
import tarfile
import tempfile
import time
import traceback
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

KIT_DIR = Path(__file__).resolve().parent
TESTS_DIR = KIT_DIR / 'tests'
RTOL = 1e-4
ATOL = 1e-5
GIB = 1 << 30
TIME_LIMIT = 60  # seconds of wall and CPU time per section in the checking system
MEMORY_LIMIT = 2 * GIB  # bytes of address space per section in the checking system
TRAINING_MEMORY_LIMIT = 6 * GIB  # the same for the training sections (mnist, cifar)
REEXTRACT = "re-extract the kit's tests/ folder from its zip"


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
CIFAR10_ARCHIVE = 'cifar-10-python.tar.gz'
CIFAR10_FILES = {CIFAR10_ARCHIVE: 'c58f30108f718f92721af3b95e74349a'}
CIFAR10_MIRRORS = ['https://www.cs.toronto.edu/~kriz/']
CIFAR10_FOLDER = 'cifar-10-batches-py'
CIFAR10_BATCHES = [f'data_batch_{number}' for number in range(1, 6)] + ['test_batch']
CIFAR10_BINARY_FOLDER = 'cifar-10-batches-bin'  # the binary version: read if there is no python one
CIFAR10_BINARY_FILES = {
    'data_batch_1.bin': '5dd7e06a14cb22eb9f671a540d1b7c25',
    'data_batch_2.bin': '5ea93a67294ea407fff1d09f752e9692',
    'data_batch_3.bin': '942cd6a4bcdd0dd3c604fbe906cb4421',
    'data_batch_4.bin': 'ae636b3ba5c66a11e91e8cb52e771fcb',
    'data_batch_5.bin': '53f37980c15c3d472c316c40844f3f0d',
    'test_batch.bin': '803d5f7f4d78ea53de84dbe85f74fb6d',
}


class DataUnavailable(Exception):
    """A dataset is missing, corrupted, or could not be downloaded."""


def md5sum(path):
    digest = hashlib.md5()
    with open(path, 'rb') as file:
        for block in iter(lambda: file.read(1 << 20), b''):
            digest.update(block)
    return digest.hexdigest()


def show_progress(name, done, total):
    """Rewrites one progress line on a terminal; silent otherwise."""
    if sys.stderr.isatty():
        amount = f"{100 * done // total}%" if total else f"{done >> 20} MiB"
        print(f"\r  {name}: {amount}", end='', file=sys.stderr, flush=True)


def download(url, path, md5):
    """Downloads url to path atomically, with progress; checks the md5.

    The file appears at `path` only when complete and correct: a failed,
    corrupted or interrupted (even by Ctrl-C) download leaves nothing behind.
    """
    import http.client  # imported here: they are slow to import and rarely needed
    import urllib.request
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    print(f"downloading {url}", file=sys.stderr, flush=True)
    with tempfile.NamedTemporaryFile(dir=path.parent, prefix=f'.{path.name}.',
                                     suffix='.part', delete=False) as file:
        partial = Path(file.name)
    try:
        digest, done = hashlib.md5(), 0
        with urllib.request.urlopen(url, timeout=30) as response, open(partial, 'wb') as file:
            total = int(response.headers.get('Content-Length') or 0)
            for block in iter(lambda: response.read(1 << 20), b''):
                file.write(block)
                digest.update(block)
                done += len(block)
                show_progress(path.name, done, total)
        if sys.stderr.isatty():
            print(file=sys.stderr)
        if total and done != total:
            raise DataUnavailable(f"{url}: connection closed after {done} of {total} bytes")
        if digest.hexdigest() != md5:
            raise DataUnavailable(f"{url}: checksum mismatch (md5 {digest.hexdigest()}, "
                                  f"expected {md5}), the download is corrupted")
        os.replace(partial, path)
    except http.client.HTTPException as error:
        raise DataUnavailable(f"{url}: {error!r}") from None
    finally:
        partial.unlink(missing_ok=True)


def fetch(name, directory, md5, mirrors):
    """Path of a checked copy of file `name` in `directory`, downloading it if missing."""
    path = Path(directory) / name
    if path.exists():
        if md5sum(path) != md5:
            raise DataUnavailable(f"{path} is corrupted (its md5 is not {md5}): delete it "
                                  f"to download it again")
        return path
    errors = []
    for mirror in mirrors:
        try:
            download(mirror + name, path, md5)
            return path
        except (OSError, ValueError, DataUnavailable) as error:
            errors.append(f"{mirror + name}: {error}")
    sources = f" ({'; '.join(errors)})" if errors else ''
    raise DataUnavailable(f"{path} is missing and could not be downloaded{sources}: "
                          f"download {name} by hand and put it into {path.parent}/")


def read_idx(path):
    """Parses a gzipped IDX file (the MNIST format) into a uint8 array."""
    try:
        with gzip.open(path, 'rb') as file:
            data = file.read()
    except (OSError, EOFError) as error:
        raise DataUnavailable(f"{path} is not a gzipped IDX file ({error}): delete it to "
                              f"download it again") from None
    ndim = data[3] if len(data) > 3 else 0
    shape = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], 'big') for i in range(ndim))
    if data[:3] != b'\0\0\x08' or len(data) != 4 + 4 * ndim + int(np.prod(shape)):
        raise DataUnavailable(f"{path} is not a uint8 IDX file of shape {shape}: delete it "
                              f"to download it again")
    return np.frombuffer(data, np.uint8, offset=4 + 4 * ndim).reshape(shape)


def one_hot(labels, classes):
    """labels (n,) ints -> (n, classes) float32 one-hot rows."""
    return np.eye(classes, dtype=np.float32)[labels]


def channel_statistics(images):
    """Mean and std (C,) of each channel of images (n, C, ...), accumulated in float64."""
    pixels = images.reshape(len(images), images.shape[1], -1)
    count = pixels.shape[0] * pixels.shape[2]
    mean = pixels.sum(axis=(0, 2), dtype=np.float64) / count
    mean_square = np.einsum('ncp,ncp->c', pixels, pixels, dtype=np.float64) / count
    return mean, np.sqrt(mean_square - mean ** 2)


def standardize(x_train, x_test):
    """uint8 images (n, C, ...) -> float32, mean 0 and std 1 per channel.

    Both sets use the training set's statistics.
    """
    mean, std = channel_statistics(x_train)
    shape = (1, -1) + (1,) * (x_train.ndim - 2)
    mean, std = mean.astype(np.float32).reshape(shape), std.astype(np.float32).reshape(shape)
    x_train, x_test = (np.subtract(x, mean, dtype=np.float32) for x in (x_train, x_test))
    x_train /= std  # in place: CIFAR-10's training set takes 600 MB as float32
    x_test /= std
    return x_train, x_test


def load_mnist_raw():
    """(train images (60000, 28, 28), train labels, test images, test labels), uint8."""
    return read_mnist(data_dir() / 'mnist')


@lru_cache(maxsize=1)
def read_mnist(directory):
    """The four MNIST arrays from `directory`, downloaded if missing; cached per directory."""
    return tuple(read_idx(fetch(name, directory, md5, MNIST_MIRRORS))
                 for name, md5 in MNIST_FILES.items())


def load_mnist():
    """MNIST as the assignment gives it: (x_train, y_train, x_test, y_test).

    x is float32 (n, 784) normalized to mean 0, std 1 with the training
    set's statistics; y is one-hot float32 (n, 10).
    """
    train_images, train_labels, test_images, test_labels = load_mnist_raw()
    x_train, x_test = standardize(train_images[:, None], test_images[:, None])
    return (x_train.reshape(len(x_train), -1), one_hot(train_labels, 10),
            x_test.reshape(len(x_test), -1), one_hot(test_labels, 10))


def unsafe_member(member, target):
    """Why a tar member may not be extracted into the folder target, or ''."""
    if not (member.isfile() or member.isdir()):
        return "it is a link or a device"
    if os.path.isabs(member.name) or not (target / member.name).resolve().is_relative_to(target):
        return "its path leads out of the folder"
    return ''


def extract_folder(archive, directory, folder):
    """Extracts directory/folder from a .tar.gz, all or nothing.

    Refuses the whole archive if any member is a link, a device or a path
    leading out of the directory.
    """
    staging = Path(tempfile.mkdtemp(prefix=f'.{folder}.', dir=directory)).resolve()
    try:
        with tarfile.open(archive, 'r:gz') as tar:
            members = tar.getmembers()
            for member in members:
                if reason := unsafe_member(member, staging):
                    raise DataUnavailable(f"{archive}: refusing to extract {member.name!r}: "
                                          f"{reason}; delete the archive and download it again")
            tar.extraction_filter = getattr(tarfile, 'data_filter', None)  # a second check
            tar.extractall(staging, members)
        if not (staging / folder).is_dir():
            raise DataUnavailable(f"{archive} has no folder {folder}/: delete the archive "
                                  f"and download it again")
        os.rename(staging / folder, Path(directory) / folder)
    except (OSError, EOFError, tarfile.TarError) as error:
        raise DataUnavailable(f"{archive} cannot be extracted ({error}): delete it and "
                              f"download it again") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def read_cifar10_batch(path):
    """One CIFAR-10 batch pickle -> (images (n, 3, 32, 32) uint8, labels (n,) int64)."""
    if not path.is_file():
        raise DataUnavailable(f"{path.parent} has no file {path.name}: delete the folder "
                              f"to extract it again from {CIFAR10_ARCHIVE}")
    try:
        batch = load_pickle(path, encoding='bytes')
        data, labels = batch[b'data'], np.asarray(batch[b'labels'])
    except (OSError, EOFError, pickle.UnpicklingError, FixtureError, KeyError, TypeError,
            ValueError) as error:
        raise DataUnavailable(f"{path} is not a CIFAR-10 batch ({error!r}): delete the "
                              f"folder to extract it again") from None
    if not (isinstance(data, np.ndarray) and data.dtype == np.uint8 and data.ndim == 2
            and data.shape[1] == 3072 and labels.shape == (len(data),)
            and np.isin(labels, np.arange(10)).all()):
        raise DataUnavailable(f"{path} is not a CIFAR-10 batch (expected uint8 data (n, 3072) "
                              f"and n labels in 0..9): delete the folder to extract it again")
    return data.reshape(-1, 3, 32, 32), labels.astype(np.int64)


def read_cifar10_binary_batch(path, md5):
    """One batch of CIFAR-10's binary version -> (images (n, 3, 32, 32) uint8, labels (n,) int64).

    Each record is a label byte followed by the 3072 bytes of the image's planes.
    """
    if not path.is_file():
        raise DataUnavailable(f"{path.parent} has no file {path.name}: put all six batches "
                              f"of CIFAR-10's binary version there")
    if md5sum(path) != md5:
        raise DataUnavailable(f"{path} is corrupted (its md5 is not {md5}): replace it with "
                              f"the file of CIFAR-10's binary version")
    records = np.fromfile(path, dtype=np.uint8).reshape(-1, 1 + 3072)
    return records[:, 1:].reshape(-1, 3, 32, 32), records[:, 0].astype(np.int64)


def load_cifar10_raw():
    """(train images (50000, 3, 32, 32), train labels, test images, test labels)."""
    return read_cifar10(data_dir())


@lru_cache(maxsize=1)
def read_cifar10(directory):
    """The CIFAR-10 arrays from directory/cifar-10-batches-py/; cached per directory.

    Without that folder, reads directory/cifar-10-batches-bin/ if it is there,
    or else extracts the python folder from the archive, downloaded if missing.
    """
    folder, binary_folder = directory / CIFAR10_FOLDER, directory / CIFAR10_BINARY_FOLDER
    if not folder.exists() and binary_folder.is_dir():
        batches = [read_cifar10_binary_batch(binary_folder / name, md5)
                   for name, md5 in CIFAR10_BINARY_FILES.items()]
    else:
        if not folder.exists():
            try:
                archive = fetch(CIFAR10_ARCHIVE, directory, CIFAR10_FILES[CIFAR10_ARCHIVE],
                                CIFAR10_MIRRORS)
            except DataUnavailable as error:
                raise DataUnavailable(f"{error}, or put the folder {CIFAR10_FOLDER}/ extracted "
                                      f"from it (or {CIFAR10_BINARY_FOLDER}/ of the binary "
                                      f"version) into {directory}/") from None
            extract_folder(archive, directory, CIFAR10_FOLDER)
        batches = [read_cifar10_batch(folder / name) for name in CIFAR10_BATCHES]
    images, labels = zip(*batches)
    return np.concatenate(images[:-1]), np.concatenate(labels[:-1]), images[-1], labels[-1]


def load_cifar10():
    """CIFAR-10 as the assignment gives it: (x_train, y_train, x_test, y_test).

    x is float32 (n, 3, 32, 32) normalized to mean 0, std 1 per channel with
    the training set's statistics; y is one-hot float32 (n, 10).
    """
    train_images, train_labels, test_images, test_labels = load_cifar10_raw()
    x_train, x_test = standardize(train_images, test_images)
    return x_train, one_hot(train_labels, 10), x_test, one_hot(test_labels, 10)


DATASETS = {'mnist': load_mnist, 'cifar10': load_cifar10}
RAW_DATASETS = {'mnist': load_mnist_raw, 'cifar10': load_cifar10_raw}  # cached: a check that loads


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


def load_pickle(path, encoding='ASCII'):
    with open(path, 'rb') as file:
        return FixtureUnpickler(file, encoding=encoding).load()


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
            raise FixtureError(f"{directory / 'description.json'} is missing: {REEXTRACT}") from None
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise FixtureError(f"{directory / 'description.json'} is damaged (bad description.json: "
                               f"{error!r}): {REEXTRACT}") from None

    @classmethod
    def damaged(cls, directory, error):
        """The stand-in for a directory that Fixture.load refused."""
        test = Path(directory).name.split('_unittest_', 1)[-1].removesuffix('_input')
        return cls(Path(directory), '?', test, 0.0, test, [], str(error))

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


# =============================== Comparison =================================

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
        nans, infs = np.count_nonzero(np.isnan(actual)), np.count_nonzero(np.isinf(actual))
        first = tuple(map(int, np.argwhere(~np.isfinite(actual))[0]))
        raise CheckFailed(
            f"{what}: {nans} NaN and {infs} inf of {actual.size} elements (shape {actual.shape}); "
            f"the first at index {first}: expected {options[0][first]:.6g}, got {actual[first]} "
            f"(an overflow, e.g. exp of a large number, or a division by zero?)")
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
    """As expected, but each window's gradient may go to any one of its maximal inputs.

    case['expected'] has no grad_inputs: where a window has tied maxima any
    one of them may take the whole gradient; inputs no window covers get 0.
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
    taken = (np.abs(grad_windows - grad_outputs) <= tolerance) & maximal
    zero = np.abs(grad_windows) <= ATOL
    routed = (np.sum(taken, axis=-1) == 1) & np.all(taken | zero, axis=-1)
    if not np.all(routed):
        index = tuple(int(i) for i in np.argwhere(~routed)[0])
        raise CheckFailed(
            f"grad_inputs: in {np.count_nonzero(~routed)} of {routed.size} windows the gradient "
            f"does not go whole to one maximal input; window {index} has inputs "
            f"{np.round(windows[index], 6).tolist()}, grad_outputs {grad_outputs[index][0]:.6g}, "
            f"got gradient {np.round(grad_windows[index], 6).tolist()}")
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
    """Trains the student's model; returns its predicted test labels and the time."""
    x_train, y_train, x_test, _ = DATASETS[case['dataset']]()
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
    'max_pooling': (run_layer, verify_max_pooling),
    'dropout': (run_layer, verify_dropout),
    'function': (run_function, verify_function),
    'initialization': (run_initialization, verify_initialization),
    'loss': (run_loss, verify_expected),
    'optimizer': (run_optimizer, verify_expected),
    'training': (run_training, verify_training),
}


# ================================ Running ===================================

@dataclass
class Result:
    """The verdict of one test: passed, failed, not implemented, error, not available
    or memory limit."""
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
    except DataUnavailable as error:
        return 'not available', str(error)
    except MemoryError:
        return 'memory limit', (f"ran out of memory (MemoryError); the checking system allows "
                                f"{MEMORY_LIMIT / GIB:g} GiB per section")
    except CheckFailed as error:
        return 'failed', str(error)
    except SystemExit as error:  # sys.exit(), exit() or (patched, see forbid_exit) os._exit()
        return 'error', exit_message(error, solution.__file__)
    except Exception as error:  # the student's code raised: report it, go on
        return 'error', student_traceback(error, solution.__file__).rstrip()


class ExitCalled(SystemExit):
    """Raised by os._exit while the tests run (see os_exit_forbidden), so that it can be reported."""

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
    """What a SystemExit raised by the student's code (sys.exit, exit, os._exit) says, with their lines."""
    call = getattr(error, 'call', f"sys.exit({'' if error.code is None else repr(error.code)})")
    return (f"solution.py must not exit, but it called {call}:\n"
            f"{student_traceback(error, solution_file).rstrip()}")


def verify_case(case, results):
    """('passed', note) or ('failed', message) for the results of one case."""
    _, verify = CHECKS[case['kind']]
    try:
        with np.errstate(all='ignore'):  # NaN and inf results are reported, not warned about
            return 'passed', verify(case, results) or ''
    except CheckFailed as error:
        hint = f"\n  hint: {case['hint']}" if case.get('hint') else ''
        return 'failed', f"{error}{hint}"


def run_test(fixture, solution):
    """Runs every case of a fixture against the solution module."""
    start = time.perf_counter()
    if fixture.damage:
        return Result(fixture.test, 'error', fixture.damage)
    outcomes = []
    for entry in fixture.cases:
        try:
            case = fixture.load_case(entry)
        except FixtureError as error:  # one damaged file fails its own case only
            outcomes.append((entry['name'], 'error', str(error)))
            continue
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
    signs = np.random.default_rng((seed, 2))
    np.random.seed(seed)
    outputs = np.array(layer(inputs))
    for name in ['inputs', *layer.parameter_names]:
        array = inputs if name == 'inputs' else getattr(layer, name)
        original = array.copy()
        array += 1e-12 * (1 + np.abs(array)) * signs.choice([-1, 1], size=array.shape)
        np.random.seed(seed)
        changed = np.any(np.asarray(layer(inputs)) != outputs)
        array[...] = original
        if not changed:
            raise GradientCheckError(
                f"{layer.name}: changing {name} by 1e-12 leaves the outputs exactly the same, so "
                f"the layer computes in float32 (astype(np.float32)?) or ignores {name}: the "
                f"check needs float64 throughout")


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
        if gradient.shape != expected:
            what = 'backward() returned' if name == 'inputs' else f"{name}_grad has"
            raise GradientCheckError(f"{layer.name}.{what} shape {gradient.shape}, expected {expected}")
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

    numeric = {name: numerical_gradient(outputs, inputs if name == 'inputs' else getattr(layer, name),
                                        grad_outputs=grad_outputs) for name in analytic}
    return analytic, numeric


def gradient_check(layer, inputs, seed=0):
    """{'inputs' or parameter name: (relative error, worst index)} of layer.backward.

    See gradients() for how the layer is run.
    """
    analytic, numeric = gradients(layer, inputs, seed)
    return {name: relative_error(analytic[name], numeric[name]) for name in analytic}
