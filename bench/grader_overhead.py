#!/usr/bin/env python3
"""What the checking system costs on top of the student's own compute.

For the non-training sections of the standard table, with the reference
solution.py:
  local   ./run.py unittest <those tests>, as the student runs it
  grader  ./run.py grade of one submission: a sandboxed child per section
and their difference, the grader's overhead per submission (target: under
3 s); then the batch throughput of `./run.py grade DIR --jobs N` on copies of
the reference. Medians of --repeats runs. Wall time depends on what else the
machine runs; CPU time hardly does, so both are printed (the CPU time of a
sandboxed child is not reported back through bubblewrap's PID namespace: it
is measured with --isolation none, the same work without the sandbox, whose
own set-up costs about 10 ms per section).

    python bench/grader_overhead.py [--repeats 3] [--batch 8] [--jobs 2] [--isolation auto]
"""
import argparse
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

KIT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(KIT))

import common  # noqa: E402
from staff import grader  # noqa: E402
from staff.points import load_table  # noqa: E402

REFERENCE = KIT / 'solution.py'


def quick_sections(table):
    fixtures = common.find_fixtures()
    return [section for section in table.sections
            if all(test in fixtures and not fixtures[test].is_training
                   for test in section.tests)]


def cpu_seconds():
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def seconds_of(command):
    """(wall, CPU) seconds of a command and the processes it waited for."""
    start, cpu = time.perf_counter(), cpu_seconds()
    subprocess.run(command, cwd=KIT, check=True, capture_output=True)
    return time.perf_counter() - start, cpu_seconds() - cpu


def median_of(repeats, measure):
    """(median wall, median CPU) of `repeats` measurements."""
    runs = [measure() for _ in range(repeats)]
    return tuple(statistics.median(run[i] for run in runs) for i in range(2))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--repeats', type=int, default=3)
    parser.add_argument('--batch', type=int, default=8, help='submissions in the batch run')
    parser.add_argument('--jobs', type=int, default=grader.cores())
    parser.add_argument('--isolation', default='auto', choices=('auto', 'bwrap', 'unshare', 'none'))
    args = parser.parse_args()

    sections = quick_sections(load_table())
    tests = [test for section in sections for test in section.tests]
    only = ','.join(section.number for section in sections)
    run = [sys.executable, str(KIT / 'run.py')]
    grade = [*run, 'grade', '--only', only]
    isolation = ['--isolation', args.isolation]

    local = median_of(args.repeats, lambda: seconds_of([*run, 'unittest', *tests]))
    one = median_of(args.repeats, lambda: seconds_of([*grade, *isolation, str(REFERENCE)]))
    bare = median_of(args.repeats, lambda: seconds_of([*grade, '--isolation', 'none',
                                                       str(REFERENCE)]))
    report = grader.Grader(load_table(), only, isolation=args.isolation).grade(REFERENCE)
    print(f"isolation: {report.isolation}")
    print(f"load average {open('/proc/loadavg').read().split()[0]} on {grader.cores()} cores")
    print(f"{len(sections)} non-training sections ({len(tests)} tests), reference solution.py, "
          f"median of {args.repeats}:              wall      CPU")
    print(f"  ./run.py unittest (the student's own run)  {local[0]:6.2f} s {local[1]:6.2f} s")
    print(f"  ./run.py grade, one submission             {one[0]:6.2f} s {bare[1]:6.2f} s")
    print(f"  grader overhead per submission             {one[0] - local[0]:6.2f} s "
          f"{bare[1] - local[1]:6.2f} s  (target < 3 s)")
    per_section = sorted(result.seconds for result in report.sections)
    print(f"  child per section: median {statistics.median(per_section):.2f} s, "
          f"max {per_section[-1]:.2f} s wall (start, sandbox, import numpy and the kit, cases)")

    with tempfile.TemporaryDirectory(prefix='nn-grade-bench-') as directory:
        for number in range(args.batch):
            shutil.copyfile(REFERENCE, Path(directory) / f"student{number:03d}.py")
        batch, _ = median_of(args.repeats, lambda: seconds_of(
            [*grade, *isolation, '--jobs', str(args.jobs), directory]))
    print(f"batch of {args.batch} submissions, --jobs {args.jobs} on {grader.cores()} cores: "
          f"{batch:.1f} s, {batch / args.batch:.2f} s per submission, "
          f"{60 * args.batch / batch:.0f} submissions per minute")


if __name__ == '__main__':
    main()
