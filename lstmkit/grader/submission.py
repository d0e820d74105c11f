"""Grade one submission: make_inputs (trusted) -> run (sandboxed child) -> compare (trusted).

`grade_submission(job)` is the unit of work a local process pool or a Dask worker runs. When the child
dies before it reaches every part (a cell or a call that never ends, a crash), a new child is started for
the parts it did not reach, without the cell that never finished (at most MAX_RUNS children): a slow or
broken cell costs only the parts that need it. The job is
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
MAX_RUNS = 3  # a child that dies is started again (at most twice) for the parts it did not reach
# most severe first
SEVERITY = ["flagged", "crashed", "memory", "timeout", "error", "ok"]


def part_status(part):
    """One part's status for the CSV and the feedback: `ok` (full points), `failed` (wrong answers),
    `timeout`, `error`, `memory`, `crashed`, `flagged`, or `not-run` (the child never reached its
    checks: it stopped in an earlier cell and had no restart left)."""
    if part["status"] == "ok":
        return "ok" if part["points"] >= part["max"] else "failed"
    if part["calls"] and not any(c.get("ran", True) for c in part["calls"]):
        return "not-run"
    return part["status"]


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
        if status not in {"done", "fail", "error", "flagged", "memory", "timeout"}:
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
    # SIGKILL: the hard CPU limit (one second after SIGXCPU); getattr: Windows has neither
    if sig and sig in (getattr(signal, "SIGXCPU", None), getattr(signal, "SIGKILL", None)):
        return "timeout", "did not finish within the CPU time limit"
    if run["forks_refused"]:
        return "crashed", "started too many processes (process limit)"
    if sig and sig == getattr(signal, "SIGXFSZ", None):
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
    verdicts, runtime_flags = {}, []
    cell_info = {"errors": {}, "flags": [], "running": None, "blanked": {}}
    pending = None  # the calls still to run (None: all); cell_info["blanked"]: cells left out
    for _ in range(MAX_RUNS):
        work = Path(tempfile.mkdtemp(prefix="lstmkit-grade-"))
        try:
            shown = [(g, role, "" if g in cell_info["blanked"] else source) for g, role, source in cells]
            calls = _prepare(work, job, shown, pending)
            run, info = _run_once(work, job)
            runtime_flags += [f for f in _read_flags(work) if f not in runtime_flags]
            cell_info["errors"].update(info["errors"])
            cell_info["running"] = info["running"]  # the cell this run stopped in, if it died in one
            cell_info["flags"] += [f for f in info["flags"] if f not in cell_info["flags"]]
            answered = {call["id"] for call, _, _ in calls if (work / "out" / f"{call['id']}.json").exists()}
            for call, test, inputs in calls:
                verdict = _verdict(call, inputs, work / "out", run, cell_info, job["limits"])
                if not call["hidden"]:  # seeds of hidden calls never leave this function
                    verdict.update(check=call["check"], fn=call["fn"], seed=call["seed"])
                verdicts[call["id"]] = (test, verdict)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        unanswered = [(call, test) for call, test, _ in calls if call["id"] not in answered]
        if run.get("crashed_all") or not unanswered:
            break
        # it died: while running a cell (left out next time: the parts that need it lose their points,
        # the others are graded), or in a call (its part keeps that verdict; the other parts go on)
        if info["running"] and info["running"] not in cell_info["blanked"]:
            cell_info["blanked"][info["running"]] = _death_reason(run)
            pending = {call["id"] for call, _ in unanswered}
        else:
            stuck = unanswered[0][1].grade_id
            pending = {call["id"] for call, test in unanswered if test.grade_id != stuck}
        if not pending:
            break
    for test in plan.tests:
        parts[test.grade_id]["calls"] = [v for t, v in verdicts.values() if t is test]
    defined_in = _defined_in(cells)
    for test in plan.tests:
        part = parts[test.grade_id]
        fn = test.calls[0].fn
        err = cell_info["errors"].get(defined_in.get(fn), "")
        if err.startswith("MemoryError"):
            part["calls"] = [_failed(test.check, "memory", f"cell {defined_in[fn]} ran out of memory")]
        if fn in tainted:
            part["calls"] = [_failed(test.check, "flagged", f"{tainted[fn]}: write it yourself")]
    # refused file or network access while the cells ran: the submission is flagged (the parts whose
    # checks repeat the attempt are flagged by their calls)
    return _finish(job, parts, flags + cell_info["flags"] + runtime_flags, start)


def _run_once(work, job):
    """One run of the child on the prepared `work` folder: (run, cell info)."""
    run = run_child(work, job["limits"], isolate=job["isolate"], hide=_hidden_paths(job["course"]))
    out = work / "out"
    if not (out / "ready.json").exists():
        raise SandboxUnavailable(f"the sandbox did not start:\n{run['stderr_tail']}")
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
    return run, _read_cell_info(out)


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


def _prepare(work, job, cells, pending=None):
    """The child's folder: its code, the stand-in package, the inputs of the calls (only the `pending`
    call ids, when given) and job.json. Returns [(call, test, inputs)]."""
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
            if pending is not None and call_id not in pending:
                continue
            check = grading.CHECKS[c.check]
            inputs = check.make_inputs(c.seed)
            np.savez(work / "in" / f"{call_id}.npz", **_flatten(check.child_inputs(inputs)))
            call = {"id": call_id, "check": c.check, "fn": c.fn, "hidden": c.hidden, "seed": c.seed}
            calls.append((call, test, inputs))
            job_calls.append({"id": call_id, "part": test.grade_id, "check": c.check, "fn": c.fn,
                              "after": test.after, "uses": list(check.uses),
                              "limit": job["limits"].call_seconds if check.call_limit else None})
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
            running = info.get("running")
            return {"errors": {str(k): str(v)[:300] for k, v in dict(info["errors"]).items()},
                    "flags": [str(f)[:300] for f in list(info["flags"])],
                    "running": str(running)[:100] if running else None}
    except Exception:  # noqa: BLE001, S110 - the child may leave anything
        pass
    return {"errors": {}, "flags": [], "running": None}


def _read_flags(work):
    path = work / "flags.txt"
    if not path.exists():
        return []
    with open(path, errors="replace") as f:
        text = f.read(20_000)
    return [line.replace(stubs.MARKER, "").strip() for line in text.splitlines()[:20] if line.strip()]


def _failed(check_name, status, message, kind="*"):
    """A verdict that fails every component (the call never answered, or the part is overruled)."""
    names = grading.CHECKS[check_name].component_names
    return {"status": status, "message": message, "hidden": False, "kind": kind,
            "failures": dict.fromkeys(names, message), "note": ""}


def _judge_answer(check, inputs, answer, run, cell_info):
    """(status, {component: message or None}) of one answer of the child (None: it never answered)."""
    names = check.component_names
    if run.get("crashed_all"):
        status, message = run["crashed_all"]
        return status, dict.fromkeys(names, message)
    if answer is None:
        status, message = _death_reason(run)
        if cell_info.get("running"):
            message += f" while running cell {cell_info['running']}"
        return status, dict.fromkeys(names, message)
    status, message, outputs = answer
    if status == "done":
        failures = check.judge(inputs, outputs)
        if any(m and m.startswith("the result is malformed") for m in failures.values()):
            return "crashed", failures
        return ("pass" if all(m is None for m in failures.values()) else "fail"), failures
    if status == "error" and message.startswith("NameError") and cell_info.get("blanked"):
        grade_id, (status, why) = next(iter(cell_info["blanked"].items()))  # it defined the name, then died
        return status, dict.fromkeys(names, f"{message} (cell {grade_id} was left out: {why})")
    if status == "error" and message.startswith("NameError") and cell_info["errors"]:
        grade_id, err = next(iter(cell_info["errors"].items()))
        if err.startswith("MemoryError"):
            return "memory", dict.fromkeys(names, f"cell {grade_id} ran out of memory")
        message = f"{message} (cell {grade_id}: {err})"
    return status, dict.fromkeys(names, message or status)


def _verdict(call, inputs, out, run, cell_info, limits):
    """One call's verdict: {status: pass|fail|error|..., message, hidden, kind, failures, note}; a call
    that fails with the student's earlier functions is judged again with the grader's in their place."""
    check = grading.CHECKS[call["check"]]
    own_answer = _read_outputs(out, call["id"], limits)
    own_status, own = _judge_answer(check, inputs, own_answer, run, cell_info)
    # False: the child never reached this call (it stopped while running an earlier cell)
    ran = own_answer is not None or bool(run.get("crashed_all")) or not cell_info.get("running")
    sub_status, sub = None, None
    sub_answer = (_read_outputs(out, call["id"] + "~sub", limits) if check.uses and own_status != "pass"
                  else None)
    if sub_answer is not None:
        sub_status, sub = _judge_answer(check, inputs, sub_answer, run, cell_info)
    v = grading.combine(check, call["seed"], own, sub)
    if own_status == "timeout" and v.note:  # the student's earlier function never returned
        why = next((m for m in own.values() if m), "")
        why = why[len("not run: "):] if why.startswith("not run: your ") else "did not finish with yours"
        v.note = f"{why}; {v.note}"
    if "flagged" in (own_status, sub_status):
        status = "flagged"
        v.failures = {k: m or (sub if sub_status == "flagged" else own)[k] for k, m in v.failures.items()}
    elif v.passed:
        status = "pass"
    else:
        status = sub_status or own_status
    message = v.message if status != "pass" else ""
    return {"status": status, "message": message, "hidden": call["hidden"], "kind": v.kind,
            "failures": v.failures, "note": v.note, "ran": ran}


def _finish(job, parts, flags, start):
    plan = job["plan"]
    reasons = []
    for test in plan.tests:
        part = parts[test.grade_id]
        names = grading.CHECKS[test.check].component_names
        verdicts = [grading.Verdict(test.check, 0, c.get("kind", "*"), c.get("failures") or
                                    dict.fromkeys(names, c["message"] or c["status"])) for c in part["calls"]]
        part["points"] = grading.part_points(test.points, verdicts, names) if part["calls"] else 0.0
        bad = [c for c in part["calls"] if c["status"] != "pass"]
        if not part["calls"]:
            bad = [{"status": part["status"] if part["message"] else "error",
                    "message": part["message"] or "no check ran", "hidden": False}]
        notes = [c["note"] for c in part["calls"] if c.get("note")]
        if bad:
            status = worst("ok" if c["status"] == "fail" else c["status"] for c in bad)
            first = next(c for c in bad if ("ok" if c["status"] == "fail" else c["status"]) == status)
            part["status"] = status
            where = "hidden test" if first["hidden"] else "visible test"
            kind = first.get("kind", "*")
            part["message"] = (first["message"] or status) + (f" ({where}, {kind})" if kind != "*" else
                                                               " (hidden test)" if first["hidden"] else "")
        elif notes:
            part["message"] = notes[0]
        if part["points"] < test.points:
            reasons.append(f"{test.grade_id}: {part['message']}")
    status = worst(p["status"] for p in parts.values())
    extra = [f for f in flags if not any(f in r for r in reasons)]
    if extra:
        status = "flagged"
        reasons += extra[:3]
    return {"student": job["student"], "parts": parts, "status": status, "reason": "; ".join(reasons),
            "total": round(sum(p["points"] for p in parts.values()), 2), "max": plan.max_points,
            "seconds": time.perf_counter() - start}
