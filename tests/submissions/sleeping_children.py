# Starts 50 child processes that sleep for a day, and never waits for them.
import subprocess

SLEEPERS = [subprocess.Popen(['sleep', '86397']) for _ in range(50)]
