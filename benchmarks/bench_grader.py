"""Benchmark: `lstmkit grade` on a class of `gates` submissions, against plain `nbgrader autograde`.

Builds a temporary course (the real source notebook, the release made by `nbgrader generate_assignment`)
with N submissions, a mix of the honest solution and typical wrong answers, then times:

- `lstmkit grade gates --workers 1` and `--workers 2` on all N (wall clock of the whole command,
  including start-up, the gradebook, feedback and autograded notebooks): seconds per submission and
  the speedup from 1 to 2 workers;
- plain `nbgrader autograde gates` on a subset of K of the same submissions (it takes a few seconds per
  notebook), extrapolated to N: the ratio says how much faster or slower the sandboxed grader is.

    .venv/bin/python benchmarks/bench_grader.py [--n 200] [--nbgrader-subset 10] [--timeout 60]

Targets (issue 7): <= 0.5 s per submission on 2 cores, 200 submissions in < 2 minutes, >= 1.7x from 1 to 2
workers. Not a test: timings depend on the machine and on its load.
"""

from __future__ import annotations

import argparse
import csv
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from grader_corpus import nbgrader, new_course, replace, submit  # noqa: E402

# name -> edit of the source notebook (None: the honest solution); cycled over the class, honest twice
VARIANTS = {
    "honest": None,
    "no_tanh": ("cell_forward", "h = o * np.tanh(c)", "h = o * c"),
    "honest2": None,
    "forget_on_g": ("cell_forward", "c = f * c_prev + i * g", "c = i * c_prev + f * g"),
    "gate_order": ("gates", "i = sigmoid(a[:, 0 * H:1 * H])\n    f = sigmoid(a[:, 1 * H:2 * H])",
                   "i = sigmoid(a[:, 1 * H:2 * H])\n    f = sigmoid(a[:, 0 * H:1 * H])"),
    "naive_sigmoid": ("sigmoid", "return np.where(z >= 0, 1.0 / (1.0 + e), e / (1.0 + e))",
                      "return 1.0 / (1.0 + np.exp(-z))"),
}


def build_class(course, n):
    import nbformat

    source = course / "source" / "gates" / "gates.ipynb"
    names = list(VARIANTS)
    students = []
    for k in range(n):
        variant = names[k % len(names)]
        nb = nbformat.read(source, 4)
        if VARIANTS[variant] is not None:
            replace(nb, *VARIANTS[variant])
        student = f"s{k:03d}_{variant}"
        submit(course, student, "gates", nb)
        students.append(student)
    return students


def timed(cmd, cwd):
    start = time.perf_counter()
    r = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if r.returncode != 0:
        raise SystemExit(f"{' '.join(map(str, cmd))} failed:\n{r.stdout}\n{r.stderr}")
    return seconds


def lstmkit_grade(course, workers, timeout):
    cmd = [sys.executable, "-m", "lstmkit.cli", "grade", "gates", "--course", str(course),
           "--workers", str(workers), "--timeout", str(timeout)]
    seconds = timed(cmd, ROOT)
    with open(course / "grades-gates.csv") as f:
        rows = list(csv.DictReader(f))
    return seconds, rows


def nbgrader_autograde(pristine, subset, students, tmp):
    """Plain nbgrader on `subset` of the students, in a copy of the course before any grading."""
    course = tmp / "nbgrader_course"
    shutil.copytree(pristine, course)
    for student in students[:subset]:
        shutil.copytree(pristine.parent / "course" / "submitted" / student,
                        course / "submitted" / student)
    start = time.perf_counter()
    r = nbgrader("autograde", "gates", "--force", cwd=course)
    seconds = time.perf_counter() - start
    if r.returncode != 0:
        raise SystemExit(f"nbgrader autograde failed:\n{r.stdout}\n{r.stderr}")
    return seconds


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200, help="submissions (default 200)")
    parser.add_argument("--nbgrader-subset", type=int, default=10, help="submissions for plain nbgrader")
    parser.add_argument("--timeout", type=float, default=60, help="lstmkit's wall limit per submission")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench_grader_") as tmp:
        tmp = Path(tmp)
        print(f"building a course with {args.n} submissions of gates ...", flush=True)
        pristine = new_course(tmp / "pristine", assignments=("gates",))
        course = tmp / "course"
        shutil.copytree(pristine, course)
        students = build_class(course, args.n)

        results = {}
        for workers in (1, 2):
            print(f"lstmkit grade --workers {workers} ...", flush=True)
            results[workers] = lstmkit_grade(course, workers, args.timeout)
        rows = results[2][1]
        assert [r["total"] for r in results[1][1]] == [r["total"] for r in rows], "1 and 2 workers disagree"
        k = min(args.nbgrader_subset, args.n)
        print(f"nbgrader autograde on {k} of them ...", flush=True)
        t_nb = nbgrader_autograde(pristine, k, students, tmp)

    n = args.n
    t1, t2 = results[1][0], results[2][0]
    nb_per = t_nb / k
    statuses = Counter(r["status"] for r in rows)
    full = sum(r["total"] == r["max"] for r in rows)
    print()
    print(f"{n} submissions of gates ({full} with full marks; statuses: "
          + ", ".join(f"{s} {c}" for s, c in sorted(statuses.items())) + ")")
    print(f"{'grader':<34} {'total s':>9} {'s/submission':>13} {'vs nbgrader':>12}")
    print(f"{'lstmkit grade --workers 1':<34} {t1:>9.1f} {t1 / n:>13.3f} {(t1 / n) / nb_per:>11.2f}x")
    print(f"{'lstmkit grade --workers 2':<34} {t2:>9.1f} {t2 / n:>13.3f} {(t2 / n) / nb_per:>11.2f}x")
    label = f"nbgrader autograde ({k}, x{n / k:g} extrap.)"
    print(f"{label:<34} {nb_per * n:>9.1f} {nb_per:>13.3f} {1:>11.2f}x")
    print(f"speedup from 1 to 2 workers: {t1 / t2:.2f}x (target >= 1.7x)")
    print(f"nbgrader's time is measured on {k} submissions and extrapolated linearly to {n}; "
          "'vs nbgrader' = lstmkit's time per submission / nbgrader's (below 1: lstmkit is faster)")


if __name__ == "__main__":
    main()
