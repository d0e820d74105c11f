"""Per-student output: feedback without hidden tests, and the autograded notebook for formgrader.

Feedback (DIR/feedback/<student>/<assignment>/<notebook>.html and .json) lists each auto-graded
part with its points, passed or failed and the message; it never contains test code, seeds or
inputs (hidden failures say only "(hidden test)"). The autograded notebook
(DIR/autograded/<student>/<assignment>/<notebook>.ipynb) is the student's notebook with the
instructor's versions of the given and test cells, as nbgrader's autograde leaves it; each test
cell gets an output with the grader's verdict (it is not executed).
"""

from __future__ import annotations

import html
import json
from pathlib import Path

import nbformat


def write_feedback(folder: Path, plan, row):
    folder.mkdir(parents=True, exist_ok=True)
    parts = [{"part": t.grade_id, "points": row["parts"][t.grade_id]["points"], "max": t.points,
              "passed": row["parts"][t.grade_id]["points"] == t.points,
              "message": row["parts"][t.grade_id]["message"]} for t in plan.tests]
    summary = {"student": row["student"], "assignment": plan.assignment, "total": row["total"],
               "max": row["max"], "status": row["status"], "reason": row["reason"], "parts": parts}
    (folder / f"{plan.notebook}.json").write_text(json.dumps(summary, indent=1))
    lines = "\n".join(
        f"<tr><td>{html.escape(p['part'])}</td><td>{p['points']:g} / {p['max']:g}</td>"
        f"<td>{'passed' if p['passed'] else 'failed'}</td><td>{html.escape(p['message'])}</td></tr>"
        for p in parts)
    page = f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>{html.escape(plan.assignment)}: feedback</title>
<style>body {{font-family: sans-serif; margin: 2em}}
td, th {{padding: .3em .8em; border-bottom: 1px solid #ccc; text-align: left}}</style></head>
<body><h1>{html.escape(plan.assignment)}: {row['total']:g} / {row['max']:g} automatic points</h1>
<p>Student: {html.escape(row['student'])}. Status: {html.escape(row['status'])}.
Written answers are graded by hand and are not included here.</p>
<table><tr><th>part</th><th>points</th><th>result</th><th>message</th></tr>
{lines}
</table></body></html>
"""
    (folder / f"{plan.notebook}.html").write_text(page)


def write_autograded(path: Path, plan, notebook_text, row):
    """The student's notebook with the instructor's given and test cells (and the verdicts as outputs)."""
    try:
        nb = nbformat.reads(notebook_text, as_version=4)
    except Exception:  # noqa: BLE001 - unreadable submission: start from the source
        nb = None
    source = nbformat.read(path.parents[3] / "source" / plan.assignment / f"{plan.notebook}.ipynb", 4) \
        if nb is None else None
    if nb is None:
        nb = source
    instructor = {gid: src for role, gid, src in plan.cells if role in ("given", "test")}
    for cell in nb.cells:
        gid = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")
        if cell.cell_type == "code" and gid in instructor:
            cell.source = instructor[gid]
            cell.outputs = []
            part = row["parts"].get(gid)
            if part is not None:
                verdict = (f"lstmkit grade: {part['points']:g} / {part['max']:g}"
                           + (f" ({part['status']}): {part['message']}" if part["message"] else " (passed)"))
                cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text=verdict + "\n")]
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
