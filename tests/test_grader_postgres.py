"""A course whose nbgrader_config.py puts the gradebook on a real PostgreSQL server.

The fixture starts Debian's PostgreSQL (initdb, pg_ctl from /usr/lib/postgresql/*/bin; installed by
tools/install-postgres.sh) in a temporary folder on a free port of 127.0.0.1, as the unprivileged user
`nobody` when the tests run as root, and stops it afterwards. `nbgrader generate_assignment` and
`lstmkit grade` both use the server the config names; `nbgrader export` reads the scores back.
"""

import csv
import glob
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import nbformat
import pytest
from grader_corpus import COURSE, grade_cli, nbgrader, replace, submit
from nbgrader.api import Gradebook
from sqlalchemy import inspect

BIN = sorted(glob.glob("/usr/lib/postgresql/*/bin"))


def as_server_user(args, **kwargs):
    """Run a PostgreSQL program as `nobody` when we are root (postgres refuses to run as root)."""
    if os.geteuid() == 0:
        args = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "--", *args]
    return subprocess.run(args, capture_output=True, text=True, **kwargs)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def postgres():
    if not BIN:
        pytest.fail("PostgreSQL is not installed: run tools/install-postgres.sh (make test does)")
    bindir = Path(BIN[-1])
    folder = Path(tempfile.mkdtemp(prefix="lstmkit-pg-"))
    if os.geteuid() == 0:
        shutil.chown(folder, "nobody", "nogroup")
    data, port = folder / "data", free_port()
    r = as_server_user([bindir / "initdb", "-D", data, "-A", "trust", "-U", "grader", "--no-sync"])
    assert r.returncode == 0, r.stdout + r.stderr
    r = as_server_user([bindir / "pg_ctl", "-D", data, "-l", folder / "log", "-w", "start", "-o",
                        f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off"])
    assert r.returncode == 0, r.stdout + r.stderr + (folder / "log").read_text()
    try:
        r = as_server_user([bindir / "createdb", "-h", "127.0.0.1", "-p", str(port), "-U", "grader",
                            "gradebook"])
        assert r.returncode == 0, r.stdout + r.stderr
        yield f"postgresql+psycopg2://grader@127.0.0.1:{port}/gradebook"
    finally:
        as_server_user([bindir / "pg_ctl", "-D", data, "-m", "fast", "-w", "stop"])
        shutil.rmtree(folder, ignore_errors=True)


def test_grade_writes_to_the_configured_server_and_nbgrader_reads_it(postgres, tmp_path):
    course = tmp_path / "course"
    shutil.copytree(COURSE / "source" / "gates", course / "source" / "gates")
    shutil.copy(COURSE / "nbgrader_config.py", course)
    with open(course / "nbgrader_config.py", "a") as f:
        f.write(f'\nc.CourseDirectory.db_url = "{postgres}"\n')
    r = nbgrader("generate_assignment", "gates", "--force", cwd=course)
    assert r.returncode == 0, r.stdout + r.stderr
    nb = nbformat.read(course / "source" / "gates" / "gates.ipynb", 4)
    submit(course, "honest", "gates", nb)
    submit(course, "wrong", "gates", replace(nb, "cell_forward", "h = o * np.tanh(c)", "h = o * c"))
    r = grade_cli(course, "gates", "--workers", "2", "--timeout", "20")
    assert r.returncode == 0, r.stdout + r.stderr
    assert not (course / "gradebook.db").exists()  # nothing went to a SQLite file in the course folder
    with open(course / "grades-gates.csv") as f:
        totals = {row["student"]: float(row["total"]) for row in csv.DictReader(f)}
    assert totals == {"honest": 9.0, "wrong": 6.0}
    with Gradebook(postgres, "lstmkit") as gb:  # the server holds the scores and the hand-grading flags
        grades = {g.name: (g.auto_score, g.needs_manual_grade)
                  for g in gb.find_submission_notebook("gates", "gates", "wrong").grades}
        tables = set(inspect(gb.engine).get_table_names())
    assert grades["test_cell_forward"] == (0.0, False) and grades["answer_remember"] == (None, True)
    assert "lstmkit_part" in tables
    r = nbgrader("export", "--to", "export.csv", cwd=course)
    assert r.returncode == 0, r.stdout + r.stderr
    with open(course / "export.csv") as f:
        exported = {row["student_id"]: row for row in csv.DictReader(f)}
    assert {s: float(e["raw_score"]) for s, e in exported.items()} == totals
    assert {float(e["max_score"]) for e in exported.values()} == {12.0}
