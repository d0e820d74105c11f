"""Fill the gradebook file downloaded from an LMS (Canvas or Moodle) with the scores of nbgrader's gradebook.

    lstmkit export gates bptt --lms canvas --roster canvas-export.csv -o canvas-import.csv

`--roster` is the LMS's own gradebook export, whose rows are the class list:

- Canvas: columns Student, ID, SIS User ID, SIS Login ID, Section, then one column per assignment
  ("gates (123456)") and Canvas's totals; a row "Points Possible" under the header.
- Moodle: the grader report's CSV: First name, Last name, ID number, Institution, Department,
  Email address, one column per grade item ("Assignment: gates (Real)"), Course total, ...

Each row is matched with an nbgrader student: a value of the row's id columns (Canvas: SIS Login ID,
SIS User ID, ID; Moodle: ID number, Email address, Username; or `--match COLUMN`) equal to the
student's nbgrader id, email or lms_user_id. The score written is nbgrader export's `score`: automatic
+ hand-given points - late penalty (0 when the student submitted nothing). An assignment's column is
the LMS's column of that name (with Canvas's " (id)" or Moodle's "Assignment: ... (Real)" around it),
else a new column named after the assignment. Every column and row of the file is kept; rows that
match no student, and students that match no row, are reported, never dropped.

Also an nbgrader export plugin:

    nbgrader export --exporter=lstmkit.grader.lms.CanvasExportPlugin --to canvas-import.csv \\
        --LmsExportPlugin.roster=canvas-export.csv [--assignment=gates]
"""

from __future__ import annotations

import csv
import io
import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from nbgrader.api import MissingEntry
from nbgrader.plugins import ExportPlugin
from traitlets import Unicode

KEY_COLUMNS = {"canvas": ["SIS Login ID", "SIS User ID", "ID"],
               "moodle": ["ID number", "Email address", "Username"]}


class LmsError(ValueError):
    pass


@dataclass
class Report:
    filled: dict = field(default_factory=dict)  # student id -> {assignment: score}
    not_in_gradebook: list = field(default_factory=list)  # LMS rows (their key values) with no student
    not_in_lms: list = field(default_factory=list)  # nbgrader students with no LMS row
    no_submission: list = field(default_factory=list)  # (student, assignment): scored 0, as nbgrader export
    columns: dict = field(default_factory=dict)  # assignment -> column header used
    ambiguous: list = field(default_factory=list)
    provisional: list = field(default_factory=list)  # (student, assignment): parts still flagged for a grader
    never_graded: list = field(default_factory=list)  # assignments with no submission in the gradebook

    def lines(self):
        out = [f"filled {len(self.filled)} students' scores of {', '.join(self.columns) or 'no assignment'} "
               f"into the columns {', '.join(repr(c) for c in self.columns.values())}"]
        if self.not_in_gradebook:
            out.append(f"{len(self.not_in_gradebook)} rows of the LMS file match no nbgrader student "
                       f"(left as they were): {', '.join(self.not_in_gradebook)}")
        if self.not_in_lms:
            out.append(f"{len(self.not_in_lms)} nbgrader students have no row in the LMS file "
                       f"(not exported): {', '.join(self.not_in_lms)}")
        if self.no_submission:
            out.append("no submission (score 0, as nbgrader export): "
                       + ", ".join(f"{s} ({a})" for s, a in self.no_submission))
        if self.provisional:
            out.append(f"{len(self.provisional)} scores are provisional (parts still to grade or review in "
                       "formgrader; export again when done): "
                       + ", ".join(f"{s} ({a})" for s, a in self.provisional))
        if self.never_graded:
            out.append(f"no submission at all of {', '.join(self.never_graded)} in the gradebook (not graded "
                       "yet?): every student gets 0 there")
        if self.ambiguous:
            out.append("rows matching several students (left as they were): " + ", ".join(self.ambiguous))
        return out


def _read(path):
    text = Path(path).read_text(encoding="utf-8-sig")
    dialect = csv.Sniffer().sniff(text.splitlines()[0], delimiters=",;\t") if text.strip() else csv.excel
    rows = list(csv.reader(io.StringIO(text), dialect))
    if not rows:
        raise LmsError(f"{path} is empty")
    return rows, dialect


def _column(header, lms, assignment):
    """Index of the assignment's column in the LMS header, or None."""
    a = re.escape(assignment)
    patterns = {"canvas": [rf"{a}", rf"{a} \(\d+\)"],
                "moodle": [rf"{a}", rf"Assignment: {a}", rf"Assignment: {a} \(.*\)", rf"{a} \(.*\)"]}[lms]
    for k, name in enumerate(header):
        if any(re.fullmatch(p, name.strip()) for p in patterns):
            return k
    return None


def scores(gb, assignments, only=None):
    """{student id: {assignment: score or None (no submission)}}, max score per assignment, students,
    and the (student, assignment) pairs whose submission still has parts flagged for a grader."""
    out, maxima, pending = {}, {}, set()
    students = {s.id: s for s in gb.students if not only or s.id in only}
    for a in assignments:
        try:
            assignment = gb.find_assignment(a)
        except MissingEntry:
            raise LmsError(f"the gradebook has no assignment {a}") from None
        maxima[a] = float(assignment.max_score)
        for sid in students:
            try:
                sub = gb.find_submission(a, sid)
            except MissingEntry:
                out.setdefault(sid, {})[a] = None
                continue
            out.setdefault(sid, {})[a] = max(0.0, float(sub.score) - float(sub.late_submission_penalty or 0))
            if sub.needs_manual_grade:
                pending.add((sid, a))
    return out, maxima, students, pending


def fill(gb, assignments, lms, roster, output, match=None, students=None):
    """Write `roster` (the LMS's gradebook export) with the scores filled in to `output`; returns a Report."""
    if lms not in KEY_COLUMNS:
        raise LmsError(f"--lms must be canvas or moodle, not {lms!r}")
    rows, dialect = _read(roster)
    header = rows[0]
    keys = [match] if match else KEY_COLUMNS[lms]
    key_idx = [header.index(k) for k in keys if k in header]
    if not key_idx:
        raise LmsError(f"{roster} has none of the id columns {keys} (its columns: {header}); "
                       f"is it a {lms} gradebook export? Name the column with --match")
    data, maxima, students, pending = scores(gb, assignments, students)
    lookup = {}
    for sid, s in students.items():
        for value in (sid, s.email, s.lms_user_id):
            if value:
                lookup.setdefault(str(value).strip().lower(), set()).add(sid)
    report = Report()
    report.never_graded = [a for a in assignments if all(data[s][a] is None for s in data)]
    cols = {}
    for a in assignments:
        k = _column(header, lms, a)
        if k is None:
            header.append(a)
            k = len(header) - 1
        cols[a] = k
        report.columns[a] = header[k]
    width = len(header)
    matched = set()
    for row in rows[1:]:
        row.extend([""] * (width - len(row)))
        first = row[0].strip()
        if lms == "canvas" and first == "Points Possible":
            for a, k in cols.items():
                row[k] = f"{maxima[a]:g}"
            continue
        if not any(cell.strip() for cell in row):
            continue
        values = [row[k].strip() for k in key_idx if row[k].strip()]
        found = set().union(*(lookup.get(v.lower(), set()) for v in values)) if values else set()
        label = values[0] if values else (first or "(a row without id)")
        if len(found) > 1:
            report.ambiguous.append(f"{label} ({', '.join(sorted(found))})")
            continue
        if not found:
            report.not_in_gradebook.append(label)
            continue
        sid = found.pop()
        matched.add(sid)
        for a, k in cols.items():
            score = data[sid][a]
            if score is None:
                report.no_submission.append((sid, a))
                score = 0.0
            if (sid, a) in pending:
                report.provisional.append((sid, a))
            row[k] = f"{score:g}"
            report.filled.setdefault(sid, {})[a] = score
    report.not_in_lms = sorted(set(students) - matched)
    output = Path(output)
    fd, tmp = tempfile.mkstemp(dir=output.parent, prefix=f".{output.name}.")
    with os.fdopen(fd, "w", newline="", encoding="utf-8") as f:
        csv.writer(f, dialect).writerows(rows)
    os.replace(tmp, output)
    return report


class LmsExportPlugin(ExportPlugin):
    """nbgrader export plugin: fill an LMS gradebook file (see the module docstring)."""

    lms = "canvas"
    roster = Unicode("", help="the gradebook file downloaded from the LMS").tag(config=True)
    match = Unicode("", help="the LMS column that holds the nbgrader student id").tag(config=True)

    def export(self, gradebook):
        assignments = [str(a) for a in self.assignment] or [a.name for a in gradebook.assignments]
        to = self.to or f"{self.lms}-grades.csv"
        try:
            if not self.roster:
                raise LmsError("set --LmsExportPlugin.roster=<the gradebook file downloaded from the LMS>")
            report = fill(gradebook, assignments, self.lms, self.roster, to, self.match or None,
                          [str(s) for s in self.student] or None)
        except (LmsError, OSError) as e:  # a usage error: one line, not nbgrader's traceback
            self.log.error(str(e))
            raise SystemExit(1) from None
        for line in report.lines():
            self.log.warning(line)


class CanvasExportPlugin(LmsExportPlugin):
    lms = "canvas"


class MoodleExportPlugin(LmsExportPlugin):
    lms = "moodle"
