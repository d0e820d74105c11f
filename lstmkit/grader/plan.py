"""The grading plan of an assignment, read from the SOURCE notebook only.

For every code cell of the instructor's notebook the plan knows its role (nbgrader metadata):

- `solution`: taken from the student's notebook by grade_id (the student's code);
- `given`: the instructor's own version (imports, helpers), whatever the student's copy says;
- `test`: never executed. Its visible part (above ### BEGIN HIDDEN TESTS) names the checks,
  the student function and the visible seeds: `grading.check_<name>(<function>, seed=<n>)`; its
  hidden part says how many hidden calls there are. The hidden seeds the grader uses are fresh:
  derived from a hash of the source notebook and of the course's secret `DIR/gradebook.db-lstmkit-secret`
  (random, made on first use), so they are not the ones printed in the notebook, cannot be computed
  from the public repository, never reach the sandbox, and are the same on every run.
"""

from __future__ import annotations

import ast
import hashlib
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

HIDDEN_BEGIN = "### BEGIN HIDDEN TESTS"
HIDDEN_END = "### END HIDDEN TESTS"
SECRET_FILE = "gradebook.db-lstmkit-secret"  # next to the gradebook: instructor-only


@dataclass
class Call:
    """One run of a check: check name, the student's function, the seed, visible or hidden."""

    check: str
    fn: str
    seed: int
    hidden: bool


@dataclass
class TestCell:
    grade_id: str
    points: float
    calls: list[Call]


@dataclass
class Plan:
    assignment: str
    notebook: str  # notebook name without .ipynb
    cells: list[tuple[str, str, str]]  # (role, grade_id, instructor source) of every code cell, in order
    tests: list[TestCell]
    allowed_reference: set[str] = field(default_factory=set)  # names the given cells import from reference
    uses_torch: bool = False  # the given cells import torch (the PyTorch assignment)

    @property
    def max_points(self):
        return sum(t.points for t in self.tests)


class PlanError(ValueError):
    """The source notebook cannot be graded by lstmkit (e.g. a test cell it does not understand)."""


def _check_calls(code, grade_id):
    """[(check, fn, seed or None, in_loop)] for every grading.check_<name>(fn, seed=...) in `code`."""
    try:
        tree = ast.parse(code)
    except SyntaxError as e:
        raise PlanError(f"test cell {grade_id} is not valid Python: {e}") from None
    calls = []
    loops = {id(c) for node in ast.walk(tree) if isinstance(node, ast.For) for c in ast.walk(node)}
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
            continue
        if not (isinstance(node.func.value, ast.Name) and node.func.value.id == "grading"):
            continue
        if not node.func.attr.startswith("check_"):
            continue
        if not node.args or not isinstance(node.args[0], ast.Name):
            raise PlanError(f"test cell {grade_id}: {ast.unparse(node)} should pass a function by name")
        seed = next((k.value for k in node.keywords if k.arg == "seed"), None)
        if seed is None and len(node.args) > 1:
            seed = node.args[1]
        value = seed.value if isinstance(seed, ast.Constant) and isinstance(seed.value, int) else None
        calls.append((node.func.attr[len("check_") :], node.args[0].id, value, id(node) in loops))
    return calls


def _hidden_count(code):
    """How many check calls the hidden part makes (a `for seed in range(a, b)` loop counts b - a)."""
    n = 0
    tree = ast.parse(code)
    for node in tree.body:
        inner = [c for c in ast.walk(node) if isinstance(c, ast.Call) and isinstance(c.func, ast.Attribute)
                 and c.func.attr.startswith("check_")]
        loop = isinstance(node, ast.For) and isinstance(node.iter, ast.Call)
        if loop and getattr(node.iter.func, "id", "") == "range":
            r = range(*[ast.literal_eval(a) for a in node.iter.args])
            n += len(r) * len(inner)
        else:
            n += len(inner)
    return n


def hidden_seed(key: bytes, grade_id: str, k: int) -> int:
    digest = hashlib.sha256(key + f"\0{grade_id}\0{k}".encode()).digest()
    return int.from_bytes(digest[:4], "little") % (2**31 - 1) + 1000


def _given_imports(code):
    """(names imported from lstmkit.reference, whether torch is imported) in a given cell."""
    names, torch = set(), False
    for node in ast.walk(ast.parse(code)):
        if isinstance(node, ast.ImportFrom) and node.module == "lstmkit.reference":
            names |= {a.name for a in node.names}
        if isinstance(node, ast.Import) and any(a.name.split(".")[0] == "torch" for a in node.names):
            torch = True
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "torch":
            torch = True
    return names, torch


def course_secret(course):
    """The course's secret (DIR/gradebook.db-lstmkit-secret, made on first use): the source notebooks
    of an open course are public, so the hidden seeds must depend on something students cannot read."""
    path = Path(course) / SECRET_FILE
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(secrets.token_bytes(32))
    return path.read_bytes()


def load_plan(course, assignment):
    """Read DIR/source/<assignment>/*.ipynb (one notebook) into a Plan."""
    folder = Path(course) / "source" / assignment
    notebooks = sorted(folder.glob("*.ipynb"))
    if not notebooks:
        raise PlanError(f"no source notebook in {folder}: is '{assignment}' an assignment of this course?")
    if len(notebooks) > 1:
        raise PlanError(f"{folder} has {len(notebooks)} notebooks; lstmkit grades one per assignment")
    path = notebooks[0]
    raw = path.read_bytes()
    key = raw + course_secret(course)
    return plan_from_notebook(raw.decode(), assignment, path.stem, key)


def plan_from_notebook(text, assignment, name, key=b""):
    """The Plan of a notebook's text (the source notebook; for `lstmkit check`, the student's own)."""
    from lstmkit.grading import CHECKS

    nb = nbformat.reads(text, as_version=4)
    cells, tests, allowed, uses_torch = [], [], set(), False
    for k, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        meta = cell.metadata.get("nbgrader", {})
        grade_id = meta.get("grade_id", f"cell-{k}")
        if meta.get("grade") and not meta.get("solution"):
            visible, _, rest = cell.source.partition(HIDDEN_BEGIN)
            hidden = rest.partition(HIDDEN_END)[0]
            calls = []
            for check, fn, seed, _ in _check_calls(visible, grade_id):
                if check not in CHECKS:
                    raise PlanError(f"test cell {grade_id}: unknown check grading.check_{check}")
                if seed is None:
                    raise PlanError(f"test cell {grade_id}: the visible calls need a literal seed=<int>")
                calls.append(Call(check, fn, seed, hidden=False))
            hidden_found = _check_calls(hidden, grade_id) if hidden else []
            if hidden_found:
                n = _hidden_count(hidden)
                check, fn = hidden_found[0][0], hidden_found[0][1]
                calls += [Call(check, fn, hidden_seed(key, grade_id, j), hidden=True) for j in range(n)]
            if not calls:
                raise PlanError(f"test cell {grade_id} calls no lstmkit.grading check")
            tests.append(TestCell(grade_id, float(meta.get("points", 0)), calls))
            cells.append(("test", grade_id, cell.source))
        elif meta.get("solution"):
            cells.append(("solution", grade_id, cell.source))
        else:
            names, torch = _given_imports(cell.source)
            allowed |= names
            uses_torch |= torch
            cells.append(("given", grade_id, cell.source))
    return Plan(assignment, name, cells, tests, allowed, uses_torch)


def student_cells(plan, notebook):
    """The code the sandbox runs, in order: [(grade_id, role, source)] with the student's solution
    cells (by grade_id; a missing one becomes empty) and the instructor's given cells; no test cells."""
    by_id = {}
    for cell in notebook.cells:
        gid = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")
        if cell.cell_type == "code" and gid and gid not in by_id:
            by_id[gid] = cell.source
    out = []
    for role, grade_id, source in plan.cells:
        if role == "given":
            out.append((grade_id, role, source))
        elif role == "solution":
            out.append((grade_id, role, by_id.get(grade_id, "")))
    return out
