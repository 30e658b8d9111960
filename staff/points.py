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


def load_table(path=STANDARD_TABLE):
    """Reads a points table; a malformed one is a ValueError naming the line."""
    sections = []
    with open(path, newline='') as file:
        for line, row in enumerate(csv.DictReader(file), 2):
            try:
                sections.append(Section(row['section'], row['title'], float(row['points']),
                                        tuple(row['tests'].split())))
            except (KeyError, TypeError, ValueError, AttributeError) as error:
                raise ValueError(f"{path}:{line}: bad row {row} ({error})") from None
    return Table(tuple(sections))
