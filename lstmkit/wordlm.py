"""A word-level language model: tokens, a vocabulary with an out-of-vocabulary token, an LSTM model,
a smoothed bigram baseline and next-word suggestions.

- tokenize(text): lower-cased words (letters, digits, underscores) and single punctuation marks.
- WordVocab: the most frequent tokens of a training text plus "<unk>", which stands for every
  other token (out of vocabulary, OOV).
- WordLM: embedding -> lstmkit.torch.LSTM -> linear (logits over the vocabulary); the interface
  of lstmkit.charlm.CharLM, so charlm.lm_streams, charlm.train_lm and charlm.evaluate work on it.
- bigram_cross_entropy(train_ids, eval_ids, V, k): the add-k smoothed bigram model's loss.
- next_words(model, vocab, prompt, k): the k most likely next words after a prompt.

Losses are cross-entropies in nats per token; perplexity is exp(loss).
"""

from __future__ import annotations

import re
from collections import Counter

import torch
import torch.nn.functional as F
from torch import nn

from lstmkit.charlm import check_ids
from lstmkit.torch import LSTM
from lstmkit.train import add_forget_bias

__all__ = ["UNK", "tokenize", "WordVocab", "WordLM", "bigram_cross_entropy", "next_words"]

UNK = "<unk>"
_TOKEN = re.compile(r"[a-z0-9_]+|[^\sa-z0-9_]")


def tokenize(text):
    """Split a text into tokens: lower-cased runs of letters, digits and underscores, and every
    other non-space character on its own ("x.append(y)" -> x . append ( y )).

    Returns: a list of str. Letters outside a-z (such as "é") count as punctuation-like single tokens.
    """
    if not isinstance(text, str):
        raise TypeError(f"tokenize takes a str, got {type(text).__name__}")
    return _TOKEN.findall(text.lower())


class WordVocab:
    """The tokens of a training text that occur at least min_count times (at most max_size of them,
    most frequent first), plus UNK = "<unk>" with id 0 for every other token.

    WordVocab(tokens, max_size=None, min_count=1). len(vocab) is V (including <unk>).
    encode(tokens) -> int64 tensor (N,), unknown tokens -> 0; decode(ids) -> list of str.
    counts: a Counter of the training tokens; oov_rate(tokens): the fraction that maps to <unk>.
    """

    def __init__(self, tokens, max_size=None, min_count=1):
        tokens = list(tokens)
        if not tokens:
            raise ValueError("WordVocab needs a non-empty list of tokens")
        if min_count < 1 or (max_size is not None and max_size < 1):
            raise ValueError(f"min_count and max_size must be >= 1; got {min_count} and {max_size}")
        self.counts = Counter(tokens)
        common = sorted((n, w) for w, n in self.counts.items() if n >= min_count and w != UNK)
        common = [w for n, w in sorted(common, key=lambda nw: (-nw[0], nw[1]))]   # frequent first, then a-z
        self.itos = [UNK] + common[:max_size]
        self.stoi = {w: i for i, w in enumerate(self.itos)}

    def __len__(self):
        return len(self.itos)

    def __repr__(self):
        return f"WordVocab(V={len(self)})"

    def __contains__(self, token):
        return token in self.stoi

    def encode(self, tokens):
        """Ids of a list of tokens (a str is tokenised first); tokens not in the vocabulary -> 0 (<unk>)."""
        if isinstance(tokens, str):
            tokens = tokenize(tokens)
        return torch.tensor([self.stoi.get(t, 0) for t in tokens], dtype=torch.int64)

    def decode(self, ids):
        """The tokens of a 1-D sequence of ids in 0..V-1 (tensor, array or list)."""
        ids = torch.as_tensor(ids)
        if ids.dim() != 1 or ids.is_floating_point():
            raise ValueError(f"decode takes a 1-D sequence of integer ids, got shape {tuple(ids.shape)}, "
                             f"dtype {ids.dtype}")
        bad = (ids < 0) | (ids >= len(self))
        if bad.any():
            raise ValueError(f"id {ids[bad][0].item()} is out of range: ids must be in 0..{len(self) - 1}")
        return [self.itos[i] for i in ids.tolist()]

    def oov_rate(self, tokens):
        """The fraction of `tokens` that are not in the vocabulary (encoded as <unk>)."""
        tokens = list(tokens)
        return sum(t not in self.stoi for t in tokens) / max(len(tokens), 1)


class WordLM(nn.Module):
    """Word language model: embedding -> LSTM -> dropout -> linear (logits over the vocabulary).

    WordLM(V, E, H, dropout=0.0, forget_bias=1.0): vocabulary size V, embedding size E, H LSTM
    units (lstmkit.torch.LSTM); dropout on the embeddings and on the LSTM's output in training;
    forget_bias added to the forget gate's bias_ih block (lstmkit.train.add_forget_bias).
    Inputs (forward): idx (T, B) int64 token ids, state optional (h0, c0), each (1, B, H).
    Returns: logits (T, B, V), (h_T, c_T).
    """

    def __init__(self, V, E, H, dropout=0.0, forget_bias=1.0):
        super().__init__()
        self.V, self.dropout = V, dropout
        self.emb = nn.Embedding(V, E)
        self.lstm = LSTM(E, H)
        self.head = nn.Linear(H, V)
        add_forget_bias(self.lstm, forget_bias)

    def forward(self, idx, state=None):
        check_ids(idx, self.V, "token")
        x = F.dropout(self.emb(idx), self.dropout, self.training)
        hs, state = self.lstm(x, state)
        return self.head(F.dropout(hs, self.dropout, self.training)), state


def bigram_cross_entropy(train_ids, eval_ids, V, k=1.0):
    """Cross-entropy (nats/token) on eval_ids of the add-k smoothed bigram model of train_ids.

        p(w | v) = (C(v, w) + k) / (C(v) + k V)

    C(v, w) counts the pairs "v then w" in train_ids, C(v) the pairs that start with v. Every
    pair gets k pseudo-counts, so an unseen pair costs a finite amount (Chen & Goodman 1999 survey
    better smoothing methods). The first token of eval_ids has no predecessor and is not scored.
    Counts are kept sparse (only pairs that occur), so V may be large.
    """
    if not k > 0:
        raise ValueError(f"k must be > 0; got {k}")
    train_ids, eval_ids = torch.as_tensor(train_ids), torch.as_tensor(eval_ids)
    if len(eval_ids) < 2:
        raise ValueError("eval_ids needs at least two tokens (one pair) to score")
    pairs = torch.unique(train_ids[:-1] * V + train_ids[1:], return_counts=True)   # sorted codes
    codes, pair_counts = pairs
    first_counts = torch.bincount(train_ids[:-1], minlength=V).double()
    q = eval_ids[:-1] * V + eval_ids[1:]
    pos = torch.searchsorted(codes, q).clamp(max=len(codes) - 1)
    c_vw = torch.where(codes[pos] == q, pair_counts[pos], 0).double()
    p = (c_vw + k) / (first_counts[eval_ids[:-1]] + k * V)
    return -p.log().mean().item()


@torch.no_grad()
def next_words(model, vocab, prompt, k=5, include_unk=False):
    """The k most likely next tokens after `prompt`, with their probabilities.

    The prompt is tokenised like the training text (unknown words become <unk>) and read from a
    zero state. Inputs: model a WordLM; vocab its WordVocab; prompt a non-empty str; k >= 1;
    include_unk: whether <unk> may be suggested.
    Returns: a list of (token, probability) pairs, most likely first.
    """
    ids = vocab.encode(prompt)
    if len(ids) == 0:
        raise ValueError("prompt must contain at least one token")
    if not 1 <= k <= len(vocab) - (not include_unk):
        raise ValueError(f"k must be in 1..{len(vocab) - (not include_unk)}; got {k}")
    was_training = model.training
    model.eval()
    logits, _ = model(ids.view(-1, 1))
    model.train(was_training)
    p = torch.softmax(logits[-1, 0].double(), dim=-1)
    if not include_unk:
        p[0] = 0.0                                  # never suggest <unk>; others keep their value
    top = torch.topk(p, k)
    return [(vocab.itos[i], pr) for i, pr in zip(top.indices.tolist(), top.values.tolist(), strict=True)]
