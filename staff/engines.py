"""Grading engines: where the sections of submissions run.

The unit of work is one section of one submission, a SectionTask. A task
carries the submission's source, the inputs of the section's cases (never
their expected outputs), the limits and the isolation; on a worker it runs
the grader's sandboxed section child (staff/grader.py run_task) and comes
back as a SectionRun holding the child's raw results, which the grading host
judges (grader.judge_run). Expected outputs, hidden sets and test labels stay
on the grading host.

The contract (the grader and the checking service use nothing else):

    engine = open_engine('local' | 'dask' | 'slurm', **options)
    handle = engine.submit(task, retries=2)
    handle.done()                -> bool: a result (or a cancellation) is there
    handle.result(timeout=None)  -> SectionRun; TimeoutError when none came
                                    within timeout seconds; CancelledError
                                    after a successful cancel(); EngineError
                                    when the engine lost its Dask scheduler
                                    (the section did not end). Never raises
                                    for the task's own failures: they come as
                                    SectionRun.failure.
    handle.cancel()              -> bool: True when the task will not run (or,
                                    on Dask, will be dropped); a section whose
                                    child already runs on the local engine
                                    runs on to its limit (or to close()).
    handle.tries                 -> int: tries lost with their worker so far
    engine.slots                 -> int: slots of one worker (its cores); an
                                    ordinary section takes 1, a training
                                    section all of them, so it runs alone
    engine.counts()              -> {'running': n, 'queued': n}
    engine.capacity()            -> int: slots of all workers now connected
    engine.describe()            -> str, e.g. 'dask (tcp://10.0.0.5:8786, 4 workers)'
    engine.close()               -> stops what the engine started (a
                                    LocalCluster, Slurm jobs; the local
                                    engine kills the sections still
                                    running); idempotent

Retries: a try lost with its worker (the worker process died, its machine
went away, Slurm ended its job) is submitted again, at most `retries` more
times; the section is counted once, whichever try finishes. After the last
try the SectionRun has lost=True and failure saying why; the caller gives
the section the verdict `error` and goes on. Pass retries=0 to count
attempts yourself (the checking service does). On Dask the handles count
the tries: the engine sets the scheduler's allowed-failures to 0, so a task
lost with its worker comes back at once as KilledWorker and is resubmitted
under a new key. A task that raised on the
worker (a kit that differs from the grading host's, a sandbox that does not
start) is not retried: it is not the worker's loss. Sections in flight when
the client loses its Dask scheduler end at once with EngineError, not
retried (the client closes after CONNECT_TIMEOUT seconds without it, and
capacity() raises EngineError from then on).

SectionTask and SectionRun are plain picklable data; `run_on_worker` is the
task function every engine calls, a thin call into grader.run_task (which
calls grader.run_child, the one entry point for running a section).

Workers need the kit's checkout (interface.py, common.py, run.py, staff/,
tests/*_input/) at the same commit as the grading host: a shared file system
or a clone; each task carries a digest of those files and a worker with
other files refuses it (failure, not retried). Training sections read the
datasets from the worker's data directory (NN_DATA_DIR, default data/ of
its checkout).
"""
import os
import socket
import threading
import time
from concurrent.futures import CancelledError, ThreadPoolExecutor
from dataclasses import dataclass, field

from staff import sandbox
from staff.sandbox import Finished, Limits

ENGINES = ('local', 'dask', 'slurm')
RETRIES = 2  # default tries beyond the first for a task lost with its worker
CONNECT_TIMEOUT = 10  # seconds to reach a Dask scheduler


class EngineError(Exception):
    """An engine cannot start: no scheduler at that address, Slurm unreachable."""


@dataclass(frozen=True)
class SectionTask:
    """One section of one submission, as it travels to a worker."""
    name: str                 # for people: 'alice 2.1.1'
    source: bytes             # the submission's solution.py
    cases: list               # (test, case name, inputs): common.case_inputs, no expected outputs
    limits: Limits
    training: bool            # takes every slot of its worker
    isolation: str            # bwrap, unshare or none: as the grading host resolved it
    kit: str                  # digest of the kit files the grading host uses
    import_wall: float | None = None  # seconds to import solution.py (training sections)
    cgroups: bool = True      # bound it by cgroups where the worker has them


@dataclass
class SectionRun:
    """What came back for one SectionTask."""
    finished: Finished | None = None  # how the child ended, its output
    child: object = None              # grader.ChildReport: the child's raw results (training
                                      # labels in the test set's order, timed on the worker)
    worker: str = ''                  # the worker of the try that finished (or the last)
    isolation: str = ''               # the isolation the child ran in
    tries: int = 1                    # tries made, the finishing one included
    failure: str = ''                 # why there is no `finished`
    lost: bool = False                # failure: every try was lost with its worker
    seconds: float = 0.0              # on the worker, staging included
    log: list = field(default_factory=list)  # workers lost on the way


def run_on_worker(task):
    """The task function of every engine: runs the section's child here."""
    from staff import grader
    return grader.run_task(task, worker_name())


def worker_name():
    """The host name, and on a Dask worker its address."""
    try:
        from distributed import get_worker
        return f"{socket.gethostname()} {get_worker().address}"
    except (ImportError, ValueError):
        return f"{socket.gethostname()} (local)"


# =============================== Local engine ===============================

class Slots:
    """Ordinary sections run side by side; a training section runs alone.

    A training section gets every core, and its time limit is only fair
    when nothing else runs; waiting training sections go first.
    """

    def __init__(self):
        self.condition = threading.Condition()
        self.running, self.alone, self.waiting_alone = 0, False, 0

    def acquire(self, alone):
        with self.condition:
            if alone:
                self.waiting_alone += 1
                self.condition.wait_for(lambda: not self.alone and not self.running)
                self.waiting_alone -= 1
                self.alone = True
            else:
                self.condition.wait_for(lambda: not self.alone and not self.waiting_alone)
                self.running += 1

    def release(self, alone):
        with self.condition:
            if alone:
                self.alone = False
            else:
                self.running -= 1
            self.condition.notify_all()


class LocalHandle:
    def __init__(self, future):
        self.future, self.tries = future, 0

    def done(self):
        return self.future.done()

    def result(self, timeout=None):
        return self.future.result(timeout)  # its TimeoutError is the built-in one (3.11)

    def cancel(self):
        return self.future.cancel()


class LocalEngine:
    """Threads on this machine, `jobs` sections at a time (the default engine)."""
    name = 'local'

    def __init__(self, jobs=None, slots=None):
        self.slots = slots or len(os.sched_getaffinity(0))
        self.jobs = max(jobs or self.slots, 1)
        self.pool = ThreadPoolExecutor(max_workers=self.jobs, thread_name_prefix='section')
        self.gate = Slots()
        self.lock = threading.Lock()
        self.running = self.queued = 0
        self.threads, self.closing = set(), False  # threads running a section; close() called

    def run(self, task):
        with self.lock:
            self.queued -= 1
        self.gate.acquire(task.training)
        with self.lock:
            self.running += 1
            self.threads.add(threading.get_ident())
        try:
            if self.closing:
                return SectionRun(failure="the engine stopped before the section ran",
                                  worker=worker_name())
            return run_on_worker(task)
        except Exception as error:  # a bug here: the section's verdict says so
            return SectionRun(failure=f"the section could not run ({type(error).__name__}: "
                                      f"{error})", worker=worker_name())
        finally:
            with self.lock:
                self.running -= 1
                self.threads.discard(threading.get_ident())
            self.gate.release(task.training)

    def submit(self, task, retries=RETRIES):
        """Runs in this process, so a try cannot be lost without the caller: no retries."""
        with self.lock:
            self.queued += 1
        future = self.pool.submit(self.run, task)
        future.add_done_callback(self.forget_cancelled)
        return LocalHandle(future)

    def forget_cancelled(self, future):
        if future.cancelled():
            with self.lock:
                self.queued -= 1

    def counts(self):
        with self.lock:
            return {'running': self.running, 'queued': self.queued}

    def capacity(self):
        return self.jobs

    def describe(self):
        return f"local ({self.jobs} sections at a time)"

    def close(self):
        """Drops the sections not started and kills the running ones' children."""
        self.closing = True
        self.pool.shutdown(wait=False, cancel_futures=True)
        while self.counts()['running']:
            with self.lock:
                threads = set(self.threads)
            sandbox.kill_children(threads)
            time.sleep(0.05)
        self.pool.shutdown(wait=True)


# =============================== Dask engines ===============================

class DaskHandle:
    """A section on Dask: resubmits a try lost with its worker, `retries` times."""

    def __init__(self, engine, task, retries):
        self.engine, self.task, self.retries = engine, task, retries
        self.tries, self.log = 0, []
        self.lock = threading.Lock()
        self.finished = threading.Event()
        self.outcome = self.error = None
        self.cancelled = False
        self.future = None
        self.start()

    def start(self):
        self.future = self.engine.client.submit(
            self.engine.task_function, self.task, pure=False,
            key=f"section-{self.task.name}-{os.urandom(6).hex()}",
            resources={'slots': self.engine.slots if self.task.training else 1})
        self.future.add_done_callback(self.arrived)

    def arrived(self, future):
        from distributed.scheduler import KilledWorker
        with self.lock:
            if self.cancelled or self.finished.is_set() or future is not self.future:
                return
            if future.status == 'finished':
                try:
                    run = future.result()
                except Exception as error:  # the result could not be fetched
                    run = SectionRun(failure=f"the result was lost ({type(error).__name__}: "
                                             f"{error})")
                run.tries, run.log = self.tries + 1, self.log
                return self.settle(run)
            if future.status == 'cancelled':  # not by us: the client lost its scheduler
                self.error = EngineError(f"lost the Dask scheduler {self.engine.address} (it "
                                         f"stopped or the network failed)")
                return self.finished.set()
            error = future.exception()
            if isinstance(error, KilledWorker) and self.tries < self.retries:
                self.tries += 1
                self.log.append(str(error.last_worker.address if error.last_worker else 'a worker'))
                return self.start()
            if isinstance(error, KilledWorker):
                worker = error.last_worker.address if error.last_worker else 'its worker'
                return self.settle(SectionRun(
                    failure=f"lost with its worker on every try ({self.tries + 1}; last "
                            f"{worker})", lost=True, tries=self.tries + 1, worker=str(worker),
                    log=self.log))
            self.settle(SectionRun(failure=f"the section could not run on the worker "
                                           f"({type(error).__name__}: {error})",
                                   tries=self.tries + 1, log=self.log))

    def settle(self, run):
        self.outcome = run
        self.finished.set()

    def done(self):
        return self.finished.is_set() or self.cancelled

    def result(self, timeout=None):
        if self.cancelled:
            raise CancelledError()
        if not self.finished.wait(timeout):
            raise TimeoutError(f"no result within {timeout} s")
        if self.error:
            raise self.error
        return self.outcome

    def cancel(self):
        with self.lock:
            if self.finished.is_set():
                return False
            self.cancelled = True
        self.future.cancel()
        return True


def forbid_reruns(dask_scheduler):
    """The scheduler hands a task lost with its worker back at once (KilledWorker):
    the handles count the tries themselves."""
    dask_scheduler.allowed_failures = 0


class DaskEngine:
    """A Dask distributed cluster: one at `scheduler`, or a LocalCluster of
    `workers` processes with `cores` slots each on this machine."""
    name = 'dask'

    def __init__(self, scheduler=None, workers=1, cores=None, cluster=None):
        from distributed import Client, LocalCluster
        self.cluster = cluster
        self.task_function = run_on_worker
        if scheduler is None and cluster is None:
            cores = cores or len(os.sched_getaffinity(0))
            self.cluster = LocalCluster(n_workers=workers, threads_per_worker=cores,
                                        processes=True, resources={'slots': cores},
                                        dashboard_address=None, host='127.0.0.1')
        try:
            self.client = Client(self.cluster or scheduler, timeout=CONNECT_TIMEOUT)
        except OSError as error:
            self.close()
            raise EngineError(f"no Dask scheduler answers at {scheduler} ({error}); start one "
                              f"with: dask scheduler") from None
        self.client.run_on_scheduler(forbid_reruns)
        self.address = self.client.scheduler.address
        try:
            self.slots = cores or self.largest_worker()
        except EngineError:
            self.close()
            raise

    def largest_worker(self):
        """The slots of the largest worker now connected (waits up to a minute for one)."""
        try:
            self.client.wait_for_workers(1, timeout=60)
        except TimeoutError:
            raise EngineError(f"no Dask worker joined {self.address} within 60 s; start them "
                              f"with: dask worker {self.address} --nthreads N --resources "
                              f"slots=N") from None
        slots = self.worker_slots()
        if not any(slots):
            raise EngineError(f"the workers of {self.address} offer no slots: start them with "
                              f"dask worker {self.address} --nthreads N --resources slots=N")
        return int(max(slots))

    def submit(self, task, retries=RETRIES):
        return DaskHandle(self, task, retries)

    def counts(self):
        def count(dask_scheduler):
            states = [task.state for task in dask_scheduler.tasks.values()]
            return {'running': states.count('processing'),
                    'queued': len(states) - states.count('processing')
                    - states.count('memory') - states.count('erred')}
        try:
            return self.client.run_on_scheduler(count)
        except Exception:  # scheduler busy or gone: only for the progress bar
            return {'running': 0, 'queued': 0}

    def worker_slots(self):
        """The slots of each worker now connected."""
        workers = self.client.scheduler_info()['workers'].values()
        return [worker.get('resources', {}).get('slots', 0) for worker in workers]

    def capacity(self):
        """0 while the client reconnects to its scheduler; EngineError once it gave up."""
        if self.client is None or self.client.status in ('closing', 'closed'):
            raise EngineError(f"the connection to the Dask scheduler {self.address} was lost")
        if self.client.status != 'running':
            return 0
        return int(sum(self.worker_slots()))

    def describe(self):
        workers = len(self.client.scheduler_info()['workers'])
        return (f"{self.name} ({self.address}, {workers} worker{'s' * (workers != 1)} of "
                f"{self.slots} slot{'s' * (self.slots != 1)})")

    def close(self):
        if getattr(self, 'client', None) is not None:
            self.client.close()
            self.client = None
        if self.cluster is not None:
            self.cluster.close()
            self.cluster = None


SLURM_DEFAULTS = {'partition': None, 'account': None, 'walltime': '02:00:00', 'cores': 2,
                  'memory': '8GB', 'workers': 1, 'scheduler_host': None, 'log_directory': None}


def slurm_problem():
    """Why this machine cannot submit Slurm jobs, or ''."""
    import shutil
    import subprocess
    if not shutil.which('sbatch'):
        return "sbatch is not installed here (Slurm's client commands are needed)"
    try:
        done = subprocess.run(['sinfo', '--noheader'], capture_output=True, text=True, timeout=20,
                              check=False)
    except subprocess.TimeoutExpired:
        return "sinfo did not answer within 20 s"
    if done.returncode != 0:
        lines = (done.stderr or done.stdout).strip().splitlines()
        return f"sinfo failed: {lines[-1] if lines else f'exit status {done.returncode}'}"
    return ''


class SlurmEngine(DaskEngine):
    """Dask workers started as Slurm jobs through dask-jobqueue."""
    name = 'slurm'

    def __init__(self, partition=None, account=None, walltime='02:00:00', cores=2,
                 memory='8GB', workers=1, scheduler_host=None, log_directory=None):
        if problem := slurm_problem():
            raise EngineError(f"--engine slurm: Slurm is not reachable: {problem}")
        import sys
        from pathlib import Path

        from dask_jobqueue import SLURMCluster
        kit = Path(__file__).resolve().parent.parent
        options = {'host': scheduler_host} if scheduler_host else {}
        cluster = SLURMCluster(
            queue=partition, account=account, walltime=walltime, cores=cores, processes=1,
            memory=memory, python=sys.executable, scheduler_options=options,
            worker_extra_args=['--resources', f'slots={cores}'],
            job_script_prologue=[f'cd {kit}', f'export PYTHONPATH={kit}'],
            log_directory=log_directory,
            job_extra_directives=[] if log_directory else ['--output=/dev/null'])
        cluster.scale(jobs=workers)
        super().__init__(cores=cores, cluster=cluster)


def open_engine(kind='local', **options):
    """An engine by name; options are its constructor's keywords. EngineError
    when it cannot start."""
    engines = {'local': LocalEngine, 'dask': DaskEngine, 'slurm': SlurmEngine}
    if kind not in engines:
        raise EngineError(f"unknown engine {kind!r}: choose one of {', '.join(ENGINES)}")
    return engines[kind](**options)
