"""Write the scores into nbgrader's gradebook like `nbgrader autograde` does, without losing hand grading.

The gradebook is the one the course's nbgrader_config.py names (course.py). The assignment, its
notebook and its grade cells must already be in it: `nbgrader generate_assignment <id>` puts them
there. For every student graded:

- the submission is created or updated, with the timestamp of submitted/<student>/<id>/timestamp.txt;
- each automatic part gets its auto_score. A hand-given score that overrides it is kept, and is
  flagged for review (needs_manual_grade) only when the automatic score changed;
- each part graded by hand (a written answer) keeps its manual score and comments, and is flagged
  for grading again only when its text changed since the last run (nbgrader's autograde flags it
  every time). An answer left as released scores 0 with the comment "No response.", as in nbgrader's
  autograde (the same checksum of the release's cell). The sha256 of each answer's text and each
  part's message are kept in a side table, `lstmkit_part`, in the same database;
- the late penalty is computed by the late-submission plugin nbgrader is configured with and stored
  in the notebook's late_submission_penalty, as nbgrader's AssignLatePenalties does.
"""

from __future__ import annotations

import hashlib
import warnings
from pathlib import Path

import nbformat
from nbgrader.api import MissingEntry
from sqlalchemy import Column, MetaData, String, Table, Text, and_, delete, insert, select

from .course import Course, late_penalty
from .submission import part_status

METADATA = MetaData()
PARTS = Table(
    "lstmkit_part", METADATA,
    Column("course", String(128), primary_key=True),
    Column("assignment", String(128), primary_key=True),
    Column("student", String(128), primary_key=True),
    Column("notebook", String(128), primary_key=True),
    Column("cell", String(128), primary_key=True),
    Column("checksum", String(64)),  # sha256 of a hand-graded answer's text when it was last graded
    Column("status", String(16)),  # automatic parts: the grader's status (submission.part_status), message
    Column("message", Text),
)


class GradebookError(RuntimeError):
    pass


def check_assignment(course: Course, plan):
    """Raise GradebookError unless generate_assignment has stored this assignment's grade cells."""
    hint = f"run `nbgrader generate_assignment {plan.assignment}` in {course.root} first"
    if course.sqlite_path is not None and not course.sqlite_path.exists():
        raise GradebookError(f"{course.sqlite_path} does not exist: {hint}")
    with warnings.catch_warnings(), course.gradebook() as gb:
        warnings.simplefilter("ignore")
        try:
            nb = gb.find_notebook(plan.notebook, plan.assignment)
        except MissingEntry:
            raise GradebookError(f"the gradebook ({_safe_url(course.db_url)}) has no notebook "
                                 f"{plan.notebook} in assignment {plan.assignment}: {hint}") from None
        known = {c.name for c in nb.grade_cells}
    missing = [t.grade_id for t in plan.tests if t.grade_id not in known]
    if missing:
        raise GradebookError(f"the gradebook does not know the test cells {missing}: the source changed "
                             f"since `nbgrader generate_assignment {plan.assignment}`; run it again")


def timestamp_problems(folders):
    """(students without timestamp.txt, {student: message} of those whose timestamp.txt is not a time)."""
    from nbgrader.utils import parse_utc

    missing, unreadable = [], {}
    for student, folder in folders.items():
        path = Path(folder) / "timestamp.txt"
        text = path.read_text(errors="replace").strip() if path.exists() else ""
        if not text:
            missing.append(student)
            continue
        try:
            parse_utc(text)
        except (ValueError, OverflowError):
            unreadable[student] = f"{path}: {text[:60]!r} is not a time (write e.g. 2026-10-17 09:30:00 UTC)"
    return missing, unreadable


def due_date(course: Course, assignment):
    """The assignment's due date in the gradebook (None: none set)."""
    with warnings.catch_warnings(), course.gradebook() as gb:
        warnings.simplefilter("ignore")
        try:
            return gb.find_assignment(assignment).duedate
        except MissingEntry:
            return None


def _safe_url(url):
    """A database URL without its password."""
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        creds, host = rest.rsplit("@", 1)
        return f"{scheme}://{creds.split(':')[0]}:***@{host}"
    return url


def _timestamp(folder):
    """The submission time as nbgrader reads it (timestamp.txt, parsed with nbgrader's parse_utc)."""
    from nbgrader.utils import parse_utc

    path = Path(folder) / "timestamp.txt"
    if path.exists() and path.read_text().strip():
        try:
            return parse_utc(path.read_text().strip())
        except ValueError:
            return None
    return None


def checksum(text):
    return hashlib.sha256(text.encode()).hexdigest()


def answer_texts(notebook_text):
    """grade_id -> source of every cell of the student's notebook (first occurrence)."""
    try:
        nb = nbformat.reads(notebook_text, as_version=4)
    except Exception:  # noqa: BLE001 - an unreadable notebook has no answers
        return {}
    out = {}
    for cell in nb.cells:
        gid = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")
        if gid and gid not in out:
            out[gid] = cell.source
    return out


def _no_response(master, name, text):
    """Whether the student's cell `name` is still the released one (nbgrader's checksum comparison)."""
    from nbgrader.utils import compute_checksum

    src = master["source"].get(name)
    if text is None or src is None or not src.checksum:
        return False
    grade = master["grade"].get(name)
    meta = {"grade_id": name, "grade": grade is not None, "solution": name in master["solution"],
            "locked": bool(src.locked)}
    if grade is not None:
        meta["points"] = float(grade.max_score)
    new = nbformat.v4.new_markdown_cell if src.cell_type == "markdown" else nbformat.v4.new_code_cell
    cell = new(text, metadata={"nbgrader": meta})
    return compute_checksum(cell) == src.checksum


def side_rows(gb, course_id, assignment, student, notebook):
    """cell -> row of the side table for one submitted notebook."""
    METADATA.create_all(gb.engine)
    rows = gb.db.execute(select(PARTS).where(and_(
        PARTS.c.course == course_id, PARTS.c.assignment == assignment, PARTS.c.student == student,
        PARTS.c.notebook == notebook))).mappings().all()
    return {r["cell"]: dict(r) for r in rows}


def _save_one(gb, course, plan, result, folder, text):
    student = result["student"]
    gb.update_or_create_student(student)
    ts = _timestamp(folder)
    kwargs = {"timestamp": ts} if ts is not None else {}
    gb.update_or_create_submission(plan.assignment, student, **kwargs)
    nb = gb.find_submission_notebook(plan.notebook, plan.assignment, student)
    old = side_rows(gb, course.course_id, plan.assignment, student, plan.notebook)
    answers = answer_texts(text)
    master = {"source": {c.name: c for c in nb.notebook.source_cells},
              "grade": {c.name: c for c in nb.notebook.grade_cells},
              "solution": {c.name for c in nb.notebook.solution_cells}}
    new_rows = []
    for grade in nb.grades:
        part = result["parts"].get(grade.name)
        key = dict(course=course.course_id, assignment=plan.assignment, student=student,
                   notebook=plan.notebook, cell=grade.name)
        if part is not None:
            changed = grade.auto_score is None or float(grade.auto_score) != float(part["points"])
            grade.auto_score = part["points"]
            if grade.manual_score is None:
                grade.needs_manual_grade = False
            elif changed:
                grade.needs_manual_grade = True  # a hand override of a score that just changed: review it
            new_rows.append(dict(key, checksum=None, status=part_status(part), message=part["message"]))
        else:
            digest = checksum(answers.get(grade.name, ""))
            before = old.get(grade.name, {}).get("checksum")
            grade.auto_score = 0.0 if _no_response(master, grade.name, answers.get(grade.name)) else None
            if grade.manual_score is None:
                grade.needs_manual_grade = grade.auto_score is None
            elif before is not None and before != digest:
                grade.needs_manual_grade = True
            new_rows.append(dict(key, checksum=digest, status=None, message=None))
    for comment in nb.comments:
        blank = _no_response(master, comment.name, answers.get(comment.name))
        comment.auto_comment = "No response." if blank else None
    gb.db.execute(delete(PARTS).where(and_(
        PARTS.c.course == course.course_id, PARTS.c.assignment == plan.assignment,
        PARTS.c.student == student, PARTS.c.notebook == plan.notebook)))
    gb.db.execute(insert(PARTS), new_rows)
    gb.db.commit()
    # the late penalty from the score just stored, as nbgrader's AssignLatePenalties computes it
    gb.db.expire_all()
    submission = gb.find_submission(plan.assignment, student)
    nb = gb.find_submission_notebook(plan.notebook, plan.assignment, student)
    nb.late_submission_penalty = late_penalty(course, student, nb.score, submission.total_seconds_late)
    gb.db.commit()
    return float(submission.total_seconds_late or 0), nb.late_submission_penalty


def save_scores(course: Course, plan, results, submitted, texts):
    """results: grade_submission's; submitted: student -> submission folder; texts: student -> notebook.

    Returns {student: (seconds late, penalty or None)} of the late submissions."""
    late = {}
    with warnings.catch_warnings(), course.gradebook() as gb:
        warnings.simplefilter("ignore")  # SQLAlchemy's autoflush notes from inside nbgrader's API
        METADATA.create_all(gb.engine)
        for result in results:
            seconds, penalty = _save_one(gb, course, plan, result, submitted[result["student"]],
                                         texts[result["student"]])
            if seconds > 0:
                late[result["student"]] = (seconds, penalty)
    return late
