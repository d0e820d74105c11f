"""Same-machine A/B of `lstmkit grade`: seconds per `gates` submission with 1 worker, two or more checkouts.

Each checkout (a folder with its own lstmkit/, assignments/ and tests/grader_corpus.py, e.g. an old commit
unpacked with `git archive <commit> | tar -x -C /tmp/old`) builds its own class of N gates submissions
with its own bench_grader.py (the source notebooks changed between versions), once. Then each round
grades every checkout's class from scratch (a fresh copy of it), with that checkout first on
PYTHONPATH, the order of the checkouts reversed every other round, so that the load of a shared
machine falls on all of them alike.

    .venv/bin/python benchmarks/ab_grader.py /tmp/old . [--n 100] [--rounds 4]

Prints each run and, per checkout, the median and range of the seconds per submission (the wall clock
of the whole command: start-up, gradebook, feedback and autograded notebooks included), with the load
average before and after. Not a test.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BUILD = """
import shutil, sys
from pathlib import Path
sys.path[:0] = [sys.argv[1] + "/tests", sys.argv[1] + "/benchmarks"]
from bench_grader import build_class
from grader_corpus import new_course
dest = Path(sys.argv[2])
pristine = new_course(dest / "pristine", assignments=("gates",))
shutil.copytree(pristine, dest / "class")
build_class(dest / "class", int(sys.argv[3]))
"""


def env_for(root):
    return dict(os.environ, PYTHONPATH=str(root), PATH=os.pathsep.join([str(Path(sys.executable).parent),
                                                                        os.environ["PATH"]]))


def build(root, dest, n):
    r = subprocess.run([sys.executable, "-c", BUILD, str(root), str(dest), str(n)], cwd=root,
                       env=env_for(root), capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"building the class of {root} failed:\n{r.stdout}\n{r.stderr}")


def grade_once(root, dest, timeout):
    course = dest / "run"
    shutil.rmtree(course, ignore_errors=True)
    shutil.copytree(dest / "class", course)
    cmd = [sys.executable, "-m", "lstmkit.cli", "grade", "gates", "--course", str(course), "--workers", "1",
           "--timeout", str(timeout)]
    start = time.perf_counter()
    r = subprocess.run(cmd, cwd=root, env=env_for(root), capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if r.returncode != 0:
        raise SystemExit(f"{root}: lstmkit grade failed:\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}")
    return seconds


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("roots", nargs="+", type=Path, help="checkouts to compare")
    parser.add_argument("--n", type=int, default=100, help="submissions per class (default 100)")
    parser.add_argument("--rounds", type=int, default=4, help="A/B rounds (default 4)")
    parser.add_argument("--timeout", type=float, default=60, help="wall limit per submission (60)")
    args = parser.parse_args()
    roots = [r.resolve() for r in args.roots]
    per = {r: [] for r in roots}
    with tempfile.TemporaryDirectory(prefix="ab_grader_") as tmp:
        dests = {r: Path(tmp) / f"v{k}" for k, r in enumerate(roots)}
        for r in roots:
            print(f"building {args.n} submissions with {r} ...", flush=True)
            build(r, dests[r], args.n)
        print(f"load average before: {os.getloadavg()}", flush=True)
        for k in range(args.rounds):
            for r in roots if k % 2 == 0 else roots[::-1]:
                seconds = grade_once(r, dests[r], args.timeout)
                per[r].append(seconds / args.n)
                print(f"round {k}: {r}: {seconds:.1f} s, {seconds / args.n:.3f} s per submission "
                      f"(load {os.getloadavg()[0]:.2f})", flush=True)
        print(f"load average after: {os.getloadavg()}")
    for r in roots:
        s = per[r]
        print(f"{r}: median {statistics.median(s):.3f} s per submission (range {min(s):.3f}-{max(s):.3f}, "
              f"{len(s)} runs of {args.n})")


if __name__ == "__main__":
    main()
