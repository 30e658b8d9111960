"""Running a submission's code in a child process: isolated, limited, killable.

One of three isolation levels, best first:

  bwrap    Debian's bubblewrap: no network, own PID, IPC and UTS namespaces,
           a fresh root holding only read-only system and Python directories
           (visible_paths()) and the child's own work directory (copies of
           the kit's public files); no capabilities.
  unshare  util-linux unshare, when bubblewrap is missing: no network, own
           PID, IPC, UTS and mount namespaces. Before any submitted code
           runs, the child (staff/child.py) builds the same fresh root as
           bubblewrap does, pivots into it and drops all capabilities for good.
  none     a process group and resource limits only, only when asked for:
           the submission can read everything the grader can.

Limits: where the grader can create cgroups (staff/cgroups.py), every
process of a section counts against one group's process and memory limits;
otherwise, and in any case, the child limits itself (address space, CPU
time, file size) before importing the submission. This side enforces the
wall-clock limits (one for the import, one for the rest), keeps at most
OUTPUT_LIMIT bytes of output, feeds the child's data pipe once it has
imported the submission, and kills the child with all its descendants when
it ends: in a PID namespace or a cgroup even a process that detached itself
with setsid dies with it.
"""
import fcntl
import os
import select
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field

from common import GIB
from staff.cgroups import ENTER_GROUP

MIB = 1 << 20
OUTPUT_LIMIT = MIB
PROCESSES = 64  # processes and threads of a section besides its BLAS threads
ISOLATIONS = ('bwrap', 'unshare', 'none')
NAMESPACES = {
    'bwrap': "no network, own PID, IPC and UTS namespaces, no capabilities",
    'unshare': "no network, own PID, IPC, UTS, cgroup and mount namespaces, no capabilities",
}
NO_SANDBOX = ("NO SANDBOX (--isolation none): the submission could read and write everything "
              "the grader can, test labels, the reference solution and other submissions included")
SYSTEM_PATHS = ('/usr', '/bin', '/sbin', '/lib', '/lib32', '/lib64', '/libx32',
                '/etc/ld.so.cache', '/etc/ld.so.conf', '/etc/ld.so.conf.d', '/etc/alternatives',
                '/etc/localtime', '/etc/passwd', '/etc/group', '/etc/nsswitch.conf')
DEVICES = ('null', 'zero', 'full', 'random', 'urandom')
IMPORTED = b'{"event": "imported"}\n'  # the child's first message once solution.py imported
AFTER_EXIT_GRACE = 1.0  # seconds to drain the pipes once the child has exited
PIPE_SIZE = MIB  # of the data pipe (F_SETPIPE_SZ), for speed
F_SETPIPE_SZ = 1031


def size_text(size):
    """'2 GiB', '640 MiB', '1 KiB': bytes in the largest binary unit that keeps a number >= 1."""
    for unit, name in ((GIB, 'GiB'), (MIB, 'MiB'), (1 << 10, 'KiB')):
        if size >= unit:
            return f"{size / unit:g} {name}"
    return f"{size} bytes"


@dataclass(frozen=True)
class Limits:
    """What one section's child may use."""
    wall: float          # seconds of wall-clock time
    cpu: float | None    # seconds of CPU time per process; None: no limit
    memory: int          # bytes: address space per process, and all processes' memory in a cgroup
    threads: int         # BLAS / OpenMP threads
    processes: int = PROCESSES  # processes and threads besides the BLAS threads, in a cgroup

    def describe(self):
        cpu = f"{self.cpu:g} s CPU" if self.cpu else "no CPU limit"
        threads = f"{self.threads} BLAS thread" + ('s' if self.threads > 1 else '')
        return (f"{self.wall:g} s wall, {cpu}, {size_text(self.memory)} memory, {threads}, "
                f"{self.processes} processes")

    def for_child(self):
        """The limits the child sets on itself: {cpu, memory, file_size}."""
        return {'cpu': self.cpu, 'memory': self.memory, 'file_size': self.memory}

    @property
    def pids(self):
        """The cgroup's pids.max: it counts threads too."""
        return self.processes + self.threads


@dataclass
class Finished:
    """How a child ended, and what it wrote."""
    exit_code: int | None     # exit status, or None when a signal ended it
    signal: int | None        # the signal that ended it, if any
    timed_out: float | None   # the wall-clock limit (seconds) at which it was killed here
    seconds: float            # wall-clock time
    output: bytes             # stdout and stderr, the first OUTPUT_LIMIT bytes
    output_dropped: int       # bytes of output discarded beyond that
    channel: bytes            # what the child wrote to the results pipe
    channel_overflow: bool    # it wrote more than the parent reads
    channel_times: list = field(default_factory=list)  # [(bytes received in all, monotonic time)]
    fed: dict = field(default_factory=dict)  # key of a Feed part -> monotonic time it began
    oom_kills: int = 0        # processes the kernel killed in the section's cgroup for memory

    def arrival(self, offset):
        """When the channel's first `offset` bytes had all arrived."""
        return next(when for received, when in self.channel_times if received >= offset)


class Capture:
    """Keeps the first `limit` bytes written to a pipe, counts the rest, notes arrival times."""

    def __init__(self, limit):
        self.limit, self.chunks, self.kept, self.dropped, self.times = limit, [], 0, 0, []

    def add(self, data):
        keep = data[:max(self.limit - self.kept, 0)]
        if keep:
            self.chunks.append(keep)
        self.kept += len(keep)
        self.dropped += len(data) - len(keep)
        self.times.append((self.kept, time.monotonic()))

    def data(self):
        return b''.join(self.chunks)

    def startswith(self, prefix):
        head = b''
        for chunk in self.chunks:
            if len(head) >= len(prefix):
                break
            head += chunk
        return head[:len(prefix)] == prefix


class Feed:
    """What the parent writes to the child's data pipe once the child has said
    IMPORTED: parts [(key, [bytes-like])], sent in order."""

    def __init__(self, parts):
        self.queue = [(key, memoryview(buffer).cast('B')) for key, buffers in parts
                      for buffer in buffers]
        self.started = {}

    def write(self, fd):
        """Writes what the pipe takes now; True when everything is sent."""
        while self.queue:
            key, view = self.queue[0]
            self.started.setdefault(key, time.monotonic())
            try:
                written = os.write(fd, view[:PIPE_SIZE])
            except BlockingIOError:
                return False
            if written < len(view):
                self.queue[0] = key, view[written:]
            else:
                self.queue.pop(0)
        return True


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


def visible_paths():
    """{path: symlink target or None}: what a sandboxed child sees read-only (besides its
    work directory, its own /proc and a few devices)."""
    return {path: os.readlink(path) if os.path.islink(path) else None
            for path in (*SYSTEM_PATHS, *python_paths()) if os.path.lexists(path)}


def shown(path):
    """The visible path that `path` lies in (the child could read it), or ''."""
    path = os.path.realpath(path)
    return next((visible for visible in map(os.path.realpath, visible_paths())
                 if path == visible or path.startswith(visible.rstrip('/') + '/')), '')


def describe(isolation):
    """The report's isolation line: what the child sees, what is hidden and bounded."""
    if isolation == 'none':
        return NO_SANDBOX
    version = f" ({bwrap_version()})" if isolation == 'bwrap' else ''
    visible = ', '.join(visible_paths())
    return (f"{isolation}{version}: {NAMESPACES[isolation]}; the child sees read-only {visible}, "
            f"and read-write its own work directory (copies of the kit's public files, the "
            f"submission); hidden: everything else, among it the kit's checkout (reference, "
            f"staff/, tests/), the datasets (the training data comes through a pipe, test "
            f"labels never), the hidden set, the submissions, /home, /root and the rest of /tmp")


def bwrap_command(command, stage):
    """command inside bubblewrap, seeing visible_paths() and `stage` only."""
    args = ['bwrap', '--unshare-all', '--die-with-parent', '--new-session', '--cap-drop', 'ALL',
            '--proc', '/proc', '--dev', '/dev']
    for path, target in visible_paths().items():
        args += ['--symlink', target, path] if target else ['--ro-bind', path, path]
    return args + ['--bind', stage, stage, '--remount-ro', '/', '--chdir', stage, '--', *command]


def unshare_command(command):
    """command in new namespaces (the child builds its root itself: staff/child.py)."""
    user = [] if os.geteuid() == 0 else ['--user', '--map-root-user']
    return ['unshare', *user, '--net', '--pid', '--ipc', '--uts', '--cgroup', '--fork',
            '--kill-child', '--mount', '--mount-proc', '--', *command]


def die_with_parent(command):
    """command, killed when the thread that started it dies (a grading worker
    killed mid-section): bwrap has --die-with-parent, unshare has nothing of
    the kind. setpriv (util-linux) sets PR_SET_PDEATHSIG and execs it (the
    signal setting survives the exec of the cgroup entry's shell); unshare
    --kill-child passes the kill on to the namespace's init."""
    return ['setpriv', '--pdeathsig', 'KILL', '--', *command] if shutil.which('setpriv') \
        else list(command)


def jail_setup(stage):
    """What the child needs to build its root in unshare mode (see staff/child.py's jail)."""
    return {'visible': visible_paths(), 'devices': list(DEVICES), 'writable': str(stage)}


def wrap(command, isolation, stage, group=None):
    """The command line that runs `command` isolated, inside `group` (a Group) if given,
    and killed with the thread that starts it."""
    if isolation == 'bwrap':
        command = bwrap_command(command, stage)
    elif isolation == 'unshare':
        command = unshare_command(command)
    if group is not None:
        command = ['/bin/sh', '-c', ENTER_GROUP, 'nn-grade-enter', *group.procs_files(), '--',
                   *command]
    return list(command) if isolation == 'bwrap' else die_with_parent(command)


def decode_status(code):
    """(exit code, signal) from a returncode; wrappers report a signal as 128 + number."""
    if code < 0:
        return None, -code
    if code > 128 and code - 128 in signal.valid_signals():
        return None, code - 128
    return code, None


RUNNING = {}  # thread ident: the Supervisor of the child that thread waits for


def kill_children(threads):
    """Kills the children that these threads wait for (an engine that stops early)."""
    for ident in list(threads):
        if supervisor := RUNNING.get(ident):
            supervisor.kill()


def kill_group(pid):
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def run(command, isolation, stage, limits, env, channel_limit, group=None, feed=None,
        import_wall=None):
    """Runs `command` in the sandbox; returns Finished.

    The child gets the write end of the results pipe as an inherited file
    descriptor whose number is in env['NN_GRADER_CHANNEL'] (set here), and
    with a Feed the read end of the data pipe in env['NN_GRADER_DATA'].
    With `import_wall`, the child has that many seconds until the channel
    begins with IMPORTED, and limits.wall more from then; without it,
    limits.wall in all.
    """
    channel_read, channel_write = os.pipe()
    output_read, output_write = os.pipe()
    env = {**env, 'NN_GRADER_CHANNEL': str(channel_write)}
    inherited = [channel_write]
    data_read = data_write = None
    if feed is not None:
        data_read, data_write = os.pipe()
        try:
            fcntl.fcntl(data_write, F_SETPIPE_SZ, PIPE_SIZE)
        except OSError:
            pass
        os.set_blocking(data_write, False)
        env['NN_GRADER_DATA'] = str(data_read)
        inherited.append(data_read)
    start = time.monotonic()
    try:
        process = subprocess.Popen(
            wrap(command, isolation, stage, group), cwd=stage, env=env,
            stdin=subprocess.DEVNULL, stdout=output_write, stderr=output_write,
            pass_fds=inherited, start_new_session=True)
    except BaseException:
        if data_write is not None:
            os.close(data_write)
        raise
    finally:
        for fd in inherited + [output_write]:
            os.close(fd)
    pipes = {output_read: Capture(OUTPUT_LIMIT), channel_read: Capture(channel_limit)}
    supervisor = Supervisor(process, pipes, channel_read, group, feed, data_write)
    RUNNING[threading.get_ident()] = supervisor
    try:
        status, timed_out, seconds = supervisor.run(start, import_wall, limits.wall)
    finally:
        RUNNING.pop(threading.get_ident(), None)
        if process.returncode is None:  # interrupted: not reaped, so its group is still ours
            supervisor.kill()
        for fd in pipes:
            os.close(fd)
        supervisor.close_feed()
    exit_code, signal_number = decode_status(os.waitstatus_to_exitcode(status))
    output, channel = pipes[output_read], pipes[channel_read]
    return Finished(exit_code, signal_number, timed_out, seconds, output.data(),
                    output.dropped, channel.data(), channel.dropped > 0, channel.times,
                    feed.started if feed else {}, group.oom_kills() if group else 0)


class Supervisor:
    """Drains the pipes and feeds the child until it has exited and they are closed."""

    def __init__(self, process, pipes, channel, group, feed, data_write):
        self.process, self.pipes, self.channel, self.group = process, pipes, channel, group
        self.feed, self.data_write = feed, data_write
        self.feeding = False

    def kill(self):
        kill_group(self.process.pid)
        if self.group is not None:
            self.group.kill()

    def close_feed(self):
        if self.data_write is not None:
            os.close(self.data_write)
            self.data_write = None
        self.feeding = False

    def send(self):
        try:
            if self.feed.write(self.data_write):
                self.close_feed()
        except OSError:  # the child closed its end: it gets no more
            self.close_feed()

    def run(self, start, import_wall, wall):
        """Returns (wait status, the limit that ran out or None, seconds).

        Kills the child's process group (and cgroup) at the deadline, or when
        the child exits (before reaping it, so that its process group id
        cannot have been reused); then waits at most AFTER_EXIT_GRACE for the
        pipes to close. The deadline is start + wall; with import_wall, start
        + import_wall until the channel begins with IMPORTED, that moment +
        wall from then. The feed starts at that moment too.
        """
        pidfd = os.pidfd_open(self.process.pid)
        open_pipes, timed_out, ended = set(self.pipes), None, None
        imported = None
        deadline, limit = (start + wall, wall) if import_wall is None else (start + import_wall,
                                                                              import_wall)
        try:
            while True:
                now = time.monotonic()
                if imported is None and self.pipes[self.channel].startswith(IMPORTED):
                    imported = now
                    if import_wall is not None:
                        deadline, limit = now + wall, wall
                    self.feeding = self.feed is not None
                if ended is not None:
                    if not open_pipes or now >= ended + AFTER_EXIT_GRACE:
                        break
                    timeout = ended + AFTER_EXIT_GRACE - now
                elif now >= deadline:
                    if timed_out is None:
                        self.kill()
                        timed_out = limit
                    timeout = None
                else:
                    timeout = deadline - now
                watched = [*open_pipes, *([pidfd] if ended is None else [])]
                writing = [self.data_write] if self.feeding and ended is None else []
                readable, writable, _ = select.select(watched, writing, [], timeout)
                if writable:
                    self.send()
                for fd in readable:
                    if fd == pidfd:
                        self.kill()
                        _, status = os.waitpid(self.process.pid, 0)
                        ended = time.monotonic()
                        self.process.returncode = os.waitstatus_to_exitcode(status)
                        self.close_feed()
                        continue
                    data = os.read(fd, 1 << 16)
                    if data:
                        self.pipes[fd].add(data)
                    else:
                        open_pipes.discard(fd)
        finally:
            os.close(pidfd)
        return status, timed_out, ended - start
