"""Benchmark: the NumPy reference LSTM against torch.nn.LSTM on the CPU (float32).

Times forward and forward+backward of both at two sizes, with repeats interleaved (reference,
torch, reference, torch, ...) so that drifts in machine load hit both alike, and reports medians.

    .venv/bin/python benchmarks/bench_reference.py [--repeats N] [--quick]

Torch's forward runs under torch.no_grad() (inference); the reference forward always keeps its
cache, as it is written for backward. GFLOP/s counts only the matrix products: the forward's
2*T*B*(D+H)*4H flops, and three times that for forward+backward (the backward has one product
for the input and state gradients and one for the weight gradients). The ratio is reference
time / torch time: below 1 the reference is faster.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np
import torch

from lstmkit import reference as ref
from lstmkit.convert import to_torch

SIZES = {"small": dict(T=50, B=32, D=64, H=128), "medium": dict(T=100, B=64, D=128, H=256)}


def matmul_flops(T, B, D, H):
    """Flops of the forward's matrix products: (T*B, D+H) x (D+H, 4H)."""
    return 2 * T * B * (D + H) * 4 * H


def make_case(T, B, D, H, seed=0):
    rng = np.random.default_rng(seed)
    params = ref.init_params(D, H, rng=rng, dtype=np.float32)
    xs = rng.standard_normal((T, B, D)).astype(np.float32)
    h0 = rng.standard_normal((B, H)).astype(np.float32)
    c0 = rng.standard_normal((B, H)).astype(np.float32)
    dhs = rng.standard_normal((T, B, H)).astype(np.float32)

    lstm = torch.nn.LSTM(D, H)
    to_torch(params, lstm)
    x_t = torch.from_numpy(xs).requires_grad_()
    state_t = (torch.from_numpy(h0)[None], torch.from_numpy(c0)[None])
    dhs_t = torch.from_numpy(dhs)

    def ref_fwd():
        ref.forward(xs, (h0, c0), params)

    def ref_fwd_bwd():
        _, _, cache = ref.forward(xs, (h0, c0), params)
        ref.backward(dhs, None, cache)

    def torch_fwd():
        with torch.no_grad():
            lstm(x_t, state_t)

    def torch_fwd_bwd():
        lstm.zero_grad(set_to_none=True)
        x_t.grad = None
        out, _ = lstm(x_t, state_t)
        out.backward(dhs_t)

    return {"fwd": (ref_fwd, torch_fwd), "fwd+bwd": (ref_fwd_bwd, torch_fwd_bwd)}


def timed(fn):
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15, help="timed repeats per case (default 15)")
    parser.add_argument("--quick", action="store_true", help="small size only, 3 repeats")
    args = parser.parse_args()
    repeats = 3 if args.quick else args.repeats
    sizes = {"small": SIZES["small"]} if args.quick else SIZES

    torch.set_num_threads(2)
    print(f"numpy {np.__version__}, torch {torch.__version__}, torch threads {torch.get_num_threads()}, "
          f"float32, {repeats} repeats, medians")
    blas_env = {k: v for k, v in os.environ.items() if k.startswith(("OPENBLAS_", "OMP_", "MKL_"))}
    print(f"BLAS environment: {blas_env or 'none set'}; load average {os.getloadavg()[0]:.1f}")
    header = f"{'size':<7} {'pass':<8} {'reference ms':>12} {'torch ms':>9} {'ratio':>6} " \
             f"{'ref GFLOP/s':>11} {'torch GFLOP/s':>13}"
    print(header)
    print("-" * len(header))
    for size, dims in sizes.items():
        for name, (ref_fn, torch_fn) in make_case(**dims).items():
            ref_fn(), torch_fn()  # warm-up
            ref_times, torch_times = [], []
            for _ in range(repeats):
                ref_times.append(timed(ref_fn))
                torch_times.append(timed(torch_fn))
            t_ref, t_torch = statistics.median(ref_times), statistics.median(torch_times)
            flops = matmul_flops(**dims) * (1 if name == "fwd" else 3)
            print(f"{size:<7} {name:<8} {t_ref * 1e3:>12.2f} {t_torch * 1e3:>9.2f} {t_ref / t_torch:>6.2f} "
                  f"{flops / t_ref / 1e9:>11.1f} {flops / t_torch / 1e9:>13.1f}")


if __name__ == "__main__":
    main()
