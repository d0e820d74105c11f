"""The character-level language model of the applied chapter: its text, vocabulary, model and tools.

- python_help_text(): the help texts of Python's interactive `help()` (CPython's pydoc_data.topics,
  PSF licence), about 460 000 characters that ship with every Python; zen_text(): the Zen of Python.
- Vocab: characters <-> integer ids, with errors that name the offending character or id.
- split_text, lm_streams: a train/validation split and the usual language-model batching into B
  parallel streams, so that the state carried from one chunk to the next belongs to the same text.
- CharLM: embedding -> lstmkit.torch.LSTM -> linear (logits over the vocabulary).
- train_lm: truncated BPTT with carried state (lstmkit.train.fit_tbptt), Adam, clipping.
- unigram_cross_entropy, evaluate: the baseline that ignores context, and the model's loss.
- sample: text generated at a temperature; cell_states: the cell state c_t over a text.
- text_features: per-character features (inside quotes, position in line, ...) to correlate units
  with; plot_text_heatmap: a text coloured by one value per character.

Losses are cross-entropies in nats per character; perplexity is exp(loss).
"""

from __future__ import annotations

import codecs
import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from lstmkit.torch import LSTM
from lstmkit.train import add_forget_bias, fit_tbptt, progress_bar

__all__ = [
    "zen_text", "python_help_text", "Vocab", "split_text", "lm_streams", "CharLM", "train_lm",
    "unigram_cross_entropy", "evaluate", "sample", "cell_states", "text_features", "plot_text_heatmap",
]


# ----------------------------------------------------------------------------- texts

def zen_text():
    """The Zen of Python (Tim Peters), as shipped rot13-encoded in CPython's `this` module."""
    import contextlib
    import io

    with contextlib.redirect_stdout(io.StringIO()):   # importing `this` prints the poem
        import this
    return codecs.decode(this.s, "rot13")


def python_help_text():
    """The topic help texts of Python's `help()` (CPython's `pydoc_data.topics`), one long string.

    The texts are generated from the Python documentation and ship with the interpreter under the
    PSF licence. Topics are joined in sorted order of their keys, separated by a blank line.
    Their exact content depends on the Python version.
    """
    from pydoc_data.topics import topics

    return "\n\n".join(topics[key].strip("\n") for key in sorted(topics)) + "\n"


# ----------------------------------------------------------------------------- vocabulary and data

class Vocab:
    """The characters of a text, sorted, each with an integer id 0..V-1.

    Vocab(text): the vocabulary of `text` (at least one character).
    encode(s) -> int64 tensor (len(s),); decode(ids) -> str. len(vocab) is V.
    """

    def __init__(self, text):
        if not isinstance(text, str) or not text:
            raise ValueError("Vocab needs a non-empty str to take its characters from")
        self.chars = sorted(set(text))
        self.index = {ch: i for i, ch in enumerate(self.chars)}

    def __len__(self):
        return len(self.chars)

    def __repr__(self):
        return f"Vocab(V={len(self)})"

    def encode(self, s):
        """Character ids of the string s, an int64 tensor of shape (len(s),)."""
        if not isinstance(s, str):
            raise TypeError(f"encode takes a str, got {type(s).__name__}")
        try:
            return torch.tensor([self.index[ch] for ch in s], dtype=torch.int64)
        except KeyError:
            pos = next(p for p, ch in enumerate(s) if ch not in self.index)
            raise ValueError(f"character {s[pos]!r} (position {pos}) is not in the vocabulary of "
                             f"{len(self)} characters") from None

    def decode(self, ids):
        """The string of a 1-D sequence of ids (tensor, array or list of ints in 0..V-1)."""
        ids = torch.as_tensor(ids)
        if ids.dim() != 1:
            raise ValueError(f"decode takes a 1-D sequence of ids, got shape {tuple(ids.shape)}")
        if ids.is_floating_point() or ids.is_complex():
            raise TypeError(f"ids must be integers, got dtype {ids.dtype}")
        bad = (ids < 0) | (ids >= len(self))
        if bad.any():
            raise ValueError(f"id {ids[bad][0].item()} is out of range: ids must be in 0..{len(self) - 1}")
        return "".join(self.chars[i] for i in ids.tolist())


def split_text(text, val_fraction=0.1):
    """Split a text into a training part and a validation part (the end), at a line break.

    The cut is at the first newline after position (1 - val_fraction) * len(text), so the
    validation text is a contiguous piece the model never trains on.
    Returns: (train_text, val_text).
    """
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must be in (0, 1); got {val_fraction}")
    cut = text.find("\n", int(len(text) * (1 - val_fraction)))
    if cut <= 0 or cut >= len(text) - 1:
        raise ValueError(f"cannot split a text of {len(text)} characters with val_fraction={val_fraction}: "
                         "no line break near the cut")
    return text[:cut + 1], text[cut + 1:]


def lm_streams(ids, B):
    """Cut a long id sequence into B parallel streams: inputs and next-character targets.

    Stream b is the b-th of B consecutive pieces of the text, so row t+1 continues row t in every
    column and a state carried between chunks of rows belongs to the same text. The leftover
    characters at the end (fewer than B) are dropped.
    Inputs:
    - ids: (N,) int64 character ids; B: number of streams (batch size).
    Returns:
    - xs: (T, B) inputs and ys: (T, B) targets, ys[t, b] the character after xs[t, b];
      T = (N - 1) // B.
    """
    ids = torch.as_tensor(ids)
    if ids.dim() != 1:
        raise ValueError(f"ids must be 1-D (N,), got shape {tuple(ids.shape)}")
    if B < 1:
        raise ValueError(f"B must be >= 1; got {B}")
    T = (len(ids) - 1) // B
    if T < 1:
        raise ValueError(f"{len(ids)} ids are too few for B={B} streams (need at least B + 1)")
    x = ids[:T * B].view(B, T).t().contiguous()
    y = ids[1:T * B + 1].view(B, T).t().contiguous()
    return x, y


# ----------------------------------------------------------------------------- model

def check_ids(idx, V, kind):
    """Raise ValueError unless idx is a (T, B) int64 tensor of ids in 0..V-1 (kind: 'character', 'token')."""
    if idx.dim() != 2 or idx.dtype != torch.int64:
        raise ValueError(f"idx must be (T, B) int64 {kind} ids; got shape {tuple(idx.shape)}, "
                         f"dtype {idx.dtype}")
    if idx.numel() and (idx.min() < 0 or idx.max() >= V):
        raise ValueError(f"idx holds ids outside 0..{V - 1} (min {idx.min().item()}, "
                         f"max {idx.max().item()})")


class CharLM(nn.Module):
    """Character language model: embedding -> LSTM -> linear (logits over the vocabulary).

    CharLM(V, E, H, forget_bias=0.0): vocabulary size V, embedding size E, H LSTM units; the
    forget_bias is added to the forget gate's bias_ih block (lstmkit.train.add_forget_bias).
    Inputs (forward): idx (T, B) int64 character ids, state optional (h0, c0), each (1, B, H).
    Returns: logits (T, B, V), (h_T, c_T).
    """

    def __init__(self, V, E, H, forget_bias=0.0):
        super().__init__()
        self.V = V
        self.emb = nn.Embedding(V, E)
        self.lstm = LSTM(E, H)
        self.head = nn.Linear(H, V)
        add_forget_bias(self.lstm, forget_bias)

    def forward(self, idx, state=None):
        check_ids(idx, self.V, "character")
        hs, state = self.lstm(self.emb(idx), state)
        return self.head(hs), state


# ----------------------------------------------------------------------------- training

def train_lm(model, xs, ys, steps, k, *, lr=1e-2, clip=1.0, eval_every=10, eval_fn=None,
             progress=True, desc="char LM"):
    """Train a CharLM with truncated BPTT over streams xs, ys (T, B), carrying the state.

    Chunk after chunk of k rows: forward from the carried state, backpropagate within the chunk
    only, clip, take an Adam step (lstmkit.train.fit_tbptt does one run of chunks). When the
    streams are used up, the next pass starts again from row 0 and a zero state.
    Inputs:
    - model: a CharLM; xs, ys: (T, B) int64 from lm_streams; steps: number of chunks (optimiser
      steps); k: chunk length (truncation length).
    - lr: Adam learning rate; clip: max global gradient norm.
    - eval_every: chunks between calls of eval_fn() (e.g. the validation loss); eval_fn may be None.
    - progress: show a progress bar (one step per eval_every chunks).
    Returns:
    - dict with "train": the loss of every chunk (nats/char), "val": eval_fn's values,
      "val_step": the number of chunks trained when each was taken.
    """
    n_chunks = xs.shape[0] // k                       # full chunks in one pass over the streams
    if n_chunks < 1:
        raise ValueError(f"streams of T={xs.shape[0]} rows are shorter than one chunk (k={k})")
    if steps < 1 or eval_every < 1:
        raise ValueError(f"steps and eval_every must be >= 1; got {steps} and {eval_every}")
    V = model.V
    opt = torch.optim.Adam(model.parameters(), lr=lr)

    def loss_fn(logits, y):                           # (k, B, V), (k, B) -> mean nats/char
        return F.cross_entropy(logits.reshape(-1, V), y.reshape(-1))

    hist = {"train": [], "val": [], "val_step": []}
    state, done = None, 0
    bar = progress_bar(range(math.ceil(steps / eval_every)), desc=desc, disable=not progress)
    for _ in bar:
        todo = min(eval_every, steps - done)
        while todo > 0:
            j = done % n_chunks                       # first chunk of this run in the current pass
            if j == 0:
                state = None                          # a new pass starts from a zero state
            m = min(todo, n_chunks - j)
            run = fit_tbptt(model, xs[j * k:(j + m) * k], ys[j * k:(j + m) * k], loss_fn, opt, k,
                            clip=clip, progress=False, state=state)
            state = run.final_state                   # carried (detached) into the next run
            hist["train"] += run.losses
            done, todo = done + m, todo - m
        post = {"train": f"{np.mean(hist['train'][-eval_every:]):.3f}"}
        if eval_fn is not None:
            hist["val"].append(eval_fn())
            hist["val_step"].append(done)
            post["val"] = f"{hist['val'][-1]:.3f}"
        bar.set_postfix(post)
    return hist


# ----------------------------------------------------------------------------- evaluation

def unigram_cross_entropy(train_ids, eval_ids, V):
    """Cross-entropy (nats/char) on eval_ids of the character frequencies of train_ids.

    The baseline that ignores all context: every character is predicted with its training
    frequency (add-one smoothed, so a character unseen in training costs a finite amount).
    """
    counts = torch.bincount(torch.as_tensor(train_ids), minlength=V).double() + 1.0
    logp = (counts / counts.sum()).log()
    return -logp[torch.as_tensor(eval_ids)].mean().item()


@torch.no_grad()
def evaluate(model, xs, ys, k=200):
    """Mean cross-entropy (nats/char) of the model on streams xs, ys (T, B), carrying the state over
    chunks of k rows (no gradients)."""
    was_training = model.training
    model.eval()
    state, total = None, 0.0
    for t in range(0, xs.shape[0], k):
        logits, state = model(xs[t:t + k], state)
        total += F.cross_entropy(logits.reshape(-1, logits.shape[-1]), ys[t:t + k].reshape(-1),
                                 reduction="sum").item()
    model.train(was_training)
    return total / ys.numel()


@torch.no_grad()
def sample(model, vocab, prime, n, temperature=1.0, generator=None):
    """Generate n characters after the string `prime`, at a temperature.

    The next character is drawn from softmax(logits / temperature): temperature 1 samples the
    model's own distribution, lower temperatures sharpen it (towards the most likely character),
    higher ones flatten it. Inputs: prime a non-empty str in the vocabulary; n >= 0;
    temperature > 0; generator a torch.Generator for reproducible draws.
    Returns: the n generated characters (without the prime), a str.
    """
    if not prime:
        raise ValueError("prime must be a non-empty string (the model needs a first character)")
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0; got {temperature}")
    if n < 0:
        raise ValueError(f"n must be >= 0; got {n}")
    was_training = model.training
    model.eval()
    logits, state = model(vocab.encode(prime).view(-1, 1))
    out = []
    for _ in range(n):
        p = F.softmax(logits[-1, 0] / temperature, dim=-1)
        nxt = torch.multinomial(p, 1, generator=generator)
        out.append(nxt.item())
        logits, state = model(nxt.view(1, 1), state)
    model.train(was_training)
    return vocab.decode(out)


@torch.no_grad()
def cell_states(model, vocab, text):
    """The cell state after each character of `text`, read by the model from a zero state.

    Returns: c, a float64 numpy array (len(text), H); row t is c_t after reading text[t].
    Computed with lstmkit.reference.forward on the model's weights (which keeps every c_t).
    """
    from lstmkit import reference
    from lstmkit.convert import from_torch

    params = from_torch(model.lstm, dtype=np.float64)
    x = model.emb(vocab.encode(text)).double().numpy()[:, None, :]     # (T, 1, E)
    _, _, cache = reference.forward(x, None, params)
    return cache["cs"][1:, 0]


def text_features(text):
    """Per-character features of a text, each a float array (len(text),) aligned with cell_states.

    - "inside quotes": 1 from an opening double quote up to the character before its closing
      quote; quotes pair up within a paragraph (a blank line resets the count).
    - "inside parentheses": 1 while at least one ( [ { is open (depth reset at a blank line).
    - "position in line": how many characters of the current line have been read (0 at "\\n").
    - "indented line": 1 on a line that starts with a space (code, grammar and tables in the help).
    """
    n = len(text)
    quote, paren = np.zeros(n), np.zeros(n)
    col, indented = np.zeros(n), np.zeros(n)
    inside, depth, c, ind, prev = False, 0, 0, False, ""
    for t, ch in enumerate(text):
        if ch == "\n":
            if prev == "\n":                      # blank line: a new paragraph
                inside, depth = False, 0
            c, ind = 0, False
        else:
            if c == 0:
                ind = ch == " "
            c += 1
            if ch == '"':
                inside = not inside
            elif ch in "([{":
                depth += 1
            elif ch in ")]}":
                depth = max(depth - 1, 0)
        quote[t] = inside
        paren[t] = depth > 0
        col[t] = c
        indented[t] = ind
        prev = ch
    return {"inside quotes": quote, "inside parentheses": paren, "position in line": col,
            "indented line": indented}


def plot_text_heatmap(text, values, ax=None, cmap="RdBu_r", vmax=None, fontsize=7):
    """Draw `text` as a grid of characters, each on a background coloured by its value.

    Inputs:
    - text: str (lines are split at "\\n"; a newline is drawn as "↵" at the end of its line).
    - values: (len(text),) array, e.g. one unit's cell state after each character.
    - ax: matplotlib Axes (a new figure if None); cmap: a diverging colormap;
      vmax: colour range [-vmax, vmax] (default: the largest |value|).
    Returns: the AxesImage (for a colorbar).
    """
    import matplotlib.pyplot as plt

    values = np.asarray(values, dtype=float)
    if values.shape != (len(text),):
        raise ValueError(f"values must have shape (len(text),) = ({len(text)},); got {values.shape}")
    lines = text.split("\n")
    width = max(len(line) for line in lines) + 1
    grid = np.full((len(lines), width), np.nan)
    if ax is None:
        _, ax = plt.subplots(figsize=(0.09 * width, 0.17 * len(lines) + 0.5))
    r = col = 0
    for ch, v in zip(text, values, strict=True):
        grid[r, col] = v
        if ch != " ":
            ax.text(col, r, "↵" if ch == "\n" else ch, ha="center", va="center",
                    fontsize=fontsize, family="monospace")
        r, col = (r + 1, 0) if ch == "\n" else (r, col + 1)
    vmax = np.nanmax(np.abs(values)) if vmax is None else vmax
    im = ax.imshow(grid, cmap=cmap, vmin=-vmax, vmax=vmax, aspect="auto", interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    return im
