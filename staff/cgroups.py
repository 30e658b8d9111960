"""Control groups: one per section, bounding all its processes together.

A section's group allows at most `pids` processes and threads and `memory`
bytes of memory for all of them; its OOM-kill counter tells the grader that
the kernel killed one of them for memory, even when the child then exits 0.
Groups are created under the grader's own cgroup (from /proc/self/cgroup),
named nn-grade-<grader pid>-<number>.

  v1  the `pids` and `memory` hierarchies (the course machines)
  v2  one unified hierarchy whose `pids` and `memory` controllers the
      grader's cgroup can enable for its children. Written for machines
      that have them, untested here: the course machines' cgroup2 mount
      has the hugetlb controller only.

The child enters its group through ENTER_GROUP, a few lines of shell run
before bubblewrap or unshare, so no submitted code ever runs outside it
(not preexec_fn: the grader is multi-threaded).
"""
import itertools
import os
import signal
import time
from dataclasses import dataclass
from functools import cache
from pathlib import Path

PREFIX = 'nn-grade-'
NUMBERS = itertools.count(1)  # one count per process: two threads' groups never share a name
CONTROLLERS = ('pids', 'memory')
REMOVE_TIMEOUT = 5.0  # seconds to wait for a group's killed processes to leave it
# sh -c ENTER_GROUP sh <cgroup.procs files> -- <command>: writes its pid into each file, execs
ENTER_GROUP = ('while [ "$1" != -- ]; do echo $$ > "$1" || exit 126; shift; done; '
               'shift; exec "$@"')


def mounts():
    """[(fstype, mount root, mount point, super options)] of the cgroup file systems."""
    found = []
    for line in Path('/proc/self/mountinfo').read_text().splitlines():
        fields = line.split()
        separator = fields.index('-')
        fstype, options = fields[separator + 1], fields[separator + 3].split(',')
        if fstype in ('cgroup', 'cgroup2'):
            found.append((fstype, fields[3], fields[4], options))
    return found


def own_cgroups():
    """{controller or '' (v2): this process's cgroup path} from /proc/self/cgroup."""
    paths = {}
    for line in Path('/proc/self/cgroup').read_text().splitlines():
        _, controllers, path = line.split(':', 2)
        for controller in controllers.split(',') if controllers else ['']:
            paths[controller] = path
    return paths


def directory(mount_root, mount_point, path):
    """Where the cgroup `path` appears under a mount of its hierarchy, or None."""
    relative = os.path.relpath(path, mount_root)
    if relative.startswith('..'):
        return None
    return Path(mount_point) / relative


def write(path, value):
    Path(path).write_text(f"{value}\n")


@dataclass
class Group:
    """One section's group: a directory per hierarchy."""
    name: str
    directories: tuple   # v1: (pids, memory); v2: (unified,)
    version: int

    @property
    def memory_directory(self):
        return self.directories[-1]

    def procs_files(self):
        return [str(folder / 'cgroup.procs') for folder in self.directories]

    def oom_kills(self):
        """How many processes the kernel killed in this group for memory."""
        name = 'memory.oom_control' if self.version == 1 else 'memory.events'
        try:
            for line in (self.memory_directory / name).read_text().splitlines():
                key, _, value = line.partition(' ')
                if key == 'oom_kill':
                    return int(value)
        except OSError:
            pass
        return 0

    def processes(self):
        pids = set()
        for folder in self.directories:
            try:
                pids |= {int(pid) for pid in (folder / 'cgroup.procs').read_text().split()}
            except OSError:
                pass
        return pids

    def kill(self):
        """SIGKILL to every process in the group (through a pidfd: no pid reuse races)."""
        for pid in self.processes():
            try:
                pidfd = os.pidfd_open(pid)
            except OSError:
                continue
            try:
                lines = Path(f'/proc/{pid}/cgroup').read_text().splitlines()
                if any(line.endswith('/' + self.name) for line in lines):
                    signal.pidfd_send_signal(pidfd, signal.SIGKILL)
            except OSError:
                pass
            finally:
                os.close(pidfd)

    def remove(self):
        """Kills what is left in the group and removes it; False if it would not go."""
        deadline = time.monotonic() + REMOVE_TIMEOUT
        while True:
            self.kill()
            try:
                for folder in self.directories:
                    if folder.exists():
                        folder.rmdir()
                return True
            except OSError:
                if time.monotonic() > deadline:
                    return False
                time.sleep(0.01)


class Cgroups:
    """Creates the sections' groups under the grader's own cgroup."""

    def __init__(self, parents, version):
        self.parents, self.version = parents, version  # v1: (pids, memory); v2: (unified,)

    def describe(self):
        controllers = ' and '.join(CONTROLLERS)
        return f"cgroup v{self.version} {controllers}"

    def create(self, pids, memory):
        """A new Group allowing `pids` processes and threads, `memory` bytes in all."""
        name = f"{PREFIX}{os.getpid()}-{next(NUMBERS)}"
        group = Group(name, tuple(parent / name for parent in self.parents), self.version)
        try:
            for folder in group.directories:
                folder.mkdir()
            if self.version == 1:
                pids_folder, memory_folder = group.directories
                write(pids_folder / 'pids.max', pids)
                write(memory_folder / 'memory.limit_in_bytes', memory)
                if (memory_folder / 'memory.memsw.limit_in_bytes').exists():
                    write(memory_folder / 'memory.memsw.limit_in_bytes', memory)  # no swapping out
            else:
                (folder,) = group.directories
                write(folder / 'pids.max', pids)
                write(folder / 'memory.max', memory)
                if (folder / 'memory.swap.max').exists():
                    write(folder / 'memory.swap.max', 0)
        except OSError:
            group.remove()
            raise
        return group

    def remove_leftovers(self):
        """Removes the groups of graders that are no longer running."""
        for parent in self.parents:
            for folder in parent.glob(f'{PREFIX}*'):
                owner = folder.name.removeprefix(PREFIX).split('-')[0]
                if owner.isdigit() and not Path(f'/proc/{owner}').exists():
                    Group(folder.name, (folder,), self.version).remove()


def v1_parents():
    own = own_cgroups()
    parents = {}
    for fstype, root, point, options in mounts():
        for controller in CONTROLLERS:
            if fstype == 'cgroup' and controller in options and controller in own:
                parents.setdefault(controller, directory(root, point, own[controller]))
    if None in parents.values() or set(parents) != set(CONTROLLERS):
        return None
    return tuple(parents[controller] for controller in CONTROLLERS)


def v2_parent():
    own = own_cgroups().get('')
    for fstype, root, point, _ in mounts():
        if fstype == 'cgroup2' and own is not None:
            folder = directory(root, point, own)
            if folder is not None and (folder / 'cgroup.controllers').exists():
                available = (folder / 'cgroup.controllers').read_text().split()
                if set(CONTROLLERS) <= set(available):
                    return folder
    return None


@cache
def find():
    """(Cgroups, '') where the grader can create groups, else (None, why not).

    Tries a group of each kind before saying yes, and removes the leftovers
    of graders that were killed; once per process.
    """
    v1 = v1_parents()
    if v1:
        candidate = Cgroups(v1, 1)
    elif (v2 := v2_parent()) is not None:
        try:  # untested on the course machines (see above)
            write(v2 / 'cgroup.subtree_control', ' '.join(f'+{c}' for c in CONTROLLERS))
        except OSError as error:
            return None, (f"cgroup v2 at {v2} cannot enable {', '.join(CONTROLLERS)} for its "
                          f"children ({error.strerror})")
        candidate = Cgroups((v2,), 2)
    else:
        return None, ("no cgroup v1 pids and memory hierarchies and no cgroup v2 with those "
                      "controllers are mounted")
    try:
        candidate.remove_leftovers()
        candidate.create(1, 1 << 30).remove()
    except OSError as error:
        return None, f"cannot create a group under {candidate.parents[0]} ({error.strerror})"
    return candidate, ''
