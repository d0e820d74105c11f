"""Small training utilities: seeding, progress bars, a fit loop with gradient clipping, truncated BPTT.

- seed_everything(seed): seed Python, NumPy and PyTorch.
- add_forget_bias(lstm, b): the forget-gate bias convention of lstmkit: add b to the f block of
  every layer's (and direction's) bias_ih, as reference.init_params(..., forget_bias=b) does.
- progress_bar(iterable, desc): the progress bar every training loop in lstmkit shows; plain text
  everywhere (a terminal bar on stderr, one updating text output in a notebook).
- fit(model, batches, loss_fn, optimizer, ...): the usual loop, returning a History of losses and
  gradient norms (clipping after Pascanu et al. 2013).
- tbptt_chunks / fit_tbptt: truncated backpropagation through time (Williams & Peng 1990) over a
  long sequence, carrying the recurrent state between chunks with .detach().
"""

from __future__ import annotations

import io
import random
from dataclasses import dataclass, field

import numpy as np
import torch
from tqdm.std import tqdm

__all__ = [
    "History", "seed_everything", "add_forget_bias", "progress_bar", "fit", "detach_state", "tbptt_chunks",
    "fit_tbptt",
]


def seed_everything(seed):
    """Seed Python's random, NumPy's global generator and PyTorch (all devices). Returns seed."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    return seed


class _DisplayBar(tqdm):
    """A tqdm bar drawn as one text/plain output that is updated in place (IPython display_id).

    In a notebook, `tqdm.auto` would draw an ipywidget: a live front end shows it, but an executed
    and saved notebook keeps only a widget reference, and rendering that (as the book build does)
    needs JavaScript from a CDN. Here every refresh replaces the text of a single display output,
    so a live notebook shows an updating bar and a saved one holds exactly the final line,
    e.g. "digits: 100%|██████████| 300/300 [00:09<00:00, 31.2it/s, loss=0.0412]".
    """

    monitor_interval = 0   # no monitor thread: every display update comes from the training loop

    def __init__(self, *args, **kwargs):
        self._handle = None
        kwargs.setdefault("file", io.StringIO())   # tqdm's own writes (newlines) go nowhere
        kwargs.setdefault("ascii", False)
        kwargs.setdefault("ncols", 88)
        super().__init__(*args, **kwargs)

    def display(self, msg=None, pos=None):
        from IPython.display import display

        bundle = {"text/plain": self.__str__() if msg is None else msg}
        if self._handle is None:
            self._handle = display(bundle, raw=True, display_id=True)
        else:
            self._handle.update(bundle, raw=True)
        return True


def _in_notebook():
    """True inside a Jupyter kernel (a live notebook, or one executed by nbclient/the book build)."""
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None


def progress_bar(iterable, desc=None, *, disable=False, **kwargs):
    """Wrap `iterable` in the progress bar used by every training loop in lstmkit.

    In a terminal (or any plain Python process) this is an ordinary tqdm bar on stderr. In a
    Jupyter kernel it is one text output updated in place, never an ipywidget: the bar renders the
    same in JupyterLab, VS Code, an executed notebook and the built book, which keeps just the
    final bar line and loads no JavaScript for it.

    Inputs:
    - iterable: what to iterate over (e.g. range(steps)).
    - desc: label in front of the bar.
    - disable: no bar at all (for tests and quiet runs).
    - kwargs: passed on to tqdm (e.g. total, mininterval).
    Returns:
    - a tqdm instance; iterate over it, call .set_postfix(loss=...) to show the loss.
    """
    cls = _DisplayBar if _in_notebook() else tqdm
    kwargs.setdefault("mininterval", 0.5)
    return cls(iterable, desc=desc, disable=disable, **kwargs)


@dataclass
class History:
    """What fit records: one loss and one gradient norm (before clipping) per optimiser step.

    - losses, grad_norms: lists of floats, one per step.
    - epoch_losses: mean loss of each epoch.
    """

    losses: list = field(default_factory=list)
    grad_norms: list = field(default_factory=list)
    epoch_losses: list = field(default_factory=list)

    def plot(self, axes=None):
        """Loss and gradient norm per step, side by side. Returns the matplotlib Figure."""
        import matplotlib.pyplot as plt

        if axes is None:
            fig, axes = plt.subplots(1, 2, figsize=(9, 3))
        else:
            fig = axes[0].figure
        axes[0].plot(self.losses)
        axes[0].set(xlabel="step", ylabel="loss", title="training loss")
        axes[1].plot(self.grad_norms)
        axes[1].set(xlabel="step", ylabel="‖∇‖₂", title="gradient norm (before clipping)", yscale="log")
        fig.tight_layout()
        return fig


def _step(model, loss, optimizer, clip):
    """Backward, optional norm clipping, optimiser step. Returns the gradient norm before clipping."""
    optimizer.zero_grad()
    loss.backward()
    params = [p for p in model.parameters() if p.grad is not None]
    max_norm = float("inf") if clip is None else clip
    norm = torch.nn.utils.clip_grad_norm_(params, max_norm)
    optimizer.step()
    return float(norm)


def _begin(model, clip, epochs, progress):
    """Check clip, put the model in training mode; return an empty History and the epochs' progress bar."""
    if clip is not None and clip <= 0:
        raise ValueError(f"clip must be positive or None; got {clip}")
    model.train()
    return History(), progress_bar(range(epochs), desc="epochs", disable=not progress)


def fit(model, batches, loss_fn, optimizer, epochs=1, clip=None, progress=True):
    """Train `model` for `epochs` passes over `batches`.

    Inputs:
    - model: an nn.Module; model(inputs) gives the predictions.
    - batches: a re-iterable of (inputs, targets) pairs (a list or a DataLoader).
    - loss_fn: loss_fn(predictions, targets) -> scalar tensor.
    - optimizer: a torch.optim optimiser over model's parameters.
    - epochs: number of passes.
    - clip: if given, rescale gradients to a global 2-norm of at most `clip` (Pascanu et al. 2013).
    - progress: show a progress bar (`progress_bar`: text in a terminal and in notebooks).
    Returns:
    - History with one loss and one gradient norm per step.
    """
    hist, bar = _begin(model, clip, epochs, progress)
    for _ in bar:
        total, n = 0.0, 0
        for inputs, targets in batches:
            loss = loss_fn(model(inputs), targets)
            hist.grad_norms.append(_step(model, loss, optimizer, clip))
            hist.losses.append(loss.item())
            total, n = total + hist.losses[-1], n + 1
        if n == 0:
            raise ValueError("batches is empty (or an exhausted iterator; pass a list or a DataLoader)")
        hist.epoch_losses.append(total / n)
        bar.set_postfix(loss=f"{hist.epoch_losses[-1]:.4f}")
    return hist


def add_forget_bias(lstm, forget_bias):
    """Add `forget_bias` to the forget-gate block of every bias_ih of an LSTM module, in place.

    lstmkit's one convention (the same as reference.init_params(..., forget_bias=...)): in PyTorch a
    gate's bias is the sum bias_ih + bias_hh, and the offset goes into bias_ih alone, rows H..2H-1
    (gate order i, f, g, o), on top of the random initial values; bias_hh is left as it is. The
    forget gate then starts near sigmoid(forget_bias) instead of 1/2, so the cell keeps its content
    longer from the first step (Gers et al. 2000; Jozefowicz et al. 2015 suggest 1).

    Inputs:
    - lstm: torch.nn.LSTM or lstmkit.torch.LSTM (any num_layers, bidirectional or not).
    - forget_bias: float.
    Returns:
    - the module, for chaining.
    """
    H = lstm.hidden_size
    with torch.no_grad():
        for name, p in lstm.named_parameters():
            if name.startswith("bias_ih"):
                p[H:2 * H] += forget_bias
    return lstm


def detach_state(state):
    """Cut the graph behind a recurrent state: a tensor, a (nested) tuple/list of tensors, or None."""
    if state is None:
        return None
    if isinstance(state, torch.Tensor):
        return state.detach()
    return type(state)(detach_state(s) for s in state)


def tbptt_chunks(xs, ys, k):
    """Split a time-major sequence into consecutive chunks of k steps (the last may be shorter).

    Inputs:
    - xs: (T, ...) inputs; ys: (T, ...) targets.
    - k: chunk length (truncation length), k >= 1.
    Yields:
    - (xs[t:t+k], ys[t:t+k]) for t = 0, k, 2k, ...
    """
    if k < 1:
        raise ValueError(f"k must be >= 1; got {k}")
    if xs.shape[0] != ys.shape[0]:
        raise ValueError(f"xs and ys must have the same length T; got {xs.shape[0]} and {ys.shape[0]}")
    for t in range(0, xs.shape[0], k):
        yield xs[t:t + k], ys[t:t + k]


def fit_tbptt(model, xs, ys, loss_fn, optimizer, k, epochs=1, clip=None, progress=True, state=None):
    """Truncated BPTT: train over one long sequence in chunks of k steps, carrying the state.

    After each chunk the final state is detached, so the next chunk starts from the right values
    but gradients stop at the chunk boundary: memory is O(k), not O(T).

    Inputs:
    - model: model(x_chunk, state) -> (predictions, new_state); state None means zeros.
    - xs, ys: (T, ...) inputs and targets, time-major.
    - loss_fn, optimizer, clip, progress: as in fit.
    - k: truncation length.
    - epochs: passes over the sequence; each starts again from `state`.
    - state: initial state (or None).
    Returns:
    - History (one entry per chunk), with `final_state` set to the detached last state.
    """
    hist, bar = _begin(model, clip, epochs, progress)
    for _ in bar:
        s, total, n = detach_state(state), 0.0, 0
        for x, y in tbptt_chunks(xs, ys, k):
            pred, s = model(x, s)
            loss = loss_fn(pred, y)
            hist.grad_norms.append(_step(model, loss, optimizer, clip))
            hist.losses.append(loss.item())
            total, n = total + hist.losses[-1], n + 1
            s = detach_state(s)
        hist.epoch_losses.append(total / n)
        bar.set_postfix(loss=f"{hist.epoch_losses[-1]:.4f}")
    hist.final_state = s
    return hist
