#!/usr/bin/env python3
"""A short run of the reference CIFAR-10 recipe on a real image dataset: Fashion-MNIST.

    apt-get install dataset-fashion-mnist     # Debian's package, /usr/share/datasets/fashion-mnist/
    python bench/fashion_mnist.py [--epochs 3] [--train-size 45000] [--solution path/to/solution.py]

A second real dataset for the recipe of train_cifar10_model (layers, schedule,
augmentation), besides CIFAR-10 itself (`./run.py unittest cifar`), and one that
Debian packages for machines without internet:
the 28x28 grey images are padded with zeros to 32x32, replicated to 3 channels and
normalized per channel like CIFAR-10, then trained with the same function on
--train-size images (45000, CIFAR-10's training split, by default) and 5000 for
validation for a shortened schedule of --epochs epochs. Prints the test accuracy on
the 10000 test images and the training time.
"""
import argparse
import inspect
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import common
import datasets

DATA = Path('/usr/share/datasets/fashion-mnist')
FILES = ('train-images-idx3-ubyte.gz', 'train-labels-idx1-ubyte.gz',
         't10k-images-idx3-ubyte.gz', 't10k-labels-idx1-ubyte.gz')


def load_fashion_mnist():
    """(x_train, y_train, x_test, y_test): x (n, 3, 32, 32) float32 normalized, y one-hot."""
    missing = [name for name in FILES if not (DATA / name).is_file()]
    if missing:
        sys.exit(f"{DATA}/{missing[0]} is missing: apt-get install dataset-fashion-mnist")
    train_images, train_labels, test_images, test_labels = (datasets.read_idx(DATA / name)
                                                            for name in FILES)
    padding = ((0, 0), (0, 0), (2, 2), (2, 2))
    x_train, x_test = (np.repeat(np.pad(images[:, None], padding), 3, axis=1)
                       for images in (train_images, test_images))
    x_train, x_test = datasets.standardize(x_train, x_test)
    return x_train, datasets.one_hot(train_labels, 10), x_test, datasets.one_hot(test_labels, 10)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--epochs', type=int, default=3)
    parser.add_argument('--train-size', type=int, default=45000)
    parser.add_argument('--solution', default=str(common.KIT_DIR / 'solution.py'))
    args = parser.parse_args()
    solution = common.load_solution(args.solution)
    x_train, y_train, x_test, y_test = load_fashion_mnist()
    train, valid = slice(0, args.train_size), slice(args.train_size, args.train_size + 5000)
    start = time.perf_counter()
    model = solution.train_cifar10_model(x_train[train], y_train[train], x_train[valid],
                                         y_train[valid], epochs=args.epochs)
    seconds = time.perf_counter() - start
    _, accuracy = model.evaluate(x_test, y_test)
    full = inspect.signature(solution.train_cifar10_model).parameters['epochs'].default
    print(f"fashion-mnist: test accuracy {accuracy:.4f} after {args.epochs} of the recipe's {full} "
          f"epochs on {args.train_size} images, {seconds:.0f} s of training "
          f"({seconds / args.epochs:.0f} s per epoch)")


if __name__ == '__main__':
    main()
