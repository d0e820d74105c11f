"""Builds and loads the compiled CPU step loops of lstmkit.torch (lstmkit/csrc/lstm_cpu.cpp).

The kernel is compiled once per source, torch version and CPU, with the C++ compiler and torch's
own headers and libraries (about 15 s), into a cache folder ($LSTMKIT_CACHE, else
~/.cache/lstmkit), and loaded with torch.ops.load_library. Where it cannot be built (not Linux, no
g++, a read-only cache), lstmkit.torch runs its torch ops on the CPU as on every other device:
same results, slower at small sizes. `status()` says which; LSTMKIT_CPU_KERNEL=0 turns it off.

    python -m lstmkit._cpu_kernel      # build now (make setup does) and print the status
"""

from __future__ import annotations

import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
from pathlib import Path

import torch

SOURCE = Path(__file__).with_name("csrc") / "lstm_cpu.cpp"
# -funsafe-math-optimizations lets the compiler reorder the step's float arithmetic (about 1.8x faster
# elementwise pass; results within float rounding). It is given to the compile step only: at link time
# gcc would add crtfastmath.o, which flushes denormals to zero for the whole process.
FLAGS = ["-O3", "-march=native", "-fno-math-errno", "-fno-trapping-math", "-funsafe-math-optimizations",
         "-std=c++20", "-fPIC", "-fopenmp", "-w"]

_state = {"loaded": None, "status": "not loaded yet"}


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(os.environ.get("LSTMKIT_CACHE") or Path(base) / "lstmkit")


def _cpu_flags() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next((line for line in f if line.startswith(("flags", "Features"))), "")
    except OSError:
        return ""


def _library_path(cxx: str) -> Path:
    """Where the build for this source, torch, compiler and CPU lives (-march=native ties it to the CPU)."""
    h = hashlib.sha256(SOURCE.read_bytes())
    for part in (torch.__version__, str(Path(torch.__file__).parent), " ".join(FLAGS), cxx, _cpu_flags(),
                 platform.machine()):
        h.update(part.encode())
    return cache_dir() / f"lstm_cpu-{h.hexdigest()[:16]}.so"


def _build(target: Path, cxx: str) -> None:
    from torch.utils import cpp_extension

    print(f"lstmkit: compiling the CPU step kernel (once, about 15 s) into {target.parent}", flush=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        obj, out = Path(tmp) / "lstm_cpu.o", Path(tmp) / target.name
        compile_ = [cxx, *FLAGS, "-c", str(SOURCE), "-o", str(obj),
                    f"-D_GLIBCXX_USE_CXX11_ABI={int(torch._C._GLIBCXX_USE_CXX11_ABI)}"]
        for d in cpp_extension.include_paths():
            compile_ += ["-isystem", d]
        link = [cxx, "-shared", "-fopenmp", str(obj), "-o", str(out)]
        for d in cpp_extension.library_paths():
            link += ["-L", d, f"-Wl,-rpath,{d}"]
        link += ["-Wl,-z,defs", "-lc10", "-ltorch_cpu"]   # BLAS (sgemm_) comes from torch_cpu
        for cmd in (compile_, link):
            done = subprocess.run(cmd, capture_output=True, text=True)
            if done.returncode != 0:
                raise RuntimeError(f"{cxx} failed: {done.stderr.strip()[-800:]}")
        os.replace(out, target)        # atomic: another process sees the whole file or none


def load() -> bool:
    """True when the kernel is loaded (built first if needed); otherwise status() says why not."""
    if _state["loaded"] is None:
        try:
            _state["status"] = _load()
            _state["loaded"] = True
        except Exception as e:   # any failure means: use the torch ops
            _state["status"] = f"not used: {e}"
            _state["loaded"] = False
    return _state["loaded"]


def _load() -> str:
    if os.environ.get("LSTMKIT_CPU_KERNEL", "1") == "0":
        raise RuntimeError("turned off by LSTMKIT_CPU_KERNEL=0")
    if platform.system() != "Linux":
        raise RuntimeError(f"only built on Linux (this is {platform.system()})")
    cxx = os.environ.get("CXX") or shutil.which("g++")
    if not cxx:
        raise RuntimeError("no C++ compiler (g++) found")
    target = _library_path(cxx)
    if not target.exists():
        import fcntl

        target.parent.mkdir(parents=True, exist_ok=True)
        with open(target.with_suffix(".lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)      # one build at a time (e.g. parallel test workers)
            if not target.exists():
                _build(target, cxx)
    torch.ops.load_library(str(target))
    return f"loaded from {target}"


def status() -> str:
    """One line: where the kernel was loaded from, or why lstmkit.torch uses torch ops on the CPU."""
    return _state["status"]


if __name__ == "__main__":
    load()
    print("lstmkit CPU kernel:", status())
