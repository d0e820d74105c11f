"""`lstmkit check NOTEBOOK.ipynb`: a student's own run of the visible checks, with the grader's messages.

It runs in the sandbox where user namespaces work (Linux) and, where they do not (macOS, Windows,
containers without them), directly in a child process with only the time limit, and says so: it is
the student's own code on the student's own machine.
"""

from __future__ import annotations

from pathlib import Path

from .limits import Limits
from .plan import plan_from_notebook
from .sandbox import namespaces_work
from .submission import grade_submission, make_job


def check_notebook(path, timeout=60, memory=2048, limits: Limits | None = None):
    """Run the visible checks of a student's notebook. One dict per visible check call:
    {part, check, fn, seed, kind, passed, status, message}."""
    from .grade import GraderError, _limits

    path = Path(path)
    if not path.exists():
        raise GraderError(f"{path} does not exist")
    text = path.read_text(errors="replace")
    plan = plan_from_notebook(text, path.stem, path.stem)
    job = make_job(plan, "you", text, limits=_limits(limits, timeout, memory), isolate=namespaces_work(),
                   visible_only=True)
    result = grade_submission(job)
    report = []
    for test in plan.tests:
        for call in result["parts"][test.grade_id]["calls"]:
            report.append({"part": test.grade_id, "check": call.get("check"), "fn": call.get("fn"),
                           "seed": call.get("seed"), "kind": call.get("kind"),
                           "passed": call["status"] == "pass", "status": call["status"],
                           "message": call["message"] or call.get("note", "")})
    return report


def main(args):
    """The `check` command: print one line per visible check and a summary; 0 if all pass, else 1."""
    if not namespaces_work():
        print("lstmkit check: no sandbox on this machine (it needs Linux user namespaces): your code runs "
              "directly, with only the time limit")
    report = check_notebook(args.notebook, timeout=args.timeout)
    for r in report:
        call = f"{r['fn']}(seed={r['seed']}, {r['kind']})" if r["check"] else r["part"]
        if r["passed"]:
            print(f"{r['part']}: {call} passed" + (f" ({r['message']})" if r["message"] else ""))
        else:
            print(f"{r['part']}: {call} FAILED ({r['status']}): {r['message']}")
    passed = sum(r["passed"] for r in report)
    print(f"{passed} of {len(report)} visible checks passed (the grader also runs hidden ones)")
    return 0 if passed == len(report) else 1
