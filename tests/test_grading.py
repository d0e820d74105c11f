"""Unit tests of lstmkit.grading: the reference passes every check, typical mistakes fail with a hint."""

import re
import warnings

import numpy as np
import pytest
import torch

from lstmkit import grading, numerical_gradient
from lstmkit import reference as ref

SEEDS = range(6)


def gate_activations(a):
    return ref._activate(a, a.shape[1] // 4)


CORRECT = {
    "sigmoid": ref.sigmoid,
    "gate_preactivations": ref.gate_preactivations,
    "gate_activations": gate_activations,
    "cell_forward": ref.cell_forward,
    "cell_backward": ref.cell_backward,
    "backward": ref.backward,
    "numerical_gradient": numerical_gradient,
}


@pytest.mark.parametrize("name", sorted(CORRECT))
def test_reference_passes_without_warnings(name):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for seed in SEEDS:
            assert grading.CHECKS[name](CORRECT[name], seed)


def test_split_runs_on_plain_data():
    check = grading.CHECKS["cell_forward"]
    inputs = check.make_inputs(3)
    outputs = check.run(ref.cell_forward, inputs)
    plain = {k: np.asarray(v).tolist() for k, v in outputs.items()}  # e.g. after a trip through JSON
    check.compare(inputs, plain)
    plain["h"][0][0] += 1.0
    with pytest.raises(AssertionError, match="next h is off by"):
        check.compare(inputs, plain)


def test_inputs_depend_on_the_seed_including_shapes():
    shapes = {grading.CHECKS["backward"].make_inputs(s)["xs"].shape for s in range(20)}
    assert len(shapes) > 5
    a, b = (grading.CHECKS["cell_forward"].make_inputs(5) for _ in range(2))
    assert np.array_equal(a["x"], b["x"])


def test_hard_coded_answer_fails():
    answer = grading.CHECKS["cell_forward"].run(
        ref.cell_forward, grading.CHECKS["cell_forward"].make_inputs(0)
    )

    def cell_forward(x, state, params):
        return (answer["h"], answer["c"]), None

    grading.check_cell_forward(cell_forward, 0)
    with pytest.raises(AssertionError, match="next c has shape|next c is off"):
        for seed in range(1, 5):
            grading.check_cell_forward(cell_forward, seed)


def test_naive_sigmoid_fails_on_overflow():
    with pytest.raises(AssertionError, match="overflow"):
        grading.check_sigmoid(lambda z: 1 / (1 + np.exp(-z)), 0)


def test_gates_outside_the_unit_interval_fail():
    with pytest.raises(AssertionError, match="gate f has values outside"):
        grading.check_gate_activations(
            lambda a: (lambda i, f, g, o: (i, 2 * f - 1, g, o))(*gate_activations(a)), 2
        )


def test_gate_order_swapped():
    def swapped(a):
        i, f, g, o = gate_activations(a)
        return f, i, g, o

    with pytest.raises(AssertionError, match="gate i equals what gate f should be.*order i, f, g, o"):
        grading.check_gate_activations(swapped, 0)


def _cell(c_of, h_of):
    def cell_forward(x, state, params):
        h_prev, c_prev = state
        i, f, g, o = gate_activations(ref.gate_preactivations(x, h_prev, params))
        c = c_of(i, f, g, c_prev)
        return (h_of(o, c), c), None

    return cell_forward


def test_tanh_missing_on_the_cell_state():
    wrong = _cell(lambda i, f, g, c_prev: f * c_prev + i * g, lambda o, c: o * c)
    with pytest.raises(AssertionError, match=re.escape("h = o * tanh(c)")):
        grading.check_cell_forward(wrong, 0)


def test_forget_gate_applied_to_g():
    wrong = _cell(lambda i, f, g, c_prev: i * c_prev + f * g, lambda o, c: o * np.tanh(c))
    with pytest.raises(AssertionError, match="forget gate f scales the old cell"):
        grading.check_cell_forward(wrong, 0)


def test_wrong_shape_is_named():
    wrong = _cell(lambda i, f, g, c_prev: (f * c_prev + i * g)[:, :1], lambda o, c: o * np.tanh(c))
    inputs = grading.CHECKS["cell_forward"].make_inputs(3)  # any sizes: H >= 2
    B, H = inputs["h_prev"].shape
    with pytest.raises(AssertionError, match=re.escape(f"next c has shape ({B}, 1), expected ({B}, {H})")):
        grading.check_cell_forward(wrong, 3)


def test_sigmoid_derivative_sign_error():
    # Build the mistaken version from the reference's pieces: negate the sigmoid blocks of da.
    def wrong(dstate, cache):
        dh, dc = dstate
        da, dc_prev = ref._gate_grads(
            dh, dc, cache["i"], cache["f"], cache["g"], cache["o"], cache["tanh_c"], cache["c_prev"]
        )
        H = dh.shape[1]
        da = da * np.repeat([-1.0, -1.0, 1.0, -1.0], H)
        p = cache["params"]
        grads = {
            "weight_ih": da.T @ cache["x"],
            "weight_hh": da.T @ cache["h_prev"],
            "bias_ih": da.sum(0),
            "bias_hh": da.sum(0),
        }
        return da @ p["weight_ih"], (da @ p["weight_hh"], dc_prev), grads

    with pytest.raises(AssertionError, match=r"weight_ih is off by \d+%.*sigmoid derivative"):
        grading.check_cell_backward(wrong, 0)


def test_gradients_not_summed_over_time():
    def backward(dhs, dstate_T, cache):
        dxs, dstate_0, grads = ref.backward(dhs, dstate_T, cache)
        T = dhs.shape[0]
        # keep only the first step's contribution, as `grads[k] = step_grads[k]` in a reversed loop does
        inputs = {"params": cache["params"], "dhs": dhs, "dh_T": dstate_T[0], "dc_T": dstate_T[1]}
        first = grading._step_grads(inputs, cache)[0]
        assert T > 1
        return dxs, dstate_0, first

    with pytest.raises(
        AssertionError, match="weight_ih is off by .*time step 0 alone: did you sum over the time"
    ):
        grading.check_backward(backward, 0)


def test_forward_differences_are_too_coarse():
    def forward_difference(f, x, eps=1e-5):
        grad = np.zeros_like(x)
        f0 = f()
        for idx in np.ndindex(x.shape):
            old = x[idx]
            x[idx] = old + eps
            grad[idx] = (f() - f0) / eps
            x[idx] = old
        return grad

    with pytest.raises(AssertionError, match="central differences"):
        grading.check_numerical_gradient(forward_difference, 0)


class TorchCell(torch.nn.LSTMCell):
    def __init__(self, D, H):
        super().__init__(D, H)


class TorchLSTM(torch.nn.LSTM):
    def __init__(self, D, H):
        super().__init__(D, H)


def test_torch_modules_pass_and_wrong_layout_fails():
    for seed in range(3):
        grading.check_torch_cell(TorchCell, seed)
        grading.check_torch_layer(TorchLSTM, seed)

    class BatchFirst(torch.nn.LSTM):
        def __init__(self, D, H):
            super().__init__(D, H, bias=False)

    with pytest.raises(AssertionError, match="has parameters .* expected .*bias_ih_l0"):
        grading.check_torch_layer(BatchFirst, 0)


def test_adding_problem_and_its_check():
    xs, ys = grading.adding_problem(10, 7, 0)
    assert xs.shape == (10, 7, 2) and ys.shape == (7,)
    assert np.all(xs[:, :, 1].sum(axis=0) == 2)
    np.testing.assert_allclose(ys, (xs[..., 0] * xs[..., 1]).sum(axis=0), rtol=1e-6)
    grading.check_adding(lambda xs: (xs[..., 0] * xs[..., 1]).sum(axis=0), 0)
    with pytest.raises(AssertionError, match="mean squared error on a fresh batch is 0.1"):
        grading.check_adding(lambda xs: np.ones(xs.shape[1]), 0)


# ----------------------------------------------------------------------------- one definition per check


def test_every_check_is_complete():
    from lstmkit import grading_run

    assert set(grading_run.RUNS) == set(grading.CHECKS)
    for name, check in grading.CHECKS.items():
        assert check.run is grading_run.RUNS[name]
        assert check.kinds and len(set(check.kinds)) == len(check.kinds), name
        assert set(check.uses) <= set(grading_run.SUBSTITUTES), name
        for seed in range(2 * len(check.kinds)):
            inputs = check.make_inputs(seed)
            assert check.kind(seed) == check.kinds[seed % len(check.kinds)]
            assert isinstance(check.child_inputs(inputs), dict)
        if name in CORRECT:
            inputs = check.make_inputs(0)
            outputs = check.run(CORRECT[name], check.child_inputs(inputs))
            assert check.judge(inputs, outputs) == dict.fromkeys(check.component_names), name


@pytest.mark.parametrize("name", ["cell_forward", "cell_backward", "backward", "gate_preactivations"])
def test_visible_seeds_cover_the_edge_sizes(name):
    check = grading.CHECKS[name]
    for seed, kind in enumerate(check.kinds):
        inputs = check.make_inputs(seed)
        x = inputs.get("xs", inputs.get("x"))
        T = x.shape[0] if x.ndim == 3 else None
        B, D = x.shape[-2:]
        H = inputs.get("h_prev", inputs.get("h0")).shape[1]
        sizes = {"B": B, "D": D, "H": H, "T": T}
        for letter, size in sizes.items():
            if size is not None:
                assert (size == 1) == (kind == f"{letter} = 1"), (seed, kind, sizes)


def test_substitutes_agree_with_the_reference():
    from lstmkit import grading_run

    inputs = grading.CHECKS["cell_backward"].make_inputs(5)
    cache = grading.CHECKS["cell_backward"].child_inputs(inputs)["cache"]
    with grading_run.substituted(test_substitutes_agree_with_the_reference, ()):
        subs = grading_run.SUBSTITUTES
        np.testing.assert_allclose(subs["sigmoid"](inputs["x"] * 50), ref.sigmoid(inputs["x"] * 50))
        a = subs["gate_preactivations"](inputs["x"], inputs["h_prev"], inputs["params"])
        expected = ref.gate_preactivations(inputs["x"], inputs["h_prev"], inputs["params"])
        np.testing.assert_allclose(a, expected)
        for got, expected in zip(subs["gate_activations"](a), gate_activations(a), strict=True):
            np.testing.assert_allclose(got, expected)
        got = subs["cell_backward"]((inputs["dh"], inputs["dc"]), cache)
        expected = ref.cell_backward((inputs["dh"], inputs["dc"]), cache)
        np.testing.assert_allclose(got[0], expected[0])
        for k in ref.PARAM_NAMES:
            np.testing.assert_allclose(got[2][k], expected[2][k])
    with pytest.raises(AssertionError, match="comes from the grader"):  # outside a substituted call
        grading_run.SUBSTITUTES["sigmoid"](0.0)


# ----------------------------------------------------------------------------- partial credit


def squeezing_cell_forward(x, state, params):
    """Right, except for B = 1: np.squeeze drops the batch axis."""
    (h, c), cache = ref.cell_forward(x, state, params)
    return (np.squeeze(h, 0) if h.shape[0] == 1 else h, c), cache


def test_a_batch_of_one_bug_is_caught_by_the_visible_checks_and_costs_one_kind(capsys):
    checks = grading.Checks("cell_forward", points=3)
    assert [checks(squeezing_cell_forward, seed=s) for s in range(4)] == [False, True, True, True]
    assert checks.points() == 2.25  # 3 of the 4 kinds of sizes pass
    out = capsys.readouterr()
    assert "FAILED cell_forward (seed 0, B = 1): next h has shape" in out.out and out.err == ""
    for seed in range(100, 108):  # the hidden calls: the same kinds, twice each
        checks(squeezing_cell_forward, seed=seed)
    assert checks.points() == 2.25


def test_points_per_component_and_kind():
    def no_dx(dstate, cache):
        dx, dprev, grads = ref.cell_backward(dstate, cache)
        return 0 * dx, dprev, grads

    checks = grading.Checks("cell_backward", points=4)
    for seed in range(12):
        checks(no_dx, seed=seed)
    assert checks.points() == 3.0  # dh_prev, dc_prev and the weight gradients pass: 3 of 4 components
    assert "dx is off by" in checks.verdicts[0].message


def test_hard_coded_visible_answers_earn_nothing():
    table = {}
    for seed in range(4):
        inputs = grading.CHECKS["cell_forward"].make_inputs(seed)
        table[inputs["x"].tobytes()] = ref.cell_forward(inputs["x"], (inputs["h_prev"], inputs["c_prev"]),
                                                        inputs["params"])

    def cell_forward(x, state, params):
        return table.get(x.tobytes(), ((state[0], state[1]), None))

    checks = grading.Checks("cell_forward", points=3)
    assert all(checks(cell_forward, seed=s) for s in range(4)) and checks.points() == 3
    for seed in range(100, 108):
        checks(cell_forward, seed=seed)
    assert checks.points() == 0  # every kind fails on its hidden calls


def test_a_later_part_is_graded_with_the_reference_in_place_of_an_earlier_bug():
    namespace = {"np": np, "ref": ref}
    exec(
        "def gate_activations(a):\n"
        "    i, f, g, o = ref._activate(a, a.shape[1] // 4)\n"
        "    return f, i, g, o\n"
        "def cell_forward(x, state, params):\n"
        "    i, f, g, o = gate_activations(ref.gate_preactivations(x, state[0], params))\n"
        "    c = f * state[1] + i * g\n"
        "    return (o * np.tanh(c), c), None\n",
        namespace,
    )
    own = grading.Checks("gate_activations", points=2)
    later = grading.Checks("cell_forward", points=3)
    for seed in range(12):
        own(namespace["gate_activations"], seed=seed)
        later(namespace["cell_forward"], seed=seed)
    assert own.points() == 0 and later.points() == 3
    assert "passes with the grader's sigmoid, gate_preactivations, gate_activations in place of yours" \
        in later.verdicts[0].note
    assert namespace["gate_activations"].__name__ == "gate_activations"  # restored afterwards

    def broken_too(x, state, params):
        i, f, g, o = namespace["gate_activations"](ref.gate_preactivations(x, state[0], params))
        return (o * state[1], state[1]), None

    verdict = grading.CHECKS["cell_forward"].grade(broken_too, 3)
    assert not verdict.passed


def test_the_torch_layer_is_graded_with_the_grader_s_lstm_step_in_place_of_a_wrong_one():
    namespace = {"torch": torch, "nn": torch.nn}
    exec(
        "def lstm_step(x, h, c, w_ih, w_hh, b_ih, b_hh):\n"
        "    a_i, a_f, a_g, a_o = (x @ w_ih.T + b_ih + h @ w_hh.T + b_hh).chunk(4, dim=-1)\n"
        "    c = torch.sigmoid(a_i) * c + torch.sigmoid(a_f) * torch.tanh(a_g)  # i and f swapped\n"
        "    return torch.sigmoid(a_o) * torch.tanh(c), c\n"
        "class LSTM(nn.Module):\n"
        "    def __init__(self, D, H):\n"
        "        super().__init__()\n"
        "        self.hidden_size = H\n"
        "        for name, shape in (('weight_ih_l0', (4 * H, D)), ('weight_hh_l0', (4 * H, H)),\n"
        "                            ('bias_ih_l0', (4 * H,)), ('bias_hh_l0', (4 * H,))):\n"
        "            setattr(self, name, nn.Parameter(torch.zeros(shape)))\n"
        "    def forward(self, xs, state):\n"
        "        h, c = state[0][0], state[1][0]\n"
        "        hs = []\n"
        "        for x in xs:\n"
        "            h, c = lstm_step(x, h, c, self.weight_ih_l0, self.weight_hh_l0, self.bias_ih_l0,\n"
        "                             self.bias_hh_l0)\n"
        "            hs.append(h)\n"
        "        return torch.stack(hs), (h[None], c[None])\n",
        namespace,
    )
    checks = grading.Checks("torch_layer", points=3)
    assert all(checks(namespace["LSTM"], seed=s) for s in range(4)) and checks.points() == 3
    assert "the grader's lstm_step in place of yours" in checks.verdicts[0].note
    assert namespace["lstm_step"].__name__ == "lstm_step"
