"""How the dispatcher gets sections graded: the local engine, one worker
process per run (python -m staff.service.grading).

submit() returns a handle with done(), result() and cancel(), and updates()
for the sections finished so far. A worker dies with the dispatcher
(PR_SET_PDEATHSIG) and its sandboxes die with it; engine-level retries do
not exist here: the queue's attempt count is the only retry count.
Issue 15's engine API (staff/engines.py) is to replace this module.
"""
import ctypes
import json
import os
import signal
import subprocess
import sys

import common
from staff import sandbox

PR_SET_PDEATHSIG = 1


class WorkerLost(Exception):
    """The worker died before grading every section (killed, out of memory, ...)."""


def die_with_parent():
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def kill(process):
    """Kills a worker process started in a session of its own, with its sandboxes."""
    sandbox.kill_group(process.pid)
    process.wait()


class Handle:
    """One run in a worker process."""

    def __init__(self, submission, sections):
        self.sections = list(sections)
        self.process = subprocess.Popen(
            [sys.executable, '-m', 'staff.service.grading', str(submission), *self.sections],
            cwd=common.KIT_DIR, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            start_new_session=True,
            preexec_fn=die_with_parent)  # the dispatcher runs one thread: preexec_fn is safe
        os.set_blocking(self.process.stdout.fileno(), False)
        self.buffer, self.grader, self.results = b'', None, {}

    def updates(self):
        """[(section, result)] finished since the last call."""
        try:
            data = self.process.stdout.read() or b''
        except (OSError, ValueError):
            data = b''
        self.buffer += data
        *lines, self.buffer = self.buffer.split(b'\n')
        new = []
        for line in lines:
            message = json.loads(line)
            if 'grader' in message:
                self.grader = message['grader']
            else:
                self.results[message['section']] = message['result']
                new.append((message['section'], message['result']))
        return new

    def done(self):
        return self.process.poll() is not None

    def result(self):
        """{'grader': ..., 'sections': {number: result}}; WorkerLost if it died early."""
        self.process.wait()
        self.updates()
        self.process.stdout.close()
        missing = [number for number in self.sections if number not in self.results]
        if self.process.returncode != 0 or missing:
            raise WorkerLost(f"the worker ended with status {self.process.returncode} before "
                             f"grading {', '.join(missing) or 'its report'}")
        return {'grader': self.grader, 'sections': self.results}

    def cancel(self):
        kill(self.process)
        self.process.stdout.close()


class LocalEngine:
    """Runs each submitted run in a worker process on this machine."""

    def __init__(self, slots):
        self.slots = slots

    def submit(self, submission, sections):
        return Handle(submission, sections)
