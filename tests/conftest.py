"""Makes the kit's top-level modules and tests/mutants.py importable."""
import sys
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parent.parent), str(Path(__file__).resolve().parent)]
