"""The grader's child: runs one section's cases against a submission, sandboxed.

staff/grader.py copies this file into a fresh work directory beside copies of
the kit's modules (staff/kit.py KIT_MODULES) and public tests/, and the
submission as solution.py, then starts it (through staff/sandbox.py) as

    python -I -S -B _grader_child.py SETUP _grader_cases.pkl

SETUP is JSON: the limits the child sets on itself, in unshare mode the root
to build, the grader's library path (-S skips site and its .pth files, a
tenth of the start-up) and whether this is only a probe of the sandbox
(import numpy, report, stop); the pickle holds the cases' inputs, never their
expected outputs. The child imports the kit's common.py and the solution and
runs every case with common.run_case, exactly as ./run.py unittest does,
writing to the results pipe (fd $NN_GRADER_CHANNEL):

    {"event": "imported"}
    {"event": common.Verdict.IMPORT_FAILED, "message": ..., "details": ...}
    {"event": "result", "case": i, "verdict": common.Verdict or common.RAN, "message": ...,
     "arrays": [names], "special": {name: "none" | "object"}}  then one .npy per name
    {"event": "done"}

Headers are JSON lines, arrays numpy's .npy format without pickles. The
parent trusts none of it: it compares the arrays with the expected outputs
itself. A training case's data come from the parent through the data pipe
(fd $NN_GRADER_DATA), once the child has said "imported": x_train, y_train
and x_test as three .npy arrays (shuffled, x_test perturbed; see
staff/training.py). The child never sees test labels, and its training time
is measured by the parent.
"""
import ctypes
import fcntl
import importlib
import io
import json
import math
import os
import pickle
import resource
import sys
from pathlib import Path

WORK_DIR = Path(__file__).resolve().parent
SOLUTION = WORK_DIR / 'solution.py'
MESSAGE_LIMIT = 20_000  # characters of a message or traceback sent back
TRAINING_ARRAYS = 3  # x_train, y_train, x_test: what a training case gets through the data pipe

# ================= Unshare mode: a fresh root, as bubblewrap's ================

MS_RDONLY, MS_NOSUID, MS_NODEV, MS_REMOUNT = 1, 2, 4, 32
MS_BIND, MS_REC, MS_PRIVATE, MNT_DETACH = 4096, 16384, 1 << 18, 2
SYS_MOUNT_SETATTR, AT_FDCWD, AT_RECURSIVE = 442, -100, 0x8000
MOUNT_ATTR_RDONLY, MOUNT_ATTR_NOSUID, MOUNT_ATTR_NODEV = 1, 2, 4
SYS_PIVOT_ROOT = {'x86_64': 155, 'aarch64': 41, 'riscv64': 41, 'ppc64le': 203, 's390x': 217}
NEW_ROOT = '.root'  # where the child assembles its root, inside its work directory
PR_CAPBSET_DROP, PR_SET_SECUREBITS, PR_SET_NO_NEW_PRIVS = 24, 28, 38
PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL = 47, 4
SECURE_NOROOT_ALL_LOCKED = 0b111111  # noroot, no_setuid_fixup, keep_caps: set and locked
LIBC = ctypes.CDLL(None, use_errno=True)


def check(result, what):
    if result != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{what}: {os.strerror(errno)}")


def encode(text):
    return text.encode() if text else None


def mount(source, target, fstype, flags):
    check(LIBC.mount(encode(source), encode(target), encode(fstype), ctypes.c_ulong(flags), None),
          f"mount {target}")


class MountAttr(ctypes.Structure):
    _fields_ = [('attr_set', ctypes.c_uint64), ('attr_clr', ctypes.c_uint64),
                ('propagation', ctypes.c_uint64), ('userns_fd', ctypes.c_uint64)]


class CapHeader(ctypes.Structure):
    _fields_ = [('version', ctypes.c_uint32), ('pid', ctypes.c_int)]


class CapData(ctypes.Structure):
    _fields_ = [('effective', ctypes.c_uint32), ('permitted', ctypes.c_uint32),
                ('inheritable', ctypes.c_uint32)]


def drop_capabilities():
    """Gives up every capability, for this process and all it will exec."""
    check(LIBC.prctl(PR_SET_SECUREBITS, SECURE_NOROOT_ALL_LOCKED, 0, 0, 0), "securebits")
    capability = 0
    while LIBC.prctl(PR_CAPBSET_DROP, capability, 0, 0, 0) == 0:
        capability += 1
    check(LIBC.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0), "ambient capabilities")
    check(LIBC.capset(ctypes.byref(CapHeader(0x20080522, 0)), (CapData * 2)()), "capset")
    check(LIBC.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no_new_privs")


def mount_setattr(path, flags):
    """Sets mount attributes on `path` and every mount below it."""
    attributes = MountAttr(flags, 0, 0, 0)
    LIBC.syscall.restype = ctypes.c_long
    check(LIBC.syscall(SYS_MOUNT_SETATTR, AT_FDCWD, path.encode(), AT_RECURSIVE,
                       ctypes.byref(attributes), ctypes.sizeof(attributes)),
          f"mount_setattr {path}")


def bind(source, target, read_only):
    """Binds `source` (a directory or a file) at `target`, created empty."""
    if os.path.isdir(source):
        os.makedirs(target, exist_ok=True)
    else:
        os.makedirs(os.path.dirname(target), exist_ok=True)
        open(target, 'a').close()
    mount(source, target, None, MS_BIND | MS_REC)
    if read_only:
        mount_setattr(target, MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV)


def pivot_root(new_root):
    """Makes new_root the root and lets go of the old one entirely."""
    number = SYS_PIVOT_ROOT.get(os.uname().machine)
    if number is None:
        raise OSError(f"pivot_root: unknown system call number on {os.uname().machine}")
    old = os.path.join(new_root, '.old')
    os.mkdir(old)
    check(LIBC.syscall(number, new_root.encode(), old.encode()), "pivot_root")
    os.chdir('/')
    check(LIBC.umount2(b'/.old', MNT_DETACH), "umount /.old")
    os.rmdir('/.old')


def jail(visible, devices, writable):
    """In fresh mount and PID namespaces: the root bubblewrap would build.

    A tmpfs holding read-only binds of the `visible` paths (or the symlinks
    they are), `writable` bound read-write, the namespace's /proc and the
    `devices` of /dev; pivots into it, makes it read-only, then drops all
    capabilities so that nothing started later can undo it.
    """
    mount(None, '/', None, MS_REC | MS_PRIVATE)
    root = os.path.join(writable, NEW_ROOT)
    os.mkdir(root)
    mount('tmpfs', root, 'tmpfs', MS_NOSUID | MS_NODEV)
    for path, target in visible.items():
        if target is None:
            bind(path, root + path, read_only=True)
        else:
            os.makedirs(os.path.dirname(root + path), exist_ok=True)
            os.symlink(target, root + path)
    bind(writable, root + writable, read_only=False)
    for device in devices:
        bind(f'/dev/{device}', f'{root}/dev/{device}', read_only=False)
    for name, target in (('fd', '/proc/self/fd'), ('stdin', '/proc/self/fd/0'),
                         ('stdout', '/proc/self/fd/1'), ('stderr', '/proc/self/fd/2')):
        os.symlink(target, f'{root}/dev/{name}')
    bind('/proc', root + '/proc', read_only=False)
    pivot_root(root)
    mount(None, '/', None, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV)
    os.chdir(writable)
    try:
        os.rmdir(os.path.join(writable, NEW_ROOT))
    except OSError:
        pass
    drop_capabilities()


def become_init():
    """As PID 1 of a new namespace, run the rest in a child and pass its status on.

    PID 1 ignores every signal it has no handler for (SIGXCPU of the CPU
    limit, a crash's SIGSEGV), so submitted code must not run as PID 1. When
    this process exits, the kernel kills all others in the namespace.
    """
    worker = os.fork()
    if worker == 0:
        return
    while True:
        pid, status = os.wait()
        if pid == worker:
            code = os.waitstatus_to_exitcode(status)
            os._exit(code if code >= 0 else 128 - code)


def limit_resources(cpu, memory, file_size):
    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    resource.setrlimit(resource.RLIMIT_FSIZE, (file_size, file_size))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if cpu:
        resource.setrlimit(resource.RLIMIT_CPU, (math.ceil(cpu), math.ceil(cpu) + 1))


# ================================ Results ===================================

def high_descriptor(fd):
    """fd moved to a high close-on-exec descriptor."""
    high = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 100)
    os.close(fd)
    return high


class Channel:
    """The results pipe, kept on a high close-on-exec descriptor."""

    def __init__(self, fd):
        self.fd = high_descriptor(fd)

    def send(self, header, arrays=()):
        import numpy as np
        buffer = io.BytesIO()
        buffer.write(json.dumps(header).encode() + b'\n')
        for array in arrays:
            np.lib.format.write_array(buffer, array, allow_pickle=False)
        view = memoryview(buffer.getvalue())
        while view:
            view = view[os.write(self.fd, view):]


def plain_array(value):
    """np.asarray(value) as the parent will check it, or None if it holds objects."""
    import numpy as np
    try:
        array = np.asarray(value)
    except Exception:  # ragged lists and the like: the parent reports them as objects
        return None
    return None if array.dtype.hasobject else array


def send_verdict(channel, index, verdict, message):
    """A case that ended without results: its Verdict and message."""
    channel.send({'event': 'result', 'case': index, 'verdict': verdict,
                  'message': str(message)[-MESSAGE_LIMIT:]})


def send_results(channel, index, ran, results):
    """A case's results, marked `ran` (common.RAN): plain arrays, None or objects noted."""
    names, arrays, special = [], [], {}
    for name, value in results.items():
        array = plain_array(value)
        if array is None:
            special[str(name)] = 'none' if value is None else 'object'
        else:
            names.append(str(name))
            arrays.append(array)
    channel.send({'event': 'result', 'case': index, 'verdict': ran, 'arrays': names,
                  'special': special}, arrays)


def receive_arrays(fd, count):
    """`count` .npy arrays from the data pipe (written by the grader: trusted)."""
    import numpy as np
    arrays = []
    with os.fdopen(fd, 'rb', buffering=0, closefd=False) as pipe:
        for _ in range(count):
            version = np.lib.format.read_magic(pipe)
            read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                           else np.lib.format.read_array_header_2_0)
            shape, _, dtype = read_header(pipe)
            array = np.empty(shape, dtype)
            view, done = memoryview(array.reshape(-1).view(np.uint8)), 0
            while done < len(view):
                got = pipe.readinto(view[done:])
                if not got:
                    raise EOFError("the grader's data pipe closed early")
                done += got
            arrays.append(array)
    return tuple(arrays)


def run_case(solution, case, data_fd):
    """common.run_case; a training case first gets its data from the pipe."""
    import common
    if not common.is_training(case):
        return common.run_case(solution, case)
    case = {**case, 'data': receive_arrays(data_fd, TRAINING_ARRAYS)}
    verdict, results = common.run_case(solution, case)
    if verdict == common.Verdict.NOT_AVAILABLE:  # the data are given: solution.py loaded one
        return common.Verdict.ERROR, (f"solution.py tried to load a dataset itself ({results}); "
                         f"train on the arrays passed to the training function")
    return verdict, results


def import_failure(error):
    """One line on why importing solution.py failed."""
    if isinstance(error, SystemExit):
        return f"solution.py called sys.exit({error.code!r}) while being imported"
    return f"{type(error).__name__}: {error}".splitlines()[0][:MESSAGE_LIMIT]


def run_cases(channel, cases, data_fd):
    import common  # the kit's copy beside this file, imported after the fork (see main)
    try:
        solution = common.load_solution(SOLUTION)
    except BaseException as error:  # SyntaxError, ImportError, SystemExit, anything
        channel.send({'event': common.Verdict.IMPORT_FAILED, 'message': import_failure(error),
                      'details': common.student_traceback(error, SOLUTION)[-MESSAGE_LIMIT:]})
        return
    channel.send({'event': 'imported'})
    for index, case in enumerate(cases):
        try:
            verdict, results = run_case(solution, case, data_fd)
            if verdict == common.RAN:
                send_results(channel, index, verdict, results)
            else:
                send_verdict(channel, index, verdict, results)
        except BaseException as error:  # sys.exit() in a layer, results too big to send
            verdict = (common.Verdict.MEMORY_LIMIT if isinstance(error, MemoryError)
                       else common.Verdict.ERROR)
            send_verdict(channel, index, verdict, f"{type(error).__name__}: {error}")
    channel.send({'event': 'done'})


def main(setup, cases_path):
    """Jails (unshare mode) and limits itself, then runs the cases.

    numpy is imported only after the fork of become_init(): BLAS threads
    do not survive a fork.
    """
    setup = json.loads(setup)
    sys.path[:0] = [str(WORK_DIR)]  # python -I leaves it out
    sys.path += setup['path']
    if setup['jail']:
        jail(**setup['jail'])
    limit_resources(**setup['limits'])
    if os.getpid() == 1:
        become_init()
    channel = Channel(int(os.environ.pop('NN_GRADER_CHANNEL')))
    if setup['probe']:  # the grader checks that this sandbox runs numpy
        importlib.import_module('numpy')
        channel.send({'event': 'imported'})
        return
    data = os.environ.pop('NN_GRADER_DATA', None)
    with open(cases_path, 'rb') as file:
        cases = pickle.load(file)
    os.remove(cases_path)
    run_cases(channel, cases, None if data is None else high_descriptor(int(data)))


if __name__ == '__main__':
    main(*sys.argv[1:])
