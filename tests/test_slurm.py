"""The grader's Slurm engine on a one-node Slurm cluster that .ci/start-slurm
starts on 127.0.0.1 (as root, with Debian's slurm-wlm and munge: .ci/run
installs them). Where the daemons cannot start the tests skip and say why;
under CI=true they fail instead, since CI machines can start them.
"""
import argparse
import csv
import json
import os
import shutil
import subprocess
import sys

import pytest

import common
from staff import grader
from staff.kit import make_template
from staff.points import load_table

START = common.KIT_DIR / '.ci' / 'start-slurm'
REFERENCE = common.KIT_DIR / 'solution.py'


def run(command, **options):
    return subprocess.run(list(map(str, command)), capture_output=True, text=True, check=False,
                          **options)


@pytest.fixture(scope='module')
def slurm():
    missing = [name for name in ('slurmctld', 'slurmd', 'munged') if not shutil.which(name)]
    problem = (f"{', '.join(missing)} not installed (apt-get install slurm-wlm munge)" if missing
               else "the daemons run as root" if os.geteuid() != 0 else '')
    if not problem:
        started = run([START], timeout=120)
        problem = started.stderr.strip() if started.returncode else ''
    if problem:
        if os.environ.get('CI') == 'true':
            pytest.fail(f"a one-node Slurm must start in CI: {problem}")
        pytest.skip(f"no one-node Slurm here: {problem}")


def test_slurm_engine_grades_three_submissions(slurm, tmp_path):
    submissions = tmp_path / 'submissions'
    submissions.mkdir()
    shutil.copyfile(REFERENCE, submissions / 'alice.py')
    (submissions / 'bob.py').write_text('import sys\nsys.exit(1)\n')
    (submissions / 'carol.py').write_text(make_template(REFERENCE.read_text(), load_table()))
    done = run([sys.executable, common.KIT_DIR / 'run.py', 'grade', submissions,
                '--only', 'relu,2.1.2', '--engine', 'slurm', '--workers', 1, '--worker-cores', 1,
                '--worker-memory', '2GB', '--walltime', '00:10:00',
                '--csv', tmp_path / 'grades.csv', '--json', tmp_path / 'grades.json'],
               cwd=common.KIT_DIR, timeout=600)
    assert done.returncode == 0, done.stderr
    assert list(csv.reader((tmp_path / 'grades.csv').open())) == [
        ['student', '2.1.1', '2.1.2', 'total', 'verdicts'],
        ['alice', '0.5', '1.5', '2', ''],
        ['bob', '0', '0', '0', '2.1.1 import failed;2.1.2 import failed'],
        ['carol', '0', '0', '0', '2.1.1 not implemented;2.1.2 not implemented']]
    rows = [json.loads(line) for line in (tmp_path / 'grades.json').read_text().splitlines()]
    assert all(row['engine'].startswith('slurm (tcp://') for row in rows)
    assert all('tcp://' in section['worker'] for row in rows for section in row['sections'])
    queue = run(['squeue', '--noheader', '--format=%j'], timeout=30)
    assert 'dask-worker' not in queue.stdout  # the engine cancelled its jobs


def test_unreachable_slurm_is_a_one_line_usage_error(tmp_path):
    """Slurm's client commands, but no controller at the configured address."""
    conf = tmp_path / 'slurm.conf'
    conf.write_text('ClusterName=none\nSlurmctldHost=nohost(127.0.0.1)\nSlurmctldPort=9\n'
                    'MessageTimeout=1\nNodeName=nohost CPUs=1\nPartitionName=p Nodes=ALL\n')
    done = run([sys.executable, common.KIT_DIR / 'run.py', 'grade', REFERENCE, '--engine', 'slurm'],
               env={**os.environ, 'SLURM_CONF': str(conf),
                    'PATH': os.environ['PATH'] if shutil.which('sbatch') else '/usr/bin:/bin'},
               cwd=common.KIT_DIR, timeout=120)
    assert done.returncode == 2
    assert done.stderr.startswith("./run.py grade: --engine slurm: Slurm is not reachable: ")
    if shutil.which('sbatch'):
        assert "Unable to contact slurm controller" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_slurm_config_file_and_flags(tmp_path):
    config = tmp_path / 'slurm.toml'
    config.write_text('partition = "gpu"\naccount = "cs101"\ncores = 8\nmemory = "16GB"\n')
    parser = argparse.ArgumentParser()
    grader.add_arguments(parser)
    args = parser.parse_args([str(REFERENCE), '--engine', 'slurm', '--slurm-config', str(config),
                              '--worker-cores', '4', '--walltime', '01:00:00'])
    assert grader.slurm_options(args) == {
        'partition': 'gpu', 'account': 'cs101', 'walltime': '01:00:00', 'cores': 4,
        'memory': '16GB', 'workers': 1, 'scheduler_host': None, 'log_directory': None}
