"""The service's one seam to the grader (staff/grader.py): which sections there
are, and grading some sections of one submission in a worker process.

    python -m staff.service.grading SUBMISSION SECTION...

prints one JSON line describing the grader ({"grader": ...}), then one line
per graded section ({"section": number, "result": ...}), in order, as
./run.py grade grades them (Grader.section_results), and exits with status
SANDBOX_KILLED when a sandbox was killed from outside. The worker reads the
course's config from the environment (staff/service/config.py) and hides the
service's data directory from the sandbox.
"""
import json
import signal
import sys
from functools import cache

import common
from staff import cli, grader
from staff.sandbox import Limits
from staff.service import config as course

KILLED = f"killed by {signal.SIGKILL.name}"  # in the grader's message of a killed child
SANDBOX_KILLED = 75  # the worker's exit status then (EX_TEMPFAIL)


@cache
def table(points):
    return cli.find_table(points)


@cache
def training_tests():
    """The tests whose fixtures train a model (mnist, cifar): they run on request only."""
    return {test for test, fixture in common.find_fixtures().items() if fixture.is_training}


def sections(config):
    """The course's sections (staff.points.Section), in the table's order."""
    return table(config.points).sections


def split_sections(config):
    """(ordinary section numbers, training section numbers)."""
    ordinary, training = [], []
    for section in sections(config):
        (training if set(section.tests) & training_tests() else ordinary).append(section.number)
    return ordinary, training


def make_grader(config, numbers):
    limits = Limits(wall=config.time, cpu=config.time, memory=cli.parse_size(config.memory),
                    threads=config.threads)
    return grader.Grader(table(config.points), ','.join(numbers), config.hidden, limits,
                         config.training_time, cli.parse_size(config.training_memory),
                         None, config.isolation)


class SandboxKilled(Exception):
    """A section's sandbox was killed from outside: the section gets no verdict from it."""


def grade(config, submission, numbers, emit):
    """Grades the sections `numbers` of one submission, emitting each result as it comes.

    A sandbox killed by SIGKILL (by an operator, the OOM killer, or the submission
    itself) is not the submission's verdict: SandboxKilled, and the run's next
    attempt grades the section again (after max_failures the run is an error)."""
    worker = make_grader(config, numbers)
    emit({'grader': {'isolation': worker.description, 'limits': worker.limit_descriptions()}})
    for result in worker.section_results(submission):
        if KILLED in result.message:
            raise SandboxKilled(f"section {result.section.number}: {result.message}")
        emit({'section': result.section.number, 'result': result.to_json()})


def emit_line(message):
    sys.stdout.write(json.dumps(message) + '\n')
    sys.stdout.flush()


def main(argv):
    submission, *numbers = argv
    try:
        grade(course.from_environment(), submission, numbers, emit_line)
    except SandboxKilled as error:
        print(error, file=sys.stderr)
        return SANDBOX_KILLED
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
