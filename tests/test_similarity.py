"""./run.py similarity: disguised copies rank above every pair of independently written
solutions; the command's table, CSV and HTML; its usage errors."""
import csv
import html
import json
import subprocess
import sys

import disguise
import pytest

import common
from staff import similarity
from staff.cli import find_table
from staff.kit import make_template

REFERENCE = (common.KIT_DIR / 'solution.py').read_text()
MNIST_TESTS = {'relu', 'softmax', 'dense', 'crossentropy', 'sgd', 'momentum'}
STANDARD = find_table('standard')
QUICK_STANDARD = [test for _, test in STANDARD.numbered_tests() if test not in ('mnist', 'cifar')]


def run(*args, cwd=common.KIT_DIR):
    command = [sys.executable, str(common.KIT_DIR / 'run.py'), 'similarity', *map(str, args)]
    return subprocess.run(command,
                          check=False, capture_output=True, text=True, cwd=cwd, timeout=300)


@pytest.fixture(scope='module')
def template():
    return make_template(REFERENCE, find_table('mnist'))


@pytest.fixture(scope='module')
def sources():
    return disguise.honest_sources(REFERENCE, MNIST_TESTS)


@pytest.fixture(scope='module')
def standard_template():
    return make_template(REFERENCE, STANDARD)


def similarities(submissions, template):
    """{frozenset({a, b}): similarity} of every pair, the reference among the files."""
    pairs, _ = similarity.rank_pairs(submissions, {similarity.REFERENCE: REFERENCE}, template)
    return {frozenset({pair.a, pair.b}): pair.similarity for pair in pairs}


@pytest.mark.parametrize('seed', [0, 1, 2])
def test_disguised_copies_rank_above_every_independent_pair(template, sources, seed):
    """12 independent solutions (bases: the reference and honest_*.txt, short formulas shared
    at random), a disguised copy of 4 of them and one of the reference."""
    files, base, copied = disguise.corpus(template, REFERENCE, sources, disguise.seeded(seed))
    found = similarities(files, template)
    copies = [found[frozenset(pair)] for pair in copied]
    independent = {pair: value for pair, value in found.items()
                   if len({base[name] for name in pair}) == 2}
    worst = max(independent, key=independent.get)
    assert min(copies) >= similarity.THRESHOLD > independent[worst], \
        (copies, worst, independent[worst])


@pytest.mark.parametrize('path', disguise.HONEST, ids=lambda path: path.name)
def test_the_independent_solutions_are_correct(standard_template, path, tmp_path):
    """tests/similarity/honest_*.txt, their regions in the current template (the reference's
    where they have none), pass every quick test of the standard table."""
    bodies = {**disguise.region_bodies(REFERENCE), **disguise.region_bodies(path.read_text())}
    (tmp_path / 'solution.py').write_text(disguise.fill(standard_template, bodies))
    solution = common.load_solution(tmp_path / 'solution.py', name=f"independent_{path.stem}")
    fixtures = common.find_fixtures()
    assert {test: common.run_test(fixtures[test], solution).verdict for test in QUICK_STANDARD} == \
        dict.fromkeys(QUICK_STANDARD, 'passed')


def test_disguised_copies_rank_above_independent_pairs_of_the_whole_course(standard_template):
    """The same for the standard table, whose independent bases are the reference and
    honest_a.txt (honest_b.txt lends its short formulas)."""
    sources = disguise.honest_sources(REFERENCE, set(QUICK_STANDARD))
    rng = disguise.seeded(0)
    files, base, copied = disguise.corpus(standard_template, REFERENCE, sources, rng, 6, 2)
    found = similarities(files, standard_template)
    copies = [found[frozenset(pair)] for pair in copied]
    independent = [value for pair, value in found.items()
                   if len({base[name] for name in pair}) == 2]
    assert min(copies) >= similarity.THRESHOLD > max(independent), (copies, max(independent))


def test_the_same_short_formulas_do_not_match(template, sources):
    """Two independent solutions that fill the regions the reference fills with one line
    (ReLU, Dense.forward, the cross-entropy, SGD) with the reference's lines: far below
    the threshold, and the ReLU and SGD lines, shorter than a k-gram, are no match."""
    formulas = {key: body for key, body in disguise.region_bodies(REFERENCE).items()
                if len(body) == 1}
    assert len(formulas) >= 6
    a, b = (disguise.fill(template, {**disguise.region_bodies(source), **formulas})
            for source in sources[1:])
    assert similarities({'a': a, 'b': b}, template)[frozenset('ab')] < similarity.THRESHOLD / 4
    found = similarity.similarity_report({'a': a, 'b': b}, template).matches[0]
    matched = ''.join(a[start:end] for start, end in found.slices_a.T)
    shortest = [body[0].strip() for key, body in formulas.items() if key[0] in ('2.1.1', '2.3.1')]
    assert len(shortest) == 3 and not [line for line in shortest if line in matched]


def blank_lines(text, rng):
    """A blank line after every line."""
    return '\n\n'.join(text.splitlines()) + '\n'


def reindent(text, rng):
    """Indented by 2 spaces a level instead of 4."""
    return ''.join(line[(len(line) - len(line.lstrip(' '))) // 2:]
                   for line in text.splitlines(keepends=True))


@pytest.mark.parametrize('change', [disguise.rename, disguise.reorder, disguise.recomment,
                                    blank_lines, reindent])
def test_each_disguise_alone_still_matches(template, sources, change):
    original = disguise.honest(template, sources[1], sources, disguise.seeded(0))
    changed = change(original, disguise.seeded(1))
    assert changed != original
    found = similarities({'original': original, 'changed': changed}, template)
    assert found[frozenset({'original', 'changed'})] >= 90


@pytest.fixture(scope='module')
def course(tmp_path_factory, template, sources):
    """A submissions folder (<student>.py and <student>/solution.py) with one copied pair,
    a copy of the reference and a folder of collected files with a copy of a third."""
    rng = disguise.seeded(5)
    root = tmp_path_factory.mktemp('similarity')
    folder, collected = root / 'submissions', root / 'public'
    folder.mkdir()
    (root / 'empty').mkdir()
    (collected / 'year2023').mkdir(parents=True)
    texts = {'ann': disguise.honest(template, sources[1], sources, rng),
             'bob': disguise.honest(template, sources[2], sources, rng),
             'eve': disguise.honest(template, REFERENCE, [], rng)}
    texts['cid'] = disguise.disguise(texts['ann'], rng)
    for student, text in texts.items():
        path = folder / f"{student}.py" if student != 'bob' else folder / student / 'solution.py'
        path.parent.mkdir(exist_ok=True)
        path.write_text(text)
    (collected / 'year2023' / 'old.py').write_text(disguise.disguise(texts['bob'], rng))
    return root, texts


def test_command_writes_the_ranked_pairs_as_csv_and_html(course):
    root, texts = course
    result = run('submissions', '--against', 'public', '--sections', 'mnist', '--csv', 'pairs.csv',
                 '--html', 'report.html', '--top', '3', cwd=root)
    assert result.returncode == 0, result.stderr
    rows = list(csv.reader((root / 'pairs.csv').open()))
    assert rows[0] == ['student_a', 'student_b', 'similarity', 'matching_lines']
    values = [float(row[2]) for row in rows[1:]]
    assert len(rows) == 4 and values == sorted(values, reverse=True)
    top = {frozenset(row[:2]) for row in rows[1:]}
    assert top == {frozenset({'ann', 'cid'}), frozenset({'eve', similarity.REFERENCE}),
                   frozenset({'bob', 'against:year2023/old.py'})}
    assert all(float(row[2]) >= similarity.THRESHOLD and int(row[3]) > 5 for row in rows[1:])
    assert 'ann  ~  cid' in result.stdout and 'likely copy' in result.stdout
    page = (root / 'report.html').read_text()
    shown = html.unescape(page.replace('<mark>', '').replace('</mark>', ''))
    assert texts['ann'] in shown and texts['cid'] in shown
    assert page.count('<div class="side">') == 3
    marked = [html.unescape(part.split('</mark>')[0]) for part in page.split('<mark>')[1:]]
    assert any(len(part) > 100 and part in texts['ann'] for part in marked)


def test_top_limits_the_pairs_shown(course):
    root, _ = course
    result = run('submissions', '--sections', 'mnist', '--csv', 'pairs.csv', '--top', '1', cwd=root)
    assert result.returncode == 0, result.stderr
    assert len(list(csv.reader((root / 'pairs.csv').open()))) == 2
    assert '1 of them not shown: use --top 2' in result.stdout


@pytest.mark.parametrize('args, message', [
    (['nowhere'], 'not a directory of submissions'),
    (['submissions', '--top', '0'], '--top 0: give at least 1'),
    (['submissions', '--sections', 'nosuch'], '--sections nosuch: no such points table'),
    (['submissions', '--against', 'nowhere'], '--against nowhere: not a directory'),
    (['submissions', '--html', 'public'], '--html public: public is a directory'),
    (['submissions', '--csv', 'missing/pairs.csv'], 'pairs.csv: no directory missing'),
    (['empty'], 'no submissions'),
])
def test_usage_errors_are_one_line(course, args, message):
    root, _ = course
    result = run(*args, cwd=root)
    assert result.returncode == 2
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_the_report_is_plain_data_for_a_background_worker(template, sources):
    """similarity_report() on texts in memory, as the checking service's worker calls it:
    its JSON holds every pair ranked and the shown pairs' regions, whole lines of each file."""
    rng = disguise.seeded(3)
    ann = disguise.honest(template, sources[1], sources, rng)
    submissions = {'ann': ann, 'cid': disguise.disguise(ann, rng),
                   'bob': disguise.honest(template, sources[2], sources, rng)}
    others = {similarity.REFERENCE: REFERENCE}
    report = similarity.similarity_report(submissions, template, others, top=2)
    data = json.loads(json.dumps(report.to_json()))
    assert [pair[:2] for pair in data['pairs'][:1]] == [['ann', 'cid']] and len(data['pairs']) == 6
    assert len(data['shown']) == 2 and data['shown'][0]['similarity'] >= similarity.THRESHOLD
    shown = data['shown'][0]
    for name, regions in (('ann', shown['regions_a']), ('cid', shown['regions_b'])):
        text = submissions[name]
        assert regions
        assert all(text[end] == '\n' and text[start - 1] in ' \n' for start, end in regions)
    page = similarity.side_by_side(report.matches[0], report.texts)
    assert 'ann ~ cid' in page
    assert similarity.side_by_side(similarity.Match.from_json(shown), submissions) == page
    again = similarity.compare([report.pairs[0]], report.texts, template)[0]
    assert again.slices_a.tolist() == report.matches[0].slices_a.tolist()
    assert again.slices_b.tolist() == report.matches[0].slices_b.tolist()
