"""The sandbox's limits, in one place: the CLI builds them, `grade` and `check` pass them on in the job,
the supervisor (sandbox.py) and the child (child.py, which receives `child_view()` in its job.json)
read them.

    limits = Limits(wall=60, memory_mb=2048)      # what `lstmkit grade --timeout 60 --memory 2048` makes
"""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Limits:
    """Limits of one submission's sandbox.

    - wall: seconds for the whole child (the process group is killed after it);
    - call: seconds of CPU time for one call of the student's function inside the child (default: a
      tenth of wall, at least 5 s, at most wall): a call that takes longer ends with `timeout` for its
      own part only, and the child goes on with the other parts (a later part that calls the function
      that never returned is run with the grader's version in its place); CPU time, so that a loaded
      machine does not make a call time out (a call that sleeps is ended by the wall limit); a check
      whose call trains models (grading.Check.call_limit = False) has no per-call limit;
    - cpu: seconds of CPU time per process (RLIMIT_CPU; default: wall, whole seconds, at least 1);
    - memory_mb: address space per process (RLIMIT_AS);
    - headroom_mb: how much more all processes together may use (memory cgroup), so that one process
      that runs out first gets a MemoryError (a clear message) before the kernel kills anything;
    - processes: pids cgroup and RLIMIT_NPROC; the child also counts its processes after every call;
    - file_bytes: RLIMIT_FSIZE, the cap on stdout, stderr and any file the child writes;
    - tmp_size: size of the child's private /tmp (a tmpfs mount option, e.g. "64m");
    - message_chars: a part's message as the child reports it;
    - answer_bytes: the child's JSON answer for one call (larger: `crashed`, malformed);
    - array_elements: an array the child returns (larger: refused).
    """

    wall: float = 60.0
    call: float | None = None
    cpu: int | None = None
    memory_mb: int = 2048
    headroom_mb: int = 256
    processes: int = 64
    file_bytes: int = 4 * 2**20
    tmp_size: str = "64m"
    message_chars: int = 500
    answer_bytes: int = 100_000
    array_elements: int = 10_000_000

    def __post_init__(self):
        checks = [("wall", self.wall > 0, "a positive number of seconds"),
                  ("call", self.call is None or self.call > 0, "a positive number of seconds"),
                  ("cpu", self.cpu is None or self.cpu >= 1, "at least 1 second"),
                  ("memory_mb", self.memory_mb > 0, "a positive number of MB"),
                  ("headroom_mb", self.headroom_mb >= 0, "0 MB or more"),
                  ("processes", self.processes >= 2, "at least 2"),
                  ("file_bytes", self.file_bytes > 0, "a positive number of bytes"),
                  ("message_chars", self.message_chars > 0, "positive"),
                  ("answer_bytes", self.answer_bytes > 0, "positive"),
                  ("array_elements", self.array_elements > 0, "positive")]
        self.tmp_bytes  # noqa: B018 - a size bwrap understands, or ValueError
        for name, ok, expected in checks:
            if not ok:
                raise ValueError(f"the sandbox limit {name} must be {expected}, not {getattr(self, name)!r}")

    @property
    def cpu_seconds(self) -> int:
        return self.cpu if self.cpu is not None else max(1, int(self.wall))

    @property
    def call_seconds(self) -> float:
        return self.call if self.call is not None else min(self.wall, max(5.0, self.wall / 10))

    @property
    def tmp_bytes(self) -> int:
        """tmp_size in bytes ("64m" -> 67108864; suffixes k, m, g as for tmpfs)."""
        text = str(self.tmp_size).strip().lower()
        scale = {"k": 2**10, "m": 2**20, "g": 2**30}.get(text[-1:], 1)
        number = text[:-1] if scale > 1 else text
        if not number.isdigit() or int(number) == 0:
            raise ValueError(f"the sandbox limit tmp_size must be a size like '64m', not {self.tmp_size!r}")
        return int(number) * scale

    def child_view(self) -> dict:
        """What the child needs (plain JSON): rlimits in bytes and seconds, its /tmp size and caps."""
        return {"cpu": self.cpu_seconds, "call": self.call_seconds, "memory": self.memory_mb * 2**20,
                "fsize": self.file_bytes, "nproc": self.processes, "tmp_size": self.tmp_size,
                "message_chars": self.message_chars, "array_elements": self.array_elements}

    def as_dict(self) -> dict:
        return asdict(self)
