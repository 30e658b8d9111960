"""Load on the checking service: 50 students upload 200 submissions in a burst.

    python3 bench/service_load.py [--students 50] [--uploads 200] [--table FILE]

Starts ./run.py serve's web server and dispatcher on 127.0.0.1 with a fresh
data directory, imports a roster, logs every student in over HTTP (choosing a
new password), then has them all upload at once (the reference solution, each
copy different). Waits until the queue is empty, checks that every upload was
graded exactly once (each section recorded by one run, nothing lost) and
prints the upload latency (median, p95) and the submissions graded per minute.
The default points table holds three quick sections (ReLU, Softmax, Dense);
--table takes another (non-training sections only, or it runs for hours).
"""
import argparse
import csv
import http.cookiejar
import io
import json
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

KIT = Path(__file__).resolve().parent.parent
TABLE = ('section,title,points,tests\n2.1.1,ReLU,0.5,relu\n2.1.2,Softmax,1.5,softmax\n'
         '2.1.3,Dense,1.5,dense\n')
PASSWORD = 'load-test-password-1'


class Student:
    """One student's HTTP session (cookies and the CSRF token)."""

    def __init__(self, url, name, password):
        self.url, self.name = url, name
        self.cookies = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.cookies))
        self.get('/login/')
        self.post('/login/', {'username': name, 'password': password})
        self.post('/password/', {'old_password': password, 'new_password1': PASSWORD,
                                 'new_password2': PASSWORD})

    def csrf(self):
        return next(cookie.value for cookie in self.cookies if cookie.name == 'csrftoken')

    def get(self, path):
        with self.opener.open(self.url + path, timeout=120) as response:
            return response.geturl(), response.read()

    def post(self, path, fields, files=None):
        boundary = uuid.uuid4().hex
        parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'
                 f'{value}\r\n'.encode()
                 for name, value in {**fields, 'csrfmiddlewaretoken': self.csrf()}.items()]
        for name, (filename, data) in (files or {}).items():
            parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; '
                         f'filename="{filename}"\r\nContent-Type: text/x-python\r\n\r\n'.encode()
                         + data + b'\r\n')
        request = urllib.request.Request(
            self.url + path, b''.join(parts) + f'--{boundary}--\r\n'.encode(),
            {'Content-Type': f'multipart/form-data; boundary={boundary}',
             'Referer': self.url + path})
        with self.opener.open(request, timeout=120) as response:
            return response.geturl(), response.read()

    def upload(self, data):
        """Seconds the upload took; fails unless it landed on its submission page."""
        start = time.monotonic()
        url, _ = self.post('/', {}, {'solution': ('solution.py', data)})
        assert '/submissions/' in url, f"{self.name}: the upload was refused ({url})"
        return time.monotonic() - start


def free_port():
    with socket.socket() as probe:
        probe.bind(('127.0.0.1', 0))
        return probe.getsockname()[1]


def wait_for_port(port, seconds=60):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with socket.socket() as probe:
            if probe.connect_ex(('127.0.0.1', port)) == 0:
                return
        time.sleep(0.2)
    sys.exit('the web server did not start')


def check_graded_once(database, sections):
    """(submissions, runs): every run done, each section of each submission recorded once."""
    with sqlite3.connect(database) as db:
        rows = db.execute('SELECT submission_id, state, result FROM service_run').fetchall()
        submissions = db.execute('SELECT COUNT(*) FROM service_submission').fetchone()[0]
    recorded = {}
    for submission, state, result in rows:
        assert state == 'done', f"run of submission {submission} is {state}"
        for number in json.loads(result)['sections']:
            recorded.setdefault(submission, []).append(number)
    assert len(recorded) == submissions, 'a submission has no result'
    assert all(sorted(numbers) == sorted(sections) for numbers in recorded.values()), \
        'a section was recorded twice or not at all'
    return submissions, len(rows)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--students', type=int, default=50)
    parser.add_argument('--uploads', type=int, default=200)
    parser.add_argument('--table', type=Path, help='points table (default: ReLU, Softmax, Dense)')
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix='nn-service-load-'))
    table = args.table or root / 'table.csv'
    if not args.table:
        table.write_text(TABLE)
    sections = [row['section'] for row in csv.DictReader(io.StringIO(table.read_text()))]
    per_student = -(-args.uploads // args.students)
    (root / 'course.toml').write_text(f'[course]\npoints = "{table}"\n[limits]\ntime = 30\n'
                                      f'[quotas]\nuploads_per_hour = {per_student}\n')
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    serve = [sys.executable, str(KIT / 'run.py'), 'serve', '--data', str(root / 'data'),
             '--config', str(root / 'course.toml'), '--port', str(port)]
    names = [f"s{index:03d}" for index in range(args.students)]
    (root / 'roster.csv').write_text('student_id,name,email\n' + ''.join(
        f"{name},Student {name},{name}@example.org\n" for name in names))
    subprocess.run([*serve, 'manage', 'import_roster', str(root / 'roster.csv'),
                    str(root / 'passwords.csv')], check=True, stdout=subprocess.DEVNULL)
    passwords = {row['student_id']: row['password']
                 for row in csv.DictReader(io.StringIO((root / 'passwords.csv').read_text()))}
    with open(root / 'service.log', 'w') as log:
        processes = [subprocess.Popen([*serve, name], stdout=log, stderr=log)
                     for name in ('web', 'dispatcher')]
    try:
        wait_for_port(port)
        with ThreadPoolExecutor(8) as pool:
            students = list(pool.map(lambda name: Student(url, name, passwords[name]), names))
        source = (KIT / 'solution.py').read_bytes()
        jobs = [(students[index % len(students)], source + f"\n# upload {index}\n".encode())
                for index in range(args.uploads)]
        print(f"{len(students)} students logged in; {len(jobs)} uploads in a burst, "
              f"sections {', '.join(sections)}", flush=True)
        start = time.monotonic()
        with ThreadPoolExecutor(args.students) as pool:
            latencies = list(pool.map(lambda job: job[0].upload(job[1]), jobs))
        uploaded = time.monotonic() - start
        database = root / 'data' / 'service.sqlite3'
        while True:
            with sqlite3.connect(database) as db:
                pending = db.execute("SELECT COUNT(*) FROM service_run "
                                     "WHERE state != 'done'").fetchone()[0]
            if not pending:
                break
            time.sleep(1)
        graded = time.monotonic() - start
        submissions, runs = check_graded_once(database, sections)
    finally:
        for process in processes:
            process.send_signal(signal.SIGTERM)
        for process in processes:
            process.wait(timeout=30)
    quantiles = statistics.quantiles(latencies, n=20)
    print(f"uploads: {len(latencies)} in {uploaded:.1f} s; latency median "
          f"{statistics.median(latencies) * 1000:.0f} ms, p95 {quantiles[-1] * 1000:.0f} ms")
    print(f"graded: {submissions} submissions ({runs} runs, each section recorded once) in "
          f"{graded:.0f} s: {submissions / graded * 60:.1f} submissions/min "
          f"({len(sections)} sections each)")
    print(f"data directory: {root}")


if __name__ == '__main__':
    main()
