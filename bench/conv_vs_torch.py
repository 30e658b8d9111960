#!/usr/bin/env python3
"""Times forward+backward of the kit's Conv2D, MaxPooling2D, BatchNormalization and one
whole training step against torch CPU on the same shapes and threads, and prints the ratios.

    python bench/conv_vs_torch.py [--threads 2] [--repeats 5] [--rounds 3] [--solution PATH]

Shapes are CIFAR-10's with batch 128, float32. The training step is the issue's 5-conv
BatchNorm net (conv 32-32, pool, 64-64, pool, 128, global average pooling, dense 10)
with softmax, cross-entropy and SGD with momentum. numpy and torch each run in a
subprocess of their own (in one process their thread pools fight and the ratio means
nothing). The two subprocesses take turns for --rounds rounds, so that a change in the
machine's load hits both; each figure is the median over the rounds of the median of
--repeats runs after two warm-up runs.
A layer gets its inputs and gradients in the memory layout the solution's own layers
hand them over in a network (activations as its Conv2D outputs them), so that no
layout conversion is timed that training would not do.
Rows marked "matrix products alone" time only the three float32 matrix products an
im2col convolution cannot avoid (forward, kernel gradient, column gradient) at the same
shapes, and compare them with torch's whole layer or step: the floor of this design.
Needs torch (pip install torch==2.13.0); without it only the numpy column is printed.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

KIT_DIR = Path(__file__).resolve().parent.parent
BATCH = 128

# name: (layer, constructor arguments, input shape (C, H, W))
LAYERS = {
    'Conv2D 3->32, 32x32': ('Conv2D', (32,), (3, 32, 32)),
    'Conv2D 32->32, 32x32': ('Conv2D', (32,), (32, 32, 32)),
    'Conv2D 32->64, 16x16': ('Conv2D', (64,), (32, 16, 16)),
    'Conv2D 64->64, 16x16': ('Conv2D', (64,), (64, 16, 16)),
    'MaxPooling2D 32x32x32': ('MaxPooling2D', (2,), (32, 32, 32)),
    'MaxPooling2D 64x16x16': ('MaxPooling2D', (2,), (64, 16, 16)),
    'BatchNormalization 32x32x32': ('BatchNormalization', (), (32, 32, 32)),
    'BatchNormalization 64x16x16': ('BatchNormalization', (), (64, 16, 16)),
}
STEP = 'training step, 5-conv BN net'
CONV_CHANNELS = (32, 32, 'pool', 64, 64, 'pool', 128)
PRODUCTS = ': matrix products alone'  # suffix of the floor rows; torch's figure is the row's own


def step_convolutions():
    """(C, D, H) of each 3x3 'same' convolution of the training step's net."""
    convolutions, channels, size = [], 3, 32
    for item in CONV_CHANNELS:
        if item == 'pool':
            size //= 2
        else:
            convolutions.append((channels, item, size))
            channels = item
    return convolutions


def median_seconds(run, repeats):
    """Median wall time of run() over `repeats` calls after two warm-up calls."""
    for _ in range(2):
        run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


# ================================ numpy =====================================

def as_conv_outputs(solution, images):
    """The same values in the memory layout in which the solution's Conv2D returns its outputs
    (passed through a 1x1 convolution with identity kernels)."""
    import numpy as np
    channels = images.shape[1]
    conv = solution.Conv2D(channels, kernel_size=1, input_shape=images.shape[1:])
    conv.build(solution.SGD(lr=0.0))
    conv.kernels[...] = np.eye(channels).reshape(channels, channels, 1, 1)
    return conv(images)


def matrix_products(convolutions):
    """run() doing only the matrix products of im2col convolutions (C, D, H), K = 3:
    kernels (D, 9C) @ columns (9C, N), columns @ dL/dy.T (the kernel gradient) and
    kernels.T @ dL/dy (the column gradient), N = batch * H * H output positions,
    written into preallocated arrays so that only the products are timed."""
    import numpy as np
    rng = np.random.default_rng(0)
    operands = []
    for C, D, H in convolutions:
        kernels = rng.normal(size=(D, 9 * C)).astype(np.float32)
        columns = rng.normal(size=(9 * C, BATCH * H * H)).astype(np.float32)
        grad = rng.normal(size=(D, BATCH * H * H)).astype(np.float32)
        outputs = (np.empty_like(grad), np.empty((9 * C, D), np.float32), np.empty_like(columns))
        operands.append((kernels, columns, grad, outputs))

    def run():
        for kernels, columns, grad, (outputs, kernels_grad, columns_grad) in operands:
            np.matmul(kernels, columns, out=outputs)
            np.matmul(columns, grad.T, out=kernels_grad)
            np.matmul(kernels.T, grad, out=columns_grad)
    return run


def numpy_cases(solution_path):
    """{name: run()} for the kit: each run() is one forward and one backward pass."""
    import numpy as np
    sys.path.insert(0, str(KIT_DIR))
    import common
    solution = common.load_solution(solution_path)
    rng = np.random.default_rng(0)
    cases = {}
    for name, (layer_name, args, shape) in LAYERS.items():
        layer = getattr(solution, layer_name)(*args, input_shape=shape)
        layer.build(solution.SGDMomentum(lr=0.01, momentum=0.9))
        x = rng.normal(size=(BATCH,) + shape).astype(np.float32)
        if shape[0] > 3:  # an activation inside the network, not an input image
            x = as_conv_outputs(solution, x)
        grad = np.empty_like(layer(x))  # in the layout of the layer's own outputs
        grad[...] = rng.normal(size=grad.shape)

        def run(layer=layer, x=x, grad=grad):
            layer(x)
            layer.backward(grad)
        cases[name] = run
        if layer_name == 'Conv2D':
            cases[name + PRODUCTS] = matrix_products([(shape[0], args[0], shape[1])])

    model = solution.Model(solution.CategoricalCrossentropy(),
                           solution.SGDMomentum(lr=0.01, momentum=0.9))
    shape = (3, 32, 32)
    for channels in CONV_CHANNELS:
        if channels == 'pool':
            model.add(solution.MaxPooling2D(2))
            continue
        model.add(solution.Conv2D(channels, input_shape=shape))
        model.add(solution.BatchNormalization())
        model.add(solution.ReLU())
    for layer in (solution.GlobalAveragePooling(), solution.Dense(10), solution.Softmax()):
        model.add(layer)
    x = rng.normal(size=(BATCH,) + shape).astype(np.float32)
    y = np.eye(10, dtype=np.float32)[rng.integers(0, 10, BATCH)]
    cases[STEP] = lambda: model.fit_batch(x, y)
    cases[STEP + PRODUCTS] = matrix_products(step_convolutions())
    return cases


# ================================ torch =====================================

def torch_cases(threads):
    """{name: run()} for torch CPU, the same shapes and computations as numpy_cases."""
    import torch
    import torch.nn.functional as F
    from torch import nn
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    cases = {}
    for name, (layer_name, args, shape) in LAYERS.items():
        makers = {'Conv2D': lambda shape, args: nn.Conv2d(shape[0], args[0], 3, padding=1),
                  'MaxPooling2D': lambda shape, args: nn.MaxPool2d(args[0]),
                  'BatchNormalization': lambda shape, args: nn.BatchNorm2d(shape[0], momentum=0.1)}
        layer = makers[layer_name](shape, args)
        x = torch.randn((BATCH,) + shape, requires_grad=True)
        grad = torch.randn_like(layer(x))
        cases[name] = lambda layer=layer, x=x, grad=grad: layer(x).backward(grad)

    layers, channels_in = [], 3
    for channels in CONV_CHANNELS:
        if channels == 'pool':
            layers.append(nn.MaxPool2d(2))
            continue
        layers += [nn.Conv2d(channels_in, channels, 3, padding=1), nn.BatchNorm2d(channels),
                   nn.ReLU()]
        channels_in = channels
    model = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                          nn.Linear(channels_in, 10))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x, y = torch.randn(BATCH, 3, 32, 32), torch.randint(0, 10, (BATCH,))

    def step():
        optimizer.zero_grad()
        F.cross_entropy(model(x), y).backward()
        optimizer.step()
    cases[STEP] = step
    return cases


# ================================ main ======================================

def child(engine, threads, repeats, solution_path):
    """Runs in a subprocess: prints {name: median seconds} as JSON."""
    cases = numpy_cases(solution_path) if engine == 'numpy' else torch_cases(threads)
    print(json.dumps({name: median_seconds(run, repeats) for name, run in cases.items()}))


def measure(engine, args):
    """{name: seconds} from a fresh subprocess, or None when the engine is not installed."""
    variables = ('OMP_NUM_THREADS', 'OPENBLAS_NUM_THREADS', 'MKL_NUM_THREADS')
    environment = dict(os.environ, **{name: str(args.threads) for name in variables})
    command = [sys.executable, __file__, '--child', engine, '--threads', str(args.threads),
               '--repeats', str(args.repeats), '--solution', args.solution]
    done = subprocess.run(command, env=environment, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        if engine == 'torch' and 'No module named' in done.stderr:
            return None
        sys.exit(f"the {engine} run failed:\n{done.stderr}")
    return json.loads(done.stdout.splitlines()[-1])


def measure_in_turns(args):
    """(numpy, torch) {name: seconds}, each the median over args.rounds subprocesses run in
    turns; torch is None when not installed."""
    runs = {'numpy': [], 'torch': []}
    for _ in range(args.rounds):
        for engine, results in runs.items():
            results.append(measure(engine, args))
    return tuple(None if None in results else
                 {name: statistics.median(result[name] for result in results)
                  for name in results[0]}
                 for results in runs.values())


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--threads', type=int, default=os.cpu_count())
    parser.add_argument('--repeats', type=int, default=5)
    parser.add_argument('--rounds', type=int, default=3)
    parser.add_argument('--solution', default=str(KIT_DIR / 'solution.py'))
    parser.add_argument('--child', choices=('numpy', 'torch'), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args.child, args.threads, args.repeats, args.solution)
    kit, torch = measure_in_turns(args)
    print(f"forward+backward, batch {BATCH}, float32, {args.threads} threads, "
          f"median of {args.repeats} runs x {args.rounds} rounds (ms)")
    print(f"{'':54} {'numpy':>8} {'torch':>8} {'ratio':>6}")
    for name, seconds in kit.items():
        if torch is None:
            print(f"{name:54} {1000 * seconds:8.1f} {'-':>8} {'-':>6}")
        else:
            peer = torch[name.removesuffix(PRODUCTS)]
            print(f"{name:54} {1000 * seconds:8.1f} {1000 * peer:8.1f} {seconds / peer:6.2f}")
    if torch is None:
        print("torch is not installed: pip install torch==2.13.0 for the comparison")


if __name__ == '__main__':
    main()
