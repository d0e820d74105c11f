"""Convert LSTM parameters between the reference dict and torch.nn.LSTM / nn.LSTMCell.

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
