"""The character-level language model of the applied chapter: its text and its model."""

from __future__ import annotations

import codecs

from torch import nn

from lstmkit.torch import LSTM

__all__ = ["zen_text", "CharLM"]


# ----------------------------------------------------------------------------- character LM

def zen_text():
    """The Zen of Python (Tim Peters), as shipped rot13-encoded in CPython's `this` module."""
    import contextlib
    import io

    with contextlib.redirect_stdout(io.StringIO()):   # importing `this` prints the poem
        import this
    return codecs.decode(this.s, "rot13")


class CharLM(nn.Module):
    """Character language model: embedding -> LSTM -> linear (logits over the vocabulary).

    Inputs (forward): idx (T, B) int64 characters, state optional (h0, c0).
    Returns: logits (T, B, V), (h_T, c_T).
    """

    def __init__(self, V, E, H):
        super().__init__()
        self.emb = nn.Embedding(V, E)
        self.lstm = LSTM(E, H)
        self.head = nn.Linear(H, V)

    def forward(self, idx, state=None):
        hs, state = self.lstm(self.emb(idx), state)
        return self.head(hs), state
