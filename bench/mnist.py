#!/usr/bin/env python3
"""Trains the reference train_mnist_model and prints test accuracy and wall time.

    python bench/mnist.py [--solution path/to/solution.py]

Target for the reference: >= 98% test accuracy in <= 60 s on 2 cores.
"""
import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import common
import datasets


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--solution', default=str(common.KIT_DIR / 'solution.py'))
    args = parser.parse_args()
    solution = common.load_solution(args.solution)
    x_train, y_train, x_test, y_test = datasets.load_mnist()
    start = time.perf_counter()
    model = solution.train_mnist_model(x_train[:55000], y_train[:55000], x_train[55000:],
                                       y_train[55000:])
    seconds = time.perf_counter() - start
    _, accuracy = model.evaluate(x_test, y_test)
    print(f"mnist: test accuracy {accuracy:.4f} in {seconds:.1f} s of training "
          f"(target >= 0.98 in <= 60 s)")


if __name__ == '__main__':
    main()
