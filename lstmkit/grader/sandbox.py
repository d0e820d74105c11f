"""Start the sandboxed child (child.py) and watch it: namespaces, limits, wall timeout, process group.

    unshare --user --map-root-user --net --mount --pid --fork --mount-proc --kill-child \\
        python -I -B WORKDIR/child.py WORKDIR

- user + mount namespaces: the child remounts everything read-only, hides the course, the grader's
  package, tests and checkout (Python's own folders bound back), and gets a private /tmp (child.py),
  then drops all capabilities;
- net namespace: no network (only a loopback that is down);
- pid namespace with its own /proc: the child sees no other process, and when it ends the kernel
  kills everything it started (fork bombs included);
- its own session/process group, killed with SIGKILL at the wall timeout;
- stdout/stderr go to files in WORKDIR capped by RLIMIT_FSIZE (a flood ends the child: `crashed`);
- when the pids cgroup is writable (root), a cgroup caps the number of processes (RLIMIT_NPROC does
  not bind a process whose real uid is root, which is what --map-root-user keeps);
- likewise a memory cgroup caps the memory of all its processes together (RLIMIT_AS caps each one);
  when the kernel kills one of them for it, every part gets the status `memory`.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from functools import lru_cache
from pathlib import Path

from .limits import Limits

UNSHARE = ["unshare", "--user", "--map-root-user", "--net", "--mount", "--pid", "--fork", "--mount-proc",
           "--kill-child"]


class SandboxUnavailable(RuntimeError):
    pass


@lru_cache(maxsize=1)
def unshare_command():
    """The unshare command line that works here, or None. Without a mountable /proc (some containers
    forbid it) the child hides the host's /proc under an empty mount instead (job["hide_proc"])."""
    if shutil.which("unshare") is None:
        return None
    for cmd in (UNSHARE, [a for a in UNSHARE if a != "--mount-proc"]):
        try:
            r = subprocess.run([*cmd, "true"], capture_output=True, timeout=20)
        except (OSError, subprocess.TimeoutExpired):
            continue
        if r.returncode == 0:
            return cmd
    return None


def namespaces_work() -> bool:
    """Whether `unshare` with user, net, mount and pid namespaces works on this machine."""
    return unshare_command() is not None


def _cgroup(controller, settings):
    """A fresh cgroup of `controller` (v1 or v2) with `settings` written, or None if we may not make one."""
    roots = [Path("/sys/fs/cgroup") / controller]
    v2 = Path("/sys/fs/cgroup/cgroup.subtree_control")
    if v2.exists() and controller in v2.read_text().split():
        roots.append(v2.parent)
    for root in roots:
        if not (root / "cgroup.procs").exists():
            continue
        path = root / f"lstmkit-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        try:
            path.mkdir()
            for name, value, required in settings:
                if (path / name).exists():
                    (path / name).write_text(str(value))
                elif required:
                    raise OSError(f"no {name} in {path}")
            return path
        except OSError:
            shutil.rmtree(path, ignore_errors=True)
    return None


def _pids_cgroup(processes):
    """A pids cgroup with pids.max set, or None."""
    return _cgroup("pids", [("pids.max", processes, True)])


def _memory_cgroup(limits: Limits):
    """A memory cgroup that caps all the child's processes together (RLIMIT_AS caps each one), or None.
    It allows limits.headroom_mb more than the per-process limit, so that one process that runs out of
    memory still gets its MemoryError (a clear message) before the kernel kills anything."""
    limit = (limits.memory_mb + limits.headroom_mb) * 2**20
    if Path("/sys/fs/cgroup/memory/cgroup.procs").exists():  # v1; memsw exists only with swap accounting
        return _cgroup("memory", [("memory.limit_in_bytes", limit, True),
                                  ("memory.memsw.limit_in_bytes", limit, False)])
    return _cgroup("memory", [("memory.max", limit, True), ("memory.swap.max", 0, False)])


def _oom_kills(path):
    """How many processes the kernel killed in this memory cgroup for want of memory."""
    for name in ("memory.oom_control", "memory.events"):
        if (path / name).exists():
            for line in (path / name).read_text().splitlines():
                if line.startswith("oom_kill "):
                    return int(line.split()[1])
    return 0


def _remove_cgroup(path):
    for _ in range(50):
        try:
            path.rmdir()
            return
        except OSError:
            time.sleep(0.02)


def run_child(workdir: Path, limits: Limits, isolate: bool = True) -> dict:
    """Run child.py on `workdir` within `limits` (wall clock, processes, memory of all processes).
    Returns {returncode, signal, timed_out, forks_refused, oom_killed, stderr_tail}."""
    workdir = Path(workdir)
    cmd = [sys.executable, "-I", "-B", str(workdir / "child.py"), str(workdir)]
    if isolate:
        if not namespaces_work():
            raise SandboxUnavailable(
                "the grader needs `unshare` with user, network, mount and pid namespaces "
                "(util-linux; kernel.unprivileged_userns_clone=1 or root); it is not available here"
            )
        cmd = unshare_command() + cmd
    cgroup = _pids_cgroup(limits.processes) if isolate else None
    memory = _memory_cgroup(limits) if isolate else None

    def preexec():
        for group in (cgroup, memory):
            if group is not None:
                (group / "cgroup.procs").write_text(str(os.getpid()))
        import resource

        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))

    timed_out = False
    with open(workdir / "stdout.txt", "wb") as out, open(workdir / "stderr.txt", "wb") as err:
        posix = os.name == "posix"  # Windows (`lstmkit check` without a sandbox): no sessions, no rlimits
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                start_new_session=posix, preexec_fn=preexec if posix else None, cwd=workdir)
        try:
            proc.wait(timeout=limits.wall)
        except subprocess.TimeoutExpired:
            timed_out = True
        finally:
            try:
                if posix:
                    os.killpg(proc.pid, signal.SIGKILL)
                else:
                    proc.kill()
            except ProcessLookupError:
                pass
            proc.wait()
    forks_refused = False
    if cgroup is not None:
        events = cgroup / "pids.events"
        if events.exists():
            forks_refused = any(line.split()[-1] != "0" for line in events.read_text().splitlines())
        _remove_cgroup(cgroup)
    oom_killed = False
    if memory is not None:
        oom_killed = _oom_kills(memory) > 0
        _remove_cgroup(memory)
    code = proc.returncode
    # unshare --fork passes the child's signal on by killing itself with it: code = -signal.
    with open(workdir / "stderr.txt", "rb") as f:
        f.seek(max(0, (workdir / "stderr.txt").stat().st_size - 2000))
        tail = f.read().decode(errors="replace")
    return {
        "returncode": code,
        "signal": -code if code < 0 else (code - 128 if code > 128 else 0),
        "timed_out": timed_out,
        "forks_refused": forks_refused,
        "oom_killed": oom_killed,
        "stderr_tail": tail,
    }
