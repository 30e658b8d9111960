"""The datasets: MNIST and CIFAR-10, downloaded, checked and normalized.

You do not need to read this file to pass the tests. load_mnist() and
load_cifar10() give the data as the assignment describes it (both are also
importable from common, as before); the rest downloads, checks and parses
the files in data/.
"""
import gzip
import hashlib
import os
import pickle
import shutil
import sys
import tarfile
import tempfile
from functools import lru_cache
from pathlib import Path

import numpy as np

from pickles import FixtureError, load_pickle

DEFAULT_DATA_DIR = Path(__file__).resolve().parent / 'data'


def data_dir():
    """Where datasets live: $NN_DATA_DIR, or data/ beside this file."""
    return Path(os.environ.get('NN_DATA_DIR', DEFAULT_DATA_DIR))


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
TRAINING_SHAPES = {'mnist': (60000, 784), 'cifar10': (50000, 3, 32, 32)}  # x_train as loaded
CLASSES = 10  # of both datasets
RAW_DATASETS = {'mnist': load_mnist_raw, 'cifar10': load_cifar10_raw}  # cached; loading checks
