"""Benchmark: lstmkit.torch.LSTM (fused hand-written BPTT) against torch.nn.LSTM.

Times forward and forward+backward at two CPU sizes (float32, 2 threads by default), with the
candidates interleaved in every repeat (nn, fused, then fused, nn, ...) so that drifts in machine
load hit all alike, and reports medians, the ratio to nn.LSTM (the median of the per-repeat
ratios) and GFLOP/s against a measured matmul peak (a (T*B, D+H) x (D+H, 4H) product, the shape
of the LSTM's work). The forward is timed under torch.no_grad() (inference). On the CPU the fused
path is timed twice: as it runs by default (the compiled step loops, lstmkit/csrc/lstm_cpu.cpp)
and as "fused torch ops" (lstmkit.torch.USE_CPU_KERNEL = False, what other devices run).

    .venv/bin/python benchmarks/bench_torch.py [--repeats N] [--threads N] [--loop] [--quick]
    .venv/bin/python benchmarks/bench_torch.py --threads 1 --clock cpu   # on a busy shared machine
    .venv/bin/python benchmarks/bench_torch.py --device cuda      # T=100, B=64, D=H=512, TF32 off

GFLOP/s counts only the matrix products: forward 2*T*B*4H*(D+H) flops, forward+backward three
times that (the backward does input/state gradients and weight gradients).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch
from torch import nn

import lstmkit.torch as lt
from lstmkit.torch import LSTM

CPU_SIZES = {"small": dict(T=50, B=32, D=64, H=128), "medium": dict(T=100, B=64, D=128, H=256)}
CUDA_SIZES = {"cuda": dict(T=100, B=64, D=512, H=512)}


def matmul_flops(T, B, D, H):
    return 2 * T * B * (D + H) * 4 * H


def sync(device):
    if device == "cuda":
        torch.cuda.synchronize()


CLOCK = time.perf_counter  # --clock cpu: time.process_time


def timed(fn, device):
    sync(device)
    t = CLOCK()
    fn()
    sync(device)
    return CLOCK() - t


def matmul_peak(T, B, D, H, device, repeats):
    """Median GFLOP/s of the (T*B, D+H) x (D+H, 4H) product on this device."""
    a = torch.randn(T * B, D + H, device=device)
    w = torch.randn(D + H, 4 * H, device=device)
    times = [timed(lambda: a @ w, device) for _ in range(repeats)]
    return matmul_flops(T, B, D, H) / statistics.median(times) / 1e9


class TorchOps(nn.Module):
    """An lstmkit LSTM run with lstmkit.torch.USE_CPU_KERNEL off: the fused path's torch ops."""

    def __init__(self, lstm):
        super().__init__()
        self.lstm = lstm

    def forward(self, *args):
        lt.USE_CPU_KERNEL = False
        try:
            return self.lstm(*args)
        finally:
            lt.USE_CPU_KERNEL = True


def bench(name, T, B, D, H, device, repeats, impls):
    torch.manual_seed(0)
    mods = {"nn.LSTM": nn.LSTM(D, H).to(device)}
    for impl in impls:
        m = LSTM(D, H, impl=impl).to(device)
        m.load_state_dict(mods["nn.LSTM"].state_dict())
        mods[f"lstmkit {impl}"] = m
        if impl == "fused" and device == "cpu" and lt.cpu_kernel_status().startswith("loaded"):
            mods["fused torch ops"] = TorchOps(m)
    x = torch.randn(T, B, D, device=device)
    h0, c0 = torch.randn(1, B, H, device=device), torch.randn(1, B, H, device=device)
    xg = x.clone().requires_grad_()

    def fwd(m):
        with torch.no_grad():
            m(x, (h0, c0))

    def fwd_bwd(m):
        out, (h, c) = m(xg, (h0, c0))
        out.sum().backward()

    times = {k: {"fwd": [], "fwd+bwd": []} for k in mods}
    for m in mods.values():  # warm up
        fwd(m)
        fwd_bwd(m)
    for r in range(repeats):
        order = list(mods.items())
        for k, m in order if r % 2 == 0 else order[::-1]:  # alternate who goes first
            times[k]["fwd"].append(timed(lambda m=m: fwd(m), device))
            times[k]["fwd+bwd"].append(timed(lambda m=m: fwd_bwd(m), device))
    peak = matmul_peak(T, B, D, H, device, repeats)
    flops = matmul_flops(T, B, D, H)
    print(f"\n{name}: T={T} B={B} D={D} H={H} {device} float32; matmul peak {peak:.1f} GFLOP/s")
    print(f"{'':15s} {'pass':8s} {'median ms':>10s} {'x nn.LSTM':>10s} {'GFLOP/s':>9s} {'% peak':>7s}")
    for pass_, mult in (("fwd", 1), ("fwd+bwd", 3)):
        base = times["nn.LSTM"][pass_]
        for k in mods:
            t = statistics.median(times[k][pass_])
            # Ratio: median over repeats of (this / nn.LSTM in the same repeat), so that load that
            # comes and goes during the run cancels out instead of landing on one candidate.
            ratio = statistics.median([a / b for a, b in zip(times[k][pass_], base, strict=True)])
            gf = mult * flops / t / 1e9
            print(f"{k:15s} {pass_:8s} {1e3 * t:10.2f} {ratio:10.3f} {gf:9.1f} {100 * gf / peak:6.1f}%")


def load_average():
    """The 1, 5 and 15 minute load averages, or 'n/a' where the OS has none."""
    try:
        return " ".join(f"{v:.2f}" for v in os.getloadavg())
    except (AttributeError, OSError):
        return "n/a"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=21)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--loop", action="store_true", help="also time impl='loop'")
    ap.add_argument("--quick", action="store_true", help="small size only, 5 repeats")
    ap.add_argument("--clock", default="wall", choices=["wall", "cpu"],
                    help="cpu: this process's CPU time, robust on a shared machine; use with --threads 1")
    args = ap.parse_args()
    global CLOCK
    if args.clock == "cpu":
        if args.threads != 1 or args.device != "cpu":
            raise SystemExit("--clock cpu needs --threads 1 on cpu (other threads' spin-waits would count)")
        CLOCK = time.process_time
    torch.set_num_threads(args.threads)
    impls = ["fused"] + (["loop"] if args.loop else [])
    if args.device == "cuda":
        if not torch.cuda.is_available():
            raise SystemExit("--device cuda: no CUDA device available")
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
        sizes = CUDA_SIZES
    else:
        sizes = {"small": CPU_SIZES["small"]} if args.quick else CPU_SIZES
    repeats = 5 if args.quick else args.repeats
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {repeats} interleaved repeats, "
          f"{args.clock} clock; load average {load_average()}")
    if args.device == "cpu":
        print(f"lstmkit CPU kernel: {lt.cpu_kernel_status()}")
    for name, size in sizes.items():
        bench(name, **size, device=args.device, repeats=repeats, impls=impls)
    print(f"\nload average at the end {load_average()} (busy machine: re-run when idle)")


if __name__ == "__main__":
    main()
