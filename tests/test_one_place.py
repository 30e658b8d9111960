"""Each fact of the kit is stated once: these tests tie the places that must agree."""
import ast
import os
import re
import subprocess
import sys

import common
import run
from staff import cli, fixtures, kit, validate


def test_every_check_kind_has_each_staff_step():
    assert set(fixtures.EXPECTED_VALUES) == set(common.CHECKS)
    assert set(validate.SHAPE_CHECKS) == set(common.CHECKS)
    assert {spec.kind for specs in fixtures.SPECS.values() for spec in specs} <= set(common.CHECKS)


def test_run_knows_every_staff_command():
    assert run.STAFF_COMMANDS == tuple(name for name, _, _ in cli.COMMANDS)


def test_every_verdict_has_a_colour():
    assert set(run.VERDICT_COLOURS) == set(common.Verdict)


def test_training_limits_in_the_docstrings_are_the_fixtures_limits():
    limits = {'train_mnist_model': fixtures.MNIST_TIME_LIMIT,
              'train_cifar10_model': fixtures.CIFAR_TIME_LIMIT}
    tree = ast.parse((common.KIT_DIR / 'solution.py').read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef) and node.name in limits:
            minutes = re.search(r'under (\d+) minutes', ast.get_docstring(node))
            assert int(minutes[1]) * 60 == limits[node.name], node.name
    for fixture in common.find_fixtures().values():
        if fixture.is_training:
            case = fixture.load_case(fixture.cases[0])
            assert case['time_limit'] in limits.values(), fixture.test
    readme = (common.KIT_DIR / 'README.md').read_text()
    assert f"({fixtures.MNIST_TIME_LIMIT} s / {fixtures.CIFAR_TIME_LIMIT} s)" in readme
    for test, limit in (('mnist', fixtures.MNIST_TIME_LIMIT), ('cifar', fixtures.CIFAR_TIME_LIMIT)):
        assert re.search(rf"`{test}` \(test accuracy > \d+% within {limit // 60} minutes\)", readme)


def test_every_kit_module_says_whether_a_student_needs_to_read_it():
    for name in kit.KIT_MODULES:
        docstring = ast.get_docstring(ast.parse((common.KIT_DIR / name).read_text()))
        assert docstring and 'read' in docstring.lower(), name


SKIPPING_TESTS = '''
import pytest

def test_skipped_for_a_missing_module():
    pytest.importorskip('no_such_module_here')

def test_passes():
    pass
'''


def test_in_ci_a_skipped_test_fails(tmp_path):
    (tmp_path / 'conftest.py').write_text(
        (common.KIT_DIR / 'tests' / 'conftest.py').read_text())
    (tmp_path / 'test_skips.py').write_text(SKIPPING_TESTS)
    command = [sys.executable, '-m', 'pytest', '-q', '-p', 'no:cacheprovider', str(tmp_path)]
    outcomes = {}
    for ci in ('true', ''):
        done = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, timeout=120,
                              env={**os.environ, 'CI': ci}, check=False)
        outcomes[ci] = done.stdout.strip().splitlines()[-1]
    assert '1 failed, 1 passed' in outcomes['true']
    assert '1 passed, 1 skipped' in outcomes['']
