"""Plots the book's chapters share (matplotlib), so that a page shows one call, not 20 lines.

- lag_curves(ax, curves): gradient norms against the time lag on a log scale, the measurement of
  lstmkit.rnn.gradient_norm_by_lag (the book's reference figure and the chapters that refer to it).
- forget_path_product(f): the product of the forget gates along the cell path, per lag.
- training_curves(losses, norms, max_norm): loss and gradient norm (before clipping) per step.
- memory_unit_trace(...): one unit's input, gates, states and output over a sequence.

The diagrams of the cell and the networks are drawn elsewhere (lstmkit.diagrams).
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

__all__ = ["lag_curves", "forget_path_product", "training_curves", "memory_unit_trace"]


def lag_curves(ax, curves, *, ylabel, title=None, cmap=None, styles=None, xlabel=None, legend_cols=1):
    """Draw gradient norms against the lag on a log scale.

    Inputs:
    - ax: a matplotlib Axes.
    - curves: dict label -> array (T,) of norms, index = lag (0 = the step of the loss).
    - ylabel: the y axis label (say which gradient: dL/dh_t, dL/dx_t, ...).
    - title: optional axes title.
    - cmap: optional colormap name; colours are spread over it in the order of `curves`.
    - styles: optional dict label -> matplotlib format string (e.g. "k--"), overriding the colour.
    - xlabel: the x axis label (default: the lag T - t).
    - legend_cols: columns of the legend.
    Returns:
    - ax.
    """
    if not curves:
        raise ValueError("curves must hold at least one label -> array of norms")
    styles = styles or {}
    colors = plt.get_cmap(cmap)(np.linspace(0, 0.9, len(curves))) if cmap else [None] * len(curves)
    for (label, curve), color in zip(curves.items(), colors, strict=True):
        curve = np.asarray(curve, dtype=float)
        if curve.ndim != 1:
            raise ValueError(f"curve {label!r} must be 1-D (one norm per lag); got shape {curve.shape}")
        lags = np.arange(len(curve))
        if label in styles:
            ax.semilogy(lags, curve, styles[label], label=label)
        else:
            ax.semilogy(lags, curve, color=color, label=label)
    ax.set_xlabel(xlabel or "lag $T - t$ (steps back from the loss)")
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    ax.legend(fontsize=8, ncol=legend_cols)
    ax.grid(True, which="major", alpha=0.3)
    return ax


def forget_path_product(f):
    """The factor the cell path applies from c_T back to c_t: prod_{s=t+1}^{T} f_s, per lag.

    Inputs:
    - f: forget gates over time, (T, B, H) (cache["f"] of lstmkit.reference.forward).
    Returns:
    - (T,) array, the batch-and-unit mean of the product, index = lag T - t (lag 0: 1).
    """
    f = np.asarray(f)
    if f.ndim != 3:
        raise ValueError(f"f must have shape (T, B, H); got {f.shape}")
    f_rev = f[::-1]                                               # f_T, f_{T-1}, ...
    path = np.concatenate([np.ones((1,) + f.shape[1:]), np.cumprod(f_rev[:-1], axis=0)])
    return path.mean(axis=(1, 2))


def training_curves(losses, norms, max_norm, *, title=None):
    """Loss (left) and gradient norm before clipping (right) per step, with the clip threshold.

    Inputs:
    - losses, norms: sequences of floats, one per optimisation step.
    - max_norm: the clipping threshold, drawn as a dashed line.
    - title: optional title of the left panel.
    Returns:
    - the figure.
    """
    if len(losses) != len(norms):
        raise ValueError(f"losses and norms must have one entry per step; got {len(losses)} and {len(norms)}")
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.2))
    ax1.semilogy(losses)
    ax1.set_xlabel("step")
    ax1.set_ylabel("mean squared error")
    if title:
        ax1.set_title(title)
    ax2.semilogy(norms, lw=0.8)
    ax2.axhline(max_norm, color="k", ls="--", lw=1, label=f"clip threshold {max_norm:g}")
    ax2.set_xlabel("step")
    ax2.set_ylabel("gradient norm before clipping")
    ax2.legend()
    fig.tight_layout()
    return fig


def memory_unit_trace(store, query, value, gates, cell, hidden, target, prediction, unit):
    """One unit of a trained network over one sequence: five stacked panels sharing the time axis.

    Panels: the input (stored values and query marks), the forget and input gates, the candidate
    and the output gate, the cell and hidden state, the target and the prediction. Red lines mark
    the store steps in every panel.

    Inputs:
    - store, query: (T,) bool, the steps that store a value / ask for it.
    - value: (T,) the value channel of the input.
    - gates: dict with "f", "i", "g", "o", each (T,), the unit's gate values.
    - cell, hidden: (T,) the unit's c_t and h_t.
    - target, prediction: (T,) the network's target and output.
    - unit: the unit's index, for the labels.
    Returns:
    - the figure.
    """
    store, query = np.asarray(store, bool), np.asarray(query, bool)
    T = len(store)
    series = [value, cell, hidden, target, prediction, *(gates[k] for k in "figo")]
    if len(query) != T or any(len(np.asarray(s)) != T for s in series):
        raise ValueError(f"every series must have the length of store, T={T}")
    t = np.arange(T)
    value = np.asarray(value)
    fig, axes = plt.subplots(5, 1, figsize=(8, 9), sharex=True)
    axes[0].stem(t[store], value[store], linefmt="C3-", markerfmt="C3o", basefmt=" ", label="stored value")
    axes[0].plot(t[query], np.zeros(query.sum()), "k|", ms=12, label="query")
    axes[0].set_ylabel("input")
    axes[0].set_ylim(-1.1, 1.1)
    panels = [("forget / input", [("f", "C0"), ("i", "C1")]),
              ("candidate / output", [("g", "C2"), ("o", "C4")])]
    for ax, (ylabel, names) in zip(axes[1:3], panels, strict=True):
        for name, color in names:
            ax.plot(t, gates[name], color=color, label=f"${name}_t$ (unit {unit})")
        ax.set_ylabel(ylabel)
    axes[3].plot(t, cell, color="C5", label=f"$c_t$ (unit {unit})")
    axes[3].plot(t, hidden, color="k", lw=1, label=f"$h_t$ (unit {unit})")
    axes[3].set_ylabel("states")
    axes[4].plot(t, target, "o", color="0.6", ms=4, label="target")
    axes[4].plot(t, prediction, color="C3", lw=1, label="prediction")
    axes[4].set_ylabel("output")
    axes[4].set_xlabel("step $t$")
    for ax in axes:
        for s in t[store]:
            ax.axvline(s, color="C3", lw=0.8, alpha=0.4)
        ax.legend(loc="upper right", fontsize=8, ncol=2)
        ax.grid(True, alpha=0.3)
    fig.tight_layout()
    return fig
