"""An instructor's term end to end, with the real nbgrader CLI: grade, hand-grade, regrade, feedback, late
work, the LMS.

One module fixture makes a gates course whose nbgrader_config.py names a custom late-penalty plugin
(one point per started day), sets the due date with `nbgrader db assignment add`, submits notebooks (on
time, late, wrong, blank), and copies the course to a twin that plain `nbgrader autograde` grades.
`lstmkit grade` grades every student; the test then hand-grades through nbgrader's Gradebook API (a
written answer with a comment, an override of an automatic part), changes two submissions and regrades
three students with `lstmkit grade --student`, and writes feedback with `lstmkit feedback`.
"""

import csv
import json
import shutil
import subprocess
import sys

import nbformat
import pytest
from grader_corpus import ROOT, cell, grade_cli, nbgrader, new_course, replace, submit
from nbgrader.api import Gradebook

from lstmkit.grader.grade import write_csv
from lstmkit.grader.plan import load_plan

DUE = "2026-01-01 00:00:00 UTC"
TIMESTAMPS = {"ontime": "2025-12-31 23:00:00.000000 UTC", "late": "2026-01-03 12:00:00.000000 UTC",
              "late_wrong": "2026-01-01 01:00:00.000000 UTC"}
PENALTY = {"ontime": 0, "late": 3, "late_wrong": 1}  # one point per started day late
LATE_POLICY = '''
import math
from nbgrader.plugins import LateSubmissionPlugin

class OnePointPerDay(LateSubmissionPlugin):
    """One point off per started day late."""

    def late_submission_penalty(self, student_id, score, total_seconds_late):
        return float(math.ceil(total_seconds_late / 86400))
'''
NEW_ANSWER = "The forget gate keeps c, so the cell remembers; I changed my mind about the input gate."
COMMENT = "Right: with f ~ 1 the cell state is carried over; say what i ~ 0 does to new input."
CANVAS = [
    ["Student", "ID", "SIS User ID", "SIS Login ID", "Section", "gates (4211)", "Current Score",
     "Final Score"],
    ["    Points Possible", "", "", "", "", "12.00", "(read only)", "(read only)"],
    ["Harriet, Honest", "101", "S101", "honest", "LSTM 1", "", "88", "88"],
    ["Larry, Late", "102", "S102", "late", "LSTM 1", "", "70", "70"],
    ["Wendy, Wrong", "103", "S103", "wrong", "LSTM 1", "", "", ""],
    ["Ed, Extra", "104", "S104", "extra", "LSTM 1", "", "", ""],
    ["Student, Test", "105", "", "", "LSTM 1", "", "", ""],
]
MOODLE = [
    ["First name", "Last name", "ID number", "Institution", "Department", "Email address",
     "Assignment: gates (Real)", "Course total (Real)", "Last downloaded from this course"],
    ["Olga", "Ontime", "", "Uni", "CS", "olga@uni.example", "-", "-", "1767000000"],
    ["Wendy", "Wrong", "wrong", "Uni", "CS", "wendy@uni.example", "-", "-", "1767000000"],
    ["Nina", "Nobody", "nobody", "Uni", "CS", "nina@uni.example", "-", "-", "1767000000"],
]


def lstmkit(*args):
    return subprocess.run([sys.executable, "-m", "lstmkit.cli", *args], cwd=ROOT, capture_output=True,
                          text=True)


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def write_rows(path, rows):
    with open(path, "w", newline="") as f:
        csv.writer(f).writerows(rows)


def source(course):
    return nbformat.read(course / "source" / "gates" / "gates.ipynb", 4)


def wrong(course):
    return replace(source(course), "cell_forward", "h = o * np.tanh(c)", "h = o * c")


def exported(course):
    r = nbgrader("export", "--to", "export.csv", cwd=course)
    assert r.returncode == 0, r.stdout + r.stderr
    return {e["student_id"]: e for e in read_csv(course / "export.csv")}


def grades(course, student):
    """cell -> (auto_score, manual_score, needs_manual_grade) and cell -> comment of a submission."""
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}", "lstmkit") as gb:
        nb = gb.find_submission_notebook("gates", "gates", student)
        return ({g.name: (g.auto_score, g.manual_score, g.needs_manual_grade) for g in nb.grades},
                {c.name: c.comment for c in nb.comments if c.comment})


@pytest.fixture(scope="module")
def term(tmp_path_factory):
    base = tmp_path_factory.mktemp("term")
    course = new_course(base / "course", assignments=("gates",))
    (course / "late_policy.py").write_text(LATE_POLICY)
    with open(course / "nbgrader_config.py", "a") as f:
        f.write('\nc.AssignLatePenalties.plugin_class = "late_policy.OnePointPerDay"\n')
    r = nbgrader("db", "assignment", "add", "gates", f"--duedate={DUE}", cwd=course)
    assert r.returncode == 0, r.stdout + r.stderr
    for student in ("honest", "edited", "ontime", "late"):
        submit(course, student, "gates", source(course))
    for student in ("wrong", "late_wrong"):
        submit(course, student, "gates", wrong(course))
    submit(course, "blank", "gates", nbformat.read(course / "release" / "gates" / "gates.ipynb", 4))
    for student, stamp in TIMESTAMPS.items():
        (course / "submitted" / student / "gates" / "timestamp.txt").write_text(stamp + "\n")

    # the twin: plain nbgrader autograde on the late and on-time submissions
    twin = base / "twin"
    shutil.copytree(course, twin, ignore=shutil.ignore_patterns("submitted"))
    for student in TIMESTAMPS:
        shutil.copytree(course / "submitted" / student, twin / "submitted" / student)
    r = nbgrader("autograde", "gates", cwd=twin)
    assert r.returncode == 0, r.stdout + r.stderr

    first = grade_cli(course, "gates", "--workers", "2", "--timeout", "20")
    assert first.returncode == 0, first.stdout + first.stderr
    csv_first = (course / "grades-gates.csv").read_text()
    flags_first = grades(course, "honest")[0]

    # hand grading, as formgrader does it, through nbgrader's API
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}", "lstmkit") as gb:
        for student, points in (("honest", 2), ("edited", 3)):
            g = gb.find_grade("answer_remember", "gates", "gates", student)
            g.manual_score, g.needs_manual_grade = points, False
        gb.find_comment("answer_remember", "gates", "gates", "honest").manual_comment = COMMENT
        g = gb.find_grade("test_cell_forward", "gates", "gates", "wrong")  # partial credit for h = o * c
        g.manual_score, g.needs_manual_grade = 1, False
        g = gb.find_grade("test_sigmoid", "gates", "gates", "honest")  # an override of a full score
        g.manual_score, g.needs_manual_grade = 2, False
        gb.update_or_create_student("ontime", email="olga@uni.example")
        gb.update_or_create_student("wrong", email="wendy@uni.example")
        gb.db.commit()

    # edited rewrites the written answer; wrong fixes cell_forward; honest changes nothing
    nb = source(course)
    cell(nb, "answer_remember").source = NEW_ANSWER
    nbformat.write(nb, course / "submitted" / "edited" / "gates" / "gates.ipynb")
    nbformat.write(source(course), course / "submitted" / "wrong" / "gates" / "gates.ipynb")
    again = grade_cli(course, "gates", "--student", "honest", "wrong", "edited", "--timeout", "20")
    assert again.returncode == 0, again.stdout + again.stderr
    return {"course": course, "twin": twin, "csv_first": csv_first, "flags_first": flags_first,
            "first": first, "again": again}


def test_regrading_some_students_keeps_the_other_rows(term):
    course = term["course"]
    before = {r["student"]: r for r in csv.DictReader(term["csv_first"].splitlines())}
    after = {r["student"]: r for r in read_csv(course / "grades-gates.csv")}
    assert sorted(after) == sorted(before) == ["blank", "edited", "honest", "late", "late_wrong", "ontime",
                                               "wrong"]
    for student in ("blank", "late", "late_wrong", "ontime", "honest", "edited"):
        assert after[student] == before[student], student
    assert (before["wrong"]["test_cell_forward"], before["wrong"]["total"]) == ("0", "6")
    assert (after["wrong"]["test_cell_forward"], after["wrong"]["total"]) == ("3", "9")
    # the run says it updated three rows of a file of seven, not that the file holds three students
    assert "updated the rows of 3 students in" in term["again"].stdout
    assert "(its other rows kept; 7 students in all)" in term["again"].stdout


def copy_course(term, tmp_path, late_policy=None):
    copy = tmp_path / "course"
    shutil.copytree(term["course"], copy)
    if late_policy is not None:
        (copy / "late_policy.py").write_text(late_policy)
    return copy


def test_a_broken_late_plugin_stops_the_run_before_grading(term, tmp_path):
    course = copy_course(term, tmp_path, LATE_POLICY.replace("import math\n", ""))  # math.ceil: NameError
    before = (course / "grades-gates.csv").read_text()
    r = grade_cli(course, "gates", "--timeout", "20")
    assert r.returncode == 2, r.stdout + r.stderr
    assert "late-penalty plugin late_policy.OnePointPerDay failed" in r.stderr, r.stderr
    assert "NameError: name 'math' is not defined; nothing was graded" in r.stderr
    assert "Traceback" not in r.stderr and "grading" not in r.stderr  # no progress bar: nothing ran
    assert (course / "grades-gates.csv").read_text() == before


def test_a_late_plugin_failing_for_one_student_keeps_the_csv(term, tmp_path):
    failing = LATE_POLICY.replace("        return float(", "        if student_id == 'late':\n"
                                  "            raise KeyError(student_id)\n        return float(")
    course = copy_course(term, tmp_path, failing)
    (course / "grades-gates.csv").unlink()
    r = grade_cli(course, "gates", "--student", "honest", "late", "--timeout", "20")
    assert r.returncode == 2, r.stdout + r.stderr
    assert "failed for late (216000 s late, score 9): KeyError: 'late'" in r.stderr, r.stderr
    assert "grades-gates.csv was written, the gradebook only in part" in r.stderr
    rows = {row["student"]: row for row in read_csv(course / "grades-gates.csv")}
    assert sorted(rows) == ["honest", "late"] and rows["late"]["total"] == "9"


def test_commands_run_from_inside_the_course_folder(term):
    """After `cd assignments` (step 1 of the README), the default --course is the current folder."""
    course = term["course"]
    r = subprocess.run([sys.executable, "-m", "lstmkit.cli", "feedback", "gates", "--student", "honest"],
                       cwd=course, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[-1] == "wrote the feedback of 1 submission (.html and .json)"


def test_a_failed_csv_write_leaves_the_old_file(term, tmp_path):
    path = tmp_path / "grades-gates.csv"
    path.write_text(term["csv_first"])
    plan = load_plan(term["course"], "gates")
    with pytest.raises(ValueError):  # a row with a column the CSV does not have fails mid-write
        write_csv(path, plan, [{"student": "zz", "total": 1.0, "bogus": 2}])
    assert path.read_text() == term["csv_first"]
    assert [p.name for p in tmp_path.iterdir()] == ["grades-gates.csv"]


def test_hand_grades_comments_and_flags_survive_a_regrade(term):
    course = term["course"]
    assert term["flags_first"]["answer_remember"] == (None, None, True)  # written answers wait for a grader
    assert term["flags_first"]["test_sigmoid"] == (2.0, None, False)
    honest, comments = grades(course, "honest")
    assert honest["answer_remember"] == (None, 2.0, False)  # unchanged text: not flagged again
    assert honest["test_sigmoid"] == (2.0, 2.0, False)  # override of an unchanged automatic score
    assert comments == {"answer_remember": COMMENT}
    edited, _ = grades(course, "edited")
    assert edited["answer_remember"] == (None, 3.0, True)  # new text: to be graded again, old score kept
    fixed, _ = grades(course, "wrong")
    assert fixed["test_cell_forward"] == (3.0, 1.0, True)  # the automatic score changed under an override
    blank, comments = grades(course, "blank")  # the answer as released: 0 and "No response.", as nbgrader
    assert blank["answer_remember"] == (0.0, None, False) and comments["answer_remember"] == "No response."


def test_feedback_shows_hand_points_comments_and_penalty(term):
    course = term["course"]
    for student in ("honest", "late"):
        (course / "feedback" / student / "gates" / "gates.json").unlink()
    out = lstmkit("feedback", "gates", "--course", str(course), "--student", "honest", "late")
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[-1] == "wrote the feedback of 2 submissions (.html and .json)"
    fb = json.loads((course / "feedback" / "honest" / "gates" / "gates.json").read_text())
    parts = {p["part"]: p for p in fb["parts"]}
    assert parts["answer_remember"]["kind"] == "by hand"
    assert (parts["answer_remember"]["points"], parts["answer_remember"]["max"]) == (2.0, 3.0)
    assert parts["answer_remember"]["comment"] == COMMENT
    assert (fb["raw_score"], fb["late_penalty"], fb["score"], fb["max_score"]) == (11.0, 0.0, 11.0, 12.0)
    page = (course / "feedback" / "honest" / "gates" / "gates.html").read_text()
    assert "11 / 12 points" in page and "2 / 3" in page and COMMENT.replace("'", "&#x27;") in page
    assert "<script" not in page and "http" not in page
    late = json.loads((course / "feedback" / "late" / "gates" / "gates.json").read_text())
    assert (late["raw_score"], late["late_penalty"], late["score"]) == (9.0, 3.0, 6.0)
    assert "Late penalty: 3 points" in (course / "feedback" / "late" / "gates" / "gates.html").read_text()
    edited = json.loads((course / "feedback" / "edited" / "gates" / "gates.json").read_text())
    assert not edited["complete"]
    assert {p["part"]: p["status"] for p in edited["parts"]}["answer_remember"] == "to be graded again"
    hidden = source(course)
    for c in hidden.cells:
        if "### BEGIN HIDDEN TESTS" in c.source:
            block = c.source.split("### BEGIN HIDDEN TESTS")[1].split("### END HIDDEN TESTS")[0]
            for line in filter(None, (x.strip() for x in block.splitlines())):
                assert line not in page and line not in json.dumps(fb), line


def test_late_penalty_is_the_one_nbgrader_autograde_gives(term):
    """Same submissions, same custom plugin: nbgrader export agrees after lstmkit grade and nbgrader
    autograde on the raw score, the penalty and the score."""
    ours, theirs = exported(term["course"]), exported(term["twin"])
    for student, penalty in PENALTY.items():
        for key in ("raw_score", "late_submission_penalty", "score", "max_score", "timestamp", "duedate"):
            assert ours[student][key] == theirs[student][key], (student, key, ours[student], theirs[student])
        assert float(ours[student]["late_submission_penalty"]) == penalty
    assert float(ours["late_wrong"]["raw_score"]) == 6 and float(ours["late_wrong"]["score"]) == 5
    # the run's summary says who was late and by how much, though the CSV's points are before the penalty
    assert ("late (penalty in the gradebook, not in the points above): late (2.5 days, -3), "
            "late_wrong (1.0 hours, -1)") in term["first"].stdout, term["first"].stdout
    # a submission without timestamp.txt is on time, as in nbgrader: said, since a due date is set
    assert ("no timestamp.txt (on time, unless the gradebook already holds a later time): blank, edited, "
            "honest, wrong"
            in term["first"].stdout)


def test_an_unreadable_submission_time_stops_the_run_before_grading(term, tmp_path):
    course = copy_course(term, tmp_path)
    stamp = course / "submitted" / "late" / "gates" / "timestamp.txt"
    stamp.write_text("the evening after the deadline\n")
    r = grade_cli(course, "gates", "--timeout", "20")
    assert r.returncode == 2, r.stdout + r.stderr
    assert "unreadable submission times, nothing was graded" in r.stderr
    assert f"{stamp}: 'the evening after the deadline' is not a time" in r.stderr, r.stderr


def test_canvas_file_is_filled_and_mismatches_reported(term, tmp_path):
    course = term["course"]
    write_rows(tmp_path / "canvas.csv", CANVAS)
    r = lstmkit("export", "gates", "--lms", "canvas", "--roster", str(tmp_path / "canvas.csv"),
                "-o", str(tmp_path / "filled.csv"), "--course", str(course))
    assert r.returncode == 0, r.stderr
    with open(tmp_path / "filled.csv", newline="") as f:
        filled = list(csv.reader(f))
    assert len(filled) == len(CANVAS) and filled[0] == CANVAS[0]
    assert filled[1] == ["    Points Possible", "", "", "", "", "12", "(read only)", "(read only)"]
    # honest 9 + 2 by hand; late 9 - 3; wrong 2 + 2 + 2 + 1 (the hand override wins, as in nbgrader)
    assert [row[5] for row in filled[2:]] == ["11", "6", "7", "", ""]
    for old, new in zip(CANVAS, filled, strict=True):
        assert old[:5] + old[6:] == new[:5] + new[6:]
    out = r.stdout
    assert "2 rows of the LMS file match no nbgrader student (left as they were): extra, S105" not in out
    assert "match no nbgrader student (left as they were): extra, 105" in out, out
    assert "have no row in the LMS file (not exported): blank, edited, late_wrong, ontime" in out
    # late's written answer was never graded, wrong's override waits for review: said, not hidden
    assert ("2 scores are provisional (parts still to grade or review in formgrader; export again when "
            "done): late (gates), wrong (gates)") in out, out


def test_export_warns_of_an_assignment_nobody_submitted(term, tmp_path):
    course = copy_course(term, tmp_path)
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}", "lstmkit") as gb:
        gb.update_or_create_assignment("bptt")
    write_rows(tmp_path / "canvas.csv", CANVAS)
    r = lstmkit("export", "gates", "bptt", "--lms", "canvas", "--roster", str(tmp_path / "canvas.csv"),
                "-o", str(tmp_path / "filled.csv"), "--course", str(course))
    assert r.returncode == 0, r.stderr
    assert "no submission at all of bptt in the gradebook (not graded yet?): every student gets 0" in r.stdout


def test_moodle_file_by_email_and_as_an_nbgrader_export_plugin(term, tmp_path):
    course = term["course"]
    write_rows(tmp_path / "moodle.csv", MOODLE)
    r = lstmkit("export", "gates", "--lms", "moodle", "--roster", str(tmp_path / "moodle.csv"),
                "-o", str(tmp_path / "filled.csv"), "--course", str(course))
    assert r.returncode == 0, r.stderr
    with open(tmp_path / "filled.csv", newline="") as f:
        filled = list(csv.reader(f))
    assert filled[0] == MOODLE[0] and len(filled) == len(MOODLE)
    assert [row[6] for row in filled[1:]] == ["9", "7", "-"]
    assert [row[:6] + row[7:] for row in filled] == [row[:6] + row[7:] for row in MOODLE]
    assert "match no nbgrader student (left as they were): nobody" in r.stdout
    assert "have no row in the LMS file (not exported): blank, edited, honest, late, late_wrong" in r.stdout
    plugin = nbgrader("export", "--exporter=lstmkit.grader.lms.MoodleExportPlugin", "--to=plugin.csv",
                      f"--LmsExportPlugin.roster={tmp_path / 'moodle.csv'}", "--assignment=gates",
                      cwd=course)
    assert plugin.returncode == 0, plugin.stdout + plugin.stderr
    assert (course / "plugin.csv").read_text() == (tmp_path / "filled.csv").read_text()
    assert "nobody" in plugin.stderr
    bare = nbgrader("export", "--exporter=lstmkit.grader.lms.CanvasExportPlugin", "--to=plugin.csv",
                    cwd=course)
    assert bare.returncode == 1 and "Traceback" not in bare.stderr, bare.stderr
    assert "set --LmsExportPlugin.roster=<the gradebook file downloaded from the LMS>" in bare.stderr
