"""The sandbox's limits in one dataclass: what the child receives, and clear errors for bad values."""

import pytest

from lstmkit.grader.limits import Limits
from lstmkit.grader.plan import plan_from_notebook
from lstmkit.grader.submission import make_job


def test_the_child_view_has_the_rlimits_and_caps():
    limits = Limits(wall=20.7, memory_mb=1024, processes=32, tmp_size="16m")
    assert limits.child_view() == {"cpu": 20, "memory": 1024 * 2**20, "fsize": 4 * 2**20, "nproc": 32,
                                   "tmp_size": "16m", "message_chars": 500, "array_elements": 10_000_000}
    assert Limits(wall=0.5).cpu_seconds == 1 and Limits(wall=30, cpu=10).cpu_seconds == 10


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"wall": 0}, "wall must be a positive number of seconds, not 0"),
    ({"memory_mb": -1}, "memory_mb must be a positive number of MB, not -1"),
    ({"processes": 1}, "processes must be at least 2, not 1"),
])
def test_bad_limits_name_the_limit(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Limits(**kwargs)


def test_a_job_carries_its_limits():
    plan = plan_from_notebook('{"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}', "a", "a")
    assert make_job(plan, "s", "")["limits"] == Limits()
    assert make_job(plan, "s", "", limits=Limits(wall=5))["limits"].wall == 5
