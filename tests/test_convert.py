"""lstmkit.convert: multi-layer / bidirectional torch conversion, Keras and CS231n layouts."""

import numpy as np
import pytest
import torch
from torch import nn

from lstmkit import reference
from lstmkit.convert import from_cs231n, from_keras, from_torch, to_cs231n, to_keras, to_torch
from lstmkit.torch import LSTM


def sigmoid(z):
    return 1 / (1 + np.exp(-z))


@pytest.mark.parametrize("cls", [nn.LSTM, LSTM])
def test_multilayer_bidirectional_from_torch_reproduces_forward(cls):
    """Running the reference layer by layer, direction by direction, with from_torch's params."""
    torch.manual_seed(0)
    mod = cls(3, 4, num_layers=2, bidirectional=True).double()
    xs = np.random.default_rng(0).standard_normal((5, 2, 3))
    want, (h_n, c_n) = mod(torch.from_numpy(xs))
    layer_in = xs
    for layer in range(2):
        outs = []
        for d in range(2):
            params = from_torch(mod, layer=layer, direction=d)
            x = layer_in if d == 0 else layer_in[::-1].copy()
            hs, (h, c), _ = reference.forward(x, None, params)
            outs.append(hs if d == 0 else hs[::-1])
            np.testing.assert_allclose(h, h_n[2 * layer + d].detach().numpy(), rtol=0, atol=1e-12)
            np.testing.assert_allclose(c, c_n[2 * layer + d].detach().numpy(), rtol=0, atol=1e-12)
        layer_in = np.concatenate(outs, axis=-1)
    np.testing.assert_allclose(layer_in, want.detach().numpy(), rtol=0, atol=1e-12)


def test_to_torch_fills_every_layer_and_direction():
    torch.manual_seed(0)
    src = nn.LSTM(3, 4, num_layers=2, bidirectional=True)
    dst = LSTM(3, 4, num_layers=2, bidirectional=True)
    for layer in range(2):
        for d in range(2):
            out = to_torch(from_torch(src, layer, d), dst, layer, d)
            assert all(k.endswith(f"_l{layer}{'_reverse' if d else ''}") for k in out)
    for (k1, a), (k2, b) in zip(src.state_dict().items(), dst.state_dict().items(), strict=True):
        assert k1 == k2 and torch.equal(a, b)


def random_params(rng, D=3, H=4):
    return reference.init_params(D, H, rng=rng)


def step_in_layout(x, h, c, w_in, w_rec, b, order):
    """One LSTM step written directly in a (D, 4H)-kernel layout whose gate blocks come in `order`."""
    z = dict(zip(order, np.split(x @ w_in + h @ w_rec + b, 4, axis=1), strict=True))
    c_next = sigmoid(z["f"]) * c + sigmoid(z["i"]) * np.tanh(z["g"])
    return sigmoid(z["o"]) * np.tanh(c_next), c_next


def assert_step_matches_reference(rng, p, w_in, w_rec, b, order):
    x, h, c = rng.standard_normal((2, 3)), rng.standard_normal((2, 4)), rng.standard_normal((2, 4))
    h_l, c_l = step_in_layout(x, h, c, w_in, w_rec, b, order)
    (h_r, c_r), _ = reference.cell_forward(x, (h, c), p)
    np.testing.assert_allclose(h_l, h_r, rtol=0, atol=1e-12)
    np.testing.assert_allclose(c_l, c_r, rtol=0, atol=1e-12)


def test_keras_layout_and_round_trip():
    rng = np.random.default_rng(1)
    p = random_params(rng)
    kernel, recurrent, bias = to_keras(p)
    assert kernel.shape == (3, 16) and recurrent.shape == (4, 16) and bias.shape == (16,)
    # a Keras step: z = x kernel + h recurrent_kernel + bias, gate blocks i, f, c (our g), o
    assert_step_matches_reference(rng, p, kernel, recurrent, bias, "ifgo")

    back = from_keras([kernel, recurrent, bias])
    np.testing.assert_array_equal(back["weight_ih"], p["weight_ih"])
    np.testing.assert_array_equal(back["weight_hh"], p["weight_hh"])
    np.testing.assert_array_equal(back["bias_ih"], p["bias_ih"] + p["bias_hh"])  # documented: summed
    np.testing.assert_array_equal(back["bias_hh"], np.zeros(16))
    again = to_keras(back)
    for a, b in zip(again, [kernel, recurrent, bias], strict=True):
        np.testing.assert_array_equal(a, b)   # keras -> ours -> keras is exact


def test_keras_without_bias():
    p = from_keras([np.ones((3, 8)), np.ones((2, 8))])
    np.testing.assert_array_equal(p["bias_ih"], np.zeros(8))
    with pytest.raises(ValueError, match="recurrent_kernel"):
        from_keras([np.ones((3, 8)), np.ones((2, 7)), np.ones(8)])


def test_cs231n_layout_and_round_trip():
    rng = np.random.default_rng(2)
    p = random_params(rng)
    Wx, Wh, b = to_cs231n(p)
    assert Wx.shape == (3, 16) and Wh.shape == (4, 16) and b.shape == (16,)
    # the CS231n lstm_step_forward: a = x Wx + h Wh + b, gate blocks i, f, o, g
    assert_step_matches_reference(rng, p, Wx, Wh, b, "ifog")

    back = from_cs231n(Wx, Wh, b)
    np.testing.assert_array_equal(back["weight_ih"], p["weight_ih"])
    np.testing.assert_array_equal(back["weight_hh"], p["weight_hh"])
    np.testing.assert_array_equal(back["bias_ih"], p["bias_ih"] + p["bias_hh"])
    np.testing.assert_array_equal(back["bias_hh"], np.zeros(16))
    for u, v in zip(to_cs231n(back), (Wx, Wh, b), strict=True):
        np.testing.assert_array_equal(u, v)
    with pytest.raises(ValueError, match="Wx"):
        from_cs231n(Wx[:, :8], Wh, b)
