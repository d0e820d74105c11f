"""A vanilla (Elman) tanh RNN in NumPy, and gradient norms by time lag for the RNN and the LSTM.

Parameters use torch.nn.RNN's layout (nonlinearity="tanh"):

    weight_ih (H, D), weight_hh (H, H), bias_ih (H,), bias_hh (H,)

One step:

    h = tanh(x W_ih^T + b_ih + h_prev W_hh^T + b_hh)

Sequences are time-major: xs (T, B, D), hs (T, B, H).

gradient_norm_by_lag measures how the gradient of a loss on the last hidden state shrinks or grows
as it travels back in time, for this RNN ('rnn') or the reference LSTM ('lstm').
"""

from __future__ import annotations

import numpy as np

from . import reference as ref
from .reference import _check_array

# ----------------------------------------------------------------------------- parameters


def _check_rnn_params(params):
    """Validate an RNN params dict (one block of H rows) and return (D, H, dtype)."""
    return ref._check_params(params, n_gates=1)


def init_rnn_params(input_size, hidden_size, *, rng=None, dtype=np.float64):
    """Random RNN parameters initialised like torch.nn.RNN: uniform(-1/sqrt(H), 1/sqrt(H)).

    Inputs:
    - input_size: D; hidden_size: H (positive ints).
    - rng: a numpy Generator, an int seed, or None for fresh entropy.
    - dtype: float32 or float64.
    Returns:
    - dict with weight_ih (H, D), weight_hh (H, H), bias_ih (H,), bias_hh (H,).
    """
    return ref._uniform_params(input_size, hidden_size, 1, rng, dtype)


# ----------------------------------------------------------------------------- forward, backward


def rnn_forward(xs, h0, params):
    """Run the tanh RNN over a time-major sequence.

    Inputs:
    - xs: inputs, (T, B, D).
    - h0: initial hidden state, (B, H), or None for zeros.
    - params: dict as from init_rnn_params.
    Returns:
    - hs: hidden states of every step, (T, B, H).
    - h_T: the final hidden state, (B, H).
    - cache: dict with xs, hs (T+1, B, H; index 0 is h0) and params.
    """
    D, H, dtype = _check_rnn_params(params)
    _check_array("xs", xs, f"(T, B, D={D})", (None, None, D), dtype)
    T, B, _ = xs.shape
    if T == 0 or B == 0:
        raise ValueError(f"xs must have T >= 1 and B >= 1; got shape {xs.shape}")
    if h0 is None:
        h0 = np.zeros((B, H), dtype)
    _check_array("h0", h0, f"(B={B}, H={H})", (B, H), dtype)

    # the input part of every step at once: (T*B, D) x (D, H)
    a_in = (xs.reshape(T * B, D) @ params["weight_ih"].T).reshape(T, B, H)
    a_in += params["bias_ih"] + params["bias_hh"]
    hs = np.empty((T + 1, B, H), dtype)
    hs[0] = h0
    for t in range(T):
        hs[t + 1] = np.tanh(a_in[t] + hs[t] @ params["weight_hh"].T)   # h = tanh(a)
    cache = dict(xs=xs, hs=hs, params=params)
    return hs[1:], hs[T].copy(), cache


def _rnn_backward_steps(dhs, dh_T, cache):
    """The BPTT loop. Returns das (T, B, H), the gradient w.r.t. each step's pre-activation,
    and dh_total (T+1, B, H), the full gradient w.r.t. h_0 .. h_T (index 0 is dh0)."""
    p, hs = cache["params"], cache["hs"]
    T, B, _ = cache["xs"].shape
    H = hs.shape[-1]
    dtype = hs.dtype
    if dhs is None:
        dhs = np.zeros((T, B, H), dtype)
    _check_array("dhs", dhs, f"(T={T}, B={B}, H={H})", (T, B, H), dtype)
    if dh_T is None:
        dh_T = np.zeros((B, H), dtype)
    _check_array("dh_T", dh_T, f"(B={B}, H={H})", (B, H), dtype)

    das = np.empty((T, B, H), dtype)
    dh_total = np.empty((T + 1, B, H), dtype)
    dh = dh_T.copy()
    for t in reversed(range(T)):
        dh = dh + dhs[t]                          # h_{t+1} feeds the output and the next step
        dh_total[t + 1] = dh
        das[t] = dh * (1 - hs[t + 1] ** 2)        # tanh' = 1 - tanh^2
        dh = das[t] @ p["weight_hh"]              # a = ... + h_prev W_hh^T
    dh_total[0] = dh
    return das, dh_total


def rnn_backward(dhs, dh_T, cache):
    """Backpropagation through time for the tanh RNN.

    Inputs:
    - dhs: upstream gradients w.r.t. hs, (T, B, H), or None (zero).
    - dh_T: gradient w.r.t. the final hidden state, (B, H), or None (zero).
    - cache: from rnn_forward.
    Returns:
    - dxs: (T, B, D).
    - dh0: (B, H).
    - grads: dict with the same keys and shapes as params.
    """
    das, dh_total = _rnn_backward_steps(dhs, dh_T, cache)
    p, xs, hs = cache["params"], cache["xs"], cache["hs"]
    T, B, D = xs.shape
    H = hs.shape[-1]
    da = das.reshape(T * B, H)
    dxs = (da @ p["weight_ih"]).reshape(T, B, D)
    db = da.sum(axis=0)
    grads = {
        "weight_ih": da.T @ xs.reshape(T * B, D),
        "weight_hh": da.T @ hs[:T].reshape(T * B, H),
        "bias_ih": db,
        "bias_hh": db.copy(),
    }
    return dxs, dh_total[0].copy(), grads


# ----------------------------------------------------------------------------- gradient by time lag


def _lstm_backward_steps(dh_T, cache):
    """Backward through the reference LSTM one cell at a time (loss on h_T only), recording the
    gradients w.r.t. every x_t and h_t, and the gradient reaching each c_t from c_{t+1}.
    Returns dxs (T, B, D), dhs (T+1, B, H), dcs (T+1, B, H) (index s is the state after x_{s-1})."""
    xs, hs, cs = cache["xs"], cache["hs"], cache["cs"]
    T = xs.shape[0]
    dxs = np.empty_like(xs)
    dh_all, dc_all = np.empty_like(hs), np.empty_like(cs)
    dh, dc = dh_T, np.zeros_like(dh_T)
    dh_all[T], dc_all[T] = dh, dc
    for t in reversed(range(T)):
        step = dict(x=xs[t], h_prev=hs[t], c_prev=cs[t], i=cache["i"][t], f=cache["f"][t],
                    g=cache["g"][t], o=cache["o"][t], tanh_c=cache["tanh_c"][t], params=cache["params"])
        dxs[t], (dh, dc), _ = ref.cell_backward((dh, dc), step)
        dh_all[t], dc_all[t] = dh, dc
    return dxs, dh_all, dc_all


def scaled_recurrent_weights(H, scale, *, rng=None, blocks=1, dtype=np.float64):
    """Random recurrent weights with spectral radius close to `scale`.

    Each (H, H) block is drawn from N(0, scale^2 / H); by the circular law its eigenvalues fill a
    disc of radius about `scale`.

    Inputs:
    - H: hidden size; scale: target spectral radius (> 0); blocks: 1 for the RNN, 4 for the LSTM.
    Returns:
    - array of shape (blocks * H, H).
    """
    rng = np.random.default_rng(rng)
    return (rng.standard_normal((blocks * H, H)) * (scale / np.sqrt(H))).astype(dtype)


def gradient_norm_by_lag(kind, T, *, input_size=4, hidden_size=32, batch_size=16, scale=None,
                         params=None, wrt="x", forget_bias=0.0, seed=0):
    """How large the gradient of a loss on the last hidden state is, k steps back in time.

    The loss is L = sum(v * h_T) for a fixed random unit vector v per sequence (the loss touches
    h_T only). For each lag k = 0 .. T-1 this returns the batch mean of ||dL/dx_t|| (wrt='x'),
    ||dL/dh_t|| (wrt='h') or ||dL/dc_t|| (wrt='c', LSTM only) with t = T-1-k (h_t, c_t being the
    state after reading x_t).

    Inputs:
    - kind: 'rnn' (lstmkit.rnn) or 'lstm' (lstmkit.reference).
    - T: sequence length.
    - input_size, hidden_size, batch_size: D, H, B (ignored D, H if params is given).
    - scale: if given, weight_hh is replaced by scaled_recurrent_weights(H, scale), so its
      spectral radius (of each gate block for the LSTM) is about `scale`.
    - params: parameters to use; None draws them with init_rnn_params / init_params.
    - wrt: 'x', 'h' or 'c'.
    - forget_bias: for kind='lstm' with params=None, passed to init_params.
    - seed: seeds parameters, inputs xs ~ N(0, 1) and the loss direction v.
    Returns:
    - norms: float64 array (T,), norms[k] for lag k = T-1-t.
    """
    if kind not in ("rnn", "lstm"):
        raise ValueError(f"kind must be 'rnn' or 'lstm'; got {kind!r}")
    if wrt not in ("x", "h", "c") or (wrt == "c" and kind == "rnn"):
        raise ValueError(f"wrt must be 'x' or 'h' (or 'c' for kind='lstm'); got {wrt!r} for kind={kind!r}")
    if not isinstance(T, (int, np.integer)) or T < 1:
        raise ValueError(f"T must be a positive int; got {T!r}")
    rng = np.random.default_rng(seed)
    if params is None:
        if kind == "rnn":
            params = init_rnn_params(input_size, hidden_size, rng=rng)
        else:
            params = ref.init_params(input_size, hidden_size, rng=rng, forget_bias=forget_bias)
    else:
        params = dict(params)
    D = params["weight_ih"].shape[1]
    H = params["weight_hh"].shape[1]
    dtype = params["weight_ih"].dtype
    if scale is not None:
        blocks = 1 if kind == "rnn" else 4
        params["weight_hh"] = scaled_recurrent_weights(H, scale, rng=rng, blocks=blocks, dtype=dtype)
    B = batch_size
    xs = rng.standard_normal((T, B, D)).astype(dtype)
    v = rng.standard_normal((B, H))
    v = (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(dtype)   # dL/dh_T = v

    if kind == "rnn":
        _, _, cache = rnn_forward(xs, None, params)
        if wrt == "x":
            grads_t = rnn_backward(None, v, cache)[0]                   # (T, B, D)
        else:
            grads_t = _rnn_backward_steps(None, v, cache)[1][1:]        # dL/dh_1 .. dL/dh_T
    else:
        _, _, cache = ref.forward(xs, None, params)
        dxs, dhs, dcs = _lstm_backward_steps(v, cache)
        # dcs[s] is the gradient reaching c_s through c_{s+1}; c_s also feeds h_s = o * tanh(c_s)
        dcs_total = dcs[1:] + dhs[1:] * cache["o"] * (1 - cache["tanh_c"] ** 2)
        grads_t = {"x": dxs, "h": dhs[1:], "c": dcs_total}[wrt]

    norms = np.linalg.norm(grads_t.astype(np.float64), axis=-1).mean(axis=1)   # (T,) indexed by t
    return norms[::-1].copy()
