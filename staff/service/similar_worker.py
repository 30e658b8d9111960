"""The similarity worker process: the service's seam to staff/similarity.py.

    python -m staff.service.similar_worker INPUT OUTPUT

INPUT (JSON): {"points": the course's points table, "texts": {student: text},
"pairs": [[a, b, similarity]]}. With no pairs it writes the whole report of the
texts against each other and the reference (similarity.Report.to_json(): every
pair ranked, the first similarity.TOP with their matching regions); with pairs,
{"shown": ...} for those pairs only. OUTPUT is written whole (renamed into
place) or not at all. The process runs niced: grading goes first.
"""
import json
import os
import sys
from pathlib import Path

import common
from staff import journal, similarity
from staff.kit import make_template
from staff.service import grading


def reference_text():
    """The kit's reference solution: compared with every submission (in case it leaked)."""
    return (common.KIT_DIR / 'solution.py').read_text(encoding='utf-8', errors='replace')


def compute(points, texts, pairs):
    reference = reference_text()
    template = make_template(reference, grading.table(points))
    others = {similarity.REFERENCE: reference}
    if not pairs:
        return similarity.similarity_report(texts, template, others, jobs=1).to_json()
    chosen = [similarity.Pair(a, b, value, 0) for a, b, value in pairs]
    found = similarity.compare(chosen, {**texts, **others}, template)
    return {'shown': similarity.Report([], found, {**texts, **others}).to_json()['shown']}


def main(argv):
    source, target = map(Path, argv)
    os.nice(10)
    job = json.loads(source.read_text())
    journal.replace(target, [json.dumps(compute(job['points'], job['texts'], job['pairs']))])
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
