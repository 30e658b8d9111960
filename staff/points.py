"""Points tables: which sections an assignment has, their points and tests.

A table is a CSV file (section,title,points,tests) with the tests of a
section separated by spaces. This is the one list of sections of the kit.
"""
import csv
from dataclasses import dataclass
from pathlib import Path

TABLES_DIR = Path(__file__).resolve().parent / 'points'
STANDARD_TABLE = TABLES_DIR / 'standard.csv'
# Every section of the kit: the standard table's lines, then the optional sections.
# The fixture directories are numbered in its order, so new lines go at its end.
EXTENDED_TABLE = TABLES_DIR / 'extended.csv'


@dataclass(frozen=True)
class Section:
    number: str
    title: str
    points: float
    tests: tuple


@dataclass(frozen=True)
class Table:
    sections: tuple

    def numbered_tests(self):
        """(section, test) for every test, in the table's order."""
        return [(section, test) for section in self.sections for test in section.tests]

    @property
    def max_total(self):
        return sum(section.points for section in self.sections)


COLUMNS = ['section', 'title', 'points', 'tests']


def load_table(path=STANDARD_TABLE):
    """Reads a points table; a malformed one is a ValueError naming the line.

    It needs the header section,title,points,tests, at least one section,
    distinct section numbers, points >= 0 and at least one test per section.
    """
    sections = []
    try:
        with open(path, newline='') as file:
            reader = csv.DictReader(file)
            if reader.fieldnames != COLUMNS:
                raise ValueError(f"{path}:1: the header must be {','.join(COLUMNS)}, not "
                                 f"{','.join(reader.fieldnames or [])!r}")
            for line, row in enumerate(reader, 2):
                sections.append(table_row(path, line, row))
    except (UnicodeDecodeError, csv.Error) as error:
        raise ValueError(f"{path}: not a CSV points table ({error})") from None
    if not sections:
        raise ValueError(f"{path}: no sections")
    numbers = [section.number for section in sections]
    if repeated := sorted({number for number in numbers if numbers.count(number) > 1}):
        raise ValueError(f"{path}: section {', '.join(repeated)} appears more than once")
    return Table(tuple(sections))


def table_row(path, line, row):
    """The Section of one row of a points table."""
    try:
        section = Section(row['section'].strip(), row['title'], float(row['points']),
                          tuple(row['tests'].split()))
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        raise ValueError(f"{path}:{line}: bad row {row} ({error})") from None
    if None in row or not section.number or not section.tests or \
            not 0 <= section.points < float('inf'):
        raise ValueError(f"{path}:{line}: bad row {row} (a section number, points >= 0 and "
                         f"at least one test)")
    return section
