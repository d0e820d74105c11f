"""The trusted grader of the nbgrader course: `lstmkit grade` and `lstmkit check`.

    from lstmkit.grader import grade, check_notebook
    rows = grade("gates", course="assignments", workers=2)   # one dict per student (the CSV's columns)
    report = check_notebook("gates.ipynb")                   # one dict per visible check

Student code runs only in a sandboxed child process (sandbox.py, child.py); the checks' inputs
and comparisons stay in the trusted process (submission.py). See assignments/README.md.
"""

from .check import check_notebook
from .grade import GraderError, grade
from .sandbox import SandboxUnavailable

__all__ = ["grade", "check_notebook", "GraderError", "SandboxUnavailable"]
