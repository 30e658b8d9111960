#!/usr/bin/env python3
"""Grading throughput on Dask worker processes, and what a course costs.

1. Submissions per minute for 1 and 2 Dask worker processes of 1 core each
   (a LocalCluster on this machine), and the local engine for comparison:
   the ordinary (non-training) sections of the standard table, on copies of
   the reference solution.py.
2. Projected hours to grade --students submissions with the training
   sections on N workers of 2 cores. Per student: the ordinary sections'
   slot-seconds measured in 1 (one worker of one slot), spread over the 2
   slots of a worker; then mnist and cifar, each holding a whole worker for
   its training time: the reference solution's (README: 17 s and 22-25 min,
   plus loading the data and predicting) and the assignment's limits (10 and
   60 min), the worst case.

    python bench/grading_scale.py [--batch 8] [--students 300]
"""
import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

KIT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(KIT))

from grader_overhead import quick_sections  # noqa: E402

from staff import engines, grader  # noqa: E402
from staff.points import load_table  # noqa: E402

REFERENCE = KIT / 'solution.py'
WORKER_CORES = 2
# Training minutes per submission (training, loading the data, predicting).
SCENARIOS = {'reference solution (mnist 0.5, cifar 25 min)': (0.5, 25),
             "the assignment's limits (mnist 10, cifar 60 min)": (10, 60)}


def seconds_per_submission(sections, engine, batch):
    """Wall seconds per submission over a batch of copies of the reference."""
    only = ','.join(section.number for section in sections)
    with tempfile.TemporaryDirectory(prefix='nn-grade-scale-') as directory:
        submissions = {}
        for number in range(batch):
            submissions[f"s{number:03d}"] = Path(directory) / f"s{number:03d}.py"
            shutil.copyfile(REFERENCE, submissions[f"s{number:03d}"])
        batch_grader = grader.Grader(load_table(), only)
        batch_grader.grade(REFERENCE, engine)  # warm: workers import numpy, probe the sandbox
        start = time.perf_counter()
        reports = batch_grader.grade_all(submissions, engine)
        seconds = time.perf_counter() - start
    assert all(report.total == report.max_total for report in reports.values())
    return seconds / batch


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--batch', type=int, default=8, help='submissions per measurement')
    parser.add_argument('--students', type=int, default=300)
    args = parser.parse_args()
    sections = quick_sections(load_table())
    print(f"load average {Path('/proc/loadavg').read_text().split()[0]} on {grader.cores()} cores; "
          f"{len(sections)} ordinary sections, {args.batch} copies of the reference")
    measured = {}
    for workers in (1, 2):
        engine = engines.DaskEngine(workers=workers, cores=1)
        try:
            measured[workers] = seconds_per_submission(sections, engine, args.batch)
        finally:
            engine.close()
        print(f"  dask, {workers} worker process{'es' if workers > 1 else ''} of 1 core: "
              f"{60 / measured[workers]:5.1f} submissions/min "
              f"({measured[workers]:.2f} s each)")
    local = engines.LocalEngine(jobs=2)
    try:
        print(f"  local engine, 2 sections at a time:   "
              f"{60 / seconds_per_submission(sections, local, args.batch):5.1f} submissions/min")
    finally:
        local.close()

    ordinary = measured[1] / WORKER_CORES  # worker-seconds per student, 2 slots per worker
    print(f"\nprojected hours for {args.students} students, all sections, on N workers of "
          f"{WORKER_CORES} cores (ordinary sections {ordinary:.1f} worker-s per student):")
    counts = (1, 10, 25, 50, 100, 300)
    print(f"  {'training time':50}" + ''.join(f"{f'N={n}':>9}" for n in counts))
    for name, (mnist, cifar) in SCENARIOS.items():
        per_student = ordinary + 60 * (mnist + cifar)
        print(f"  {name:50}" + ''.join(f"{args.students * per_student / n / 3600:9.1f}"
                                       for n in counts))


if __name__ == '__main__':
    main()
