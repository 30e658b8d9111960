# Prints 100 MB while being imported.
import sys

sys.stdout.write('x' * (100 << 20))
sys.stdout.flush()
