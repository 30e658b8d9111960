# Appended to the blank template, not the reference: it has no code of its own.
# Hunts for the kit's reference solution.py (at the kit's real path, which it
# was given, and by walking the file system), imports the first it finds and
# answers with its classes; prints what it could see for the isolation test.
import importlib.util
import json
import os
import pathlib

PROBES = {'kit': '@REAL_KIT@', 'reference': '@REAL_KIT@/solution.py',
          'grader': '@REAL_KIT@/staff/grader.py', 'tests': '@REAL_KIT@/tests',
          'data': '@DATA@', 'hidden': '@HIDDEN@', 'submissions': '@SUBMISSIONS@',
          'home': '/home', 'sys': '/sys'}


def candidates():
    yield pathlib.Path('@REAL_KIT@') / 'solution.py'
    for top in ('/tmp', '/home', '/root', '/work', '/srv', '/opt', '/mnt', '/var'):
        for folder, folders, files in os.walk(top):
            if folder.count(os.sep) >= 5:
                folders[:] = []
            if 'solution.py' in files:
                yield pathlib.Path(folder) / 'solution.py'


def reference():
    for path in candidates():
        try:
            if path.resolve() != pathlib.Path(__file__).resolve() and \
                    'return np.maximum' in path.read_text():
                spec = importlib.util.spec_from_file_location('found_reference', path)
                module = importlib.util.module_from_spec(spec)
                spec.loader.exec_module(module)
                return module
        except (OSError, UnicodeDecodeError):
            pass
    return None


print('EXPLORED', json.dumps({
    'top': sorted(os.listdir('/')), 'tmp': sorted(os.listdir('/tmp')) if os.path.isdir('/tmp') else [],
    'seen': {name: os.path.exists(path) for name, path in PROBES.items()}}))
FOUND = reference()
if FOUND is not None:
    globals().update({name: value for name, value in vars(FOUND).items()
                      if not name.startswith('__')})
