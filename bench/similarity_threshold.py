#!/usr/bin/env python3
"""Where the similarity threshold of ./run.py similarity comes from.

Prints the similarity of independently written solutions and of disguised
copies (identifiers renamed, functions and methods reordered, comments
rewritten) in these corpora:

  generated  for --seeds seeds and the mnist and standard tables, the corpus
             of tests/test_similarity.py: 12 independent solutions (bases: the
             reference with its correct variants and those of
             tests/similarity/honest_*.txt that fill every region; short formulas
             shared at random), disguised copies of 4 of them and of the
             reference
  --public   (the MNIST part) a folder of solution.py files written independently of each other
             and of this kit (e.g. public ones of the original course; keep
             them out of the repository), each compared with the others, with
             the reference and with tests/similarity/honest_*.txt, and with a
             disguised copy of itself; given code left out: the template, and
             the lines all of them share (the original course's template)

    python bench/similarity_threshold.py [--seeds 10] [--public DIR]
"""
import argparse
import sys
from pathlib import Path

KIT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(KIT), str(KIT / 'tests')]

import disguise  # noqa: E402

from staff import similarity  # noqa: E402
from staff.cli import find_table  # noqa: E402
from staff.kit import make_template  # noqa: E402

MNIST_TESTS = {'relu', 'softmax', 'dense', 'crossentropy', 'sgd', 'momentum'}


def summary(label, values):
    values = sorted(values)
    print(f"  {label:34} n={len(values):4}  min {values[0]:5.1f}%  "
          f"median {values[len(values) // 2]:5.1f}%  max {values[-1]:5.1f}%")


def generated(template, reference, tests, seeds):
    """(independent pairs' similarities, copies' similarities) over the seeds."""
    sources = disguise.honest_sources(reference, tests)
    independent, copies = [], []
    for seed in range(seeds):
        files, base, copied = disguise.corpus(template, reference, sources, disguise.seeded(seed))
        pairs, _ = similarity.rank_pairs(files, {similarity.REFERENCE: reference}, template)
        for pair in pairs:
            if {pair.a, pair.b} in copied:
                copies.append(pair.similarity)
            elif base[pair.a] != base[pair.b]:
                independent.append(pair.similarity)
    return independent, copies


def public(template, reference, folder):
    """(independent pairs' similarities, copies' similarities) of the files in folder."""
    files = {path.stem: path.read_text() for path in sorted(Path(folder).glob('*.py'))}
    shared = set.intersection(*({line.strip() for line in text.splitlines()}
                                for text in files.values()))
    given = template + '\n'.join(shared)
    honest = {path.stem: disguise.fill(template, disguise.region_bodies(path.read_text()))
              for path in disguise.HONEST}
    others = {similarity.REFERENCE: reference, **honest}
    rng = disguise.seeded(0)
    copies = {f"copy of {name}": disguise.disguise(text, rng) for name, text in files.items()}
    pairs, _ = similarity.rank_pairs({**files, **copies}, others, given)
    independent, copied = [], []
    for pair in pairs:
        if pair.b == f"copy of {pair.a}" or pair.a == f"copy of {pair.b}":
            copied.append(pair.similarity)
        elif not (pair.a.startswith('copy of') or pair.b.startswith('copy of')):
            independent.append(pair.similarity)
    return independent, copied


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--seeds', type=int, default=10)
    parser.add_argument('--public', type=Path, metavar='DIR')
    args = parser.parse_args()
    reference = (KIT / 'solution.py').read_text()
    template = make_template(reference, find_table('mnist'))
    print(f"similarity threshold now {similarity.THRESHOLD}%")
    for name in ('mnist', 'standard'):
        table = find_table(name)
        tests = {test for section in table.sections for test in section.tests}
        independent, copies = generated(make_template(reference, table), reference, tests,
                                        args.seeds)
        print(f"generated corpus of the {name} table, {args.seeds} seeds:")
        summary('independent pairs', independent)
        summary('disguised copies', copies)
    if args.public:
        independent, copies = public(template, reference, args.public)
        print(f"{args.public}:")
        summary('independent pairs', independent)
        summary('disguised copies', copies)


if __name__ == '__main__':
    main()
