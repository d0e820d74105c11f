"""The nbgrader course end to end, with the real nbgrader CLI on a temporary copy of assignments/.

One fixture generates the release versions, submits the source notebook, the untouched release
notebook and notebooks with typical mistakes, and autogrades them (one autograde call per
assignment grades every student); the tests then read the scores from the gradebook.
"""

import csv
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbgrader.api import Gradebook

from lstmkit import grading

ROOT = Path(__file__).resolve().parents[1]
COURSE = ROOT / "assignments"
ASSIGNMENTS = ("gates", "bptt", "pytorch", "sequences")

# student id -> (assignment, [(text in the solution, mistaken text)], {autograded cell: points it keeps});
# every other autograded cell keeps full marks
MISTAKES = {
    # gate_activations is wrong; cell_forward, which calls it, is right: graded with the grader's
    # gate_activations in its place, it keeps its points (one mistake, one part)
    "gate_order": (
        "gates",
        [
            (
                "i = sigmoid(a[:, 0 * H:1 * H])\n    f = sigmoid(a[:, 1 * H:2 * H])",
                "i = sigmoid(a[:, 1 * H:2 * H])\n    f = sigmoid(a[:, 0 * H:1 * H])",
            )
        ],
        {"test_gate_activations": 0},
    ),
    "no_tanh": ("gates", [("h = o * np.tanh(c)", "h = o * c")], {"test_cell_forward": 0}),
    "forget_on_g": ("gates", [("c = f * c_prev + i * g", "c = i * c_prev + f * g")],
                    {"test_cell_forward": 0}),
    # wrong only for a batch of one: the visible check with B = 1 shows it; 3 of 4 kinds of sizes pass
    "squeeze_b1": ("gates", [("h = o * np.tanh(c)", "h = np.squeeze(o * np.tanh(c), axis=0) "
                              "if x.shape[0] == 1 else o * np.tanh(c)")], {"test_cell_forward": 2.25}),
    # the weight gradients are right only when T = 1 (1 of 4 kinds); dxs, dh0, dc0 are right: 13 of 16
    "no_sum": ("bptt", [("grads[k] += step_grads[k]", "grads[k] = step_grads[k]")], {"test_backward": 3.25}),
    # dsigmoid's sign: dc_prev stays right (1 of 4 components); backward, right itself, keeps its points
    "sigmoid_sign": ("bptt", [("return s * (1 - s)", "return s * (s - 1)")], {"test_cell_backward": 1}),
    # sequences: the four typical mistakes; train_tbptt and train_models, which call a wrong function, are
    # graded with the grader's in its place and keep their points
    "clip_per_tensor": ("sequences", [("g.mul_(scale)", "g.mul_(min(1.0, max_norm / float(g.norm())))")],
                        {"test_clip_grad_norm": 0}),
    "not_detached": ("sequences", [("        state = detach(state)\n    return losses, state",
                                    "    return losses, state")], {"test_train_tbptt": 0}),
    "padding_counted": ("sequences", [("return (nll * mask).sum() / mask.sum()", "return nll.mean()")],
                        {"test_masked_cross_entropy": 0}),
    "no_temperature": ("sequences", [("probs = torch.softmax(logits / temperature, dim=-1)",
                                      "probs = torch.softmax(logits, dim=-1)")], {"test_sample_next": 0}),
}
# the message `lstmkit grade` gives for each sequences mistake (the CSV's reason)
MISTAKE_REASONS = {
    "clip_per_tensor": "test_clip_grad_norm: the gradients are unchanged although their global norm",
    "not_detached": "test_train_tbptt: the state carried into chunk 2 is still attached to the graph",
    "padding_counted": "test_masked_cross_entropy: the padded steps count in your loss",
    "no_temperature": "test_sample_next: the temperature is ignored",
}
GRADED_TWICE = ("gates", "bptt", "sequences")  # by nbgrader and by `lstmkit grade`
GRADE_TIMEOUT = {"gates": "30", "bptt": "30", "sequences": "180"}  # sequences trains two models


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
def test_mistake_loses_exactly_its_part_with_partial_credit(course, student):
    assignment, _, kept = MISTAKES[student]
    scores = auto_scores(course, student, assignment)
    assert set(kept) <= set(scores)
    for name, (score, top) in scores.items():
        assert score == kept.get(name, top), (name, scores)


@pytest.fixture(scope="module")
def lstmkit_rows(course):
    """`lstmkit grade` on the same submissions, after nbgrader's scores were read (it rewrites them)."""
    nbgrader_scores = {(s, a): auto_scores(course, s, a) for a in GRADED_TWICE
                       for s in ["solution", "blank", *[m for m in MISTAKES if MISTAKES[m][0] == a]]}
    rows = {}
    for a in GRADED_TWICE:
        r = subprocess.run([sys.executable, "-m", "lstmkit.cli", "grade", a, "--course", str(course),
                            "--workers", "2", "--timeout", GRADE_TIMEOUT[a]], cwd=ROOT, capture_output=True,
                           text=True)
        assert r.returncode == 0, r.stdout + r.stderr
        with open(course / f"grades-{a}.csv") as f:
            rows[a] = {row["student"]: row for row in csv.DictReader(f)}
    return nbgrader_scores, rows


def test_partial_credit_agrees_between_nbgrader_and_lstmkit_grade(lstmkit_rows):
    nbgrader_scores, rows = lstmkit_rows
    assert len(nbgrader_scores) == 3 * 2 + len(MISTAKES)
    for (student, assignment), scores in nbgrader_scores.items():
        row = rows[assignment][student]
        assert {k: float(row[k]) for k in scores} == {k: v for k, (v, _) in scores.items()}, (student, row)


def test_batch_of_one_bug_is_named_by_a_visible_check(lstmkit_rows):
    row = lstmkit_rows[1]["gates"]["squeeze_b1"]
    assert row["reason"].startswith("test_cell_forward: next h has shape")
    assert row["reason"].endswith("(visible test, B = 1)")


def test_later_part_graded_with_the_reference_says_so(course, lstmkit_rows):
    import json

    feedback = json.loads((course / "feedback" / "gate_order" / "gates" / "gates.json").read_text())
    parts = {p["part"]: p for p in feedback["parts"]}
    assert parts["test_cell_forward"]["points"] == 3
    assert "passes with the grader's" in parts["test_cell_forward"]["message"]
    assert "gate i equals what gate f should be" in parts["test_gate_activations"]["message"]


@pytest.mark.parametrize("student", sorted(MISTAKE_REASONS))
def test_each_sequences_mistake_is_named_by_lstmkit_grade(lstmkit_rows, student):
    row = lstmkit_rows[1]["sequences"][student]
    assert row["status"] == "ok" and MISTAKE_REASONS[student] in row["reason"], row
    kept = MISTAKES[student][2]
    points = {g: float(row[g]) for g in grading.POINTS["sequences"]}
    assert points == {g: float(kept.get(g, p)) for g, p in grading.POINTS["sequences"].items()}, row
