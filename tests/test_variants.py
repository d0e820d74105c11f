"""Tests for lstmkit.variants: correct variants against torch / the reference, wrong ones against nn.LSTM."""

import numpy as np
import pytest
import torch

from lstmkit import reference
from lstmkit.convert import to_torch
from lstmkit.variants import (
    count_params,
    coupled_forward,
    coupled_step,
    gru_forward,
    gru_step,
    init_coupled_params,
    init_gru_params,
    init_peephole_params,
    peephole_forward,
    peephole_step,
    reorder_gates,
    run,
    wrong_interpolated_output_step,
    wrong_output_from_cell_step,
    wrong_softmax_gates_step,
)

T, B, D, H = 6, 3, 4, 5


def _data(seed=0):
    rng = np.random.default_rng(seed)
    xs = rng.standard_normal((T, B, D))
    state = (rng.standard_normal((B, H)), rng.standard_normal((B, H)))
    return xs, state


def test_gru_step_matches_torch_grucell():
    rng = np.random.default_rng(1)
    params = init_gru_params(D, H, rng=rng)
    cell = torch.nn.GRUCell(D, H).double()
    with torch.no_grad():
        for k, v in params.items():
            getattr(cell, k).copy_(torch.from_numpy(v))
    xs, (h, _) = _data(2)
    h_torch = torch.from_numpy(h)
    for x in xs:  # several steps, so errors in the recurrence would accumulate
        h, gates = gru_step(x, h, params)
        h_torch = cell(torch.from_numpy(x), h_torch)
        assert np.max(np.abs(h - h_torch.detach().numpy())) < 1e-10
    assert set(gates) == {"r", "z", "n"}


def test_gru_forward_matches_torch_gru():
    params = init_gru_params(D, H, rng=3)
    gru = torch.nn.GRU(D, H).double()
    with torch.no_grad():
        for k, v in params.items():
            getattr(gru, f"{k}_l0").copy_(torch.from_numpy(v))
    xs, (h0, _) = _data(4)
    hs, h_T, gates = gru_forward(xs, h0, params)
    hs_t, h_T_t = gru(torch.from_numpy(xs), torch.from_numpy(h0)[None])
    assert hs.shape == (T, B, H) and gates["z"].shape == (T, B, H)
    assert np.max(np.abs(hs - hs_t.detach().numpy())) < 1e-10
    assert np.max(np.abs(h_T - h_T_t[0].detach().numpy())) < 1e-10


def test_peephole_with_zero_peepholes_equals_reference():
    params = init_peephole_params(D, H, rng=5)
    for k in ("p_i", "p_f", "p_o"):
        params[k] = np.zeros(H)
    xs, state = _data(6)
    hs, (h_T, c_T), _ = peephole_forward(xs, state, params)
    core = {k: params[k] for k in reference.PARAM_NAMES}
    hs_ref, (h_ref, c_ref), _ = reference.forward(xs, state, core)
    np.testing.assert_allclose(hs, hs_ref, rtol=0, atol=1e-12)
    np.testing.assert_allclose(c_T, c_ref, rtol=0, atol=1e-12)


def test_peephole_weights_enter_as_documented():
    params = init_peephole_params(D, H, rng=7)
    xs, state = _data(8)
    (h, c), gates = peephole_step(xs[0], state, params)
    a = reference.gate_preactivations(xs[0], state[0], params)
    a_i, a_f, a_o = a[:, :H], a[:, H:2 * H], a[:, 3 * H:]
    np.testing.assert_allclose(gates["i"], reference.sigmoid(a_i + params["p_i"] * state[1]), atol=1e-14)
    np.testing.assert_allclose(gates["f"], reference.sigmoid(a_f + params["p_f"] * state[1]), atol=1e-14)
    np.testing.assert_allclose(gates["o"], reference.sigmoid(a_o + params["p_o"] * c), atol=1e-14)
    # nonzero peepholes change the output
    (h0, _), _ = reference.cell_forward(xs[0], state, {k: params[k] for k in reference.PARAM_NAMES})
    assert np.max(np.abs(h - h0)) > 1e-3


def test_coupled_gate_is_one_minus_forget():
    params = init_coupled_params(D, H, rng=9)
    xs, state = _data(10)
    hs, (h_T, c_T), gates = coupled_forward(xs, state, params)
    np.testing.assert_allclose(gates["i"], 1 - gates["f"], atol=1e-15)
    # and the cell update uses exactly that i
    c_prev = state[1]
    (h, c), g = coupled_step(xs[0], state, params)
    np.testing.assert_allclose(c, g["f"] * c_prev + (1 - g["f"]) * g["g"], atol=1e-14)
    assert hs.shape == (T, B, H)
    np.testing.assert_array_equal(gates["c"][-1], c_T)
    np.testing.assert_allclose(gates["c"][0], c, atol=1e-15)


def test_coupled_equals_reference_lstm_with_tied_input_gate():
    # A reference LSTM whose i block is sigmoid(-a_f) has i = 1 - f: the same cell.
    cp = init_coupled_params(D, H, rng=11)
    ref = {k: np.concatenate([-v[:H], v]) for k, v in cp.items()}
    xs, state = _data(12)
    hs, _, _ = coupled_forward(xs, state, cp)
    hs_ref, _, _ = reference.forward(xs, state, ref)
    np.testing.assert_allclose(hs, hs_ref, atol=1e-12)


def test_param_counts():
    assert count_params(reference.init_params(D, H, rng=0)) == 4 * (D * H + H * H + 2 * H)
    assert count_params(init_peephole_params(D, H, rng=0)) == 4 * (D * H + H * H + 2 * H) + 3 * H
    assert count_params(init_coupled_params(D, H, rng=0)) == 3 * (D * H + H * H + 2 * H)
    assert count_params(init_gru_params(D, H, rng=0)) == 3 * (D * H + H * H + 2 * H)


@pytest.mark.parametrize("step", [wrong_interpolated_output_step, wrong_output_from_cell_step,
                                  wrong_softmax_gates_step])
def test_wrong_variants_differ_from_torch_lstm(step):
    params = reference.init_params(D, H, rng=13)
    lstm = torch.nn.LSTM(D, H).double()
    to_torch(params, lstm)
    xs, state = _data(14)
    hs_wrong, _, _ = run(step, xs, state, params)
    hs_t, _ = lstm(torch.from_numpy(xs), tuple(torch.from_numpy(s)[None] for s in state))
    hs_t = hs_t.detach().numpy()
    hs_ref, _, _ = reference.forward(xs, state, params)
    assert np.max(np.abs(hs_ref - hs_t)) < 1e-12          # same weights, correct LSTM agrees
    assert np.max(np.abs(hs_wrong - hs_t)) > 1e-2         # the wrong one does not


def test_run_with_reference_compatible_step_matches_forward():
    params = reference.init_params(D, H, rng=15)
    xs, state = _data(16)
    hs, _, _ = run(lambda x, s, p: (reference.cell_forward(x, s, p)[0], {}), xs, state, params)
    np.testing.assert_allclose(hs, reference.forward(xs, state, params)[0], atol=1e-14)


def test_softmax_gates_sum_to_one_but_sigmoid_gates_do_not():
    params = reference.init_params(D, H, rng=17)
    xs, state = _data(18)
    _, _, wrong = run(wrong_softmax_gates_step, xs, state, params)
    np.testing.assert_allclose(wrong["o"].sum(-1), 1.0, atol=1e-12)
    _, _, cache = reference.forward(xs, state, params)
    assert np.max(np.abs(cache["o"].sum(-1) - 1.0)) > 0.1


def test_reorder_gates_roundtrip_and_silent_mismatch():
    params = reference.init_params(D, H, rng=19)
    swapped = reorder_gates(params, "ifgo", "ifog")

    np.testing.assert_array_equal(swapped["weight_ih"][2 * H:3 * H], params["weight_ih"][3 * H:])
    np.testing.assert_array_equal(swapped["bias_hh"][3 * H:], params["bias_hh"][2 * H:3 * H])
    back = reorder_gates(swapped, "ifog", "ifgo")
    for k in params:
        np.testing.assert_array_equal(back[k], params[k])
    xs, state = _data(20)
    hs, _, _ = reference.forward(xs, state, params)
    hs_swapped, _, _ = reference.forward(xs, state, swapped)   # runs without any error ...
    assert np.max(np.abs(hs - hs_swapped)) > 1e-2              # ... and gives other outputs


def test_bad_shapes_raise_clear_errors():
    params = init_gru_params(D, H, rng=0)
    with pytest.raises(ValueError, match=r"x must have shape"):
        gru_step(np.zeros((B, D + 1)), np.zeros((B, H)), params)
    bad = dict(init_peephole_params(D, H, rng=0), p_o=np.zeros(H + 1))
    with pytest.raises(ValueError, match=r"p_o.*\(5,\)"):
        peephole_step(np.zeros((B, D)), (np.zeros((B, H)), np.zeros((B, H))), bad)
    with pytest.raises(ValueError, match="permutations"):
        reorder_gates(reference.init_params(D, H, rng=0), "ifgo", "ifgg")
