# ReLU.forward (its first call) forks 2 children that each touch 400 MiB: under
# the 640 MiB limit of tests/test_grader.py's SPREAD for one process, over it
# together; the parent ignores how they end and goes on. The section's cgroup
# OOM-kills one of them: memory limit, though the child grading ReLU exits 0.
import os
import time

SPREAD = []


class ReLU(ReLU):
    def forward(self, inputs):
        if not SPREAD:
            for _ in range(2):
                pid = os.fork()
                if pid == 0:
                    hoard = np.ones(400 << 17)  # 400 MiB of float64, every page touched
                    time.sleep(1)
                    os._exit(int(hoard[0]) - 1)
                SPREAD.append(pid)
            for pid in SPREAD:
                os.waitpid(pid, 0)
        return super().forward(inputs)
