"""`lstmkit grade` on the adversarial corpus (tests/grader_corpus.py), from the outside: the CLI only.

One session fixture builds a course copy with every case as a student, grades each assignment with one
`python -m lstmkit.cli grade` call, grades gates and bptt a second time (the CSV must not change), runs
`nbgrader export`, and records what the cheats could have touched (course files, the gradebook, a TCP
listener on 127.0.0.1, a marker file, leftover processes). The tests then compare every case's CSV row
with its expectation. One more fixture shows why the grader exists: plain `nbgrader autograde` gives
full marks to cheats that implement nothing or the wrong thing.
"""

import csv
import hashlib
import io
import os
import shutil
import signal
import sqlite3
from pathlib import Path

import nbformat
import pytest
from grader_corpus import (
    ASSIGNMENTS,
    CASES,
    MANUAL_POINTS,
    POINTS,
    Context,
    Listener,
    grade_cli,
    nbgrader,
    new_course,
    orphans,
    submit,
    submit_cases,
)
from nbgrader.api import Gradebook

ARGS = {  # the per-submission limits; the honest pytorch solution trains for ~600 Adam steps
    "gates": ["--workers", "2", "--timeout", "15", "--call-timeout", "3", "--memory", "1024"],
    "bptt": ["--workers", "2", "--timeout", "15", "--call-timeout", "3", "--memory", "1024"],
    "pytorch": ["--workers", "2", "--timeout", "300", "--memory", "2048"],  # head-room on a loaded machine
    "sequences": ["--workers", "2", "--timeout", "300", "--memory", "2048"],  # honest: trains 2 models
}
TWICE = ("gates", "bptt")  # graded a second time for the determinism check
# what the grader writes: its CSVs, autograded/, feedback/, the gradebook (and files named gradebook.db-*)
GRADER_OUTPUTS = ("grades-", "autograded", "feedback", "gradebook.db")
# Tables of the gradebook that only the instructor's nbgrader commands write (the grader adds students,
# submissions and grades, and must leave these alone).
FIXED_TABLES = ("course", "assignment", "notebook", "base_cell", "grade_cells", "solution_cells",
                "source_cell", "task_cells", "alembic_version")


def tree_hash(course):
    """path -> sha256 of every course file except what the grader writes."""
    out = {}
    for path in sorted(Path(course).rglob("*")):
        rel = path.relative_to(course).as_posix()
        if path.is_file() and not rel.startswith(GRADER_OUTPUTS):
            out[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def fixed_tables(course):
    db = sqlite3.connect(f"file:{course / 'gradebook.db'}?mode=ro", uri=True)
    try:
        return {t: sorted(db.execute(f"SELECT * FROM {t}").fetchall(), key=repr) for t in FIXED_TABLES}
    finally:
        db.close()


def read_csv(text):
    return {row["student"]: row for row in csv.DictReader(io.StringIO(text))}


@pytest.fixture(scope="session")
def corpus(tmp_path_factory):
    base = tmp_path_factory.mktemp("adversarial")
    course = new_course(base / "course")
    pristine = base / "pristine"  # the course before any submission, for the plain-nbgrader demo
    shutil.copytree(course, pristine)
    marks = base / "marks"
    marks.mkdir()
    listener = Listener()
    try:
        submit_cases(Context(course, listener.port, marks, listener.unix), CASES)
        before, before_db = tree_hash(course), fixed_tables(course)
        runs, csvs, second = {}, {}, {}
        for a in ASSIGNMENTS:
            runs[a] = grade_cli(course, a, *ARGS[a])
            assert runs[a].returncode == 0, runs[a].stdout + runs[a].stderr
            csvs[a] = (course / f"grades-{a}.csv").read_text()
        for a in TWICE:
            r = grade_cli(course, a, *ARGS[a])
            assert r.returncode == 0, r.stdout + r.stderr
            second[a] = (course / f"grades-{a}.csv").read_text()
        after, after_db = tree_hash(course), fixed_tables(course)
        export = nbgrader("export", cwd=course)
        assert export.returncode == 0, export.stdout + export.stderr
        left = orphans()
    finally:
        listener.close()
        for pid in orphans():  # processes the orphan_process case started, if the grader let them live
            os.kill(pid, signal.SIGKILL)
    yield dict(course=course, pristine=pristine, marks=marks, runs=runs, csvs=csvs, second=second,
               before=before, after=after, before_db=before_db, after_db=after_db,
               export=(course / "grades.csv").read_text(), connections=listener.connections, orphans=left)


def row_of(corpus, case):
    rows = read_csv(corpus["csvs"][case.assignment])
    assert case.name in rows, f"{case.name} missing from grades-{case.assignment}.csv"
    return rows[case.name]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_case_gets_expected_points_status_and_reason(corpus, case):
    row = row_of(corpus, case)
    got = {g: float(row[g]) for g in POINTS[case.assignment]}
    assert got == {g: float(p) for g, p in case.points.items()}, (case.doc, row)
    assert float(row["total"]) == sum(case.points.values()), row
    assert float(row["max"]) == sum(POINTS[case.assignment].values()), row
    assert row["status"] == case.status, (case.doc, row)
    for text in case.reason:
        assert text in row["reason"], (text, row)
    for grade_id, points in case.points.items():  # every part that lost points says why
        if points < POINTS[case.assignment][grade_id]:
            assert f"{grade_id}:" in row["reason"], (grade_id, row)
            assert row[f"{grade_id}:reason"] and row[f"{grade_id}:reason"] in row["reason"], (grade_id, row)
        # and its status is not ok: failed (wrong answers), or what stopped it
        assert (row[f"{grade_id}:status"] == "ok") == (points == POINTS[case.assignment][grade_id]), \
            (grade_id, row)
    if case.status == "ok" and case.points == POINTS[case.assignment]:
        assert row["reason"] == "", row


def test_a_hang_in_an_earlier_function_is_charged_to_its_part_only(corpus):
    row = read_csv(corpus["csvs"]["bptt"])["cell_backward_never_returns"]
    assert (row["test_cell_backward:status"], row["test_backward:status"]) == ("timeout", "ok")
    assert row["test_backward:reason"].startswith(
        "your cell_backward did not finish within the time limit of one call in an earlier part; passes with "
        "the grader's cell_backward in place of yours"), row


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_csv_has_the_source_columns_and_one_row_per_submission(corpus, assignment):
    text = corpus["csvs"][assignment]
    header = next(csv.reader(io.StringIO(text)))
    per_part = [c for p in POINTS[assignment] for c in (p, f"{p}:status", f"{p}:reason")]
    assert header == ["student", *per_part, "total", "max", "status", "reason"]
    expected = sorted(c.name for c in CASES if c.assignment == assignment)
    assert list(read_csv(text)) == expected  # sorted by student, nothing added (e.g. test_bonus)


@pytest.mark.parametrize("assignment", TWICE)
def test_grading_twice_gives_the_same_csv(corpus, assignment):
    assert corpus["second"][assignment] == corpus["csvs"][assignment]


def test_course_files_are_untouched(corpus):
    before, after = corpus["before"], corpus["after"]
    changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
    assert changed == [], changed


def test_gradebook_keeps_the_instructor_tables_and_no_planted_student(corpus):
    assert corpus["after_db"] == corpus["before_db"]
    with Gradebook(f"sqlite:///{corpus['course'] / 'gradebook.db'}", course_id="lstmkit") as gb:
        students = {s.id for s in gb.students}
    assert "planted_by_cheat" not in students
    assert {c.name for c in CASES} <= students


def test_no_side_effect_escaped_the_sandbox(corpus):
    assert corpus["connections"] == [], "a submission reached the listener (127.0.0.1 or Unix socket)"
    assert list(corpus["marks"].iterdir()) == [], "the trusted process unpickled a submission's output"
    assert corpus["orphans"] == [], "a process started by a submission outlived the grading"


def hidden_lines(assignment):
    """The stripped lines between BEGIN/END HIDDEN TESTS in the source notebook's test cells."""
    nb = nbformat.read(corpus_source(assignment), 4)
    lines = set()
    for c in nb.cells:
        if "### BEGIN HIDDEN TESTS" in c.source:
            hidden = c.source.split("### BEGIN HIDDEN TESTS")[1].split("### END HIDDEN TESTS")[0]
            lines |= {line.strip() for line in hidden.splitlines() if line.strip()}
    return lines


def corpus_source(assignment):
    return Path(__file__).resolve().parents[1] / "assignments" / "source" / assignment / f"{assignment}.ipynb"


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_feedback_exists_and_has_no_hidden_test_line(corpus, assignment):
    lines = hidden_lines(assignment)
    assert lines
    for case in (c for c in CASES if c.assignment == assignment):
        folder = corpus["course"] / "feedback" / case.name / assignment
        files = [p for p in folder.rglob("*") if p.is_file()]
        assert any(p.suffix == ".html" for p in files), (case.name, files)
        for path in files:
            text = path.read_text(errors="replace")
            leaked = [line for line in lines if line in text]
            assert leaked == [], (path, leaked)
        autograded = corpus["course"] / "autograded" / case.name / assignment / f"{assignment}.ipynb"
        nbformat.validate(nbformat.read(autograded, 4))


def test_nbgrader_export_agrees_with_the_csv(corpus):
    export = list(csv.DictReader(io.StringIO(corpus["export"])))
    by_key = {(r["assignment"], r["student_id"]): r for r in export}
    for assignment in ASSIGNMENTS:  # the gradebook holds the last run's scores
        latest = corpus["second"].get(assignment, corpus["csvs"][assignment])
        for student, row in read_csv(latest).items():
            e = by_key[(assignment, student)]
            assert float(e["score"]) == float(row["total"]), (assignment, student, e, row)
            assert float(e["max_score"]) == float(row["max"]) + MANUAL_POINTS[assignment], (e, row)


# ----------------------------------------------------------------------------- why lstmkit grade exists


@pytest.fixture(scope="session")
def plain_nbgrader(corpus, demo_dir):
    """Plain `nbgrader autograde` on the cheats tagged nbgrader_full_marks, in a copy of the pristine
    course: grade_id -> auto score per cheat."""
    course = demo_dir / "course"
    shutil.copytree(corpus["pristine"], course)
    cheats = [c for c in CASES if "nbgrader_full_marks" in c.tags]
    ctx = Context(course, 0, demo_dir)
    for c in cheats:
        submit(course, c.name, c.assignment, c.build(ctx))
    r = nbgrader("autograde", "gates", "--force", cwd=course)
    assert r.returncode == 0, r.stdout + r.stderr
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}", course_id="lstmkit") as gb:
        scores = {}
        for c in cheats:
            grades = gb.find_submission_notebook("gates", "gates", c.name).grades
            scores[c.name] = {g.name: g.auto_score for g in grades if g.name in POINTS["gates"]}
        return scores


@pytest.fixture(scope="session")
def demo_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("plain_nbgrader")


def test_plain_nbgrader_gives_cheats_full_marks_and_lstmkit_does_not(corpus, plain_nbgrader):
    assert len(plain_nbgrader) >= 2
    for name, scores in plain_nbgrader.items():
        assert scores == {g: float(p) for g, p in POINTS["gates"].items()}, (name, scores)
        row = read_csv(corpus["csvs"]["gates"])[name]
        assert float(row["total"]) < float(row["max"]), row
