"""Course-staff commands of ./run.py, and their shared command-line plumbing.

Each command module (staff/fixtures.py, validate.py, kit.py, grader.py, similarity.py) adds
its arguments with add_arguments(parser) and runs with main(args) -> exit
status; a usage problem is raised as UsageError (or the kit's FixtureError,
DataUnavailable) and printed here as one line `./run.py COMMAND: ...`, exit 2.
"""
import argparse
import importlib
import re
import sys
from pathlib import Path

import common
from datasets import DataUnavailable
from pickles import FixtureError
from staff.points import TABLES_DIR, load_table


class UsageError(Exception):
    """Bad command line: a missing file, an unknown section, a bad hidden set."""


USAGE_ERRORS = (UsageError, FixtureError, DataUnavailable)
COMMANDS = (  # name, the module with add_arguments(parser) and main(args), help
    ('make-fixtures', 'staff.fixtures', 'regenerate the fixture directories'),
    ('check-fixtures', 'staff.validate', 'validate fixture directories'),
    ('make-kit', 'staff.kit', 'write the student kit (a folder and a zip)'),
    ('grade', 'staff.grader', 'grade submitted solution.py files in a sandbox'),
    ('similarity', 'staff.similarity', 'rank pairs of similar submissions (copies)'),
    ('serve', 'staff.service.serve', 'the checking service: web server, dispatcher'),
)


class Parser(argparse.ArgumentParser):
    """argparse, with a bad argument told in one line (not the whole usage)."""

    def error(self, message):
        self.exit(2, f"{self.prog}: {message}\n")


def existing_file(text):
    """An argparse type: the path of a file that exists."""
    if not Path(text).is_file():
        raise argparse.ArgumentTypeError(f"{text}: no such file")
    return Path(text)


def add_reference_argument(parser):
    """--reference FILE, the reference solution.py, for the commands that build from it."""
    parser.add_argument('--reference', type=existing_file, default=common.KIT_DIR / 'solution.py',
                        metavar='FILE', help='the reference solution.py')


def table_names():
    """The names of the kit's points tables (staff/points/<name>.csv)."""
    return ', '.join(sorted(table.stem for table in TABLES_DIR.glob('*.csv')))


def find_table(name):
    """A points table by path, or by name among the kit's (staff/points/<name>.csv)."""
    path = Path(name)
    if not path.is_file() and (TABLES_DIR / f"{name}.csv").is_file():
        path = TABLES_DIR / f"{name}.csv"
    if not path.is_file():
        raise UsageError(f"--sections {name}: no such points table (the kit's: {table_names()})")
    try:
        return load_table(path)
    except ValueError as error:
        raise UsageError(str(error)) from None


def parse_size(text):
    """'2G', '512M', '1.5GiB', '1000000' -> bytes (at least 1)."""
    match = re.fullmatch(r'(\d+(?:\.\d+)?)\s*([kmgt]?)(i?b)?', text.strip().lower())
    size = match and int(float(match[1]) * 1024 ** 'bkmgt'.index(match[2] or 'b'))
    if not size:
        raise argparse.ArgumentTypeError(f"{text!r}: give a size such as 2G or 512M")
    return size


def main(argv):
    """./run.py <staff command> ...: returns the exit status."""
    parser = Parser(prog='./run.py', description='Course-staff commands.')
    commands = parser.add_subparsers(dest='command', required=True, metavar='command')
    for name, module_name, help_text in COMMANDS:
        module = importlib.import_module(module_name)  # here: the modules import this one
        command = commands.add_parser(name, help=help_text)
        module.add_arguments(command)
        command.set_defaults(run=module.main)
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except USAGE_ERRORS as error:
        print(f"./run.py {args.command}: {error}", file=sys.stderr)
        return 2
