"""The NumPy tanh RNN against torch.nn.RNN, and gradient norms by time lag."""

import numpy as np
import pytest
import torch

from lstmkit import reference as ref
from lstmkit.gradcheck import numerical_gradient, rel_error
from lstmkit.rnn import (
    gradient_norm_by_lag,
    init_rnn_params,
    rnn_backward,
    rnn_forward,
    scaled_recurrent_weights,
)

T, B, D, H = 7, 3, 4, 5


def _torch_rnn(params):
    rnn = torch.nn.RNN(D, H, nonlinearity="tanh").double()
    with torch.no_grad():
        for name, value in params.items():
            getattr(rnn, f"{name}_l0").copy_(torch.from_numpy(value))
    return rnn


def test_init_shapes_like_torch():
    params = init_rnn_params(D, H, rng=0)
    torch_shapes = {k[:-3]: tuple(v.shape) for k, v in torch.nn.RNN(D, H).state_dict().items()}
    assert {k: v.shape for k, v in params.items()} == torch_shapes
    k = 1 / np.sqrt(H)
    assert all(np.abs(v).max() <= k for v in params.values())


def test_forward_backward_match_torch():
    rng = np.random.default_rng(0)
    params = init_rnn_params(D, H, rng=rng)
    xs = rng.standard_normal((T, B, D))
    h0 = rng.standard_normal((B, H))
    dhs = rng.standard_normal((T, B, H))
    dh_T = rng.standard_normal((B, H))

    hs, h_T, cache = rnn_forward(xs, h0, params)
    dxs, dh0, grads = rnn_backward(dhs, dh_T, cache)

    rnn = _torch_rnn(params)
    xs_t = torch.tensor(xs, requires_grad=True)
    h0_t = torch.tensor(h0[None], requires_grad=True)
    hs_t, h_T_t = rnn(xs_t, h0_t)
    ((hs_t * torch.from_numpy(dhs)).sum() + (h_T_t[0] * torch.from_numpy(dh_T)).sum()).backward()

    assert np.max(np.abs(hs - hs_t.detach().numpy())) < 1e-10
    assert np.max(np.abs(h_T - h_T_t[0].detach().numpy())) < 1e-10
    assert np.max(np.abs(dxs - xs_t.grad.numpy())) < 1e-10
    assert np.max(np.abs(dh0 - h0_t.grad[0].numpy())) < 1e-10
    for name in params:
        assert np.max(np.abs(grads[name] - getattr(rnn, f"{name}_l0").grad.numpy())) < 1e-10, name


def test_backward_matches_finite_differences():
    rng = np.random.default_rng(1)
    params = init_rnn_params(D, H, rng=rng)
    xs = rng.standard_normal((T, B, D))
    w = rng.standard_normal((T, B, H))

    def loss():
        return float(np.sum(rnn_forward(xs, None, params)[0] * w))

    _, _, cache = rnn_forward(xs, None, params)
    dxs, _, grads = rnn_backward(w, None, cache)
    assert rel_error(dxs, numerical_gradient(loss, xs)) < 1e-7
    assert rel_error(grads["weight_hh"], numerical_gradient(loss, params["weight_hh"])) < 1e-7


def test_bad_shapes_name_expected_and_given():
    params = init_rnn_params(D, H, rng=0)
    with pytest.raises(ValueError, match=r"xs must have shape \(T, B, D=4\); got \(7, 3, 2\)"):
        rnn_forward(np.zeros((T, B, 2)), None, params)
    with pytest.raises(ValueError, match=r"h0 must have shape"):
        rnn_forward(np.zeros((T, B, D)), np.zeros((B, H + 1)), params)
    bad = dict(params, weight_hh=np.zeros((H, H + 1)))
    with pytest.raises(ValueError, match=r"weight_hh'\] must have shape \(5, 5\)"):
        rnn_forward(np.zeros((T, B, D)), None, bad)


def test_scaled_recurrent_weights_spectral_radius():
    w = scaled_recurrent_weights(200, 1.5, rng=0)
    radius = np.max(np.abs(np.linalg.eigvals(w)))
    assert 1.3 < radius < 1.7


def test_rnn_gradient_vanishes_for_small_weights():
    norms = gradient_norm_by_lag("rnn", 60, scale=0.5, seed=0)
    assert norms.shape == (60,)
    assert norms[40:].max() < 1e-6 * norms[:3].max()
    # lag-by-lag: a decaying trend (averaged over windows of 10)
    windows = norms.reshape(6, 10).mean(axis=1)
    assert np.all(np.diff(windows) < 0)


def test_rnn_gradient_explodes_for_large_weights():
    # with the input weights zeroed the RNN stays near h=0, tanh' ~ 1, and W_hh alone sets the growth
    params = init_rnn_params(4, 32, rng=0)
    params["weight_ih"][:] = 0
    params["bias_ih"][:] = 0
    params["bias_hh"][:] = 0
    norms = gradient_norm_by_lag("rnn", 40, params=params, scale=1.5, wrt="h", seed=0)
    assert norms[0] == pytest.approx(1.0)
    assert norms[-1] > 1e4


def test_gradient_norm_by_lag_h_matches_full_backward_for_lstm():
    # lag T-1 for wrt='h' is dL/dh_1; check it against reference.backward on the sequence xs[1:]
    # starting from state (h_1, c_1): the total gradient w.r.t. that initial state.
    Tn, Bn, Dn, Hn = 6, 16, 4, 8
    params = ref.init_params(Dn, Hn, rng=3)
    norms = gradient_norm_by_lag("lstm", Tn, params=params, batch_size=Bn, wrt="h", seed=5)
    rng = np.random.default_rng(5)
    xs = rng.standard_normal((Tn, Bn, Dn))
    v = rng.standard_normal((Bn, Hn))
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    _, (h1, c1), cache1 = ref.forward(xs[:1], None, params)
    _, _, cache = ref.forward(xs[1:], (h1, c1), params)
    _, (dh1, dc1), _ = ref.backward(None, (v, None), cache)
    assert norms[0] == pytest.approx(1.0)
    assert norms[-1] == pytest.approx(np.linalg.norm(dh1, axis=1).mean(), rel=1e-12)
    # the total gradient w.r.t. c_1 also flows through h_1 = o_1 * tanh(c_1)
    dc1_total = dc1 + dh1 * cache1["o"][0] * (1 - cache1["tanh_c"][0] ** 2)
    c_norms = gradient_norm_by_lag("lstm", Tn, params=params, batch_size=Bn, wrt="c", seed=5)
    assert c_norms[-1] == pytest.approx(np.linalg.norm(dc1_total, axis=1).mean(), rel=1e-12)


def test_lstm_with_open_forget_gate_keeps_cell_gradient():
    # forget gate pinned open (large forget bias): the gradient reaching c_t stays of order one
    # over many steps, while the tanh RNN with torch's default init loses it
    params = ref.init_params(4, 16, rng=0, forget_bias=0.0)
    params["bias_ih"][16:32] = 20.0
    lstm = gradient_norm_by_lag("lstm", 100, params=params, wrt="c", seed=0)
    rnn = gradient_norm_by_lag("rnn", 100, hidden_size=16, wrt="h", seed=0)
    assert lstm[-1] > 0.5 * lstm[1]
    assert rnn[-1] < 1e-6 * rnn[0]


def test_gradient_norm_by_lag_rejects_bad_arguments():
    with pytest.raises(ValueError, match="kind must be"):
        gradient_norm_by_lag("gru", 5)
    with pytest.raises(ValueError, match="wrt must be"):
        gradient_norm_by_lag("rnn", 5, wrt="c")
