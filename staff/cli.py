"""Course-staff commands of ./run.py."""
import argparse
import sys
from pathlib import Path

import common
from staff import fixtures, grader, kit, similarity, validate


def make_fixtures(args):
    """The public fixtures into --out (default tests/), or the hidden set into --hidden."""
    hidden = args.hidden is not None
    out = args.hidden if hidden else args.out or common.TESTS_DIR
    try:
        if hidden and args.out is not None:
            raise ValueError("--hidden DIR writes the hidden set into DIR; leave out --out")
        if hidden and common.TESTS_DIR in (out.resolve(), *out.resolve().parents):
            raise ValueError(f"--hidden {out}: keep the hidden set outside {common.TESTS_DIR}, "
                             f"which students and submissions see")
        reference = common.load_solution(args.reference)
        fixtures.build_fixtures(out, reference, seed=args.seed, hidden=hidden)
    except ValueError as error:
        print(f"./run.py make-fixtures: {error}", file=sys.stderr)
        return 2
    print(f"{'hidden' if hidden else 'public'} fixtures (seed {args.seed}) written to {out}")
    return 0


def main(argv):
    parser = argparse.ArgumentParser(prog='./run.py', description='Course-staff commands.')
    commands = parser.add_subparsers(dest='command', required=True, metavar='command')
    make = commands.add_parser('make-fixtures', help='regenerate the fixture directories',
                               description=fixtures.__doc__,
                               formatter_class=argparse.RawDescriptionHelpFormatter)
    make.add_argument('--seed', type=int, default=fixtures.DEFAULT_SEED,
                      help=f"the same seed gives byte-identical files; the default "
                           f"{fixtures.DEFAULT_SEED} reproduces the committed public fixtures")
    make.add_argument('--out', type=Path, metavar='DIR', help='where to write (default: tests/)')
    make.add_argument('--hidden', type=Path, metavar='DIR',
                      help="write the grader's hidden set into DIR instead (other random streams, "
                           "grown shapes); DIR must be outside tests/")
    grader.add_reference_argument(make)
    make.set_defaults(run=make_fixtures)
    check = commands.add_parser('check-fixtures', help='validate fixture directories')
    validate.add_arguments(check)
    check.set_defaults(run=validate.main)
    student_kit = commands.add_parser('make-kit', help='write the student kit (a folder and a zip)')
    kit.add_arguments(student_kit)
    student_kit.set_defaults(run=kit.main)
    grade = commands.add_parser('grade', help='grade submitted solution.py files in a sandbox')
    grader.add_arguments(grade)
    grade.set_defaults(run=grader.main)
    similar = commands.add_parser('similarity', help='rank pairs of similar submissions (copies)')
    similarity.add_arguments(similar)
    similar.set_defaults(run=similarity.main)
    args = parser.parse_args(argv)
    return args.run(args)
