"""The `run` step of every check in lstmkit.grading: call the student's function on given inputs.

This module imports only NumPy (and torch inside the PyTorch runs), never the rest of lstmkit, so
the grader's sandbox can load it next to the student's code without giving that code the
reference. Every run takes plain inputs (the backward runs get the reference's forward cache in
`inputs["cache"]`, computed by the trusted process) and returns a dict of outputs; a malformed
answer raises AssertionError with a message in the student's terms.
"""

from __future__ import annotations

import warnings

import numpy as np

GATES = ("i", "f", "g", "o")


def _call(what, fn, *args):
    """Call student code with warnings and floating-point overflow turned into clear failures."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with np.errstate(over="raise", invalid="raise", divide="raise"):
            try:
                return fn(*args)
            except FloatingPointError as e:
                raise AssertionError(
                    f"{what} hit a floating-point error ({e}): does it overflow for large inputs?"
                ) from None
            except Warning as w:
                raise AssertionError(f"{what} raised the warning {type(w).__name__}: {w}") from None


def _pair(what, value, names):
    if not (isinstance(value, (tuple, list)) and len(value) == 2):
        raise AssertionError(f"{what} should be a pair ({names[0]}, {names[1]}); got {type(value).__name__}")
    return value


def _copy_params(params):
    return {k: np.array(v) for k, v in params.items()}


def _copy_cache(cache):
    return {k: (_copy_params(v) if isinstance(v, dict) else np.array(v)) for k, v in cache.items()}


def sigmoid_run(fn, inputs):
    return {
        "s": _call("sigmoid(z)", fn, np.array(inputs["z"])),
        "s_big": _call("sigmoid(z) for |z| up to 1000", fn, np.array(inputs["z_big"])),
    }


def preact_run(fn, inputs):
    a = _call(
        "gate_preactivations",
        fn,
        np.array(inputs["x"]),
        np.array(inputs["h_prev"]),
        _copy_params(inputs["params"]),
    )
    return {"a": a}


def gates_run(fn, inputs):
    gates = _call("gate_activations(a)", fn, np.array(inputs["a"]))
    if not (isinstance(gates, (tuple, list)) and len(gates) == 4):
        raise AssertionError(
            f"gate_activations should return the four gates (i, f, g, o); got {type(gates).__name__}"
        )
    return dict(zip(GATES, gates, strict=True))


def cell_forward_run(fn, inputs):
    result = _call(
        "cell_forward",
        fn,
        np.array(inputs["x"]),
        (np.array(inputs["h_prev"]), np.array(inputs["c_prev"])),
        _copy_params(inputs["params"]),
    )
    state, _cache = _pair("cell_forward(x, (h_prev, c_prev), params)", result, ("(h, c)", "cache"))
    h, c = _pair("the first thing cell_forward returns", state, ("h", "c"))
    return {"h": h, "c": c}


def cell_backward_run(fn, inputs):
    """inputs["cache"] is the reference's cell_forward cache on the same inputs."""
    result = _call(
        "cell_backward", fn, (np.array(inputs["dh"]), np.array(inputs["dc"])), _copy_cache(inputs["cache"])
    )
    if not (isinstance(result, (tuple, list)) and len(result) == 3):
        raise AssertionError("cell_backward should return dx, (dh_prev, dc_prev), grads")
    dx, dstate, grads = result
    dh_prev, dc_prev = _pair("the second thing cell_backward returns", dstate, ("dh_prev", "dc_prev"))
    return {"dx": dx, "dh_prev": dh_prev, "dc_prev": dc_prev, "grads": grads}


def backward_run(fn, inputs):
    """inputs["cache"] is the reference's forward cache on the same inputs."""
    result = _call(
        "backward",
        fn,
        np.array(inputs["dhs"]),
        (np.array(inputs["dh_T"]), np.array(inputs["dc_T"])),
        _copy_cache(inputs["cache"]),
    )
    if not (isinstance(result, (tuple, list)) and len(result) == 3):
        raise AssertionError("backward should return dxs, (dh0, dc0), grads")
    dxs, dstate, grads = result
    dh0, dc0 = _pair("the second thing backward returns", dstate, ("dh0", "dc0"))
    return {"dxs": dxs, "dh0": dh0, "dc0": dc0, "grads": grads}


def numgrad_run(fn, inputs):
    x = np.array(inputs["x"])
    w, v = np.array(inputs["w"]), np.array(inputs["v"])

    def f():  # reads x, which numerical_gradient changes in place
        return float(np.sum(w * np.sin(x)) + np.sum(v * x**3))

    grad = _call("numerical_gradient", fn, f, x)
    return {"grad": grad, "x_after": x}


def _torch_load(module, state_dict, what):
    import torch

    expected = {k: tuple(v.shape) for k, v in state_dict.items()}
    got = {k: tuple(v.shape) for k, v in module.state_dict().items()}
    if got != expected:
        raise AssertionError(f"{what} has parameters {got}, expected {expected} (PyTorch's layout)")
    module.load_state_dict({k: torch.tensor(v) for k, v in state_dict.items()})


def torch_cell_run(cls, inputs):
    import torch

    D, H = inputs["params"]["weight_ih"].shape[1], inputs["h_prev"].shape[1]
    cell = _call(f"LSTMCell({D}, {H})", cls, D, H).double()
    _torch_load(cell, dict(inputs["params"]), "the cell")
    with torch.no_grad():
        x, h, c = (torch.tensor(inputs[k]) for k in ("x", "h_prev", "c_prev"))
        h, c = _pair("the cell's forward", _call("cell(x, (h, c))", cell, x, (h, c)), ("h", "c"))
    return {"h": h, "c": c}


def torch_layer_run(cls, inputs):
    import torch

    D, H = inputs["params"]["weight_ih"].shape[1], inputs["h0"].shape[1]
    layer = _call(f"LSTM({D}, {H})", cls, D, H).double()
    _torch_load(layer, {f"{k}_l0": v for k, v in inputs["params"].items()}, "the layer")
    with torch.no_grad():
        xs, h0, c0 = (torch.tensor(inputs[k]) for k in ("xs", "h0", "c0"))
        result = _call("lstm(xs, (h0, c0))", layer, xs, (h0[None], c0[None]))
    hs, state = _pair("the layer's forward", result, ("output", "(h_n, c_n)"))
    h_n, c_n = _pair("the final state", state, ("h_n", "c_n"))
    return {"hs": hs, "h_n": h_n, "c_n": c_n}


def adding_run(predict, inputs):
    return {"pred": _call("predict(xs)", predict, np.array(inputs["xs"]))}


# check name (lstmkit.grading.CHECKS) -> run
RUNS = {
    "sigmoid": sigmoid_run,
    "gate_preactivations": preact_run,
    "gate_activations": gates_run,
    "cell_forward": cell_forward_run,
    "cell_backward": cell_backward_run,
    "backward": backward_run,
    "numerical_gradient": numgrad_run,
    "torch_cell": torch_cell_run,
    "torch_layer": torch_layer_run,
    "adding": adding_run,
}
