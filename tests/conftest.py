"""Makes the kit's modules (and, in the repository, tests/mutants.py) importable, and
registers a marker for each unit test: python -m pytest -m relu runs the relu test's cases.

The student kit ships this file with tests/test_solution.py."""
import sys
from pathlib import Path

TESTS_DIR = Path(__file__).resolve().parent
sys.path[:0] = [str(TESTS_DIR.parent), str(TESTS_DIR)]


def pytest_configure(config):
    import common
    config.addinivalue_line('markers', 'training: trains a model (mnist, cifar): minutes, not seconds')
    for test in common.find_fixtures(TESTS_DIR, keep_damaged=True):
        config.addinivalue_line('markers', f"{test}: the cases of ./run.py unittest {test}")
