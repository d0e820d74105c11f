"""`lstmkit check` where the sandbox is missing (macOS, Windows), without a full course."""

import ast
import subprocess
import sys
from argparse import Namespace
from pathlib import Path

import nbformat

from lstmkit.grader import check

ROOT = Path(__file__).resolve().parents[1]


def test_the_child_imports_nothing_posix_only_at_module_level():
    tree = ast.parse((ROOT / "lstmkit" / "grader" / "child.py").read_text())
    top = {a.name for node in tree.body if isinstance(node, ast.Import) for a in node.names}
    top |= {node.module for node in tree.body if isinstance(node, ast.ImportFrom)}
    assert not top & {"resource", "fcntl"}, top  # ctypes exists everywhere; libc is loaded on POSIX only
    # and it loads where `resource` does not exist (as on Windows)
    code = ("import sys, runpy; sys.modules['resource'] = None; "
            f"runpy.run_path({str(ROOT / 'lstmkit' / 'grader' / 'child.py')!r}, run_name='child')")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_check_runs_without_the_sandbox_and_says_so(tmp_path, monkeypatch, capsys):
    nb = nbformat.read(ROOT / "assignments" / "source" / "gates" / "gates.ipynb", 4)
    for cell in nb.cells:  # a mistake in cell_forward that shows only when B = 1 or H = 1
        cell.source = cell.source.replace("h = o * np.tanh(c)", "h = np.squeeze(o * np.tanh(c))")
    path = tmp_path / "gates.ipynb"
    nbformat.write(nb, path)
    monkeypatch.setattr(check, "namespaces_work", lambda: False)
    assert check.main(Namespace(notebook=str(path), timeout=60)) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("lstmkit check: no sandbox on this machine")
    failed = "test_cell_forward: cell_forward(seed=0, B = 1) FAILED (fail): next h has shape"
    assert any(line.startswith(failed) for line in lines), lines
    assert lines[-1].startswith("11 of 13 visible checks passed")
