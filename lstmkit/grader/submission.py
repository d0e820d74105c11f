"""Grade one submission: make_inputs (trusted) -> run (sandboxed child) -> compare (trusted).

`grade_submission(job)` is the unit of work a local process pool or a Dask worker runs. The job is
plain data (the plan, the student's notebook text, limits), so it needs nothing from the course
folder; it returns plain data (points and messages per test cell).
"""

from __future__ import annotations

import json
import shutil
import signal
import tempfile
import time
from pathlib import Path

import nbformat
import numpy as np

import lstmkit
from lstmkit import grading

from . import stubs
from .limits import Limits
from .plan import student_cells
from .sandbox import SandboxUnavailable, run_child
from .scan import scan

HERE = Path(__file__).resolve().parent
PACKAGE = Path(lstmkit.__file__).resolve().parent
# most severe first
SEVERITY = ["flagged", "crashed", "memory", "timeout", "error", "ok"]


def worst(statuses):
    statuses = list(statuses) or ["ok"]
    return min(statuses, key=SEVERITY.index)


def _flatten(d, prefix=""):
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}/"))
        else:
            out[f"{prefix}{k}"] = np.asarray(v)
    return out


def _hidden_paths(course):
    """What the child may not see: the course, the real lstmkit package, the whole checkout it came from
    (its .git holds the solutions' history), the repository's tests and the temporary folder (other
    submissions' copies; the child gets a private /tmp). Python's own folders inside are bound back."""
    paths = [str(PACKAGE), str(PACKAGE.parent / "tests"), tempfile.gettempdir()]
    if (PACKAGE.parent / "pyproject.toml").is_file():  # a source checkout, not site-packages
        paths.append(str(PACKAGE.parent))
    if course:
        paths.append(str(Path(course).resolve()))
    return paths


def _read_outputs(out_dir, call_id, limits: Limits):
    """The child's answer for one call: (status, message, outputs) with outputs rebuilt from arrays only."""
    meta_path, npz_path = out_dir / f"{call_id}.json", out_dir / f"{call_id}.npz"
    if not meta_path.exists() or not npz_path.exists():
        return None
    if meta_path.stat().st_size > limits.answer_bytes:
        return "crashed", "the result is malformed (too large)", None
    try:
        info = json.loads(meta_path.read_text())
        status, meta = str(info["status"]), dict(info["meta"])
        message = str(info["message"])[:limits.message_chars]
        if status not in {"done", "fail", "error", "flagged", "memory"}:
            raise ValueError(status)
        with np.load(npz_path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
        outputs = {}

        def rebuild(name):
            kind = meta[name]["kind"]
            if kind == "array":
                return arrays[name]
            if kind == "none":
                return None
            if kind == "dict":
                return {str(k): rebuild(f"{name}/{k}") for k in meta[name]["keys"]}
            return type(str(meta[name]["type"]), (), {})()  # stands for an unusable object

        for name in meta:
            if "/" not in name:
                outputs[name] = rebuild(name)
    except Exception as e:  # noqa: BLE001 - whatever the child left
        return "crashed", f"the result is malformed ({type(e).__name__})", None
    return status, message, outputs


def _death_reason(run):
    """Status and message for calls the child never answered."""
    sig = run["signal"]
    if run["timed_out"]:
        return "timeout", "did not finish within the time limit (wall clock)"
    if sig in (signal.SIGXCPU, signal.SIGKILL):  # SIGKILL: the hard CPU limit (one second after SIGXCPU)
        return "timeout", "did not finish within the CPU time limit"
    if run["forks_refused"]:
        return "crashed", "started too many processes (process limit)"
    if sig == signal.SIGXFSZ:
        return "crashed", "wrote too much output or too large a file (size limit)"
    if "MemoryError" in run["stderr_tail"]:
        return "memory", "ran out of memory"
    if sig:
        return "crashed", f"the Python process died ({signal.Signals(sig).name})"
    return "crashed", f"the Python process exited (code {run['returncode']}) before finishing"


def make_job(plan, student, notebook_text, *, course=None, limits: Limits | None = None, isolate=True,
             visible_only=False):
    return dict(plan=plan, student=student, notebook=notebook_text, course=str(course) if course else None,
                limits=limits or Limits(), isolate=isolate, visible_only=visible_only)


def grade_submission(job):
    """Grade one notebook. Returns {student, parts: {grade_id: {...}}, status, reason, seconds}."""
    start = time.perf_counter()
    plan = job["plan"]
    parts = {t.grade_id: {"points": 0.0, "max": t.points, "status": "ok", "message": "", "calls": []}
             for t in plan.tests}
    try:
        nb = nbformat.reads(job["notebook"], as_version=4)
    except Exception as e:  # noqa: BLE001 - a broken file
        for p in parts.values():
            p.update(status="error", message=f"the notebook could not be read ({type(e).__name__})")
        return _finish(job, parts, [], start)
    cells = student_cells(plan, nb)
    tainted, flags = scan(cells, plan.allowed_reference)
    work = Path(tempfile.mkdtemp(prefix="lstmkit-grade-"))
    try:
        calls = _prepare(work, job, cells)
        run = run_child(work, job["limits"], isolate=job["isolate"], hide=_hidden_paths(job["course"]))
        out = work / "out"
        if not (out / "ready.json").exists():
            raise SandboxUnavailable(f"the sandbox did not start:\n{run['stderr_tail']}")
        cell_info = _read_cell_info(out)
        runtime_flags = _read_flags(work)
        cap = job["limits"].file_bytes
        flood = max((work / f).stat().st_size for f in ("stdout.txt", "stderr.txt")) >= cap
        forks = run["forks_refused"] or (out / "forks.json").exists()
        if flood or forks:  # the whole child is suspect: every part is affected
            what = ("wrote too much output (output flood)" if flood
                    else "started too many processes (process limit)")
            run = {**run, "crashed_all": ("crashed", what)}
        elif run["oom_killed"]:  # its processes together outgrew the memory limit: likewise
            run = {**run, "crashed_all": ("memory", "its processes together used more than the memory "
                                                    "limit (the kernel killed one)")}
        for call, test, inputs in calls:
            answer = _read_outputs(out, call["id"], job["limits"])
            verdict = _judge(call, inputs, answer, run, cell_info, call["hidden"])
            if not call["hidden"]:  # seeds of hidden calls never leave this function
                verdict.update(check=call["check"], fn=call["fn"], seed=call["seed"])
            parts[test.grade_id]["calls"].append(verdict)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    defined_in = _defined_in(cells)
    for test in plan.tests:
        part = parts[test.grade_id]
        fn = test.calls[0].fn
        err = cell_info["errors"].get(defined_in.get(fn), "")
        if err.startswith("MemoryError"):
            part["calls"] = [{"status": "memory", "message": f"cell {defined_in[fn]} ran out of memory",
                              "hidden": False}]
        if fn in tainted:
            part["calls"] = [{"status": "flagged", "message": f"{tainted[fn]}: write it yourself",
                              "hidden": False}]
    # refused file or network access while the cells ran: the submission is flagged (the parts whose
    # checks repeat the attempt are flagged by their calls)
    return _finish(job, parts, flags + cell_info["flags"] + runtime_flags, start)


def _defined_in(cells):
    """Function or class name -> grade_id of the (last) solution cell that defines it."""
    import ast

    out = {}
    for grade_id, _role, source in cells:
        try:
            tree = ast.parse(source)
        except SyntaxError:
            continue
        for node in tree.body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                out[node.name] = grade_id
    return out


def _prepare(work, job, cells):
    plan = job["plan"]
    (work / "in").mkdir()
    (work / "out").mkdir()
    shutil.copy(HERE / "child.py", work / "child.py")
    shutil.copy(PACKAGE / "grading_run.py", work / "_lstmkit_run.py")
    flags_file = ("/tmp/work" if job["isolate"] else str(work)) + "/flags.txt"
    stubs.write_stub_package(work / "pkgs", plan.allowed_reference, flags_file)
    calls, job_calls = [], []
    for test in plan.tests:
        for k, c in enumerate(test.calls):
            if c.hidden and job["visible_only"]:
                continue
            call_id = f"{test.grade_id}-{k}"
            inputs = grading.CHECKS[c.check].make_inputs(c.seed)
            child_inputs = grading.CHILD_INPUTS.get(c.check, lambda x: x)(inputs)
            np.savez(work / "in" / f"{call_id}.npz", **_flatten(child_inputs))
            call = {"id": call_id, "check": c.check, "fn": c.fn, "hidden": c.hidden, "seed": c.seed}
            calls.append((call, test, inputs))
            job_calls.append({k: call[k] for k in ("id", "check", "fn")})
    spec = {"cells": cells, "calls": job_calls, "hide": _hidden_paths(job["course"]),
            "isolate": job["isolate"], "limits": job["limits"].child_view(),
            "guard_torch": not plan.uses_torch}
    (work / "job.json").write_text(json.dumps(spec))
    return calls


def _read_cell_info(out):
    path = out / "cells.json"
    try:
        if path.exists() and path.stat().st_size < 100_000:
            info = json.loads(path.read_text())
            return {"errors": {str(k): str(v)[:300] for k, v in dict(info["errors"]).items()},
                    "flags": [str(f)[:300] for f in list(info["flags"])]}
    except Exception:  # noqa: BLE001, S110 - the child may leave anything
        pass
    return {"errors": {}, "flags": []}


def _read_flags(work):
    path = work / "flags.txt"
    if not path.exists():
        return []
    with open(path, errors="replace") as f:
        text = f.read(20_000)
    return [line.replace(stubs.MARKER, "").strip() for line in text.splitlines()[:20] if line.strip()]


def _judge(call, inputs, answer, run, cell_info, hidden):
    """One call's verdict: {status: pass|fail|error|..., message, hidden}."""
    if run.get("crashed_all"):
        status, message = run["crashed_all"]
        return {"status": status, "message": message, "hidden": hidden}
    if answer is None:
        status, message = _death_reason(run)
        return {"status": status, "message": message, "hidden": hidden}
    status, message, outputs = answer
    if status == "done":
        try:
            grading.CHECKS[call["check"]].compare(inputs, outputs)
            return {"status": "pass", "message": "", "hidden": hidden}
        except AssertionError as e:
            return {"status": "fail", "message": str(e), "hidden": hidden}
        except Exception as e:  # noqa: BLE001 - outputs the check could not read
            return {"status": "crashed", "message": f"the result is malformed ({type(e).__name__}: {e})",
                    "hidden": hidden}
    if status == "error" and message.startswith("NameError") and cell_info["errors"]:
        grade_id, err = next(iter(cell_info["errors"].items()))
        if err.startswith("MemoryError"):
            return {"status": "memory", "message": f"cell {grade_id} ran out of memory", "hidden": hidden}
        message = f"{message} (cell {grade_id} raised {err})"
    return {"status": status, "message": message, "hidden": hidden}


def _finish(job, parts, flags, start):
    plan = job["plan"]
    reasons = []
    for test in plan.tests:
        part = parts[test.grade_id]
        bad = [c for c in part["calls"] if c["status"] != "pass"]
        if not part["calls"] or bad:
            part["points"] = 0.0
            if not bad:
                bad = [{"status": "error", "message": "no check ran", "hidden": False}]
            status = worst("ok" if c["status"] == "fail" else c["status"] for c in bad)
            first = next(c for c in bad if ("ok" if c["status"] == "fail" else c["status"]) == status)
            part["status"] = status
            part["message"] = first["message"] + (" (hidden test)" if first["hidden"] else "")
            part["message"] = part["message"] or status
            reasons.append(f"{test.grade_id}: {part['message']}")
        else:
            part["points"] = test.points
    status = worst(p["status"] for p in parts.values())
    extra = [f for f in flags if not any(f in r for r in reasons)]
    if extra:
        status = "flagged"
        reasons += extra[:3]
    return {"student": job["student"], "parts": parts, "status": status, "reason": "; ".join(reasons),
            "total": sum(p["points"] for p in parts.values()), "max": plan.max_points,
            "seconds": time.perf_counter() - start}
