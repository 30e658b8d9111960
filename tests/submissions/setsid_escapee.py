# Detaches a daemon: double fork and setsid, so that killing its process
# group or its parent does not reach it.
import os

if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        os.execvp('sleep', ['sleep', '86396'])
    os._exit(0)
os.wait()
