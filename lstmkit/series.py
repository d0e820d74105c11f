"""Data for the stacked-LSTM and forecasting chapters: an order task and yearly sunspot numbers.

- order_task: binary "does A occur before B?" sequences, where order matters.
- sunspot_series, make_windows, fit_ar, forecast_recursive: forecasting the yearly sunspot series with
  windows, a linear autoregressive baseline and recursive multi-step forecasts.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["order_task", "sunspot_series", "make_windows", "fit_ar", "forecast_recursive"]


# ----------------------------------------------------------------------------- stacked

def order_task(n, T, rng, n_symbols=8):
    """Binary task where order matters: does symbol A (=0) occur before symbol B (=1)?

    Each sequence of length T holds A and B exactly once at random distinct positions; the other
    steps are distractors drawn from symbols 2..n_symbols-1. One-hot over n_symbols.
    Returns: x (T, n, n_symbols) float32, y (n,) float32, 1.0 where A comes first.
    """
    if T < 2 or n_symbols < 3:
        raise ValueError(f"order_task needs T >= 2 and n_symbols >= 3, got T={T}, n_symbols={n_symbols}")
    sym = rng.integers(2, n_symbols, size=(T, n))
    pos = np.argsort(rng.random((T, n)), axis=0)[:2]    # two distinct positions per column
    cols = np.arange(n)
    sym[pos[0], cols] = 0
    sym[pos[1], cols] = 1
    x = np.eye(n_symbols, dtype=np.float32)[sym]
    y = (pos[0] < pos[1]).astype(np.float32)
    return torch.from_numpy(x), torch.from_numpy(y)


# ----------------------------------------------------------------------------- forecasting

def sunspot_series():
    """Yearly mean sunspot numbers 1700-2008 from statsmodels' bundled data.

    Returns: years (N,) int, values (N,) float64.
    """
    import statsmodels.api as sm

    df = sm.datasets.sunspots.load_pandas().data
    return df["YEAR"].to_numpy().astype(int), df["SUNACTIVITY"].to_numpy().astype(np.float64)


def make_windows(z, p):
    """Sliding windows of length p and their next value.

    Inputs: z (N,) series; p window length.
    Returns: X (N-p, p) windows, y (N-p,) the value following each window.
    """
    z = np.asarray(z)
    if z.ndim != 1 or len(z) <= p:
        raise ValueError(f"make_windows expects a 1-D series longer than p={p}, got shape {z.shape}")
    X = np.lib.stride_tricks.sliding_window_view(z[:-1], p)
    return X.copy(), z[p:].copy()


def fit_ar(z, p):
    """Least-squares AR(p) with intercept: z_t = w . z_{t-p..t-1} + b.

    Returns: callable window (..., p) -> prediction (...).
    """
    X, y = make_windows(z, p)
    A = np.hstack([X, np.ones((len(X), 1))])
    coef, *_ = np.linalg.lstsq(A, y, rcond=None)
    return lambda w: np.asarray(w) @ coef[:-1] + coef[-1]


def forecast_recursive(predict, window, horizon):
    """Multi-step forecast: feed each prediction back as the newest input.

    Inputs: predict, callable (B, p) -> (B,); window (B, p) last observed values; horizon steps.
    Returns: (B, horizon) forecasts.
    """
    w = np.array(window, dtype=np.float64)
    out = []
    for _ in range(horizon):
        nxt = np.asarray(predict(w), dtype=np.float64)
        out.append(nxt)
        w = np.concatenate([w[:, 1:], nxt[:, None]], axis=1)
    return np.stack(out, axis=1)
