#!/usr/bin/env python3
"""Command line of the kit.

  ./run.py unittest relu         run one unit test against solution.py
  ./run.py unittest relu dense   run several
  ./run.py unittest              run them all (same as: ./run.py unittest all)
  ./run.py gradcheck Conv2D      check a layer's backward pass against numerical gradients
  ./run.py train mnist --epochs 2 --plot curves.png --save model.npz
                                 train your train_mnist_model (or: cifar), report
                                 its test accuracy, plot its curves, save the model
  ./run.py profile cifar         time each layer of your train_cifar10_model's network
                                 and project the whole training's time

Each command takes --solution FILE to use another solution.py; see
./run.py <command> --help. Exit status: 0 when everything passed, 1 when
anything failed, 2 for a usage error such as an unknown test name.
You need not read run.py itself: the commands above are all it does.
"""
import argparse
import faulthandler
import inspect
import json
import linecache
import multiprocessing
import multiprocessing.connection
import os
import re
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import common
import gradcheck as numerical
import interface
from common import Verdict
from datasets import CLASSES, DATASETS, RAW_DATASETS, DataUnavailable
from datasets import TRAINING_SHAPES as DATASET_SHAPES

# the names of staff/cli.py COMMANDS
STAFF_COMMANDS = ('make-fixtures', 'check-fixtures', 'make-kit', 'grade', 'similarity',
                  'serve')


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


def import_failure(error, path):
    """Why solution.py did not import, with the student's lines."""
    if isinstance(error, SystemExit):
        return common.exit_message(error, path)
    return f"solution.py does not import:\n{common.student_traceback(error, path).rstrip()}"


def import_solution(path):
    """The solution module; one that does not import stops the command with its traceback."""
    try:
        return common.load_solution(path)
    except (Exception, SystemExit) as error:  # a broken solution.py still gets a verdict
        raise Stop(import_failure(error, path), 1) from None


def call_student(solution, what, function, *args):
    """function(*args), where an exception of the student's code stops the command."""
    try:
        return function(*args)
    except NotImplementedError as error:
        raise Stop(f"{what}: not implemented ({error})", 1) from None
    except (common.CheckFailed, numerical.GradientCheckError) as error:
        raise Stop(str(error), 1) from None
    except SystemExit as error:
        raise Stop(f"{what}: {common.exit_message(error, solution.__file__)}", 1) from None
    except Exception as error:  # the student's code raised: show their frames only
        raise Stop(f"{what} raised an exception:\n"
                   f"{common.student_traceback(error, solution.__file__).rstrip()}", 1) from None


def find_fixtures():
    """{test: Fixture} of tests/, damaged ones included; no tests at all stops the command."""
    if not common.TESTS_DIR.is_dir():
        raise Stop(f"no folder {common.TESTS_DIR}: {common.REEXTRACT}", 1)
    fixtures = common.find_fixtures(keep_damaged=True)
    if not fixtures:
        raise Stop(f"no fixture directories (NN_unittest_<test>_input) in {common.TESTS_DIR}: "
                   f"{common.REEXTRACT}", 1)
    return fixtures


def matching(name, fixtures):
    """The fixtures a command-line name means: a test (relu), a title (ReLU), a section (2.1.1)."""
    if name.lower() == 'all':
        return list(fixtures)
    return [fixture for fixture in fixtures
            if name.lower() in (fixture.test.lower(), fixture.title.lower())
            or name == fixture.section]


def select_fixtures(names):
    """The fixtures to run, in order; an unknown name is a usage error."""
    fixtures = list(find_fixtures().values())
    selected = {}
    for name in names or ['all']:
        if not (found := matching(name, fixtures)):
            raise Stop(f"unknown test {name}; valid names: all, "
                       f"{', '.join(fixture.test for fixture in fixtures)} (or a section's title "
                       f"or number, e.g. ReLU or 2.1.1)")
        selected.update((fixture.test, fixture) for fixture in found)
    return list(selected.values())


def score(fixtures, results):
    """The score line of the tests run, counted as the grader does.

    A section passes only when all its tests pass; a section with some of
    its tests left out of the run is not scored.
    """
    tests, points = {}, {}
    for fixture in find_fixtures().values():
        tests.setdefault(fixture.section, []).append(fixture.test)
        points[fixture.section] = fixture.points
    sections = dict.fromkeys(fixture.section for fixture in fixtures if fixture.test in results)
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


# ========================= unittest: the test child =========================
# ./run.py unittest runs the tests in a child process (numpy and solution.py
# are imported once for all of them) and waits for each result at most the
# test's time limit. Past it, or when the child dies, the parent reads where
# the child was from the traceback that faulthandler wrote into a file, and
# starts a new child for the remaining tests. multiprocessing's "spawn" and
# faulthandler work alike on Linux, macOS and Windows.

GRACE = 2.0  # seconds the parent waits beyond a limit, for the child's traceback to be written
WAIT_SLICE = 0.5  # seconds of each wait for the child


def training_data_problem(fixture):
    """Why a training test's dataset cannot be loaded (it is downloaded if missing), or ''
    (also for a damaged case: running it says so)."""
    try:
        dataset = fixture.load_case(fixture.cases[0])['dataset']
    except common.FixtureError:
        return ''
    try:
        RAW_DATASETS[dataset]()
    except DataUnavailable as error:
        return str(error)
    return ''


def child_main(connection, solution_path, dump_path, limit):
    """The child: imports solution.py, then runs each fixture it is sent until it gets None.

    Messages to the parent: ('imported', '') or (Verdict.IMPORT_FAILED, message),
    ('training', '') when a training test starts to train, ('result', Result).
    Ctrl-C ends it quietly: the parent reports it.
    """
    with open(dump_path, 'w') as dump:
        faulthandler.enable(dump)  # a crash writes its traceback there too
        try:
            with common.os_exit_forbidden():
                serve(connection, solution_path, dump, limit)
        except KeyboardInterrupt:
            pass


def serve(connection, solution_path, dump, limit):
    """The child's work: the import, then one fixture after another, each within its limit.

    At a limit, faulthandler writes the traceback and ends the child itself,
    which stops it even when the parent is gone.
    """
    faulthandler.dump_traceback_later(limit, exit=True, file=dump)
    try:
        solution = common.load_solution(solution_path)
    except BaseException as error:  # SyntaxError, sys.exit(), anything
        connection.send((Verdict.IMPORT_FAILED, import_failure(error, solution_path)))
        return
    faulthandler.cancel_dump_traceback_later()
    connection.send(('imported', ''))
    while (request := receive_request(connection)) is not None:
        fixture, limit = request
        dump.seek(0)
        dump.truncate()
        if limit:
            faulthandler.dump_traceback_later(limit, exit=True, file=dump)
        connection.send(('result', run_in_child(connection, fixture, solution)))
        faulthandler.cancel_dump_traceback_later()


def receive_request(connection):
    """The parent's next (fixture, limit); None when it is done or gone."""
    try:
        return connection.recv()
    except (EOFError, OSError):
        return None


def run_in_child(connection, fixture, solution):
    """The fixture's Result; a training test first checks that its data loads."""
    if fixture.is_training and not fixture.damage:
        if problem := training_data_problem(fixture):
            return common.Result(fixture.test, Verdict.NOT_AVAILABLE, problem)
        connection.send(('training', ''))
    try:
        return common.run_test(fixture, solution)
    finally:
        sys.stdout.flush()


def student_lines(dump, solution_path):
    """The student's frames in a faulthandler dump, innermost last, with their source lines."""
    frames = re.findall(r'File "(.*)", line (\d+) in (\S+)', dump)
    lines = [f'  File "{file}", line {line}, in {function}\n'
             f'    {linecache.getline(file, int(line)).strip()}'
             for file, line, function in reversed(frames)
             if Path(file).resolve() == Path(solution_path).resolve()]
    return '\n'.join(lines) or '  (not in solution.py: no line of yours was running)'


class Child:
    """A running test child and the file it dumps tracebacks into."""

    def __init__(self, solution_path, limit):
        self.solution_path = solution_path
        handle, self.dump_path = tempfile.mkstemp(prefix='nn-kit-', suffix='.traceback')
        os.close(handle)
        context = multiprocessing.get_context('spawn')
        self.connection, child_end = context.Pipe()
        self.process = context.Process(target=child_main, daemon=True,
                                       args=(child_end, solution_path, self.dump_path, limit))
        self.process.start()
        child_end.close()

    def receive(self, timeout):
        """The child's next message; None if it ran past `timeout` seconds or ended.

        timeout None waits as long as it takes. It waits in slices of WAIT_SLICE
        seconds, so that Ctrl-C is seen on every platform.
        """
        end = None if timeout is None else time.monotonic() + timeout
        ready = []
        while not ready and (end is None or time.monotonic() < end):
            wait = WAIT_SLICE if end is None else max(min(WAIT_SLICE, end - time.monotonic()), 0)
            ready = multiprocessing.connection.wait([self.connection, self.process.sentinel], wait)
        if self.connection in ready or (ready and self.connection.poll()):
            try:
                return self.connection.recv()
            except (EOFError, OSError):
                pass
        if ready:
            self.process.join(5)  # it ended: its exit code is known once it is reaped
        return None

    def stop(self):
        """Ends the child; returns where it was, from its traceback dump."""
        self.process.kill()
        self.process.join()
        self.connection.close()
        where = student_lines(Path(self.dump_path).read_text(errors='replace'), self.solution_path)
        Path(self.dump_path).unlink(missing_ok=True)
        return where

    def close(self):
        """Lets the child finish on its own, then cleans up."""
        try:
            self.connection.send(None)
        except OSError:
            pass
        self.process.join(5)
        self.stop()


class Runner:
    """Runs fixtures in a test child, one at a time, within each test's time limit."""

    def __init__(self, solution_path, limit):
        self.solution_path, self.limit, self.child = solution_path, limit, None
        self.trained = False  # whether the last test run was a training that started

    def start(self):
        """A new child with solution.py imported; a solution that does not import stops all."""
        begin = time.perf_counter()
        self.child = Child(self.solution_path, self.limit)
        message = self.child.receive(self.limit + GRACE)
        if message is None:
            code = self.child.process.exitcode
            where = self.child.stop()
            self.child = None
            cause = (f"ran past the {self.limit:g} s limit"
                     if code is None or time.perf_counter() - begin >= self.limit else
                     f"ended the process (exit code {code})")
            raise Stop(f"solution.py does not import: it {cause} at\n{where}", 1)
        if message[0] == Verdict.IMPORT_FAILED:
            self.close()
            raise Stop(message[1], 1)

    def run(self, fixture):
        """The fixture's Result; announces a training test when it starts to train.

        During a training test, the first Ctrl-C stops the training early
        (Model.fit ends on it, in the child) and the test goes on.
        """
        if self.child is None:
            self.start()
        limit = None if fixture.is_training else self.limit
        begin, interrupted, self.trained = time.perf_counter(), False, False
        self.child.connection.send((fixture, limit))
        while True:
            try:
                message = self.child.receive(limit and limit + GRACE)
            except KeyboardInterrupt:
                if limit or interrupted:
                    raise
                interrupted = True
                continue
            if message is None or message[0] == 'result':
                break
            self.trained = True
            print("training... (Ctrl-C stops the training early)", flush=True)
        if message is not None:
            return message[1]
        if interrupted:
            raise KeyboardInterrupt
        seconds = time.perf_counter() - begin
        code = self.child.process.exitcode
        where = self.child.stop()
        self.child = None
        if limit and (code is None or seconds >= limit):  # at its limit the child ends itself
            return common.Result(fixture.test, Verdict.TIME_LIMIT, f"stopped after the {limit:g} s "
                                 f"limit (--time changes it) at\n{where}", seconds)
        return common.Result(fixture.test, Verdict.ERROR, f"the process running the test ended "
                             f"(exit code {code}) at\n{where}", seconds)

    def close(self):
        if self.child is not None:
            self.child.close()
            self.child = None

    def kill(self):
        if self.child is not None:
            self.child.stop()
            self.child = None


def result_line(fixture, text):
    return f"{fixture.section:8} {fixture.test:13} {fixture.points:6.1f}  {text}"


def unittest(args):
    fixtures = select_fixtures(args.names)
    if args.time <= 0:
        raise Stop(f"--time {args.time:g}: give a positive number of seconds")
    runner = Runner(args.solution, args.time)
    runner.start()
    results = {}
    print(f"{'section':8} {'test':13} {'points':>6}  {'result':16} {'time':>7}")
    try:
        for fixture in fixtures:
            print(result_line(fixture, ''), end='', flush=True)
            result = runner.run(fixture)
            results[fixture.test] = result
            verdict = colour(f"{result.verdict.upper():16}", VERDICT_COLOURS[result.verdict])
            print(f"{result_line(fixture, '') if runner.trained else ''}{verdict} "
                  f"{result.seconds:6.2f}s", flush=True)
            if result.message:
                print('  ' + result.message.replace('\n', '\n  '))
    except KeyboardInterrupt:
        runner.kill()
        print(f"\ninterrupted (Ctrl-C) during test {fixture.test}; the score of the tests that "
              f"finished:")
        print(score(fixtures, results))
        return 130
    finally:
        runner.close()
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


def builds(layer_class, arguments, input_shape):
    """Whether layer_class(**arguments) builds for input_shape (batch first)."""
    try:
        common.build_for_check(layer_class(**arguments), input_shape[1:])
    except (Exception, SystemExit):  # any failure means no
        return False
    return True


def layer_for_check(layer_class, input_shape, arguments, rng, default_shape=None):
    """layer_class(**arguments) built for input_shape (batch first), with random parameters.

    Random normal parameters, so that a forgotten factor cannot hide behind
    gamma = 1 or zero biases. A build that raises blames the input shape when
    the layer builds for the default shape, and else the student's code.
    """
    try:
        layer = layer_class(**arguments)
    except TypeError as error:
        raise Stop(f"{layer_class.__name__}(**{arguments}): {error}; it takes "
                   f"{inspect.signature(layer_class)}: give them as "
                   f"--args '{{\"name\": value}}'") from None
    call = interface.constructor_call(layer)
    try:
        common.build_for_check(layer, input_shape[1:])
    except NotImplementedError as error:
        raise Stop(f"{call}.build: not implemented ({error})", 1) from None
    except (Exception, SystemExit) as error:  # the student's build, or the shape
        if default_shape not in (None, input_shape) and builds(layer_class, arguments,
                                                                default_shape):
            raise Stop(f"{call} cannot take inputs of shape {input_shape}: {error}; give another "
                       f"--input-shape (batch first)") from None
        where = common.student_traceback(error, inspect.getfile(layer_class)).rstrip()
        raise Stop(f"{call}.build() for inputs of shape {input_shape} raised an exception:\n"
                   f"{where}", 1) from None
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
    if args.seed < 0:
        raise Stop(f"--seed {args.seed}: give a whole number of 0 or more")
    rng = np.random.default_rng(args.seed)
    layer = layer_for_check(classes[names[0]], shape, arguments, rng, default_shape)
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
    fixtures = {name: fixture for name, fixture in find_fixtures().items() if fixture.is_training}
    if test not in fixtures:
        raise Stop(f"unknown training test {test}; valid names: {', '.join(fixtures)}")
    try:
        return fixtures[test].load_case(fixtures[test].cases[0])
    except common.FixtureError as error:
        raise Stop(str(error), 1) from None


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
        axes.set(xlabel='epoch', ylabel=metric, xlim=(0.5, len(model.loss_train_history) + 0.5))
        axes.xaxis.get_major_locator().set_params(integer=True, min_n_ticks=1)
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
    epochs = len(model.loss_train_history)
    print(f"{case['function']}: final test accuracy {accuracy:.4f}, test loss {loss:.4f} "
          f"({epochs} epoch{'s' * (epochs != 1)}, {seconds:.0f} s of training)")
    if figure_type and epochs:
        plot_curves(figure_type, model, args.plot,
                    f"{case['function']}: test accuracy {accuracy:.4f}")
        print(f"loss and accuracy curves saved to {args.plot}")
    elif figure_type and getattr(model, 'interrupted', False):
        print("no curves to plot: training was stopped (Ctrl-C) before its first epoch finished")
    elif figure_type:
        print("no curves to plot: the model's histories are empty (train it with model.fit)")
    if args.save:
        model.save(args.save)
        print(f"model saved to {args.save} (in Python: import solution; from interface import "
              f"Model; model = Model.load({str(args.save)!r}))")
    return 0


# ================================= profile ==================================

def recording_fit(calls):
    """A stand-in for Model.fit that trains nothing: it appends (model, batch_size, epochs) to
    calls and NaN to the histories, so that code which counts finished epochs goes on."""
    def fit(model, x_train, y_train, batch_size, epochs, *args, **kwargs):
        calls.append((model, batch_size, epochs))
        for history in (model.loss_train_history, model.accuracy_train_history,
                        model.loss_valid_history, model.accuracy_valid_history):
            history.extend([np.nan] * epochs)
    return fit


def network_of(solution, case, rng):
    """(model, batch size, epochs in all) of the case's training function, trained not at all.

    The function runs on 100 random training samples of the dataset's shapes
    (and the validation set's size), with Model.fit replaced by recording_fit; the
    batch size is the first fit call's.
    """
    shape = DATASET_SHAPES[case['dataset']]
    x = rng.normal(size=(case['valid_size'] + 100, *shape[1:])).astype(np.float32)
    y = np.eye(CLASSES, dtype=np.float32)[rng.integers(0, CLASSES, size=len(x))]
    calls, fit = [], interface.Model.fit
    interface.Model.fit = recording_fit(calls)
    try:
        call_student(solution, case['function'], common.train_model, solution, case, x, y)
    finally:
        interface.Model.fit = fit
    if not calls:
        raise Stop(f"{case['function']} never called model.fit: nothing to profile", 1)
    model, batch_size, _ = calls[0]
    return model, batch_size, sum(epochs for _, _, epochs in calls)


def timed(function, *args):
    """(function(*args), seconds)."""
    start = time.perf_counter()
    result = function(*args)
    return result, time.perf_counter() - start


def profile_batch(model, x, y):
    """{layer index: [forward, backward, update seconds]} of one training step on (x, y)."""
    seconds = {index: [0.0, 0.0, 0.0] for index in range(len(model.layers))}
    model.set_training(True)
    for index, layer in enumerate(model.layers):
        x, seconds[index][0] = timed(layer, x)
    grad = model.loss.gradient(y, x)
    for index in reversed(range(len(model.layers))):
        grad, seconds[index][1] = timed(model.layers[index].backward, grad)
    for index, layer in enumerate(model.layers):
        _, seconds[index][2] = timed(layer.update_parameters)
    return seconds


def profile(args):
    case = training_case(args.test)
    if args.batches < 1:
        raise Stop(f"--batches {args.batches}: give at least 1")
    solution = import_solution(args.solution)
    rng = np.random.default_rng(0)
    model, batch_size, epochs = network_of(solution, case, rng)
    shape = (batch_size, *model.layers[0].input_shape)
    x = rng.normal(size=shape).astype(np.float32)
    y = np.eye(model.layers[-1].output_shape[0], dtype=np.float32)[rng.integers(
        0, model.layers[-1].output_shape[0], size=batch_size)]
    runs = [call_student(solution, 'the training step', profile_batch, model, x, y)
            for _ in range(args.batches + 1)][1:]  # the first one warms up
    mean = {index: np.median([run[index] for run in runs], axis=0) for index in runs[0]}
    step = sum(sum(times) for times in mean.values())
    print(f"{case['function']}: batch size {batch_size}, {epochs} epochs; median of {args.batches} "
          f"training steps on random inputs {shape}")
    names = [interface.constructor_call(layer) for layer in model.layers]
    width = max(len(name) for name in [*names, 'layer'])
    print(f"{'layer':{width}}  {'forward ms':>10}  {'backward ms':>11}  {'update ms':>9}  "
          f"{'share':>5}")
    for index, name in enumerate(names):
        forward, backward, update = mean[index]
        print(f"{name:{width}}  {1e3 * forward:10.2f}  {1e3 * backward:11.2f}  "
              f"{1e3 * update:9.2f}  {(forward + backward + update) / step:5.0%}")
    forward, backward, update = np.sum(list(mean.values()), axis=0)
    print(f"{'one training step':{width}}  {1e3 * forward:10.2f}  {1e3 * backward:11.2f}  "
          f"{1e3 * update:9.2f}  100%")
    samples = DATASET_SHAPES[case['dataset']][0] - case['valid_size']
    batches = -(-samples // batch_size)
    forward = sum(times[0] for times in mean.values()) / batch_size  # seconds per sample
    total = epochs * (batches * step + case['valid_size'] * forward)
    verdict = 'within' if total <= case['time_limit'] else 'OVER'
    print(f"projected training: {epochs} epochs x ({batches} steps of {step:.3f} s + validation) "
          f"= {total / 60:.1f} min, {verdict} the limit of {case['time_limit'] / 60:g} min "
          f"(on this machine, as busy as it is now)")
    return 0 if total <= case['time_limit'] else 1


def staff_command(argv):
    try:
        from staff import cli
    except ImportError:
        sys.exit(f"'{argv[0]}' is a course-staff command; the staff package is not part "
                 f"of the student kit")
    return cli.main(argv)


def training_command(commands, solution, name, summary, description):
    """A subcommand that takes a training test (mnist or cifar) and --solution."""
    command = commands.add_parser(name, parents=[solution], help=summary, description=description)
    command.add_argument('test', metavar='mnist|cifar', help='the training test')
    return command


def build_parser():
    """The student commands' argument parser."""
    parser = argparse.ArgumentParser(
        prog='./run.py', description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest='command', required=True, metavar='command')
    solution = argparse.ArgumentParser(add_help=False)
    solution.add_argument('--solution', metavar='FILE', default=str(common.KIT_DIR / 'solution.py'),
                          help='the solution file to use (default: solution.py beside run.py)')
    tests = commands.add_parser('unittest', parents=[solution],
                                help='run unit tests against solution.py')
    tests.add_argument('names', nargs='*', help='tests (relu), titles (ReLU) or section numbers '
                                                '(2.1.1); default: all')
    tests.add_argument('--time', type=float, default=common.TIME_LIMIT, metavar='SECONDS',
                       help=f"time limit of each test but mnist and cifar (default "
                            f"{common.TIME_LIMIT} s, as in the checking system)")
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
    training = training_command(
        commands, solution, 'train', 'train the model of a training test, plot, save',
        "Runs train_mnist_model (mnist) or train_cifar10_model (cifar) of solution.py on the data "
        "and split of the unit test, then prints the test accuracy. --epochs only shortens the "
        "training: to train longer, change your function.")
    training.add_argument('--epochs', type=int, metavar='N',
                          help='stop after N epochs for a quick run: Model.fit stops there, '
                               'whatever epochs your function asks for (it never adds epochs)')
    training.add_argument('--plot', metavar='PNG',
                          help='save the loss and accuracy curves (matplotlib)')
    training.add_argument('--save', metavar='NPZ',
                          help='save the model (interface.Model.load reads it)')
    training.set_defaults(run=train)
    profiling = training_command(
        commands, solution, 'profile', "time each layer of your training model's network",
        "Builds the network of train_mnist_model (mnist) or train_cifar10_model (cifar) of "
        "solution.py without training it (model.fit is recorded, not run), times the forward "
        "pass, backward pass and update of each layer on a few batches of random inputs, and "
        "projects the time of the whole training run against the unit test's limit. Exit status "
        "1 when the projection is over it.")
    profiling.add_argument('--batches', type=int, default=3, metavar='N',
                           help='training steps to time, after one to warm up (default 3)')
    profiling.set_defaults(run=profile)
    if (common.KIT_DIR / 'staff').is_dir():  # the student kit has no staff/: no staff commands
        for name in STAFF_COMMANDS:
            commands.add_parser(name, help=f"course staff: see ./run.py {name} --help")
    return parser


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in STAFF_COMMANDS:
        return staff_command(argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    if not Path(args.solution).is_file():
        parser.error(f"no solution file at {args.solution}")
    try:
        with common.os_exit_forbidden():  # solution.py's os._exit() is reported, not obeyed
            return args.run(args)
    except Stop as stop:
        print(stop, file=sys.stderr)
        return stop.status
    except KeyboardInterrupt:
        print('interrupted', file=sys.stderr)
        return 130


def quiet_on_closed_pipe(status_of):
    """status_of()'s exit status; 1 and no traceback when stdout closes early (... | head -1)."""
    try:
        status = status_of()
        sys.stdout.flush()
        return status
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # nothing to flush at exit
        return 1


if __name__ == '__main__':
    sys.exit(quiet_on_closed_pipe(main))
