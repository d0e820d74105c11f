"""The nbgrader course end to end, with the real nbgrader CLI on a temporary copy of assignments/.

One fixture generates the release versions, submits the source notebook, the untouched release
notebook and notebooks with typical mistakes, and autogrades them (one autograde call per
assignment grades every student); the tests then read the scores from the gradebook.
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbgrader.api import Gradebook

ROOT = Path(__file__).resolve().parents[1]
COURSE = ROOT / "assignments"
ASSIGNMENTS = ("gates", "bptt", "pytorch")

# student id -> (assignment, [(text in the solution, mistaken text)], autograded cells that must fail)
MISTAKES = {
    "gate_order": (
        "gates",
        [
            (
                "i = sigmoid(a[:, 0 * H:1 * H])\n    f = sigmoid(a[:, 1 * H:2 * H])",
                "i = sigmoid(a[:, 1 * H:2 * H])\n    f = sigmoid(a[:, 0 * H:1 * H])",
            )
        ],
        {"test_gate_activations", "test_cell_forward"},
    ),
    "no_tanh": ("gates", [("h = o * np.tanh(c)", "h = o * c")], {"test_cell_forward"}),
    "forget_on_g": ("gates", [("c = f * c_prev + i * g", "c = i * c_prev + f * g")], {"test_cell_forward"}),
    "no_sum": ("bptt", [("grads[k] += step_grads[k]", "grads[k] = step_grads[k]")], {"test_backward"}),
    "sigmoid_sign": (
        "bptt",
        [("return s * (1 - s)", "return s * (s - 1)")],
        {"test_cell_backward", "test_backward"},
    ),
}


def nbgrader(*args, cwd):
    # nbgrader runs `alembic` (for the gradebook) and the kernel from PATH: put the venv's bin first.
    env = dict(
        os.environ, PATH=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    )
    return subprocess.run(
        [sys.executable, "-m", "nbgrader", *args], cwd=cwd, env=env, capture_output=True, text=True
    )


def submit(course, student, assignment, nb):
    folder = course / "submitted" / student / assignment
    folder.mkdir(parents=True)
    nbformat.write(nb, folder / f"{assignment}.ipynb")


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    course = tmp_path_factory.mktemp("course")
    shutil.copytree(COURSE / "source", course / "source")
    shutil.copy(COURSE / "nbgrader_config.py", course)
    for a in ASSIGNMENTS:
        r = nbgrader("generate_assignment", a, "--force", cwd=course)
        assert r.returncode == 0, r.stdout + r.stderr
    for a in ASSIGNMENTS:
        submit(course, "solution", a, nbformat.read(course / "source" / a / f"{a}.ipynb", 4))
        submit(course, "blank", a, nbformat.read(course / "release" / a / f"{a}.ipynb", 4))
    for student, (a, edits, _) in MISTAKES.items():
        nb = nbformat.read(course / "source" / a / f"{a}.ipynb", 4)
        for old, new in edits:
            cells = [c for c in nb.cells if old in c.source]
            assert len(cells) == 1, f"{student}: '{old}' not found once in the solution"
            cells[0].source = cells[0].source.replace(old, new)
        submit(course, student, a, nb)
    for a in ASSIGNMENTS:
        r = nbgrader("autograde", a, "--force", cwd=course)
        assert r.returncode == 0, r.stdout + r.stderr
    return course


def auto_scores(course, student, assignment):
    """grade_id -> (auto score, max score) of the autograded code cells."""
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}", course_id="lstmkit") as gb:
        nb = gb.find_submission_notebook(assignment, assignment, student)
        return {g.name: (g.auto_score, g.max_score) for g in nb.grades if g.cell.cell_type == "code"}


def test_release_has_no_solutions_or_hidden_tests(course):
    for a in ASSIGNMENTS:
        source = (course / "source" / a / f"{a}.ipynb").read_text()
        release = (course / "release" / a / f"{a}.ipynb").read_text()
        assert "BEGIN HIDDEN TESTS" in source and "BEGIN SOLUTION" in source
        for text in ("BEGIN SOLUTION", "END SOLUTION", "BEGIN HIDDEN TESTS", "range(100, 1", "seed=100"):
            assert text not in release, f"{a}: release contains {text!r}"
        assert "raise NotImplementedError" in release
    gates = (course / "release" / "gates" / "gates.ipynb").read_text()
    assert "np.exp(-np.abs(z))" not in gates and "constant error carousel" not in gates
    assert "YOUR ANSWER HERE" in gates


def test_validate_passes_on_source_and_fails_on_release(course):
    for a in ASSIGNMENTS:
        ok = nbgrader("validate", str(course / "source" / a / f"{a}.ipynb"), cwd=course)
        assert "Success! Your notebook passes all the tests." in ok.stdout, ok.stdout + ok.stderr
        bad = nbgrader("validate", str(course / "release" / a / f"{a}.ipynb"), cwd=course)
        assert "VALIDATION FAILED" in bad.stdout, bad.stdout + bad.stderr


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_solution_gets_full_points_and_blank_gets_zero(course, assignment):
    solution = auto_scores(course, "solution", assignment)
    blank = auto_scores(course, "blank", assignment)
    assert len(solution) >= 3
    assert all(score == top > 0 for score, top in solution.values()), solution
    assert all(score == 0 for score, _ in blank.values()), blank


@pytest.mark.parametrize("student", sorted(MISTAKES))
def test_mistake_loses_exactly_the_broken_parts(course, student):
    assignment, _, broken = MISTAKES[student]
    scores = auto_scores(course, student, assignment)
    assert broken <= set(scores)
    for name, (score, top) in scores.items():
        assert score == (0 if name in broken else top), (name, scores)
