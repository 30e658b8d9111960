"""Makes the kit's top-level modules and tests/mutants.py importable; in CI, a skip fails.

CI (CI=true) installs everything the tests need (./install.sh), so a test skipped
there for something missing (a module, a sandbox, data) is a failure: nothing
passes in CI by being skipped. Tests left out of CI on purpose are deselected by
.ci/run, which says why.
"""
import os
import sys
from pathlib import Path

import pytest

sys.path[:0] = [str(Path(__file__).resolve().parent.parent), str(Path(__file__).resolve().parent)]

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
