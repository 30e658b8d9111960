"""Training cases in the grader: the data go to the child through a pipe, the test labels stay here.

For each training case of a section the grader loads the dataset itself and
draws a secret order for this run. Once the child has imported solution.py
(staff/child.py), it gets through its data pipe x_train and y_train in that
order (the training function gets the last valid_size of them as its
validation split, as in ./run.py unittest) and x_test in another order, each
image perturbed by Gaussian noise of NOISE (the images are standardized to
std 1): neither a label string in the test set's order nor a table keyed by
exact image bytes matches any more, while the reference's test accuracy
moves by less than 0.1 point (bench/disguise.py measures it). The child
sends back predicted labels in the order it got the images; restore() puts
them back in the test set's order and the check is ./run.py unittest's
(common.verify_case), with the training time measured here: from sending
the data to receiving the predictions.
"""
import io
from dataclasses import dataclass

import numpy as np

import common
from datasets import DATASETS
from staff.sandbox import Feed

NOISE = 0.01  # standard deviation of the noise added to each (standardized) test image


@dataclass
class Delivery:
    """What one training case's child gets, and the secret to read its answers."""
    index: int              # the case's position in the section's plan
    arrays: tuple           # x_train, y_train, x_test as sent
    test_order: np.ndarray  # the sent x_test is the test set's x_test[test_order]

    def buffers(self):
        """The arrays in .npy format: a header and the array's bytes for each."""
        for array in self.arrays:
            yield io_header(array)
            yield array

    def restore(self, labels):
        """Labels predicted for the sent x_test, put in the test set's order."""
        labels = np.asarray(labels)
        if labels.shape != self.test_order.shape:
            return labels  # the check reports the wrong shape
        restored = np.empty_like(labels)
        restored[self.test_order] = labels
        return restored


def io_header(array):
    """The .npy header of a C-contiguous array."""
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, np.lib.format.header_data_from_array_1_0(array))
    return buffer.getvalue()


def disguise(x_train, y_train, x_test, rng):
    """(x_train, y_train, x_test, test order): shuffled, x_test perturbed by NOISE."""
    train_order, test_order = rng.permutation(len(x_train)), rng.permutation(len(x_test))
    x_test = x_test[test_order]
    x_test += (NOISE * rng.standard_normal(x_test.shape, dtype=np.float32)).astype(x_test.dtype)
    return x_train[train_order], y_train[train_order], x_test, test_order


def deliveries(cases, rng=None):
    """A Delivery for each training case among the plan's (test, name, case)."""
    rng = rng or np.random.default_rng()  # a fresh secret for every run
    found = []
    for index, (_, _, case) in enumerate(cases):
        if common.is_training(case):
            x_train, y_train, x_test, _ = DATASETS[case['dataset']]()
            *arrays, order = disguise(x_train, y_train, x_test, rng)
            found.append(Delivery(index, tuple(map(np.ascontiguousarray, arrays)), order))
    return found


def feed(found):
    """The sandbox Feed sending each delivery in turn."""
    return Feed([(delivery.index, list(delivery.buffers())) for delivery in found])


def restore_results(found, child, finished):
    """Each training result as the check wants it: labels in the test set's
    order, and the seconds from sending the data to receiving the labels."""
    for delivery in found:
        result = child.results.get(delivery.index)
        if result is None or result[0] != common.RAN:
            continue
        sent = finished.fed.get(delivery.index)
        received = finished.arrival(child.result_ends[delivery.index])
        if sent is None or received < sent:
            child.results[delivery.index] = (
                common.Verdict.ERROR, "predictions arrived before the grader sent the data")
            continue
        results = dict(result[1])
        if 'labels' in results:
            results['labels'] = delivery.restore(results['labels'])
        results['seconds'] = np.float64(received - sent)
        child.results[delivery.index] = (common.RAN, results)
