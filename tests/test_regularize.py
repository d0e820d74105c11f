"""lstmkit.regularize: each regulariser against a direct computation, its eval-mode behaviour,
gradients, and errors."""

import pytest
import torch
from torch import nn

from lstmkit import regularize as reg
from lstmkit.regularize import RegLM, RegularizedLSTM
from lstmkit.torch import LSTM

torch.set_num_threads(1)
T, B, D, H = 5, 3, 4, 6


def lstm_step(x, h, c, w_ih, w_hh, b):
    """The book's equations, one step, written out (gate order i, f, g, o)."""
    a = x @ w_ih.T + h @ w_hh.T + b
    i, f, g, o = torch.sigmoid(a[:, :H]), torch.sigmoid(a[:, H:2 * H]), torch.tanh(a[:, 2 * H:3 * H]), \
        torch.sigmoid(a[:, 3 * H:])
    c_new = f * c + i * g
    return o * torch.tanh(c_new), c_new, o


def layer(seed=0, **kw):
    torch.manual_seed(seed)
    return RegularizedLSTM(D, H, **kw).double()


def inputs(seed=1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(T, B, D, generator=g, dtype=torch.float64)
    h0 = torch.randn(1, B, H, generator=g, dtype=torch.float64)
    c0 = torch.randn(1, B, H, generator=g, dtype=torch.float64)
    return x, (h0, c0)


def params(m):
    return m.weight_ih, m.weight_hh, m.bias_ih + m.bias_hh


def test_plain_layer_equals_nn_lstm_in_both_implementations():
    x, state = inputs()
    for impl in ("auto", "loop"):
        m = layer(impl=impl)
        ref = nn.LSTM(D, H).double()
        with torch.no_grad():
            for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                getattr(ref, n + "_l0").copy_(getattr(m, n))
        y, (h, c) = m(x, state)
        y_ref, (h_ref, c_ref) = ref(x, state)
        torch.testing.assert_close(y, y_ref)
        torch.testing.assert_close(h, h_ref)
        torch.testing.assert_close(c, c_ref)


def test_dropout_mask_values_and_rate():
    torch.manual_seed(0)
    m = reg.dropout_mask((400, 500), 0.3)
    assert torch.all((m == 0) | torch.isclose(m, torch.tensor(1 / 0.7)))
    assert abs((m == 0).double().mean().item() - 0.3) < 0.01
    assert abs(m.mean().item() - 1) < 0.01
    with pytest.raises(ValueError, match=r"p must be a number in \[0, 1\)"):
        reg.dropout_mask((2,), 1.0)


@pytest.mark.parametrize("cls", [LSTM, nn.LSTM])
def test_stacked_dropout_forward_is_what_the_dropout_argument_does(cls):
    torch.manual_seed(0)
    lstm = cls(D, H, num_layers=3, dropout=0.4).double()
    x, _ = inputs()
    torch.manual_seed(7)
    y, (h, c) = lstm(x)
    torch.manual_seed(7)
    y2, (h2, c2) = reg.stacked_dropout_forward(lstm, x)
    torch.testing.assert_close(y2, y)
    torch.testing.assert_close(h2, h)
    torch.testing.assert_close(c2, c)
    # and the dropout really is applied between layers (train differs from eval), never after the last
    lstm.eval()
    y_eval, _ = lstm(x)
    assert not torch.allclose(y, y_eval)
    torch.testing.assert_close(reg.stacked_dropout_forward(lstm, x)[0], y_eval)


def test_locked_dropout_one_mask_per_sequence():
    torch.manual_seed(0)
    x = torch.ones(50, 8, 10)
    y = reg.locked_dropout(x, 0.5)
    assert torch.equal(y, y[:1].expand_as(y))                # the same mask at every step
    assert not torch.equal(y[:, 0], y[:, 1])                  # different sequences, different masks
    assert torch.equal(reg.locked_dropout(x, 0.5, training=False), x)


def test_variational_masks_equal_the_formula_and_are_constant_over_time():
    x, state = inputs()
    m = layer(dropout_x=0.3, dropout_h=0.4)
    g = torch.Generator().manual_seed(3)
    m_x = reg.dropout_mask((B, D), 0.3, generator=g).double()
    m_h = reg.dropout_mask((B, H), 0.4, generator=g).double()
    y, (h_T, c_T) = m(x, state, masks={"x": m_x, "h": m_h})
    w_ih, w_hh, b = params(m)
    h, c = state[0][0], state[1][0]
    for t in range(T):
        h, c, _ = lstm_step(x[t] * m_x, h * m_h, c, w_ih, w_hh, b)     # the same masks every step
        torch.testing.assert_close(y[t], h)
    torch.testing.assert_close(c_T[0], c)
    # sampled masks: a zero of m_x removes input unit d from every step of that sequence
    torch.manual_seed(5)
    masks = m._masks(x, None)
    assert masks["x"].shape == (B, D) and masks["h"].shape == (B, H)
    # eval: the identity
    m.eval()
    torch.testing.assert_close(m(x, state)[0], layer()(x, state)[0])


def test_zoneout_with_a_fixed_mask_equals_the_formula():
    x, state = inputs()
    m = layer(zoneout_c=0.5, zoneout_h=0.1)
    g = torch.Generator().manual_seed(4)
    d_c = (torch.rand(T, B, H, generator=g) < 0.5).double()
    d_h = (torch.rand(T, B, H, generator=g) < 0.1).double()
    y, (h_T, c_T) = m(x, state, masks={"c_zone": d_c, "h_zone": d_h})
    w_ih, w_hh, b = params(m)
    h, c = state[0][0], state[1][0]
    for t in range(T):
        h_new, c_new, _ = lstm_step(x[t], h, c, w_ih, w_hh, b)
        c = torch.where(d_c[t] == 1, c, c_new)          # a zoned unit keeps its previous value
        h = torch.where(d_h[t] == 1, h, h_new)
        torch.testing.assert_close(y[t], h)
    torch.testing.assert_close(c_T[0], c)


def test_zoneout_in_eval_mode_uses_the_expectation():
    x, state = inputs()
    m = layer(zoneout_c=0.3, zoneout_h=0.2).eval()
    y, _ = m(x, state)
    w_ih, w_hh, b = params(m)
    h, c = state[0][0], state[1][0]
    for t in range(T):
        h_new, c_new, _ = lstm_step(x[t], h, c, w_ih, w_hh, b)
        c = 0.3 * c + 0.7 * c_new
        h = 0.2 * h + 0.8 * h_new
        torch.testing.assert_close(y[t], h)
    # zoneout with a mask of all zeros is the plain LSTM; all ones freezes the state
    zeros, ones = torch.zeros(T, B, H, dtype=torch.float64), torch.ones(T, B, H, dtype=torch.float64)
    m.train()
    torch.testing.assert_close(m(x, state, masks={"c_zone": zeros, "h_zone": zeros})[0], layer()(x, state)[0])
    y1, (h1, c1) = m(x, state, masks={"c_zone": ones, "h_zone": ones})
    torch.testing.assert_close(c1, state[1])
    torch.testing.assert_close(y1, state[0].expand(T, B, H))


def test_dropconnect_with_a_fixed_mask_equals_an_lstm_with_masked_weights():
    x, state = inputs()
    m = layer(weight_drop=0.5)
    g = torch.Generator().manual_seed(2)
    M = reg.dropout_mask((4 * H, H), 0.5, generator=g).double()
    y, (h, c) = m(x, state, masks={"w": M})
    ref = nn.LSTM(D, H).double()
    with torch.no_grad():
        ref.weight_ih_l0.copy_(m.weight_ih)
        ref.weight_hh_l0.copy_(m.weight_hh * M)
        ref.bias_ih_l0.copy_(m.bias_ih)
        ref.bias_hh_l0.copy_(m.bias_hh)
    y_ref, (h_ref, c_ref) = ref(x, state)
    torch.testing.assert_close(y, y_ref)
    torch.testing.assert_close(c, c_ref)
    # the gradient reaches weight_hh through the mask: zero where a weight was dropped
    y.sum().backward()
    assert torch.all(m.weight_hh.grad[M == 0] == 0) and m.weight_hh.grad[M > 0].abs().sum() > 0
    # training draws a mask; eval is the identity
    torch.manual_seed(0)
    assert not torch.allclose(m(x, state)[0], layer()(x, state)[0])
    m.eval()
    torch.testing.assert_close(m(x, state)[0], layer()(x, state)[0])


def test_layer_norm_cell_against_a_hand_loop():
    x, state = inputs()
    m = layer(layer_norm=True)
    with torch.no_grad():                       # non-trivial gains and shift
        for p in (m.ln_ih_weight, m.ln_hh_weight, m.ln_c_weight, m.ln_c_bias):
            p.add_(0.3 * torch.randn_like(p))
    y, (h_T, c_T) = m(x, state)

    def norm(v, gain, shift=0.0, eps=1e-5):
        mu = v.mean(-1, keepdim=True)
        var = ((v - mu) ** 2).mean(-1, keepdim=True)
        return gain * (v - mu) / torch.sqrt(var + eps) + shift

    h, c = state[0][0], state[1][0]
    for t in range(T):
        a = norm(x[t] @ m.weight_ih.T, m.ln_ih_weight) + norm(h @ m.weight_hh.T, m.ln_hh_weight) \
            + m.bias_ih + m.bias_hh
        i, f, g, o = (a[:, k * H:(k + 1) * H] for k in range(4))
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(norm(c, m.ln_c_weight, m.ln_c_bias))
        torch.testing.assert_close(y[t], h)
    torch.testing.assert_close(c_T[0], c)
    # deterministic: eval mode changes nothing
    m.eval()
    torch.testing.assert_close(m(x, state)[0], y)


def test_orthogonal_init_gives_orthogonal_gate_blocks():
    torch.manual_seed(0)
    m = RegularizedLSTM(D, 16, orthogonal=True)
    for k in range(4):
        Q = m.weight_hh[k * 16:(k + 1) * 16].detach()
        torch.testing.assert_close(Q.T @ Q, torch.eye(16), atol=1e-5, rtol=0)
    assert not torch.allclose(m.weight_hh[:16], m.weight_hh[16:32])     # four different blocks
    Q = RegularizedLSTM(D, 16).weight_hh[:16].detach()                   # the default is not orthogonal
    assert (Q.T @ Q - torch.eye(16)).abs().max() > 0.1
    with pytest.raises(ValueError, match=r"\(4H, H\)"):
        reg.orthogonal_recurrent_(torch.zeros(10, 3))


def test_gradients_of_every_regulariser_against_finite_differences():
    x, state = inputs()
    g = torch.Generator().manual_seed(9)
    masks = {"x": reg.dropout_mask((B, D), 0.2, generator=g).double(),
             "h": reg.dropout_mask((B, H), 0.2, generator=g).double(),
             "w": reg.dropout_mask((4 * H, H), 0.2, generator=g).double(),
             "c_zone": (torch.rand(T, B, H, generator=g) < 0.3).double(),
             "h_zone": (torch.rand(T, B, H, generator=g) < 0.3).double()}
    m = layer(dropout_x=0.2, dropout_h=0.2, weight_drop=0.2, zoneout_c=0.3, zoneout_h=0.3, layer_norm=True)
    names = [n for n, _ in m.named_parameters()]

    def f(x, *ps):
        out = torch.func.functional_call(m, dict(zip(names, ps, strict=True)), (x, state), {"masks": masks})
        return out[0]

    ps = [p.detach().requires_grad_() for p in m.parameters()]
    assert torch.autograd.gradcheck(f, (x.requires_grad_(), *ps))


def test_training_mode_is_random_and_eval_mode_is_deterministic():
    x, state = inputs()
    m = layer(dropout_x=0.3, dropout_h=0.3, zoneout_c=0.3, zoneout_h=0.3, weight_drop=0.3)
    torch.manual_seed(0)
    a = m(x, state)[0]
    b = m(x, state)[0]
    assert not torch.allclose(a, b)
    m.eval()
    torch.testing.assert_close(m(x, state)[0], m(x, state)[0])


def test_errors():
    with pytest.raises(ValueError, match=r"zoneout_c must be a number in \[0, 1\)"):
        RegularizedLSTM(D, H, zoneout_c=1.5)
    with pytest.raises(ValueError, match=r"expected x of shape \(T, B, D=4\)"):
        RegularizedLSTM(D, H)(torch.zeros(T, B, 5))
    with pytest.raises(ValueError, match=r"h0 and c0 of shape \(1, 3, 6\)"):
        RegularizedLSTM(D, H)(torch.zeros(T, B, D), (torch.zeros(B, H), torch.zeros(B, H)))
    with pytest.raises(ValueError, match="impl"):
        RegularizedLSTM(D, H, impl="fast")


def test_reglm_shapes_forget_bias_and_dropout_modes():
    torch.manual_seed(0)
    model = RegLM(11, 5, 7, dropout=0.5, locked=True, forget_bias=1.0)
    torch.manual_seed(0)
    plain = RegLM(11, 5, 7, dropout=0.5, locked=True)
    # lstmkit's convention: forget_bias added to bias_ih's forget block, nothing else changed
    torch.testing.assert_close(model.lstm.bias_ih - plain.lstm.bias_ih,
                               torch.cat([torch.zeros(7), torch.ones(7), torch.zeros(14)]))
    torch.testing.assert_close(model.lstm.bias_hh, plain.lstm.bias_hh)
    idx = torch.randint(0, 11, (6, 3))
    logits, (h, c) = model(idx)
    assert logits.shape == (6, 3, 11) and h.shape == c.shape == (1, 3, 7)
    model.eval()
    first, state = model(idx[:2])                       # eval: deterministic, state carries over
    second, _ = model(idx[2:], state)
    torch.testing.assert_close(torch.cat([first, second]), model(idx)[0])
    with pytest.raises(ValueError, match=r"\(T, B\) int64"):
        model(idx.float())
    # standard dropout draws a fresh mask at every step; locked dropout one per sequence
    e = torch.ones(40, 2, 5)
    y = RegLM(11, 5, 7, dropout=0.5).train()._drop(e)
    assert not torch.equal(y, y[:1].expand_as(y))
    y = RegLM(11, 5, 7, dropout=0.5, locked=True).train()._drop(e)
    assert torch.equal(y, y[:1].expand_as(y))
