"""Build the source notebooks of the course from their text: python assignments/make_notebooks.py

    notebooks/<id>.md  (MyST Markdown notebook, as the book's chapters)  ->  source/<id>/<id>.ipynb

The .md files are what instructors edit: cells with their nbgrader metadata (`+++ {"nbgrader": ...}`
above a markdown cell, a `nbgrader:` option on a code cell), solutions between ### BEGIN SOLUTION /
### END SOLUTION, hidden tests between ### BEGIN HIDDEN TESTS / ### END HIDDEN TESTS. nbgrader reads
the .ipynb in source/ (it copies every other file of that folder into the release, so the text
version lives here, outside it). The build gives every cell a stable id (its grade_id), checks each
autograded cell against its definition in lstmkit.grading (`test_cell`: the Checks object, one
visible call per kind of sizes, two hidden calls per kind, the points of grading.POINTS) and fails
otherwise. tests/test_assignment_sources.py fails when the .ipynb and the .md drift apart.
"""

import ast
from pathlib import Path

import nbformat
from myst_nb.core.read import read_myst_markdown_notebook

from lstmkit import grading

HERE = Path(__file__).resolve().parent
ASSIGNMENTS = ("gates", "bptt", "pytorch", "sequences")


def test_cell(check, fn, grade_id, hidden_per_kind=2):
    """The source of an autograded cell, written from the check's definition: `grading.Checks` on one
    visible seed per kind of sizes (B = 1, H = 1, ..., any sizes), then hidden_per_kind hidden seeds per
    kind; its last line shows the points earned, which nbgrader takes as partial credit."""
    kinds = grading.CHECKS[check].kinds
    (points,) = [p[grade_id] for p in grading.POINTS.values() if grade_id in p]
    lines = [f'checks = grading.Checks("{check}", points={points})']
    lines += [f"checks({fn}, seed={seed})  # {kind}" for seed, kind in enumerate(kinds)]
    lines += ["### BEGIN HIDDEN TESTS", f"for seed in range(100, {100 + hidden_per_kind * len(kinds)}):",
              f"    checks({fn}, seed=seed)", "### END HIDDEN TESTS", "checks.points()"]
    return "\n".join(lines)


def _check_and_function(source):
    tree = ast.parse(source)
    check = next(n.value.args[0].value for n in ast.walk(tree) if isinstance(n, ast.Assign)
                 and isinstance(n.value, ast.Call) and getattr(n.value.func, "attr", "") == "Checks")
    fn = next(n.args[0].id for n in ast.walk(tree) if isinstance(n, ast.Call)
              and getattr(n.func, "id", "") == "checks")
    return check, fn


def build(assignment):
    """The source notebook of an assignment, from notebooks/<assignment>.md."""
    nb = read_myst_markdown_notebook((HERE / "notebooks" / f"{assignment}.md").read_text())
    for k, cell in enumerate(nb.cells):
        meta = cell.metadata.get("nbgrader", {})
        cell.id = meta.get("grade_id") or f"cell-{k:02d}"
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
            if meta.get("grade") and not meta.get("solution"):
                expected = test_cell(*_check_and_function(cell.source), meta["grade_id"])
                if cell.source != expected or meta.get("points") != grading.POINTS[assignment][cell.id]:
                    raise ValueError(f"notebooks/{assignment}.md: the test cell {cell.id} should read\n"
                                     f"{expected}\nwith points: {grading.POINTS[assignment][cell.id]}")
    kernel = {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"}
    nb.metadata = {"kernelspec": kernel, "language_info": {"name": "python"}}
    nb.nbformat, nb.nbformat_minor = 4, 5
    nbformat.validate(nb)
    return nb


def notebooks():
    """assignment -> notebook, as written to source/<assignment>/<assignment>.ipynb."""
    return {name: build(name) for name in ASSIGNMENTS}


def write(assignment, nb):
    path = HERE / "source" / assignment / f"{assignment}.ipynb"
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    return path


if __name__ == "__main__":
    for name, nb in notebooks().items():
        print(write(name, nb))
