"""The `sequences` assignment's reference: clipping, truncated BPTT, a masked loss, sampling, and its task.

- clip_grad_norm: rescale the gradients of a list of tensors to a global 2-norm of at most max_norm
  (as torch.nn.utils.clip_grad_norm_; Pascanu et al. 2013).
- train_tbptt: one pass of truncated BPTT over long streams, in chunks of k steps, the state carried
  from chunk to chunk and detached at each boundary.
- masked_cross_entropy: the mean cross-entropy over the real tokens of padded sequences.
- sample_next: softmax(logits / temperature) and one draw per row with a given torch.Generator.
- The task, "delayed echo": a text of lines `k.....k`, a key letter, a run of dots of random length and
  the same key again. The second key can be predicted only by remembering the first one over the dots,
  which a vanilla RNN trained for a few seconds does not learn and an LSTM does.
  echo_text, echo_streams, CharModel (embedding -> nn.LSTM or nn.RNN -> linear) and validation_loss.

`echo_text` and `CharModel` are copied verbatim into the assignment's given cells (the grader's sandbox
has no lstmkit besides grading); tests/test_sequences.py checks that the copies are the same.
Losses are cross-entropies in nats per character.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from lstmkit.train import detach_state

__all__ = [
    "ECHO_CHARS", "echo_text", "echo_streams", "CharModel", "clip_grad_norm", "train_tbptt",
    "masked_cross_entropy", "sample_next", "validation_loss", "train_echo", "ECHO_BOUND", "RNN_BOUND",
]

ECHO_CHARS = "\n.abcdefgh"
ECHO_BOUND = 0.55  # nats/char on a fresh validation text: the LSTM's target in the assignment
RNN_BOUND = 0.75  # the vanilla RNN baseline's: what a model that remembers nothing of the key reaches


# ----------------------------------------------------------------------------- the task

def echo_text(n_lines, rng, min_gap=3, max_gap=9):
    """Lines of the delayed-echo task as character ids, one long stream.

    Each line is a key letter (one of 8), a run of dots (min_gap to max_gap of them) and the same key
    again, then a line break; ids index ECHO_CHARS = "\\n.abcdefgh".
    Inputs:
    - n_lines: number of lines; rng: a numpy Generator or an int seed; min_gap, max_gap: dots per line.
    Returns:
    - ids: (N,) int64, the lines one after the other.
    """
    rng = np.random.default_rng(rng)
    keys = rng.integers(2, 10, size=n_lines)
    gaps = rng.integers(min_gap, max_gap + 1, size=n_lines)
    lines = [np.concatenate([[k], np.ones(g, np.int64), [k, 0]]) for k, g in zip(keys, gaps, strict=True)]
    return np.concatenate(lines).astype(np.int64)


def echo_streams(n_lines, B, rng):
    """A delayed-echo text cut into B parallel streams: inputs xs and next-character targets ys.

    Stream b is the b-th of B consecutive pieces of the text (row t + 1 continues row t), so a state
    carried from one chunk of rows to the next belongs to the same text.
    Returns:
    - xs, ys: (T, B) int64 tensors, ys[t, b] the character after xs[t, b].
    """
    ids = torch.from_numpy(echo_text(n_lines, rng))
    T = (len(ids) - 1) // B
    xs = ids[:T * B].view(B, T).t().contiguous()
    ys = ids[1:T * B + 1].view(B, T).t().contiguous()
    return xs, ys


class CharModel(nn.Module):
    """Embedding -> one recurrent layer (nn.LSTM or the vanilla nn.RNN) -> linear read-out.

    CharModel(V, E, H, cell="lstm" or "rnn"). forward(idx, state=None): idx (T, B) int64 ids; state
    None (zeros) or what the previous call returned ((h, c) for the LSTM, h for the RNN).
    Returns: logits (T, B, V), the final state.
    """

    def __init__(self, V, E, H, cell="lstm"):
        super().__init__()
        self.emb = nn.Embedding(V, E)
        self.rnn = nn.LSTM(E, H) if cell == "lstm" else nn.RNN(E, H)
        self.head = nn.Linear(H, V)

    def forward(self, idx, state=None):
        hs, state = self.rnn(self.emb(idx), state)
        return self.head(hs), state


# ----------------------------------------------------------------------------- what the students write

def clip_grad_norm(params, max_norm):
    """Rescale the gradients of `params` so that their global 2-norm is at most max_norm, in place.

    The global norm is the 2-norm of all the gradients together, sqrt(sum_p ||p.grad||^2); when it is
    above max_norm every gradient is multiplied by max_norm / (norm + 1e-6), so the update keeps its
    direction (as torch.nn.utils.clip_grad_norm_).
    Inputs:
    - params: an iterable of tensors; those whose .grad is None are skipped.
    - max_norm: float > 0.
    Returns:
    - the global norm before clipping, a 0-dim tensor.
    """
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return torch.tensor(0.0)
    norm = torch.sqrt(sum((g.detach() ** 2).sum() for g in grads))
    scale = max_norm / (norm + 1e-6)
    if scale < 1:
        for g in grads:
            g.mul_(scale)
    return norm


def train_tbptt(model, xs, ys, k, optimizer, max_norm, state=None):
    """One pass of truncated BPTT over streams xs, ys in chunks of k steps, carrying the state.

    For each chunk (the last may be shorter): forward from the carried state, the mean cross-entropy
    of the chunk, backward, clip_grad_norm(model.parameters(), max_norm), an optimiser step; then the
    final state is detached, so the next chunk starts from its values but no gradient flows back past
    the chunk boundary (memory O(k) instead of O(T)).
    Inputs:
    - model: model(x, state) -> (logits (k, B, V), state); xs, ys: (T, B) int64; k >= 1.
    - optimizer: over model's parameters; max_norm: clipping threshold; state: initial state or None.
    Returns:
    - losses: list of float, the loss of each chunk; state: the final state, detached.
    """
    losses = []
    state = detach_state(state)
    for t in range(0, xs.shape[0], k):
        logits, state = model(xs[t:t + k], state)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), ys[t:t + k].reshape(-1))
        optimizer.zero_grad()
        loss.backward()
        clip_grad_norm(model.parameters(), max_norm)
        optimizer.step()
        losses.append(loss.item())
        state = detach_state(state)
    return losses, state


def masked_cross_entropy(logits, targets, lengths):
    """Mean cross-entropy over the real tokens of padded, time-major sequences.

    Sequence b is real for t < lengths[b] and padding after; padded steps do not count, and the mean
    is over the sum(lengths) real tokens (not over T * B).
    Inputs:
    - logits: (T, B, V); targets: (T, B) int64 (any value at padded steps); lengths: (B,) int64 in 1..T.
    Returns:
    - loss: a 0-dim tensor.
    """
    T, B, V = logits.shape
    mask = torch.arange(T)[:, None] < lengths[None, :]  # (T, B)
    nll = F.cross_entropy(logits.reshape(-1, V), targets.reshape(-1), reduction="none").view(T, B)
    return (nll * mask).sum() / mask.sum()


def sample_next(logits, temperature, generator):
    """The next-token distribution at a temperature and one draw from it per row.

    probs = softmax(logits / temperature): temperature 1 keeps the model's distribution, lower values
    sharpen it towards the most likely token, higher ones flatten it.
    Inputs:
    - logits: (B, V); temperature: float > 0; generator: a torch.Generator.
    Returns:
    - probs: (B, V); ids: (B,) int64, torch.multinomial(probs, 1, generator=generator)[:, 0].
    """
    probs = torch.softmax(logits / temperature, dim=-1)
    return probs, torch.multinomial(probs, 1, generator=generator)[:, 0]


# ----------------------------------------------------------------------------- the training target

@torch.no_grad()
def validation_loss(model, xs, ys, k=200):
    """Mean cross-entropy (nats/char) of a CharModel on streams xs, ys (T, B), state carried."""
    state, total = None, 0.0
    for t in range(0, xs.shape[0], k):
        logits, state = model(xs[t:t + k], state)
        total += F.cross_entropy(logits.reshape(-1, logits.shape[-1]), ys[t:t + k].reshape(-1),
                                 reduction="sum").item()
    return total / ys.numel()


def train_echo(cell, *, seed=0, passes=40, n_lines=2000, B=32, k=25, lr=1e-2, max_norm=1.0, E=8, H=32):
    """Train a CharModel on the delayed-echo task as the assignment's solution does.

    Returns: (model, losses), losses the training loss of every chunk.
    """
    torch.manual_seed(seed)
    xs, ys = echo_streams(n_lines, B, seed)
    model = CharModel(len(ECHO_CHARS), E, H, cell)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    losses = []
    for _ in range(passes):
        chunk_losses, _ = train_tbptt(model, xs, ys, k, opt, max_norm)
        losses += chunk_losses
    return model, losses
