"""Finite-difference gradient checking for the reference LSTM (use float64)."""

from __future__ import annotations

import numpy as np

from . import reference as ref


def rel_error(a, b):
    """Largest elementwise relative error |a - b| / max(|a| + |b|, tiny), a scalar."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.max(np.abs(a - b) / np.maximum(np.abs(a) + np.abs(b), 1e-12), initial=0.0))


def numerical_gradient(f, x, eps=1e-5, *, order=2):
    """Central-difference gradient of a scalar function f() with respect to the array x.

    Inputs:
    - f: callable with no arguments returning a float; it must read x (which is changed in place).
    - x: float array, perturbed one entry at a time and restored.
    - eps: the step h.
    - order: 2 for the usual (f(x+h) - f(x-h)) / 2h, error O(h^2); 4 for the five-point stencil
      (8 (f(x+h) - f(x-h)) - (f(x+2h) - f(x-2h))) / 12h, error O(h^4), twice the cost.
    Returns:
    - array shaped like x with the estimated partial derivatives.
    """
    if order not in (2, 4):
        raise ValueError(f"order must be 2 or 4; got {order!r}")

    def f_at(idx, old, step):
        x[idx] = old + step
        return f()

    grad = np.zeros_like(x)
    for idx in np.ndindex(x.shape):
        old = x[idx]
        d1 = f_at(idx, old, eps) - f_at(idx, old, -eps)
        if order == 2:
            grad[idx] = d1 / (2 * eps)
        else:
            d2 = f_at(idx, old, 2 * eps) - f_at(idx, old, -2 * eps)
            grad[idx] = (8 * d1 - d2) / (12 * eps)
        x[idx] = old
    return grad


def gradcheck(xs, state, params, *, seed=0, eps=1e-3, order=4):
    """Compare reference.backward with finite differences on a random linear loss.

    The loss is L = sum(dhs * hs) + sum(dh_T * h_T) + sum(dc_T * c_T) with random dhs, dh_T, dc_T
    drawn from `seed`, so every output path carries gradient. The numerical gradient uses the
    fourth-order stencil by default: with the plain central difference, entries whose true
    gradient is small (saturated gates) show relative errors near 1e-7 from truncation alone.

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
    return {name: rel_error(analytic[name], numerical_gradient(loss, targets[name], eps, order=order))
            for name in analytic}
