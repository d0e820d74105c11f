"""LSTM variants (chapter 9) and deliberately wrong LSTMs (chapter 10), forward only, in NumPy.

Every step function has the signature ``step(x, state, params) -> (state, gates)`` where
``gates`` is a dict of the gate activations of that step, each (B, H). LSTM-like cells carry
``state = (h, c)``; the GRU carries ``state = h``. ``run`` applies any step over a time-major
sequence.

Correct variants:
- peephole LSTM (Gers & Schmidhuber 2000): i and f also see c_{t-1}, o sees c_t, through
  diagonal weights p_i, p_f, p_o of shape (H,).
- coupled input-forget gate (CIFG): i = 1 - f, so the cell has only blocks f, g, o.
- GRU (Cho et al. 2014), in torch.nn.GRU's convention (gate order r, z, n).

Wrong variants (prefix ``wrong_``) take the reference LSTM's params but compute something else.
They exist only so the misconceptions chapter can show that they disagree with torch.nn.LSTM.
"""

from __future__ import annotations

import numpy as np

from .reference import _check_array, _check_state, gate_preactivations, init_params, sigmoid, tanh

# ----------------------------------------------------------------------------- helpers


def _blocks(a, n):
    """Split a (..., n*H) into n views of shape (..., H)."""
    H = a.shape[-1] // n
    return [a[..., k * H:(k + 1) * H] for k in range(n)]


def _check_gated(params, n_blocks, name, extra=()):
    """Validate a params dict with `n_blocks` stacked gate blocks; return (D, H, dtype)."""
    keys = ("weight_ih", "weight_hh", "bias_ih", "bias_hh") + tuple(extra)
    if not isinstance(params, dict):
        raise TypeError(f"{name} params must be a dict with keys {keys}; got {type(params).__name__}")
    missing = [k for k in keys if k not in params]
    if missing:
        raise ValueError(f"{name} params are missing {missing}; expected keys {keys}")
    w_ih = np.asarray(params["weight_ih"])
    if w_ih.ndim != 2 or w_ih.shape[0] % n_blocks != 0 or w_ih.shape[0] == 0:
        raise ValueError(f"{name} params['weight_ih'] must have shape ({n_blocks}H, D); got {w_ih.shape}")
    H, D = w_ih.shape[0] // n_blocks, w_ih.shape[1]
    expected = {"weight_hh": (n_blocks * H, H), "bias_ih": (n_blocks * H,), "bias_hh": (n_blocks * H,)}
    expected.update({k: (H,) for k in extra})
    for k, shape in expected.items():
        got = np.shape(params[k])
        if got != shape:
            raise ValueError(f"{name} params['{k}'] must have shape {shape} (H={H}); got {got}")
    return D, H, w_ih.dtype


def _uniform(shapes, H, rng, dtype):
    """Draw each shape from uniform(-1/sqrt(H), 1/sqrt(H)), PyTorch's RNN initialisation."""
    rng = np.random.default_rng(rng)
    k = 1.0 / np.sqrt(H)
    return {name: rng.uniform(-k, k, size=shape).astype(dtype) for name, shape in shapes.items()}


def _gated_shapes(n_blocks, D, H):
    return {"weight_ih": (n_blocks * H, D), "weight_hh": (n_blocks * H, H),
            "bias_ih": (n_blocks * H,), "bias_hh": (n_blocks * H,)}


def count_params(params):
    """Number of scalars in a params dict."""
    return int(sum(np.size(v) for v in params.values()))


# ----------------------------------------------------------------------------- peephole LSTM


def init_peephole_params(input_size, hidden_size, *, rng=None, dtype=np.float64):
    """Reference LSTM params plus peephole weights p_i, p_f, p_o, each (H,).

    Returns:
    - dict with weight_ih (4H, D), weight_hh (4H, H), bias_ih (4H,), bias_hh (4H,) (gate order
      i, f, g, o) and p_i, p_f, p_o (H,).
    """
    rng = np.random.default_rng(rng)
    params = init_params(input_size, hidden_size, rng=rng, dtype=dtype)
    params.update(_uniform({k: (hidden_size,) for k in ("p_i", "p_f", "p_o")}, hidden_size, rng, dtype))
    return params


def peephole_step(x, state, params):
    """One peephole LSTM step (Gers & Schmidhuber 2000).

        i = sigmoid(a_i + p_i * c_prev)      f = sigmoid(a_f + p_f * c_prev)
        g = tanh(a_g)
        c = f * c_prev + i * g
        o = sigmoid(a_o + p_o * c)           (o sees the *new* cell state)
        h = o * tanh(c)

    where a = x W_ih^T + b_ih + h_prev W_hh^T + b_hh as in the reference LSTM.

    Inputs:
    - x: (B, D); state: (h_prev, c_prev), each (B, H); params: as from init_peephole_params.
    Returns:
    - (h, c), each (B, H); gates: dict i, f, g, o, each (B, H).
    """
    D, H, dtype = _check_gated(params, 4, "peephole", extra=("p_i", "p_f", "p_o"))
    _check_array("x", x, f"(B, D={D})", (None, D), dtype)
    _check_state(state, x.shape[0], H, dtype)
    h_prev, c_prev = state
    a_i, a_f, a_g, a_o = _blocks(gate_preactivations(x, h_prev, params), 4)
    i = sigmoid(a_i + params["p_i"] * c_prev)
    f = sigmoid(a_f + params["p_f"] * c_prev)
    g = tanh(a_g)
    c = f * c_prev + i * g
    o = sigmoid(a_o + params["p_o"] * c)
    h = o * tanh(c)
    return (h, c), dict(i=i, f=f, g=g, o=o)


# ----------------------------------------------------------------------------- coupled gates


def init_coupled_params(input_size, hidden_size, *, rng=None, dtype=np.float64, forget_bias=0.0):
    """Params of a coupled input-forget gate LSTM: three blocks in order f, g, o.

    Returns:
    - dict with weight_ih (3H, D), weight_hh (3H, H), bias_ih (3H,), bias_hh (3H,).
    """
    params = _uniform(_gated_shapes(3, input_size, hidden_size), hidden_size, rng, dtype)
    params["bias_ih"][:hidden_size] += forget_bias
    return params


def coupled_step(x, state, params):
    """One coupled input-forget gate (CIFG) step: the input gate is i = 1 - f.

        f = sigmoid(a_f);  g = tanh(a_g);  o = sigmoid(a_o);  i = 1 - f
        c = f * c_prev + (1 - f) * g
        h = o * tanh(c)

    Inputs:
    - x: (B, D); state: (h_prev, c_prev), each (B, H); params: as from init_coupled_params.
    Returns:
    - (h, c), each (B, H); gates: dict i, f, g, o, each (B, H).
    """
    D, H, dtype = _check_gated(params, 3, "coupled")
    _check_array("x", x, f"(B, D={D})", (None, D), dtype)
    _check_state(state, x.shape[0], H, dtype)
    h_prev, c_prev = state
    a_f, a_g, a_o = _blocks(gate_preactivations(x, h_prev, params), 3)
    f, g, o = sigmoid(a_f), tanh(a_g), sigmoid(a_o)
    i = 1 - f
    c = f * c_prev + i * g
    h = o * tanh(c)
    return (h, c), dict(i=i, f=f, g=g, o=o)


# ----------------------------------------------------------------------------- GRU


def init_gru_params(input_size, hidden_size, *, rng=None, dtype=np.float64):
    """GRU params in torch.nn.GRU's layout: three blocks in order r, z, n.

    Returns:
    - dict with weight_ih (3H, D), weight_hh (3H, H), bias_ih (3H,), bias_hh (3H,).
    """
    return _uniform(_gated_shapes(3, input_size, hidden_size), hidden_size, rng, dtype)


def gru_step(x, h_prev, params):
    """One GRU step (Cho et al. 2014) exactly as torch.nn.GRUCell computes it.

        r = sigmoid(W_ir x + b_ir + W_hr h_prev + b_hr)
        z = sigmoid(W_iz x + b_iz + W_hz h_prev + b_hz)
        n = tanh(W_in x + b_in + r * (W_hn h_prev + b_hn))
        h = (1 - z) * n + z * h_prev

    Inputs:
    - x: (B, D); h_prev: (B, H); params: as from init_gru_params.
    Returns:
    - h: (B, H); gates: dict r, z, n, each (B, H).
    """
    D, H, dtype = _check_gated(params, 3, "GRU")
    _check_array("x", x, f"(B, D={D})", (None, D), dtype)
    _check_array("h_prev", h_prev, f"(B={x.shape[0]}, H={H})", (x.shape[0], H), dtype)
    x_r, x_z, x_n = _blocks(x @ params["weight_ih"].T + params["bias_ih"], 3)
    h_r, h_z, h_n = _blocks(h_prev @ params["weight_hh"].T + params["bias_hh"], 3)
    r = sigmoid(x_r + h_r)
    z = sigmoid(x_z + h_z)
    n = tanh(x_n + r * h_n)          # r gates the recurrent part only, bias b_hn included
    h = (1 - z) * n + z * h_prev
    return h, dict(r=r, z=z, n=n)


# ----------------------------------------------------------------------------- wrong LSTMs


def _wrong_prelude(x, state, params):
    D, H, dtype = _check_gated(params, 4, "LSTM")
    _check_array("x", x, f"(B, D={D})", (None, D), dtype)
    _check_state(state, x.shape[0], H, dtype)
    return H


def wrong_interpolated_output_step(x, state, params):
    """WRONG: h = (1 - o) * h_prev + o * tanh(c), a GRU-style interpolation misread into the LSTM.

    The true LSTM has h = o * tanh(c); here the "rest" of the output gate lets the previous hidden
    state leak through. Gates i, f, g, o and c are computed as in the reference LSTM.

    Inputs / Returns: as reference cell_forward, with gates dict i, f, g, o.
    """
    _wrong_prelude(x, state, params)
    h_prev, c_prev = state
    a_i, a_f, a_g, a_o = _blocks(gate_preactivations(x, h_prev, params), 4)
    i, f, g, o = sigmoid(a_i), sigmoid(a_f), tanh(a_g), sigmoid(a_o)
    c = f * c_prev + i * g
    h = (1 - o) * h_prev + o * tanh(c)
    return (h, c), dict(i=i, f=f, g=g, o=o)


def wrong_output_from_cell_step(x, state, params):
    """WRONG: the output gate reads the new cell state through W_ho instead of h_prev.

        o = sigmoid(W_io x + b_io + W_ho c + b_ho)      (reference: W_ho h_prev)

    Same parameter shapes as the reference LSTM, so it loads any LSTM's weights without error.

    Inputs / Returns: as reference cell_forward, with gates dict i, f, g, o.
    """
    H = _wrong_prelude(x, state, params)
    h_prev, c_prev = state
    a_i, a_f, a_g, _ = _blocks(gate_preactivations(x, h_prev, params), 4)
    i, f, g = sigmoid(a_i), sigmoid(a_f), tanh(a_g)
    c = f * c_prev + i * g
    w_io, b_io = params["weight_ih"][3 * H:], params["bias_ih"][3 * H:]
    w_ho, b_ho = params["weight_hh"][3 * H:], params["bias_hh"][3 * H:]
    o = sigmoid(x @ w_io.T + b_io + c @ w_ho.T + b_ho)
    h = o * tanh(c)
    return (h, c), dict(i=i, f=f, g=g, o=o)


def softmax(z, axis=-1):
    """Numerically stable softmax along `axis`."""
    e = np.exp(z - z.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def wrong_softmax_gates_step(x, state, params):
    """WRONG: gates i, f, o as softmax over the H units, the "gates are probabilities" misreading.

    Each gate vector then sums to 1 across units, so with many units every entry is tiny and the
    cell forgets almost everything at every step.

    Inputs / Returns: as reference cell_forward, with gates dict i, f, g, o.
    """
    _wrong_prelude(x, state, params)
    h_prev, c_prev = state
    a_i, a_f, a_g, a_o = _blocks(gate_preactivations(x, h_prev, params), 4)
    i, f, g, o = softmax(a_i), softmax(a_f), tanh(a_g), softmax(a_o)
    c = f * c_prev + i * g
    h = o * tanh(c)
    return (h, c), dict(i=i, f=f, g=g, o=o)


# ----------------------------------------------------------------------------- gate order


def reorder_gates(params, src="ifgo", dst="ifog"):
    """Permute the four gate blocks of LSTM params from order `src` to order `dst`.

    For example reorder_gates(p, "ifgo", "ifog") turns PyTorch-ordered weights into the order
    CS231n's assignment slices them in. Arrays without 4H rows (e.g. peepholes) are copied as is.

    Inputs:
    - params: dict with weight_ih (4H, D), weight_hh (4H, H), bias_ih (4H,), bias_hh (4H,).
    - src, dst: strings, each a permutation of "ifgo".
    Returns:
    - a new dict with the blocks of every 4H-row array rearranged.
    """
    if sorted(src) != sorted("ifgo") or sorted(dst) != sorted("ifgo"):
        raise ValueError(f"src and dst must be permutations of 'ifgo'; got {src!r}, {dst!r}")
    _, H, _ = _check_gated(params, 4, "LSTM", extra=())
    out = {}
    for k, v in params.items():
        v = np.asarray(v)
        if v.shape[:1] == (4 * H,):
            blocks = dict(zip(src, _blocks(v.T, 4), strict=True))
            out[k] = np.concatenate([blocks[gate] for gate in dst], axis=-1).T.copy()
        else:
            out[k] = v.copy()
    return out


# ----------------------------------------------------------------------------- sequences


def run(step, xs, state, params):
    """Apply `step` over a time-major sequence.

    Inputs:
    - step: one of the step functions of this module (or reference-compatible).
    - xs: (T, B, D).
    - state: initial state: (h0, c0) for LSTM-like steps, h0 for gru_step; each (B, H).
    - params: the params dict `step` expects.
    Returns:
    - hs: hidden states of every step, (T, B, H).
    - state_T: the final state, same structure as `state`.
    - trace: dict name -> (T, B, H) array over time: every gate the step reports and, for
      (h, c) states, the cell state "c".
    """
    if not isinstance(xs, np.ndarray) or xs.ndim != 3 or xs.shape[0] == 0:
        raise ValueError(f"xs must be a numpy array of shape (T, B, D) with T >= 1; got {np.shape(xs)}")
    hs, trace = [], {}
    for x in xs:
        state, gates = step(x, state, params)
        if isinstance(state, tuple):
            hs.append(state[0])
            gates = dict(gates, c=state[1])
        else:
            hs.append(state)
        for k, v in gates.items():
            trace.setdefault(k, []).append(v)
    return np.stack(hs), state, {k: np.stack(v) for k, v in trace.items()}


def peephole_forward(xs, state, params):
    """run(peephole_step, ...); state (h0, c0) or None for zeros. Returns hs, (h_T, c_T), trace."""
    return run(peephole_step, xs, _zeros_if_none(state, xs, params, pair=True), params)


def coupled_forward(xs, state, params):
    """run(coupled_step, ...); state (h0, c0) or None for zeros. Returns hs, (h_T, c_T), trace."""
    return run(coupled_step, xs, _zeros_if_none(state, xs, params, pair=True), params)


def gru_forward(xs, h0, params):
    """run(gru_step, ...); h0 (B, H) or None for zeros. Returns hs (T, B, H), h_T, trace (r, z, n)."""
    return run(gru_step, xs, _zeros_if_none(h0, xs, params, pair=False), params)


def _zeros_if_none(state, xs, params, pair):
    if state is not None:
        return state
    H = np.shape(params["weight_hh"])[1]
    z = np.zeros((np.shape(xs)[1], H), np.asarray(params["weight_hh"]).dtype)
    return (z, z.copy()) if pair else z
