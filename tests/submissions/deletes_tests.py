# Deletes every fixture file it can reach: the tests/ beside it and the
# kit's own, whose absolute path it was given; then tries to change interface.py.
import pathlib
import shutil

for folder in (pathlib.Path(__file__).parent, pathlib.Path('@KIT@')):
    for path in (folder / 'tests').glob('*/*'):
        try:
            path.unlink()
        except OSError:
            pass
    shutil.rmtree(folder / 'tests', ignore_errors=True)
    try:
        with open(folder / 'interface.py', 'a') as file:
            file.write('\nraise SystemExit("interface.py was changed by a submission")\n')
    except OSError:
        pass
