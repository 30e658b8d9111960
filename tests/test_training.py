"""End-to-end training runs (slow): python -m pytest -m training."""
import pytest

import common

pytestmark = pytest.mark.training


def test_reference_mnist_model_passes_the_mnist_test():
    reference = common.load_solution(common.KIT_DIR / 'solution.py', name='reference_for_training')
    result = common.run_test(common.find_fixtures()['mnist'], reference)
    print(result.message)
    assert result.verdict == 'passed', result.message
