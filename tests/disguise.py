"""Generated solutions for the similarity report's tests and bench.

honest(): an independently written solution: the regions between the markers
of one of several independently written solutions (the reference with its
correct variants, tests/similarity/honest_*.txt), but the short formulas
(ReLU, SGD, ...) drawn from any of them, as students write them alike.

disguise(): a copy as a copier hides it: identifiers renamed, functions and
methods reordered, comments stripped or rewritten, blank lines changed.
"""
import ast
import io
import keyword
import random
import tokenize
from pathlib import Path

from mutants import VARIANTS

from staff.kit import parse_solution
from staff.similarity import REFERENCE as REFERENCE_NAME

KIT = Path(__file__).resolve().parent.parent
HONEST = sorted((KIT / 'tests' / 'similarity').glob('honest_*.txt'))
WORDS = ('value', 'tmp', 'res', 'arr', 'data', 'buf', 'acc', 'out', 'mat', 'vec', 'cur', 'part')
COMMENTS = ('# compute it', '# TODO check', '# main step', '# see lecture 3', '# vectorized',
            '# works', '# gradient here', '# shapes ok')


def with_variants(reference, tests):
    """The reference with every correct variant of `tests` applied that still applies."""
    for edit in VARIANTS:
        if edit.test in tests and reference.count(edit.old) == 1:
            reference = reference.replace(edit.old, edit.new)
    return reference


def numbered_regions(lines):
    """[((section, its region's ordinal), Region)] of a solution's lines."""
    _, regions = parse_solution(lines, 'solution')
    ordinals = {}
    keyed = []
    for region in regions:
        ordinals[region.number] = ordinals.get(region.number, -1) + 1
        keyed.append(((region.number, ordinals[region.number]), region))
    return keyed


def region_bodies(text):
    """{(section, ordinal): the lines inside that marked region} of a solution."""
    lines = text.splitlines()
    return {key: lines[region.open + 1:region.close] for key, region in numbered_regions(lines)}


def fill(template, bodies):
    """The template with each region's placeholder replaced by bodies[(section, ordinal)]."""
    lines = template.splitlines()
    out, start = [], 0
    for key, region in numbered_regions(lines):
        out += lines[start:region.open + 1] + bodies[key]
        start = region.close
    return '\n'.join(out + lines[start:]) + '\n'


def honest(template, base, sources, rng):
    """An independent solution: the template filled with base's regions, but for short formulas.

    A region that base fills with one line (ReLU, Dense.forward, the
    cross-entropy, SGD) is a short formula that many students write the same
    way: it is the one-line body of a random one of `sources` (solutions'
    texts) instead, if any of them has one.
    """
    own = region_bodies(base)
    pool = [region_bodies(source) for source in sources]
    bodies = {}
    for key in own:
        formulas = [body[key] for body in pool if len(body.get(key, ())) == 1]
        bodies[key] = rng.choice(formulas) if len(own[key]) == 1 and formulas else own[key]
    return fill(template, bodies)


def rename(text, rng):
    """Every assigned name and argument but self renamed, the same way everywhere."""
    tree = ast.parse(text)
    names = {node.id for node in ast.walk(tree)
             if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store)}
    names |= {node.arg for node in ast.walk(tree) if isinstance(node, ast.arg)} - {'self'}
    new = {name: f"{rng.choice(WORDS)}_{index}" for index, name in enumerate(sorted(names))}
    tokens = list(tokenize.generate_tokens(io.StringIO(text).readline))
    out = []
    for index, token in enumerate(tokens):
        after_dot = index and tokens[index - 1].string == '.'
        keyword_argument = index + 1 < len(tokens) and tokens[index + 1].string == '=' and \
            token.string not in names
        if (token.type == tokenize.NAME and token.string in new and not after_dot
                and not keyword_argument and not keyword.iskeyword(token.string)):
            token = token._replace(string=new[token.string])
        out.append(token)
    return tokenize.untokenize(out)


def shuffled_blocks(lines, nodes, rng):
    """lines with the blocks of consecutive class/function nodes in random order.

    A node's block runs from the line after the previous node to its last line,
    so the comments and blank lines above a function move with it.
    """
    movable = [node for node in nodes if isinstance(node, (ast.ClassDef, ast.FunctionDef))]
    if len(movable) < 2:
        return lines
    first = movable[0].lineno - 1
    previous = nodes[nodes.index(movable[0]) - 1] if nodes.index(movable[0]) else None
    start = previous.end_lineno if previous else first
    blocks, position = [], start
    for node in movable:
        blocks.append(lines[position:node.end_lineno])
        position = node.end_lineno
    rng.shuffle(blocks)
    return lines[:start] + [line for block in blocks for line in block] + lines[position:]


def reorder(text, rng):
    """Methods shuffled inside each class, then top-level classes and functions shuffled."""
    lines = text.splitlines()
    for node in sorted((n for n in ast.parse(text).body if isinstance(n, ast.ClassDef)),
                       key=lambda n: -n.lineno):
        methods = [child for child in node.body if isinstance(child, ast.FunctionDef)]
        if methods and node.body[-len(methods):] == methods:
            part = shuffled_blocks(lines[:node.end_lineno], node.body, rng)
            lines = part + lines[node.end_lineno:]
    body = ast.parse('\n'.join(lines)).body
    tail = [node for node in body if isinstance(node, (ast.ClassDef, ast.FunctionDef))]
    if tail and body[-len(tail):] == tail:
        lines = shuffled_blocks(lines, body, rng)
    return '\n'.join(lines) + '\n'


def recomment(text, rng):
    """Comments dropped or replaced by others, blank lines added here and there."""
    out = []
    for line in text.splitlines():
        code, hash_sign, _ = line.partition('#')
        if hash_sign and "'" not in code and '"' not in code:
            line = code.rstrip()
            if rng.random() < 0.3:
                line = (line + '  ' if line.strip() else code) + rng.choice(COMMENTS)
            if not line.strip():
                continue
        out.append(line)
        if rng.random() < 0.05:
            out.append('')
    return '\n'.join(out) + '\n'


def disguise(text, rng):
    """A disguised copy of text: renamed, reordered, re-commented."""
    return recomment(reorder(rename(text, rng), rng), rng)


def corpus(template, reference, sources, rng, honest_count=12, copied_count=4):
    """A generated course: (files {name: text}, base {name: its independent source}, copies).

    honest_count independent solutions (bases cycling through those of `sources`
    that fill every region of the template; the others lend short formulas),
    disguised copies of the first copied_count of them and one of the
    reference; copies: the {copy, original} pairs, the copy of the reference
    paired with REFERENCE_NAME, the name the reference must get among the files.
    """
    keys = {key for key, _ in numbered_regions(template.splitlines())}
    bases = [index for index, source in enumerate(sources) if keys <= region_bodies(source).keys()]
    base = {f"honest{i}": bases[i % len(bases)] for i in range(honest_count)}
    files = {name: honest(template, sources[index], sources, rng) for name, index in base.items()}
    copies = []
    for i in range(copied_count):
        files[f"copy{i}"], base[f"copy{i}"] = disguise(files[f"honest{i}"], rng), base[f"honest{i}"]
        copies.append({f"copy{i}", f"honest{i}"})
    files['copy_of_reference'] = disguise(honest(template, reference, [], rng), rng)
    base.update(copy_of_reference=0, **{REFERENCE_NAME: 0})
    return files, base, copies + [{'copy_of_reference', REFERENCE_NAME}]


def honest_sources(reference, tests):
    """Independently written solutions: the reference (its correct variants applied), honest_*.txt.

    Only their regions are used (honest() fills them into the current template).
    """
    return [with_variants(reference, tests)] + [path.read_text() for path in HONEST]


def seeded(seed):
    return random.Random(seed)
