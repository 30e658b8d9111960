#!/usr/bin/env python3
"""Times one im2col convolution (forward + backward) in three memory layouts, phase by
phase, to show where an im2col Conv2D spends its time and what the memory layout changes.

    python bench/conv_layouts.py [--repeats 7]

Layouts of the activations and of the column matrix (batch 128, float32, K = 3, 'same'):

- batch-outer: activations (C, n, H, W), columns (C*K*K, n*Ho*Wo): the assignment's row
  order c*K*K + ki*K + kj, copies move image rows of Wo values;
- batch-innermost: activations (C, H, W, n), columns (C*K*K, Ho*Wo*n): the same row order,
  copies move rows of the whole batch (Wo*n values); the reference solution.py uses it;
- channels-last: activations (n, H, W, C), columns (n*Ho*Wo, K*K*C), rows ordered
  (ki, kj, c), which is not the assignment's im2col layout.

Each phase is the median of --repeats runs after two warm-up runs.
"""
import argparse
import statistics
import time

import numpy as np

BATCH, K, P = 128, 3, 1
SHAPES = ((32, 32, 32), (64, 16, 64))  # (C, H, D)
PHASES = ('im2col', 'forward product', 'kernel gradient', 'column gradient', 'col2im')
windows = np.lib.stride_tricks.sliding_window_view


def column_layout_phases(C, H, D, batch_innermost):
    """The five phases with columns (C*K*K, positions): activations (C, n, H, W) and
    positions (n, Ho, Wo), or with batch_innermost (C, H, W, n) and (Ho, Wo, n)."""
    def images(size):  # the shape of activations of size x size pixels
        return (C, size, size, BATCH) if batch_innermost else (C, BATCH, size, size)

    def pixels(rows, columns):  # the index of those rows and columns of every image
        return (slice(None), rows, columns) if batch_innermost else (
            slice(None), slice(None), rows, columns)

    x = np.random.randn(*images(H)).astype(np.float32)
    kernels = np.random.randn(D, C * K * K).astype(np.float32)
    grad = np.random.randn(D, BATCH * H * H).astype(np.float32)
    inside = pixels(slice(P, P + H), slice(P, P + H))
    state = {}

    def im2col():
        padded = np.zeros(images(H + 2 * P), np.float32)
        padded[inside] = x
        patches = windows(padded, (K, K), axis=(1, 2) if batch_innermost else (2, 3))
        state['columns'] = patches.transpose(0, 4, 5, 1, 2, 3).reshape(C * K * K, -1)

    def col2im():
        grad_columns = state['grad_columns'].reshape(C, K, K, *images(H)[1:])
        padded = np.zeros(images(H + 2 * P), np.float32)
        for ki in range(K):
            for kj in range(K):
                padded[pixels(slice(ki, ki + H), slice(kj, kj + H))] += grad_columns[:, ki, kj]
        return padded[inside]

    return (im2col,
            lambda: kernels @ state['columns'],
            lambda: state['columns'] @ grad.T,  # the faster order of the kernel gradient
            lambda: state.update(grad_columns=kernels.T @ grad),
            col2im)


def channels_last_phases(C, H, D):
    """The five phases with activations (n, H, W, C) and columns (n*Ho*Wo, K*K*C)."""
    x = np.random.randn(BATCH, H, H, C).astype(np.float32)
    kernels = np.random.randn(K * K * C, D).astype(np.float32)
    grad = np.random.randn(BATCH * H * H, D).astype(np.float32)
    state = {}

    def im2col():
        padded = np.zeros((BATCH, H + 2 * P, H + 2 * P, C), np.float32)
        padded[:, P:P + H, P:P + H] = x
        patches = windows(padded, (K, K), axis=(1, 2))  # (n, Ho, Wo, C, K, K)
        state['columns'] = patches.transpose(0, 1, 2, 4, 5, 3).reshape(-1, K * K * C)

    def col2im():
        grad_columns = state['grad_columns'].reshape(BATCH, H, H, K, K, C)
        padded = np.zeros((BATCH, H + 2 * P, H + 2 * P, C), np.float32)
        for ki in range(K):
            for kj in range(K):
                padded[:, ki:ki + H, kj:kj + H] += grad_columns[:, :, :, ki, kj]
        return padded[:, P:P + H, P:P + H]

    return (im2col,
            lambda: state['columns'] @ kernels,
            lambda: state['columns'].T @ grad,
            lambda: state.update(grad_columns=grad @ kernels.T),
            col2im)


def phase_medians(phases, repeats):
    """Median milliseconds of each phase, run in order as one convolution would."""
    times = [[] for _ in phases]
    for run in range(repeats + 2):
        for phase, phase_times in zip(phases, times):
            start = time.perf_counter()
            phase()
            if run >= 2:
                phase_times.append(1000 * (time.perf_counter() - start))
    return [statistics.median(phase_times) for phase_times in times]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--repeats', type=int, default=7)
    args = parser.parse_args()
    print(f"Conv2D forward+backward phases, batch {BATCH}, float32, K={K}, median of "
          f"{args.repeats} runs (ms)")
    for C, H, D in SHAPES:
        title = f"{C}->{D} channels, {H}x{H}"
        print(f"\n{title:36}" + ''.join(f"{p:>16}" for p in PHASES) + f"{'total':>8}")
        layouts = {'batch-outer': column_layout_phases(C, H, D, batch_innermost=False),
                   'batch-innermost': column_layout_phases(C, H, D, batch_innermost=True),
                   'channels-last': channels_last_phases(C, H, D)}
        for name, phases in layouts.items():
            medians = phase_medians(phases, args.repeats)
            print(f"{name:36}" + ''.join(f"{m:16.1f}" for m in medians) + f"{sum(medians):8.1f}")


if __name__ == '__main__':
    main()
