"""Start the sandboxed child (child.py) in bubblewrap and watch it: limits, wall timeout, process group.

    bwrap --unshare-user --unshare-net --unshare-pid --unshare-ipc --die-with-parent --new-session
          --cap-drop ALL --seccomp FD --ro-bind / / --dev /dev --proc /proc --tmpfs HIDDEN ...
          --tmpfs /tmp --bind WORKDIR /tmp/work --chdir /tmp/work  python -I -B /tmp/work/child.py /tmp/work

- bubblewrap (Debian's `bwrap`) makes the namespaces and mounts: everything read-only, the course, the
  grader's package, tests and checkout hidden under empty tmpfs mounts (Python's own folders bound back,
  read-only), a private /tmp with only WORKDIR writable, no capabilities, no_new_privs;
- net namespace: no network (only a loopback that is down); ipc namespace: no shared memory of the host;
- pid namespace with its own /proc: the child sees no other process, and when it ends the kernel kills
  everything it started (fork bombs included); --die-with-parent ends it if the grader dies;
- a seccomp filter built with libseccomp (pyseccomp) and handed to bwrap: socket(AF_UNIX, ...) fails,
  since a read-only mount does not stop connect() to a host daemon's socket;
- kept by hand here, because bwrap has no option for them: its own session/process group, killed with
  SIGKILL at the wall timeout; a pids cgroup (RLIMIT_NPROC does not bind uid 0, which the child keeps)
  and a memory cgroup for all its processes together; when the kernel kills one of them for memory,
  every part gets the status `memory`;
- stdout/stderr go to files in WORKDIR capped by RLIMIT_FSIZE (set in child.py with the other rlimits,
  which bwrap does not set either): a flood ends the child (`crashed`).
"""

from __future__ import annotations

import errno
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from functools import lru_cache
from pathlib import Path

from .child import _under, kept_paths
from .limits import Limits

BWRAP = ["bwrap", "--unshare-user", "--unshare-net", "--unshare-pid", "--unshare-ipc", "--die-with-parent",
         "--new-session", "--cap-drop", "ALL"]
WORK = "/tmp/work"  # where WORKDIR appears inside


class SandboxUnavailable(RuntimeError):
    pass


@lru_cache(maxsize=1)
def bwrap_proc():
    """How the sandbox gets its /proc: "private" (a /proc of its own pid namespace), "hidden" (some
    containers forbid mounting proc: an empty mount hides the host's), or None when bwrap does not work."""
    if shutil.which("bwrap") is None:
        return None
    for how, proc in (("private", ["--proc", "/proc"]), ("hidden", ["--tmpfs", "/proc"])):
        try:
            r = subprocess.run([*BWRAP, "--ro-bind", "/", "/", *proc, "true"], capture_output=True,
                               timeout=20)
        except (OSError, subprocess.TimeoutExpired):
            continue
        if r.returncode == 0:
            return how
    return None


def namespaces_work() -> bool:
    """Whether bubblewrap with user, net, ipc and pid namespaces works on this machine."""
    return bwrap_proc() is not None


def seccomp_filter():
    """A file holding the BPF program that makes socket(AF_UNIX, ...) fail with EPERM (and refuses every
    system call of another ABI, e.g. i386 or x32, which could open one by another number)."""
    try:
        import pyseccomp as sc

        f = sc.SyscallFilter(sc.ALLOW)
        f.set_attr(sc.Attr.ACT_BADARCH, sc.ERRNO(errno.EPERM))
        # the family is a C int: compare the low 32 bits only, as the kernel reads it
        f.add_rule(sc.ERRNO(errno.EPERM), "socket", sc.Arg(0, sc.MASKED_EQ, 0xFFFFFFFF, socket.AF_UNIX))
        out = tempfile.TemporaryFile()
        f.export_bpf(out)
    except (ImportError, OSError, RuntimeError) as e:
        raise SandboxUnavailable(f"the grader's seccomp filter needs libseccomp and pyseccomp ({e})") from e
    out.flush()
    out.seek(0)
    return out


def mounts(workdir, hide, tmp_bytes, keep):
    """bwrap's mount options: `hide` under empty tmpfs mounts, `keep` (Python's own folders) bound back
    read-only, a hidden folder inside `keep` hidden again, /tmp private with WORKDIR at /tmp/work."""
    args = ["--ro-bind", "/", "/", "--dev", "/dev", "--remount-ro", "/dev"]
    args += ["--proc", "/proc"] if bwrap_proc() == "private" else \
        ["--perms", "0555", "--size", "4096", "--tmpfs", "/proc", "--remount-ro", "/proc"]
    hide = sorted({h.rstrip("/") or "/" for h in hide} | {"/tmp"}, key=len)
    covered = []
    for path in hide:
        if any(_under(path, c) for c in covered) or not os.path.isdir(path):
            continue
        if path == "/tmp":
            args += ["--perms", "1777", "--size", str(tmp_bytes), "--tmpfs", "/tmp"]
        else:
            args += ["--perms", "0555", "--size", "65536", "--tmpfs", path]
        covered.append(path)
    for path in keep:
        args += ["--ro-bind", path, path]
    args += [a for path in covered if path != "/tmp" for a in ("--remount-ro", path)]
    for path in hide:
        if any(_under(path, k) for k in keep) and path not in keep and os.path.isdir(path):
            args += ["--perms", "0555", "--size", "4096", "--tmpfs", path, "--remount-ro", path]
    return args + ["--bind", str(workdir), WORK, "--chdir", WORK]


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


def run_child(workdir: Path, limits: Limits, isolate: bool = True, hide=()) -> dict:
    """Run child.py on `workdir` within `limits` (wall clock, processes, memory of all processes), with the
    folders in `hide` out of its sight.
    Returns {returncode, signal, timed_out, forks_refused, oom_killed, stderr_tail}."""
    workdir = Path(workdir)
    cmd = [sys.executable, "-I", "-B", str(workdir / "child.py"), str(workdir)]
    seccomp = None
    if isolate:
        if not namespaces_work():
            raise SandboxUnavailable(
                "the grader needs bubblewrap (`bwrap`, Debian's bubblewrap) with user, network, ipc and pid "
                "namespaces (kernel.unprivileged_userns_clone=1 or root); it is not available here"
            )
        seccomp = seccomp_filter()
        cmd = [*BWRAP, "--seccomp", str(seccomp.fileno()),
               *mounts(workdir, hide, limits.tmp_bytes, kept_paths(hide)),
               sys.executable, "-I", "-B", f"{WORK}/child.py", WORK]
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
                                start_new_session=posix, preexec_fn=preexec if posix else None, cwd=workdir,
                                pass_fds=[seccomp.fileno()] if seccomp else [])
        if seccomp:
            seccomp.close()
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
    # bwrap exits with 128 + the signal that ended the child (-signal: the grader killed bwrap).
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
