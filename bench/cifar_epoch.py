#!/usr/bin/env python3
"""Seconds per epoch of the reference train_cifar10_model at CIFAR-10's real size, and the
projected time of its whole schedule.

    python bench/cifar_epoch.py [--epochs 1] [--solution path/to/solution.py]

Trains on random CIFAR-shaped data (45000 training and 5000 validation images of
3x32x32, normal noise, random labels) for --epochs epochs of the recipe, with the
augmentation and the validation pass after each epoch, so the time is what the real
data would take (the arithmetic does not depend on the values). Then times predicting
the 10000 test images and projects the full schedule: epochs x seconds per epoch +
prediction. The accuracy on random data means nothing and is not printed.
Target for the reference: the full schedule in <= 30 minutes on 2 cores.
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


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--epochs', type=int, default=1)
    parser.add_argument('--solution', default=str(common.KIT_DIR / 'solution.py'))
    args = parser.parse_args()
    solution = common.load_solution(args.solution)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(50000, 3, 32, 32)).astype(np.float32)
    y = datasets.one_hot(rng.integers(0, 10, len(x)), 10)
    start = time.perf_counter()
    model = solution.train_cifar10_model(x[:45000], y[:45000], x[45000:], y[45000:],
                                         epochs=args.epochs)
    per_epoch = (time.perf_counter() - start) / args.epochs
    start = time.perf_counter()
    model.predict(x[:10000])
    predict = time.perf_counter() - start
    full = inspect.signature(solution.train_cifar10_model).parameters['epochs'].default
    total = full * per_epoch + predict
    print(f"cifar-10 shapes: {per_epoch:.0f} s per epoch (45000 images, augmentation, validation "
          f"on 5000), {predict:.0f} s to predict 10000; the recipe's {full} epochs take "
          f"{total / 60:.1f} min (target <= 30 min)")


if __name__ == '__main__':
    main()
