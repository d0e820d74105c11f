"""Tests of lstmkit.convert for one layer: reference params <-> torch.nn.LSTM / nn.LSTMCell."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lstmkit import reference as ref
from lstmkit.convert import from_torch, to_torch


def torch_module(kind, D, H, bias=True):
    torch.manual_seed(0)
    if kind == "lstm":
        return torch.nn.LSTM(D, H, bias=bias).double()
    return torch.nn.LSTMCell(D, H, bias=bias).double()


def module_params(module):
    """The module's own tensors as numpy, keyed like its state_dict."""
    return {k: v.detach().numpy().copy() for k, v in module.state_dict().items()}


def run_module(module, xs, state):
    """Outputs of the module on xs (T, B, D) from state (h0, c0), both as numpy."""
    h0, c0 = (torch.tensor(s) for s in state)
    x = torch.tensor(xs)
    with torch.no_grad():
        if isinstance(module, torch.nn.LSTMCell):
            hs = []
            for t in range(x.shape[0]):
                h0, c0 = module(x[t], (h0, c0))
                hs.append(h0)
            return torch.stack(hs).numpy()
        out, _ = module(x, (h0[None], c0[None]))
        return out.numpy()


@pytest.mark.parametrize("kind", ["lstm", "cell"])
@pytest.mark.parametrize("D,H", [(1, 1), (3, 5), (6, 2)])
def test_from_torch_then_to_torch_round_trip(kind, D, H):
    module = torch_module(kind, D, H)
    before = module_params(module)
    params = from_torch(module)
    assert {k: v.shape for k, v in params.items()} == {
        "weight_ih": (4 * H, D), "weight_hh": (4 * H, H), "bias_ih": (4 * H,), "bias_hh": (4 * H,)}
    assert all(v.dtype == np.float64 for v in params.values())

    other = torch_module(kind, D, H)
    with torch.no_grad():
        for p in other.parameters():
            p.zero_()
    tensors = to_torch(params, other)
    assert sorted(tensors) == sorted(before)
    after = module_params(other)
    for k in before:
        np.testing.assert_array_equal(after[k], before[k])


@pytest.mark.parametrize("kind", ["lstm", "cell"])
def test_to_torch_then_from_torch_round_trip_and_same_outputs(kind):
    D, H, T, B = 4, 3, 5, 2
    rng = np.random.default_rng(1)
    params = ref.init_params(D, H, rng=rng)
    module = torch_module(kind, D, H)
    to_torch(params, module)
    back = from_torch(module)
    for k in ref.PARAM_NAMES:
        np.testing.assert_array_equal(back[k], params[k])
        assert back[k] is not params[k]

    xs = rng.standard_normal((T, B, D))
    state = (rng.standard_normal((B, H)), rng.standard_normal((B, H)))
    hs, _, _ = ref.forward(xs, state, params)
    np.testing.assert_allclose(run_module(module, xs, state), hs, rtol=1e-12, atol=1e-14)


def test_from_torch_accepts_a_state_dict_and_casts_dtype():
    module = torch_module("lstm", 3, 4)
    from_module = from_torch(module)
    from_sd = from_torch(module.state_dict(), dtype=np.float32)
    for k in ref.PARAM_NAMES:
        assert from_sd[k].dtype == np.float32
        np.testing.assert_allclose(from_sd[k], from_module[k].astype(np.float32))


def test_from_torch_keeps_float32():
    module = torch.nn.LSTM(2, 3)  # float32 by default
    params = from_torch(module)
    assert all(v.dtype == np.float32 for v in params.values())


def test_to_torch_without_module_gives_cell_style_keys():
    params = ref.init_params(2, 3, rng=0)
    tensors = to_torch(params)
    assert sorted(tensors) == sorted(ref.PARAM_NAMES)
    for k, v in tensors.items():
        assert isinstance(v, torch.Tensor) and v.dtype == torch.float64
        np.testing.assert_array_equal(v.numpy(), params[k])
    # the tensors are copies: changing them leaves params alone
    tensors["weight_ih"].zero_()
    assert np.any(params["weight_ih"] != 0)
    # and they load into an nn.LSTMCell as its state_dict
    cell = torch.nn.LSTMCell(2, 3).double()
    cell.load_state_dict(tensors)
    np.testing.assert_array_equal(cell.weight_hh.detach().numpy(), params["weight_hh"])


@pytest.mark.parametrize("kind", ["lstm", "cell"])
def test_bias_false_modules(kind):
    D, H = 3, 4
    module = torch_module(kind, D, H, bias=False)
    params = from_torch(module)
    assert set(params) == set(ref.PARAM_NAMES)
    assert not params["bias_ih"].any() and not params["bias_hh"].any()
    assert params["bias_ih"].shape == (4 * H,)

    # the reference with zero biases computes what the bias-free module computes
    rng = np.random.default_rng(2)
    xs = rng.standard_normal((4, 2, D))
    state = (rng.standard_normal((2, H)), rng.standard_normal((2, H)))
    hs, _, _ = ref.forward(xs, state, params)
    np.testing.assert_allclose(run_module(module, xs, state), hs, rtol=1e-12, atol=1e-14)

    # zero biases load into a bias-free module; non-zero ones cannot and are refused
    new = ref.init_params(D, H, rng=3)
    new["bias_ih"][:] = 0
    new["bias_hh"][:] = 0
    to_torch(new, module)
    after = from_torch(module)
    for k in ref.PARAM_NAMES:
        np.testing.assert_array_equal(after[k], new[k])
    with pytest.raises(KeyError, match="bias"):
        to_torch(ref.init_params(D, H, rng=4), module)


def test_to_torch_rejects_mismatched_shapes():
    module = torch_module("lstm", 3, 4)
    with pytest.raises(ValueError, match=r"weight_ih_l0' has shape \(16, 3\); params give \(20, 3\)"):
        to_torch(ref.init_params(3, 5, rng=0), module)
    with pytest.raises(ValueError, match=r"params\['weight_hh'\] must have shape"):
        to_torch({**ref.init_params(3, 4, rng=0), "weight_hh": np.zeros((16, 5))}, module)


def test_from_torch_errors():
    module = torch_module("lstm", 3, 4)
    with pytest.raises(KeyError, match="weight_ih_l1"):
        from_torch(module, layer=1)
    with pytest.raises(KeyError, match="weight_ih_l0_reverse"):
        from_torch(module, direction=1)
    with pytest.raises(ValueError, match="proj_size"):
        from_torch(torch.nn.LSTM(3, 4, proj_size=2))
