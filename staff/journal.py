"""A batch's results files, written as it goes, read back to resume.

One line per submission, appended (one write of a whole line, flushed to
disk) as soon as the submission's last section is judged: a JSON object in
the JSON Lines file, a row in the CSV file. An interrupted batch loses only
the submissions in flight; rerunning the same command keeps every stored
result whose key still matches and grades the rest. The key: the student,
the SHA-256 of the submission, and the grader's digest (points table,
limits, kit and fixtures, hidden set), so a fixed fixture or a new hidden
set regrades everyone. A submission counts as stored only when both its
JSON line and its CSV row are complete.
"""
import csv
import hashlib
import io
import json
import os
import signal
import threading
from contextlib import contextmanager
from pathlib import Path


def submission_key(student, path, grading):
    """{'student', 'sha256', 'grading'}: what a stored result must match."""
    return {'student': student, 'sha256': hashlib.sha256(Path(path).read_bytes()).hexdigest(),
            'grading': grading}


def complete_lines(path):
    """The file's lines that end with a newline (a cut last line is dropped)."""
    if path is None or not Path(path).is_file():
        return []
    return [line for line in Path(path).read_text().splitlines(keepends=True)
            if line.endswith('\n')]


def csv_line(row):
    buffer = io.StringIO()
    csv.writer(buffer).writerow(row)
    return buffer.getvalue()


def replace(path, lines):
    """Writes the file anew in one rename: never half old, half new."""
    temporary = Path(f"{path}.part")
    temporary.write_text(''.join(lines))
    os.replace(temporary, path)


def append(path, line):
    """One line at the end of the file, in a single write, on disk when this returns."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def interrupts_held():
    """SIGINT and SIGTERM (Ctrl-C, kill) wait until the block is done.

    Signal handlers can be set in the main thread only; elsewhere it is a no-op.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught = []
    previous = {number: signal.signal(number, lambda received, _: caught.append(received))
                for number in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
        if caught:
            signal.raise_signal(caught[0])


class Journal:
    """The JSON Lines file (and CSV file, or None) of one batch."""

    def __init__(self, json_path, csv_path, header, keys, restart=False):
        """keys: {student: key} of this batch; restart drops every stored result."""
        self.json_path, self.csv_path, self.header = json_path, csv_path, header
        self.json_lines, self.csv_lines = {}, {}
        if not restart:
            self.read(keys)
        self.rewrite()

    def read(self, keys):
        rows = {}
        for line in complete_lines(self.csv_path)[1:]:
            row = next(csv.reader([line]), [])
            if len(row) == len(self.header):
                rows[row[0]] = line
        for line in complete_lines(self.json_path):
            try:
                data = json.loads(line)
                student = data['student']
                matches = {name: data[name] for name in ('student', 'sha256', 'grading')} \
                    == keys.get(student)
            except (ValueError, KeyError, TypeError):  # a line cut by a crash
                continue
            if matches and (self.csv_path is None or student in rows):
                self.json_lines[student] = line
                if self.csv_path is not None:
                    self.csv_lines[student] = rows[student]

    def stored(self):
        """The students whose results are kept from earlier runs."""
        return set(self.json_lines)

    def add(self, key, report_json, csv_row):
        """Appends the submission's line to both files; Ctrl-C waits until both are written."""
        student = key['student']
        self.json_lines[student] = json.dumps({**key, **report_json}) + '\n'
        self.csv_lines[student] = csv_line(csv_row)
        with interrupts_held():
            append(self.json_path, self.json_lines[student])
            if self.csv_path is not None:
                append(self.csv_path, self.csv_lines[student])

    def rewrite(self):
        """Both files with the kept results only, sorted by student."""
        students = sorted(self.json_lines)
        replace(self.json_path, [self.json_lines[student] for student in students])
        if self.csv_path is not None:
            replace(self.csv_path, [csv_line(self.header),
                                    *(self.csv_lines[student] for student in students)])
