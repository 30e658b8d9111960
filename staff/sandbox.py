"""Running a submission's code in a child process: isolated, limited, killable.

One of three isolation levels, best first:

  bwrap    Debian's bubblewrap: no network, its own PID namespace, a
           filesystem holding only read-only system and Python directories,
           the read-only data directory and the child's own work directory
           (copies of the kit's files); no capabilities.
  unshare  util-linux unshare, when bubblewrap is missing: no network, own
           PID and mount namespaces. Before any submitted code runs, the
           child (staff/child.py) hides the grader's private directories,
           makes every mount read-only except its work directory and drops
           all capabilities for good.
  none     a process group and resource limits only, for machines without
           namespaces. The grader's report says so.

In every mode the child limits itself (address space, CPU time, file size)
before importing the submission; this side enforces the wall-clock limit,
keeps at most OUTPUT_LIMIT bytes of output, and kills the child with all its
descendants when it ends: in a PID namespace even a process that detached
itself with setsid dies with the namespace.
"""
import os
import select
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass

GIB = 1 << 30
MIB = 1 << 20
OUTPUT_LIMIT = MIB
ISOLATIONS = ('bwrap', 'unshare', 'none')
DESCRIPTIONS = {
    'bwrap': "no network, own PID namespace, nothing visible but read-only system files "
             "and a work directory with copies of the kit, no capabilities",
    'unshare': "no network, own PID and mount namespaces, everything read-only but the work "
               "directory, the grader's directories hidden, no capabilities",
    'none': "NO SANDBOX: a process group and resource limits only; detached processes "
            "may survive and the submission can write wherever the grader can",
}
SYSTEM_PATHS = ('/usr', '/bin', '/sbin', '/lib', '/lib32', '/lib64', '/libx32',
                '/etc/ld.so.cache', '/etc/ld.so.conf', '/etc/ld.so.conf.d', '/etc/alternatives',
                '/etc/localtime', '/etc/passwd', '/etc/group', '/etc/nsswitch.conf')
AFTER_EXIT_GRACE = 1.0  # seconds to drain the pipes once the child has exited


@dataclass(frozen=True)
class Limits:
    """What one section's child may use."""
    wall: float          # seconds of wall-clock time
    cpu: float | None    # seconds of CPU time per process; None: no limit
    memory: int          # bytes of address space per process
    threads: int         # BLAS / OpenMP threads

    def describe(self):
        cpu = f"{self.cpu:g} s CPU" if self.cpu else "no CPU limit"
        threads = f"{self.threads} BLAS thread" + ('s' if self.threads > 1 else '')
        return f"{self.wall:g} s wall, {cpu}, {self.memory / GIB:g} GiB memory, {threads}"

    def for_child(self):
        """The limits the child sets on itself: {cpu, memory, file_size}."""
        return {'cpu': self.cpu, 'memory': self.memory, 'file_size': self.memory}


@dataclass
class Finished:
    """How a child ended, and what it wrote."""
    exit_code: int | None     # exit status, or None when a signal ended it
    signal: int | None        # the signal that ended it, if any
    timed_out: bool           # killed here at the wall-clock limit
    seconds: float            # wall-clock time
    output: bytes             # stdout and stderr, the first OUTPUT_LIMIT bytes
    output_dropped: int       # bytes of output discarded beyond that
    channel: bytes            # what the child wrote to the results pipe
    channel_overflow: bool    # it wrote more than the parent reads


class Capture:
    """Keeps the first `limit` bytes written to a pipe, counts the rest."""

    def __init__(self, limit):
        self.limit, self.chunks, self.kept, self.dropped = limit, [], 0, 0

    def add(self, data):
        keep = data[:max(self.limit - self.kept, 0)]
        if keep:
            self.chunks.append(keep)
        self.kept += len(keep)
        self.dropped += len(data) - len(keep)

    def data(self):
        return b''.join(self.chunks)


def bwrap_version():
    """'bubblewrap 0.8.0', or None when bwrap is not installed."""
    if not shutil.which('bwrap'):
        return None
    result = subprocess.run(['bwrap', '--version'], capture_output=True, text=True, check=False)
    return result.stdout.strip() or 'bubblewrap'


def python_paths():
    """The directories this Python and its site-packages live in (top ones only)."""
    import site
    candidates = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix,
                  os.path.dirname(sys.executable), *site.getsitepackages()}
    paths = sorted({os.path.realpath(path) for path in candidates if os.path.isdir(path)})
    return [path for path in paths
            if not any(path.startswith(other + os.sep) for other in paths if other != path)]


def library_path():
    """This process's sys.path entries inside python_paths(): what a child
    started with python -I -S (no site, no .pth code) must add to find numpy."""
    roots = python_paths()
    return [path for path in sys.path if path and any(
        os.path.realpath(path) == root or os.path.realpath(path).startswith(root + os.sep)
        for root in roots)]


def bwrap_command(command, stage, readable):
    """command inside bubblewrap, seeing system files, `readable` and `stage` only."""
    args = ['bwrap', '--unshare-all', '--die-with-parent', '--new-session', '--cap-drop', 'ALL',
            '--proc', '/proc', '--dev', '/dev']
    for path in (*SYSTEM_PATHS, *python_paths(), *readable):
        if os.path.islink(path):
            args += ['--symlink', os.readlink(path), path]
        elif os.path.exists(path):
            args += ['--ro-bind', path, path]
    return args + ['--bind', stage, stage, '--chdir', stage, '--', *command]


def unshare_command(command):
    """command in new network, PID and mount namespaces (the child jails itself)."""
    user = [] if os.geteuid() == 0 else ['--user', '--map-root-user']
    return ['unshare', *user, '--net', '--pid', '--fork', '--kill-child', '--mount',
            '--mount-proc', '--', *command]


def die_with_parent(command):
    """command, killed when the thread that started it dies (a grading worker
    killed mid-section): bwrap has --die-with-parent, unshare has nothing of
    the kind. setpriv (util-linux) sets PR_SET_PDEATHSIG and execs it; unshare
    --kill-child passes the kill on to the namespace's init."""
    return ['setpriv', '--pdeathsig', 'KILL', '--', *command] if shutil.which('setpriv') \
        else list(command)


def wrap(command, isolation, stage, readable=()):
    if isolation == 'bwrap':
        return bwrap_command(command, stage, readable)
    if isolation == 'unshare':
        return die_with_parent(unshare_command(command))
    return die_with_parent(command)


def decode_status(code):
    """(exit code, signal) from a returncode; wrappers report a signal as 128 + number."""
    if code < 0:
        return None, -code
    if code > 128 and code - 128 in signal.valid_signals():
        return None, code - 128
    return code, None


def kill_group(pid):
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def run(command, isolation, stage, limits, env, channel_limit, readable=()):
    """Runs `command` in the sandbox; returns Finished.

    The child gets the write end of the results pipe as an inherited file
    descriptor whose number is in env['NN_GRADER_CHANNEL'] (set here).
    """
    channel_read, channel_write = os.pipe()
    output_read, output_write = os.pipe()
    env = {**env, 'NN_GRADER_CHANNEL': str(channel_write)}
    start = time.monotonic()
    try:
        process = subprocess.Popen(
            wrap(command, isolation, stage, readable), cwd=stage, env=env,
            stdin=subprocess.DEVNULL, stdout=output_write, stderr=output_write,
            pass_fds=(channel_write,), start_new_session=True)
    finally:
        os.close(channel_write)
        os.close(output_write)
    pipes = {output_read: Capture(OUTPUT_LIMIT), channel_read: Capture(channel_limit)}
    try:
        status, timed_out, seconds = supervise(process, pipes, start, limits.wall)
    finally:
        if process.returncode is None:  # interrupted: not reaped, so its group is still ours
            kill_group(process.pid)
        for fd in pipes:
            os.close(fd)
    exit_code, signal_number = decode_status(os.waitstatus_to_exitcode(status))
    output, channel = pipes[output_read], pipes[channel_read]
    return Finished(exit_code, signal_number, timed_out, seconds, output.data(),
                    output.dropped, channel.data(), channel.dropped > 0)


def supervise(process, pipes, start, wall):
    """Drains the pipes until the child has exited and they are closed.

    Kills the child's process group at start + wall, or when the child
    exits (before reaping it, so that its process group id cannot have been
    reused); then waits at most AFTER_EXIT_GRACE for the pipes to close.
    Returns (wait status, timed out, seconds).
    """
    pidfd = os.pidfd_open(process.pid)
    open_pipes, timed_out, ended = set(pipes), False, None
    try:
        while True:
            now = time.monotonic()
            if ended is not None:
                if not open_pipes or now >= ended + AFTER_EXIT_GRACE:
                    break
                timeout = ended + AFTER_EXIT_GRACE - now
            elif now >= start + wall:
                if not timed_out:
                    kill_group(process.pid)
                    timed_out = True
                timeout = None
            else:
                timeout = start + wall - now
            watched = [*open_pipes, *([pidfd] if ended is None else [])]
            for fd in select.select(watched, [], [], timeout)[0]:
                if fd == pidfd:
                    kill_group(process.pid)
                    _, status = os.waitpid(process.pid, 0)
                    ended = time.monotonic()
                    process.returncode = os.waitstatus_to_exitcode(status)
                    continue
                data = os.read(fd, 1 << 16)
                if data:
                    pipes[fd].add(data)
                else:
                    open_pipes.discard(fd)
    finally:
        os.close(pidfd)
    return status, timed_out, ended - start
