"""Finite-difference gradient checking for the reference LSTM (use float64)."""

from __future__ import annotations

import numpy as np

from . import reference as ref


def rel_error(a, b):
    """Largest elementwise relative error |a - b| / max(|a| + |b|, tiny), a scalar."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.max(np.abs(a - b) / np.maximum(np.abs(a) + np.abs(b), 1e-12), initial=0.0))


def numerical_gradient(f, x, eps=1e-5):
    """Central-difference gradient of a scalar function f() with respect to the array x.

    Inputs:
    - f: callable with no arguments returning a float; it must read x (which is changed in place).
    - x: float array, perturbed one entry at a time and restored.
    Returns:
    - array shaped like x: (f(x + eps) - f(x - eps)) / (2 eps) per entry.
    """
    grad = np.zeros_like(x)
    it = np.nditer(x, flags=["multi_index"])
    for _ in it:
        idx = it.multi_index
        old = x[idx]
        x[idx] = old + eps
        f_plus = f()
        x[idx] = old - eps
        f_minus = f()
        x[idx] = old
        grad[idx] = (f_plus - f_minus) / (2 * eps)
    return grad


def gradcheck(xs, state, params, *, seed=0, eps=1e-5):
    """Compare reference.backward with finite differences on a random linear loss.

    The loss is L = sum(dhs * hs) + sum(dh_T * h_T) + sum(dc_T * c_T) with random dhs, dh_T, dc_T
    drawn from `seed`, so every output path carries gradient.

    Inputs:
    - xs (T, B, D), state (h0, c0) each (B, H) or None, params: all float64.
    Returns:
    - dict name -> relative error for xs, h0, c0 and every parameter.
    """
    if xs.dtype != np.float64:
        raise TypeError(f"gradcheck needs float64 inputs (finite differences are too coarse otherwise); "
                        f"got {xs.dtype}")
    T, B, _ = xs.shape
    H = params["weight_hh"].shape[1]
    if state is None:
        state = ref.zero_state(B, H, xs.dtype)
    h0, c0 = state[0].copy(), state[1].copy()
    rng = np.random.default_rng(seed)
    dhs = rng.standard_normal((T, B, H))
    dh_T, dc_T = rng.standard_normal((B, H)), rng.standard_normal((B, H))

    def loss():
        hs, (h_T, c_T), _ = ref.forward(xs, (h0, c0), params)
        return float(np.sum(dhs * hs) + np.sum(dh_T * h_T) + np.sum(dc_T * c_T))

    _, _, cache = ref.forward(xs, (h0, c0), params)
    dxs, (dh0, dc0), grads = ref.backward(dhs, (dh_T, dc_T), cache)
    analytic = {"xs": dxs, "h0": dh0, "c0": dc0, **grads}
    targets = {"xs": xs, "h0": h0, "c0": c0, **params}
    return {name: rel_error(analytic[name], numerical_gradient(loss, targets[name], eps))
            for name in analytic}
