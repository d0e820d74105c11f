"""Tests of the NumPy reference LSTM (lstmkit.reference): agreement with torch.nn.LSTM and
nn.LSTMCell in float64, finite-difference gradient checks, shape and input-error contracts,
dtypes, numerical stability and the memory use of the cache."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lstmkit import reference as ref
from lstmkit.convert import to_torch
from lstmkit.gradcheck import gradcheck

# (T, B, D, H): the edge cases B=1, T=1, H=1 and a few ordinary shapes.
SHAPES = [(1, 1, 1, 1), (1, 3, 2, 4), (4, 1, 3, 2), (3, 2, 5, 1), (5, 4, 3, 6), (7, 3, 8, 5)]


def assert_close(a, b, tol=1e-10):
    a, b = np.asarray(a), np.asarray(b)
    assert a.shape == b.shape, f"shapes differ: {a.shape} vs {b.shape}"
    np.testing.assert_allclose(a, b, rtol=tol, atol=tol * 1e-2)


def random_case(T, B, D, H, seed=0, dtype=np.float64):
    """Random params, inputs, a non-zero initial state and upstream gradients."""
    rng = np.random.default_rng(seed)
    params = ref.init_params(D, H, rng=rng, dtype=dtype)
    params = {k: (v * 3).astype(dtype) for k, v in params.items()}  # larger weights: gates away from 0.5
    xs = rng.standard_normal((T, B, D)).astype(dtype)
    h0, c0 = (rng.standard_normal((B, H)).astype(dtype) for _ in range(2))
    dhs = rng.standard_normal((T, B, H)).astype(dtype)
    dh_T, dc_T = (rng.standard_normal((B, H)).astype(dtype) for _ in range(2))
    return params, xs, (h0, c0), dhs, (dh_T, dc_T)


# ----------------------------------------------------------------------------- against torch

@pytest.mark.parametrize("T,B,D,H", SHAPES)
@pytest.mark.parametrize("seed", [0, 1])
def test_sequence_matches_torch_lstm(T, B, D, H, seed):
    params, xs, (h0, c0), dhs, (dh_T, dc_T) = random_case(T, B, D, H, seed)
    hs, (h_T, c_T), cache = ref.forward(xs, (h0, c0), params)
    dxs, (dh0, dc0), grads = ref.backward(dhs, (dh_T, dc_T), cache)

    lstm = torch.nn.LSTM(D, H).double()
    to_torch(params, lstm)
    x_t = torch.tensor(xs, requires_grad=True)
    h0_t = torch.tensor(h0[None], requires_grad=True)
    c0_t = torch.tensor(c0[None], requires_grad=True)
    out, (hn, cn) = lstm(x_t, (h0_t, c0_t))
    loss = (out * torch.tensor(dhs)).sum() + (hn[0] * torch.tensor(dh_T)).sum() \
        + (cn[0] * torch.tensor(dc_T)).sum()
    loss.backward()

    assert_close(hs, out.detach().numpy())
    assert_close(h_T, hn[0].detach().numpy())
    assert_close(c_T, cn[0].detach().numpy())
    assert_close(dxs, x_t.grad.numpy())
    assert_close(dh0, h0_t.grad[0].numpy())
    assert_close(dc0, c0_t.grad[0].numpy())
    for name in ref.PARAM_NAMES:
        assert_close(grads[name], getattr(lstm, f"{name}_l0").grad.numpy())


@pytest.mark.parametrize("B,D,H", [(1, 1, 1), (1, 4, 3), (3, 2, 1), (5, 6, 4)])
def test_cell_matches_torch_lstmcell(B, D, H):
    params, xs, (h0, c0), dhs, (dh, dc) = random_case(1, B, D, H, seed=3)
    x = xs[0]
    (h, c), cache = ref.cell_forward(x, (h0, c0), params)
    dx, (dh_prev, dc_prev), grads = ref.cell_backward((dh, dc), cache)

    cell = torch.nn.LSTMCell(D, H).double()
    to_torch(params, cell)
    x_t, h0_t, c0_t = (torch.tensor(a, requires_grad=True) for a in (x, h0, c0))
    h_t, c_t = cell(x_t, (h0_t, c0_t))
    ((h_t * torch.tensor(dh)).sum() + (c_t * torch.tensor(dc)).sum()).backward()

    assert_close(h, h_t.detach().numpy())
    assert_close(c, c_t.detach().numpy())
    assert_close(dx, x_t.grad.numpy())
    assert_close(dh_prev, h0_t.grad.numpy())
    assert_close(dc_prev, c0_t.grad.numpy())
    for name in ref.PARAM_NAMES:
        assert_close(grads[name], getattr(cell, name).grad.numpy())


def test_forward_without_state_starts_from_zeros():
    params, xs, _, _, _ = random_case(3, 2, 4, 5)
    hs, (h_T, c_T), _ = ref.forward(xs, None, params)
    hs0, (h_T0, c_T0), _ = ref.forward(xs, ref.zero_state(2, 5), params)
    assert_close(hs, hs0)
    assert_close(h_T, h_T0)
    assert_close(c_T, c_T0)
    out, _ = to_torch_lstm(params)(torch.tensor(xs))
    assert_close(hs, out.detach().numpy())


def to_torch_lstm(params):
    H, D = params["weight_ih"].shape[0] // 4, params["weight_ih"].shape[1]
    lstm = torch.nn.LSTM(D, H).double()
    to_torch(params, lstm)
    return lstm


# ----------------------------------------------------------------------------- gradient checks

@pytest.mark.parametrize("T,B,D,H", [(1, 1, 1, 1), (3, 2, 4, 3), (2, 3, 2, 5), (4, 1, 3, 2)])
def test_gradcheck_float64(T, B, D, H):
    params, xs, state, _, _ = random_case(T, B, D, H, seed=T + B)
    errors = gradcheck(xs, state, params, seed=1)
    assert set(errors) == {"xs", "h0", "c0", *ref.PARAM_NAMES}
    assert max(errors.values()) <= 1e-7, errors


def test_gradcheck_detects_a_wrong_gradient(monkeypatch):
    """The check itself must be able to fail: break backward's dxs and expect a large error."""
    params, xs, state, _, _ = random_case(2, 2, 3, 2)
    real_backward = ref.backward

    def broken_backward(dhs, dstate_T, cache):
        dxs, dstate0, grads = real_backward(dhs, dstate_T, cache)
        return dxs * 1.01, dstate0, grads

    monkeypatch.setattr(ref, "backward", broken_backward)
    errors = gradcheck(xs, state, params)
    assert errors["xs"] > 1e-4
    assert errors["weight_ih"] <= 1e-7


def test_sequence_backward_equals_sum_of_cell_backwards():
    """backward forms the weight gradients once over all steps; the sum of per-step
    cell_backward gradients (run through the same cache) must be identical."""
    T, B, D, H = 6, 3, 4, 5
    params, xs, state, dhs, (dh_T, dc_T) = random_case(T, B, D, H, seed=7)
    _, _, cache = ref.forward(xs, state, params)
    dxs, (dh0, dc0), grads = ref.backward(dhs, (dh_T, dc_T), cache)

    total = {k: np.zeros_like(v) for k, v in params.items()}
    dh, dc = dh_T, dc_T
    for t in reversed(range(T)):
        step_cache = dict(x=xs[t], h_prev=cache["hs"][t], c_prev=cache["cs"][t], params=params,
                          **{k: cache[k][t] for k in ("i", "f", "g", "o", "tanh_c")})
        dx, (dh, dc), step_grads = ref.cell_backward((dh + dhs[t], dc), step_cache)
        assert_close(dx, dxs[t])
        for k in total:
            total[k] += step_grads[k]
    assert_close(dh, dh0)
    assert_close(dc, dc0)
    for k in total:
        assert_close(grads[k], total[k])


def test_cache_matches_cell_forward_step_by_step():
    params, xs, state, _, _ = random_case(4, 2, 3, 3, seed=5)
    hs, _, cache = ref.forward(xs, state, params)
    h, c = state
    for t in range(4):
        (h, c), step = ref.cell_forward(xs[t], (h, c), params)
        assert_close(h, hs[t])
        assert_close(h, cache["hs"][t + 1])
        assert_close(c, cache["cs"][t + 1])
        for k in ("i", "f", "g", "o", "tanh_c"):
            assert_close(step[k], cache[k][t])


# ----------------------------------------------------------------------------- shape contracts

dims = st.integers(min_value=1, max_value=6)


@settings(max_examples=40, deadline=None)
@given(T=dims, B=dims, D=dims, H=dims, dtype=st.sampled_from([np.float32, np.float64]))
def test_shape_and_dtype_contracts(T, B, D, H, dtype):
    params, xs, state, dhs, dstate = random_case(T, B, D, H, dtype=dtype)
    hs, (h_T, c_T), cache = ref.forward(xs, state, params)
    assert hs.shape == (T, B, H) and h_T.shape == c_T.shape == (B, H)
    assert cache["hs"].shape == cache["cs"].shape == (T + 1, B, H)
    for k in ("i", "f", "g", "o", "tanh_c"):
        assert cache[k].shape == (T, B, H)
    dxs, (dh0, dc0), grads = ref.backward(dhs, dstate, cache)
    assert dxs.shape == (T, B, D) and dh0.shape == dc0.shape == (B, H)
    outputs = [hs, h_T, c_T, dxs, dh0, dc0, *cache["hs"], *grads.values()]
    for name in ref.PARAM_NAMES:
        assert grads[name].shape == params[name].shape
    assert all(a.dtype == dtype for a in outputs)

    (h, c), step = ref.cell_forward(xs[0], state, params)
    dx, (dh, dc), cgrads = ref.cell_backward(dstate, step)
    assert h.shape == c.shape == dh.shape == dc.shape == (B, H) and dx.shape == (B, D)
    assert all(a.dtype == dtype for a in (h, c, dx, dh, dc, *cgrads.values()))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_float32_agrees_with_float64(dtype):
    params, xs, state, dhs, dstate = random_case(5, 3, 4, 6, seed=2)
    hs64, _, cache64 = ref.forward(xs, state, params)
    dxs64, _, grads64 = ref.backward(dhs, dstate, cache64)
    cast = {k: v.astype(dtype) for k, v in params.items()}
    hs, _, cache = ref.forward(xs.astype(dtype), tuple(s.astype(dtype) for s in state), cast)
    dxs, _, grads = ref.backward(dhs.astype(dtype), tuple(s.astype(dtype) for s in dstate), cache)
    assert hs.dtype == dxs.dtype == grads["weight_hh"].dtype == dtype
    np.testing.assert_allclose(hs, hs64, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(dxs, dxs64, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(grads["weight_hh"], grads64["weight_hh"], rtol=1e-4, atol=1e-4)


# ----------------------------------------------------------------------------- bad input

def _raises(exc, match, fn, *args):
    with pytest.raises(exc, match=match):
        fn(*args)


@settings(max_examples=30, deadline=None)
@given(T=dims, B=dims, D=dims, H=dims, delta=st.integers(1, 3))
def test_mismatched_input_size_is_rejected(T, B, D, H, delta):
    params, xs, state, _, _ = random_case(T, B, D, H)
    bad = np.zeros((T, B, D + delta))
    _raises(ValueError, rf"xs must have shape \(T, B, D={D}\); got \({T}, {B}, {D + delta}\)",
            ref.forward, bad, state, params)
    _raises(ValueError, rf"x must have shape \(B, D={D}\); got \({B}, {D + delta}\)",
            ref.cell_forward, bad[0], state, params)


@settings(max_examples=30, deadline=None)
@given(T=dims, B=dims, D=dims, H=dims, delta=st.integers(1, 3))
def test_mismatched_hidden_size_is_rejected(T, B, D, H, delta):
    params, xs, (h0, c0), _, _ = random_case(T, B, D, H)
    bad = np.zeros((B, H + delta))
    _raises(ValueError, rf"h0 must have shape \(B={B}, H={H}\); got \({B}, {H + delta}\)",
            ref.forward, xs, (bad, c0), params)
    _raises(ValueError, rf"c_prev must have shape \(B={B}, H={H}\); got \({B}, {H + delta}\)",
            ref.cell_forward, xs[0], (h0, bad), params)
    # weight_hh that does not match weight_ih's H
    params["weight_hh"] = np.zeros((4 * H, H + delta))
    _raises(ValueError,
            rf"weight_hh'\] must have shape \({4 * H}, {H}\) \(H={H}\); got \({4 * H}, {H + delta}\)",
            ref.forward, xs, (h0, c0), params)


@settings(max_examples=30, deadline=None)
@given(T=dims, B=dims, D=dims, H=dims, other=dims)
def test_batch_size_disagreeing_with_state_is_rejected(T, B, D, H, other):
    params, xs, (h0, c0), _, _ = random_case(T, B, D, H)
    if other == B:
        other = B + 1
    bad = np.zeros((other, H))
    # a (1, H) state would broadcast over the batch in NumPy; the reference refuses it
    _raises(ValueError, rf"h0 must have shape \(B={B}, H={H}\); got \({other}, {H}\)",
            ref.forward, xs, (bad, c0), params)
    _raises(ValueError, rf"h_prev must have shape \(B={B}, H={H}\); got \({other}, {H}\)",
            ref.cell_forward, xs[0], (bad, c0), params)


@settings(max_examples=30, deadline=None)
@given(T=dims, B=dims, D=dims, H=dims, extra=st.integers(0, 2))
def test_wrong_rank_is_rejected(T, B, D, H, extra):
    params, xs, (h0, c0), dhs, _ = random_case(T, B, D, H)
    _raises(ValueError, r"xs must have shape \(T, B, D=", ref.forward, xs[0], (h0, c0), params)
    _raises(ValueError, r"xs must have shape \(T, B, D=", ref.forward, xs[None], (h0, c0), params)
    _raises(ValueError, r"x must have shape \(B, D=", ref.cell_forward, xs, (h0, c0), params)
    _raises(ValueError, r"h0 must have shape", ref.forward, xs, (h0[None], c0), params)
    _raises(ValueError, r"c0 must have shape", ref.forward, xs, (h0, c0[0]), params)
    _, _, cache = ref.forward(xs, (h0, c0), params)
    _raises(ValueError, r"dhs must have shape \(T=", ref.backward, dhs[0], None, cache)
    _raises(ValueError, r"dh_T must have shape", ref.backward, dhs, (h0[None], None), cache)
    # parameters of the wrong rank
    for name in ref.PARAM_NAMES:
        bad = dict(params)
        bad[name] = params[name].reshape(params[name].shape + (1,) * (extra + 1))
        _raises(ValueError, rf"params\['{name}'\] must have shape", ref.forward, xs, (h0, c0), bad)


@pytest.mark.parametrize("dtype", [np.int64, np.int32, np.bool_, np.complex128, object])
def test_non_float_dtypes_raise_type_error(dtype):
    params, xs, (h0, c0), _, _ = random_case(2, 2, 3, 4)
    _raises(TypeError, "float dtype", ref.forward, xs.astype(dtype), (h0, c0), params)
    _raises(TypeError, "float dtype", ref.cell_forward, xs[0].astype(dtype), (h0, c0), params)
    _raises(TypeError, "float dtype", ref.forward, xs, (h0.astype(dtype), c0), params)
    int_params = {k: v.astype(dtype) for k, v in params.items()}
    _raises(TypeError, "float dtype", ref.forward, xs, (h0, c0), int_params)
    with pytest.raises(TypeError):
        ref.init_params(3, 4, dtype=dtype)


def test_mixed_dtypes_and_non_arrays_raise_type_error():
    params, xs, (h0, c0), _, _ = random_case(2, 2, 3, 4)
    _raises(TypeError, "float32 but params have float64",
            ref.forward, xs.astype(np.float32), (h0, c0), params)
    _raises(TypeError, "must be a numpy array", ref.forward, xs.tolist(), (h0, c0), params)
    _raises(TypeError, "state must be a pair", ref.forward, xs, h0, params)
    bad = dict(params, bias_hh=params["bias_hh"].astype(np.float32))
    _raises(TypeError, "all params must share float64", ref.forward, xs, (h0, c0), bad)
    _raises(TypeError, "params must be a dict", ref.forward, xs, (h0, c0), list(params.values()))


@pytest.mark.parametrize("missing", ref.PARAM_NAMES)
def test_missing_param_key_is_named(missing):
    params, xs, state, _, _ = random_case(2, 2, 3, 4)
    del params[missing]
    _raises(ValueError, f"missing \\['{missing}'\\]", ref.forward, xs, state, params)
    _raises(ValueError, f"missing \\['{missing}'\\]", ref.cell_forward, xs[0], state, params)


def test_empty_sequence_is_rejected():
    params, _, _, _, _ = random_case(1, 1, 3, 4)
    _raises(ValueError, r"T >= 1 and B >= 1; got shape \(0, 2, 3\)",
            ref.forward, np.zeros((0, 2, 3)), None, params)


def test_init_params_rejects_bad_sizes():
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="positive int"):
            ref.init_params(bad, 3)
        with pytest.raises(ValueError, match="positive int"):
            ref.init_params(3, bad)


def test_init_params_layout_and_forget_bias():
    p = ref.init_params(3, 5, rng=0, dtype=np.float32, forget_bias=1.0)
    assert {k: v.shape for k, v in p.items()} == {
        "weight_ih": (20, 3), "weight_hh": (20, 5), "bias_ih": (20,), "bias_hh": (20,)}
    assert all(v.dtype == np.float32 for v in p.values())
    k = 1 / np.sqrt(5)
    assert np.all(np.abs(p["weight_ih"]) <= k) and np.all(np.abs(p["bias_hh"]) <= k)
    assert np.all(p["bias_ih"][5:10] >= 1 - k) and np.all(np.abs(p["bias_ih"][:5]) <= k)


# ----------------------------------------------------------------------------- stability and memory

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_activations_do_not_overflow(dtype):
    z = np.concatenate([np.linspace(-1e4, 1e4, 2001), [-1e4, -710, -89, 0, 89, 710, 1e4]]).astype(dtype)
    with np.errstate(all="raise"):
        s, t = ref.sigmoid(z), ref.tanh(z)
    assert s.dtype == t.dtype == dtype
    assert np.all(np.isfinite(s)) and np.all(np.isfinite(t))
    assert np.all((s >= 0) & (s <= 1)) and np.all(np.abs(t) <= 1)
    assert s[-1] == 1 and s[-7] == 0 and s[-4] == 0.5
    z = np.array([-3.0, 0.5, 2.0])
    np.testing.assert_allclose(ref.sigmoid(z), 1 / (1 + np.exp(-z)), rtol=1e-14)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_saturated_gates_give_finite_outputs_and_gradients(dtype):
    """Pre-activations of size ~1e4: every gate saturates, nothing overflows or turns NaN."""
    params, xs, state, dhs, dstate = random_case(3, 2, 4, 3, seed=4, dtype=dtype)
    xs = (xs * 1e4).astype(dtype)
    with np.errstate(all="raise"):
        hs, (h_T, c_T), cache = ref.forward(xs, state, params)
        dxs, (dh0, dc0), grads = ref.backward(dhs, dstate, cache)
    for a in (hs, h_T, c_T, dxs, dh0, dc0, *grads.values()):
        assert np.all(np.isfinite(a))


def test_long_sequence_has_no_nan():
    T, B, D, H = 10_000, 2, 3, 4
    params, xs, state, dhs, dstate = random_case(T, B, D, H, seed=9)
    with np.errstate(all="raise"):
        hs, (h_T, c_T), cache = ref.forward(xs, state, params)
        dxs, (dh0, dc0), grads = ref.backward(dhs, dstate, cache)
    for a in (hs, h_T, c_T, dxs, dh0, dc0, *grads.values()):
        assert np.all(np.isfinite(a))
    assert np.abs(hs).max() <= 1


def cache_nbytes(cache):
    """Bytes held by the cache's arrays (params excluded; views counted by their own size)."""
    return sum(v.nbytes for k, v in cache.items() if k != "params")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_cache_memory_is_linear_in_T(dtype):
    B, D, H = 3, 4, 5
    sizes = {}
    for T in (10, 20, 40):
        params, xs, state, _, _ = random_case(T, B, D, H, dtype=dtype)
        _, _, cache = ref.forward(xs, state, params)
        sizes[T] = cache_nbytes(cache)
        # xs, hs and cs with the initial state, i, f, g, o and tanh(c): nothing else per step
        per_step = B * D + 2 * B * H + 5 * B * H
        assert sizes[T] == np.dtype(dtype).itemsize * (T * per_step + 2 * B * H)
        assert set(cache) == {"xs", "hs", "cs", "i", "f", "g", "o", "tanh_c", "params"}
    assert sizes[40] - sizes[20] == 2 * (sizes[20] - sizes[10])
