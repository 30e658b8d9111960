"""./run.py check-fixtures [DIR]: validates fixture directories before they ship.

Every NN_unittest_<test>_input directory in DIR (default tests/) must have a
complete description.json whose section, title, points and number agree
with the points table; case pickles that load through the restricted
unpickler and hold only numbers (float arrays in float64, no NaN or inf) in
shapes that fit together; and the reference solution must pass every case.
Training cases are checked structurally (dataset, function, bars) but not
trained: ./run.py unittest <test> trains them. Each table test needs a
directory and each directory a table test.
"""
import argparse
from pathlib import Path

import numpy as np

import common
from datasets import DATASETS
from pickles import FixtureError
from staff.cli import UsageError, add_reference_argument, find_table
from staff.fixtures import directory_name
from staff.points import EXTENDED_TABLE

PLAIN = (str, int, float, bool, type(None), slice)


class Invalid(Exception):
    """A fixture case breaks a rule; the message says which."""


def leaves(value, where):
    """(where, leaf) for every array or plain value in nested dicts, lists and tuples."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield from leaves(item, f"{where}[{key!r}]")
    elif isinstance(value, (list, tuple)):
        for number, item in enumerate(value):
            yield from leaves(item, f"{where}[{number}]")
    else:
        yield where, value


def check_values(case):
    """Only numbers: arrays of numbers, float arrays in float64, all finite."""
    for where, value in leaves(case, 'case'):
        if isinstance(value, np.ndarray):
            if type(value) is not np.ndarray or value.dtype.kind not in 'biuf':
                raise Invalid(f"{where}: an array of dtype {value.dtype}, expected numbers")
            if value.dtype.kind == 'f' and value.dtype != np.float64:
                raise Invalid(f"{where}: dtype {value.dtype}, expected float64")
            if not np.all(np.isfinite(value)):
                raise Invalid(f"{where}: has NaN or inf")
        elif isinstance(value, np.generic) and value.dtype.kind not in 'biuf':
            raise Invalid(f"{where}: a numpy {value.dtype} scalar, expected a number")
        elif isinstance(value, float) and not np.isfinite(value):
            raise Invalid(f"{where}: {value}")
        elif not isinstance(value, (np.generic, *PLAIN)):
            raise Invalid(f"{where}: a {type(value).__name__}, expected arrays and plain data")


def require(condition, message):
    if not condition:
        raise Invalid(message)


def check_layer_shapes(case):
    input_shape = tuple(case['input_shape'])
    for number, call in enumerate(case['calls'], 1):
        inputs, grad_outputs = call['inputs'], call['grad_outputs']
        require(inputs.shape[1:] == input_shape,
                f"call {number}: inputs of shape {inputs.shape}, input_shape {input_shape}")
        if grad_outputs is not None:
            require(len(grad_outputs) == len(inputs), f"call {number}: grad_outputs for "
                    f"{len(grad_outputs)} samples, inputs for {len(inputs)}")


def check_optimizer_shapes(case):
    for number, (name, gradient) in enumerate(case['steps'], 1):
        require(name in case['parameters'], f"step {number}: unknown parameter {name!r}")
        require(gradient.shape == case['parameters'][name].shape,
                f"step {number}: gradient of shape {gradient.shape} for {name} of shape "
                f"{case['parameters'][name].shape}")


def check_loss_shapes(case):
    require(case['y_gt'].shape == case['y_pred'].shape and case['y_gt'].ndim == 2,
            f"y_gt {case['y_gt'].shape} and y_pred {case['y_pred'].shape}: expected both (n, d)")


def check_training(case):
    require(case['dataset'] in DATASETS, f"unknown dataset {case['dataset']!r}")
    require(isinstance(case['function'], str), "function: expected a name")
    require(0 < case['min_accuracy'] < 1, f"min_accuracy {case['min_accuracy']}: expected 0..1")
    require(case['time_limit'] > 0 and case['valid_size'] > 0,
            "time_limit and valid_size must be > 0")


def no_shapes(case):
    """Nothing to fit together: the arguments are checked by running the reference."""


SHAPE_CHECKS = {  # common.CHECKS kind: the structural check of its cases
    'layer': check_layer_shapes, 'max_pooling': check_layer_shapes,
    'dropout': check_layer_shapes, 'optimizer': check_optimizer_shapes,
    'loss': check_loss_shapes, 'training': check_training,
    'function': no_shapes, 'initialization': no_shapes,
}


def check_expected(case):
    """The alternatives of an expected quantity share one shape."""
    for what, expected in case.get('expected', {}).items():
        if isinstance(expected, list):
            shapes = {np.shape(option) for option in expected}
            require(len(shapes) == 1, f"expected {what!r}: alternatives of shapes {sorted(shapes)}")


def check_case(fixture, entry, reference):
    """Raises Invalid for a bad case; returns True when it was checked structurally only."""
    if entry.get('kind') not in common.CHECKS:
        raise Invalid(f"unknown kind {entry.get('kind')!r}; known: {', '.join(common.CHECKS)}")
    try:
        case = fixture.load_case(entry)
    except FixtureError as error:
        raise Invalid(f"does not load: {error}") from None
    check_values(case)
    try:
        SHAPE_CHECKS[case['kind']](case)
        check_expected(case)
    except (KeyError, TypeError, AttributeError) as error:
        raise Invalid(f"malformed {case['kind']} case ({type(error).__name__}: {error})") from None
    if common.is_training(case):
        require(hasattr(reference, case['function']), f"the reference has no {case['function']}")
        return True
    verdict, results = common.run_case(reference, case)
    if verdict == common.RAN:
        verdict, results = common.verify_case(case, results)
    require(verdict == common.Verdict.PASSED,
            f"the reference does not pass it: {verdict}: {results}")
    return False


def check_description(fixture, position, section):
    """Problems of a fixture's description against its table section and position."""
    problems = []
    if section is None:
        return [f"test {fixture.test!r} is in no section of the table"]
    described = (fixture.section, fixture.title, fixture.points)
    if described != (section.number, section.title, section.points):
        problems.append(f"description says section {fixture.section} {fixture.title!r} "
                        f"{fixture.points:g} points, the table {section.number} "
                        f"{section.title!r} {section.points:g} points")
    if fixture.directory.name != directory_name(position, fixture.test):
        problems.append(f"its name should be {directory_name(position, fixture.test)} (test "
                        f"{fixture.test!r} is number {position} in the table)")
    listed = {entry.get('file') for entry in fixture.cases}
    if stray := sorted(path.name for path in fixture.directory.iterdir()
                       if path.name != 'description.json' and path.name not in listed):
        problems.append(f"files not listed in description.json: {', '.join(stray)}")
    if not fixture.cases:
        problems.append("no cases")
    return problems


def check_directory(directory, table, reference):
    """(problems, lines to print) of every fixture directory in `directory`."""
    numbered = table.numbered_tests()
    positions = {test: (number, section) for number, (section, test) in enumerate(numbered)}
    problems, lines, found = [], [], set()
    for path in sorted(Path(directory).glob('*_unittest_*_input')):
        try:
            fixture = common.Fixture.load(path)
        except FixtureError as error:
            problems.append(str(error))
            continue
        found.add(fixture.test)
        position, section = positions.get(fixture.test, (None, None))
        own = [f"{path.name}: {problem}"
               for problem in check_description(fixture, position, section)]
        structural = 0
        for entry in fixture.cases:
            try:
                structural += check_case(fixture, entry, reference)
            except Invalid as error:
                own.append(f"{path.name}: case {entry.get('name')!r} ({entry.get('file')}): "
                           f"{error}")
        problems += own
        count = f"{len(fixture.cases)} case{'s' * (len(fixture.cases) != 1)}"
        how = (f"{structural} training case{'s' * (structural != 1)} checked structurally only, "
               f"not trained (./run.py unittest {fixture.test} trains it)"
               if structural else 'the reference passes every case')
        lines.append(f"{path.name}: INVALID, {len(own)} problem{'s' * (len(own) != 1)} below"
                     if own else f"{path.name}: ok, {count}; {how}")
    for test in [test for _, test in numbered if test not in found]:
        problems.append(f"no fixture directory for test {test!r} of section "
                        f"{positions[test][1].number}: run ./run.py make-fixtures")
    return problems, lines


def add_arguments(parser):
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.description = __doc__.split('\n\n')[1] + (
        "\n\nExit status: 0 when every directory is valid, 1 otherwise, 2 for a usage error.")
    parser.add_argument('directory', nargs='?', type=Path, default=common.TESTS_DIR, metavar='DIR',
                        help='the folder holding the fixture directories (default: tests/)')
    parser.add_argument('--sections', default=str(EXTENDED_TABLE), metavar='FILE',
                        help="the points table they were made for: a CSV file, or the kit's "
                             "'standard', 'mnist' or 'extended' (default: extended, the table "
                             "of the public fixtures and the hidden sets)")
    add_reference_argument(parser)


def main(args):
    """./run.py check-fixtures: returns the exit status."""
    if not args.directory.is_dir():
        raise UsageError(f"{args.directory}: no such directory")
    table = find_table(args.sections)
    reference = common.load_solution(args.reference, name='reference_for_check')
    problems, lines = check_directory(args.directory, table, reference)
    print('\n'.join(lines))
    if problems:
        print(f"\n{len(problems)} problem{'s' * (len(problems) != 1)}:\n  " + '\n  '.join(problems))
        return 1
    print(f"all {len(lines)} fixture directories in {args.directory} are valid for {args.sections}")
    return 0
