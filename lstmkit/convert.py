"""Convert LSTM parameters between the reference dict and torch.nn.LSTM / nn.LSTMCell, Keras and CS231n.

The reference params dict uses PyTorch's layout already (gate order i, f, g, o), so these are
copies with renaming: nn.LSTM calls layer l, direction d's weights `weight_ih_l{l}{suffix}` etc.,
with suffix "" forward and "_reverse" backward; nn.LSTMCell calls them `weight_ih` etc.
"""

from __future__ import annotations

import numpy as np

from .reference import PARAM_NAMES, _check_params


def _state_dict(module_or_state_dict):
    if hasattr(module_or_state_dict, "state_dict"):
        return module_or_state_dict.state_dict()
    return module_or_state_dict


def _torch_key(name, layer, direction, cell):
    if cell:
        return name
    return f"{name}_l{layer}{'_reverse' if direction else ''}"


def from_torch(module_or_state_dict, layer=0, direction=0, *, dtype=None):
    """Reference params of one layer and direction of an nn.LSTM (or an nn.LSTMCell).

    Inputs:
    - module_or_state_dict: an nn.LSTM / nn.LSTMCell (or lstmkit.torch equivalent) or its state_dict.
    - layer, direction: which layer (0-based) and direction (0 forward, 1 reverse).
    - dtype: numpy dtype of the result; None keeps the tensor's dtype.
    Returns:
    - dict weight_ih (4H, D), weight_hh (4H, H), bias_ih (4H,), bias_hh (4H,) of numpy arrays.
      A module built with bias=False gives zero biases.
    """
    sd = _state_dict(module_or_state_dict)
    cell = "weight_ih" in sd
    key = _torch_key("weight_ih", layer, direction, cell)
    if key not in sd:
        raise KeyError(f"no '{key}' in the state_dict (keys: {sorted(sd)}); check layer and direction")
    if _torch_key("weight_hr", layer, direction, cell) in sd:
        raise ValueError("the module uses proj_size > 0; the reference params have no projection weight_hr")
    params = {}
    for name in PARAM_NAMES:
        k = _torch_key(name, layer, direction, cell)
        if k in sd:
            params[name] = sd[k].detach().cpu().numpy().copy()
    four_h = params["weight_ih"].shape[0]
    for name in ("bias_ih", "bias_hh"):
        params.setdefault(name, np.zeros(four_h, params["weight_ih"].dtype))
    if dtype is not None:
        params = {k: v.astype(dtype) for k, v in params.items()}
    _check_params(params)
    return params


def to_torch(params, module=None, layer=0, direction=0):
    """Torch tensors for one layer/direction, and optionally copy them into `module`.

    Inputs:
    - params: reference params dict.
    - module: an nn.LSTM / nn.LSTMCell whose matching parameters are overwritten in place, or None.
    - layer, direction: where in the module the params go.
    Returns:
    - dict of state_dict keys -> torch tensors (named like nn.LSTMCell's keys when module is None
      or a cell, like nn.LSTM's `..._l{layer}` keys otherwise).
    """
    import torch

    D, H, _ = _check_params(params)
    cell = module is None or hasattr(module, "weight_ih")
    out = {_torch_key(n, layer, direction, cell): torch.from_numpy(np.array(params[n])) for n in PARAM_NAMES}
    if module is not None:
        with torch.no_grad():
            for k, v in out.items():
                target = getattr(module, k, None)
                if target is None:
                    if "bias" in k and not np.any(v.numpy()):
                        continue  # a bias=False module takes zero biases
                    raise KeyError(f"module has no parameter '{k}'")
                if tuple(target.shape) != tuple(v.shape):
                    raise ValueError(f"module's '{k}' has shape {tuple(target.shape)}; params give "
                                     f"{tuple(v.shape)} (D={D}, H={H})")
                target.copy_(v)
    return out


# ----------------------------------------------------------------------------- Keras and CS231n
#
# Both layouts keep a single bias. Going to them sums bias_ih + bias_hh; coming back puts the
# whole sum in bias_ih and zeros in bias_hh. The LSTM computes the same function either way, but
# the torch -> keras -> torch round trip returns (bias_ih + bias_hh, 0), not the original pair.

def _blocks(w, order, H):
    """Reorder the four H-sized gate blocks along axis 0 of w (4H, ...) by `order`."""
    return np.concatenate([w[k * H:(k + 1) * H] for k in order], axis=0)


def to_keras(params):
    """Keras LSTM weights [kernel (D, 4H), recurrent_kernel (H, 4H), bias (4H,)] from reference params.

    Keras' gate order i, f, c, o is ours (its c is our candidate g), so this is transposes and
    the summed bias.
    """
    _check_params(params)
    return [params["weight_ih"].T.copy(), params["weight_hh"].T.copy(),
            params["bias_ih"] + params["bias_hh"]]


def from_keras(weights):
    """Reference params from Keras LSTM weights [kernel (D, 4H), recurrent_kernel (H, 4H), bias (4H,)].

    A use_bias=False layer's two-element list gives zero biases. bias_hh is always zero.
    """
    if len(weights) not in (2, 3):
        raise ValueError("expected [kernel, recurrent_kernel, bias] (or without bias); "
                         f"got {len(weights)} arrays")
    kernel, recurrent = np.asarray(weights[0]), np.asarray(weights[1])
    if kernel.ndim != 2 or recurrent.ndim != 2 or recurrent.shape[1] != 4 * recurrent.shape[0]:
        raise ValueError(f"expected kernel (D, 4H) and recurrent_kernel (H, 4H); got {kernel.shape} and "
                         f"{recurrent.shape}")
    four_h = recurrent.shape[1]
    bias = np.asarray(weights[2]) if len(weights) == 3 else np.zeros(four_h, kernel.dtype)
    params = {"weight_ih": kernel.T.copy(), "weight_hh": recurrent.T.copy(),
              "bias_ih": bias.copy(), "bias_hh": np.zeros_like(bias)}
    _check_params(params)
    return params


_CS231N_ORDER = (0, 1, 3, 2)  # CS231n's i, f, o, g from our i, f, g, o (and back: it is its own inverse)


def to_cs231n(params):
    """CS231n assignment weights (Wx (D, 4H), Wh (H, 4H), b (4H,)), gate order i, f, o, g."""
    _, H, _ = _check_params(params)
    b = params["bias_ih"] + params["bias_hh"]
    return (_blocks(params["weight_ih"], _CS231N_ORDER, H).T.copy(),
            _blocks(params["weight_hh"], _CS231N_ORDER, H).T.copy(),
            _blocks(b, _CS231N_ORDER, H))


def from_cs231n(Wx, Wh, b):
    """Reference params from CS231n's (Wx (D, 4H), Wh (H, 4H), b (4H,)); bias_hh is zero."""
    Wx, Wh, b = np.asarray(Wx), np.asarray(Wh), np.asarray(b)
    if Wh.ndim != 2 or Wh.shape[1] != 4 * Wh.shape[0] or Wx.ndim != 2 or Wx.shape[1] != Wh.shape[1] \
            or b.shape != (Wh.shape[1],):
        raise ValueError(f"expected Wx (D, 4H), Wh (H, 4H), b (4H,); got {Wx.shape}, {Wh.shape}, {b.shape}")
    H = Wh.shape[0]
    params = {"weight_ih": _blocks(Wx.T, _CS231N_ORDER, H), "weight_hh": _blocks(Wh.T, _CS231N_ORDER, H),
              "bias_ih": _blocks(b, _CS231N_ORDER, H), "bias_hh": np.zeros_like(b)}
    _check_params(params)
    return params
