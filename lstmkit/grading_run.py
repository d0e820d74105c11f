"""The `run` step of every check in lstmkit.grading: call the student's function on given inputs.

This module imports only NumPy (and torch inside the PyTorch runs), never the rest of lstmkit, so
the grader's sandbox can load it next to the student's code without giving that code the
reference. Every run takes plain inputs (the backward runs get the reference's forward cache in
`inputs["cache"]`, computed by the trusted process) and returns a dict of outputs; a malformed
answer raises AssertionError with a message in the student's terms. `SUBSTITUTES` are the grader's
versions of the functions a later part calls (sigmoid, gate_activations, cell_backward, lstm_step...):
a failing call is run again with them in place (`substituted`), and they answer only then.
"""

from __future__ import annotations

import contextlib
import warnings

import numpy as np

GATES = ("i", "f", "g", "o")
MARKER = "[lstmkit-reference-used]"


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


# ----------------------------------------------------------------------------- sequences (PyTorch)
# torch's own clipping is off limits in the sequences notebook: while a run calls the student's code,
# these raise (and the sandbox flags the submission), wherever the student's code reaches them from.

OFF_LIMITS = ("clip_grad_norm_", "clip_grad_norm", "clip_grads_with_norm_", "get_total_norm")


@contextlib.contextmanager
def _off_limits(fn):
    import torch
    import torch.nn.utils.clip_grad as clip_module

    def refuse(name):
        def refused(*args, **kwargs):
            message = f"{MARKER} {name} is off limits in this notebook: write it yourself"
            for record in ON_MISUSE:
                record(message)
            raise AssertionError(message)

        return refused

    owners = [(torch.nn.utils, "torch.nn.utils", OFF_LIMITS),
              (clip_module, "torch.nn.utils.clip_grad", OFF_LIMITS), (torch, "torch", ("_foreach_norm",))]
    saved, originals = [], {}
    for owner, label, names in owners:
        for name in names:
            if hasattr(owner, name):
                originals.setdefault(id(getattr(owner, name)), f"{label}.{name}")
                saved.append((owner, name, getattr(owner, name)))
                setattr(owner, name, refuse(f"{label}.{name}"))
    namespace = _namespace(fn) or {}
    aliased = {k: v for k, v in namespace.items() if id(v) in originals}  # from torch.nn.utils import ...
    try:
        for k, v in aliased.items():
            namespace[k] = refuse(originals[id(v)])
        yield
    finally:
        for owner, name, value in saved:
            setattr(owner, name, value)
        namespace.update(aliased)


def _float(value):
    return float(np.asarray(value))


def clip_run(fn, inputs):
    """Two calls: gradients whose global norm is above max_norm, then the same scaled below it."""
    import torch

    max_norm = _float(inputs["max_norm"])
    out = {}
    for suffix, scale in (("", 1.0), ("_small", _float(inputs["small"]))):
        params = [torch.zeros(g.shape, dtype=torch.float64, requires_grad=True)
                  for g in inputs["grads"].values()]
        for p, g in zip(params, inputs["grads"].values(), strict=True):
            p.grad = torch.tensor(g * scale)
        params.insert(1, torch.zeros(2, dtype=torch.float64, requires_grad=True))  # .grad None: skipped
        with _off_limits(fn):
            norm = _call("clip_grad_norm(params, max_norm)", fn, iter(params), max_norm)
        grads = [p.grad for p in params if p.grad is not None]
        out["norm" + suffix] = norm
        out["grads" + suffix] = dict(zip(inputs["grads"], grads, strict=True)) if len(grads) == len(
            inputs["grads"]) else None
    return out


def _tiny_lm(params):
    """The small character model of the truncated-BPTT check (the notebook's CharModel, float64)."""
    import torch
    from torch import nn

    V, E = params["emb.weight"].shape
    H = params["rnn.weight_hh_l0"].shape[1]

    class TinyLM(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb, self.rnn, self.head = nn.Embedding(V, E), nn.LSTM(E, H), nn.Linear(H, V)
            self.calls = []  # per forward call: whether the state it got is attached to an earlier graph

        def forward(self, idx, state=None):
            attached = state is not None and any(getattr(s, "requires_grad", False) for s in _flat(state))
            self.calls.append(attached)
            hs, state = self.rnn(self.emb(idx), state)
            return self.head(hs), state

    model = TinyLM().double()
    model.load_state_dict({k: torch.tensor(v) for k, v in params.items()})
    return model


def _flat(state):
    return [s for part in (state if isinstance(state, (tuple, list)) else [state])
            for s in (_flat(part) if isinstance(part, (tuple, list)) else [part])]


NOT_DETACHED = ("the state carried into chunk {j} is still attached to the graph of chunk {i}: detach it "
                "between chunks (state = tuple(s.detach() for s in state)), so that backward stops at the "
                "chunk boundary")


def tbptt_run(fn, inputs):
    import torch

    model = _tiny_lm(inputs["params"])
    opt = torch.optim.SGD(model.parameters(), lr=_float(inputs["lr"]))
    xs, ys = torch.tensor(inputs["xs"]), torch.tensor(inputs["ys"])
    state = (torch.tensor(inputs["h0"]), torch.tensor(inputs["c0"]))
    args = (model, xs, ys, int(inputs["k"]), opt, _float(inputs["max_norm"]), state)
    try:
        with _off_limits(fn):
            result = _call("train_tbptt", fn, *args)
    except RuntimeError as e:
        j = next((j for j, a in enumerate(model.calls) if a), None)
        if j is not None:
            said = f" (PyTorch said: {str(e)[:120]})"
            raise AssertionError(NOT_DETACHED.format(j=j + 1, i=j) + said) from None
        raise
    losses, final = _pair("train_tbptt(...)", result, ("losses", "state"))
    h_n, c_n = _pair("the final state", final, ("h", "c"))
    return {"losses": np.array([float(v) for v in losses]), "h_n": h_n, "c_n": c_n,
            "final_attached": float(any(getattr(s, "requires_grad", False) for s in (h_n, c_n))),
            "attached": np.array(model.calls, dtype=np.float64),
            "params": {k: v.detach() for k, v in model.state_dict().items()}}


def masked_loss_run(fn, inputs):
    import torch

    logits = torch.tensor(inputs["logits"], requires_grad=True)
    loss = _call("masked_cross_entropy", fn, logits, torch.tensor(inputs["targets"]),
                 torch.tensor(inputs["lengths"]))
    if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
        raise AssertionError(f"masked_cross_entropy should return a 0-dim tensor; got {type(loss).__name__}"
                             + (f" of shape {tuple(loss.shape)}" if isinstance(loss, torch.Tensor) else ""))
    if not loss.requires_grad:
        raise AssertionError("the loss does not depend on the logits through autograd: compute it with "
                             "torch operations (no .item(), .numpy() or .detach())")
    loss.reshape(()).backward()
    return {"loss": loss.detach().reshape(()), "dlogits": logits.grad}


def sampling_run(fn, inputs):
    import torch

    generator = torch.Generator().manual_seed(int(inputs["seed"]))
    logits, temperature = torch.tensor(inputs["logits"]), _float(inputs["temperature"])
    result = _call("sample_next", fn, logits, temperature, generator)
    probs, ids = _pair("sample_next(logits, temperature, generator)", result, ("probs", "ids"))
    return {"probs": probs, "ids": ids}


def _state_arrays(model, what):
    if not hasattr(model, "state_dict"):
        raise AssertionError(f"{what} should be a trained CharModel; got {type(model).__name__}")
    return {k: v.detach() for k, v in model.state_dict().items()}


_TRAINED = {}  # (train_models, with the grader's functions in place) -> its weights: train once per part


def echo_run(fn, inputs):
    """Train with the student's train_models() (once; every call of the part evaluates the same weights
    on another validation text) and return the weights."""
    key = (fn, bool(_ACTIVE))
    if key not in _TRAINED:
        with _off_limits(fn):
            models = _call("train_models()", fn)
        if not (isinstance(models, dict) and set(models) == {"lstm", "rnn"}):
            raise AssertionError("train_models() should return {'lstm': your LSTM model, 'rnn': your RNN "
                                 "model}")
        _TRAINED.clear()
        _TRAINED[key] = {k: _state_arrays(m, f"train_models()['{k}']") for k, m in models.items()}
    return {k: dict(v) for k, v in _TRAINED[key].items()}


# ----------------------------------------------------------------------------- substitutes
# A later part that calls an earlier student function (cell_forward calls gate_activations) is run a
# second time with these in place of the earlier functions, so that one mistake costs one part. They
# answer only while `substituted` is active; any other use is refused (and flagged by the sandbox).

_ACTIVE = []
ON_MISUSE = []  # the sandbox appends a function that records the misuse


def _sigmoid(z):  # as lstmkit.reference.sigmoid: no overflow for any finite z
    return (1 + np.tanh(np.asarray(z, dtype=np.float64) / 2)) / 2


def _gate_preactivations(x, h_prev, params):
    p = params
    return x @ p["weight_ih"].T + p["bias_ih"] + h_prev @ p["weight_hh"].T + p["bias_hh"]


def _gate_activations(a):
    H = a.shape[1] // 4
    return _sigmoid(a[:, :H]), _sigmoid(a[:, H:2 * H]), np.tanh(a[:, 2 * H:3 * H]), _sigmoid(a[:, 3 * H:])


def _cell_backward(dstate, cache):
    dh, dc = dstate
    i, f, g, o, tanh_c, p = (cache[k] for k in ("i", "f", "g", "o", "tanh_c", "params"))
    dc = dc + dh * o * (1 - tanh_c**2)
    da = np.concatenate([dc * g * i * (1 - i), dc * cache["c_prev"] * f * (1 - f), dc * i * (1 - g**2),
                         dh * tanh_c * o * (1 - o)], axis=1)
    grads = {"weight_ih": da.T @ cache["x"], "weight_hh": da.T @ cache["h_prev"],
             "bias_ih": da.sum(axis=0), "bias_hh": da.sum(axis=0)}
    return da @ p["weight_ih"], (da @ p["weight_hh"], dc * f), grads


def _lstm_step(x, h_prev, c_prev, weight_ih, weight_hh, bias_ih, bias_hh):  # the pytorch notebook's
    import torch

    a_i, a_f, a_g, a_o = (x @ weight_ih.T + bias_ih + h_prev @ weight_hh.T + bias_hh).chunk(4, dim=-1)
    c = torch.sigmoid(a_f) * c_prev + torch.sigmoid(a_i) * torch.tanh(a_g)
    return torch.sigmoid(a_o) * torch.tanh(c), c


def _clip_grad_norm(params, max_norm):  # the sequences notebook's
    import torch

    grads = [p.grad for p in params if p.grad is not None]
    norm = torch.sqrt(sum((g.detach() ** 2).sum() for g in grads)) if grads else torch.tensor(0.0)
    if max_norm / (norm + 1e-6) < 1:
        for g in grads:
            g.mul_(max_norm / (norm + 1e-6))
    return norm


def _train_tbptt(model, xs, ys, k, optimizer, max_norm, state=None):  # the sequences notebook's
    import torch.nn.functional as F

    losses = []
    state = _detach(state)
    for t in range(0, xs.shape[0], k):
        logits, state = model(xs[t:t + k], state)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), ys[t:t + k].reshape(-1))
        optimizer.zero_grad()
        loss.backward()
        _clip_grad_norm(model.parameters(), max_norm)
        optimizer.step()
        losses.append(loss.item())
        state = _detach(state)
    return losses, state


def _detach(state):
    if state is None or hasattr(state, "detach"):
        return None if state is None else state.detach()
    return tuple(_detach(s) for s in state)


def _guarded(name, fn):
    def substitute(*args, **kwargs):
        if not _ACTIVE:
            message = f"{MARKER} {name} comes from the grader: write it yourself"
            for record in ON_MISUSE:
                record(message)
            raise AssertionError(message)
        return fn(*args, **kwargs)

    substitute.__name__ = name
    return substitute


SUBSTITUTES = {name: _guarded(name, fn) for name, fn in (
    ("sigmoid", _sigmoid), ("gate_preactivations", _gate_preactivations),
    ("gate_activations", _gate_activations), ("cell_backward", _cell_backward), ("lstm_step", _lstm_step),
    ("clip_grad_norm", _clip_grad_norm), ("train_tbptt", _train_tbptt))}


def _namespace(fn):
    """The global namespace the student's function (or the methods of the student's class) reads."""
    if hasattr(fn, "__globals__"):
        return fn.__globals__
    for value in vars(fn).values() if isinstance(fn, type) else ():
        if hasattr(value, "__globals__"):
            return value.__globals__
    return None


@contextlib.contextmanager
def substituted(fn, names):
    """Run `fn` with the grader's versions of `names` in its namespace (restored afterwards)."""
    namespace = _namespace(fn)
    missing = object()
    saved = {n: namespace.get(n, missing) for n in names} if namespace is not None else {}
    try:
        for n in saved:
            namespace[n] = SUBSTITUTES[n]
        _ACTIVE.append(True)
        yield
    finally:
        _ACTIVE.clear()
        for n, value in saved.items():
            if value is missing:
                namespace.pop(n, None)
            else:
                namespace[n] = value


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
    "clip_grad_norm": clip_run,
    "train_tbptt": tbptt_run,
    "masked_cross_entropy": masked_loss_run,
    "sample_next": sampling_run,
    "echo_training": echo_run,
}
