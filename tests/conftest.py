"""Makes the kit's modules (and, in the repository, tests/mutants.py) importable, registers
a marker for each unit test (python -m pytest -m relu runs the relu test's cases); in CI, a
skip fails. The student kit ships this file with tests/test_solution.py.

CI (CI=true) installs everything the tests need (./install.sh), so a test skipped
there for something missing (a module, a sandbox, data) is a failure: nothing
passes in CI by being skipped. Tests left out of CI on purpose are deselected by
.ci/run, which says why.
"""
import os
import sys
from pathlib import Path

import pytest

TESTS_DIR = Path(__file__).resolve().parent
sys.path[:0] = [str(TESTS_DIR.parent), str(TESTS_DIR)]

IN_CI = os.environ.get('CI', '').lower() in ('true', '1', 'yes')


def fail_skip_in_ci(report):
    """Turns a skipped report into a failure when running in CI."""
    if IN_CI and report.skipped:
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.outcome = 'failed'
        report.longrepr = (f"skipped in CI, where nothing may pass by being skipped: {reason} "
                           f"(./install.sh installs what the tests need)")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    fail_skip_in_ci(outcome.get_result())


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    outcome = yield
    fail_skip_in_ci(outcome.get_result())


def pytest_configure(config):
    if not any(TESTS_DIR.glob('*_unittest_*_input')):  # a copy of this file elsewhere
        return
    import common
    config.addinivalue_line('markers', 'training: trains a model (mnist, cifar): minutes')
    for test in common.find_fixtures(TESTS_DIR, keep_damaged=True):
        config.addinivalue_line('markers', f"{test}: the cases of ./run.py unittest {test}")
