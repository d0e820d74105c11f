"""Data and baselines for the stacked-LSTM and forecasting chapters.

Stacked LSTMs (book/applied/stacked.md):
- order_task: binary "does A occur before B?" sequences, where order matters.
- bag_of_symbols: the order-blind summary of a sequence (symbol counts), for a baseline.

Forecasting (book/applied/forecasting.md):
- sunspot_series: the yearly sunspot numbers bundled with statsmodels.
- split_by_time, Scaler: a train/test split at a year, and standardisation fitted on train only.
- make_windows, fit_ar, forecast_recursive: windows, a linear AR(p) baseline, recursive multi-step
  forecasts; origin_windows and horizon_errors evaluate forecasts per horizon.
- torch_predictor: wraps a window regressor (x (p, B, 1) -> (B,)) as a NumPy predictor.
- plot_forecasts: error per horizon and forecasts from chosen origins, side by side.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = [
    "order_task", "bag_of_symbols", "sunspot_series", "split_by_time", "Scaler", "make_windows",
    "ARModel", "fit_ar", "forecast_recursive", "origin_windows", "horizon_errors", "torch_predictor",
    "plot_forecasts",
]


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


def bag_of_symbols(x):
    """Order-blind features: how often each symbol occurs in each sequence.

    Inputs: x (T, n, S) one-hot sequences (tensor or array).
    Returns: counts (n, S) float64; any permutation of the time steps gives the same counts.
    """
    x = np.asarray(x)
    if x.ndim != 3:
        raise ValueError(f"bag_of_symbols expects one-hot sequences (T, n, S), got shape {x.shape}")
    return x.sum(axis=0).astype(np.float64)


# ----------------------------------------------------------------------------- forecasting

def sunspot_series():
    """Yearly mean sunspot numbers 1700-2008 from statsmodels' bundled data (no download).

    Returns: years (N,) int, values (N,) float64.
    """
    import statsmodels.api as sm

    df = sm.datasets.sunspots.load_pandas().data
    return df["YEAR"].to_numpy().astype(int), df["SUNACTIVITY"].to_numpy().astype(np.float64)


def split_by_time(years, z, first_test_year):
    """Split a series at a year: everything before `first_test_year` is train, the rest test.

    Returns: n_train, the index of the first test value (z[:n_train] is train, z[n_train:] test).
    """
    years = np.asarray(years)
    if len(years) != len(z) or np.any(np.diff(years) <= 0):
        raise ValueError("split_by_time expects increasing years, one per value of z")
    n_train = int(np.searchsorted(years, first_test_year))
    if not 0 < n_train < len(z):
        raise ValueError(f"first_test_year={first_test_year} leaves no train or no test data "
                         f"(years {years[0]}..{years[-1]})")
    return n_train


class Scaler:
    """Standardisation (z - mean) / std with mean and std fitted on the training part only."""

    def __init__(self, z_train):
        z_train = np.asarray(z_train, dtype=np.float64)
        self.mean, self.std = float(z_train.mean()), float(z_train.std())

    def transform(self, z):
        return (np.asarray(z, dtype=np.float64) - self.mean) / self.std

    def inverse(self, s):
        return np.asarray(s, dtype=np.float64) * self.std + self.mean


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


class ARModel:
    """Linear autoregression z_t = coef . (z_{t-p}, ..., z_{t-1}) + intercept.

    Calling it on windows (..., p), oldest value first, returns the predictions (...).
    """

    def __init__(self, coef, intercept):
        self.coef, self.intercept = np.asarray(coef), float(intercept)
        self.p = len(self.coef)

    def __call__(self, w):
        return np.asarray(w) @ self.coef + self.intercept


def fit_ar(z, p):
    """Least-squares AR(p) with intercept, fitted on the windows of z.

    Returns: ARModel; its coef[k] multiplies z_{t-p+k} (coef[-1] is the weight of z_{t-1}).
    """
    X, y = make_windows(z, p)
    A = np.hstack([X, np.ones((len(X), 1))])
    coef, *_ = np.linalg.lstsq(A, y, rcond=None)
    return ARModel(coef[:-1], coef[-1])


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


def origin_windows(z, origins, p):
    """The p values observed before each forecast origin.

    Inputs: z (N,) series; origins (K,) indices of the first value to forecast; p window length.
    Returns: (K, p) windows, row k = z[origins[k]-p : origins[k]] (nothing at or after the origin).
    """
    origins = np.asarray(origins)
    if origins.min() < p or origins.max() > len(z):
        raise ValueError(f"origins must lie in [p, N] = [{p}, {len(z)}]")
    return np.stack([z[o - p:o] for o in origins])


def horizon_errors(forecasts, z, origins):
    """MAE and RMSE of multi-step forecasts, per horizon.

    Inputs: forecasts (K, Hz), row k forecasting z[origins[k]], ..., z[origins[k]+Hz-1]; z (N,) the
    actual series. Targets beyond the end of z are skipped, so horizon h has fewer origins than h-1.
    Returns: mae (Hz,), rmse (Hz,), count (Hz,) the number of forecasts scored at each horizon.
    """
    forecasts, z, origins = np.asarray(forecasts), np.asarray(z), np.asarray(origins)
    mae, rmse, count = [], [], []
    for h in range(forecasts.shape[1]):
        ok = origins + h < len(z)
        err = forecasts[ok, h] - z[origins[ok] + h]
        mae.append(np.abs(err).mean())
        rmse.append(np.sqrt((err ** 2).mean()))
        count.append(int(ok.sum()))
    return np.array(mae), np.array(rmse), np.array(count)


def torch_predictor(model):
    """NumPy predictor (B, p) -> (B,) from a model mapping x (p, B, 1) to (B,), in eval mode."""
    def predict(w):
        x = torch.as_tensor(np.asarray(w, dtype=np.float32).T[:, :, None])   # (p, B, 1), time-major
        with torch.no_grad():
            return model(x).double().numpy()
    return predict


# ----------------------------------------------------------------------------- plots

def plot_forecasts(years, z, origins, forecasts, mae, single_mae=(), first_years=(), before=15,
                   unit="value"):
    """The forecasting chapter's two panels: error per horizon, and forecasts from chosen origins.

    Inputs:
    - years (N,), z (N,): the series; origins (K,): index of the first forecast year per origin.
    - forecasts: dict name -> (K, Hz) multi-step forecasts (one colour per name, C0, C1, ...).
    - mae: dict name -> (Hz,) mean absolute error per horizon (same names).
    - single_mae: sequence of (Hz,) errors drawn as thin lines (the members of an ensemble, whose
      mean forecast is the last name in `forecasts`).
    - first_years: the origins to draw on the right, as the first forecast year of each.
    - before: how many years before the first origin the right panel starts.
    - unit: the name of the series' unit, for the axis labels.
    Returns:
    - the matplotlib Figure.
    """
    import matplotlib.pyplot as plt

    years, z, origins = np.asarray(years), np.asarray(z), np.asarray(origins)
    names = list(forecasts)
    if list(mae) != names:
        raise ValueError(f"mae must have the names of forecasts, {names}; got {list(mae)}")
    horizon = np.asarray(forecasts[names[0]]).shape[1]
    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(11, 3.8), gridspec_kw={"width_ratios": [1, 1.4]})
    h = np.arange(1, horizon + 1)
    for c, name in enumerate(names):
        ax0.plot(h, mae[name], marker="o", color=f"C{c}", label=name)
    for k, e in enumerate(single_mae):
        ax0.plot(h, e, color=f"C{len(names) - 1}", lw=0.6, alpha=0.5,
                 label="single networks" if k == 0 else None)
    ax0.set(xlabel="horizon h (years ahead)", ylabel=f"MAE ({unit})", title="error per horizon")
    ax0.legend()

    span = np.arange(max(origins[0] - before, 0), len(z))
    ax1.plot(years[span], z[span], "k.-", lw=1.2, label="actual")
    for j, first_year in enumerate(first_years):
        o = int(np.searchsorted(years, first_year))
        hits = np.flatnonzero(origins == o)
        if len(hits) == 0:
            raise ValueError(f"{first_year} is not the first year of any forecast origin")
        yrs = years[o] + np.arange(horizon)
        inside = yrs <= years[-1]
        for c, name in enumerate(names):
            ax1.plot(yrs[inside], np.asarray(forecasts[name])[hits[0]][inside], color=f"C{c}",
                     lw=1.5, label=name if j == 0 else None)
        ax1.axvline(years[o] - 0.5, color="gray", ls=":")
    ax1.set(xlabel="year", ylabel=unit,
            title=f"{horizon}-year forecasts from {len(first_years)} origins")
    ax1.legend(ncol=2, fontsize=8)
    fig.tight_layout()
    return fig
