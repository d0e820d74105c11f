"""nbgrader configuration of the lstmkit course. Run nbgrader commands from this folder (assignments/)."""

from pathlib import Path

c = get_config()  # noqa: F821 - provided by nbgrader when it loads this file

c.CourseDirectory.course_id = "lstmkit"
# The assignments: gates, bptt, pytorch, sequences (source/<id>/<id>.ipynb, built from notebooks/<id>.md).
# nbgrader keeps due dates in the gradebook only (its config has no option for them), e.g.
#   nbgrader db assignment add sequences --duedate="2026-12-11 22:00:00 UTC"
# The course root is the folder of this file, wherever the repository is checked out.
c.CourseDirectory.root = str(Path(__file__).resolve().parent)

# Release stubs: the hint comment above each solution region stays in the notebook.
c.ClearSolutions.code_stub = {
    "python": "# YOUR CODE HERE\nraise NotImplementedError('Replace this line with your code (see the hint above).')"
}
c.ClearSolutions.text_stub = "YOUR ANSWER HERE"

# Each notebook runs in under two minutes (pytorch and sequences train; about 40 s); leave head-room.
c.ExecutePreprocessor.timeout = 300
c.ExecutePreprocessor.kernel_name = "python3"
