"""The dispatcher: claims runs from the queue and has the engine grade them.

The engine is the grader's (staff/engines.py): the local engine runs the
sections in sandboxes on this machine, the Dask engine on the workers of a
Dask scheduler (service.engine, service.scheduler). A claimed run's sections
go to the engine as tasks and come back here to be judged (grading.Grading).
The dispatcher heartbeats the lease of every run it holds, records each
finished section under the run's current attempt, and gives a run back to
the queue when a section is lost with its worker or sandbox (the next
attempt) or when the dispatcher is told to stop (SIGTERM or SIGINT: it stops
within seconds, kills the local engine's running sandboxes, and the running
sections go back to the queue without counting as failures). Leases that ran
out (a killed dispatcher's) go back to the queue with the next attempt. It
claims runs while the engine has free slots (on Dask: the slots of the
workers connected now).

On the local engine a training run gets the machine alone (its time limit
is only fair so): nothing else starts while it runs, and it waits for the
runs before it to finish. So that uploads need not wait behind an hour of
CIFAR-10, give the training runs a dispatcher of their own on another machine
(--runs training there, --runs ordinary here), or use the Dask engine, where
a training section takes one worker whole and the other workers go on.

Beside the runs, a dispatcher that takes ordinary runs computes the TAs'
similarity reports (staff/service/similar.py): one at a time, in a niced worker
process, under a lease of its own, never while a training run has the machine.
"""
import os
import signal
import socket
import time
import uuid
from pathlib import Path

from django.db import DatabaseError, close_old_connections, connections
from django.utils import timezone

from staff import grader
from staff.service import config as course
from staff.service import grading, queue, rules, similar
from staff.service.models import Dispatcher as DispatcherRow

POLL = 0.25           # seconds between looks at the workers and the queue
HOUSEKEEPING = 5.0    # seconds between looks for expired leases and passed deadlines
DATABASE_RETRY = 2.0  # seconds to wait after a database error


class Active:
    """A run this dispatcher holds, and its grading (None while it waits for the machine)."""

    def __init__(self, run):
        self.run, self.grading, self.beat = run, None, time.monotonic()

    def in_flight(self):
        """Its sections queued or running on the engine (all of them before it starts)."""
        return self.grading.in_flight() if self.grading else len(self.run.sections)


class Dispatcher:
    def __init__(self, config, name=None, runs='all'):
        self.config, self.kinds = config, queue.RUN_KINDS[runs]
        self.engine = grading.open_engine(config)
        self.capacity = self.engine.capacity()  # slots now: asked again at each housekeeping
        self.name = name or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.active, self.stopping, self.housekept = [], False, 0.0
        self.similarity = None  # the similar.Job being computed

    def stop(self, *_):
        self.stopping = True

    def serve(self):
        previous = {number: signal.signal(number, self.stop)
                    for number in (signal.SIGTERM, signal.SIGINT)}
        now = timezone.now()
        DispatcherRow.objects.update_or_create(name=self.name, defaults={
            'slots': self.capacity, 'engine': self.engine_description(), 'started_at': now,
            'last_seen': now})
        print(f"dispatcher {self.name}: {self.capacity} slots on "
              f"{self.engine_description()}", flush=True)
        try:
            while not self.stopping:
                try:
                    self.step()
                except DatabaseError as error:  # the database restarts, a lock times out: retry
                    print(f"dispatcher {self.name}: database error ({error}); trying again",
                          flush=True)
                    connections.close_all()
                    time.sleep(DATABASE_RETRY)
                time.sleep(POLL)
        finally:
            self.shutdown()
            for number, handler in previous.items():
                signal.signal(number, handler)

    def step(self):
        close_old_connections()
        if time.monotonic() - self.housekept > HOUSEKEEPING:
            queue.requeue_expired(self.config.max_failures)
            rules.queue_final_training(self.config)
            similar.requeue_expired(self.config.max_failures)
            similar.request_when_new()
            self.capacity = self.engine_capacity()
            DispatcherRow.objects.filter(name=self.name).update(
                last_seen=timezone.now(), running=len(self.active), slots=self.capacity,
                engine=self.engine_description())
            self.housekept = time.monotonic()
        self.claim()
        for active in list(self.active):
            self.tend(active)
        self.compare()

    def machine_taken(self):
        """A training run holds this machine (the local engine's sandboxes run here)."""
        return self.engine.name == 'local' and any(a.run.training for a in self.active)

    def engine_capacity(self):
        """The engine's slots; 0 while it does not answer (runs wait in the queue). A Dask
        engine that lost its scheduler (its sections came back lost) connects again."""
        try:
            return self.engine.capacity()
        except Exception as error:  # the scheduler stopped, the network failed
            print(f"dispatcher {self.name}: the engine does not answer ({type(error).__name__}: "
                  f"{error}); connecting again", flush=True)
        self.engine.close()
        try:
            self.engine = grading.open_engine(self.config, self.engine.slots)
            return self.engine.capacity()
        except Exception as error:  # still gone: no new runs until it answers
            print(f"dispatcher {self.name}: {error}", flush=True)
            return 0

    def engine_description(self):
        try:
            return self.engine.describe()
        except Exception:  # its scheduler does not answer: engine_capacity said so
            return f"{self.engine.name} (not answering)"

    def claim(self):
        while (not self.machine_taken()
               and sum(active.in_flight() for active in self.active) < self.capacity
               and (run := queue.claim(self.name, self.config.lease, kinds=self.kinds))):
            self.active.append(Active(run))
            if not run.training:
                break  # one claim per step keeps the queue fair between dispatchers

    def start(self, active):
        if active.run.training and self.engine.name == 'local' and (
                len(self.active) > 1 or self.similarity):
            return  # a training run waits for the machine to itself
        active.grading = grading.Grading(self.config, self.engine, active.run)

    def tend(self, active):
        run = active.run
        if time.monotonic() - active.beat > self.config.heartbeat:
            active.beat = time.monotonic()
            if not queue.heartbeat(run.id, run.attempt, self.name, self.config.lease):
                self.drop(active)  # someone took it over: our result would be dropped anyway
                return
        try:
            if active.grading is None:
                self.start(active)
            if active.grading is None:
                return
            updates = active.grading.updates()
        except Exception as error:  # a section lost, a file gone, a result not judged
            print(f"{run}: {error}; attempt {run.attempt} goes back to the queue", flush=True)
            self.drop(active)
            queue.requeue(run.id, run.attempt, self.name, True, self.config.max_failures)
            self.capacity = self.engine_capacity()  # a lost worker or scheduler: claim no more
            return
        for number, result in updates:
            if not queue.record_section(run.id, run.attempt, self.name, number, result):
                self.drop(active)
                return
        if active.grading.done():
            self.active.remove(active)
            queue.finish(run.id, run.attempt, self.name,
                         active.grading.describe(self.engine_description()))

    def compare(self):
        """Claims a requested similarity report when none is computed here, this dispatcher
        takes ordinary runs and no training run has the machine; heartbeats it; stores its
        result when its worker ends."""
        job = self.similarity
        if job is None:
            if (False in self.kinds and not self.machine_taken()
                    and (report := similar.claim(self.name, self.config.lease))):
                self.similarity = similar.Job(self.config, report)
            return
        if time.monotonic() - job.beat > self.config.heartbeat:
            job.beat = time.monotonic()
            if not similar.heartbeat(job.report, self.name, self.config.lease):
                job.cancel()  # someone took it over
                job.clean()
                self.similarity = None
                return
        if job.done():
            self.similarity = None
            similar.record(job, self.name, self.config.max_failures)

    def drop(self, active):
        if active.grading:
            active.grading.cancel()
        self.active.remove(active)

    def shutdown(self):
        """Gives the runs back (not as failures), then stops the engine: the local
        engine kills the sections still running."""
        for active in list(self.active):
            queue.requeue(active.run.id, active.run.attempt, self.name, False,
                          self.config.max_failures)
            self.drop(active)
        self.engine.close()
        if self.similarity:
            self.similarity.cancel()
            similar.requeue(self.similarity.report, self.name, False, self.config.max_failures)
            self.similarity.clean()
            self.similarity = None
        DispatcherRow.objects.filter(name=self.name).delete()
        print(f"dispatcher {self.name}: stopped, running sections re-queued", flush=True)


def main(config, runs='all'):
    if grader.choose_isolation(config.isolation)[0] == 'none':
        raise course.ConfigError("no sandbox works here (apt-get install bubblewrap): without one "
                                 "a submission could read every student's files")
    every = [section.number for section in grading.sections(config)]
    grading.make_grader(config, every)  # a bad points table, hidden set or limit stops here
    Path(config.data).mkdir(parents=True, exist_ok=True)
    Dispatcher(config, runs=runs).serve()
    return 0
