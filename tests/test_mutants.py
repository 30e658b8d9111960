"""Tests of the tests: each plausible bug fails exactly its own unit test,
and each other correct reading of the assignment passes them all."""
import pytest
from mutants import MUTANTS, VARIANTS

import common

REFERENCE = common.KIT_DIR / 'solution.py'
QUICK_FIXTURES = {name: fixture for name, fixture in common.find_fixtures().items()
                  if not fixture.is_training}


def failing_tests(edit, tmp_path):
    """Names of the quick tests that the edited solution fails."""
    source = REFERENCE.read_text()
    assert source.count(edit.old) == 1, \
        f"the edit's text must occur once in solution.py: {edit.old!r}"
    path = tmp_path / 'solution.py'
    path.write_text(source.replace(edit.old, edit.new))
    solution = common.load_solution(path, name=f"edited_{tmp_path.name}")
    return {name for name, fixture in QUICK_FIXTURES.items()
            if not common.run_test(fixture, solution).passed}


@pytest.mark.parametrize('mutant', MUTANTS, ids=lambda m: f"{m.test}: {m.what}")
def test_bug_fails_exactly_its_own_test(mutant, tmp_path):
    assert failing_tests(mutant, tmp_path) == {mutant.test, *mutant.also}


@pytest.mark.parametrize('variant', VARIANTS, ids=lambda v: f"{v.test}: {v.what}")
def test_correct_variant_passes_every_test(variant, tmp_path):
    assert failing_tests(variant, tmp_path) == set()


def test_reference_passes_every_quick_test():
    solution = common.load_solution(REFERENCE, name='reference_for_mutants')
    verdicts = {name: common.run_test(fixture, solution).verdict
                for name, fixture in QUICK_FIXTURES.items()}
    assert verdicts == {name: 'passed' for name in QUICK_FIXTURES}
