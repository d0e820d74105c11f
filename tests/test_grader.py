"""The trusted grader (`lstmkit grade`, `lstmkit check`) end to end on a temporary copy of the course.

One fixture copies assignments/, runs `nbgrader generate_assignment` for gates and bptt (the
gradebook needs their grade cells), submits real notebooks (the source solutions, the untouched
release stubs, a wrong answer, an endless loop, a probe of the sandbox) and grades each assignment
with the real CLI; the tests read the CSV, the gradebook (through `nbgrader export`), the feedback
and the autograded notebooks.
"""

import csv
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
GATES_PARTS = ["test_sigmoid", "test_gate_preactivations", "test_gate_activations", "test_cell_forward"]

# Runs inside the sandbox, at the top of the student's sigmoid cell: every isolation property that
# fails is named in the AssertionError that the sigmoid check then reports.
PROBE = '''
import os, socket
probes = []
for path in ("/lstmkit-probe.txt", "/var/tmp/lstmkit-probe.txt", os.path.expanduser("~root/lstmkit-probe")):
    try:
        with open(path, "w") as f:
            f.write("x")
        probes.append(f"could write {path}")
    except OSError:
        pass
for path in ("COURSE", "PACKAGE"):
    if os.path.exists(path) and os.listdir(path):
        probes.append(f"could list {path}")
import sys
prefix = os.path.realpath(sys.prefix)   # a venv in a hidden folder is bound back, alone and read-only
for hidden, own in (("/tmp", ["work"]), ("CHECKOUT", [])):
    parts = os.path.relpath(prefix, hidden).split("/") if prefix.startswith(hidden + "/") else []
    for depth in range(max(len(parts), 1)):   # each folder on the way shows only the next one
        folder = os.path.join(hidden, *parts[:depth])
        seen = sorted(os.listdir(folder)) if os.path.isdir(folder) else own
        expected = sorted(own + parts[depth:depth + 1]) if depth == 0 else [parts[depth]]
        if seen != expected:
            probes.append(f"{folder} shows {seen[:5]}")
for path in ("CHECKOUT/.git/HEAD", "CHECKOUT/README.md"):
    try:
        open(path).close()
        probes.append(f"could read {path}")
    except OSError:
        pass
try:
    open(os.path.join(prefix, "lstmkit-probe"), "w").close()
    probes.append("could write into the Python environment")
except OSError:
    pass
if [name for _, name in socket.if_nameindex()] != ["lo"]:
    probes.append(f"network interfaces {socket.if_nameindex()}")
if len([p for p in os.listdir("/proc") if p.isdigit()]) > 5:
    probes.append("sees other processes")
with open("/proc/self/status") as f:   # bubblewrap's work: no capability, no_new_privs, the seccomp filter
    status = dict(line.split(":", 1) for line in f)
for key, expected in (("CapEff", 0), ("CapPrm", 0), ("CapBnd", 0), ("NoNewPrivs", 1), ("Seccomp", 2)):
    if int(status[key], 16) != expected:
        probes.append(f"{key} is {status[key].strip()}")
import ctypes   # through libc: the audit hook would flag socket.socket
libc = ctypes.CDLL(None, use_errno=True)
if libc.socket(1, 1, 0) >= 0 or ctypes.get_errno() != 1:   # AF_UNIX, SOCK_STREAM: EPERM
    probes.append("could make a Unix socket")
for path in ("/dev/shm/lstmkit-probe", "/tmp/lstmkit-probe"):
    try:
        open(path, "w").close()
        if path.startswith("/dev"):
            probes.append(f"could write {path}")
    except OSError:
        if path.startswith("/tmp"):
            probes.append(f"could not write {path}")
if os.statvfs("/tmp").f_blocks * os.statvfs("/tmp").f_frsize > 64 * 2**20:
    probes.append("/tmp is larger than the limit")
'''


def run(*args, cwd=None):
    # nbgrader runs `alembic` from PATH: put the venv's bin first.
    env = dict(os.environ, PATH=os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]]))
    return subprocess.run([sys.executable, "-m", *args], cwd=cwd, env=env, capture_output=True, text=True)


def edited(course, assignment, student, grade_id=None, old=None, new=None, prepend=None):
    """Submit the source notebook with one solution cell edited."""
    nb = nbformat.read(course / "source" / assignment / f"{assignment}.ipynb", 4)
    cells = [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == grade_id]
    if grade_id:
        assert len(cells) == 1
        if old is not None:
            assert old in cells[0].source
            cells[0].source = cells[0].source.replace(old, new)
        if prepend:
            cells[0].source = prepend + "\n" + cells[0].source
    submit(course, assignment, student, nb)


def submit(course, assignment, student, nb):
    folder = course / "submitted" / student / assignment
    folder.mkdir(parents=True)
    nbformat.write(nb, folder / f"{assignment}.ipynb")


def read_csv(path):
    with open(path) as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    course = tmp_path_factory.mktemp("graded") / "course"
    course.mkdir()
    shutil.copytree(ROOT / "assignments" / "source", course / "source")
    shutil.copy(ROOT / "assignments" / "nbgrader_config.py", course)
    for a in ("gates", "bptt"):
        r = run("nbgrader", "generate_assignment", a, "--force", cwd=course)
        assert r.returncode == 0, r.stdout + r.stderr
        edited(course, a, "honest")
        submit(course, a, "blank", nbformat.read(course / "release" / a / f"{a}.ipynb", 4))
    edited(course, "gates", "wrong", "cell_forward", "h = o * np.tanh(c)", "h = o * c")
    edited(course, "gates", "endless", "cell_forward", "h_prev, c_prev = state\n",
           "h_prev, c_prev = state\n    while True:\n        pass\n")
    edited(course, "gates", "endless_first_cell", "sigmoid", "def sigmoid(z):", "def sigmoid(z):",
           prepend="while True:\n    pass")
    edited(course, "gates", "sigmoid_never_returns", "sigmoid", "### BEGIN SOLUTION\n",
           "### BEGIN SOLUTION\n    while True:\n        pass\n")
    edited(course, "gates", "probe", "sigmoid", "### BEGIN SOLUTION\n",
           "### BEGIN SOLUTION\n    assert not probes, probes\n",
           prepend=PROBE.replace("COURSE", str(course)).replace("PACKAGE", str(ROOT / "lstmkit"))
           .replace("CHECKOUT", str(ROOT)))
    edited(course, "bptt", "no_sum", "backward", "grads[k] += step_grads[k]", "grads[k] = step_grads[k]")
    r = run("nbgrader", "generate_assignment", "pytorch", "--force", cwd=course)
    assert r.returncode == 0, r.stdout + r.stderr
    edited(course, "pytorch", "endless_training", "train", "model = Adder()\n",
           "while True:\n    pass\nmodel = Adder()\n")
    runs = {}
    for a, args in (("gates", ["--workers", "2", "--timeout", "20", "--call-timeout", "2"]),
                    ("bptt", ["--workers", "1", "--timeout", "20"]),
                    ("pytorch", ["--workers", "1", "--timeout", "25"])):
        runs[a] = run("lstmkit.cli", "grade", a, "--course", str(course), *args)
        assert runs[a].returncode == 0, runs[a].stdout + runs[a].stderr
    runs["csv"] = {a: read_csv(course / f"grades-{a}.csv") for a in ("gates", "bptt", "pytorch")}
    return course, runs


def rows(course, assignment):
    return {r["student"]: r for r in course[1]["csv"][assignment]}


def test_csv_columns_points_status_and_reason(course):
    per_part = [c for p in GATES_PARTS for c in (p, f"{p}:status", f"{p}:reason")]
    with open(course[0] / "grades-gates.csv") as f:
        assert f.readline().strip() == ",".join(["student", *per_part, "total", "max", "status", "reason"])
    gates = rows(course, "gates")
    assert sorted(gates) == ["blank", "endless", "endless_first_cell", "honest", "probe",
                             "sigmoid_never_returns", "wrong"]
    assert [gates["honest"][p] for p in GATES_PARTS] == ["2", "2", "2", "3"]
    assert [gates["honest"][f"{p}:status"] for p in GATES_PARTS] == ["ok"] * 4
    assert [gates["honest"][f"{p}:reason"] for p in GATES_PARTS] == [""] * 4
    assert (gates["honest"]["total"], gates["honest"]["max"], gates["honest"]["status"]) == ("9", "9", "ok")
    assert gates["honest"]["reason"] == ""
    assert gates["probe"]["total"] == "9", gates["probe"]["reason"]  # every isolation probe held
    blank = gates["blank"]
    assert (blank["total"], blank["status"]) == ("0", "error")
    assert [blank[f"{p}:status"] for p in GATES_PARTS] == ["error"] * 4
    assert blank["reason"].startswith("test_sigmoid: NotImplementedError: Replace this line")
    assert blank["test_sigmoid:reason"].startswith("NotImplementedError: Replace this line")
    wrong = gates["wrong"]
    assert [wrong[p] for p in GATES_PARTS] == ["2", "2", "2", "0"] and wrong["status"] == "ok"
    assert [wrong[f"{p}:status"] for p in GATES_PARTS] == ["ok", "ok", "ok", "failed"]
    assert wrong["reason"] == ("test_cell_forward: h looks like o * c: the new hidden state is "
                               "h = o * tanh(c) (visible test, B = 1)")
    assert "test_cell_forward: " + wrong["test_cell_forward:reason"] == wrong["reason"]


def test_endless_loop_costs_only_its_part(course):
    # each part's checks run right after the cells above its test cell: the parts before cell_forward
    # are graded before the endless loop starts; its calls end at the time limit of one call
    endless = rows(course, "gates")["endless"]
    assert [endless[p] for p in GATES_PARTS] == ["2", "2", "2", "0"]
    assert [endless[f"{p}:status"] for p in GATES_PARTS] == ["ok", "ok", "ok", "timeout"]
    assert endless["status"] == "timeout"
    assert endless["reason"] == ("test_cell_forward: did not finish within the time limit of one call "
                                 "(2 s of CPU time) (visible test, B = 1)")


def test_a_function_that_never_returns_costs_only_its_own_part(course):
    # sigmoid loops forever when called: its part times out; gate_activations and cell_forward call it,
    # and are graded with the grader's sigmoid in its place (one hang charged to one part, and timed once)
    row = rows(course, "gates")["sigmoid_never_returns"]
    assert [row[p] for p in GATES_PARTS] == ["0", "2", "2", "3"]
    assert [row[f"{p}:status"] for p in GATES_PARTS] == ["timeout", "ok", "ok", "ok"]
    assert row["status"] == "timeout"
    assert row["test_sigmoid:reason"] == ("did not finish within the time limit of one call "
                                          "(2 s of CPU time) (visible test, one element)")
    assert row["reason"] == "test_sigmoid: " + row["test_sigmoid:reason"]
    for part in ("test_gate_activations", "test_cell_forward"):
        reason = row[f"{part}:reason"]
        assert reason.startswith("your sigmoid did not finish within the time limit of one call in an "
                                 "earlier part; passes with the grader's sigmoid"), reason
    page = (course[0] / "feedback" / "sigmoid_never_returns" / "gates" / "gates.html").read_text()
    assert "<td>timeout</td><td>did not finish within the time limit of one call" in page
    assert "<td>ok</td><td>your sigmoid did not finish within the time limit of one call" in page


def test_training_cell_that_never_ends_costs_only_the_training_part(course):
    row = rows(course, "pytorch")["endless_training"]
    assert (row["test_cell"], row["test_layer"], row["test_adding"]) == ("3", "3", "0")
    assert row["status"] == "timeout"
    assert row["reason"].startswith("test_adding: NameError: name 'predict' is not defined (cell train was "
                                    "left out: did not finish within the")


def test_a_first_cell_that_never_ends_costs_only_its_part(course):
    # the child dies in cell sigmoid; a second child runs without that cell and grades the other parts
    # (gate_activations and cell_forward call sigmoid: graded with the grader's sigmoid in its place)
    row = rows(course, "gates")["endless_first_cell"]
    assert [row[p] for p in GATES_PARTS] == ["0", "2", "2", "3"]
    assert row["status"] == "timeout"
    assert row["reason"].startswith("test_sigmoid: NameError: name 'sigmoid' is not defined (cell sigmoid "
                                    "was left out: did not finish within the time limit")


def test_bptt_uses_the_reference_cache_and_names_the_mistake(course):
    bptt = rows(course, "bptt")
    assert (bptt["honest"]["total"], bptt["honest"]["max"], bptt["honest"]["status"]) == ("10", "10", "ok")
    assert bptt["blank"]["total"] == "0" and bptt["blank"]["status"] == "error"
    no_sum = bptt["no_sum"]
    # the weight gradients are wrong unless T = 1: 3 of the 4 kinds of sizes fail that component, the
    # other three components (dxs, dh0, dc0) pass: 4 x 13/16 points
    assert (no_sum["test_cell_backward"], no_sum["test_backward"], no_sum["total"]) == ("4", "3.25", "9.25")
    assert "did you sum over the time steps?" in no_sum["reason"]


def test_regrading_with_other_workers_gives_the_same_csv(course):
    path = course[0] / "grades-bptt.csv"
    first = path.read_text()
    r = run("lstmkit.cli", "grade", "bptt", "--course", str(course[0]), "--workers", "2")
    assert r.returncode == 0, r.stderr
    assert path.read_text() == first


def test_summary_table_is_printed(course):
    out = course[1]["gates"].stdout
    assert "student" in out and "status" in out
    assert any(line.split()[:4] == ["wrong", "6", "/", "9"] for line in out.splitlines()), out


def test_nbgrader_export_agrees_with_the_csv(course):
    root = course[0]
    r = run("nbgrader", "export", cwd=root)
    assert r.returncode == 0, r.stdout + r.stderr
    exported = {(e["assignment"], e["student_id"]): e for e in read_csv(root / "grades.csv")}
    for a in ("gates", "bptt"):
        for student, row in rows(course, a).items():
            e = exported[(a, student)]
            assert float(e["raw_score"]) == float(row["total"]), (a, student, e)
            assert float(e["max_score"]) == float(row["max"]) + 3  # plus the written answer, graded by hand


def test_feedback_has_no_hidden_tests(course):
    root = course[0]
    hidden = []
    for a in ("gates", "bptt"):
        nb = nbformat.read(root / "source" / a / f"{a}.ipynb", 4)
        for cell in nb.cells:
            if "### BEGIN HIDDEN TESTS" in cell.source:
                block = cell.source.split("### BEGIN HIDDEN TESTS")[1].split("### END HIDDEN TESTS")[0]
                hidden += [line.strip() for line in block.splitlines() if line.strip()]
    assert "for seed in range(100, 108):" in hidden
    files = sorted((root / "feedback").glob("*/*/*.*"))
    assert len(files) == 2 * 11  # html + json for 7 gates, 3 bptt and 1 pytorch students
    for path in files:
        text = path.read_text()
        assert "HIDDEN TESTS" not in text and "grading.check_" not in text
        assert not [line for line in hidden if line in text], path
    page = (root / "feedback" / "wrong" / "gates" / "gates.html").read_text()
    assert "6 / 9" in page and "<td>failed</td><td>h looks like o * c" in page


def test_autograded_notebooks_exist_with_the_instructor_cells(course):
    root = course[0]
    for a, students in (("gates", 7), ("bptt", 3)):
        paths = sorted((root / "autograded").glob(f"*/{a}/{a}.ipynb"))
        assert len(paths) == students
    nb = nbformat.read(root / "autograded" / "wrong" / "gates" / "gates.ipynb", 4)
    test = [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == "test_cell_forward"][0]
    assert "### BEGIN HIDDEN TESTS" in test.source  # the instructor's version, as nbgrader autograde keeps it
    assert "0 / 3" in test.outputs[0]["text"]


def test_check_prints_the_visible_messages(course):
    root = course[0]
    r = run("lstmkit.cli", "check", str(root / "submitted" / "wrong" / "gates" / "gates.ipynb"))
    assert r.returncode == 1, r.stderr
    lines = r.stdout.splitlines()
    assert "test_sigmoid: sigmoid(seed=0, one element) passed" in lines
    assert ("test_cell_forward: cell_forward(seed=0, B = 1) FAILED (fail): "
            "h looks like o * c: the new hidden state is h = o * tanh(c)") in lines
    assert lines[-1].startswith("9 of 13 visible checks passed")
    ok = run("lstmkit.cli", "check", str(root / "release" / "gates" / "gates.ipynb"))
    assert ok.returncode == 1 and "FAILED (error): NotImplementedError" in ok.stdout
    good = run("lstmkit.cli", "check", str(root / "submitted" / "honest" / "gates" / "gates.ipynb"))
    assert good.returncode == 0 and good.stdout.splitlines()[-1].startswith("13 of 13 visible checks passed")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["nosuch"], "unknown assignment 'nosuch'"),
        (["gates", "--course", "/nonexistent/course"], "does not exist"),
        (["gates", "--student", "nobody"], "no submission of gates for nobody"),
    ],
)
def test_bad_usage_fails_with_a_message(course, args, message):
    if "--course" not in args:
        args = [*args, "--course", str(course[0])]
    r = run("lstmkit.cli", "grade", *args)
    assert r.returncode != 0 and message in r.stderr, r.stderr


def test_formgrader_api_lists_and_renders_the_autograded_submission(course):
    """What formgrader does for manual grading: NbGraderAPI finds the graded submission, and its
    formgrade HTML exporter renders the autograded notebook with the written answer to grade."""
    from nbconvert.exporters import HTMLExporter
    from nbgrader.apps.api import NbGraderAPI
    from nbgrader.coursedir import CourseDirectory
    from nbgrader.server_extensions.formgrader import handlers
    from traitlets.config import Config

    root = course[0]
    api = NbGraderAPI(coursedir=CourseDirectory(root=str(root)))
    submission = api.get_submission("gates", "wrong")
    assert submission["autograded"] and submission["needs_manual_grade"]
    assert submission["score"] == float(rows(course, "gates")["wrong"]["total"])
    notebooks = {n["student"]: n for n in api.get_notebook_submissions("gates", "gates")}
    assert {"honest", "wrong", "blank"} <= set(notebooks)

    config = Config()
    config.HTMLExporter.template_name = "formgrade"
    config.HTMLExporter.extra_template_basedirs = [handlers.template_path]
    resources = {"assignment_id": "gates", "notebook_id": "gates", "submission_id": notebooks["wrong"]["id"],
                 "index": 0, "total": len(notebooks), "base_url": "/", "student": "wrong", "last_name": None,
                 "first_name": None, "notebook_path": "autograded/wrong/gates/gates.ipynb"}
    path = root / "autograded" / "wrong" / "gates" / "gates.ipynb"
    html, _ = HTMLExporter(config=config).from_filename(str(path), resources=resources)
    # a score box for every grade cell, the hand-graded answer included, out of its points
    for grade_id, points in (("test_sigmoid", 2), ("test_cell_forward", 3), ("answer_remember", 3)):
        box = rf'<input class="score tabbable" id="{grade_id}"[^>]*/> / {points}\.0'
        assert re.search(box, html), f"formgrader shows no score box for {grade_id}"
    assert "looks like o * c" in html   # the grader's verdict under the test cell
