"""Find answers taken from the reference in the student's cells (static, before anything runs).

Flagged uses: `lstmkit` imports other than `lstmkit.grading` and the reference functions the
assignment's given cells import (e.g. `forward` in bptt); `lstmkit.torch`; torch's own LSTM
(`nn.LSTM`, `nn.LSTMCell`, `torch._VF`, `torch.lstm`, `lstm_cell`); `__import__` or
`importlib.import_module` of a string that names lstmkit.

A use inside a function (or class) taints that function; a use at the top of a cell taints the
names it binds. Every function that refers to a tainted name is tainted in turn, and a test cell
whose student function is tainted scores 0 with the status `flagged`. The sandbox's stand-in
lstmkit catches at run time what a static scan cannot see.
"""

from __future__ import annotations

import ast

TORCH_NAMES = {"LSTM", "LSTMCell", "_VF", "lstm", "lstm_cell"}
TORCH_OWNERS = {"torch", "nn", "torch.nn", "_VF", "torch._VF", "torch.nn.modules.rnn", "rnn"}


def _dotted(node):
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
        return ".".join(reversed(parts))
    return None


def _uses(node, allowed):
    """Messages for every reference use directly in `node` (not inside nested defs: they are separate)."""
    found = []

    def lstmkit_import(module, names):
        if module == "lstmkit.grading" or (module == "lstmkit" and names and set(names) <= {"grading"}):
            return
        if module == "lstmkit.reference" and names and set(names) <= allowed:
            return
        what = module + (f" ({', '.join(names)})" if names else "")
        found.append(f"imports {what}")

    for sub in ast.walk(node):
        if isinstance(sub, ast.Import):
            for a in sub.names:
                if a.name.split(".")[0] == "_lstmkit_run":
                    found.append("imports the grader's _lstmkit_run")
                if a.name.split(".")[0] == "lstmkit":
                    lstmkit_import(a.name, [])
                if a.name.startswith("torch._VF") or a.name == "torch.nn.modules.rnn":
                    found.append(f"imports {a.name}")
        elif isinstance(sub, ast.ImportFrom) and sub.module:
            names = [a.name for a in sub.names]
            if sub.module.split(".")[0] == "_lstmkit_run":
                found.append("imports the grader's _lstmkit_run")
            if sub.module.split(".")[0] == "lstmkit":
                lstmkit_import(sub.module, names)
            if sub.module.split(".")[0] == "torch" and TORCH_NAMES & set(names):
                found.append(f"imports {', '.join(sorted(TORCH_NAMES & set(names)))} from {sub.module}")
        elif isinstance(sub, ast.Attribute):
            owner = _dotted(sub.value)
            if sub.attr in TORCH_NAMES and owner in TORCH_OWNERS:
                found.append(f"uses {owner}.{sub.attr}")
            if owner and owner.split(".")[0] == "lstmkit":
                if owner == "lstmkit":
                    ok = sub.attr in {"grading", "reference"}
                elif owner == "lstmkit.reference":
                    ok = sub.attr in allowed
                else:
                    ok = owner.startswith("lstmkit.grading")
                if not ok:
                    found.append(f"uses {owner}.{sub.attr}")
        elif (isinstance(sub, ast.Name) and sub.id == "_lstmkit_run") or (
                isinstance(sub, ast.Constant) and isinstance(sub.value, str) and "_lstmkit_run" in sub.value):
            found.append("uses the grader's _lstmkit_run")
        elif isinstance(sub, ast.Call) and _dotted(sub.func) in {"__import__", "importlib.import_module"}:
            args = [a.value for a in sub.args if isinstance(a, ast.Constant) and isinstance(a.value, str)]
            if any("lstmkit" in a for a in args):
                found.append(f"imports {args[0]} dynamically")
    return found


def _free_names(node):
    """Names a def or class reads that it does not bind itself (arguments, local assignments)."""
    loads = {n.id for n in ast.walk(node) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}
    stores = {n.id for n in ast.walk(node) if isinstance(n, ast.Name) and not isinstance(n.ctx, ast.Load)}
    args = {a.arg for n in ast.walk(node) if isinstance(n, ast.arguments)
            for a in [*n.posonlyargs, *n.args, *n.kwonlyargs, *filter(None, [n.vararg, n.kwarg])]}
    return loads - stores - args


def _bound_names(stmt):
    names = set()
    for sub in ast.walk(stmt):
        if isinstance(sub, ast.Name) and isinstance(sub.ctx, ast.Store):
            names.add(sub.id)
        elif isinstance(sub, (ast.Import, ast.ImportFrom)):
            names |= {(a.asname or a.name).split(".")[0] for a in sub.names}
    return names


def scan(cells, allowed_reference):
    """cells: [(grade_id, role, source)] run by the sandbox. Returns ({tainted name: message}, [messages])
    where the messages list holds every use found (for the reason even when no test is affected)."""
    allowed = set(allowed_reference)
    defs = {}        # name -> set of names its body refers to
    tainted = {}     # name -> message
    messages = []
    for grade_id, role, source in cells:
        if role != "solution":
            continue
        try:
            tree = ast.parse("\n".join("pass" if ln.lstrip().startswith(("%", "!")) else ln
                                       for ln in source.splitlines()))
        except SyntaxError:
            continue
        for stmt in tree.body:
            if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                defs[stmt.name] = _free_names(stmt)
                uses = _uses(stmt, allowed)
                if uses:
                    msg = f"{stmt.name} (cell {grade_id}) {uses[0]}"
                    tainted[stmt.name] = msg
                    messages.append(msg)
            else:
                uses = _uses(stmt, allowed)
                if uses:
                    msg = f"cell {grade_id} {uses[0]}"
                    messages.append(msg)
                    for name in _bound_names(stmt):
                        tainted.setdefault(name, msg)
                else:  # e.g. model = Adder(): tainted if Adder is, found by the loop below
                    refs = {n.id for n in ast.walk(stmt) if isinstance(n, ast.Name)}
                    for name in _bound_names(stmt):
                        defs.setdefault(name, set()).update(refs)
    changed = True
    while changed:
        changed = False
        for name, refs in defs.items():
            if name not in tainted:
                hit = next((tainted[r] for r in sorted(refs) if r in tainted and r != name), None)
                if hit:
                    tainted[name] = hit
                    changed = True
    return tainted, messages
