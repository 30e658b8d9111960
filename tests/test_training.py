"""End-to-end training runs (slow): python -m pytest -m training."""
import pytest

import common
import datasets

pytestmark = pytest.mark.training


def reference_result(test):
    reference = common.load_solution(common.KIT_DIR / 'solution.py', name='reference_for_training')
    result = common.run_test(common.find_fixtures()[test], reference)
    print(result.message)
    return result


def test_reference_mnist_model_passes_the_mnist_test():
    result = reference_result('mnist')
    assert result.verdict == 'passed', result.message


def test_reference_cifar_model_passes_the_cifar_test():
    try:
        datasets.load_cifar10()
    except datasets.DataUnavailable as error:
        pytest.skip(f"CIFAR-10 is not available here, nothing trained: {error}")
    result = reference_result('cifar')
    assert result.verdict == 'passed', result.message
