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
  not bind a process whose real uid is root, which is what --map-root-user keeps).
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

UNSHARE = ["unshare", "--user", "--map-root-user", "--net", "--mount", "--pid", "--fork", "--mount-proc",
           "--kill-child"]
OUTPUT_CAP = 4 * 2**20  # bytes of stdout/stderr (and any file) the child may write
MAX_PROCESSES = 64


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


def _pids_cgroup():
    """A fresh pids cgroup (v1 or v2) with pids.max set, or None if we may not make one."""
    roots = [Path("/sys/fs/cgroup/pids")]
    v2 = Path("/sys/fs/cgroup/cgroup.subtree_control")
    if v2.exists() and "pids" in v2.read_text().split():
        roots.append(v2.parent)
    for root in roots:
        if not (root / "cgroup.procs").exists():
            continue
        path = root / f"lstmkit-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        try:
            path.mkdir()
            (path / "pids.max").write_text(str(MAX_PROCESSES))
            return path
        except OSError:
            shutil.rmtree(path, ignore_errors=True)
    return None


def _remove_cgroup(path):
    for _ in range(50):
        try:
            path.rmdir()
            return
        except OSError:
            time.sleep(0.02)


def run_child(workdir: Path, timeout: float, isolate: bool = True) -> dict:
    """Run child.py on `workdir`. Returns {returncode, signal, timed_out, forks_refused, stderr_tail}."""
    workdir = Path(workdir)
    cmd = [sys.executable, "-I", "-B", str(workdir / "child.py"), str(workdir)]
    if isolate:
        if not namespaces_work():
            raise SandboxUnavailable(
                "the grader needs `unshare` with user, network, mount and pid namespaces "
                "(util-linux; kernel.unprivileged_userns_clone=1 or root); it is not available here"
            )
        cmd = unshare_command() + cmd
    cgroup = _pids_cgroup() if isolate else None

    def preexec():
        if cgroup is not None:
            (cgroup / "cgroup.procs").write_text(str(os.getpid()))
        import resource

        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))

    timed_out = False
    with open(workdir / "stdout.txt", "wb") as out, open(workdir / "stderr.txt", "wb") as err:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                start_new_session=True, preexec_fn=preexec, cwd=workdir)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
        finally:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()
    forks_refused = False
    if cgroup is not None:
        events = cgroup / "pids.events"
        if events.exists():
            forks_refused = any(line.split()[-1] != "0" for line in events.read_text().splitlines())
        _remove_cgroup(cgroup)
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
        "stderr_tail": tail,
    }
