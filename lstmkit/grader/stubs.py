"""The stand-in `lstmkit` package the sandbox puts in front of the student's code.

The given import cells say `from lstmkit import grading` and `from lstmkit.reference import ...`;
inside the sandbox they get:

- `lstmkit.grading`: every `check_*` is a no-op returning True (the real checks run in the trusted
  process), `adding_problem` is the real data generator (it gives no answers);
- `lstmkit.reference`: only the functions the assignment's given cells import (e.g. `init_params`,
  or `forward` in bptt) and what they need, copied from the real module; every other public function
  raises ReferenceUsed, which the grader turns into the status `flagged`;
- `lstmkit.torch`, `lstmkit.gradcheck`, `lstmkit.sequences` and any other attribute of `lstmkit`: raise
  ReferenceUsed;
- `matplotlib` and `matplotlib.pyplot`: every call does nothing (importing the real pyplot costs
  about a second per submission, and the plots are graded by hand from the submitted notebook).

Every ReferenceUsed is also appended to the sandbox's flag file, so catching it does not hide it.
"""

from __future__ import annotations

import ast
import inspect
from functools import lru_cache
from pathlib import Path

MARKER = "[lstmkit-reference-used]"

INIT = '''"""Stand-in lstmkit inside the grader's sandbox (see lstmkit/grader/stubs.py)."""

FLAGS = {flags!r}


class ReferenceUsed(Exception):
    """The answer was requested from the reference."""


def _flag(what):
    message = f"{marker} {{what}} comes from the reference: write it yourself"
    try:
        with open(FLAGS, "a") as f:
            f.write(message + "\\n")
    except OSError:
        pass
    raise ReferenceUsed(message)


def __getattr__(name):
    if name.startswith("__"):
        raise AttributeError(name)
    if name in {submodules!r}:
        import importlib

        return importlib.import_module("lstmkit." + name)
    _flag(f"lstmkit.{{name}}")
'''

BLOCKED_MODULE = '''"""Stand-in: this module gives answers, so importing it in the sandbox is flagged."""
from lstmkit import _flag

_flag("lstmkit.{name}")
'''


MATPLOTLIB = '''"""Stand-in matplotlib in the grader's sandbox: plots are graded by hand from the submitted
notebook, so here every plotting call does nothing (and costs nothing)."""


class _Nothing:
    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return self

    def __call__(self, *args, **kwargs):
        return self

    def __getitem__(self, key):
        return self

    def __iter__(self):
        return iter(())

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


_nothing = _Nothing()


def subplots(*args, **kwargs):
    return _nothing, _nothing


def use(*args, **kwargs):
    pass


def __getattr__(name):
    if name.startswith("__"):
        raise AttributeError(name)
    return _nothing
'''


def _top_level_names(node):
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}


@lru_cache(maxsize=16)
def reference_source(allowed: frozenset) -> str:
    """lstmkit/reference.py reduced to `allowed` and what they use; other public defs raise."""
    from lstmkit import reference

    tree = ast.parse(Path(reference.__file__).read_text())
    defs = {n.name: n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef))}
    keep, todo = set(), [name for name in allowed if name in defs]
    while todo:
        name = todo.pop()
        if name in keep:
            continue
        keep.add(name)
        todo += [n for n in _top_level_names(defs[name]) if n in defs and n not in keep]
    body = [n for n in tree.body if not isinstance(n, (ast.FunctionDef, ast.ClassDef)) or n.name in keep]
    lines = [ast.unparse(ast.Module(body=body, type_ignores=[])), "", "from lstmkit import _flag", ""]
    for name in sorted(defs):
        if name not in keep and not name.startswith("_"):
            lines.append(f"def {name}(*args, **kwargs):\n    _flag('lstmkit.reference.{name}')\n")
    return "\n".join(lines)


@lru_cache(maxsize=1)
def grading_source() -> str:
    from lstmkit import grading

    return "\n".join([
        '"""Stand-in lstmkit.grading: the checks run in the trusted grader, not here."""',
        "import numpy as np",
        f"ADDING_T = {grading.ADDING_T!r}",
        f"ADDING_MSE = {grading.ADDING_MSE!r}",
        inspect.getsource(grading.adding_problem),
        "def __getattr__(name):",
        "    if name.startswith('check_'):",
        "        return lambda *args, **kwargs: True",
        "    raise AttributeError(f'lstmkit.grading has no {name} in the grader sandbox')",
        "",
    ])


def write_stub_package(folder: Path, allowed_reference, flags_file: str):
    """Write the stand-in package to folder/lstmkit/ (put `folder` first on sys.path)."""
    pkg = Path(folder) / "lstmkit"
    pkg.mkdir(parents=True, exist_ok=True)
    blocked = ("torch", "gradcheck", "convert", "train", "rnn", "variants", "sequences")
    init = INIT.format(flags=flags_file, marker=MARKER, submodules=("grading", "reference", *blocked))
    (pkg / "__init__.py").write_text(init)
    (pkg / "grading.py").write_text(grading_source())
    (pkg / "reference.py").write_text(reference_source(frozenset(allowed_reference)))
    for name in blocked:
        (pkg / f"{name}.py").write_text(BLOCKED_MODULE.format(name=name))
    mpl = Path(folder) / "matplotlib"
    mpl.mkdir(exist_ok=True)
    (mpl / "__init__.py").write_text(MATPLOTLIB)
    (mpl / "pyplot.py").write_text(MATPLOTLIB)
