"""The NumPy reference LSTM: forward and hand-derived backward, one equation per line.

Notation (the book's): x input, h hidden state, c cell state; gates i (input), f (forget),
g (candidate), o (output). Parameters use PyTorch's layout, gate order i, f, g, o:

    weight_ih (4H, D), weight_hh (4H, H), bias_ih (4H,), bias_hh (4H,)

One step:

    a  = x W_ih^T + b_ih + h_prev W_hh^T + b_hh        (B, 4H), split into a_i, a_f, a_g, a_o
    i  = sigmoid(a_i);  f = sigmoid(a_f);  g = tanh(a_g);  o = sigmoid(a_o)
    c  = f * c_prev + i * g
    h  = o * tanh(c)

Sequences are time-major: xs (T, B, D), hs (T, B, H).
"""

from __future__ import annotations

import numpy as np

PARAM_NAMES = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
GATES = ("i", "f", "g", "o")


# ----------------------------------------------------------------------------- activations

def sigmoid(z):
    """Logistic function 1 / (1 + exp(-z)), computed as (1 + tanh(z / 2)) / 2.

    The tanh form is the same function, saturates at 0 and 1 without overflow or underflow for
    any finite z (no floating-point warnings even under np.errstate(all="raise")), and is a few
    times faster than the exp form.

    Inputs:
    - z: array of any shape, float dtype.
    Returns:
    - array of the same shape and dtype with values in [0, 1].
    """
    s = np.tanh(np.asarray(z) / 2)  # float32 stays float32; integers become float64
    s += 1
    s *= 0.5
    return s


def tanh(z):
    """tanh(z); NumPy's tanh saturates to +-1 without overflow."""
    return np.tanh(z)


# ----------------------------------------------------------------------------- input checks

def _check_params(params, n_gates=4):
    """Validate a params dict of n_gates stacked blocks (4: LSTM, 1: RNN); return (D, H, dtype)."""
    if not isinstance(params, dict):
        raise TypeError(f"params must be a dict with keys {PARAM_NAMES}; got {type(params).__name__}")
    missing = [k for k in PARAM_NAMES if k not in params]
    if missing:
        raise ValueError(f"params is missing {missing}; expected keys {PARAM_NAMES}")
    for k in PARAM_NAMES:
        if not isinstance(params[k], np.ndarray):
            raise TypeError(f"params['{k}'] must be a numpy array; got {type(params[k]).__name__}")
    rows = "H" if n_gates == 1 else f"{n_gates}H"
    w_ih = params["weight_ih"]
    if w_ih.ndim != 2 or w_ih.shape[0] == 0 or w_ih.shape[0] % n_gates != 0:
        raise ValueError(f"params['weight_ih'] must have shape ({rows}, D) with H >= 1; got {w_ih.shape}")
    H, D = w_ih.shape[0] // n_gates, w_ih.shape[1]
    expected = {"weight_hh": (n_gates * H, H), "bias_ih": (n_gates * H,), "bias_hh": (n_gates * H,)}
    for k, shape in expected.items():
        if params[k].shape != shape:
            raise ValueError(f"params['{k}'] must have shape {shape} (H={H}); got {params[k].shape}")
    dtype = w_ih.dtype
    if not np.issubdtype(dtype, np.floating):
        raise TypeError(f"params must have a float dtype (float32 or float64); got {dtype}")
    for k in PARAM_NAMES:
        if params[k].dtype != dtype:
            raise TypeError(f"params['{k}'] has dtype {params[k].dtype}; all params must share {dtype}")
    return D, H, dtype


def _check_array(name, a, shape_text, shape, dtype):
    """Check that `a` is a float array of exactly `shape` (None entries are free) and `dtype`."""
    if not isinstance(a, np.ndarray):
        raise TypeError(f"{name} must be a numpy array of shape {shape_text}; got {type(a).__name__}")
    if not np.issubdtype(a.dtype, np.floating):
        raise TypeError(f"{name} must have a float dtype (float32 or float64); got {a.dtype}")
    if a.dtype != dtype:
        raise TypeError(f"{name} has dtype {a.dtype} but params have {dtype}; use one dtype throughout")
    if a.ndim != len(shape) or any(s is not None and s != n for s, n in zip(shape, a.shape, strict=True)):
        raise ValueError(f"{name} must have shape {shape_text}; got {a.shape}")


def _check_state(state, B, H, dtype, names=("h_prev", "c_prev")):
    if not (isinstance(state, (tuple, list)) and len(state) == 2):
        raise TypeError(f"state must be a pair ({names[0]}, {names[1]}) of arrays of shape (B, H)")
    for name, s in zip(names, state, strict=True):
        _check_array(name, s, f"(B={B}, H={H})", (B, H), dtype)


# ----------------------------------------------------------------------------- parameters

def _uniform_params(input_size, hidden_size, n_gates, rng, dtype):
    """weight_ih (n_gates*H, D), weight_hh (n_gates*H, H), bias_ih, bias_hh (n_gates*H,), all
    uniform(-1/sqrt(H), 1/sqrt(H)) like torch.nn's recurrent layers."""
    for name, n in (("input_size", input_size), ("hidden_size", hidden_size)):
        if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n < 1:
            raise ValueError(f"{name} must be a positive int; got {n!r}")
    if not np.issubdtype(np.dtype(dtype), np.floating):
        raise TypeError(f"dtype must be a float dtype; got {np.dtype(dtype)}")
    rng = np.random.default_rng(rng)
    D, H = int(input_size), int(hidden_size)
    G, k = n_gates * H, 1.0 / np.sqrt(H)
    shapes = {"weight_ih": (G, D), "weight_hh": (G, H), "bias_ih": (G,), "bias_hh": (G,)}
    return {name: rng.uniform(-k, k, size=shape).astype(dtype) for name, shape in shapes.items()}


def init_params(input_size, hidden_size, *, rng=None, dtype=np.float64, forget_bias=0.0):
    """Random LSTM parameters initialised like torch.nn.LSTM: uniform(-1/sqrt(H), 1/sqrt(H)).

    Inputs:
    - input_size: D; hidden_size: H (positive ints).
    - rng: a numpy Generator, an int seed, or None for fresh entropy.
    - dtype: float32 or float64.
    - forget_bias: added to the f block of bias_ih (Jozefowicz et al. 2015 suggest 1.0).
    Returns:
    - dict with weight_ih (4H, D), weight_hh (4H, H), bias_ih (4H,), bias_hh (4H,).
    """
    params = _uniform_params(input_size, hidden_size, 4, rng, dtype)
    H = params["weight_hh"].shape[1]
    params["bias_ih"][H:2 * H] += forget_bias
    return params


def zero_state(batch_size, hidden_size, dtype=np.float64):
    """The initial state (h0, c0), both zeros of shape (B, H)."""
    return np.zeros((batch_size, hidden_size), dtype), np.zeros((batch_size, hidden_size), dtype)


# ----------------------------------------------------------------------------- one step

def _activate(a, H):
    """Split pre-activations a (..., 4H) into gate activations i, f, g, o (each (..., H))."""
    return _activate_(a.copy(), H)


def _activate_(a, H):
    """Like _activate, but overwrites a with the activations; i, f, g, o are views into a."""
    i, f, g, o = (a[..., k * H:(k + 1) * H] for k in range(4))
    for s in (i, f, o):  # sigmoid(s) = (1 + tanh(s / 2)) / 2, in place
        s *= 0.5
        np.tanh(s, out=s)
        s += 1
        s *= 0.5
    np.tanh(g, out=g)
    return i, f, g, o


def gate_preactivations(x, h_prev, params):
    """a = x W_ih^T + b_ih + h_prev W_hh^T + b_hh, shape (B, 4H), blocks in gate order i, f, g, o."""
    return x @ params["weight_ih"].T + params["bias_ih"] + h_prev @ params["weight_hh"].T + params["bias_hh"]


def cell_forward(x, state, params):
    """One LSTM step.

    Inputs:
    - x: input, (B, D).
    - state: (h_prev, c_prev), each (B, H).
    - params: dict as from init_params.
    Returns:
    - (h, c): next hidden and cell state, each (B, H).
    - cache: dict of what cell_backward needs (x, h_prev, c_prev, i, f, g, o, tanh_c, params).
    """
    D, H, dtype = _check_params(params)
    _check_array("x", x, f"(B, D={D})", (None, D), dtype)
    B = x.shape[0]
    _check_state(state, B, H, dtype)
    h_prev, c_prev = state

    a = gate_preactivations(x, h_prev, params)
    i, f, g, o = _activate(a, H)
    c = f * c_prev + i * g
    tanh_c = tanh(c)
    h = o * tanh_c

    cache = dict(x=x, h_prev=h_prev, c_prev=c_prev, i=i, f=f, g=g, o=o, tanh_c=tanh_c, params=params)
    return (h, c), cache


def _gate_grads(dh, dc, i, f, g, o, tanh_c, c_prev, da=None):
    """Backward through one step's elementwise part.

    Returns the gradient w.r.t. the pre-activations, da (B, 4H), and dc_prev (B, H). If `da` is
    given, an array of shape (B, 4H), the result is written into it.
    """
    H = dh.shape[-1]
    if da is None:
        da = np.empty(dh.shape[:-1] + (4 * H,), dh.dtype)
    da_i, da_f, da_g, da_o = (da[..., k * H:(k + 1) * H] for k in range(4))
    dc = dc + dh * o * (1 - tanh_c ** 2)     # h = o * tanh(c)
    np.multiply(dh, tanh_c, out=da_o)        # do
    da_o *= o * (1 - o)                      # sigmoid' = s (1 - s)
    np.multiply(dc, g, out=da_i)             # di; c = f * c_prev + i * g
    da_i *= i * (1 - i)
    np.multiply(dc, c_prev, out=da_f)        # df
    da_f *= f * (1 - f)
    np.multiply(dc, i, out=da_g)             # dg
    da_g *= 1 - g ** 2                       # tanh' = 1 - tanh^2
    dc_prev = dc * f
    return da, dc_prev


def cell_backward(dstate, cache):
    """Backward pass of one LSTM step.

    Inputs:
    - dstate: (dh, dc), upstream gradients w.r.t. h and c, each (B, H); dc may be None (zero).
    - cache: from cell_forward.
    Returns:
    - dx: (B, D).
    - (dh_prev, dc_prev): each (B, H).
    - grads: dict with the same keys and shapes as params.
    """
    dh, dc = dstate
    p = cache["params"]
    B, H = cache["h_prev"].shape
    dtype = p["weight_ih"].dtype
    _check_array("dh", dh, f"(B={B}, H={H})", (B, H), dtype)
    if dc is None:
        dc = np.zeros_like(dh)
    _check_array("dc", dc, f"(B={B}, H={H})", (B, H), dtype)

    da, dc_prev = _gate_grads(dh, dc, cache["i"], cache["f"], cache["g"], cache["o"],
                              cache["tanh_c"], cache["c_prev"])
    dx = da @ p["weight_ih"]
    dh_prev = da @ p["weight_hh"]
    grads = {
        "weight_ih": da.T @ cache["x"],
        "weight_hh": da.T @ cache["h_prev"],
        "bias_ih": da.sum(axis=0),
        "bias_hh": da.sum(axis=0),
    }
    return dx, (dh_prev, dc_prev), grads


# ----------------------------------------------------------------------------- a sequence

def forward(xs, state, params):
    """Run the LSTM over a time-major sequence.

    Inputs:
    - xs: inputs, (T, B, D).
    - state: (h0, c0), each (B, H), or None for zeros.
    - params: dict as from init_params.
    Returns:
    - hs: hidden states of every step, (T, B, H).
    - (h_T, c_T): the final state, each (B, H).
    - cache: dict with xs, hs and cs (T+1, B, H; index 0 is the initial state), the gate
      activations i, f, g, o and tanh_c (each (T, B, H)), and params. Plot cache["f"] to see
      the forget gate over time.
    """
    D, H, dtype = _check_params(params)
    _check_array("xs", xs, f"(T, B, D={D})", (None, None, D), dtype)
    T, B, _ = xs.shape
    if T == 0 or B == 0:
        raise ValueError(f"xs must have T >= 1 and B >= 1; got shape {xs.shape}")
    if state is None:
        state = zero_state(B, H, dtype)
    _check_state(state, B, H, dtype, names=("h0", "c0"))

    w_hh_T = params["weight_hh"].T
    # acts holds the pre-activations a of every step, then (in place) the gates i, f, g, o.
    # The input part of every step at once: one (T*B, D) x (D, 4H) product.
    acts = xs.reshape(T * B, D) @ params["weight_ih"].T
    acts += params["bias_ih"] + params["bias_hh"]
    acts = acts.reshape(T, B, 4 * H)

    hs = np.empty((T + 1, B, H), dtype)
    cs = np.empty((T + 1, B, H), dtype)
    tanh_cs = np.empty((T, B, H), dtype)
    hs[0], cs[0] = state
    for t in range(T):
        acts[t] += hs[t] @ w_hh_T                # a = (x W_ih^T + b) + h_prev W_hh^T
        i, f, g, o = _activate_(acts[t], H)
        np.multiply(f, cs[t], out=cs[t + 1])     # c = f * c_prev + i * g
        cs[t + 1] += i * g
        np.tanh(cs[t + 1], out=tanh_cs[t])
        np.multiply(o, tanh_cs[t], out=hs[t + 1])  # h = o * tanh(c)

    cache = dict(
        xs=xs, hs=hs, cs=cs, tanh_c=tanh_cs, params=params,
        i=acts[..., 0 * H:1 * H], f=acts[..., 1 * H:2 * H], g=acts[..., 2 * H:3 * H], o=acts[..., 3 * H:],
    )
    return hs[1:], (hs[T].copy(), cs[T].copy()), cache


def backward(dhs, dstate_T, cache):
    """Backpropagation through time over a whole sequence.

    The step loop carries only (dh, dc) and the (B, 4H) pre-activation gradients; the weight
    gradients are then formed with one matrix product each over all T*B rows.

    Inputs:
    - dhs: upstream gradients w.r.t. hs, (T, B, H), or None (zero).
    - dstate_T: (dh_T, dc_T), gradients w.r.t. the final state, each (B, H); or None (zero).
      Either entry may also be None.
    - cache: from forward.
    Returns:
    - dxs: (T, B, D).
    - (dh_0, dc_0): gradients w.r.t. the initial state, each (B, H).
    - grads: dict with the same keys and shapes as params.
    """
    p = cache["params"]
    xs, hs, cs = cache["xs"], cache["hs"], cache["cs"]
    T, B, D = xs.shape
    H = hs.shape[-1]
    dtype = xs.dtype
    if dhs is None:
        dhs = np.zeros((T, B, H), dtype)
    _check_array("dhs", dhs, f"(T={T}, B={B}, H={H})", (T, B, H), dtype)
    dh_T, dc_T = (None, None) if dstate_T is None else dstate_T
    dh = np.zeros((B, H), dtype) if dh_T is None else dh_T
    dc = np.zeros((B, H), dtype) if dc_T is None else dc_T
    _check_array("dh_T", dh, f"(B={B}, H={H})", (B, H), dtype)
    _check_array("dc_T", dc, f"(B={B}, H={H})", (B, H), dtype)

    w_hh = p["weight_hh"]
    das = np.empty((T, B, 4 * H), dtype)
    dh = dh.copy()
    for t in reversed(range(T)):
        dh += dhs[t]
        _, dc = _gate_grads(dh, dc, cache["i"][t], cache["f"][t], cache["g"][t], cache["o"][t],
                            cache["tanh_c"][t], cs[t], da=das[t])
        np.matmul(das[t], w_hh, out=dh)

    da = das.reshape(T * B, 4 * H)
    dxs = (da @ p["weight_ih"]).reshape(T, B, D)
    db = da.sum(axis=0)
    grads = {
        "weight_ih": da.T @ xs.reshape(T * B, D),
        "weight_hh": da.T @ hs[:T].reshape(T * B, H),
        "bias_ih": db,
        "bias_hh": db.copy(),
    }
    return dxs, (dh, dc), grads
