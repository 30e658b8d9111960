#!/usr/bin/env python3
"""Command line of the kit.

  ./run.py unittest relu         run one unit test against solution.py
  ./run.py unittest relu dense   run several
  ./run.py unittest              run them all (same as: ./run.py unittest all)

Exit status: 0 when every test run passed, 1 when any failed, 2 for a usage
error such as an unknown test name.
"""
import argparse
import sys
from pathlib import Path

import common

STAFF_COMMANDS = ('make-fixtures',)


def colour(text, code):
    """text in an ANSI colour when printing to a terminal."""
    return f"\033[{code}m{text}\033[0m" if sys.stdout.isatty() else text


VERDICT_COLOURS = {'passed': '32', 'failed': '31', 'error': '31', 'not implemented': '33'}


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
    """(sections passed, sections run, points, max points) of the sections run."""
    sections = {}
    for fixture in fixtures:
        passed, points = sections.get(fixture.section, (True, fixture.points))
        sections[fixture.section] = (passed and results[fixture.test].passed, points)
    passed = [points for ok, points in sections.values() if ok]
    return len(passed), len(sections), sum(passed), sum(p for _, p in sections.values())


def unittest(names, solution_path):
    fixtures = select_fixtures(names)
    try:
        solution = common.load_solution(solution_path)
    except Exception as error:  # a broken solution.py must still get a clear verdict
        print(f"solution.py does not import:\n"
              f"{common.student_traceback(error, solution_path)}", file=sys.stderr)
        return 1
    results = {}
    print(f"{'section':8} {'test':13} {'points':>6}  {'result':16} {'time':>7}")
    for fixture in fixtures:
        result = common.run_test(fixture, solution)
        results[fixture.test] = result
        verdict = colour(f"{result.verdict.upper():16}", VERDICT_COLOURS[result.verdict])
        print(f"{fixture.section:8} {fixture.test:13} {fixture.points:6.1f}  {verdict} "
              f"{result.seconds:6.2f}s", flush=True)
        if result.message:
            print('  ' + result.message.replace('\n', '\n  '))
    passed, run, points, max_points = score(fixtures, results)
    print(f"passed {passed}/{run} sections, {points:g} / {max_points:g} points")
    return 0 if all(result.passed for result in results.values()) else 1


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
    tests = commands.add_parser('unittest', help='run unit tests against solution.py')
    tests.add_argument('names', nargs='*', help='test names (default: all)')
    tests.add_argument('--solution', default=str(common.KIT_DIR / 'solution.py'),
                       help='the solution file to test (default: solution.py beside run.py)')
    for name in STAFF_COMMANDS:
        commands.add_parser(name, help='course staff: see ./run.py %s --help' % name)
    args = parser.parse_args(argv)
    if not Path(args.solution).is_file():
        parser.error(f"no solution file at {args.solution}")
    return unittest(args.names, args.solution)


if __name__ == '__main__':
    sys.exit(main())
