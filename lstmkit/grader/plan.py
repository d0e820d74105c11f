"""The grading plan of an assignment, read from the SOURCE notebook only.

For every code cell of the instructor's notebook the plan knows its role (nbgrader metadata):

- `solution`: taken from the student's notebook by grade_id (the student's code);
- `given`: the instructor's own version (imports, helpers), whatever the student's copy says;
- `test`: never executed. It makes `checks = grading.Checks("<check>", points=P)` (P must equal
  its nbgrader points); its visible part (above ### BEGIN HIDDEN TESTS) calls `checks(<function>,
  seed=<n>)` on the visible seeds; its hidden part says how many hidden calls there are, and of
  which kinds of sizes (the kind is seed % the number of kinds). The hidden seeds the grader uses are fresh:
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
    after: int = 0  # its checks run after the first `after` cells of student_cells (notebook order)

    @property
    def check(self):
        return self.calls[0].check


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


def _checks_object(code, grade_id):
    """(variable, check name, points) of `checks = grading.Checks("<name>", points=P)` in a test cell."""
    for node in ast.walk(code):
        if not (isinstance(node, ast.Assign) and isinstance(node.value, ast.Call)):
            continue
        call = node.value
        if isinstance(call.func, ast.Attribute) and call.func.attr == "Checks" and \
                isinstance(call.func.value, ast.Name) and call.func.value.id == "grading":
            args = [*call.args, *[k.value for k in call.keywords if k.arg == "points"]]
            if len(args) != 2 or not all(isinstance(a, ast.Constant) for a in args) or \
                    len(node.targets) != 1 or not isinstance(node.targets[0], ast.Name):
                raise PlanError(f"test cell {grade_id}: write "
                                "`checks = grading.Checks(\"<check>\", points=<n>)`")
            return node.targets[0].id, args[0].value, float(args[1].value)
    raise PlanError(f"test cell {grade_id} makes no grading.Checks(...)")


def _calls_of(tree, var, grade_id):
    """[(fn, seeds)] for every `var(fn, seed=<int>)` in `tree`; inside `for seed in range(a, b)` the
    seeds are range(a, b)."""
    found = []
    loops = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.For) and isinstance(node.iter, ast.Call) and \
                getattr(node.iter.func, "id", "") == "range":
            seeds = range(*[ast.literal_eval(a) for a in node.iter.args])
            for sub in ast.walk(node):
                loops[id(sub)] = seeds
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == var):
            continue
        if not node.args or not isinstance(node.args[0], ast.Name):
            raise PlanError(f"test cell {grade_id}: {ast.unparse(node)} should pass a function by name")
        seed = next((k.value for k in node.keywords if k.arg == "seed"), node.args[1] if len(node.args) > 1
                    else None)
        if id(node) in loops:
            found.append((node.args[0].id, list(loops[id(node)])))
        elif isinstance(seed, ast.Constant) and isinstance(seed.value, int):
            found.append((node.args[0].id, [seed.value]))
        else:
            raise PlanError(f"test cell {grade_id}: {ast.unparse(node)} needs a literal seed=<int>")
    return found


def hidden_seed(key: bytes, grade_id: str, k: int, kind: int = 0, kinds: int = 1) -> int:
    """The k-th hidden seed of a test cell: fresh (from the key), of the given kind (seed % kinds)."""
    digest = hashlib.sha256(key + f"\0{grade_id}\0{k}".encode()).digest()
    return kinds * (int.from_bytes(digest[:4], "little") % (2**28) + 1000) + kind


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
    nb = nbformat.reads(text, as_version=4)
    cells, tests, allowed, uses_torch = [], [], set(), False
    for k, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        meta = cell.metadata.get("nbgrader", {})
        grade_id = meta.get("grade_id", f"cell-{k}")
        if meta.get("grade") and not meta.get("solution"):
            after = sum(role != "test" for role, _, _ in cells)
            tests.append(_test_cell(cell.source, grade_id, meta, key, after))
            cells.append(("test", grade_id, cell.source))
        elif meta.get("solution"):
            cells.append(("solution", grade_id, cell.source))
        else:
            names, torch = _given_imports(cell.source)
            allowed |= names
            uses_torch |= torch
            cells.append(("given", grade_id, cell.source))
    return Plan(assignment, name, cells, tests, allowed, uses_torch)


def _test_cell(source, grade_id, meta, key, after):
    """A TestCell from the source of an autograded cell: its Checks object, visible and hidden calls."""
    from lstmkit.grading import CHECKS

    visible, _, rest = source.partition(HIDDEN_BEGIN)
    hidden = rest.partition(HIDDEN_END)[0]
    try:
        tree = ast.parse(source)
    except SyntaxError as e:
        raise PlanError(f"test cell {grade_id} is not valid Python: {e}") from None
    var, check, points = _checks_object(tree, grade_id)
    if check not in CHECKS:
        raise PlanError(f"test cell {grade_id}: unknown check {check!r} (lstmkit.grading.CHECKS)")
    if points != float(meta.get("points", 0)):
        raise PlanError(f"test cell {grade_id}: grading.Checks says {points:g} points, its nbgrader metadata "
                        f"{meta.get('points')}")
    n = len(CHECKS[check].kinds)
    calls = [Call(check, fn, seed, hidden=False) for fn, seeds in _calls_of(ast.parse(visible), var, grade_id)
             for seed in seeds]
    k = 0
    for fn, seeds in _calls_of(ast.parse(hidden), var, grade_id) if hidden.strip() else []:
        for seed in seeds:  # the notebook's seed fixes the kind; the grader's own seed replaces it
            calls.append(Call(check, fn, hidden_seed(key, grade_id, k, seed % n, n), hidden=True))
            k += 1
    if not calls:
        raise PlanError(f"test cell {grade_id} calls no check")
    return TestCell(grade_id, points, calls, after)


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
