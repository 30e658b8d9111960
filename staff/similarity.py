"""Similar submissions: which solution.py files copy each other, the reference or collected files.

    ./run.py similarity submissions/ --html report.html --csv pairs.csv
    ./run.py similarity submissions/ --against public/ --sections mnist --top 100

Every submission is compared with every other one, with the reference
solution (in case it leaked) and with every .py file under --against (last
year's submissions, public solutions of the original course). The given code
of the template (the one make-kit builds for --sections) is left out: what
all students received cannot make them similar.

Each file's own code (its lines that are no line of the given code and
start no function or class) is tokenized by copydetect: identifiers become
V, function names F, strings S, comments and whitespace are dropped (so
renamed variables, rewritten comments and re-indented code still match); it
is hashed in k-grams of NOISE characters (deterministically: the same files
give the same figures in every run) and winnowed by copydetect to one hash
per WINDOW k-grams; k-grams of the template are dropped. Every pair is
ranked by the share of the smaller file's fingerprints that the other file
holds too, a matrix product over all files at once; copydetect's detailed
comparison, which locates the matching regions, runs only for the pairs
shown.
"""
import argparse
import csv
import html
import re
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from copydetect import compare_files
from copydetect.utils import filter_code, get_token_coverage, highlight_overlap, winnow

from staff.cli import UsageError, add_reference_argument, find_table
from staff.grader import cores, find_submissions, output_problem, printable, skipped_lines
from staff.kit import make_template
from staff.points import STANDARD_TABLE

NOISE = 25  # characters of tokenized code: shorter matches are never reported
SEPARATOR = '918273645546372819'  # the line that stands for a run of given lines
HEADER = re.compile(r'\s*(async\s+)?(def|class)\s')  # lines that start a function or class
WINDOW = 5  # winnowing window: matches of NOISE + WINDOW - 1 characters are always found
THRESHOLD = 50  # similarity, %, from which a pair is marked as a likely copy (see README)
TOP = 50  # pairs shown by default
REFERENCE = '[reference]'
AGAINST = 'against:'  # prefix of the names of --against files


@dataclass(frozen=True)
class Pair:
    """Two files and the share of the smaller one's fingerprints found in the other, in %."""
    a: str
    b: str
    similarity: float
    shared: int  # fingerprints in common

    @property
    def likely_copy(self):
        return self.similarity >= THRESHOLD


@dataclass(frozen=True)
class Match:
    """A pair's matching regions: (start, end) character slices of each file's text."""
    pair: Pair
    slices_a: np.ndarray  # (2, m): starts, ends
    slices_b: np.ndarray

    def lines(self, text, slices):
        """Numbers of the lines of `text` that a matching region touches."""
        starts = np.flatnonzero(np.frombuffer(text.encode('utf-32-le'), np.uint32) == 10)
        covered = set()
        for start, end in np.asarray(slices, dtype=int).T:
            first, last = np.searchsorted(starts, [start, max(start, end - 1)])
            covered.update(range(first + 1, last + 2))
        return covered

    def matching_lines(self, texts):
        """Lines in matching regions: the smaller count of the two files."""
        return min(len(self.lines(texts[self.pair.a], self.slices_a)),
                   len(self.lines(texts[self.pair.b], self.slices_b)))

    @classmethod
    def from_json(cls, shown):
        """The Match of an entry of Report.to_json()['shown'] (to render a stored pair)."""
        pair = Pair(shown['student_a'], shown['student_b'], shown['similarity'], 0)
        return cls(pair, *(np.array(shown[key], dtype=int).reshape(-1, 2).T
                           for key in ('regions_a', 'regions_b')))


def kgram_hashes(code, k):
    """Hashes of every k-gram of code, the same in every process and run.

    copydetect hashes k-grams with Python's hash(), salted anew in every
    process: the same files would get other fingerprints, and slightly other
    similarities, in every run. Here a polynomial hash over the characters,
    mixed so that winnowing's minima are spread evenly.
    """
    codes = np.frombuffer(code.encode('utf-32-le'), np.uint32).astype(np.uint64)
    if len(codes) < k:
        return np.zeros(0, dtype=np.int64)
    powers = np.uint64(1_000_003) ** np.arange(k - 1, -1, -1, dtype=np.uint64)
    windows = np.lib.stride_tricks.sliding_window_view(codes, k)
    hashes = (windows * powers).sum(axis=1, dtype=np.uint64)
    hashes ^= hashes >> np.uint64(31)
    hashes *= np.uint64(0x9E3779B97F4A7C15)
    hashes ^= hashes >> np.uint64(29)
    return (hashes >> np.uint64(1)).astype(np.int64)


def boilerplate(template):
    """The hashes of every k-gram of the template's tokens."""
    return np.unique(kgram_hashes(filter_code(template, 'template.py', 'python')[0], NOISE))


@dataclass
class Fingerprint:
    """What copydetect's compare_files reads of a file (its CodeFingerprint's attributes)."""
    filtered_code: str  # tokens, identifiers as V, function names as F, strings as S
    offsets: np.ndarray  # (m, 2): positions in filtered_code, characters dropped before them
    hashes: set  # the winnowed k-gram hashes
    hash_idx: dict  # {hash: [its positions in filtered_code]}
    token_coverage: int  # characters of filtered_code in some fingerprinted k-gram
    k: int = NOISE


@dataclass(frozen=True)
class OwnCode:
    """A file's own code: its lines that are no line of the given code and start no function.

    Each run of given lines and def/class lines becomes a SEPARATOR line,
    and the k-grams that reach into one are dropped: no k-gram spans given
    code or a function's start. The k-grams that straddle the start or end
    of a region (mostly given code, plus the first characters of the
    student's code), or two regions around a short given line, would match
    between any two solutions that begin their regions alike or fill them
    with the same short formula; those that run from one function into the
    next, or over a signature whose arguments a copier renamed, would miss
    reordered or renamed copies. Blank lines are neither (a copier could
    otherwise cut every k-gram by adding them). position[i] is where the
    i-th character of text stands in the file.
    """
    text: str
    position: np.ndarray

    @classmethod
    def of(cls, text, given):
        parts, positions, offset, separated = [], [], 0, True
        for line in text.splitlines(keepends=True):
            if line.strip() and (line.strip() in given or HEADER.match(line)):
                if not separated:
                    parts.append(SEPARATOR + '\n')
                    positions.append(np.full(len(SEPARATOR) + 1, offset))
                    separated = True
            else:
                parts.append(line)
                positions.append(np.arange(offset, offset + len(line)))
                separated = False
            offset += len(line)
        position = np.concatenate(positions + [np.array([offset])]).astype(np.int64)
        return cls(''.join(parts), position)


def fingerprint(name, text, given, excluded):
    """The fingerprint of the file's own code (copydetect's tokens and winnowing), and that code."""
    own = OwnCode.of(text, given)
    code, offsets = filter_code(own.text, name, 'python')
    hashes, positions = winnow(kgram_hashes(code, NOISE), WINDOW, remove_duplicates=False)
    separator = np.zeros(len(code) + 1, dtype=np.int64)
    for found in re.finditer(SEPARATOR, code):
        separator[found.start():found.end()] = 1
    reach = np.concatenate([[0], np.cumsum(separator)])  # reach[j] - reach[i]: separators in [i, j)
    kept = (reach[positions + NOISE] == reach[positions]) & ~np.isin(hashes, excluded)
    where = {}
    for value, position in zip(hashes[kept].tolist(), positions[kept].tolist()):
        where.setdefault(value, []).append(position)
    coverage = get_token_coverage(where, NOISE, len(code))
    return Fingerprint(code, offsets, set(where), where, coverage), own


def shared_counts(prints):
    """(files, files) matrix of the number of fingerprints each two files have in common."""
    owners = np.concatenate([np.full(len(found.hashes), index, dtype=np.int64)
                             for index, found in enumerate(prints)])
    hashes = np.concatenate([np.fromiter(found.hashes, np.int64, len(found.hashes))
                             for found in prints])
    _, column, count = np.unique(hashes, return_inverse=True, return_counts=True)
    common_to_some = count[column] > 1  # a hash of one file only adds nothing
    owners, column = owners[common_to_some], column[common_to_some]
    _, column = np.unique(column, return_inverse=True)
    counts = np.zeros((len(prints), len(prints)), dtype=np.float32)
    chunk = 20000
    for first in range(0, column.max(initial=-1) + 1, chunk):
        part = (column >= first) & (column < first + chunk)
        membership = np.zeros((len(prints), chunk), dtype=np.float32)
        membership[owners[part], column[part] - first] = 1
        counts += membership @ membership.T
    return np.rint(counts).astype(np.int64)


def fingerprints(texts, template, jobs=1):
    """{name: (Fingerprint, OwnCode)} of {name: source text}, in `jobs` processes."""
    excluded = boilerplate(template)
    given = {line.strip() for line in template.splitlines()}
    names = list(texts)
    if jobs < 2 or len(names) < 2 * jobs:
        return {name: fingerprint(name, texts[name], given, excluded) for name in names}
    with ProcessPoolExecutor(jobs) as pool:
        found = pool.map(fingerprint, names, [texts[name] for name in names],
                         [given] * len(names), [excluded] * len(names), chunksize=8)
        return dict(zip(names, found))


def rank_pairs(submissions, others, template, jobs=1):
    """Every pair of submissions and every submission with every other file, most similar first.

    submissions, others: {name: source text}; template: the given code to leave out.
    Returns (pairs, prints): [Pair], {name: (Fingerprint, OwnCode)}.
    """
    names = list(submissions) + list(others)
    prints = fingerprints({**submissions, **others}, template, jobs)
    counts = shared_counts([prints[name][0] for name in names])
    sizes = np.array([len(prints[name][0].hashes) for name in names])
    pairs = []
    for i in range(len(submissions)):
        for j in range(i + 1, len(names)):
            smaller = min(sizes[i], sizes[j])
            similarity = 100 * counts[i, j] / smaller if smaller else 0.0
            pairs.append(Pair(names[i], names[j], round(float(similarity), 1), int(counts[i, j])))
    pairs.sort(key=lambda pair: (-pair.similarity, -pair.shared, pair.a, pair.b))
    return pairs, prints


def match(pair, prints, texts):
    """copydetect's detailed comparison of a pair: where the matching regions are."""
    (print_a, own_a), (print_b, own_b) = prints[pair.a], prints[pair.b]
    _, _, (slices_a, slices_b) = compare_files(print_a, print_b)
    if not len(slices_a):
        return Match(pair, np.zeros((2, 0), dtype=int), np.zeros((2, 0), dtype=int))
    return Match(pair, in_file(slices_a, own_a, texts[pair.a]),
                 in_file(slices_b, own_b, texts[pair.b]))


def in_file(slices, own, text):
    """Slices of own code as slices of the file, widened to whole lines (from their first
    non-blank character); a slice across left-out given code is split there."""
    pieces = []
    for start, end in np.asarray(slices, dtype=int).T:
        positions = own.position[start:end]
        breaks = np.flatnonzero(np.diff(positions) != 1) + 1
        for run in np.split(positions, breaks):
            if len(run):
                first = text.rfind('\n', 0, run[0]) + 1
                first += len(text[first:run[0]]) - len(text[first:run[0]].lstrip())
                last = text.find('\n', run[-1])
                pieces.append((first, len(text) if last < 0 else last))
    merged = []
    for first, last in sorted(pieces):
        if merged and first <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(last, merged[-1][1]))
        else:
            merged.append((first, last))
    return np.array(merged, dtype=int).T.reshape(2, -1)


@dataclass(frozen=True)
class Report:
    """All pairs ranked, and the detailed comparison of the first `top` of them."""
    pairs: list
    matches: list
    texts: dict

    def to_json(self):
        """Plain data to store (e.g. by the checking service's worker): every pair ranked, and
        the shown pairs' matching lines and regions (character slices [start, end))."""
        return {'threshold': THRESHOLD,
                'pairs': [[pair.a, pair.b, pair.similarity] for pair in self.pairs],
                'shown': [{'student_a': found.pair.a, 'student_b': found.pair.b,
                           'similarity': found.pair.similarity,
                           'matching_lines': found.matching_lines(self.texts),
                           'regions_a': found.slices_a.T.tolist(),
                           'regions_b': found.slices_b.T.tolist()}
                          for found in self.matches]}


def similarity_report(submissions, template, others=None, top=TOP, jobs=1):
    """The similarity report of {student: source} against each other and `others` {name: source}.

    Pure computation, for the command line and for a background worker of
    the checking service alike; `jobs` processes fingerprint the files.
    """
    others = others or {}
    pairs, prints = rank_pairs(submissions, others, template, jobs)
    texts = {**submissions, **others}
    return Report(pairs, [match(pair, prints, texts) for pair in pairs[:top]], texts)


def compare(pairs, texts, template):
    """The matches of chosen pairs (e.g. the one a TA opens), fingerprinting only their files.

    The fingerprints are deterministic, so a pair's regions are those the
    whole report would give it.
    """
    names = {name for pair in pairs for name in (pair.a, pair.b)}
    prints = fingerprints({name: texts[name] for name in names}, template)
    return [match(pair, prints, texts) for pair in pairs]


# ================================== Output ==================================

def csv_rows(report):
    """student_a, student_b, similarity (%), matching_lines of the shown pairs, most similar
    first."""
    yield ['student_a', 'student_b', 'similarity', 'matching_lines']
    for found in report.matches:
        yield [found.pair.a, found.pair.b, f"{found.pair.similarity:g}",
               found.matching_lines(report.texts)]


def text_table(report):
    """The shown pairs as a text table (control characters of file names escaped)."""
    lines = [f"{'rank':>4}  {'similarity':>10}  {'lines':>5}  pair"]
    for rank, found in enumerate(report.matches, 1):
        mark = '  likely copy' if found.pair.likely_copy else ''
        pair, matching = found.pair, found.matching_lines(report.texts)
        lines.append(f"{rank:4}  {pair.similarity:9.1f}%  {matching:5}  "
                     f"{printable(pair.a)}  ~  {printable(pair.b)}{mark}")
    return '\n'.join(lines)


STYLE = """
body { font-family: sans-serif; margin: 1em 2em; }
table.pairs td, table.pairs th { padding: 0.2em 0.8em; text-align: left; }
.copy { color: #b00; font-weight: bold; }
.side { display: flex; gap: 1em; align-items: flex-start; }
.file { flex: 1; min-width: 0; overflow-x: auto; border: 1px solid #ccc; }
.file h3 { margin: 0; padding: 0.3em; background: #eee; font-size: 1em; }
.code { display: flex; }
pre { margin: 0; padding: 0.3em; font-size: 12px; line-height: 1.35; }
pre.numbers { color: #999; text-align: right; border-right: 1px solid #ddd; user-select: none; }
mark { background: #ffd27f; }
"""


def highlighted(text, slices):
    """The text as HTML, with its matching regions in <mark>, beside its line numbers."""
    code = (highlight_overlap(text, slices, '<mark>', '</mark>', escape_html=True)[0]
            if slices.shape[1] else html.escape(text))
    numbers = '\n'.join(str(number) for number in range(1, text.count('\n') + 2))
    return f'<div class="code"><pre class="numbers">{numbers}</pre><pre>{code}</pre></div>'


def side_by_side(found, texts, heading='h2', anchor=''):
    """HTML of one pair: a heading, then both files side by side with their matches marked."""
    pair = found.pair
    files = ''.join(f'<div class="file"><h3>{html.escape(name)}</h3>'
                    f'{highlighted(texts[name], slices)}</div>'
                    for name, slices in ((pair.a, found.slices_a), (pair.b, found.slices_b)))
    return (f'<{heading}{anchor}>{html.escape(pair.a)} ~ {html.escape(pair.b)}: '
            f'{pair.similarity:.1f}%, {found.matching_lines(texts)} matching lines</{heading}>'
            f'<div class="side">{files}</div>')


def render_html(report, title='Similar submissions'):
    """A self-contained HTML page (STYLE): the shown pairs, then each pair's two files side by
    side."""
    rows = []
    sections = []
    for rank, found in enumerate(report.matches, 1):
        pair, lines = found.pair, found.matching_lines(report.texts)
        mark = ' class="copy"' if pair.likely_copy else ''
        rows.append(f'<tr><td>{rank}</td><td{mark}>{pair.similarity:.1f}%</td><td>{lines}</td>'
                    f'<td><a href="#pair{rank}">{html.escape(pair.a)} ~ {html.escape(pair.b)}</a>'
                    f'</td></tr>')
        sections.append(side_by_side(found, report.texts, anchor=f' id="pair{rank}"'))
    likely = sum(pair.likely_copy for pair in report.pairs)
    return f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>{html.escape(title)}</title><style>{STYLE}</style></head>
<body><h1>{html.escape(title)}</h1>
<p>{len(report.pairs)} pairs compared; {likely} at or above {THRESHOLD}% (likely copies, in red);
the {len(report.matches)} most similar below. Similarity: the share of the smaller file's
fingerprints found in the other, the template's given code left out. Matching regions are
marked.</p>
<table class="pairs"><tr><th>rank</th><th>similarity</th><th>lines</th><th>pair</th></tr>
{''.join(rows)}</table>
{''.join(sections)}
</body></html>
"""


# =================================== CLI ====================================

def read_text(path):
    """The text of a file; one that cannot be read is a usage error."""
    try:
        return Path(path).read_text(encoding='utf-8', errors='replace')
    except OSError as error:
        raise UsageError(f"{path}: cannot read ({error.strerror})") from None


def against_files(directory):
    """{'against:<relative path>': text} of every .py file under directory."""
    if not directory.is_dir():
        raise UsageError(f"--against {directory}: not a directory")
    files = sorted(directory.rglob('*.py'))
    if not files:
        raise UsageError(f"--against {directory}: no .py files in it")
    return {f"{AGAINST}{path.relative_to(directory).as_posix()}": read_text(path) for path in files}


def check_output(option, path):
    if path is not None and (problem := output_problem(path)):
        raise UsageError(f"{option} {path}: {problem}")


def add_arguments(parser):
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.description = '\n\n'.join(__doc__.split('\n\n')[:3]) + (
        f"\n\nA pair at or above {THRESHOLD}% is marked as a likely copy. Exit status 0\n"
        f"whatever the similarities; 2 for a usage error.")
    parser.add_argument('submissions', type=Path,
                        help='a directory of <student>.py or <student>/solution.py, as for grade')
    parser.add_argument('--against', type=Path, metavar='DIR',
                        help='also compare with every .py file under DIR (last year, public '
                             'solutions)')
    parser.add_argument('--sections', default=str(STANDARD_TABLE), metavar='FILE',
                        help="points table whose template's given code is left out (as for grade); "
                             "default standard")
    parser.add_argument('--given', type=Path, action='append', default=[], metavar='FILE',
                        help="more given code to leave out, e.g. the original course's template "
                             "when students reuse its solution.py (repeatable)")
    parser.add_argument('--html', type=Path, metavar='FILE',
                        help='write the shown pairs with both files side by side, matches marked')
    parser.add_argument('--csv', type=Path, metavar='FILE',
                        help='write student_a,student_b,similarity,matching_lines of the shown '
                             'pairs')
    parser.add_argument('--top', type=int, default=TOP, metavar='N',
                        help=f"pairs shown, written and compared in detail (default {TOP})")
    parser.add_argument('--jobs', type=int, default=cores(),
                        help='processes that fingerprint the files (default: the number of cores)')
    add_reference_argument(parser)


def main(args):
    """./run.py similarity: returns the exit status; usage problems are raised as UsageError."""
    if not args.submissions.is_dir():
        raise UsageError(f"{args.submissions}: not a directory of submissions")
    if args.top < 1:
        raise UsageError(f"--top {args.top}: give at least 1")
    check_output('--html', args.html)
    check_output('--csv', args.csv)
    found, skipped = find_submissions(args.submissions)
    for line in skipped_lines(skipped):
        print(line, flush=True)
    submissions = {student: read_text(path) for student, path in sorted(found.items())}
    others = {REFERENCE: read_text(args.reference)}
    if args.against:
        others.update(against_files(args.against))
    given = make_template(others[REFERENCE], find_table(args.sections), args.reference)
    template = '\n'.join([given, *(read_text(path) for path in args.given)])
    report = similarity_report(submissions, template, others, args.top, max(args.jobs, 1))
    print(text_table(report))
    likely = sum(pair.likely_copy for pair in report.pairs)
    hidden = likely - len(report.matches)
    print(f"{len(submissions)} submissions, {len(report.pairs)} pairs; {likely} at or above "
          f"{THRESHOLD}% (likely copies)"
          + (f", {hidden} of them not shown: use --top {likely}" if hidden > 0 else ''))
    if args.csv:
        with open(args.csv, 'w', newline='') as file:
            csv.writer(file).writerows(csv_rows(report))
        print(f"pairs written to {args.csv}")
    if args.html:
        args.html.write_text(render_html(report), encoding='utf-8')
        print(f"side-by-side report written to {args.html}")
    return 0
