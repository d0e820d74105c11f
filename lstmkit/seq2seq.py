"""Sequence to sequence with LSTMs: the generated task, the encoder-decoder, decoding and attention.

- The task: reverse a string of digits ("31415" -> "51413"). reversal_batch draws a padded batch
  of strings of different lengths; the vocabulary is PAD, BOS, EOS and the ten digits.
- Encoder: embedding -> bidirectional lstmkit.torch.LSTM over a PackedSequence, so that each
  direction reads only the real steps of each string (packed=False feeds the padding too, to show
  what goes wrong).
- AdditiveAttention: Bahdanau et al.'s score v^T tanh(W_q s + W_k h_j), softmax over the real
  source positions, context = sum_j alpha_j h_j.
- Seq2Seq: encoder + LSTM decoder, with or without attention (Sutskever et al. 2014, Cho et al.
  2014, Bahdanau et al. 2015). One decoder step, `step`, serves every way of decoding:
  teacher forcing (feed the target), free running (feed the model's own argmax), scheduled
  sampling (feed the target with probability p, else a sample of the model; Bengio et al. 2015)
  and beam search.
- train: Adam with teacher forcing or scheduled sampling; evaluate: sequence and token accuracy.

Shapes are time-major: sources (S, B), targets (T, B), int64 token ids.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from lstmkit.torch import LSTM
from lstmkit.train import progress_bar

__all__ = [
    "PAD", "BOS", "EOS", "V", "encode_digits", "decode_digits", "reversal_batch", "Encoder",
    "AdditiveAttention", "Seq2Seq", "sequence_loss", "train", "greedy_decode", "beam_search",
    "evaluate", "accuracy_by_length", "inverse_sigmoid_schedule", "training_sources",
]

PAD, BOS, EOS = 0, 1, 2
V = 13                    # PAD, BOS, EOS, digits 0-9 (digit d has id d + 3)


# ----------------------------------------------------------------------------- the task

def encode_digits(s):
    """Token ids (int64, (len(s),)) of a string of digits."""
    if not isinstance(s, str) or not s.isdigit() or not s.isascii():
        raise ValueError(f"expected a non-empty string of digits 0-9; got {s!r}")
    return torch.tensor([int(ch) + 3 for ch in s], dtype=torch.int64)


def decode_digits(ids):
    """The string of digits of a 1-D id sequence, stopping at the first EOS (PAD and BOS skipped)."""
    out = []
    for i in torch.as_tensor(ids).tolist():
        if i == EOS:
            break
        if i >= 3:
            out.append(str(i - 3))
    return "".join(out)


def reversal_batch(B, min_len, max_len, generator=None):
    """A batch of the reversal task: random digit strings and the same strings reversed.

    Lengths are uniform in [min_len, max_len]; every target ends with EOS.
    Inputs:
    - B: batch size; min_len, max_len: shortest and longest source (1 <= min_len <= max_len).
    - generator: a torch.Generator for reproducible batches.
    Returns:
    - src (S, B) int64, padded with PAD, S = the longest length drawn;
    - src_len (B,) int64;
    - tgt (S + 1, B) int64: reversed digits, then EOS, then PAD.
    """
    if not 1 <= min_len <= max_len:
        raise ValueError(f"need 1 <= min_len <= max_len; got min_len={min_len}, max_len={max_len}")
    lengths = torch.randint(min_len, max_len + 1, (B,), generator=generator)
    S = int(lengths.max())
    digits = torch.randint(0, 10, (S, B), generator=generator) + 3
    steps = torch.arange(S).unsqueeze(1)
    src = torch.where(steps < lengths, digits, PAD)
    rev = (lengths - 1 - steps).clamp(min=0)                          # (S, B): source index to copy
    tgt = torch.full((S + 1, B), PAD, dtype=torch.int64)
    tgt[:S] = torch.where(steps < lengths, src.gather(0, rev), PAD)
    tgt.scatter_(0, lengths.unsqueeze(0), EOS)
    return src, lengths, tgt


# ----------------------------------------------------------------------------- the model

class Encoder(nn.Module):
    """Embedding -> bidirectional LSTM over a padded batch of sequences of different lengths.

    forward(src, src_len, packed=True):
    - src (S, B) int64 padded with PAD; src_len (B,) lengths.
    - packed=True runs the LSTM on pack_padded_sequence(...), so each direction sees only the
      real steps; packed=False runs it on the padded tensor (the padding is read as input).
    Returns:
    - memory (S, B, 2H): [forward h_t; backward h_t] at every step (zero past each length when packed);
    - (h_n, c_n): each (2, B, H), the final states of the forward and the backward direction.
    """

    def __init__(self, E, H):
        super().__init__()
        self.embed = nn.Embedding(V, E, padding_idx=PAD)
        self.lstm = LSTM(E, H, bidirectional=True)

    def forward(self, src, src_len, packed=True):
        x = self.embed(src)
        if not packed:
            return self.lstm(x)
        x = pack_padded_sequence(x, src_len.cpu(), enforce_sorted=False)
        memory, state = self.lstm(x)
        memory, _ = pad_packed_sequence(memory, total_length=src.shape[0])
        return memory, state


class AdditiveAttention(nn.Module):
    """Additive attention (Bahdanau et al. 2015): score_j = v^T tanh(W_q s + W_k h_j).

    forward(query, keys, mask, keys_proj=None):
    - query (B, Q): the decoder state s; keys (S, B, K): the encoder outputs h_j;
    - mask (S, B) bool, True at real source positions (each column needs at least one);
    - keys_proj (S, B, A): W_k h_j if already computed (it does not change while decoding).
    Returns:
    - context (B, K) = sum_j alpha_j h_j;
    - alpha (S, B): the weights, softmax of the scores over the real positions (0 at padding).
    """

    def __init__(self, Q, K, A):
        super().__init__()
        self.W_q = nn.Linear(Q, A, bias=False)
        self.W_k = nn.Linear(K, A)
        self.v = nn.Linear(A, 1, bias=False)

    def forward(self, query, keys, mask, keys_proj=None):
        if keys_proj is None:
            keys_proj = self.W_k(keys)
        scores = self.v(torch.tanh(keys_proj + self.W_q(query))).squeeze(2)      # (S, B)
        scores = scores.masked_fill(~mask, float("-inf"))
        alpha = torch.softmax(scores, dim=0)
        context = (alpha.unsqueeze(2) * keys).sum(0)
        return context, alpha


class Seq2Seq(nn.Module):
    """Encoder-decoder of LSTMs for digit strings, with or without additive attention.

    Seq2Seq(E, H_enc, H_dec, attention=False, A=None): embedding size E for both sides, H_enc
    units per encoder direction, H_dec decoder units, attention size A (default H_dec).
    The decoder starts from h_0 = tanh(W_h [h_fwd; h_bwd]), c_0 = W_c [c_fwd; c_bwd] (the final
    encoder states). At step t it reads the previous token y_{t-1} (BOS first) and, with
    attention, the context z_t computed from its previous state s_{t-1}:
        z_t, alpha_t = attention(s_{t-1}, memory);   s_t = LSTM([emb(y_{t-1}); z_t], s_{t-1})
        logits_t = W_out [s_t; z_t]                  (without attention: W_out s_t).

    encode(src, src_len, packed=True) -> memory dict (what every decoder step needs).
    step(y_prev (B,), state, mem) -> logits (B, V), state, alpha (S, B) or None.
    forward(src, src_len, tgt, feed_prob=1.0, generator=None) -> logits (T, B, V): the decoder
    reads the target shifted by one (teacher forcing) where a coin with probability feed_prob says
    so, and a token sampled from its own output distribution elsewhere (scheduled sampling).
    """

    def __init__(self, E, H_enc, H_dec, attention=False, A=None):
        super().__init__()
        self.attention = attention
        self.encoder = Encoder(E, H_enc)
        self.embed = nn.Embedding(V, E, padding_idx=PAD)
        self.init_h = nn.Linear(2 * H_enc, H_dec)
        self.init_c = nn.Linear(2 * H_enc, H_dec)
        z = 2 * H_enc if attention else 0                 # size of the context vector
        self.decoder = LSTM(E + z, H_dec)
        self.attn = AdditiveAttention(H_dec, 2 * H_enc, A or H_dec) if attention else None
        self.out = nn.Linear(H_dec + z, V)

    def encode(self, src, src_len, packed=True):
        memory, (h_n, c_n) = self.encoder(src, src_len, packed=packed)
        h0 = torch.tanh(self.init_h(torch.cat([h_n[0], h_n[1]], 1)))
        c0 = self.init_c(torch.cat([c_n[0], c_n[1]], 1))
        steps = torch.arange(src.shape[0], device=src.device).unsqueeze(1)
        mem = {"memory": memory, "mask": steps < src_len.to(src.device), "state": (h0, c0)}
        if self.attention:
            mem["keys_proj"] = self.attn.W_k(memory)
        return mem

    def step(self, y_prev, state, mem):
        h, c = state
        x = self.embed(y_prev)
        alpha = None
        if self.attention:
            z, alpha = self.attn(h, mem["memory"], mem["mask"], mem["keys_proj"])
            x = torch.cat([x, z], 1)
        _, (h, c) = self.decoder(x.unsqueeze(0), (h.unsqueeze(0), c.unsqueeze(0)))
        h, c = h[0], c[0]
        logits = self.out(torch.cat([h, z], 1) if self.attention else h)
        return logits, (h, c), alpha

    def forward(self, src, src_len, tgt, feed_prob=1.0, generator=None, packed=True):
        mem = self.encode(src, src_len, packed=packed)
        prev = torch.cat([torch.full_like(tgt[:1], BOS), tgt[:-1]])       # (T, B): BOS, y_1, ...
        if feed_prob == 1.0 and not self.attention:      # teacher forcing: all steps in one LSTM call
            h0, c0 = mem["state"]
            s, _ = self.decoder(self.embed(prev), (h0.unsqueeze(0), c0.unsqueeze(0)))
            return self.out(s)
        state, logits = mem["state"], []
        y_prev = prev[0]
        for t in range(tgt.shape[0]):
            out, state, _ = self.step(y_prev, state, mem)
            logits.append(out)
            if t + 1 < tgt.shape[0]:
                y_prev = prev[t + 1]
                if feed_prob < 1.0:
                    own = torch.multinomial(torch.softmax(out.detach(), 1), 1, generator=generator)[:, 0]
                    coin = torch.rand(y_prev.shape, generator=generator) < feed_prob
                    y_prev = torch.where(coin, y_prev, own)
        return torch.stack(logits)


def sequence_loss(logits, tgt):
    """Mean cross-entropy (nats per target token) over the non-PAD targets; logits (T, B, V)."""
    return F.cross_entropy(logits.reshape(-1, V), tgt.reshape(-1), ignore_index=PAD)


def inverse_sigmoid_schedule(k):
    """Bengio et al.'s inverse sigmoid decay: the probability of feeding the target at step i,
    k / (k + exp(i / k)), which starts near 1 and falls towards 0 (k >= 1 sets how slowly)."""
    return lambda i: k / (k + math.exp(i / k))


def train(model, steps, *, B=64, min_len=1, max_len=10, lr=1e-2, clip=1.0, feed_prob=None,
          seed=0, progress=True, desc="seq2seq"):
    """Train on fresh batches of the reversal task with Adam; returns the loss of every step.

    - feed_prob: None for teacher forcing, else a function of the step index giving the
      probability of feeding the target (scheduled sampling; see inverse_sigmoid_schedule).
    - seed: seeds the batches (training_sources(steps, B, ..., seed) lists them again) and,
      separately, the scheduled-sampling draws. The model's initialisation is the caller's.
    """
    data = torch.Generator().manual_seed(seed)
    coins = torch.Generator().manual_seed(seed + 1)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    losses = []
    bar = progress_bar(range(steps), desc=desc, disable=not progress)
    for i in bar:
        src, src_len, tgt = reversal_batch(B, min_len, max_len, generator=data)
        p = 1.0 if feed_prob is None else feed_prob(i)
        loss = sequence_loss(model(src, src_len, tgt, feed_prob=p, generator=coins), tgt)
        opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), clip)
        opt.step()
        losses.append(loss.item())
        if i % 50 == 0:
            bar.set_postfix(loss=f"{loss.item():.3f}")
    model.eval()
    return losses


def training_sources(steps, *, B=64, min_len=1, max_len=10, seed=0):
    """The set of source strings that train(..., seed=seed) shows the model (same arguments)."""
    data = torch.Generator().manual_seed(seed)
    seen = set()
    for _ in range(steps):
        src, src_len, _ = reversal_batch(B, min_len, max_len, generator=data)
        seen.update(decode_digits(src[:n, b]) for b, n in enumerate(src_len.tolist()))
    return seen


# ----------------------------------------------------------------------------- decoding

def _no_pad_bos(logits):
    """Logits with PAD and BOS ruled out: a decoder only ever emits digits or EOS."""
    logits = logits.clone()
    logits[:, [PAD, BOS]] = float("-inf")
    return logits


@torch.no_grad()
def greedy_decode(model, src, src_len, max_len=None, packed=True, return_attention=False):
    """Free-running decoding: feed back the most likely token until EOS (or max_len steps).

    Returns: out (T, B) int64, each column the tokens up to and including EOS, PAD after;
    with return_attention, also alpha (T, S, B) (attention models only).
    """
    max_len = max_len or src.shape[0] + 1
    mem = model.encode(src, src_len, packed=packed)
    B = src.shape[1]
    y = torch.full((B,), BOS, dtype=torch.int64)
    done = torch.zeros(B, dtype=torch.bool)
    state, out, alphas = mem["state"], [], []
    for _ in range(max_len):
        logits, state, alpha = model.step(y, state, mem)
        y = torch.where(done, PAD, _no_pad_bos(logits).argmax(1))
        out.append(y)
        alphas.append(alpha)
        done |= y == EOS
        if done.all():
            break
    out = torch.stack(out)
    if return_attention:
        return out, torch.stack(alphas)
    return out


@torch.no_grad()
def beam_search(model, src, src_len, width, max_len=None):
    """Beam search: keep the `width` most likely prefixes (sum of log-probabilities) at every step.

    A prefix that has emitted EOS is finished: it stays in the beam with its score and is extended
    only by PAD at no cost. The search stops when every beam's best prefix is finished (nothing
    can overtake it: scores only fall) or after max_len steps. Width 1 is greedy decoding.
    Returns: out (T, B) int64, the best prefix of each column (tokens up to EOS, PAD after), and
    scores (B,), its log-probability.
    """
    if width < 1:
        raise ValueError(f"width must be >= 1; got {width}")
    max_len = max_len or src.shape[0] + 1
    mem = model.encode(src, src_len)
    B, K = src.shape[1], width
    # Every tensor of the decoder gets K copies of each column, column b * K + k.
    rep = lambda x, dim: x.repeat_interleave(K, dim=dim)  # noqa: E731
    mem = {"memory": rep(mem["memory"], 1), "mask": rep(mem["mask"], 1),
           "state": tuple(rep(s, 0) for s in mem["state"]),
           **({"keys_proj": rep(mem["keys_proj"], 1)} if "keys_proj" in mem else {})}
    scores = torch.full((B, K), float("-inf"))
    scores[:, 0] = 0.0                            # start from one prefix (the K copies are equal)
    y = torch.full((B * K,), BOS, dtype=torch.int64)
    done = torch.zeros(B * K, dtype=torch.bool)
    tokens = torch.empty(0, B * K, dtype=torch.int64)
    state = mem["state"]
    for _ in range(max_len):
        logits, state, _ = model.step(y, state, mem)
        logp = torch.log_softmax(_no_pad_bos(logits), 1)
        logp[done] = float("-inf")                # a finished prefix: only PAD, at no cost
        logp[done, PAD] = 0.0
        cand = (scores.view(B * K, 1) + logp).view(B, K * V)
        scores, idx = cand.topk(K, dim=1)         # (B, K): best K of the K * V extensions
        parent = (idx // V + torch.arange(B).unsqueeze(1) * K).view(-1)
        y = (idx % V).view(-1)
        tokens = torch.cat([tokens[:, parent], y.unsqueeze(0)])
        state = tuple(s[parent] for s in state)
        done = done[parent] | (y == EOS)
        if done.view(B, K)[:, 0].all():
            break
    best = tokens.view(-1, B, K)[:, :, 0]
    return best, scores[:, 0]


def _trim(out, T):
    """out (T', B) padded or cut to T rows."""
    if out.shape[0] >= T:
        return out[:T]
    return torch.cat([out, out.new_full((T - out.shape[0], out.shape[1]), PAD)])


def evaluate(out, tgt):
    """Accuracy of decoded sequences out (T', B) against targets tgt (T, B) (both end in EOS).

    Returns: seq (B,) bool, the whole target reproduced (EOS included, nothing before it wrong);
    tok (B,) float, the fraction of target positions (EOS included) where out has the right token.
    """
    out = _trim(out, tgt.shape[0])
    real = tgt != PAD
    hit = (out == tgt) & real
    seq = (hit | ~real).all(0)
    tok = hit.sum(0) / real.sum(0)
    return seq, tok


def accuracy_by_length(values, lengths, min_len, max_len):
    """Mean of per-sequence values (B,) for each length min_len..max_len: a NumPy array."""
    values, lengths = torch.as_tensor(values, dtype=torch.float64), torch.as_tensor(lengths)
    return np.array([values[lengths == n].mean().item() for n in range(min_len, max_len + 1)])
