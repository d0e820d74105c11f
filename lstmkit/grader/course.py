"""The course's nbgrader configuration, read by nbgrader's own loader.

`load_course(DIR)` runs nbgrader's `NbGrader` application set-up (the one every `nbgrader` command
runs): it reads `nbgrader_config.py` from Jupyter's config folders, the current folder and the
course root `DIR`, so `CourseDirectory.course_id`, `CourseDirectory.db_url` (SQLite in the course
folder by default, or a database server) and the late-penalty plugin
(`AssignLatePenalties.plugin_class`, `LateSubmissionPlugin.penalty_method`) are what nbgrader uses.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass
from pathlib import Path

from traitlets.config import Config


@dataclass
class Course:
    root: Path
    course_id: str
    db_url: str
    config: Config
    late_plugin: object  # an nbgrader BasePlugin with late_submission_penalty(student, score, seconds)

    @property
    def sqlite_path(self):
        """The gradebook file for a SQLite gradebook, else None."""
        prefix = "sqlite:///"
        return Path(self.db_url[len(prefix):]) if self.db_url.startswith(prefix) else None

    def gradebook(self):
        from nbgrader.api import Gradebook

        return Gradebook(self.db_url, self.course_id)


def load_course(course) -> Course:
    """nbgrader's configuration of the course folder `course` (see the module docstring)."""
    from nbgrader.apps.baseapp import NbGrader
    from nbgrader.preprocessors import AssignLatePenalties

    root = Path(course).resolve()
    # nbgrader imports plugin classes with the current folder on sys.path (it runs from the course root)
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    app = NbGrader(log_level=logging.ERROR)
    app.initialize([], root=str(root))
    coursedir = app.coursedir
    if Path(coursedir.root).resolve() != root:
        # the config names another course root: the course folder given on the command line wins
        coursedir.root = str(root)
        if "db_url" not in app.config.CourseDirectory:
            coursedir.db_url = f"sqlite:///{root / 'gradebook.db'}"
    late = AssignLatePenalties(parent=app)
    plugin = late.plugin_class(parent=late)
    return Course(root, coursedir.course_id, coursedir.db_url, app.config, plugin)


class LatePluginError(RuntimeError):
    """The configured late-submission plugin raised."""


def _plugin_name(plugin):
    return f"{type(plugin).__module__}.{type(plugin).__qualname__}"


def check_late_plugin(course: Course, student, max_score):
    """Call the late-penalty plugin once (a day late, full score) before any grading, so that a broken
    plugin stops `lstmkit grade` at once rather than after every submission was graded."""
    late_penalty(course, student, float(max_score), 86400.0)


def late_penalty(course: Course, student, score, seconds_late):
    """The penalty nbgrader's AssignLatePenalties would store (None: no penalty), clamped to [0, score]."""
    if not seconds_late or seconds_late <= 0:
        return None
    try:
        penalty = course.late_plugin.late_submission_penalty(student, score, seconds_late)
    except Exception as e:  # noqa: BLE001 - the course's own plugin: name it and what it raised
        raise LatePluginError(f"the late-penalty plugin {_plugin_name(course.late_plugin)} failed for "
                              f"{student} ({seconds_late:.0f} s late, score {score:g}): "
                              f"{type(e).__name__}: {e}") from e
    if penalty is None:
        return None
    return min(max(penalty, 0), score)
