"""A/B in one process: this checkout's lstmkit.torch against another version's lstmkit/torch.py.

The other version's file is loaded under another module name and shares this checkout's compiled
CPU kernel (so only for versions whose lstmkit/csrc/lstm_cpu.cpp has the same functions). nn.LSTM,
the other version and this one run in turn in every repeat (the order alternates), so load that
comes and goes hits all three alike; it prints the median of the per-repeat ratios.

    git -C . worktree add /tmp/old 8a8b777
    .venv/bin/python benchmarks/ab_torch.py /tmp/old/lstmkit/torch.py --threads 1 --clock cpu
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import time

import torch
from bench_torch import CPU_SIZES
from torch import nn

import lstmkit.torch as new


def load(path):
    spec = importlib.util.spec_from_file_location("lstmkit_torch_other", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("other", help="the other version's lstmkit/torch.py")
    ap.add_argument("--size", default="small", choices=sorted(CPU_SIZES))
    ap.add_argument("--repeats", type=int, default=41)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--clock", default="wall", choices=["wall", "cpu"])
    args = ap.parse_args()
    if args.clock == "cpu" and args.threads != 1:
        raise SystemExit("--clock cpu needs --threads 1 (other threads' spin-waits would count)")
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    torch.set_num_threads(args.threads)
    T, B, D, H = (CPU_SIZES[args.size][k] for k in "TBDH")
    torch.manual_seed(0)
    mods = {"nn.LSTM": nn.LSTM(D, H), "other": load(args.other).LSTM(D, H), "this": new.LSTM(D, H)}
    for k in ("other", "this"):
        mods[k].load_state_dict(mods["nn.LSTM"].state_dict())
    x, h0, c0 = torch.randn(T, B, D), torch.randn(1, B, H), torch.randn(1, B, H)
    xg = x.clone().requires_grad_()

    def fwd(m):
        with torch.no_grad():
            m(x, (h0, c0))

    def fwd_bwd(m):
        out, _ = m(xg, (h0, c0))
        out.sum().backward()

    passes = {"fwd": fwd, "fwd+bwd": fwd_bwd}
    times = {k: {p: [] for p in passes} for k in mods}
    for f in passes.values():          # warm up
        for m in mods.values():
            f(m)
    for r in range(args.repeats):
        for k in list(mods) if r % 2 == 0 else list(mods)[::-1]:
            for p, f in passes.items():
                t = clock()
                f(mods[k])
                times[k][p].append(clock() - t)

    def ratio(a, b, p):
        return statistics.median([u / v for u, v in zip(times[a][p], times[b][p], strict=True)])

    print(f"{args.size} (T={T} B={B} D={D} H={H}), {args.threads} threads, {args.clock} clock, "
          f"{args.repeats} repeats")
    for p in passes:
        print(f"{p:8s} nn.LSTM {1e3 * statistics.median(times['nn.LSTM'][p]):7.2f} ms   other/nn "
              f"{ratio('other', 'nn.LSTM', p):.3f}   this/nn {ratio('this', 'nn.LSTM', p):.3f}   "
              f"this/other {ratio('this', 'other', p):.3f}")


if __name__ == "__main__":
    main()
