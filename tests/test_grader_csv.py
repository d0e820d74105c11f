"""The grader's CSV and feedback per part, on plain data (no sandbox, no nbgrader run): the status of a
part, a regrade that merges into a CSV written before the per-part columns existed, the status column
of the feedback page. The real runs are in test_grader.py and test_grader_instructor.py."""

import csv
from pathlib import Path

import pytest

from lstmkit.grader.feedback import render_html
from lstmkit.grader.grade import csv_columns, csv_row, write_csv
from lstmkit.grader.plan import plan_from_notebook
from lstmkit.grader.submission import part_status

ROOT = Path(__file__).resolve().parents[1]
PARTS = ["test_sigmoid", "test_gate_preactivations", "test_gate_activations", "test_cell_forward"]


@pytest.fixture(scope="module")
def plan():
    text = (ROOT / "assignments" / "source" / "gates" / "gates.ipynb").read_text()
    return plan_from_notebook(text, "gates", "gates")


def part(points, status="ok", message="", ran=True, top=2.0):
    return {"points": points, "max": top, "status": status, "message": message,
            "calls": [{"status": "pass" if status == "ok" else status, "ran": ran}]}


@pytest.mark.parametrize(("args", "expected"), [
    ((2.0,), "ok"),
    ((1.0, "ok", "h looks like o * c"), "failed"),  # wrong answers: the part's status used to stay ok
    ((0.0, "timeout", "did not finish"), "timeout"),
    ((0.0, "error", "NotImplementedError"), "error"),
    ((0.0, "flagged", "comes from the reference"), "flagged"),
    ((0.0, "timeout", "did not finish while running cell train", False), "not-run"),
])
def test_part_status(args, expected):
    assert part_status(part(*args)) == expected


def result(student, points, statuses, messages):
    parts = {p: {**part(pts, st, msg), "max": top}
             for p, pts, st, msg, top in zip(PARTS, points, statuses, messages, (2, 2, 2, 3), strict=True)}
    return {"student": student, "parts": parts, "total": sum(points), "max": 9.0, "status": "timeout",
            "reason": "; ".join(f"{p}: {m}" for p, m in zip(PARTS, messages, strict=True) if m)}


def test_csv_row_has_points_status_and_reason_per_part(plan):
    row = csv_row(plan, result("ann", [0.0, 2.0, 2.0, 3.0], ["timeout", "ok", "ok", "ok"],
                               ["did not finish", "", "", "passes with the grader's sigmoid"]))
    assert list(row) == csv_columns(plan)
    assert csv_columns(plan)[:4] == ["student", "test_sigmoid", "test_sigmoid:status", "test_sigmoid:reason"]
    assert (row["test_sigmoid"], row["test_sigmoid:status"], row["test_sigmoid:reason"]) == \
        (0.0, "timeout", "did not finish")
    assert (row["test_cell_forward:status"], row["test_cell_forward:reason"]) == \
        ("ok", "passes with the grader's sigmoid")


def test_a_regrade_merges_into_a_csv_without_the_per_part_columns(plan, tmp_path):
    path = tmp_path / "grades-gates.csv"
    old = [["student", *PARTS, "total", "max", "status", "reason"],
           ["bob", "2", "2", "2", "0", "6", "9", "ok", "test_cell_forward: h looks like o * c"],
           ["cat", "0", "0", "0", "0", "0", "9", "error", "test_sigmoid: NotImplementedError"]]
    with open(path, "w", newline="") as f:
        csv.writer(f).writerows(old)
    new = csv_row(plan, result("cat", [2.0, 2.0, 2.0, 0.0], ["ok", "ok", "ok", "failed"],
                               ["", "", "", "h looks like o * c"]))
    merged = write_csv(path, plan, [new])
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    assert next(csv.reader(path.open())) == csv_columns(plan)
    assert [r["student"] for r in rows] == ["bob", "cat"] and [r["student"] for r in merged] == ["bob", "cat"]
    bob, cat = rows
    # the kept row: its points, total and reason as they were; its new columns empty (not graded since)
    assert [bob[p] for p in PARTS] == ["2", "2", "2", "0"]
    assert (bob["total"], bob["status"]) == ("6", "ok")
    assert bob["reason"] == "test_cell_forward: h looks like o * c"
    assert [bob[f"{p}:status"] for p in PARTS] == [""] * 4
    assert [cat[f"{p}:status"] for p in PARTS] == ["ok", "ok", "ok", "failed"]
    assert cat["test_cell_forward:reason"] == "h looks like o * c" and cat["total"] == "6"


def test_feedback_page_has_a_status_per_part():
    fb = {"student": "ann", "assignment": "gates", "notebook": "gates", "submitted": None, "due": None,
          "seconds_late": 0.0, "comments": [], "raw_score": 7.0, "late_penalty": 0.0, "score": 7.0,
          "max_score": 12.0, "complete": False,
          "parts": [{"part": "test_sigmoid", "kind": "automatic", "points": 0.0, "max": 2.0, "graded": True,
                     "pending": False, "message": "did not finish", "status": "timeout", "comment": ""},
                    {"part": "test_cell_forward", "kind": "automatic", "points": 3.0, "max": 3.0,
                     "graded": True, "pending": False, "message": "", "status": "ok", "comment": ""},
                    {"part": "answer_remember", "kind": "by hand", "points": None, "max": 3.0,
                     "graded": False, "pending": True, "message": "", "status": "not graded yet",
                     "comment": ""}]}
    page = render_html(fb)
    assert "<th>status</th>" in page
    assert "<td>timeout</td><td>did not finish</td>" in page
    assert "<td>ok</td><td>passed</td>" in page
    assert "<td>- / 3</td><td>not graded yet</td>" in page


def test_feedback_page_fits_a_phone(tmp_path, page_width):
    """At 390 px every column (points, status, message, comment) is on screen, not off to the right."""
    message = "h looks like o * c: the new hidden state is h = o * tanh(c) (visible test, B = 1)"
    fb = {"student": "ann", "assignment": "gates", "notebook": "gates", "submitted": "2026-10-18T09:30:00",
          "due": "2026-10-16T22:00:00", "seconds_late": 127800.0, "comments": [], "raw_score": 6.0,
          "late_penalty": 1.2, "score": 4.8, "max_score": 12.0, "complete": True,
          "parts": [{"part": "test_gate_preactivations", "kind": "automatic", "points": 0.0, "max": 3.0,
                     "graded": True, "pending": False, "message": message, "status": "failed", "comment": ""},
                    {"part": "answer_remember", "kind": "by hand", "points": 2.0, "max": 3.0, "graded": True,
                     "pending": False, "message": "", "status": "", "comment": "Say why dc_t/dc_{t-1} = f."}]}
    (tmp_path / "fb.html").write_text(render_html(fb))
    width, text = page_width(tmp_path / "fb.html", 390)
    assert width <= 390, width
    assert message in text and "Say why dc_t/dc_{t-1} = f." in text
    assert "Submitted 2026-10-18 09:30 UTC, due 2026-10-16 22:00 UTC: 35.5 hours late." in text
