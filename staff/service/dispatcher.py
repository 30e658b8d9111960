"""The dispatcher: claims runs from the queue and has the engine grade them.

It heartbeats the lease of every run it holds, records each finished
section under the run's current attempt, and gives a run back to the queue
when its worker dies (the next attempt) or when the dispatcher is told to
stop (SIGTERM or SIGINT: it stops within seconds, and the running sections
go back to the queue without counting as failures). Leases that ran out
(a killed dispatcher's) go back to the queue with the next attempt.

A training run gets the machine alone (its time limit is only fair so):
nothing else starts while it runs, and it waits for the runs before it to
finish. So that uploads need not wait behind an hour of CIFAR-10, give the
training runs a dispatcher of their own on another machine (--runs training
there, --runs ordinary here).

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
from staff.service import engine, grading, queue, rules, similar
from staff.service.models import Dispatcher as DispatcherRow

POLL = 0.25           # seconds between looks at the workers and the queue
HOUSEKEEPING = 5.0    # seconds between looks for expired leases and passed deadlines
DATABASE_RETRY = 2.0  # seconds to wait after a database error


class Active:
    """A run this dispatcher holds, and its worker (None while it waits for the machine)."""

    def __init__(self, run):
        self.run, self.handle, self.beat = run, None, time.monotonic()


class Dispatcher:
    def __init__(self, config, name=None, runs='all'):
        self.config, self.kinds = config, queue.RUN_KINDS[runs]
        self.slots = config.slots or len(os.sched_getaffinity(0))
        self.engine = engine.LocalEngine(self.slots)
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
            'slots': self.slots, 'started_at': now, 'last_seen': now})
        print(f"dispatcher {self.name}: {self.slots} slots", flush=True)
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
            DispatcherRow.objects.filter(name=self.name).update(
                last_seen=timezone.now(), running=len(self.active))
            self.housekept = time.monotonic()
        self.claim()
        for active in list(self.active):
            self.tend(active)
        self.compare()

    def claim(self):
        while (len(self.active) < self.slots and not any(a.run.training for a in self.active)
               and (run := queue.claim(self.name, self.config.lease, kinds=self.kinds))):
            self.active.append(Active(run))
            if not run.training:
                break  # one claim per step keeps the queue fair between dispatchers

    def start(self, active):
        run = active.run
        if run.training and (len(self.active) > 1 or self.similarity):
            return  # a training run waits for the machine to itself
        submission = self.config.data / run.submission.path
        todo = [number for number in run.sections if number not in run.partial]
        active.handle = self.engine.submit(submission, todo)

    def tend(self, active):
        run = active.run
        if active.handle is None:
            self.start(active)
        if time.monotonic() - active.beat > self.config.heartbeat:
            active.beat = time.monotonic()
            if not queue.heartbeat(run.id, run.attempt, self.name, self.config.lease):
                self.drop(active)  # someone took it over: our result would be dropped anyway
                return
        if active.handle is None:
            return
        finished = active.handle.done()  # before reading: then nothing comes after the last read
        for number, result in active.handle.updates():
            if not queue.record_section(run.id, run.attempt, self.name, number, result):
                self.drop(active)
                return
        if finished:
            self.active.remove(active)
            try:
                result = active.handle.result()
            except engine.WorkerLost as error:
                print(f"{run}: {error}; attempt {run.attempt} goes back to the queue", flush=True)
                queue.requeue(run.id, run.attempt, self.name, True, self.config.max_failures)
                return
            queue.finish(run.id, run.attempt, self.name, result['grader'], result['sections'])

    def compare(self):
        """Claims a requested similarity report when none is computed here, this dispatcher
        takes ordinary runs and no training run has the machine; heartbeats it; stores its
        result when its worker ends."""
        job = self.similarity
        if job is None:
            if (False in self.kinds and not any(a.run.training for a in self.active)
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
        if active.handle:
            active.handle.cancel()
        self.active.remove(active)

    def shutdown(self):
        """Cancels every worker and gives their runs back (not as failures)."""
        for active in list(self.active):
            if active.handle:
                active.handle.cancel()
            queue.requeue(active.run.id, active.run.attempt, self.name, False,
                          self.config.max_failures)
        self.active.clear()
        if self.similarity:
            self.similarity.cancel()
            similar.requeue(self.similarity.report, self.name, False, self.config.max_failures)
            self.similarity.clean()
            self.similarity = None
        DispatcherRow.objects.filter(name=self.name).delete()
        print(f"dispatcher {self.name}: stopped, running sections re-queued", flush=True)


def main(config, runs='all'):
    if config.engine != 'local':
        raise course.ConfigError(
            "service.engine = 'dask' is not wired to the service yet (staff/service/engine.py); "
            "use 'local' and start a dispatcher on each grading machine, sharing one PostgreSQL")
    grading.sections(config)  # a bad points table stops here, not in every worker
    if grader.choose_isolation(config.isolation)[0] == 'none':
        raise course.ConfigError("no sandbox works here (apt-get install bubblewrap): without one "
                                 "a submission could read every student's files")
    Path(config.data).mkdir(parents=True, exist_ok=True)
    Dispatcher(config, runs=runs).serve()
    return 0
