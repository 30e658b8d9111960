"""Course-staff commands of ./run.py."""
import argparse
import sys
from pathlib import Path

import common
from staff import fixtures


def make_fixtures(args):
    reference = common.load_solution(args.reference)
    fixtures.build_fixtures(args.out, reference, seed=args.seed)
    print(f"fixtures written to {args.out}")
    return 0


def main(argv):
    parser = argparse.ArgumentParser(prog='./run.py', description='Course-staff commands.')
    commands = parser.add_subparsers(dest='command', required=True, metavar='command')
    make = commands.add_parser('make-fixtures', help='regenerate the fixture directories')
    make.add_argument('--seed', type=int, default=fixtures.DEFAULT_SEED)
    make.add_argument('--out', type=Path, default=common.TESTS_DIR)
    make.add_argument('--reference', type=Path, default=common.KIT_DIR / 'solution.py',
                      help='the reference solution.py')
    make.set_defaults(run=make_fixtures)
    args = parser.parse_args(argv)
    return args.run(args)
