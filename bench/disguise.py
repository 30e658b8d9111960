#!/usr/bin/env python3
"""How much the grader's disguise of the test set moves the reference's MNIST accuracy.

The grader sends a training section's test images shuffled and perturbed
(staff/training.py: Gaussian noise of NOISE standard deviations), so that no
label table carried in a submission matches them. This trains the reference
train_mnist_model once, then prints its test accuracy on the test set as it
is and on --runs disguised copies (each with its own secret order and noise,
the predictions put back in order as the grader does).

    python bench/disguise.py [--runs 5] [--noise 0.01]

Target: every disguised accuracy within 0.1 point (0.001) of the plain one.
"""
import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import common
import datasets
from staff import training


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--runs', type=int, default=5)
    parser.add_argument('--noise', type=float, default=training.NOISE)
    args = parser.parse_args()
    training.NOISE = args.noise
    solution = common.load_solution(common.KIT_DIR / 'solution.py')
    x_train, y_train, x_test, y_test = datasets.load_mnist()
    start = time.perf_counter()
    model = solution.train_mnist_model(x_train[:55000], y_train[:55000], x_train[55000:],
                                       y_train[55000:])
    print(f"reference trained in {time.perf_counter() - start:.0f} s")
    labels = np.argmax(y_test, axis=1)
    plain = np.mean(np.argmax(model.predict(x_test), axis=1) == labels)
    print(f"plain test set:     accuracy {plain:.4f}")
    worst = 0.0
    for run in range(args.runs):
        *_, sent, order = training.disguise(x_train[:1], y_train[:1], x_test,
                                            np.random.default_rng(run))
        predicted = training.Delivery(0, (), order).restore(np.argmax(model.predict(sent), axis=1))
        accuracy = np.mean(predicted == labels)
        worst = max(worst, abs(accuracy - plain))
        print(f"disguised run {run}:    accuracy {accuracy:.4f} ({100 * (accuracy - plain):+.2f} "
              f"points)")
    print(f"noise {args.noise:g}: largest change {100 * worst:.2f} points (target < 0.1)")


if __name__ == '__main__':
    main()
