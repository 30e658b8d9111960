"""The student kit, derived from the reference solution.py and a points table.

    ./run.py make-kit --out kit                    the 15-point kit: kit/ and kit.zip
    ./run.py make-kit --sections mnist --out kit   the 5-point MNIST-only kit

The reference solution.py is made of sections: each starts at a header line
`# ===== <number> <title> =====` whose number is a section of a points table,
and runs to the next header. The template keeps the sections of the chosen
table and replaces every region between the markers `# your code here \\/`
and `# your code here /\\` with `raise NotImplementedError("<title>: your
code here")`, keeping the markers and all given code (signatures,
docstrings, constructors). Sections outside the table are left out whole, so
none of their code reaches the students.

The kit holds the template, the kit's modules (KIT_MODULES), requirements.txt
(written from STUDENT_REQUIREMENTS), MNIST (data/mnist/), the public fixture
directories of the table's tests (numbered in the table's order, their
descriptions carrying the table's points), the pytest files that run them
(KIT_TEST_FILES) and a README generated from the table. No reference code,
hidden fixtures, staff/ package or other project tests get into it.
"""
import argparse
import ast
import json
import os
import re
import shutil
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import common
import datasets
from staff.cli import UsageError, add_reference_argument, find_table
from staff.fixtures import directory_name, write_description
from staff.points import STANDARD_TABLE, TABLES_DIR, load_table

OPEN = '# your code here \\/'
CLOSE = '# your code here /\\'
HEADER = re.compile(r'# =+ (?P<number>\d+(?:\.\d+)*) (?P<title>.*\S) =+')
# The modules a student receives, beside solution.py; the grader copies them into its sandbox.
KIT_MODULES = ('interface.py', 'common.py', 'datasets.py', 'gradcheck.py', 'pickles.py', 'run.py')
KIT_TEST_FILES = ('conftest.py', 'test_solution.py')  # tests/: python -m pytest runs the tests
# The student kit's requirements.txt: what the kit's modules import (and pytest, which
# the original kit's instructions use). The repository's requirements.txt pins more.
STUDENT_REQUIREMENTS = ('numpy>=1.24', 'pytest>=7', 'tqdm>=4.60', 'matplotlib>=3.5')
EXECUTABLES = ('run.py',)
ZIP_TIME = (1980, 1, 1, 0, 0, 0)  # fixed: the same kit gives the same zip


class KitError(UsageError):
    """The reference or the table cannot make a kit; the message names file and line."""


# ================================ Template ==================================

@dataclass
class Part:
    """The lines [start, end) of solution.py under the header of section `number`."""
    number: str
    start: int
    end: int


@dataclass
class Region:
    """A student region: its opening and closing marker lines, in section `number`."""
    number: str
    open: int
    close: int


def indentation(line):
    return line[:len(line) - len(line.lstrip())]


def parse_solution(lines, path):
    """(parts, regions) of solution.py's lines; a misplaced marker is a KitError naming its line."""
    parts, regions, opened = [], [], None
    for index, line in enumerate(lines):
        where, text = f"{path}:{index + 1}", line.strip()
        if header := HEADER.fullmatch(line.rstrip()):
            if opened is not None:
                raise KitError(f"{where}: a section header inside the region opened at line "
                               f"{opened + 1}: close that region first with '{CLOSE}'")
            if header['number'] in {part.number for part in parts}:
                raise KitError(f"{where}: a second header of section {header['number']}")
            if parts:
                parts[-1].end = index
            parts.append(Part(header['number'], index, len(lines)))
        elif text == OPEN:
            if opened is not None:
                raise KitError(f"{where}: '{OPEN}' inside the region opened at line {opened + 1}: "
                               f"regions cannot nest, close that one first with '{CLOSE}'")
            if not parts:
                raise KitError(f"{where}: a region before the first section header "
                               f"'# ===== <number> <title> ====='")
            opened = index
        elif text == CLOSE:
            if opened is None:
                raise KitError(f"{where}: '{CLOSE}' without an opening '{OPEN}' before it")
            if indentation(line) != indentation(lines[opened]):
                raise KitError(f"{where}: '{CLOSE}' is indented differently from the '{OPEN}' "
                               f"at line {opened + 1} that it closes")
            regions.append(Region(parts[-1].number, opened, index))
            opened = None
        elif text.startswith('# your code here'):
            raise KitError(f"{where}: unknown marker {text!r}: regions open with '{OPEN}' and "
                           f"close with '{CLOSE}'")
    if opened is not None:
        raise KitError(f"{path}:{opened + 1}: the region opened here is never closed: add "
                       f"'{CLOSE}' at its end")
    return parts, regions


def known_sections(table):
    """Section numbers of `table` and of every table of the kit."""
    tables = [table] + [load_table(path) for path in sorted(TABLES_DIR.glob('*.csv'))]
    return {section.number for each in tables for section in each.sections}


def placeholder(line, title):
    """The statement that replaces a region opened by `line`."""
    return f"{indentation(line)}raise NotImplementedError({json.dumps(f'{title}: your code here')})"


def make_template(source, table, path='solution.py'):
    """The students' solution.py: the table's sections, each region a placeholder."""
    lines = source.splitlines()
    parts, regions = parse_solution(lines, path)
    known = known_sections(table)
    for part in parts:
        if part.number not in known:
            raise KitError(f"{path}:{part.start + 1}: section {part.number} is in no points "
                           f"table: add it to one in {TABLES_DIR} or fix the header")
    numbers = {part.number for part in parts}
    if missing := [f"{s.number} {s.title}" for s in table.sections if s.number not in numbers]:
        raise KitError(f"{path} has no section header for {', '.join(missing)}: start each "
                       f"section with '# ===== <number> <title> ====='")
    titles = {section.number: section.title for section in table.sections}
    template = lines[:parts[0].start] if parts else lines
    for part in parts:
        if part.number not in titles:
            continue
        start = part.start
        for region in (region for region in regions if region.number == part.number):
            template += lines[start:region.open + 1]
            template.append(placeholder(lines[region.open], titles[part.number]))
            start = region.close
        template += lines[start:part.end]
    text = '\n'.join(template).rstrip() + '\n'
    try:
        compile(text, path, 'exec')
    except SyntaxError as error:
        raise KitError(f"the template made from {path} is not valid Python ({error})") from None
    return text


def written_functions(template):
    """{section number: ['Class.method' or 'function' holding a region, ...]} of a template."""
    tree = ast.parse(template)
    lines = template.splitlines()
    parts, regions = parse_solution(lines, 'template')
    functions = []  # (first line, last line, 'Class.method'), nested ones after their parents

    def visit(node, names):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.ClassDef, ast.FunctionDef)):
                path = names + [child.name]
                if isinstance(child, ast.FunctionDef):
                    functions.append((child.lineno, child.end_lineno, '.'.join(path[:2])))
                visit(child, path)

    visit(tree, [])
    written = {part.number: [] for part in parts}
    for region in regions:
        holders = [name for first, last, name in functions if first <= region.open + 1 <= last]
        if holders and holders[0] not in written[region.number]:
            written[region.number].append(holders[0])
    return written


# ================================= README ===================================

def size_text(size):
    return f"{size / 2 ** 20:.1f} MiB"


def training_cases(fixtures):
    """{test: its training case} of the fixtures that train a model."""
    return {test: fixture.load_case(fixture.cases[0]) for test, fixture in fixtures.items()
            if fixture.is_training}


def command_lines(first_test, layer, trained):
    """The README's command examples, aligned."""
    commands = [(f"./run.py unittest {first_test}", "run one test against your solution.py"),
                ("./run.py unittest",
                 "run them all, with your score as the checking system counts it"),
                (f"./run.py gradcheck {layer}",
                 "compare a layer's backward pass with numerical gradients")]
    commands += [(f"./run.py train {test} --epochs 1",
                  "train your model briefly, print its test accuracy")
                 for test in trained]
    commands += [(f"./run.py profile {test}", "time each layer of that model, project the training")
                 for test in list(trained)[-1:]]
    width = max(len(command) for command, _ in commands)
    return '\n'.join(f"    {command:{width}}   {what}" for command, what in commands)


def section_rows(table, written):
    """The README's table of sections: number, title, points, tests, what to write."""
    rows = ["| section | title | points | tests | what you write |", "|---|---|---|---|---|"]
    for section in table.sections:
        tests = ' '.join(f"`{test}`" for test in section.tests)
        names = ', '.join(f"`{name}`" for name in written[section.number])
        rows.append(f"| {section.number} | {section.title} | {section.points:g} | {tests} "
                    f"| {names} |")
    return '\n'.join(rows + [f"| | total | {table.max_total:g} | | |"])


ORIGINAL_KIT_HEADING = '### Coming from the original course kit\n'
ORIGINAL_KIT_CONV_HEADING = '#### Its convolutional part\n'


def original_kit_notes(table):
    """The project README's notes for students of the original course kit; their part
    on the convolutional sections only when the kit has the conv test."""
    path = common.KIT_DIR / 'README.md'
    readme = path.read_text() if path.is_file() else ''
    if readme.count(ORIGINAL_KIT_HEADING) != 1 or readme.count(ORIGINAL_KIT_CONV_HEADING) != 1:
        raise KitError(f"{path} needs the sections {ORIGINAL_KIT_HEADING.strip()!r} and "
                       f"{ORIGINAL_KIT_CONV_HEADING.strip()!r}: the student README copies them")
    notes = re.split(r'\n#{2,3} ', readme.split(ORIGINAL_KIT_HEADING)[1], maxsplit=1)[0]
    base, conv = notes.split(ORIGINAL_KIT_CONV_HEADING)
    with_conv = any('conv' in section.tests for section in table.sections)
    return base.strip() + ('\n\n' + conv.strip() if with_conv else '')


def student_readme(table, written, fixtures, mnist_size):
    """The kit's README.md: set-up, commands, sections and points, data, what to upload."""
    trained = training_cases(fixtures)
    first = table.sections[0].tests[0]
    layer = next((name.split('.')[0] for names in written.values() for name in names
                  if name.endswith('.backward')), 'ReLU')
    bars = ''.join(f"\n- `{test}`: `{case['function']}` must reach a test accuracy above "
                   f"{case['min_accuracy']:.0%} in at most {case['time_limit'] / 60:g} minutes "
                   f"of training." for test, case in trained.items())
    bars_text = '\n' + bars if bars else ''
    cifar = any(case['dataset'] == 'cifar10' for case in trained.values())
    cifar_text = ("CIFAR-10 (163 MiB) is downloaded into `data/` the first time a command needs "
                  "it; without a network, put the folder `cifar-10-batches-py/` from "
                  "`cifar-10-python.tar.gz` (or `cifar-10-batches-bin/` of the binary version) "
                  "into `data/`. Until then the `cifar` test says NOT AVAILABLE.\n"
                  if cifar else '')
    return f"""# Neural networks in numpy: assignment kit ({table.max_total:g} points)

You write the parts of `solution.py` between the markers `# your code here \\/` and
`# your code here /\\`. Until you do, each of them raises `NotImplementedError`, and its
test says NOT IMPLEMENTED. The code outside the markers is given: keep it as it is.
`interface.py` (the layers' framework), `common.py` (how a test checks your code),
`run.py` and the helpers `datasets.py`, `gradcheck.py` and `pickles.py` are given too;
read `interface.py` first, and `common.py` when a test fails.

## Set up

    python3 -m pip install -r requirements.txt
    ./run.py unittest {first}

## Commands

{command_lines(first, layer, trained)}

`./run.py --help` and `./run.py <command> --help` explain the options. A failed test
names the case and the quantity that differs, with the worst index and both values.

`python -m pytest` runs the same checks as `./run.py unittest`, one pytest item per case
(`tests/test_solution.py`), for editors whose test panel runs pytest: select a test with
`python -m pytest -m {first}` or `-k {first}`, and leave out the training with
`-m "not training"`.

## Sections

{section_rows(table, written)}

A section's points are awarded when every case of each of its tests passes.{bars_text}

## Data

MNIST is included in `data/mnist/` (four .gz files, {size_text(mnist_size)}).
{cifar_text}
## Coming from the original course kit

{original_kit_notes(table)}

## What to upload

Only `solution.py`. The checking system runs it with its own copies of the other files
and of the tests, and possibly on more cases than those in `tests/` (other random inputs
and shapes): code that is right passes those too.

## Limits

{limits_text(trained)}
"""


def limits_text(trained):
    """The limits of the checking system (common.py's, which the grader applies)."""
    text = (f"Each section runs in a fresh process with at most {common.TIME_LIMIT} s (wall-clock "
            f"and CPU time) and {common.MEMORY_LIMIT / common.GIB:g} GiB of memory; `./run.py "
            f"unittest` stops a test after the same {common.TIME_LIMIT} s (`--time` changes it) "
            f"with the verdict TIME LIMIT.\n")
    for test, case in trained.items():
        text += (f"\n- `{test}` gets its training limit of {case['time_limit'] / 60:g} minutes, "
                 f"plus {common.TRAINING_ALLOWANCE} s to load the data and predict, and "
                 f"{common.TRAINING_MEMORY_LIMIT / common.GIB:g} GiB of memory.")
    return text + ("\n\nOver a limit, the section gets the verdict `time limit` or `memory limit` "
                   "and no points.")


# ================================== Kit =====================================

def public_fixtures(table):
    """{test: Fixture} of the table's tests among the kit's public fixtures, in table order."""
    found = common.find_fixtures()
    if missing := [test for _, test in table.numbered_tests() if test not in found]:
        raise KitError(f"no public fixture directory for test {', '.join(missing)} in "
                       f"{common.TESTS_DIR}: run ./run.py make-fixtures")
    return {test: found[test] for _, test in table.numbered_tests()}


def copy_fixtures(table, fixtures, tests_dir):
    """The fixtures' case files into tests_dir, numbered and described by the table."""
    for number, (section, test) in enumerate(table.numbered_tests()):
        fixture = fixtures[test]
        directory = tests_dir / directory_name(number, test)
        directory.mkdir(parents=True)
        for entry in fixture.cases:
            shutil.copyfile(fixture.directory / entry['file'], directory / entry['file'])
        write_description(directory, section, test, fixture.cases)


def copy_mnist(data_dir):
    """The four MNIST files (checked, downloaded if missing) into data_dir/mnist; their size."""
    target = data_dir / 'mnist'
    target.mkdir(parents=True)
    for name, md5 in datasets.MNIST_FILES.items():
        source = datasets.fetch(name, datasets.data_dir() / 'mnist', md5, datasets.MNIST_MIRRORS)
        shutil.copyfile(source, target / name)
    return sum(path.stat().st_size for path in target.iterdir())


def write_zip(directory, path, name):
    """directory as a zip of name/..., with fixed times and modes: the same files give the
    same bytes."""
    with zipfile.ZipFile(path, 'w', zipfile.ZIP_DEFLATED) as archive:
        for file in sorted(p for p in directory.rglob('*') if p.is_file()):
            relative = file.relative_to(directory)
            info = zipfile.ZipInfo(f"{name}/{relative.as_posix()}", ZIP_TIME)
            info.external_attr = (0o100755 if str(relative) in EXECUTABLES else 0o100644) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, file.read_bytes())


def make_kit(out_dir, table, reference=common.KIT_DIR / 'solution.py'):
    """Writes the kit of `table` into out_dir and out_dir.zip; returns the zip's path.

    out_dir must not exist or be empty, and the zip must not exist: nothing
    is overwritten. The kit is built aside and moved into place when complete,
    so a failure leaves neither.
    """
    out_dir = Path(out_dir).resolve()
    zip_path = out_dir.with_name(out_dir.name + '.zip')
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise KitError(f"{out_dir} exists and is not an empty directory: remove it or choose "
                       f"another --out")
    if zip_path.exists():
        raise KitError(f"{zip_path} exists: remove it or choose another --out")
    if common.TESTS_DIR in (out_dir, *out_dir.parents):
        raise KitError(f"--out {out_dir}: choose a directory outside {common.TESTS_DIR}")
    template = make_template(Path(reference).read_text(), table, reference)
    fixtures = public_fixtures(table)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        for name in KIT_MODULES:
            shutil.copyfile(common.KIT_DIR / name, stage / name)
        (stage / 'requirements.txt').write_text('\n'.join(STUDENT_REQUIREMENTS) + '\n')
        for name in EXECUTABLES:
            (stage / name).chmod(0o755)
        (stage / 'solution.py').write_text(template)
        copy_fixtures(table, fixtures, stage / 'tests')
        for name in KIT_TEST_FILES:
            shutil.copyfile(common.TESTS_DIR / name, stage / 'tests' / name)
        mnist_size = copy_mnist(stage / 'data')
        readme = student_readme(table, written_functions(template), fixtures, mnist_size)
        (stage / 'README.md').write_text(readme)
        stage.chmod(0o755)
        write_zip(stage, zip_path, out_dir.name)
        if out_dir.exists():
            out_dir.rmdir()
        os.rename(stage, out_dir)
    except BaseException:
        zip_path.unlink(missing_ok=True)
        raise
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return zip_path


# =================================== CLI ====================================

def add_arguments(parser):
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.description = '\n\n'.join(__doc__.split('\n\n')[:2]) + (
        "\n\nWrites DIR and DIR.zip and overwrites neither. Exit status 2 for a usage error\n"
        "or a reference that cannot make a template (a misplaced marker).")
    parser.add_argument('--sections', default=str(STANDARD_TABLE), metavar='FILE',
                        help="points table: a CSV file, or the kit's 'standard' (15 points), "
                             "'mnist' (5 points) or 'extended'; default standard")
    parser.add_argument('--out', type=Path, required=True, metavar='DIR',
                        help='where to write the kit (and DIR.zip beside it)')
    add_reference_argument(parser)


def main(args):
    """./run.py make-kit: returns the exit status."""
    table = find_table(args.sections)
    zip_path = make_kit(args.out, table, args.reference)
    tests = len(table.numbered_tests())
    print(f"student kit written to {args.out}/ and {zip_path} "
          f"({size_text(zip_path.stat().st_size)}): {len(table.sections)} sections, "
          f"{table.max_total:g} points, {tests} fixture directories")
    return 0
