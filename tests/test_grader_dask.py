"""`lstmkit grade --scheduler` on a real Dask cluster (a scheduler and two worker processes on 127.0.0.1,
started here) gives the same CSV as `--workers 2` on the corpus cases tagged "dask" (honest, blank, a wrong
answer, a cheat, the reference, an infinite loop, os._exit)."""

import csv
import io

import pytest
from distributed import LocalCluster
from grader_corpus import POINTS, Context, cases_for, grade_cli, new_course, submit_cases

CASES = cases_for("gates", "dask")
LIMITS = ["--timeout", "15", "--call-timeout", "3", "--memory", "1024"]  # calls: CPU seconds


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    base = tmp_path_factory.mktemp("dask")
    course = new_course(base / "course", assignments=("gates",))
    submit_cases(Context(course, 0, base), CASES)
    return course


def grade(course, *args):
    r = grade_cli(course, "gates", *args, *LIMITS)
    assert r.returncode == 0, r.stdout + r.stderr
    return (course / "grades-gates.csv").read_text()


def test_dask_cluster_grades_like_local_workers(course):
    local = grade(course, "--workers", "2")
    with LocalCluster(processes=True, n_workers=2, threads_per_worker=1, host="127.0.0.1",
                      dashboard_address=None) as cluster:
        assert cluster.scheduler_address.startswith("tcp://127.0.0.1:")
        distributed = grade(course, "--scheduler", cluster.scheduler_address)
    assert distributed == local
    rows = {r["student"]: r for r in csv.DictReader(io.StringIO(distributed))}
    assert sorted(rows) == sorted(c.name for c in CASES)
    for case in CASES:  # the same expectations as the adversarial test, so the two runs are not both wrong
        row = rows[case.name]
        assert row["status"] == case.status, row
        assert {g: float(row[g]) for g in POINTS["gates"]} == {g: float(p) for g, p in case.points.items()}
