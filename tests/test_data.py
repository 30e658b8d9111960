"""Dataset loading and downloading (common.py's Datasets part).

Downloads go to a local HTTP server on 127.0.0.1 that serves small files
made here; the module's mirror lists and md5 tables are pointed at it.
"""
import gzip
import hashlib
import http.server
import io
import pickle
import struct
import tarfile
import threading

import numpy as np
import pytest

import common
import datasets

MNIST_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
MNIST_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


# ------------------------------ local server --------------------------------

class FileHandler(http.server.BaseHTTPRequestHandler):
    """Serves server.files {path: body}; server.claimed {path: length} lies about the size."""
    timeout = 5

    def do_GET(self):
        body = self.server.files.get(self.path)
        if body is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header('Content-Length', str(self.server.claimed.get(self.path, len(body))))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    """A file server on a random port of 127.0.0.1, stopped after the test."""
    httpd = http.server.ThreadingHTTPServer(('127.0.0.1', 0), FileHandler)
    httpd.daemon_threads = True
    httpd.files, httpd.claimed = {}, {}
    httpd.url = f"http://127.0.0.1:{httpd.server_port}/"
    thread = threading.Thread(target=httpd.serve_forever, kwargs={'poll_interval': 0.05})
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()
    thread.join(timeout=5)


@pytest.fixture(autouse=True)
def data(tmp_path, monkeypatch):
    """An empty data directory as NN_DATA_DIR; no real mirror is ever contacted."""
    monkeypatch.setenv('NN_DATA_DIR', str(tmp_path / 'data'))
    monkeypatch.setattr(datasets, 'MNIST_MIRRORS', [])
    monkeypatch.setattr(datasets, 'CIFAR10_MIRRORS', [])
    return tmp_path / 'data'


def md5(body):
    return hashlib.md5(body).hexdigest()


def files_in(directory):
    return sorted(str(path.relative_to(directory)) for path in directory.rglob('*')
                  if not path.is_dir())


# ---------------------------------- MNIST -----------------------------------

def idx_gz(array):
    """A gzipped IDX file: 0, 0, type 0x08 (uint8), ndim, big-endian sizes, data."""
    header = bytes([0, 0, 8, array.ndim]) + b''.join(struct.pack('>I', d) for d in array.shape)
    return gzip.compress(header + array.astype(np.uint8).tobytes())


def small_mnist(seed):
    """{file name: (array, IDX .gz body)} for a 6-image training and 3-image test set."""
    rng = np.random.default_rng(seed)
    arrays = [rng.integers(0, 256, (6, 28, 28)), rng.integers(0, 10, 6),
              rng.integers(0, 256, (3, 28, 28)), rng.integers(0, 10, 3)]
    return {name: (array, idx_gz(array)) for name, array in zip(datasets.MNIST_FILES, arrays)}


def use_mnist(monkeypatch, mnist):
    """Makes the md5 table that of these files."""
    monkeypatch.setattr(datasets, 'MNIST_FILES',
                        {name: md5(body) for name, (_, body) in mnist.items()})


def write_mnist(directory, mnist):
    (directory / 'mnist').mkdir(parents=True)
    for name, (_, body) in mnist.items():
        (directory / 'mnist' / name).write_bytes(body)


def serve_mnist(server, monkeypatch, mnist):
    for name, (_, body) in mnist.items():
        server.files['/mnist/' + name] = body
    use_mnist(monkeypatch, mnist)


def test_mnist_downloads_from_the_first_mirror_that_has_it(server, monkeypatch, data, capsys):
    mnist = small_mnist(0)
    serve_mnist(server, monkeypatch, mnist)
    monkeypatch.setattr(datasets, 'MNIST_MIRRORS', ['http://127.0.0.1:1/', server.url + 'gone/',
                                                  server.url + 'mnist/'])
    x_train, y_train, x_test, y_test = datasets.load_mnist()

    (train, labels, test, test_labels) = [array for array, _ in mnist.values()]
    mean, std = train.mean(), train.std()
    assert x_train.dtype == x_test.dtype == y_train.dtype == np.float32
    np.testing.assert_allclose(x_train, ((train - mean) / std).reshape(6, 784), rtol=1e-5,
                               atol=1e-6)
    np.testing.assert_allclose(x_test, ((test - mean) / std).reshape(3, 784), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(y_train, np.eye(10)[labels])
    np.testing.assert_array_equal(y_test, np.eye(10)[test_labels])
    assert files_in(data / 'mnist') == sorted(mnist)
    assert 'downloading' in capsys.readouterr().err


def test_mnist_uses_files_already_there_without_network(monkeypatch, data):
    mnist = small_mnist(1)
    write_mnist(data, mnist)
    use_mnist(monkeypatch, mnist)
    raw = datasets.load_mnist_raw()
    for loaded, (array, _) in zip(raw, mnist.values()):
        np.testing.assert_array_equal(loaded, array)


def test_nn_data_dir_switches_the_data_and_never_serves_a_stale_cache(monkeypatch, tmp_path):
    first, second = (tmp_path / 'a', small_mnist(2)), (tmp_path / 'b', small_mnist(3))
    for directory, mnist in (first, second):
        write_mnist(directory, mnist)
    for directory, mnist in (first, second, first):
        monkeypatch.setenv('NN_DATA_DIR', str(directory))
        use_mnist(monkeypatch, mnist)
        assert datasets.data_dir() == directory
        np.testing.assert_array_equal(datasets.load_mnist_raw()[0],
                                      mnist['train-images-idx3-ubyte.gz'][0])
    monkeypatch.delenv('NN_DATA_DIR')
    assert datasets.data_dir() == common.KIT_DIR / 'data'


def test_corrupted_download_is_an_error_and_leaves_nothing(server, monkeypatch, data):
    mnist = small_mnist(4)
    serve_mnist(server, monkeypatch, mnist)
    name = 'train-labels-idx1-ubyte.gz'
    server.files['/mnist/' + name] = mnist[name][1][:-3] + b'bad'
    monkeypatch.setattr(datasets, 'MNIST_MIRRORS', [server.url + 'mnist/'])
    with pytest.raises(datasets.DataUnavailable, match='checksum mismatch') as error:
        datasets.load_mnist()
    assert '\n' not in str(error.value) and name in str(error.value)
    assert files_in(data) == ['mnist/train-images-idx3-ubyte.gz']  # the good file before it


def test_truncated_download_is_an_error_and_leaves_nothing(server, data):
    body = idx_gz(np.arange(100))
    server.files['/x.gz'], server.claimed['/x.gz'] = body[:50], len(body)
    with pytest.raises(datasets.DataUnavailable, match='connection closed after 50 of'):
        datasets.fetch('x.gz', data, md5(body), [server.url])
    assert files_in(data) == []


def test_interrupted_download_leaves_nothing(server, monkeypatch, data):
    body = idx_gz(np.arange(100))
    server.files['/x.gz'] = body

    def interrupt(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(datasets, 'show_progress', interrupt)
    with pytest.raises(KeyboardInterrupt):
        datasets.fetch('x.gz', data, md5(body), [server.url])
    assert files_in(data) == []


def test_file_missing_on_every_mirror_says_what_to_put_where(server, monkeypatch, data):
    monkeypatch.setattr(datasets, 'MNIST_MIRRORS', [server.url + 'a/', server.url + 'b/'])
    with pytest.raises(datasets.DataUnavailable) as error:
        datasets.load_mnist()
    message = str(error.value)
    assert '\n' not in message
    assert f"{data / 'mnist' / 'train-images-idx3-ubyte.gz'} is missing" in message
    assert f"put it into {data / 'mnist'}/" in message
    assert message.count('404') == 2
    assert files_in(data) == []


def test_a_corrupted_local_file_is_reported_not_used(monkeypatch, data):
    use_mnist(monkeypatch, small_mnist(5))
    (data / 'mnist').mkdir(parents=True)
    (data / 'mnist' / 'train-images-idx3-ubyte.gz').write_bytes(b'not the file')
    with pytest.raises(datasets.DataUnavailable, match='is corrupted .*delete it'):
        datasets.load_mnist()


@pytest.mark.parametrize('body', [b'not gzip at all', gzip.compress(b'\0\0\x08\x01\0\0\0\x09abc'),
                                  gzip.compress(b'\0\0\x0d\x01\0\0\0\x01abcd')],
                         ids=['not gzip', 'too short', 'float32 type'])
def test_read_idx_rejects_malformed_files(tmp_path, body):
    path = tmp_path / 'bad.gz'
    path.write_bytes(body)
    with pytest.raises(datasets.DataUnavailable, match='bad.gz is not a'):
        datasets.read_idx(path)


def test_real_mnist_files(monkeypatch):
    monkeypatch.setenv('NN_DATA_DIR', str(common.KIT_DIR / 'data'))
    train_images, train_labels, test_images, test_labels = datasets.load_mnist_raw()
    assert train_images.shape == (60000, 28, 28) and test_images.shape == (10000, 28, 28)
    assert np.bincount(train_labels).tolist() == MNIST_TRAIN_COUNTS
    assert np.bincount(test_labels).tolist() == MNIST_TEST_COUNTS

    x_train, y_train, x_test, y_test = datasets.load_mnist()
    assert x_train.shape == (60000, 784) and x_test.shape == (10000, 784)
    assert x_train.dtype == x_test.dtype == np.float32
    assert abs(x_train.mean(dtype=np.float64)) < 1e-5
    assert abs(x_train.std(dtype=np.float64) - 1) < 1e-5
    assert abs(x_test.mean(dtype=np.float64)) < 0.05  # test set, training statistics
    np.testing.assert_array_equal(np.argmax(y_test, axis=1), test_labels)
    assert y_train.sum(axis=1).tolist() == [1.0] * 60000


# --------------------------------- CIFAR-10 ---------------------------------

class Python2Pickler(pickle._Pickler):
    """Pickles bytes and str as Python 2 str (BINSTRING), as CIFAR-10's cPickle files do."""
    dispatch = dict(pickle._Pickler.dispatch)

    def save_python2_str(self, obj):
        data = obj.encode('latin1') if isinstance(obj, str) else obj
        if len(data) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(data)]) + data)
        else:
            self.write(pickle.BINSTRING + struct.pack('<i', len(data)) + data)
        self.memoize(obj)

    dispatch[bytes] = dispatch[str] = save_python2_str


def cifar_batch_pickle(planes, labels):
    """A batch as in cifar-10-batches-py: rows are the R, G, B planes of 32x32, row-major."""
    rows = np.stack([np.concatenate([plane.ravel() for plane in image]) for image in planes])
    buffer = io.BytesIO()
    Python2Pickler(buffer, protocol=2).dump({b'batch_label': b'batch', b'labels': list(labels),
                                             b'data': rows, b'filenames': [b'x.png'] * len(rows)})
    return buffer.getvalue().replace(b'numpy._core.multiarray', b'numpy.core.multiarray')


def small_cifar(seed, per_batch=4):
    """{batch name: (planes (n, 3, 32, 32) uint8, labels)}; channels differ in range."""
    rng = np.random.default_rng(seed)
    low, high = np.array([0, 100, 150])[:, None, None], np.array([100, 200, 256])[:, None, None]
    return {name: (rng.integers(low, high, (per_batch, 3, 32, 32)).astype(np.uint8),
                   rng.integers(0, 10, per_batch).tolist())
            for name in datasets.CIFAR10_BATCHES}


def tar_gz(members):
    """A .tar.gz of (TarInfo, body or None)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode='w:gz') as tar:
        for info, body in members:
            info.size = len(body) if body is not None else 0
            tar.addfile(info, io.BytesIO(body) if body is not None else None)
    return buffer.getvalue()


def member(name, body=None, kind=tarfile.REGTYPE, target=''):
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    if kind == tarfile.DIRTYPE:
        info.mode = 0o755
    return info, body


def cifar_members(cifar):
    return [member('cifar-10-batches-py', kind=tarfile.DIRTYPE)] + [
        member(f'cifar-10-batches-py/{name}', cifar_batch_pickle(*batch))
        for name, batch in cifar.items()] + [member('cifar-10-batches-py/readme.html', b'<html>')]


def serve_cifar(server, monkeypatch, archive):
    server.files['/kriz/cifar-10-python.tar.gz'] = archive
    monkeypatch.setitem(datasets.CIFAR10_FILES, datasets.CIFAR10_ARCHIVE, md5(archive))
    monkeypatch.setattr(datasets, 'CIFAR10_MIRRORS', [server.url + 'gone/', server.url + 'kriz/'])


def cifar_sets(cifar):
    """(train planes, train labels, test planes, test labels) of small_cifar's batches."""
    train = [cifar[f'data_batch_{number}'] for number in range(1, 6)]
    return (np.concatenate([planes for planes, _ in train]),
            sum((labels for _, labels in train), []),
            *cifar['test_batch'])


def expected_cifar(cifar):
    """Independent oracle: per-channel standardization with float64 training statistics."""
    train, train_labels, test, test_labels = cifar_sets(cifar)
    mean = train.mean(axis=(0, 2, 3), keepdims=True, dtype=np.float64)
    std = train.std(axis=(0, 2, 3), keepdims=True, dtype=np.float64)
    return ((train - mean) / std, np.eye(10)[train_labels],
            (test - mean) / std, np.eye(10)[test_labels])


def test_cifar10_downloads_extracts_and_normalizes_per_channel(server, monkeypatch, data):
    cifar = small_cifar(0)
    serve_cifar(server, monkeypatch, tar_gz(cifar_members(cifar)))
    x_train, y_train, x_test, y_test = datasets.DATASETS['cifar10']()

    assert x_train.shape == (20, 3, 32, 32) and x_test.shape == (4, 3, 32, 32)
    assert y_train.shape == (20, 10) and y_test.shape == (4, 10)
    assert {a.dtype for a in (x_train, y_train, x_test, y_test)} == {np.dtype(np.float32)}
    expected = expected_cifar(cifar)
    for actual, wanted in zip((x_train, y_train, x_test, y_test), expected):
        np.testing.assert_allclose(actual, wanted, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(x_train.mean(axis=(0, 2, 3)), 0, atol=1e-5)
    np.testing.assert_allclose(x_train.std(axis=(0, 2, 3)), 1, atol=1e-5)
    assert files_in(data) == sorted(['cifar-10-python.tar.gz', 'cifar-10-batches-py/readme.html'] +
                                    [f'cifar-10-batches-py/{name}' for name in cifar])


def test_cifar10_reads_an_extracted_folder_without_network(data):
    cifar = small_cifar(1, per_batch=2)
    (data / 'cifar-10-batches-py').mkdir(parents=True)
    for name, batch in cifar.items():
        (data / 'cifar-10-batches-py' / name).write_bytes(cifar_batch_pickle(*batch))
    for loaded, made in zip(datasets.load_cifar10_raw(), cifar_sets(cifar)):
        np.testing.assert_array_equal(loaded, made)


def test_cifar10_missing_everywhere_says_what_to_put_where(server, monkeypatch, data):
    monkeypatch.setattr(datasets, 'CIFAR10_MIRRORS', [server.url])
    with pytest.raises(datasets.DataUnavailable) as error:
        datasets.load_cifar10()
    message = str(error.value)
    assert '\n' not in message and '404' in message
    assert f"{data / 'cifar-10-python.tar.gz'} is missing" in message
    assert f"put it into {data}/" in message
    assert (f"or put the folder cifar-10-batches-py/ extracted from it (or cifar-10-batches-bin/ "
            f"of the binary version) into {data}/") in message
    assert files_in(data) == []


def test_cifar10_checksum_mismatch_leaves_nothing(server, monkeypatch, data):
    serve_cifar(server, monkeypatch, tar_gz(cifar_members(small_cifar(2, per_batch=1))))
    monkeypatch.setitem(datasets.CIFAR10_FILES, datasets.CIFAR10_ARCHIVE, '0' * 32)
    with pytest.raises(datasets.DataUnavailable, match='checksum mismatch'):
        datasets.load_cifar10()
    assert files_in(data) == []


@pytest.mark.parametrize('bad', [
    lambda outside: member('cifar-10-batches-py/../../escaped', b'x'),
    lambda outside: member('../escaped', b'x'),
    lambda outside: member(str(outside / 'escaped'), b'x'),
    lambda outside: member('cifar-10-batches-py/link', kind=tarfile.SYMTYPE, target=str(outside)),
    lambda outside: member('cifar-10-batches-py/hard', kind=tarfile.LNKTYPE,
                           target='../../escaped'),
    lambda outside: member('cifar-10-batches-py/dev', kind=tarfile.CHRTYPE),
], ids=['dotdot inside', 'dotdot', 'absolute', 'symlink', 'hardlink', 'device'])
def test_cifar10_refuses_archives_that_escape_the_folder(server, monkeypatch, data, tmp_path, bad):
    outside = tmp_path / 'outside'
    outside.mkdir()
    serve_cifar(server, monkeypatch, tar_gz(cifar_members(small_cifar(3, per_batch=1)) +
                                            [bad(outside)]))
    with pytest.raises(datasets.DataUnavailable, match='refusing to extract'):
        datasets.load_cifar10()
    assert not (tmp_path / 'escaped').exists() and list(outside.iterdir()) == []
    assert [path.name for path in data.iterdir()] == ['cifar-10-python.tar.gz']


def binary_batches(cifar):
    """{file name: body} of small_cifar's batches in CIFAR-10's binary format: per image, its
    label byte, then its planes."""
    return {f'{name}.bin': b''.join(bytes([label]) + planes.tobytes()
                                    for planes, label in zip(*batch))
            for name, batch in cifar.items()}


def test_cifar10_reads_the_binary_version_checking_each_file(monkeypatch, data):
    cifar = small_cifar(6, per_batch=2)
    bodies = binary_batches(cifar)
    monkeypatch.setattr(datasets, 'CIFAR10_BINARY_FILES',
                        {name: md5(body) for name, body in bodies.items()})
    folder = data / 'cifar-10-batches-bin'
    folder.mkdir(parents=True)
    for name, body in bodies.items():
        (folder / name).write_bytes(body)
    for loaded, made in zip(datasets.load_cifar10_raw(), cifar_sets(cifar)):
        np.testing.assert_array_equal(loaded, made)

    datasets.read_cifar10.cache_clear()
    (folder / 'data_batch_4.bin').write_bytes(bodies['data_batch_4.bin'][:-1])
    with pytest.raises(datasets.DataUnavailable, match=r'data_batch_4.bin is corrupted \(its md5'):
        datasets.load_cifar10()
    (folder / 'data_batch_4.bin').unlink()
    with pytest.raises(datasets.DataUnavailable, match='has no file data_batch_4.bin: put all six'):
        datasets.load_cifar10()


def test_cifar10_incomplete_folder_names_the_missing_batch(data):
    (data / 'cifar-10-batches-py').mkdir(parents=True)
    (data / 'cifar-10-batches-py' / 'data_batch_1').write_bytes(
        cifar_batch_pickle(*small_cifar(4, per_batch=1)['data_batch_1']))
    with pytest.raises(datasets.DataUnavailable,
                       match='has no file data_batch_2: delete the folder'):
        datasets.load_cifar10()


class Evil:
    def __reduce__(self):
        return (print, ('pwned',))


@pytest.mark.parametrize('body', [
    pickle.dumps({b'data': np.zeros((1, 3072), np.uint8), b'labels': [Evil()]}),
    pickle.dumps({b'data': np.zeros((1, 3000), np.uint8), b'labels': [0]}),
    pickle.dumps({b'data': np.zeros((1, 3072), np.float32), b'labels': [0]}),
    pickle.dumps({b'data': np.zeros((2, 3072), np.uint8), b'labels': [0]}),
    pickle.dumps({b'data': np.zeros((1, 3072), np.uint8), b'labels': [10]}),
    pickle.dumps({b'labels': [0]}),
    b'garbage',
], ids=['code', 'row size', 'dtype', 'label count', 'label value', 'no data', 'garbage'])
def test_cifar10_rejects_malformed_batches(data, body, capsys):
    cifar = small_cifar(5, per_batch=1)
    (data / 'cifar-10-batches-py').mkdir(parents=True)
    for name, batch in cifar.items():
        (data / 'cifar-10-batches-py' / name).write_bytes(cifar_batch_pickle(*batch))
    (data / 'cifar-10-batches-py' / 'data_batch_3').write_bytes(body)
    with pytest.raises(datasets.DataUnavailable, match='data_batch_3 is not a CIFAR-10 batch'):
        datasets.load_cifar10()
    assert 'pwned' not in capsys.readouterr().out
