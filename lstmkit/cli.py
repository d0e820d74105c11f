"""The `lstmkit` command: `lstmkit grade ASSIGNMENT ...` and `lstmkit check NOTEBOOK.ipynb`."""

from __future__ import annotations

import argparse
import sys


def _parser():
    parser = argparse.ArgumentParser(prog="lstmkit", description="Tools of the lstmkit course.")
    sub = parser.add_subparsers(dest="command", required=True)
    g = sub.add_parser("grade", help="grade every submission of an assignment in a sandbox")
    g.add_argument("assignment", help="assignment id, e.g. gates")
    g.add_argument("--course", default="assignments", help="nbgrader course folder (default: assignments)")
    g.add_argument("--student", nargs="+", metavar="ID", help="only these students")
    g.add_argument("--workers", type=int, default=None, help="local processes (default: number of cores)")
    g.add_argument("--scheduler", metavar="ADDRESS", help="Dask scheduler, e.g. tcp://10.0.0.1:8786")
    g.add_argument("--timeout", type=float, default=60, help="wall seconds per submission (default 60)")
    g.add_argument("--memory", type=int, default=2048,
                   help="MB of address space per process (2048); all processes together: 256 MB more")
    c = sub.add_parser("check", help="run the visible checks of your notebook")
    c.add_argument("notebook", help="your notebook, e.g. gates.ipynb")
    c.add_argument("--timeout", type=float, default=60,
                   help="wall seconds for the whole notebook (default 60)")
    return parser


def main(argv=None):
    from lstmkit.grader import GraderError, SandboxUnavailable, grade
    from lstmkit.grader.gradebook import GradebookError
    from lstmkit.grader.plan import PlanError

    args = _parser().parse_args(argv)
    try:
        if args.command == "grade":
            if args.workers is not None and args.workers < 1:
                raise GraderError("--workers must be at least 1")
            if args.timeout <= 0 or args.memory <= 0:
                raise GraderError("--timeout and --memory must be positive")
            rows = grade(args.assignment, course=args.course, students=args.student, workers=args.workers,
                         scheduler=args.scheduler, timeout=args.timeout, memory=args.memory)
            print(f"wrote {args.course}/grades-{args.assignment}.csv ({len(rows)} students), the gradebook, "
                  f"{args.course}/feedback/ and {args.course}/autograded/")
            return 0
        from lstmkit.grader.check import main as check

        return check(args)
    except (GraderError, PlanError, GradebookError, SandboxUnavailable, FileNotFoundError) as e:
        print(f"lstmkit {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
