"""Data generators, small models and a training loop shared by the applied chapters and their tests.

Every recurrent model here uses `lstmkit.torch.LSTM` (the drop-in for torch.nn.LSTM), except
`RNNClassifier`/`RNNRegressor`, the vanilla-RNN baselines (torch.nn.RNN). Sequences are time-major (T, B, D),
as everywhere in lstmkit. Generators take a `numpy.random.Generator`, so a seed fixes the data.

Tasks:
- digits_sequences: sklearn's 8x8 digits read one row per step.
- adding_problem, embedded_reber, temporal_order: CPU-sized versions of three experiments of
  Hochreiter & Schmidhuber (1997).

The stacked-LSTM and forecasting chapters' data live in `lstmkit.series`, the character-level
language model in `lstmkit.charlm`.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from lstmkit import grading
from lstmkit.torch import LSTM
from lstmkit.train import _step, add_forget_bias, progress_bar

__all__ = [
    "LSTM", "set_seed", "train", "digits_sequences", "add_forget_bias", "SequenceClassifier",
    "SequenceRegressor", "StepClassifier", "RNNClassifier", "RNNRegressor", "adding_problem",
    "REBER_SYMBOLS", "embedded_reber", "reber_batch", "temporal_order", "count_params",
]


def set_seed(seed: int) -> np.random.Generator:
    """Seed torch and return a NumPy Generator with the same seed."""
    torch.manual_seed(seed)
    return np.random.default_rng(seed)


def count_params(model: nn.Module) -> int:
    """Number of trainable parameters of a model."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def train(model, batch_fn, loss_fn, steps, *, lr=1e-2, clip=1.0, desc="training", progress=True):
    """Train `model` with Adam for `steps` steps on fresh batches, showing a progress bar.

    The step itself (backward, gradient-norm clipping, optimiser step) and the progress bar are
    lstmkit.train's, shared with `lstmkit.train.fit`; this loop differs only in drawing a new batch
    at every step instead of passing over a fixed list of batches.

    Inputs:
    - model: an nn.Module.
    - batch_fn: callable step -> (x, y), a training batch.
    - loss_fn: callable (model, x, y) -> scalar loss tensor.
    - steps: number of optimiser steps.
    - lr: Adam learning rate; clip: max global gradient norm (None for no clipping).
    - desc: label of the progress bar; progress: False for no bar.
    Returns:
    - losses: list of float, the training loss of every step.
    """
    if clip is not None and clip <= 0:
        raise ValueError(f"clip must be positive or None; got {clip}")
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    losses = []
    bar = progress_bar(range(steps), desc=desc, disable=not progress)
    model.train()
    for step in bar:
        x, y = batch_fn(step)
        loss = loss_fn(model, x, y)
        _step(model, loss, opt, clip)
        losses.append(loss.item())
        if step % 20 == 19 or step == steps - 1:
            bar.set_postfix(loss=f"{np.mean(losses[-20:]):.4f}", refresh=False)
    model.eval()
    return losses


# ----------------------------------------------------------------------------- models

class SequenceClassifier(nn.Module):
    """LSTM over a sequence, then a linear layer on the last hidden state h_T.

    Inputs (forward): x (T, B, D). Returns: logits (B, n_out).
    num_layers > 1 stacks LSTM layers: each lower layer returns its full sequence h_1..h_T,
    which is the input sequence of the layer above. forget_bias is added to the forget gate's
    initial bias (see add_forget_bias).
    """

    def __init__(self, D, H, n_out, num_layers=1, forget_bias=0.0):
        super().__init__()
        self.lstm = add_forget_bias(LSTM(D, H, num_layers=num_layers), forget_bias)
        self.head = nn.Linear(H, n_out)

    def forward(self, x):
        hs, _ = self.lstm(x)        # (T, B, H), top layer
        return self.head(hs[-1])    # (B, n_out)


class SequenceRegressor(SequenceClassifier):
    """SequenceClassifier with one output, squeezed: x (T, B, D) -> (B,)."""

    def __init__(self, D, H, num_layers=1, forget_bias=0.0):
        super().__init__(D, H, 1, num_layers, forget_bias)

    def forward(self, x):
        return super().forward(x).squeeze(-1)


class StepClassifier(nn.Module):
    """LSTM with a linear read-out at every step: x (T, B, D) -> logits (T, B, n_out)."""

    def __init__(self, D, H, n_out, forget_bias=0.0):
        super().__init__()
        self.lstm = add_forget_bias(LSTM(D, H), forget_bias)
        self.head = nn.Linear(H, n_out)

    def forward(self, x):
        hs, _ = self.lstm(x)
        return self.head(hs)


class RNNClassifier(nn.Module):
    """Vanilla tanh RNN baseline (torch.nn.RNN) with a linear read-out.

    Inputs (forward): x (T, B, D). Returns: logits (B, n_out) from h_T, or (T, B, n_out) from
    every h_t if per_step=True (the baseline for StepClassifier).
    """

    def __init__(self, D, H, n_out, per_step=False):
        super().__init__()
        self.rnn = nn.RNN(D, H)
        self.head = nn.Linear(H, n_out)
        self.per_step = per_step

    def forward(self, x):
        hs, _ = self.rnn(x)
        return self.head(hs if self.per_step else hs[-1])


class RNNRegressor(RNNClassifier):
    """Vanilla tanh RNN baseline with one output, squeezed: x (T, B, D) -> (B,)."""

    def __init__(self, D, H):
        super().__init__(D, H, 1)

    def forward(self, x):
        return super().forward(x).squeeze(-1)


# ----------------------------------------------------------------------------- digits

def digits_sequences(test_size=0.25, seed=0):
    """sklearn's 8x8 digits as sequences of 8 rows of 8 pixels, split into train and test.

    Returns:
    - x_train (8, N_train, 8), y_train (N_train,), x_test (8, N_test, 8), y_test (N_test,):
      float32 pixels scaled to [0, 1] (time = image row), int64 labels. The split is stratified.
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    X, y = load_digits(return_X_y=True)
    X = (X / 16.0).astype(np.float32).reshape(-1, 8, 8)
    Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=test_size, random_state=seed, stratify=y)

    def to_seq(a):
        return torch.from_numpy(np.ascontiguousarray(a.transpose(1, 0, 2)))  # (N,8,8) -> (T=8,N,8)

    return to_seq(Xtr), torch.from_numpy(ytr), to_seq(Xte), torch.from_numpy(yte)


# ----------------------------------------------------------------------------- Hochreiter & Schmidhuber

def adding_problem(n, T, rng):
    """The adding problem as torch tensors: add the two values marked in a sequence of length T.

    The data are `lstmkit.grading.adding_problem(T, n, rng)` (the generator the assignments use):
    each step carries (value, marker), values uniform on [0, 1], the marker 1 at exactly two steps
    (one in each half) and 0 elsewhere; the target is the sum of the two marked values (mean 1,
    variance 1/6: always predicting 1 gives MSE 1/6).
    Inputs: n sequences of length T >= 2; rng: a numpy Generator (or an int seed).
    Returns: x (T, n, 2) float32, y (n,) float32.
    """
    if T < 2:
        raise ValueError(f"adding_problem needs T >= 2, got T={T}")
    xs, ys = grading.adding_problem(T, n, rng)
    return torch.from_numpy(xs), torch.from_numpy(ys)


REBER_SYMBOLS = "BTSXPVE"
# Reber grammar as a graph: state -> list of (symbol, next state); state 5 is the end.
_REBER = {0: [("T", 1), ("P", 2)], 1: [("S", 1), ("X", 3)], 2: [("T", 2), ("V", 4)],
          3: [("X", 2), ("S", 5)], 4: [("P", 3), ("V", 5)]}


def _reber_string(rng):
    s, state = "B", 0
    while state != 5:
        sym, state = _REBER[state][rng.integers(2)]
        s += sym
    return s + "E"


def embedded_reber(rng):
    """One string of the embedded Reber grammar: B T <reber> T E or B P <reber> P E.

    The second symbol (T or P) must be remembered across the whole inner Reber string to predict
    the second-to-last symbol, which is what makes the task long-range.
    """
    first = "TP"[rng.integers(2)]
    return "B" + first + _reber_string(rng) + first + "E"


def reber_batch(n, rng):
    """A batch of n embedded Reber strings, one-hot, padded, for next-symbol prediction.

    Returns:
    - x (T, n, 7) float32 one-hot symbols (zeros after a string's end), T = longest string - 1.
    - y (T, n) int64: the next symbol at every step, -1 at padding (ignored by cross-entropy).
    - key (n,) int64: the step whose next symbol is the remembered T/P (the second-to-last symbol).
    """
    strings = [embedded_reber(rng) for _ in range(n)]
    T = max(len(s) for s in strings) - 1
    x = np.zeros((T, n, len(REBER_SYMBOLS)), np.float32)
    y = np.full((T, n), -1, np.int64)
    key = np.zeros(n, np.int64)
    for b, s in enumerate(strings):
        idx = [REBER_SYMBOLS.index(ch) for ch in s]
        x[np.arange(len(s) - 1), b, idx[:-1]] = 1.0
        y[: len(s) - 1, b] = idx[1:]
        key[b] = len(s) - 3   # input at this step is the inner string's E; the target is T/P
    return torch.from_numpy(x), torch.from_numpy(y), torch.from_numpy(key)


def temporal_order(n, T, rng):
    """The temporal-order task (2 relevant symbols, 4 classes).

    A sequence of length T of distractor symbols a, b, c, d holds X or Y at two positions, t1 in
    [0.1T, 0.2T) and t2 in [0.5T, 0.6T). The class is the order pair: XX=0, XY=1, YX=2, YY=3.
    Symbols are one-hot over (a, b, c, d, X, Y).
    Returns: x (T, n, 6) float32, y (n,) int64.
    """
    if T < 10:
        raise ValueError(f"temporal_order needs T >= 10, got T={T}")
    sym = rng.integers(0, 4, size=(T, n))
    t1 = rng.integers(T // 10, max(T // 5, T // 10 + 1), size=n)
    t2 = rng.integers(T // 2, max(3 * T // 5, T // 2 + 1), size=n)
    first, second = rng.integers(0, 2, size=n), rng.integers(0, 2, size=n)
    cols = np.arange(n)
    sym[t1, cols] = 4 + first
    sym[t2, cols] = 4 + second
    x = np.eye(6, dtype=np.float32)[sym]
    y = (2 * first + second).astype(np.int64)
    return torch.from_numpy(x), torch.from_numpy(y)


# ----------------------------------------------------------------------------- plots

def plot_confusion(conf, ax=None, cmap="Blues"):
    """Draw a confusion matrix with its counts written in the non-empty cells.

    Inputs:
    - conf: (C, C) integer array, conf[true, predicted] = number of examples.
    - ax: matplotlib Axes (a new figure if None); cmap: a sequential colormap.
    Returns:
    - the AxesImage.
    """
    import matplotlib.pyplot as plt

    conf = np.asarray(conf)
    if conf.ndim != 2 or conf.shape[0] != conf.shape[1]:
        raise ValueError(f"conf must be a square (C, C) matrix; got shape {conf.shape}")
    if ax is None:
        _, ax = plt.subplots()
    C = conf.shape[0]
    im = ax.imshow(conf, cmap=cmap)
    for r, c in np.argwhere(conf):
        ax.text(c, r, conf[r, c], ha="center", va="center", fontsize=7,
                color="white" if conf[r, c] > conf.max() / 2 else "black")
    ax.set(xticks=range(C), yticks=range(C), xlabel="predicted", ylabel="true",
           title="test confusion matrix")
    return im


def plot_curves(ax, curves, *, smooth=10, reference=None, reference_label=None, **kwargs):
    """Training curves, each as its moving average over `smooth` steps, one line per name.

    Inputs:
    - ax: matplotlib Axes.
    - curves: dict label -> sequence of per-step losses.
    - smooth: window of the moving average (1 for the raw curve).
    - reference, reference_label: an optional horizontal dashed line (e.g. a trivial predictor).
    - kwargs: passed to ax.set (xlabel, ylabel, yscale, title...).
    """
    for label, c in curves.items():
        c = np.asarray(c, dtype=float)
        if len(c) < smooth:
            raise ValueError(f"curve {label!r} has {len(c)} steps, fewer than smooth={smooth}")
        ax.plot(np.arange(smooth, len(c) + 1), np.convolve(c, np.ones(smooth) / smooth, mode="valid"),
                label=label)
    if reference is not None:
        ax.axhline(reference, color="k", ls="--", lw=1, label=reference_label)
    ax.set(xlabel="step", **kwargs)
    ax.legend(fontsize=8)
