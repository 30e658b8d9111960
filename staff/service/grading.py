"""The service's one seam to the grader (staff/grader.py) and its engines
(staff/engines.py): which sections there are, the engine the course's config
names, and one attempt of a run graded there.

An attempt's sections go to the engine as tasks (the submission's source and
the cases' inputs), as ./run.py grade sends them; they come back to the
dispatcher and are judged there, where the expected outputs and the hidden
set stay. The engine retries nothing (retries=0): a section lost with its
worker, or whose sandbox was killed from outside (AttemptLost), or an engine
that lost its Dask scheduler (engines.EngineError), gives the whole attempt
back to the queue, whose attempt count is the only retry count.
"""
import signal
from functools import cache

import common
from staff import cli, engines, grader
from staff.sandbox import Limits
from staff.service.config import ConfigError

KILLED = f"killed by {signal.SIGKILL.name}"  # in the grader's message of a killed child


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
    """The grader of these sections with the course's limits; made for each attempt, so
    that fixtures fixed and a hidden set added count from the next rejudge on."""
    limits = Limits(wall=config.time, cpu=config.time, memory=cli.parse_size(config.memory),
                    threads=config.threads)
    return grader.Grader(table(config.points), ','.join(numbers), config.hidden, limits,
                         config.training_time, cli.parse_size(config.training_memory),
                         None, config.isolation)


def open_engine(config, slots=None):
    """The engine of service.engine: local (config.slots sections at a time) or the Dask
    scheduler at service.scheduler (its workers' slots asked for unless given)."""
    try:
        if config.engine == 'dask':
            return engines.open_engine('dask', scheduler=config.scheduler, cores=slots)
        return engines.open_engine('local', jobs=config.slots or None)
    except engines.EngineError as error:
        raise ConfigError(f"service.engine = {config.engine!r}: {error}") from None


class AttemptLost(Exception):
    """A section got no verdict of its own (its worker lost, its sandbox killed from
    outside: by an operator, the OOM killer, or the submission itself): the attempt
    goes back to the queue, and after max_failures the run is an error."""


def lost(result):
    """No verdict of its own: lost with its worker, or the sandbox killed (also at import)."""
    return result.lost or KILLED in result.message


class Grading:
    """One attempt of a run: its sections not recorded yet, as tasks of the engine."""

    def __init__(self, config, engine, run):
        numbers = tuple(number for number in run.sections if number not in run.partial)
        self.grader = make_grader(config, numbers)
        self.submission = grader.Submission(
            self.grader, engine, f"{run.submission.student.username} #{run.submission_id}",
            run.submission.path, retries=0, source=bytes(run.submission.source))
        self.reported = set()

    def updates(self):
        """[(section number, result as JSON)] judged since the last call, in any order;
        AttemptLost when one has no verdict of its own."""
        self.submission.collect()
        new = []
        for index in sorted(set(self.submission.results) - self.reported):
            self.reported.add(index)
            result = self.submission.results[index]
            if lost(result):
                raise AttemptLost(f"section {result.section.number}: {result.message}")
            new.append((result.section.number, result.to_json()))
        return new

    def in_flight(self):
        """Sections queued or running on the engine."""
        return len(self.submission.handles)

    def done(self):
        return self.submission.complete() and len(self.reported) == len(self.grader.plans)

    def describe(self, engine):
        """The grader's description kept with the result: isolation, limits, the engine's."""
        return {'isolation': self.grader.description,
                'limits': self.grader.limit_descriptions(), 'engine': engine}

    def cancel(self):
        self.submission.cancel()
