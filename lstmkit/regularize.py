"""Regularising and normalising an LSTM layer: the methods of the applied chapter, in one module.

- dropout_mask(shape, p): an inverted-dropout mask, entries 0 or 1 / (1 - p).
- stacked_dropout_forward(lstm, x): a stacked LSTM run layer by layer with fresh dropout on the
  outputs of all but the last layer: what nn.LSTM(dropout=p) does, written out.
- locked_dropout(x, p): variational dropout of a (T, B, D) sequence, one mask per sequence
  (Gal & Ghahramani 2016).
- orthogonal_recurrent_(weight_hh): each gate's (H, H) block of weight_hh orthogonal (Saxe et al. 2014).
- RegularizedLSTM: one LSTM layer (PyTorch layout, gate order i, f, g, o) with, each optional,
  variational dropout of x_t and h_{t-1} (Gal & Ghahramani 2016), zoneout of c and h
  (Krueger et al. 2017), DropConnect on weight_hh (Merity et al. 2018), layer normalisation
  (Ba et al. 2016) and orthogonal recurrent initialisation.
- RegLM: embedding -> dropout -> RegularizedLSTM -> dropout -> linear, a character model with the
  interface of lstmkit.charlm.CharLM (so charlm.train_lm and charlm.evaluate train and score it).

In eval mode every random method is switched off: dropout, variational dropout and DropConnect
become the identity (masks are scaled by 1 / (1 - p) in training, so nothing is rescaled at test
time); zoneout uses its expectation, c_t = z c_{t-1} + (1 - z) c~_t, as Krueger et al. do.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from lstmkit.torch import lstm_layer
from lstmkit.train import add_forget_bias

__all__ = ["dropout_mask", "stacked_dropout_forward", "locked_dropout", "orthogonal_recurrent_",
           "RegularizedLSTM", "RegLM"]


def _check_p(name, p):
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0 <= p < 1:
        raise ValueError(f"{name} must be a number in [0, 1); got {p!r}")
    return float(p)


def dropout_mask(shape, p, *, like=None, generator=None):
    """An inverted-dropout mask: each entry 0 with probability p, else 1 / (1 - p).

    Multiplying by it keeps the expectation of every entry: E[m] = 1. `like` (a tensor) gives
    the dtype and device. Returns: a tensor of `shape`.
    """
    p = _check_p("p", p)
    kw = {} if like is None else {"dtype": like.dtype, "device": like.device}
    keep = torch.rand(shape, generator=generator, **kw) >= p
    return keep.to(kw.get("dtype", torch.get_default_dtype())) / (1 - p)


# ----------------------------------------------------------------------------- dropout between layers

def stacked_dropout_forward(lstm, x, state=None):
    """Run a stacked LSTM (lstmkit.torch.LSTM or nn.LSTM, unidirectional, no projection) layer by
    layer, with F.dropout(p=lstm.dropout) on the output of every layer but the last in training.

    This is what the `dropout` argument of nn.LSTM does: a fresh mask for every time step,
    sequence and unit, on the connections *between* layers only; the recurrent connections
    h_{t-1} -> h_t are never dropped.
    Inputs: x (T, B, D); state (h0, c0), each (num_layers, B, H), or None.
    Returns: output (T, B, H), (h_n, c_n) each (num_layers, B, H).
    """
    if lstm.bidirectional or lstm.proj_size or lstm.batch_first:
        raise ValueError("stacked_dropout_forward takes a unidirectional, time-major LSTM without projection")
    L, B, H = lstm.num_layers, x.shape[1], lstm.hidden_size
    h0, c0 = state if state is not None else (x.new_zeros(L, B, H), x.new_zeros(L, B, H))
    h_n, c_n = [], []
    for layer in range(L):
        w = [getattr(lstm, f"{n}_l{layer}") for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
        x, h, c = lstm_layer(x, h0[layer], c0[layer], *w)
        h_n.append(h)
        c_n.append(c)
        if layer < L - 1:
            x = F.dropout(x, lstm.dropout, training=lstm.training)
    return x, (torch.stack(h_n), torch.stack(c_n))


# ----------------------------------------------------------------------------- variational dropout

def locked_dropout(x, p, training=True, mask=None):
    """Variational ("locked") dropout of a sequence x (T, B, D): one mask (B, D) for all T steps.

    Every sequence in the batch loses the same units at every time step (Gal & Ghahramani 2016);
    a different sequence draws a different mask. The identity when not training or p == 0.
    Inputs: mask, optional (B, D), to use instead of a random one (for tests).
    """
    if not training or (p == 0 and mask is None):
        return x
    if mask is None:
        mask = dropout_mask(x.shape[1:], p, like=x)
    return x * mask


# ----------------------------------------------------------------------------- orthogonal initialisation

@torch.no_grad()
def orthogonal_recurrent_(weight_hh, gain=1.0):
    """Make each of the four (H, H) gate blocks of weight_hh (4H, H) a random orthogonal matrix
    (times gain), in place (Saxe et al. 2014). Returns weight_hh."""
    four_h, H = weight_hh.shape
    if four_h != 4 * H:
        raise ValueError(f"weight_hh must have shape (4H, H); got {tuple(weight_hh.shape)}")
    for k in range(4):
        nn.init.orthogonal_(weight_hh[k * H:(k + 1) * H], gain=gain)
    return weight_hh


# ----------------------------------------------------------------------------- the layer

class RegularizedLSTM(nn.Module):
    """One LSTM layer with optional regularisers and layer normalisation.

    RegularizedLSTM(input_size, hidden_size, *, dropout_x=0, dropout_h=0, zoneout_c=0,
                    zoneout_h=0, weight_drop=0, layer_norm=False, orthogonal=False, forget_bias=0)
    Parameters (PyTorch layout, gate order i, f, g, o): weight_ih (4H, D), weight_hh (4H, H),
    bias_ih, bias_hh (4H); with layer_norm also ln_ih_weight, ln_hh_weight (4H) and
    ln_c_weight, ln_c_bias (H).

    One step, with masks m_x (B, D), m_h (B, H) drawn once per forward call (per sequence),
    M (4H, H) drawn once per forward call, d_c, d_h (B, H) drawn at every step:
        a_t  = N_ih(W_ih (m_x * x_t)) + N_hh((M * W_hh) (m_h * h_{t-1})) + b_ih + b_hh
        i, f, g, o = sigmoid(a_i), sigmoid(a_f), tanh(a_g), sigmoid(a_o)
        c~_t = f * c_{t-1} + i * g
        h~_t = o * tanh(N_c(c~_t))
        c_t  = d_c * c_{t-1} + (1 - d_c) * c~_t      (zoneout; d_c = 0 without it)
        h_t  = d_h * h_{t-1} + (1 - d_h) * h~_t
    N_ih, N_hh are layer norms over the 4H pre-activations with gains only (their shift would
    duplicate the bias), N_c a layer norm over H with gain and shift; all are the identity when
    layer_norm=False. Dropout masks are 0 or 1/(1-p); zoneout masks are 1 with probability z.

    forward(x, state=None, masks=None):
    - x: (T, B, D); state: (h0, c0), each (1, B, H) as nn.LSTM's, or None for zeros.
    - masks: optional dict with any of "x" (B, D), "h" (B, H), "w" (4H, H), "c_zone" and
      "h_zone" (T, B, H) (1 = keep the old value) to use instead of random ones (for tests).
    Returns: output (T, B, H) (the h_t), (h_T, c_T) each (1, B, H).
    In eval mode, dropout masks are all ones and d_c = zoneout_c, d_h = zoneout_h (expectation).
    Without dropout_h, zoneout or layer_norm the layer runs lstmkit.torch's fused kernel on the
    (masked) weights; impl="loop" forces the readable loop below.
    """

    def __init__(self, input_size, hidden_size, *, dropout_x=0.0, dropout_h=0.0, zoneout_c=0.0,
                 zoneout_h=0.0, weight_drop=0.0, layer_norm=False, orthogonal=False, forget_bias=0.0,
                 impl="auto"):
        super().__init__()
        D, H = input_size, hidden_size
        self.input_size, self.hidden_size = D, H
        self.dropout_x, self.dropout_h = _check_p("dropout_x", dropout_x), _check_p("dropout_h", dropout_h)
        self.zoneout_c, self.zoneout_h = _check_p("zoneout_c", zoneout_c), _check_p("zoneout_h", zoneout_h)
        self.weight_drop = _check_p("weight_drop", weight_drop)
        self.layer_norm, self.orthogonal = bool(layer_norm), bool(orthogonal)
        if impl not in ("auto", "loop"):
            raise ValueError(f"impl must be 'auto' or 'loop'; got {impl!r}")
        self.impl = impl
        self.weight_ih = nn.Parameter(torch.empty(4 * H, D))
        self.weight_hh = nn.Parameter(torch.empty(4 * H, H))
        self.bias_ih = nn.Parameter(torch.empty(4 * H))
        self.bias_hh = nn.Parameter(torch.empty(4 * H))
        if layer_norm:
            self.ln_ih_weight = nn.Parameter(torch.ones(4 * H))
            self.ln_hh_weight = nn.Parameter(torch.ones(4 * H))
            self.ln_c_weight = nn.Parameter(torch.ones(H))
            self.ln_c_bias = nn.Parameter(torch.zeros(H))
        self.reset_parameters(forget_bias)

    @torch.no_grad()
    def reset_parameters(self, forget_bias=0.0):
        """uniform(-1/sqrt(H), 1/sqrt(H)) as nn.LSTM; then orthogonal gate blocks of weight_hh if
        orthogonal; forget_bias added to the forget gate's block of bias_ih, lstmkit's convention
        (lstmkit.train.add_forget_bias)."""
        k = self.hidden_size ** -0.5
        for w in (self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh):
            nn.init.uniform_(w, -k, k)
        if self.orthogonal:
            orthogonal_recurrent_(self.weight_hh)
        add_forget_bias(self, forget_bias)

    def extra_repr(self):
        s = f"{self.input_size}, {self.hidden_size}"
        for name in ("dropout_x", "dropout_h", "zoneout_c", "zoneout_h", "weight_drop"):
            if getattr(self, name):
                s += f", {name}={getattr(self, name)}"
        for name in ("layer_norm", "orthogonal"):
            if getattr(self, name):
                s += f", {name}=True"
        return s

    def _masks(self, x, masks):
        """The masks of one forward call: given ones, else random (training) or their eval values."""
        masks = dict(masks or {})
        T, B, D = x.shape
        H = self.hidden_size
        if self.training:
            for key, p, shape in (("x", self.dropout_x, (B, D)), ("h", self.dropout_h, (B, H)),
                                  ("w", self.weight_drop, (4 * H, H))):
                if key not in masks and p > 0:
                    masks[key] = dropout_mask(shape, p, like=x)
            for key, z in (("c_zone", self.zoneout_c), ("h_zone", self.zoneout_h)):
                if key not in masks and z > 0:
                    masks[key] = (torch.rand(T, B, H, dtype=x.dtype, device=x.device) < z).to(x.dtype)
        else:                                           # eval: dropout off, zoneout's expectation
            masks = {k: v for k, v in masks.items() if k in ("c_zone", "h_zone")}
            for key, z in (("c_zone", self.zoneout_c), ("h_zone", self.zoneout_h)):
                if key not in masks and z > 0:
                    masks[key] = x.new_full((T, B, H), z)
        return masks

    def forward(self, x, state=None, masks=None):
        if x.dim() != 3 or x.shape[2] != self.input_size:
            raise ValueError(f"RegularizedLSTM: expected x of shape (T, B, D={self.input_size}); "
                             f"got {tuple(x.shape)}")
        T, B, _ = x.shape
        H = self.hidden_size
        if state is None:
            h0 = c0 = x.new_zeros(1, B, H)
        else:
            h0, c0 = state
            if tuple(h0.shape) != (1, B, H) or tuple(c0.shape) != (1, B, H):
                raise ValueError(f"RegularizedLSTM: expected h0 and c0 of shape {(1, B, H)}; "
                                 f"got {tuple(h0.shape)} and {tuple(c0.shape)}")
        m = self._masks(x, masks)
        if "x" in m:
            x = x * m["x"]                              # the same input mask at every step
        w_hh = self.weight_hh * m["w"] if "w" in m else self.weight_hh   # DropConnect
        per_step = "h" in m or "c_zone" in m or "h_zone" in m or self.layer_norm
        if not per_step and self.impl == "auto":
            y, h, c = lstm_layer(x, h0[0], c0[0], self.weight_ih, w_hh, self.bias_ih, self.bias_hh)
            return y, (h.unsqueeze(0), c.unsqueeze(0))
        return self._loop(x, h0[0], c0[0], w_hh, m)

    def _loop(self, x, h, c, w_hh, m):
        H = self.hidden_size
        ln = self.layer_norm
        ys = []
        for t in range(x.shape[0]):
            h_in = h * m["h"] if "h" in m else h        # variational: the same mask at every step
            a_x = F.linear(x[t], self.weight_ih)
            a_h = F.linear(h_in, w_hh)
            if ln:
                a_x = F.layer_norm(a_x, (4 * H,), self.ln_ih_weight)
                a_h = F.layer_norm(a_h, (4 * H,), self.ln_hh_weight)
            a = a_x + a_h + self.bias_ih + self.bias_hh
            a_i, a_f, a_g, a_o = a.chunk(4, 1)
            i, f, g, o = torch.sigmoid(a_i), torch.sigmoid(a_f), torch.tanh(a_g), torch.sigmoid(a_o)
            c_new = f * c + i * g
            c_out = F.layer_norm(c_new, (H,), self.ln_c_weight, self.ln_c_bias) if ln else c_new
            h_new = o * torch.tanh(c_out)
            if "c_zone" in m:                           # zoneout: keep the old value where d = 1
                c_new = m["c_zone"][t] * c + (1 - m["c_zone"][t]) * c_new
            if "h_zone" in m:
                h_new = m["h_zone"][t] * h + (1 - m["h_zone"][t]) * h_new
            h, c = h_new, c_new
            ys.append(h)
        return torch.stack(ys), (h.unsqueeze(0), c.unsqueeze(0))


# ----------------------------------------------------------------------------- the character model

class RegLM(nn.Module):
    """Character language model with regularisers: embedding -> dropout -> RegularizedLSTM ->
    dropout -> linear. The interface of lstmkit.charlm.CharLM.

    RegLM(V, E, H, *, dropout=0.0, locked=False, **lstm_kwargs): dropout p on the embeddings
    (the LSTM's input) and on the LSTM's output (the read-out's input), the connections that
    nn.LSTM(dropout=p) drops between layers; locked=True uses one mask per sequence
    (locked_dropout) instead of a fresh one per step. lstm_kwargs go to RegularizedLSTM.
    forward(idx (T, B) int64, state=None) -> logits (T, B, V), (h_T, c_T) each (1, B, H).
    """

    def __init__(self, V, E, H, *, dropout=0.0, locked=False, **lstm_kwargs):
        super().__init__()
        self.V, self.dropout, self.locked = V, _check_p("dropout", dropout), bool(locked)
        self.emb = nn.Embedding(V, E)
        self.lstm = RegularizedLSTM(E, H, **lstm_kwargs)
        self.head = nn.Linear(H, V)

    def _drop(self, x):
        if self.locked:
            return locked_dropout(x, self.dropout, self.training)
        return F.dropout(x, self.dropout, training=self.training)

    def forward(self, idx, state=None):
        if idx.dim() != 2 or idx.dtype != torch.int64:
            raise ValueError(f"idx must be (T, B) int64 ids; got shape {tuple(idx.shape)}, dtype {idx.dtype}")
        hs, state = self.lstm(self._drop(self.emb(idx)), state)
        return self.head(self._drop(hs)), state
