"""The grader's child: runs one section's cases against a submission, sandboxed.

staff/grader.py copies this file into a fresh work directory beside copies of
the kit's modules (staff/kit.py KIT_MODULES) and public tests/, and the
submission as solution.py, then starts it (through staff/sandbox.py) as

    python -I -S -B _grader_child.py SETUP _grader_cases.pkl

SETUP is JSON: the limits the child sets on itself, in unshare mode the jail
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
itself.
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

# ====================== Unshare mode: a read-only world =====================

MS_RDONLY, MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 1, 32, 4096, 16384, 1 << 18
SYS_MOUNT_SETATTR, AT_FDCWD, AT_RECURSIVE, MOUNT_ATTR_RDONLY = 442, -100, 0x8000, 1
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


def jail(writable, hide):
    """In fresh mount and PID namespaces: everything read-only but `writable`.

    Covers each `hide` directory with an empty read-only tmpfs, makes every
    mount read-only, mounts `writable` back read-write, then drops all
    capabilities so that nothing started later can undo it.
    """
    mount(None, '/', None, MS_REC | MS_PRIVATE)
    for path in hide:
        mount('tmpfs', path, 'tmpfs', MS_RDONLY)
    attributes = MountAttr(MOUNT_ATTR_RDONLY, 0, 0, 0)
    LIBC.syscall.restype = ctypes.c_long
    check(LIBC.syscall(SYS_MOUNT_SETATTR, AT_FDCWD, b'/', AT_RECURSIVE, ctypes.byref(attributes),
                       ctypes.sizeof(attributes)), "mount_setattr /")
    mount(writable, writable, None, MS_BIND)
    mount(None, writable, None, MS_REMOUNT | MS_BIND)
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

class Channel:
    """The results pipe, kept on a high close-on-exec descriptor."""

    def __init__(self, fd):
        self.fd = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 100)
        os.close(fd)

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


def import_failure(error):
    """One line on why importing solution.py failed."""
    if isinstance(error, SystemExit):
        return f"solution.py called sys.exit({error.code!r}) while being imported"
    return f"{type(error).__name__}: {error}".splitlines()[0][:MESSAGE_LIMIT]


def run_cases(channel, cases):
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
            verdict, results = common.run_case(solution, case)
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
    with open(cases_path, 'rb') as file:
        cases = pickle.load(file)
    os.remove(cases_path)
    run_cases(channel, cases)


if __name__ == '__main__':
    main(*sys.argv[1:])
