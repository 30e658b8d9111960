"""The instructor's workflow as the README gives it: make the student kit, grade the
reference and the blank template, regenerate and validate the fixtures, add a section."""
import ast
import json
import os
import pickle
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from test_data import cifar_batch_pickle, small_cifar

import common
import datasets
import pickles
import solution
from staff import kit, validate
from staff.fixtures import GROWTH, directory_name
from staff.points import EXTENDED_TABLE, STANDARD_TABLE, TABLES_DIR, load_table

REFERENCE = common.KIT_DIR / 'solution.py'
MNIST_TABLE = TABLES_DIR / 'mnist.csv'
QUICK_TESTS = [test for _, test in load_table(STANDARD_TABLE).numbered_tests()
               if test not in ('mnist', 'cifar')]
FIRST_LEFT_OUT = {'standard': '4.1 LeakyReLU', 'mnist': '3.1 Conv2D'}  # first header not in the kit


def run(*args, kit_dir=common.KIT_DIR, env=None, timeout=300):
    """./run.py of the kit in kit_dir, run from there."""
    return subprocess.run([sys.executable, str(Path(kit_dir) / 'run.py'), *map(str, args)],
                          capture_output=True, text=True, cwd=kit_dir, env=env, timeout=timeout,
                          check=False)


def tree(directory):
    """{relative path: bytes} of every file under directory."""
    return {path.relative_to(directory).as_posix(): path.read_bytes()
            for path in sorted(Path(directory).rglob('*')) if path.is_file()}


@pytest.fixture(scope='module')
def kits(tmp_path_factory):
    """{table name: kit directory} made with ./run.py make-kit."""
    made = {}
    for name in ('standard', 'mnist'):
        out = tmp_path_factory.mktemp('kits') / f'kit-{name}'
        result = run('make-kit', '--sections', name, '--out', out)
        assert result.returncode == 0, result.stderr
        made[name] = out
    return made


@pytest.fixture(scope='module')
def data_with_small_cifar(tmp_path_factory):
    """A data directory with the real MNIST and a tiny CIFAR-10 of the real format."""
    data = tmp_path_factory.mktemp('data')
    (data / 'mnist').symlink_to(common.KIT_DIR / 'data' / 'mnist')
    (data / datasets.CIFAR10_FOLDER).mkdir()
    for name, batch in small_cifar(0, per_batch=2).items():
        (data / datasets.CIFAR10_FOLDER / name).write_bytes(cifar_batch_pickle(*batch))
    return data


def region_filled(template, reference):
    """The template with each region's body taken back from the reference, in order."""
    template_lines, reference_lines = template.splitlines(), reference.splitlines()
    _, template_regions = kit.parse_solution(template_lines, 'template')
    _, reference_regions = kit.parse_solution(reference_lines, 'reference')
    kept = {region.number for region in template_regions}
    reference_regions = [region for region in reference_regions if region.number in kept]
    assert [r.number for r in reference_regions] == [t.number for t in template_regions]
    lines, start = [], 0
    for mine, theirs in zip(template_regions, reference_regions):
        lines += template_lines[start:mine.open + 1] + reference_lines[theirs.open + 1:theirs.close]
        start = mine.close
    return '\n'.join(lines + template_lines[start:]) + '\n'


def reference_up_to(header):
    """The reference solution.py up to the section header `header` ('3.1 Conv2D')."""
    source = REFERENCE.read_text()
    match = re.search(rf'^# =+ {re.escape(header)} =+$', source, re.MULTILINE)
    return source[:match.start()].rstrip() + '\n'


def definitions(source):
    """{qualified name: (arguments, docstring)} of the classes and functions in source,
    but for those a student writes (inside a region)."""
    _, regions = kit.parse_solution(source.splitlines(), 'source')
    found = {}

    def visit(node, prefix):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.ClassDef, ast.FunctionDef)) and not any(
                    region.open < child.lineno - 1 < region.close for region in regions):
                name = prefix + child.name
                arguments = ast.dump(child.args) if isinstance(child, ast.FunctionDef) else None
                found[name] = (arguments, ast.get_docstring(child))
                visit(child, name + '.')

    visit(ast.parse(source), '')
    return found


# ================================ Student kit ===============================

def test_standard_kit_holds_the_student_files_only(kits):
    files = tree(kits['standard'])
    fixture_dirs = sorted({name.split('/')[1] for name in files if name.startswith('tests/')
                           and name.count('/') > 1})
    assert fixture_dirs == [directory_name(number, test) for number, (_, test)
                            in enumerate(load_table(STANDARD_TABLE).numbered_tests())]
    top = sorted(name for name in files if not name.startswith(('tests/', 'data/')))
    assert top == sorted(['README.md', *kit.KIT_MODULES, 'requirements.txt', 'solution.py'])
    assert sorted(name for name in files if name.startswith('data/')) == sorted(
        f'data/mnist/{name}' for name in datasets.MNIST_FILES)
    for name in kit.KIT_MODULES:
        assert files[name] == (common.KIT_DIR / name).read_bytes()
    assert os.access(kits['standard'] / 'run.py', os.X_OK)
    for name in (n for n in files if n.startswith('tests/') and n.endswith('.pkl')):
        assert files[name] == (common.TESTS_DIR / name[len('tests/'):]).read_bytes()
    assert sorted(name for name in files if name.startswith('tests/') and name.endswith('.py')) == \
        sorted(f'tests/{name}' for name in kit.KIT_TEST_FILES)
    for name in kit.KIT_TEST_FILES:
        assert files[f'tests/{name}'] == (common.TESTS_DIR / name).read_bytes()


def test_kit_requirements_are_the_students_short_list(kits):
    lines = tree(kits['standard'])['requirements.txt'].decode().splitlines()
    assert [line.split('>=')[0] for line in lines] == ['numpy', 'pytest', 'tqdm', 'matplotlib']


def test_kit_modules_are_every_top_level_module_but_the_solution():
    modules = {path.name for path in common.KIT_DIR.glob('*.py')} - {'solution.py'}
    assert set(kit.KIT_MODULES) == modules


def test_kit_zip_holds_the_same_files_and_is_reproducible(kits, tmp_path):
    with zipfile.ZipFile(kits['standard'].with_name('kit-standard.zip')) as archive:
        zipped = {info.filename: archive.read(info) for info in archive.infolist()}
        modes = {info.filename: info.external_attr >> 16 for info in archive.infolist()}
    assert zipped == {f'kit-standard/{name}': body for name, body in tree(kits['standard']).items()}
    assert modes['kit-standard/run.py'] == 0o100755
    assert modes['kit-standard/solution.py'] == 0o100644
    again = tmp_path / 'kit-standard'
    assert run('make-kit', '--sections', 'standard', '--out', again).returncode == 0
    assert again.with_name('kit-standard.zip').read_bytes() == \
        kits['standard'].with_name('kit-standard.zip').read_bytes()


def test_template_keeps_the_given_code_and_none_of_the_reference_regions(kits):
    template = (kits['standard'] / 'solution.py').read_text()
    reference = reference_up_to(FIRST_LEFT_OUT['standard'])
    assert definitions(template) == definitions(reference)
    lines = reference.splitlines()
    _, regions = kit.parse_solution(lines, 'reference')
    outside = {line.strip() for number, line in enumerate(lines)
               if not any(region.open < number < region.close for region in regions)}
    solved = {lines[number].strip() for region in regions
              for number in range(region.open + 1, region.close)}
    leaked = (solved - outside - {''}) & {line.strip() for line in template.splitlines()}
    assert solved - outside - {''}
    assert leaked == set()
    titles = {section.number: section.title for section in load_table(STANDARD_TABLE).sections}
    _, template_regions = kit.parse_solution(template.splitlines(), 'template')
    bodies = [template.splitlines()[region.open + 1:region.close] for region in template_regions]
    assert len(template_regions) == len(regions)
    assert all([line.strip() for line in body] ==
               [f'raise NotImplementedError("{titles[region.number]}: your code here")']
               for body, region in zip(bodies, template_regions))


def test_mnist_kit_has_only_its_sections_with_its_points(kits):
    template = (kits['mnist'] / 'solution.py').read_text()
    assert set(name for name in definitions(template) if '.' not in name) == {
        'ReLU', 'Softmax', 'Dense', 'CategoricalCrossentropy', 'SGD', 'SGDMomentum',
        'train_mnist_model'}
    assert 'Conv2D' not in template and 'im2col' not in template and 'Adam' not in template
    fixtures = common.find_fixtures(kits['mnist'] / 'tests')
    table = load_table(MNIST_TABLE)
    assert [(f.section, f.title, f.points) for f in fixtures.values()] == [
        (s.number, s.title, s.points) for s in table.sections]
    readme = (kits['mnist'] / 'README.md').read_text()
    assert 'assignment kit (5 points)' in readme and '| 2.1.2 | Softmax | 1 | `softmax` |' in readme
    assert 'CIFAR' not in readme and 'MiB' in readme and 'Only `solution.py`' in readme
    assert ('at most 60 s (wall-clock and CPU time) and 2 GiB of memory; `./run.py unittest` stops '
            'a test after the same 60 s') in readme
    assert ('`mnist` gets its training limit of 10 minutes, plus 60 s to load the data and '
            'predict, and 6 GiB of memory') in readme
    assert '`model.print_parameters()`' in readme and 'determine_padding' not in readme


def test_a_readme_without_the_original_kit_notes_is_a_clear_error(tmp_path, monkeypatch):
    (tmp_path / 'README.md').write_text('# numpy-nn-kit\n')
    monkeypatch.setattr(common, 'KIT_DIR', tmp_path)
    with pytest.raises(kit.KitError,
                       match="README.md needs the sections '### Coming from the original"):
        kit.original_kit_notes(load_table(STANDARD_TABLE))


def test_standard_kit_readme_maps_the_original_kits_api(kits):
    readme = (kits['standard'] / 'README.md').read_text()
    notes = readme.split('## Coming from the original course kit\n', 1)[1].split('\n## ', 1)[0]
    assert '`model.print_parameters()`' in notes
    assert '| `determine_padding(kernel_size, mode)`' in notes


@pytest.mark.parametrize('table', ['standard', 'mnist'])
def test_kit_fixtures_are_valid_for_its_table(kits, table):
    result = run('check-fixtures', kits[table] / 'tests', '--sections', table)
    assert result.returncode == 0, result.stdout


def test_every_test_of_the_blank_kit_is_not_implemented(kits, data_with_small_cifar):
    env = {**os.environ, 'NN_DATA_DIR': str(data_with_small_cifar)}
    for test in [test for _, test in load_table(STANDARD_TABLE).numbered_tests()]:
        result = run('unittest', test, kit_dir=kits['standard'], env=env)
        assert result.returncode == 1, result.stdout + result.stderr
        row, message = result.stdout.splitlines()[-3:-1]
        assert 'NOT IMPLEMENTED' in row and 'your code here' in message, result.stdout
        assert 'Traceback' not in result.stdout + result.stderr


@pytest.mark.parametrize('table', ['standard', 'mnist'])
def test_filling_the_regions_back_gives_the_reference_that_passes(kits, table, tmp_path):
    filled_kit = tmp_path / 'kit'
    shutil.copytree(kits[table], filled_kit, symlinks=True)
    template = (filled_kit / 'solution.py').read_text()
    filled = region_filled(template, REFERENCE.read_text())
    assert filled == reference_up_to(FIRST_LEFT_OUT[table])
    (filled_kit / 'solution.py').write_text(filled)
    quick = [test for test in QUICK_TESTS if test in common.find_fixtures(filled_kit / 'tests')]
    result = run('unittest', *quick, kit_dir=filled_kit)
    assert result.returncode == 0 and 'FAILED' not in result.stdout, result.stdout
    fixtures = common.find_fixtures(filled_kit / 'tests')
    cases = sum(len(fixtures[test].cases) for test in quick)
    result = kit_pytest(filled_kit, '-m', 'not training')
    assert result.returncode == 0 and f"{cases} passed" in result.stdout, result.stdout


def kit_pytest(kit_dir, *args):
    """python -m pytest in a kit, as a student's editor runs it."""
    return subprocess.run([sys.executable, '-m', 'pytest', '-q', '-p', 'no:cacheprovider', *args],
                          cwd=kit_dir, capture_output=True, text=True, timeout=300, check=False)


def test_pytest_in_the_blank_kit_fails_one_item_per_case_selectable_by_test(kits):
    relu = common.find_fixtures(kits['standard'] / 'tests')['relu']
    result = kit_pytest(kits['standard'], '-m', 'relu')
    assert result.returncode == 1 and f"{len(relu.cases)} failed" in result.stdout, result.stdout
    assert 'NOT IMPLEMENTED: ReLU: your code here' in result.stdout
    assert all(f"test_case[relu: {entry['name']}]" in result.stdout for entry in relu.cases)
    softmax = common.find_fixtures(kits['standard'] / 'tests')['softmax']
    by_name = kit_pytest(kits['standard'], '-k', 'softmax', '--collect-only')
    assert by_name.returncode == 0 and f"{len(softmax.cases)}/" in by_name.stdout, by_name.stdout
    collected = kit_pytest(kits['standard'], '--collect-only')
    fixtures = common.find_fixtures(kits['standard'] / 'tests').values()
    total = sum(len(fixture.cases) for fixture in fixtures)
    assert f"{total} tests collected" in collected.stdout, collected.stdout


@pytest.mark.training
def test_filled_mnist_kit_passes_its_training_test(kits, tmp_path):
    filled_kit = tmp_path / 'kit'
    shutil.copytree(kits['mnist'], filled_kit)
    (filled_kit / 'solution.py').write_text(
        region_filled((filled_kit / 'solution.py').read_text(), REFERENCE.read_text()))
    result = run('unittest', 'mnist', kit_dir=filled_kit, timeout=900)
    assert result.returncode == 0, result.stdout


OPEN, CLOSE = '        # your code here \\/\n', '        # your code here /\\\n'  # ReLU.forward's
BROKEN_MARKERS = {  # what is wrong: (how the reference is broken, words of the error)
    'a region left open': (lambda s: s.replace(CLOSE, '', 1), 'inside the region opened at line'),
    'nested regions': (lambda s: s.replace(OPEN, OPEN * 2, 1), 'regions cannot nest'),
    'a close without an open': (lambda s: s.replace(OPEN, '', 1), 'without an opening'),
    'the last region never closed': (
        lambda s: s[:s.rindex('# your code here /\\')].rstrip(' ') + '\n', 'never closed'),
    'a close indented differently': (
        lambda s: s.replace(CLOSE, CLOSE[4:], 1), 'indented differently'),
    'a misspelt marker': (
        lambda s: s.replace(OPEN, '        # your code here:\n', 1), 'unknown marker'),
    'a header inside a region': (
        lambda s: s.replace(CLOSE, '# ===== 2.1.2 Softmax =====\n' + CLOSE, 1),
        'a section header inside the region'),
    'a section in no table': (lambda s: s.replace(' 2.1.1 ReLU ', ' 2.1.9 ReLU ', 1),
                              'section 2.1.9 is in no points table'),
}


@pytest.mark.parametrize('what', BROKEN_MARKERS)
def test_a_misplaced_marker_is_a_clear_error_naming_the_line(tmp_path, what):
    breaking, words = BROKEN_MARKERS[what]
    broken = tmp_path / 'solution.py'
    broken.write_text(breaking(REFERENCE.read_text()))
    assert broken.read_text() != REFERENCE.read_text()
    result = run('make-kit', '--reference', broken, '--out', tmp_path / 'kit')
    assert result.returncode == 2 and words in result.stderr, result.stderr
    assert re.search(rf'{re.escape(str(broken))}:\d+: ', result.stderr), result.stderr
    assert 'Traceback' not in result.stderr and len(result.stderr.splitlines()) == 1
    assert not (tmp_path / 'kit').exists() and not (tmp_path / 'kit.zip').exists()


def test_a_table_section_missing_from_the_reference_is_an_error(tmp_path):
    table = tmp_path / 'table.csv'
    table.write_text(STANDARD_TABLE.read_text() + '5.1,Attention,1.0,relu\n')
    with pytest.raises(kit.KitError, match='no section header for 5.1 Attention'):
        kit.make_template(REFERENCE.read_text(), load_table(table))


@pytest.mark.parametrize('command', [('make-fixtures', '--out'), ('make-kit', '--out'),
                                     ('check-fixtures',)])
def test_a_missing_reference_is_a_usage_error(tmp_path, command):
    result = run(*command, *([tmp_path / 'out'] if len(command) > 1 else []),
                 '--reference', tmp_path / 'nope.py')
    assert result.returncode == 2 and 'Traceback' not in result.stderr, result.stderr
    last = result.stderr.splitlines()[-1]
    assert last.endswith(f"--reference: {tmp_path / 'nope.py'}: no such file")
    assert not (tmp_path / 'out').exists()


def test_make_kit_overwrites_nothing(kits):
    before = tree(kits['mnist'])
    result = run('make-kit', '--sections', 'mnist', '--out', kits['mnist'])
    assert result.returncode == 2 and 'is not an empty directory' in result.stderr
    assert tree(kits['mnist']) == before


# ================================= Grading ==================================

def grade(submission, tmp_path, *options):
    report = tmp_path / f'{Path(submission).parent.name}.json'
    result = run('grade', submission, '--json', report, *options)
    assert result.returncode == 0, result.stdout + result.stderr
    return json.loads(report.read_text())


def test_grader_gives_the_reference_full_marks_and_the_blank_template_zero(kits, tmp_path):
    hidden = tmp_path / 'hidden'
    assert run('make-fixtures', '--hidden', hidden, '--seed', 11).returncode == 0
    options = ('--only', ','.join(QUICK_TESTS), '--hidden', hidden)
    full = grade(REFERENCE, tmp_path, *options)
    assert full['total'] == full['max_total'] == 12.0
    blank = grade(kits['standard'] / 'solution.py', tmp_path, *options)
    assert blank['total'] == 0 and blank['max_total'] == 12.0
    assert {section['verdict'] for section in blank['sections']} == {'not implemented'}


def test_grader_gives_the_blank_mnist_template_zero_on_its_table(kits, tmp_path):
    blank = grade(kits['mnist'] / 'solution.py', tmp_path, '--sections', 'mnist')
    assert (blank['total'], blank['max_total']) == (0, 5.0)
    assert [section['verdict'] for section in blank['sections']] == ['not implemented'] * 7


@pytest.mark.training
def test_grader_gives_the_reference_full_marks_on_the_mnist_table(tmp_path):
    full = grade(REFERENCE, tmp_path, '--sections', 'mnist')
    assert full['total'] == full['max_total'] == 5.0


# ================================= Fixtures =================================

def test_make_fixtures_reproduces_the_committed_ones_and_seeds_are_stable(tmp_path):
    assert run('make-fixtures', '--out', tmp_path / 'default').returncode == 0
    committed = {name: body for name, body in tree(common.TESTS_DIR).items()
                 if re.match(r'\d+_unittest_\w+_input/', name)}
    assert tree(tmp_path / 'default') == committed
    for out in ('seed-a', 'seed-b'):
        assert run('make-fixtures', '--seed', 3, '--out', tmp_path / out).returncode == 0
    assert tree(tmp_path / 'seed-a') == tree(tmp_path / 'seed-b')
    other = tree(tmp_path / 'seed-a')
    assert other.keys() == committed.keys()
    assert any(other[name] != committed[name] for name in other if name.endswith('.pkl'))


def test_standard_dirs_keep_their_numbers_when_optional_sections_are_added():
    standard = load_table(STANDARD_TABLE)
    extended = load_table(EXTENDED_TABLE)
    assert extended.sections[:len(standard.sections)] == standard.sections
    optional = extended.sections[len(standard.sections):]
    assert [s.title for s in optional][:3] == ['LeakyReLU', 'RMSProp', 'Adam']  # new ones go after
    assert all(s.points > 0 for s in optional)
    for other in (STANDARD_TABLE, MNIST_TABLE):
        assert not {s.number for s in optional} & {s.number for s in load_table(other).sections}
    numbered = [directory_name(n, test) for n, (_, test) in enumerate(extended.numbered_tests())]
    assert [fixture.directory.name for fixture in common.find_fixtures().values()] == numbered
    assert numbered[15:18] == ['15_unittest_leakyrelu_input', '16_unittest_rmsprop_input',
                               '17_unittest_adam_input']


def all_cases(directory):
    """{(test, case number): case} of the fixture directories in directory."""
    return {(test, number): fixture.load_case(entry)
            for test, fixture in common.find_fixtures(directory).items()
            for number, entry in enumerate(fixture.cases)}


def drawn_shapes(case):
    """The shapes a case's random inputs were drawn with (none for fixed-shape cases)."""
    if 'calls' in case:
        return [call['inputs'].shape for call in case['calls']]
    if case['kind'] == 'loss':
        return [case['y_gt'].shape, case['y_pred'].shape]
    if case['kind'] == 'optimizer':
        return [value.shape for value in case['parameters'].values()]
    if case['kind'] == 'function' and case['function'] == 'im2col':
        return [case['args'][0].shape]
    return []


def test_hidden_set_has_the_public_layout_other_values_and_grown_shapes(tmp_path):
    hidden = tmp_path / 'hidden'
    result = run('make-fixtures', '--hidden', hidden, '--seed', 5)
    assert result.returncode == 0, result.stderr
    assert sorted(path.name for path in hidden.iterdir()) == sorted(
        fixture.directory.name for fixture in common.find_fixtures().values())
    public, secret = all_cases(common.TESTS_DIR), all_cases(hidden)
    assert public.keys() == secret.keys()
    grown = [key for key, case in public.items() if drawn_shapes(case)]
    assert len(grown) > 40
    for key in grown:  # sizes of 1 (batch of 1, 1 channel) stay, the others grow
        expected = [tuple(size if size == 1 else size + GROWTH for size in shape)
                    for shape in drawn_shapes(public[key])]
        assert drawn_shapes(secret[key]) == expected, key
    run('make-fixtures', '--hidden', tmp_path / 'again', '--seed', 5)
    assert tree(tmp_path / 'again') == tree(hidden)
    assert run('check-fixtures', hidden).returncode == 0


def test_hidden_set_stays_out_of_tests():
    result = run('make-fixtures', '--hidden', common.TESTS_DIR / 'hidden')
    assert result.returncode == 2 and 'outside' in result.stderr
    assert not (common.TESTS_DIR / 'hidden').exists()


def test_check_fixtures_passes_the_public_fixtures_and_says_what_it_did_not_train():
    result = run('check-fixtures')
    assert result.returncode == 0, result.stdout
    lines = result.stdout.splitlines()
    assert len([line for line in lines if ': ok, ' in line]) == len(common.find_fixtures())
    for test in ('mnist', 'cifar'):
        line = next(line for line in lines if f'_unittest_{test}_input' in line)
        assert 'checked structurally only, not trained' in line


def rewrite_case(directory, number, change):
    path = directory / f'case_{number:02d}.pkl'
    case = pickles.load_pickle(path)
    change(case)
    path.write_bytes(pickle.dumps(case, protocol=4))


def rewrite_description(directory, change):
    description = json.loads((directory / 'description.json').read_text())
    change(description)
    (directory / 'description.json').write_text(json.dumps(description))


class Payload:
    def __reduce__(self):
        return (print, ('owned',))


CORRUPTIONS = {  # what is broken: (how, words of the problem)
    'NaN in an input': (
        lambda d: rewrite_case(d / '00_unittest_relu_input', 0,
                               lambda c: c['calls'][0]['inputs'].__setitem__((0, 0), np.nan)),
        "00_unittest_relu_input: case 'batch of 1' (case_00.pkl): "
        "case['calls'][0]['inputs']: has NaN"),
    'float32 array': (
        lambda d: rewrite_case(d / '04_unittest_sgd_input', 1,
                               lambda c: c['parameters'].__setitem__(
                                   'A', c['parameters']['A'].astype(np.float32))),
        "dtype float32, expected float64"),
    'an object in a pickle': (
        lambda d: (d / '01_unittest_softmax_input' / 'case_00.pkl').write_bytes(
            pickle.dumps({'inputs': Payload()})),
        'refusing to load builtins.print'),
    'points not the table\'s': (
        lambda d: rewrite_description(d / '02_unittest_dense_input',
                                      lambda x: x.__setitem__('points', 2.5)),
        'the table 2.1.3 \'Dense\' 1.5 points'),
    'wrong number': (
        lambda d: (d / '13_unittest_flatten_input').rename(d / '12_unittest_flatten_input'),
        'should be 13_unittest_flatten_input'),
    'expected value changed': (
        lambda d: rewrite_case(d / '17_unittest_adam_input', 0,
                               lambda c: c['expected']['B after step 2'].__imul__(1.01)),
        'the reference does not pass it: failed: B after step 2 differs'),
    'inputs of another shape': (
        lambda d: rewrite_case(d / '10_unittest_avgpool_input', 1,
                               lambda c: c['calls'][0].__setitem__('inputs',
                                                                   np.zeros((4, 3, 5, 8)))),
        'inputs of shape (4, 3, 5, 8), input_shape (3, 5, 7)'),
    'stray file': (
        lambda d: (d / '03_unittest_crossentropy_input' / 'case_09.pkl').write_bytes(b''),
        'files not listed in description.json: case_09.pkl'),
    'missing directory': (
        lambda d: shutil.rmtree(d / '15_unittest_leakyrelu_input'),
        "no fixture directory for test 'leakyrelu' of section 4.1"),
    'training bar out of range': (
        lambda d: rewrite_case(d / '06_unittest_mnist_input', 0,
                               lambda c: c.__setitem__('min_accuracy', 90)),
        'min_accuracy 90: expected 0..1'),
}


@pytest.fixture(scope='module')
def reference_module():
    return common.load_solution(REFERENCE, name='reference_for_check_fixtures')


@pytest.mark.parametrize('what', CORRUPTIONS)
def test_check_fixtures_finds_each_kind_of_broken_fixture(tmp_path, what, reference_module):
    copy = tmp_path / 'tests'
    for fixture in common.find_fixtures().values():
        shutil.copytree(fixture.directory, copy / fixture.directory.name)
    how, words = CORRUPTIONS[what]
    how(copy)
    problems, _ = validate.check_directory(copy, load_table(EXTENDED_TABLE), reference_module)
    assert len(problems) == 1 and words in problems[0], problems


def test_check_fixtures_exit_status_and_usage_errors(tmp_path):
    copy = tmp_path / 'tests'
    shutil.copytree(common.TESTS_DIR / '00_unittest_relu_input', copy / '00_unittest_relu_input')
    result = run('check-fixtures', copy)
    assert result.returncode == 1 and "no fixture directory for test 'softmax'" in result.stdout
    assert run('check-fixtures', copy, '--sections', tmp_path / 'nope.csv').returncode == 2
    assert run('check-fixtures', tmp_path / 'nope').returncode == 2


# ============================== Adding a section ============================

def next_section_number():
    """The number after the last section of the extended table: 4.3 -> 4.4."""
    *major, minor = load_table(EXTENDED_TABLE).sections[-1].number.split('.')
    return '.'.join([*major, str(int(minor) + 1)])


TOY = 'ToyTanh'  # a name no real section will take
TOY_SECTION = """

# ================================ {number} ToyTanh ==================================

class ToyTanh(Layer):
    \"\"\"y = tanh(x), elementwise; any input shape.\"\"\"

    def forward(self, inputs):
        \"\"\"inputs (n, ...) -> outputs (n, ...).\"\"\"
        # your code here \\/
        return np.tanh(inputs)
        # your code here /\\

    def backward(self, grad_outputs):
        \"\"\"dL/dy (n, ...) -> dL/dx (n, ...), using y = self.forward_outputs.\"\"\"
        # your code here \\/
        return grad_outputs * (1 - self.forward_outputs ** 2)
        # your code here /\\
"""
TOY_SPECS = """
SPECS['toytanh'] = [
    LayerCase('batch of 1', 'ToyTanh', (1, 5)),
    LayerCase('images (4, 2, 3, 3)', 'ToyTanh', (4, 2, 3, 3)),
]
"""
TOY_GRADCHECK_DEFAULTS = "    'ToyTanh': ((4, 3, 5), {}),\n"
# The project's tests that a new section must leave green, run in the copy after the steps.
TESTS_OF_A_NEW_SECTION = [
    'tests/test_solution.py',
    'tests/test_fixture_files.py',
    'tests/test_student_tools.py::test_every_layer_of_the_kit_has_gradcheck_defaults',
    f'tests/test_student_tools.py::test_gradcheck_finds_every_reference_layer_right_with_no_options[{TOY}]',
    'tests/test_instructor_tools.py::test_standard_dirs_keep_their_numbers_when_optional_sections_are_added',
    'tests/test_instructor_tools.py::test_check_fixtures_passes_the_public_fixtures_and_says_what_it_did_not_train',
    'tests/test_instructor_tools.py::test_kit_modules_are_every_top_level_module_but_the_solution',
]


def add_after(path, anchor, text):
    """Inserts text after the one line of file `path` that starts with anchor."""
    lines = path.read_text().splitlines(keepends=True)
    found = [index for index, line in enumerate(lines) if line.startswith(anchor)]
    assert len(found) == 1, f"{path}: {anchor!r}"
    path.write_text(''.join(lines[:found[0] + 1]) + text + ''.join(lines[found[0] + 1:]))


def test_adding_a_section_by_the_readme_steps(tmp_path):
    assert not hasattr(solution, TOY)
    repo = tmp_path / 'repo'
    repo.mkdir()
    for name in (*kit.KIT_MODULES, 'solution.py', 'requirements.txt', 'pytest.ini',
                 'README.md'):
        shutil.copy2(common.KIT_DIR / name, repo / name)
    for directory in ('staff', 'tests'):
        shutil.copytree(common.KIT_DIR / directory, repo / directory, ignore=shutil.ignore_patterns(
            '__pycache__', 'submissions', 'hidden*'))
    (repo / 'data').mkdir()
    (repo / 'data' / 'mnist').symlink_to(common.KIT_DIR / 'data' / 'mnist')
    before = tree(repo / 'tests')
    number = next_section_number()

    for path, text in (('solution.py', TOY_SECTION.format(number=number)),  # step 1
                       ('staff/fixtures.py', TOY_SPECS),                     # step 2
                       ('staff/points/extended.csv', f'{number},ToyTanh,0.5,toytanh\n')):  # step 3
        with open(repo / path, 'a') as file:
            file.write(text)
    add_after(repo / 'run.py', 'GRADCHECK_DEFAULTS = {', TOY_GRADCHECK_DEFAULTS)  # step 1, a layer
    assert run('make-fixtures', kit_dir=repo).returncode == 0  # step 4
    after = tree(repo / 'tests')
    assert {name: after[name] for name in before} == before
    assert sorted({name.split('/')[0] for name in after.keys() - before.keys()}) == [
        directory_name(len(common.find_fixtures()), 'toytanh')]
    checked = run('check-fixtures', kit_dir=repo)
    assert checked.returncode == 0, checked.stdout
    tested = run('unittest', 'toytanh', kit_dir=repo)
    assert tested.returncode == 0, tested.stdout
    assert tested.stdout.strip().endswith('0.5 / 0.5 points'), tested.stdout
    suite = subprocess.run([sys.executable, '-m', 'pytest', '-q', *TESTS_OF_A_NEW_SECTION],
                           cwd=repo, capture_output=True, text=True, timeout=600, check=False)
    assert suite.returncode == 0, suite.stdout[-3000:]  # step 5: the suite stays green

    assert run('make-kit', '--sections', 'extended', '--out', tmp_path / 'kit',
               kit_dir=repo).returncode == 0
    template = (tmp_path / 'kit' / 'solution.py').read_text()
    assert template.count('raise NotImplementedError("ToyTanh: your code here")') == 2
    blank = run('unittest', 'toytanh', kit_dir=tmp_path / 'kit')
    assert blank.returncode == 1 and 'NOT IMPLEMENTED' in blank.stdout
    assert run('make-fixtures', '--hidden', tmp_path / 'hidden', kit_dir=repo).returncode == 0
    graded = run('grade', repo / 'solution.py', '--sections', 'extended', '--only', 'toytanh',
                 '--hidden', tmp_path / 'hidden', kit_dir=repo)
    assert graded.returncode == 0, graded.stdout + graded.stderr
    assert 'total 0.5 / 0.5' in graded.stdout, graded.stdout
