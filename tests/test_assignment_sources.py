"""The source notebooks of assignments/ against their one definition (cheap: no nbgrader, no kernel).

- they are exactly what assignments/make_notebooks.py builds from the MyST Markdown notebooks in
  assignments/notebooks/ (a test that fails on drift), and their code lints clean;
- every test cell is a `grading.Checks` with the points of `grading.POINTS`, a visible call per kind of
  sizes and hidden calls covering every kind equally;
- every notebook states what is off limits and that the outputs must be kept; every written answer
  has a question and a rubric above it.
"""

import importlib.util
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from lstmkit import grading
from lstmkit.grader.plan import plan_from_notebook

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT / "assignments" / "source"


def make_notebooks():
    path = ROOT / "assignments" / "make_notebooks.py"
    spec = importlib.util.spec_from_file_location("make_notebooks", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def built():
    return make_notebooks().notebooks()


@pytest.mark.parametrize("assignment", sorted(grading.POINTS))
def test_notebook_is_what_make_notebooks_writes(built, assignment):
    on_disk = (SOURCE / assignment / f"{assignment}.ipynb").read_text()
    assert nbformat.writes(built[assignment]) + "\n" == on_disk, (
        f"source/{assignment} differs from notebooks/{assignment}.md: "
        "run `python assignments/make_notebooks.py`")


@pytest.mark.parametrize("assignment", sorted(grading.POINTS))
def test_test_cells_follow_the_points_and_kinds(assignment):
    text = (SOURCE / assignment / f"{assignment}.ipynb").read_text()
    plan = plan_from_notebook(text, assignment, assignment, key=b"k")
    assert {t.grade_id: t.points for t in plan.tests} == grading.POINTS[assignment]
    for test in plan.tests:
        check = grading.CHECKS[test.check]
        visible = [c.seed for c in test.calls if not c.hidden]
        hidden = [c.seed for c in test.calls if c.hidden]
        assert [check.kind(s) for s in visible] == list(check.kinds), test.grade_id
        kinds = [check.kind(s) for s in hidden]
        assert sorted(kinds) == sorted(list(check.kinds) * (len(hidden) // len(check.kinds))), test.grade_id
        assert not set(hidden) & set(range(200)), "hidden seeds are the grader's own, not the notebook's"


@pytest.mark.parametrize("assignment", sorted(grading.POINTS))
def test_every_notebook_states_the_rules_and_the_written_answers_have_a_rubric(assignment):
    nb = nbformat.read(SOURCE / assignment / f"{assignment}.ipynb", 4)
    intro = nb.cells[0].source
    for text in ("Off limits:", "**with its outputs**", "B = 1", "lstmkit check"):
        assert text in intro, (assignment, text)
    for k, cell in enumerate(nb.cells):
        meta = cell.metadata.get("nbgrader", {})
        if cell.cell_type == "markdown" and meta.get("grade") and meta.get("solution"):
            prompt = "\n".join(c.source for c in nb.cells[max(0, k - 3):k] if c.cell_type == "markdown")
            assert "**Question.**" in prompt and "**Rubric" in prompt, (assignment, meta["grade_id"])


def test_solution_cells_compile():
    for assignment in grading.POINTS:
        nb = nbformat.read(SOURCE / assignment / f"{assignment}.ipynb", 4)
        for cell in nb.cells:
            if cell.cell_type == "code":
                compile(cell.source, f"{assignment}:{cell.id}", "exec")


@pytest.mark.parametrize("assignment", sorted(grading.POINTS))
def test_the_code_of_the_notebooks_lints_clean(built, assignment):
    """Every code cell (solutions, given code, tests) as one file through ruff: syntax, pyflakes, bugbear
    (imports the given cells offer the student may stay unused)."""
    code = "\n\n".join(c.source for c in built[assignment].cells if c.cell_type == "code") + "\n"
    r = subprocess.run([sys.executable, "-m", "ruff", "check", "--select", "E9,F,B", "--ignore", "F401",
                        "--stdin-filename", f"{assignment}.py", "-"],
                       input=code, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_a_test_cell_that_disagrees_with_its_check_fails_the_build(tmp_path, monkeypatch):
    module = make_notebooks()
    text = (module.HERE / "notebooks" / "gates.md").read_text()
    (tmp_path / "notebooks").mkdir()
    wrong = text.replace("checks(sigmoid, seed=1)", "checks(sigmoid, seed=5)")
    (tmp_path / "notebooks" / "gates.md").write_text(wrong)
    monkeypatch.setattr(module, "HERE", tmp_path)
    with pytest.raises(ValueError, match="the test cell test_sigmoid should read"):
        module.build("gates")
