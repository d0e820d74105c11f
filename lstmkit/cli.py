"""The `lstmkit` command: `lstmkit grade ASSIGNMENT ...`, `lstmkit feedback ASSIGNMENT`, `lstmkit export
ASSIGNMENT... --lms canvas|moodle` and `lstmkit check NOTEBOOK.ipynb`."""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

COURSE_HELP = ("nbgrader course folder (default: assignments, or the current folder when it holds "
               "nbgrader_config.py and has no assignments/)")


def _course(arg):
    """--course, or its default: assignments/ from the repository root, the current folder from inside it."""
    if arg is not None:
        return arg
    if not Path("assignments").is_dir() and Path("nbgrader_config.py").is_file():
        return "."
    return "assignments"


def _parser():
    parser = argparse.ArgumentParser(prog="lstmkit", description="Tools of the lstmkit course.")
    sub = parser.add_subparsers(dest="command", required=True)
    g = sub.add_parser("grade", help="grade every submission of an assignment in a sandbox")
    g.add_argument("assignment", help="assignment id, e.g. gates")
    g.add_argument("--course", default=None, help=COURSE_HELP)
    g.add_argument("--student", nargs="+", metavar="ID", help="only these students")
    g.add_argument("--workers", type=int, default=None, help="local processes (default: number of cores)")
    g.add_argument("--scheduler", metavar="ADDRESS", help="Dask scheduler, e.g. tcp://10.0.0.1:8786")
    g.add_argument("--timeout", type=float, default=60, help="wall seconds per submission (default 60)")
    g.add_argument("--call-timeout", type=float, default=None, metavar="SECONDS",
                   help="CPU seconds for one call of a student's function (default: a tenth of --timeout, "
                        "at least 5); a call that takes longer costs only its own part")
    g.add_argument("--memory", type=int, default=2048,
                   help="MB of address space per process (2048); all processes together: 256 MB more")
    f = sub.add_parser("feedback", help="each student's feedback from the gradebook (after hand grading)")
    f.add_argument("assignment", help="assignment id, e.g. gates")
    f.add_argument("--course", default=None, help=COURSE_HELP)
    f.add_argument("--student", nargs="+", metavar="ID", help="only these students")
    e = sub.add_parser("export", help="fill the gradebook file from Canvas or Moodle with the scores")
    e.add_argument("assignment", nargs="+", help="assignment ids, e.g. gates bptt")
    e.add_argument("--lms", required=True, choices=["canvas", "moodle"])
    e.add_argument("--roster", required=True, metavar="FILE", help="the LMS's gradebook CSV")
    e.add_argument("-o", "--output", required=True, metavar="FILE", help="the filled CSV to upload")
    e.add_argument("--match", metavar="COLUMN", help="the LMS column holding the nbgrader student id "
                   "(default: canvas: SIS Login ID, SIS User ID, ID; "
                   "moodle: ID number, Email address, Username)")
    e.add_argument("--course", default=None, help=COURSE_HELP)
    s = sub.add_parser("similarity", help="rank submissions that look copied (from each other or the book)")
    s.add_argument("assignment", help="assignment id, e.g. gates")
    s.add_argument("--course", default=None, help=COURSE_HELP)
    s.add_argument("--book", metavar="DIR", help="the book's chapters (default: book/ of this checkout)")
    s.add_argument("--top", type=int, default=20, help="pairs and students shown with their lines (20)")
    s.add_argument("--threshold", type=float, default=0.5, help="share highlighted in the report (0.5)")
    c = sub.add_parser("check", help="run the visible checks of your notebook")
    c.add_argument("notebook", help="your notebook, e.g. gates.ipynb")
    c.add_argument("--timeout", type=float, default=60,
                   help="wall seconds for the whole notebook (default 60)")
    return parser


def _n(count, noun):
    return f"{count} {noun}" + ("" if count == 1 else "s")


def main(argv=None):
    from lstmkit.grader import GraderError, SandboxUnavailable, grade
    from lstmkit.grader.gradebook import GradebookError
    from lstmkit.grader.limits import Limits
    from lstmkit.grader.lms import LmsError
    from lstmkit.grader.plan import PlanError

    args = _parser().parse_args(argv)
    if hasattr(args, "course"):
        args.course = _course(args.course)
    try:
        if args.command == "grade":
            if args.workers is not None and args.workers < 1:
                raise GraderError("--workers must be at least 1")
            if args.timeout <= 0 or args.memory <= 0 or (args.call_timeout or 1) <= 0:
                raise GraderError("--timeout, --call-timeout and --memory must be positive")
            limits = Limits(wall=args.timeout, call=args.call_timeout, memory_mb=args.memory)
            rows = grade(args.assignment, course=args.course, students=args.student, workers=args.workers,
                         scheduler=args.scheduler, limits=limits)
            csv_path = Path(args.course) / f"grades-{args.assignment}.csv"
            with open(csv_path, newline="") as f:
                in_file = sum(1 for _ in csv.DictReader(f))
            what = (f"updated the rows of {_n(len(rows), 'student')} in {csv_path} (its other rows kept; "
                    f"{_n(in_file, 'student')} in all)" if args.student else
                    f"wrote {csv_path} ({_n(len(rows), 'student')})")
            print(f"{what}, the gradebook, {Path(args.course) / 'feedback'}/ and "
                  f"{Path(args.course) / 'autograded'}/")
            return 0
        if args.command == "feedback":
            from lstmkit.grader.course import load_course
            from lstmkit.grader.feedback import write_feedback

            if not Path(args.course).is_dir():
                raise GraderError(f"course folder {args.course} does not exist (use --course DIR)")
            paths = write_feedback(load_course(args.course), args.assignment, args.student)
            if len(paths) <= 10:
                print("\n".join(map(str, paths)))
            elif paths:  # a class: where they are, not one line per student
                print(f"in {Path(args.course) / 'feedback'}/<student>/{args.assignment}/")
            if not paths:
                raise GraderError(f"the gradebook has no submission of {args.assignment}: run "
                                  f"`lstmkit grade {args.assignment}` first")
            print(f"wrote the feedback of {_n(len(paths), 'submission')} (.html and .json)")
            return 0
        if args.command == "export":
            import warnings

            from lstmkit.grader.course import load_course
            from lstmkit.grader.lms import fill

            if not Path(args.course).is_dir():
                raise GraderError(f"course folder {args.course} does not exist (use --course DIR)")
            course = load_course(args.course)
            with warnings.catch_warnings(), course.gradebook() as gb:
                warnings.simplefilter("ignore")
                report = fill(gb, args.assignment, args.lms, args.roster, args.output, args.match)
            for line in report.lines():
                print(line)
            print(f"wrote {args.output}")
            return 0
        if args.command == "similarity":
            from lstmkit.grader.similarity import similarity

            if not Path(args.course).is_dir():
                raise GraderError(f"course folder {args.course} does not exist (use --course DIR)")
            result = similarity(args.assignment, args.course, book=args.book, top=args.top,
                                threshold=args.threshold)
            print("most similar pairs:")
            for p in result["pairs"][:10]:
                print(f"  {p['score']:4.0%}  {p['a']}  {p['b']}")
            print("closest to published code:")
            for p in result["published"][:10]:
                print(f"  {p['score']:4.0%}  {p['student']}  ({p['source']})")
            print(f"wrote {result['html']} and {result['json']} (no score was changed)")
            return 0
        from lstmkit.grader.check import main as check

        return check(args)
    except (GraderError, PlanError, GradebookError, SandboxUnavailable, FileNotFoundError, LmsError) as e:
        print(f"lstmkit {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
