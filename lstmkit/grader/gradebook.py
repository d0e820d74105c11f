"""Write the scores into nbgrader's gradebook (DIR/gradebook.db) like `nbgrader autograde` does.

The assignment, its notebook and its grade cells must already be in the gradebook: `nbgrader
generate_assignment <id>` puts them there (the instructor runs it to make the release version).
For every student the submission is created or updated, each auto-graded test cell gets its
auto_score, and each manually graded cell keeps its manual score and is marked as needing a grade.
"""

from __future__ import annotations

import warnings
from datetime import datetime
from pathlib import Path

from nbgrader.api import Gradebook, MissingEntry


class GradebookError(RuntimeError):
    pass


def db_url(course):
    return f"sqlite:///{Path(course).resolve() / 'gradebook.db'}"


def check_assignment(course, plan):
    """Raise GradebookError unless generate_assignment has stored this assignment's grade cells."""
    if not (Path(course) / "gradebook.db").exists():
        raise GradebookError(f"{course}/gradebook.db does not exist: run `nbgrader generate_assignment "
                             f"{plan.assignment}` in {course} first")
    with Gradebook(db_url(course)) as gb:
        try:
            nb = gb.find_notebook(plan.notebook, plan.assignment)
        except MissingEntry:
            raise GradebookError(f"the gradebook has no notebook {plan.notebook} in assignment "
                                 f"{plan.assignment}: run `nbgrader generate_assignment {plan.assignment}` "
                                 f"in {course} first") from None
        known = {c.name for c in nb.grade_cells}
    missing = [t.grade_id for t in plan.tests if t.grade_id not in known]
    if missing:
        raise GradebookError(f"the gradebook does not know the test cells {missing}: the source changed "
                             f"since `nbgrader generate_assignment {plan.assignment}`; run it again")


def _timestamp(folder):
    path = Path(folder) / "timestamp.txt"
    if path.exists():
        try:
            return datetime.fromisoformat(path.read_text().strip().replace(" UTC", "").replace("Z", ""))
        except ValueError:
            return None
    return None


def save_scores(course, plan, rows, submitted):
    """rows: results of grade_submission; submitted: student -> submission folder."""
    with warnings.catch_warnings(), Gradebook(db_url(course)) as gb:
        warnings.simplefilter("ignore")  # SQLAlchemy's autoflush notes from inside nbgrader's API
        for row in rows:
            student = row["student"]
            gb.update_or_create_student(student)
            kwargs = {}
            ts = _timestamp(submitted[student])
            if ts is not None:
                kwargs["timestamp"] = ts
            gb.update_or_create_submission(plan.assignment, student, **kwargs)
            nb = gb.find_submission_notebook(plan.notebook, plan.assignment, student)
            for grade in nb.grades:
                part = row["parts"].get(grade.name)
                if part is not None:
                    grade.auto_score = part["points"]
                    grade.needs_manual_grade = grade.manual_score is not None
                else:
                    grade.auto_score = None
                    grade.needs_manual_grade = True
            gb.db.commit()
