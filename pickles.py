"""Safe loading of the pickles in tests/ and data/: numpy arrays and plain data only.

You do not need to read this file: it only makes sure that a fixture or
dataset file cannot run code when it is loaded.
"""
import pickle


class FixtureError(Exception):
    """A fixture directory or file is missing or malformed."""


class FixtureUnpickler(pickle.Unpickler):
    """Loads numpy arrays and plain Python data, nothing else."""

    ALLOWED = frozenset({
        ('numpy', 'ndarray'), ('numpy', 'dtype'),
        ('numpy.core.multiarray', '_reconstruct'), ('numpy._core.multiarray', '_reconstruct'),
        ('numpy.core.multiarray', 'scalar'), ('numpy._core.multiarray', 'scalar'),
        ('builtins', 'slice'), ('builtins', 'complex'),
    })

    def find_class(self, module, name):
        if (module, name) not in self.ALLOWED:
            raise FixtureError(f"refusing to load {module}.{name} from a fixture: only "
                               f"numpy arrays and plain data are allowed")
        return super().find_class(module, name)


def load_pickle(path, encoding='ASCII'):
    with open(path, 'rb') as file:
        return FixtureUnpickler(file, encoding=encoding).load()
