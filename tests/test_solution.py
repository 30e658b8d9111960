"""./run.py unittest as pytest items: one per case of every unit test in tests/, against
the solution.py beside tests/ (in the repository: the reference).

    python -m pytest tests/test_solution.py -m relu      the cases of one test
    python -m pytest tests/test_solution.py -k softmax   or by name
    python -m pytest -m "not training"                   all but mnist and cifar

The student kit ships this file, so that an editor's test panel runs the unit tests.
"""
import importlib

import pytest

import common

FIXTURES = common.find_fixtures(keep_damaged=True)


def case_items():
    """(fixture, case entry or None for a damaged fixture) as pytest params, marked by test."""
    for fixture in FIXTURES.values():
        marks = [getattr(pytest.mark, fixture.test)] + [pytest.mark.training] * fixture.is_training
        for entry in fixture.cases or [None]:
            name = entry['name'] if entry else 'description.json'
            yield pytest.param(fixture, entry, marks=marks, id=f"{fixture.test}: {name}")


@pytest.fixture(scope='session')
def solution():
    """solution.py, imported once; os._exit() in it is reported, not obeyed."""
    with common.os_exit_forbidden():
        try:
            yield importlib.import_module('solution')
        except SystemExit as error:
            pytest.fail(common.exit_message(error, common.KIT_DIR / 'solution.py'), pytrace=False)
        except Exception as error:  # a broken solution.py fails every case, clearly
            pytest.fail("solution.py does not import:\n" + common.student_traceback(
                error, common.KIT_DIR / 'solution.py'), pytrace=False)


@pytest.mark.parametrize('fixture, entry', case_items())
def test_case(solution, fixture, entry):
    if fixture.damage:
        pytest.fail(fixture.damage, pytrace=False)
    try:
        case = fixture.load_case(entry)
    except common.FixtureError as error:
        pytest.fail(str(error), pytrace=False)
    verdict, results = common.run_case(solution, case)
    if verdict == common.RAN:
        verdict, results = common.verify_case(case, results)
    if verdict != common.Verdict.PASSED:
        pytest.fail(f"{verdict.upper()}: {results}", pytrace=False)
