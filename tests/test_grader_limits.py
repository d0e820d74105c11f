"""The sandbox's limits in one dataclass: what the child receives, and clear errors for bad values."""

import pytest

from lstmkit.grader.limits import Limits
from lstmkit.grader.plan import plan_from_notebook
from lstmkit.grader.submission import make_job


def test_the_child_view_has_the_rlimits_and_caps():
    limits = Limits(wall=20.7, memory_mb=1024, processes=32, tmp_size="16m")
    assert limits.child_view() == {"cpu": 20, "call": 5.0, "memory": 1024 * 2**20, "fsize": 4 * 2**20,
                                   "nproc": 32, "tmp_size": "16m", "message_chars": 500,
                                   "array_elements": 10_000_000}
    assert limits.tmp_bytes == 16 * 2**20 and Limits(tmp_size="2048k").tmp_bytes == 2 * 2**20
    assert Limits(wall=0.5).cpu_seconds == 1 and Limits(wall=30, cpu=10).cpu_seconds == 10
    # one call of the student's function: a tenth of the wall time, at least 5 s, at most the wall time
    assert [Limits(wall=w).call_seconds for w in (120, 10, 1)] == [12, 5, 1]
    assert Limits(wall=60, call=3).call_seconds == 3


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"wall": 0}, "wall must be a positive number of seconds, not 0"),
    ({"call": -1}, "call must be a positive number of seconds, not -1"),
    ({"memory_mb": -1}, "memory_mb must be a positive number of MB, not -1"),
    ({"processes": 1}, "processes must be at least 2, not 1"),
    ({"tmp_size": "50%"}, "tmp_size must be a size like '64m', not '50%'"),
    ({"tmp_size": "0m"}, "tmp_size must be a size like '64m', not '0m'"),
])
def test_bad_limits_name_the_limit(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Limits(**kwargs)


def test_a_job_carries_its_limits():
    plan = plan_from_notebook('{"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}', "a", "a")
    assert make_job(plan, "s", "")["limits"] == Limits()
    assert make_job(plan, "s", "", limits=Limits(wall=5))["limits"].wall == 5


def test_bwrap_mounts_hide_then_bind_python_back(tmp_path):
    """The order bwrap applies: /tmp private (its size from the limits), each hidden folder under an empty
    tmpfs, Python's folder bound back read-only, the hidden folder made read-only, a folder hidden inside
    Python's folder hidden again, the work folder last."""
    from lstmkit.grader.sandbox import mounts

    checkout, venv = tmp_path / "checkout", tmp_path / "checkout" / ".venv"
    (venv / "lstmkit").mkdir(parents=True)
    hide = [str(checkout), str(venv / "lstmkit"), "/tmp"]
    args = mounts("/tmp/w", hide, 2**20, [str(venv)])
    pairs = [(a, b) for a, b in zip(args, args[1:], strict=False) if a.startswith("--")]
    order = [pairs.index(p) for p in [("--tmpfs", "/tmp"), ("--ro-bind", str(venv)),
                                      ("--remount-ro", str(venv / "lstmkit")), ("--bind", "/tmp/w")]]
    assert order == sorted(order)
    assert ("--size", str(2**20)) == pairs[pairs.index(("--tmpfs", "/tmp")) - 1]
    assert ("--tmpfs", str(checkout)) not in pairs  # under /tmp (pytest's tmp_path): hidden with it
    assert ("--tmpfs", str(venv / "lstmkit")) in pairs and args[-2:] == ["--chdir", "/tmp/work"]


def test_each_call_gets_the_per_call_limit_except_the_training_check(tmp_path):
    """The child's job: every call carries Limits.call, except those of a check that trains models
    (Check.call_limit = False), which only the submission's own limits end."""
    import json
    from pathlib import Path

    from lstmkit.grader.submission import _prepare

    text = (Path(__file__).resolve().parents[1] / "assignments/source/sequences/sequences.ipynb").read_text()
    plan = plan_from_notebook(text, "sequences", "sequences")
    _prepare(tmp_path, make_job(plan, "s", text, limits=Limits(wall=200), visible_only=True), [])
    limits = {(c["part"], c["limit"]) for c in json.loads((tmp_path / "job.json").read_text())["calls"]}
    assert limits == {("test_clip_grad_norm", 20), ("test_train_tbptt", 20),
                      ("test_masked_cross_entropy", 20), ("test_sample_next", 20), ("test_training", None)}
