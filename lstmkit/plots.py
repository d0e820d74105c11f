"""Plots the book's chapters share (matplotlib), so that a page shows one call, not 20 lines.

- lag_curves(ax, curves): gradient norms against the time lag on a log scale, the measurement of
  lstmkit.rnn.gradient_norm_by_lag (the book's reference figure and the chapters that refer to it).
- forget_path_product(f): the product of the forget gates along the cell path, per lag.
- training_curves(losses, norms, max_norm): loss and gradient norm (before clipping) per step.

The diagrams of the cell and the networks are drawn elsewhere (lstmkit.diagrams).
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

__all__ = ["lag_curves", "forget_path_product", "training_curves"]


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
