"""Per-student output: feedback from the gradebook (no hidden tests), and the autograded notebook.

Feedback (DIR/feedback/<student>/<assignment>/<notebook>.html and .json) is read from the gradebook,
so it is right both after `lstmkit grade` and after hand grading in formgrader (`lstmkit feedback`):
each automatic part with its points, its status (ok, failed, timeout, error, ...: see
submission.part_status) and the grader's message, each part graded by hand with its
points (or "not graded yet") and the grader's comments, the late penalty and the total. It never
contains test code, seeds or inputs (the grader's messages name none; hidden failures say "(hidden
test)"). The HTML has no script and no external link: a student opens it without a network.

The autograded notebook (DIR/autograded/<student>/<assignment>/<notebook>.ipynb) is the student's
notebook with the instructor's versions of the given and test cells, as nbgrader's autograde leaves
it; each test cell gets an output with the grader's verdict (it is not executed).
"""

from __future__ import annotations

import html
import json
import os
import tempfile
import warnings
from pathlib import Path

import nbformat
from nbgrader.api import MissingEntry

from .course import Course
from .gradebook import side_rows
from .submission import part_status


def _num(x):
    return None if x is None else float(x)


def notebook_feedback(gb, course: Course, assignment, student):
    """One dict per notebook of the student's submission (parts, penalty, totals), from the gradebook."""
    submission = gb.find_submission(assignment, student)
    out = []
    for nb in submission.notebooks:
        answers = {c.name for c in nb.notebook.solution_cells}
        side = side_rows(gb, course.course_id, assignment, student, nb.name)
        comments = {c.name: c.comment for c in nb.comments if c.comment}
        parts = []
        for grade in sorted(nb.grades, key=lambda g: _cell_order(nb.notebook, g.name)):
            by_hand = grade.name in answers
            row = side.get(grade.name, {})
            graded = grade.manual_score is not None or (not by_hand and grade.auto_score is not None)
            pending = bool(grade.needs_manual_grade)  # formgrader still has to (re)grade or review it
            status = row.get("status") or ""
            if status == "ok" and graded and grade.score is not None and grade.score < grade.max_score:
                status = "failed"  # a gradebook written before `failed` was a part's status
            if pending:
                status = "to be graded again" if graded else "not graded yet"
            part = {"part": grade.name, "kind": "by hand" if by_hand else "automatic",
                    "points": _num(grade.score) if graded else None, "max": _num(grade.max_score),
                    "graded": graded, "pending": pending, "message": row.get("message") or "",
                    "status": status, "comment": comments.get(grade.name, "")}
            if not by_hand and grade.manual_score is not None:
                part["overridden"] = {"automatic": _num(grade.auto_score),
                                      "by hand": _num(grade.manual_score)}
            parts.append(part)
        code_comments = [{"cell": name, "comment": text} for name, text in comments.items()
                         if name not in {p["part"] for p in parts}]
        penalty = float(nb.late_submission_penalty or 0.0)
        raw = float(nb.score)
        out.append({
            "student": student, "assignment": assignment, "notebook": nb.name,
            "submitted": submission.timestamp.isoformat() if submission.timestamp else None,
            "due": submission.duedate.isoformat() if submission.duedate else None,
            "seconds_late": float(submission.total_seconds_late),
            "parts": parts, "comments": code_comments,
            "raw_score": raw, "late_penalty": penalty, "score": max(0.0, raw - penalty),
            "max_score": float(nb.max_score),
            "complete": not any(p["pending"] for p in parts),
        })
    return out


def _cell_order(notebook, name):
    names = [c.name for c in notebook.grade_cells]
    return names.index(name) if name in names else len(names)


def _pts(p):
    return f"- / {p['max']:g}" if p["points"] is None else f"{p['points']:g} / {p['max']:g}"


def _when(iso):
    """An ISO time from the gradebook (UTC, as nbgrader stores it) as 2026-10-17 09:30 UTC."""
    return iso.replace("T", " ")[:16] + " UTC" if iso else "?"


def _lateness(seconds):
    hours = seconds / 3600
    return f"{hours:.1f} hours" if hours < 48 else f"{hours / 24:.1f} days ({hours:.0f} hours)"


def render_html(fb):
    esc = html.escape
    rows = []
    for p in fb["parts"]:
        note = p["message"] or ("passed" if p["kind"] == "automatic" and p["points"] == p["max"] else "")
        status = p["status"] or ("graded" if p["graded"] else "")
        if "overridden" in p:
            o = p["overridden"]
            note = (note + "; " if note else "") + (f"score set by hand to {o['by hand']:g} "
                                                    f"(the automatic score was {o['automatic']:g})")
        comment = f'<div class="comment">{esc(p["comment"])}</div>' if p["comment"] else ""
        rows.append(f"<tr><td>{esc(p['part'])}</td><td>{esc(p['kind'])}</td><td>{esc(_pts(p))}</td>"
                    f"<td>{esc(status)}</td><td>{esc(note)}{comment}</td></tr>")
    extra = "".join(f"<li><b>{esc(c['cell'])}</b>: {esc(c['comment'])}</li>" for c in fb["comments"])
    extra = f"<h2>Comments on your code</h2><ul>{extra}</ul>" if extra else ""
    late = ""
    if fb["seconds_late"] > 0:
        late = (f"<p>Submitted {esc(_when(fb['submitted']))}, due {esc(_when(fb['due']))}: "
                f"{esc(_lateness(fb['seconds_late']))} late. "
                f"Late penalty: {fb['late_penalty']:g} points.</p>")
    pending = "" if fb["complete"] else \
        "<p><b>Some answers are not graded yet; this total is provisional.</b></p>"
    title = f"{fb['assignment']}: feedback for {fb['student']}"
    sums = []
    for kind in ("automatic", "by hand"):
        ps = [p for p in fb["parts"] if p["kind"] == kind]
        if ps:
            got = sum(p["points"] or 0 for p in ps)
            sums.append(f"{kind}: {got:g} / {sum(p['max'] for p in ps):g}")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{esc(title)}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>body {{font-family: sans-serif; margin: 2em; max-width: 60em}}
table {{border-collapse: collapse}}
td, th {{padding: .3em .8em; border-bottom: 1px solid #ccc; text-align: left; vertical-align: top}}
td {{overflow-wrap: break-word}}
td:last-child {{overflow-wrap: anywhere}}
.comment {{margin-top: .3em; padding: .3em .6em; background: #f3f3e0; white-space: pre-wrap}}
@media (max-width: 40em) {{
  body {{margin: 1em}}
  table, tbody, tr, td {{display: block}}
  tr:first-child {{display: none}}
  tr {{border-bottom: 1px solid #ccc; padding: .4em 0}}
  td {{border: none; padding: .1em 0}}
  td:first-child {{font-weight: bold}}
  td:nth-child(2)::before {{content: "graded: "}}
  td:nth-child(3)::before {{content: "points: "}}
  td:nth-child(4)::before {{content: "status: "}}
}}
</style></head>
<body><h1>{esc(fb['assignment'])}: {fb['score']:g} / {fb['max_score']:g} points</h1>
<p>Student: {esc(fb['student'])}. Parts {esc('; '.join(sums))}.
Points before the late penalty: {fb['raw_score']:g}; late penalty: {fb['late_penalty']:g};
total: {fb['score']:g} / {fb['max_score']:g}.</p>
{late}{pending}
<table><tr><th>part</th><th>graded</th><th>points</th><th>status</th><th>message and comments</th></tr>
{chr(10).join(rows)}
</table>
{extra}
</body></html>
"""


def _write_atomic(path: Path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def write_feedback(course: Course, assignment, students=None):
    """Write feedback/<student>/<assignment>/<notebook>.{html,json} from the gradebook.

    students: ids (default: every student with a submission). Returns the paths written."""
    written = []
    with warnings.catch_warnings(), course.gradebook() as gb:
        warnings.simplefilter("ignore")
        try:
            a = gb.find_assignment(assignment)
        except MissingEntry:
            raise FileNotFoundError(f"the gradebook has no assignment {assignment}") from None
        ids = sorted(s.student.id for s in a.submissions) if students is None else list(students)
        for student in ids:
            try:
                notebooks = notebook_feedback(gb, course, assignment, student)
            except MissingEntry:
                raise FileNotFoundError(f"the gradebook has no submission of {assignment} "
                                        f"by {student}") from None
            for fb in notebooks:
                folder = course.root / "feedback" / student / assignment
                _write_atomic(folder / f"{fb['notebook']}.json", json.dumps(fb, indent=1))
                _write_atomic(folder / f"{fb['notebook']}.html", render_html(fb))
                written.append(folder / f"{fb['notebook']}.html")
    return written


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
                verdict = f"lstmkit grade: {part['points']:g} / {part['max']:g}" + (
                    f" ({part_status(part)}): {part['message']}" if part["message"] else " (passed)")
                cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text=verdict + "\n")]
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
