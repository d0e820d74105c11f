"""`lstmkit grade`: a batch of submissions, locally or on a Dask cluster.

The coordinating process reads the plan from the source notebook, sends one job per student to
`grade_submission` (inline, a local process pool, or `Client(address).map` on a Dask cluster: the
same function on the same data, so the results are identical), and alone writes the outputs:
the CSV, the gradebook, the feedback and the autograded notebooks.
"""

from __future__ import annotations

import csv
import os
import tempfile
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

from tqdm.auto import tqdm

from .course import LatePluginError, check_late_plugin, load_course
from .feedback import write_autograded, write_feedback
from .gradebook import check_assignment, due_date, save_scores, timestamp_problems
from .limits import Limits
from .plan import load_plan
from .sandbox import namespaces_work
from .submission import SEVERITY, grade_submission, make_job, part_status


class GraderError(RuntimeError):
    """Bad usage: unknown assignment, no submissions, missing course folder."""


def _submissions(course, assignment, plan, students):
    root = course / "submitted"
    if not root.is_dir():
        raise GraderError(f"{root} does not exist: put submissions in submitted/<student>/{assignment}/")
    folders = {p.parent.name: p for p in sorted(root.glob(f"*/{assignment}")) if p.is_dir()}
    if students:
        unknown = sorted(set(students) - set(folders))
        if unknown:
            raise GraderError(f"no submission of {assignment} for {', '.join(unknown)} in {root}")
        folders = {s: folders[s] for s in sorted(set(students))}
    if not folders:
        raise GraderError(f"no submissions of {assignment} in {root}/<student>/{assignment}/")
    return folders


def _read(folder, plan):
    path = folder / f"{plan.notebook}.ipynb"
    if not path.exists():
        found = sorted(folder.glob("*.ipynb"))
        if len(found) != 1:
            return ""
        path = found[0]
    return path.read_text(errors="replace")


def _run_jobs(jobs, workers, scheduler, progress):
    bar = tqdm(total=len(jobs), desc="grading", unit="submission", disable=not progress)
    results = []
    if scheduler:
        from dask.distributed import Client
        from dask.distributed import as_completed as dask_completed

        with Client(scheduler) as client:
            futures = client.map(grade_submission, jobs, key=[f"lstmkit-grade-{j['student']}-{id(j)}"
                                                              for j in jobs], pure=False)
            for future in dask_completed(futures):
                results.append(future.result())
                bar.update()
    elif workers == 1 or len(jobs) == 1:
        for job in jobs:
            results.append(grade_submission(job))
            bar.update()
    else:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            for future in as_completed([pool.submit(grade_submission, job) for job in jobs]):
                results.append(future.result())
                bar.update()
    bar.close()
    return sorted(results, key=lambda r: r["student"])


def _points(x):
    return f"{x:g}"


def csv_columns(plan):
    """student, then per part its points, `<part>:status` and `<part>:reason`, then total, max, status,
    reason (the submission's)."""
    per_part = [c for t in plan.tests for c in (t.grade_id, f"{t.grade_id}:status", f"{t.grade_id}:reason")]
    return ["student", *per_part, "total", "max", "status", "reason"]


def csv_row(plan, result):
    row = {"student": result["student"]}
    for t in plan.tests:
        part = result["parts"][t.grade_id]
        row.update({t.grade_id: part["points"], f"{t.grade_id}:status": part_status(part),
                    f"{t.grade_id}:reason": part["message"]})
    row.update(total=result["total"], max=result["max"], status=result["status"], reason=result["reason"])
    return row


def write_csv(path, plan, rows):
    """Write the CSV: the rows of this run replace those students' rows, every other row is kept.

    A file written before the per-part columns existed is read too: its rows keep their points, and
    their new columns stay empty until those students are graded again. Atomic: the new file is
    written next to the old one and renamed over it, so a crash mid-write leaves the old file.
    Returns the rows of the whole file."""
    path = Path(path)
    columns = csv_columns(plan)
    new = {row["student"]: {k: _points(v) if isinstance(v, float) else v for k, v in row.items()}
           for row in rows}
    kept = {}
    if path.exists():
        with open(path, newline="") as f:
            for old in csv.DictReader(f):
                if old.get("student") and old["student"] not in new:
                    kept[old["student"]] = {c: old.get(c) or "" for c in columns}
    merged = [{**kept, **new}[s] for s in sorted({*kept, *new})]
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=columns)
            writer.writeheader()
            writer.writerows(merged)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return merged


def summary_table(plan, rows, results):
    """The table printed at the end: one line per student, then the count per status."""
    width = max([7, *(len(r["student"]) for r in rows)])
    lines = [f"{'student':<{width}}  {'points':>11}  {'status':<8}  reason"]
    for row in rows:
        pts = f"{_points(row['total'])} / {_points(row['max'])}"
        reason = row["reason"] if len(row["reason"]) <= 90 else row["reason"][:87] + "..."
        lines.append(f"{row['student']:<{width}}  {pts:>11}  {row['status']:<8}  {reason}")
    counts = {s: sum(r["status"] == s for r in rows) for s in SEVERITY}
    seconds = [r["seconds"] for r in results]
    lines.append(", ".join(f"{n} {s}" for s, n in counts.items() if n)
                 + f"; {sum(seconds) / max(1, len(seconds)):.2f} s per submission")
    return "\n".join(lines)


def late_line(late):
    """The late submissions of a run, with the penalty the course's plugin gave (stored in the gradebook)."""
    def when(seconds):
        hours = seconds / 3600
        return f"{hours:.1f} hours" if hours < 48 else f"{hours / 24:.1f} days"

    return ("late (penalty in the gradebook, not in the points above): "
            + ", ".join(f"{s} ({when(sec)}, -{_points(pen or 0)})" for s, (sec, pen) in sorted(late.items())))


def _limits(limits, timeout, memory):
    try:
        return limits or Limits(wall=float(timeout), memory_mb=int(memory))
    except ValueError as e:
        raise GraderError(str(e)) from None


def grade(assignment, course="assignments", students=None, workers=None, scheduler=None, timeout=60,
          memory=2048, progress=True, limits: Limits | None = None):
    """Grade every submission of `assignment`; write the CSV, gradebook, feedback, autograded notebooks.

    The sandbox's limits: `limits`, or the defaults with `timeout` (wall seconds) and `memory` (MB).
    Returns one dict per student (sorted by student) with the CSV's columns.
    """
    limits = _limits(limits, timeout, memory)
    course = Path(course)
    if not course.is_dir():
        raise GraderError(f"course folder {course} does not exist (use --course DIR)")
    if not (course / "source" / assignment).is_dir():
        known = sorted(p.name for p in (course / "source").glob("*") if p.is_dir())
        raise GraderError(f"unknown assignment '{assignment}' (the course has: {', '.join(known) or 'none'})")
    plan = load_plan(course, assignment)
    config = load_course(course)
    check_assignment(config, plan)
    folders = _submissions(course, assignment, plan, students)
    no_time, bad_time = timestamp_problems(folders)
    if bad_time:  # lateness would be decided wrongly: stop before grading
        raise GraderError("unreadable submission times, nothing was graded:\n  "
                          + "\n  ".join(bad_time.values()))
    due = due_date(config, assignment)
    try:
        check_late_plugin(config, next(iter(folders)), plan.max_points)
    except LatePluginError as e:
        raise GraderError(f"{e}; nothing was graded: fix the plugin (nbgrader_config.py's "
                          f"AssignLatePenalties.plugin_class) and run again") from None
    if not namespaces_work():
        raise GraderError("the sandbox needs bubblewrap (`bwrap`) with user, network, ipc and pid "
                          "namespaces; "
                          "it is not available on this machine")
    texts = {student: _read(folder, plan) for student, folder in folders.items()}
    jobs = [make_job(plan, student, text, course=course.resolve(), limits=limits)
            for student, text in texts.items()]
    results = _run_jobs(jobs, workers or os.cpu_count() or 1, scheduler, progress)
    rows = [csv_row(plan, r) for r in results]
    # the CSV first: if writing the gradebook fails (a late-penalty plugin that raises for one student,
    # a database server that went away), the grading is not lost
    csv_path = course / f"grades-{assignment}.csv"
    write_csv(csv_path, plan, rows)
    try:
        late = save_scores(config, plan, results, folders, texts)
    except LatePluginError as e:
        raise GraderError(f"{e}; {csv_path} was written, the gradebook only in part: fix the plugin and "
                          f"run again") from None
    write_feedback(config, assignment, [r["student"] for r in results])
    for r in results:
        student = r["student"]
        write_autograded(course / "autograded" / student / assignment / f"{plan.notebook}.ipynb", plan,
                         texts[student], r)
    if progress:
        print(summary_table(plan, rows, results))
        if late:
            print(late_line(late))
        if due is not None and no_time:
            print("no timestamp.txt (on time, unless the gradebook already holds a later time): "
                  + ", ".join(no_time))
    return rows
