#!/usr/bin/env python3
"""How long ./run.py similarity takes for a large course (target: 300 submissions in 2 minutes).

Generates --count submissions of the standard table, each the reference
solution.py with a random half of the correct variants of tests/mutants.py
applied, about 65 lines of its own inserted into random regions (so that it
reaches about 660 lines) and disguised (identifiers renamed, functions
reordered, comments rewritten), then times the similarity report: all pairs
ranked from fingerprints, the --top pairs compared in detail and rendered as
HTML, the reference compared with every submission.

    python bench/similarity_scale.py [--count 300] [--top 50] [--seed 0] [--jobs N] [--cli]
"""
import argparse
import ast
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

KIT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(KIT), str(KIT / 'tests')]

import disguise  # noqa: E402
from mutants import VARIANTS  # noqa: E402

from staff import similarity  # noqa: E402
from staff.cli import find_table  # noqa: E402
from staff.grader import cores  # noqa: E402
from staff.kit import make_template  # noqa: E402


def own_lines(text, count, rng):
    """text with `count` lines of the student's own, each before a random statement of a region."""
    lines = text.splitlines()
    regions = [region for _, region in disguise.numbered_regions(lines)]
    statements = [node for node in ast.walk(ast.parse(text)) if isinstance(node, ast.stmt)
                  and any(region.open < node.lineno - 1 < region.close for region in regions)]
    inserts = {}
    for _ in range(count):
        node = rng.choice(statements)
        inserts.setdefault(node.lineno - 1, []).append(
            f"{' ' * node.col_offset}check_{rng.randrange(10**6)} = np.asarray({rng.random():.4f}) "
            f"* {rng.randrange(1, 99)}")
    out = []
    for index, line in enumerate(lines):
        out += inserts.get(index, []) + [line]
    return '\n'.join(out) + '\n'


def submission(reference, rng):
    text = reference
    for edit in rng.sample(VARIANTS, len(VARIANTS) // 2):
        if text.count(edit.old) == 1:
            text = text.replace(edit.old, edit.new)
    text = own_lines(text, 65, rng)
    return disguise.disguise(text, rng)


def cpu_seconds():
    """CPU time of this process and its finished children."""
    usages = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return sum(usage.ru_utime + usage.ru_stime for usage in usages)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--count', type=int, default=300)
    parser.add_argument('--top', type=int, default=similarity.TOP)
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--jobs', type=int, default=cores(),
                        help='fingerprinting processes (default: cores)')
    parser.add_argument('--cli', action='store_true',
                        help='also time ./run.py similarity on the submissions written to a folder')
    args = parser.parse_args()
    rng = random.Random(args.seed)
    reference = (KIT / 'solution.py').read_text()
    template = make_template(reference, find_table('standard'))
    submissions = {f"student{i:03}": submission(reference, rng) for i in range(args.count)}
    lines = sum(text.count('\n') for text in submissions.values()) / args.count
    print(f"{args.count} generated submissions, {lines:.0f} lines each on average")
    start, cpu = time.perf_counter(), cpu_seconds()
    others = {similarity.REFERENCE: reference}
    pairs, prints = similarity.rank_pairs(submissions, others, template, args.jobs)
    ranked = time.perf_counter()
    texts = {**submissions, similarity.REFERENCE: reference}
    matches = [similarity.match(pair, prints, texts) for pair in pairs[:args.top]]
    report = similarity.Report(pairs, matches, texts)
    page = similarity.render_html(report)
    done = time.perf_counter()
    print(f"fingerprints and ranking of {len(pairs)} pairs: {ranked - start:.1f} s")
    print(f"detailed comparison and HTML of the top {args.top}: {done - ranked:.1f} s "
          f"({len(page) / 2**20:.1f} MiB)")
    print(f"total: {done - start:.1f} s wall (target: under 120 s), "
          f"{cpu_seconds() - cpu:.1f} s of CPU in {args.jobs} processes; "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    if args.cli:
        run_command(submissions, args)


def run_command(submissions, args):
    """Times ./run.py similarity on the submissions written to a folder, as a grader runs it."""
    with tempfile.TemporaryDirectory() as folder:
        for student, text in submissions.items():
            (Path(folder) / f"{student}.py").write_text(text)
        command = [sys.executable, str(KIT / 'run.py'), 'similarity', folder,
                   '--top', str(args.top), '--jobs', str(args.jobs), '--csv', f"{folder}/pairs.csv",
                   '--html', f"{folder}/report.html"]
        start, cpu = time.perf_counter(), cpu_seconds()
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
        print(f"./run.py similarity on the folder, with --csv and --html: "
              f"{time.perf_counter() - start:.1f} s wall, {cpu_seconds() - cpu:.1f} s of CPU; "
              f"load average {os.getloadavg()[0]:.1f}")


if __name__ == '__main__':
    main()
