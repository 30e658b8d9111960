#!/usr/bin/env python3
"""Command line of the kit.

  ./run.py unittest relu         run one unit test against solution.py
  ./run.py unittest relu dense   run several
  ./run.py unittest              run them all (same as: ./run.py unittest all)
  ./run.py gradcheck Conv2D      check a layer's backward pass against numerical gradients
  ./run.py train mnist --epochs 2 --plot curves.png --save model.npz
                                 train your train_mnist_model (or: cifar), report
                                 its test accuracy, plot its curves, save the model

Each command takes --solution FILE to use another solution.py; see
./run.py <command> --help. Exit status: 0 when everything passed, 1 when
anything failed, 2 for a usage error such as an unknown test name.
You need not read run.py itself: the commands above are all it does.
"""
import argparse
import inspect
import json
import sys
from pathlib import Path

import numpy as np

import common
import gradcheck as numerical
import interface
from common import Verdict
from datasets import DATASETS, DataUnavailable

# the names of staff/cli.py COMMANDS
STAFF_COMMANDS = ('make-fixtures', 'check-fixtures', 'make-kit', 'grade', 'serve', 'similarity')


def colour(text, code):
    """text in an ANSI colour when printing to a terminal."""
    return f"\033[{code}m{text}\033[0m" if sys.stdout.isatty() else text


RED, GREEN, YELLOW = '31', '32', '33'
VERDICT_COLOURS = {Verdict.PASSED: GREEN, Verdict.FAILED: RED, Verdict.ERROR: RED,
                   Verdict.NOT_IMPLEMENTED: YELLOW, Verdict.NOT_AVAILABLE: YELLOW,
                   Verdict.MEMORY_LIMIT: RED, Verdict.IMPORT_FAILED: RED, Verdict.TIME_LIMIT: RED}


class Stop(Exception):
    """Ends a command with a message on stderr and an exit status."""

    def __init__(self, message, status=2):
        super().__init__(message)
        self.status = status


def import_solution(path):
    """The solution module; one that does not import stops the command with its traceback."""
    try:
        return common.load_solution(path)
    except Exception as error:  # a broken solution.py must still get a clear verdict
        traceback = common.student_traceback(error, path)
        raise Stop(f"solution.py does not import:\n{traceback}", 1) from None


def call_student(solution, what, function, *args):
    """function(*args), where an exception of the student's code stops the command."""
    try:
        return function(*args)
    except NotImplementedError as error:
        raise Stop(f"{what}: not implemented ({error})", 1) from None
    except (common.CheckFailed, numerical.GradientCheckError) as error:
        raise Stop(str(error), 1) from None
    except Exception as error:  # the student's code raised: show their frames only
        raise Stop(f"{what} raised an exception:\n"
                   f"{common.student_traceback(error, solution.__file__).rstrip()}", 1) from None


def select_fixtures(names):
    """The fixtures to run, in order; an unknown name is a usage error."""
    fixtures = common.find_fixtures()
    if not fixtures:
        sys.exit(f"no fixture directories found in {common.TESTS_DIR}: unpack the tests there")
    if not names or names == ['all']:
        return list(fixtures.values())
    unknown = [name for name in names if name not in fixtures]
    if unknown:
        print(f"unknown test {', '.join(unknown)}; valid names: all, {', '.join(fixtures)}",
              file=sys.stderr)
        sys.exit(2)
    return [fixtures[name] for name in names]


def score(fixtures, results):
    """The score line of the tests run, counted as the grader does.

    A section passes only when all its tests pass; a section with some of
    its tests left out of the run is not scored.
    """
    tests, points = {}, {}
    for fixture in common.find_fixtures().values():
        tests.setdefault(fixture.section, []).append(fixture.test)
        points[fixture.section] = fixture.points
    sections = dict.fromkeys(fixture.section for fixture in fixtures)
    missing = {section: [test for test in tests[section] if test not in results]
               for section in sections}
    scored = [section for section in sections if not missing[section]]
    passed = [section for section in scored
              if common.section_passes([results[test] for test in tests[section]])]
    line = (f"passed {len(passed)}/{len(scored)} sections, {sum(points[s] for s in passed):g} / "
            f"{sum(points[s] for s in scored):g} points")
    not_scored = [f"{section} (also run {' '.join(missing[section])})"
                  for section in sections if missing[section]]
    return line + (f"; not scored: {', '.join(not_scored)}" if not_scored else '')


def unittest(args):
    fixtures = select_fixtures(args.names)
    solution = import_solution(args.solution)
    results = {}
    print(f"{'section':8} {'test':13} {'points':>6}  {'result':16} {'time':>7}")
    for fixture in fixtures:
        if fixture.is_training:
            print(f"{fixture.section:8} {fixture.test:13} {fixture.points:6.1f}  training... "
                  f"(Ctrl-C stops the training early)", flush=True)
        result = common.run_test(fixture, solution)
        results[fixture.test] = result
        verdict = colour(f"{result.verdict.upper():16}", VERDICT_COLOURS[result.verdict])
        print(f"{fixture.section:8} {fixture.test:13} {fixture.points:6.1f}  {verdict} "
              f"{result.seconds:6.2f}s", flush=True)
        if result.message:
            print('  ' + result.message.replace('\n', '\n  '))
    print(score(fixtures, results))
    return 0 if all(result.passed for result in results.values()) else 1


# ================================ gradcheck =================================

GRADCHECK_DEFAULTS = {  # layer: (input shape with the batch first, constructor arguments)
    'ReLU': ((4, 3, 5), {}),
    'LeakyReLU': ((4, 3, 5), {'alpha': 0.1}),
    'Softmax': ((4, 7), {}),
    'Dense': ((4, 9), {'units': 6}),
    'Conv2D': ((4, 3, 6, 5), {'output_channels': 2, 'kernel_size': 3}),
    'MaxPooling2D': ((4, 3, 6, 4), {}),
    'GlobalAveragePooling': ((4, 3, 5, 4), {}),
    'BatchNormalization': ((4, 3, 5, 4), {}),
    'Dropout': ((4, 3, 5), {'p': 0.5}),
    'Flatten': ((4, 3, 4, 5), {}),
}
OTHER_LAYER_DEFAULTS = ((4, 8), {})
RIGHT, WRONG = 1e-6, 1e-3  # relative errors: below RIGHT is right, above WRONG is a bug


def layer_classes(solution):
    """{name: class} of the Layer subclasses in solution.py, the student's own ones too."""
    return {name: value for name, value in vars(solution).items() if isinstance(value, type)
            and issubclass(value, interface.Layer) and not inspect.isabstract(value)}


def parse_shape(text):
    """'4,3,8,8' -> (4, 3, 8, 8); anything else is a usage error."""
    try:
        shape = tuple(int(size) for size in text.split(','))
    except ValueError:
        shape = ()
    if len(shape) < 2 or min(shape) < 1:
        raise Stop(f"--input-shape {text}: give positive sizes with the batch first, e.g. 4,3,8,8")
    return shape


def parse_arguments(text):
    """'{"output_channels": 2}' -> {'output_channels': 2}; anything else is a usage error."""
    try:
        arguments = json.loads(text)
    except ValueError as error:
        raise Stop(f"--args {text}: not JSON ({error}); e.g. --args '{{\"units\": 6}}'") from None
    if not isinstance(arguments, dict):
        raise Stop(f"--args {text}: give a JSON object of constructor arguments, "
                   f"e.g. --args '{{\"units\": 6}}'")
    return arguments


def layer_for_check(layer_class, input_shape, arguments, rng):
    """layer_class(**arguments) built for input_shape (batch first), with random parameters.

    Random normal parameters, so that a forgotten factor cannot hide behind
    gamma = 1 or zero biases.
    """
    try:
        layer = layer_class(**arguments)
    except TypeError as error:
        raise Stop(f"{layer_class.__name__}(**{arguments}): {error}; it takes "
                   f"{inspect.signature(layer_class)}: give them as "
                   f"--args '{{\"name\": value}}'") from None
    try:
        common.build_for_check(layer, input_shape[1:])
    except (ValueError, TypeError, IndexError) as error:
        raise Stop(f"{interface.constructor_call(layer)} cannot take inputs of shape "
                   f"{input_shape}: {error}; give another --input-shape (batch first)") from None
    for name in layer.parameter_names:
        setattr(layer, name, rng.normal(size=getattr(layer, name).shape))
    return layer


def print_gradient_errors(name, analytic, numeric, n):
    """One line per array: relative error, verdict, worst index; returns True when all are right."""
    print(f"{'array':12} {'shape':14} {'rel. error':>10}  {'verdict':8}  "
          f"worst index: backward vs numerical")
    verdicts = {}
    for array in analytic:
        error, worst = numerical.relative_error(analytic[array], numeric[array])
        verdicts[array] = 'right' if error < RIGHT else 'doubtful' if error < WRONG else 'WRONG'
        shown = colour(f"{verdicts[array]:8}",
                       {'right': GREEN, 'doubtful': YELLOW, 'WRONG': RED}[verdicts[array]])
        print(f"{array:12} {str(analytic[array].shape):14} {error:10.1e}  {shown}  {worst}: "
              f"{analytic[array][worst]:.6g} vs {numeric[array][worst]:.6g}")
        if verdicts[array] == 'WRONG' and common.gradient_hint(analytic[array], numeric[array], n):
            print(f"  {array}: {common.gradient_hint(analytic[array], numeric[array], n)}")
    for verdict, meaning in (('WRONG', f"relative error > {WRONG:g}: a bug"),
                             ('doubtful', f"{RIGHT:g} to {WRONG:g}: a kink nearby (ReLU at 0, "
                                          f"a tie in a max) or a small bug; try another --seed")):
        arrays = [array for array, value in verdicts.items() if value == verdict]
        if arrays:
            print(f"{name}: backward {verdict} for {', '.join(arrays)} ({meaning})")
    if all(value == 'right' for value in verdicts.values()):
        print(f"{name}: backward is right (every relative error < {RIGHT:g})")
        return True
    return False


def gradcheck(args):
    solution = import_solution(args.solution)
    classes = layer_classes(solution)
    names = [name for name in classes if name.lower() == args.layer.lower()]
    if not names:
        raise Stop(f"no layer {args.layer} in {args.solution}; its layers: {', '.join(classes)}")
    default_shape, default_arguments = GRADCHECK_DEFAULTS.get(names[0], OTHER_LAYER_DEFAULTS)
    shape = default_shape if args.input_shape is None else parse_shape(args.input_shape)
    arguments = default_arguments if args.args is None else parse_arguments(args.args)
    rng = np.random.default_rng(args.seed)
    layer = layer_for_check(classes[names[0]], shape, arguments, rng)
    print(f"{interface.constructor_call(layer)} on random inputs {shape}, float64, training mode, "
          f"seed {args.seed}")
    print(f"loss = sum(outputs * G), G random; parameter gradients (batch means) compared times "
          f"n = {shape[0]}")
    inputs = rng.normal(size=shape)
    analytic, numeric = call_student(solution, names[0], numerical.gradients, layer, inputs,
                                     args.seed)
    return 0 if print_gradient_errors(names[0], analytic, numeric, shape[0]) else 1


# ================================== train ===================================

def training_case(test):
    """The case of a training test (mnist, cifar): its dataset, function and split."""
    fixtures = {name: fixture for name, fixture in common.find_fixtures().items()
                if fixture.is_training}
    if test not in fixtures:
        raise Stop(f"unknown training test {test}; valid names: {', '.join(fixtures)}")
    return fixtures[test].load_case(fixtures[test].cases[0])


def matplotlib_figure(path):
    """matplotlib's Figure, if it can write `path`: checked before training, not after."""
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise Stop("--plot needs matplotlib, which is not installed: pip install matplotlib "
                   "(or leave out --plot)") from None
    formats = Figure().canvas.get_supported_filetypes()
    if Path(path).suffix[1:].lower() not in formats:
        raise Stop(f"--plot {path}: give a file name ending in one of "
                   f".{', .'.join(formats)}, e.g. curves.png")
    return Figure


def check_output(option, path):
    """A usage error, before training, if `path` cannot be written."""
    if path is not None and (Path(path).is_dir() or not Path(path).resolve().parent.is_dir()):
        raise Stop(f"{option} {path}: not a file in an existing directory")


def plot_curves(figure_type, model, path, title):
    """Saves the model's loss and accuracy histories, train and validation, as an image."""
    figure = figure_type(figsize=(10, 4), layout='constrained')
    figure.suptitle(title)
    for axes, metric in zip(figure.subplots(1, 2), ('loss', 'accuracy')):
        for part, label in (('train', 'train (mean during the epoch)'),
                            ('valid', 'valid (after the epoch)')):
            history = getattr(model, f"{metric}_{part}_history")
            axes.plot(range(1, len(history) + 1), history, 'o-', label=label)
        axes.set(xlabel='epoch', ylabel=metric)
        axes.xaxis.get_major_locator().set_params(integer=True)
        axes.grid(alpha=0.3)
        axes.legend()
    figure.savefig(path, dpi=100)


def train(args):
    case = training_case(args.test)
    figure_type = matplotlib_figure(args.plot) if args.plot else None
    check_output('--plot', args.plot)
    check_output('--save', args.save)
    if args.epochs is not None and args.epochs < 1:
        raise Stop(f"--epochs {args.epochs}: give at least 1")
    solution = import_solution(args.solution)
    try:
        x_train, y_train, x_test, y_test = DATASETS[case['dataset']]()
    except DataUnavailable as error:
        raise Stop(str(error), 1) from None
    interface.Model.epoch_limit = args.epochs
    try:
        model, seconds = call_student(solution, case['function'], common.train_model,
                                      solution, case, x_train, y_train)
    finally:
        interface.Model.epoch_limit = None
    if not isinstance(model, interface.Model):
        raise Stop(f"{case['function']} returned {type(model).__name__}, expected a Model", 1)
    loss, accuracy = call_student(solution, 'model.evaluate', model.evaluate, x_test, y_test)
    print(f"{case['function']}: final test accuracy {accuracy:.4f}, test loss {loss:.4f} "
          f"({len(model.loss_train_history)} epochs, {seconds:.0f} s of training)")
    if figure_type and model.loss_train_history:
        plot_curves(figure_type, model, args.plot,
                    f"{case['function']}: test accuracy {accuracy:.4f}")
        print(f"loss and accuracy curves saved to {args.plot}")
    elif figure_type:
        print("no curves to plot: the model's histories are empty (train it with model.fit)")
    if args.save:
        model.save(args.save)
        print(f"model saved to {args.save} (in Python: import solution; from interface import "
              f"Model; model = Model.load({str(args.save)!r}))")
    return 0


def staff_command(argv):
    try:
        from staff import cli
    except ImportError:
        sys.exit(f"'{argv[0]}' is a course-staff command; the staff package is not part "
                 f"of the student kit")
    return cli.main(argv)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in STAFF_COMMANDS:
        return staff_command(argv)
    parser = argparse.ArgumentParser(
        prog='./run.py', description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest='command', required=True, metavar='command')
    solution = argparse.ArgumentParser(add_help=False)
    solution.add_argument('--solution', metavar='FILE', default=str(common.KIT_DIR / 'solution.py'),
                          help='the solution file to use (default: solution.py beside run.py)')
    tests = commands.add_parser('unittest', parents=[solution],
                                help='run unit tests against solution.py')
    tests.add_argument('names', nargs='*', help='test names (default: all)')
    tests.set_defaults(run=unittest)
    check = commands.add_parser(
        'gradcheck', parents=[solution], help="check a layer's backward pass numerically",
        description="Compares the layer's backward pass (input gradient and every parameter "
                    "gradient) with float64 central differences and prints the relative error "
                    "|a - b| / (|a| + |b|) of each array at its worst index. Dropout keeps one "
                    "mask (np.random is reseeded before every forward pass); BatchNormalization "
                    "runs in training mode.")
    check.add_argument('layer',
                       help='a Layer class of solution.py, e.g. Conv2D (your own ones too)')
    check.add_argument('--input-shape', metavar='SHAPE',
                       help='inputs with the batch first, e.g. 4,3,8,8 '
                            '(default: one for each layer of the kit)')
    check.add_argument('--args', metavar='JSON',
                       help='constructor arguments as JSON, e.g. \'{"output_channels": 2}\'')
    check.add_argument('--seed', type=int, default=0, metavar='N',
                       help='for the inputs and parameters (default 0)')
    check.set_defaults(run=gradcheck)
    training = commands.add_parser(
        'train', parents=[solution], help='train the model of a training test, plot, save',
        description="Runs train_mnist_model (mnist) or train_cifar10_model (cifar) of solution.py "
                    "on the data and split of the unit test, then prints the test accuracy. "
                    "--epochs only shortens the training: to train longer, change your function.")
    training.add_argument('test', metavar='mnist|cifar', help='the training test')
    training.add_argument('--epochs', type=int, metavar='N',
                          help='stop after N epochs for a quick run: Model.fit stops there, '
                               'whatever epochs your function asks for (it never adds epochs)')
    training.add_argument('--plot', metavar='PNG',
                          help='save the loss and accuracy curves (matplotlib)')
    training.add_argument('--save', metavar='NPZ',
                          help='save the model (interface.Model.load reads it)')
    training.set_defaults(run=train)
    for name in STAFF_COMMANDS:
        commands.add_parser(name, help=f"course staff: see ./run.py {name} --help")
    args = parser.parse_args(argv)
    if not Path(args.solution).is_file():
        parser.error(f"no solution file at {args.solution}")
    try:
        return args.run(args)
    except Stop as stop:
        print(stop, file=sys.stderr)
        return stop.status
    except KeyboardInterrupt:
        print('interrupted', file=sys.stderr)
        return 130


if __name__ == '__main__':
    sys.exit(main())
