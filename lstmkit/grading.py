"""Autograder checks for the nbgrader assignments in assignments/, one `Check` object per check.

Every check is split in steps so that the comparison can run outside the student's kernel on plain data:

    inputs  = CHECK.make_inputs(seed)                            # NumPy arrays; the seed picks the sizes
    outputs = CHECK.run(student_fn, CHECK.child_inputs(inputs))  # calls the student's code (sandboxed)
    CHECK.judge(inputs, outputs)                                 # trusted: {component: message or None}

A test cell of a notebook makes a `Checks("<name>", points=P)`, calls it on visible seeds (one per kind
of sizes: B = 1, H = 1, ..., any sizes) and hidden ones, and ends with `checks.points()`: the points
in proportion to the components x kinds that pass (`part_points`), which nbgrader takes as partial
credit and `lstmkit grade` computes the same way. `check_xxx(student_fn, seed)` is the strict form
(raises AssertionError). The expected values come from lstmkit.reference on the same inputs, compared
in float64 (relative error ~1e-8 for forward values, ~1e-6 for gradients), plus property checks
(shapes, gates in (0, 1), no overflow for large inputs) that a hard-coded answer fails. Checks write
nothing to stderr and emit no warnings: nbgrader scores a test cell 0 if it writes anything there.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from . import grading_run as _runs
from . import reference as ref
from .grading_run import _call, _copy_params, _pair  # noqa: F401 - re-exported

FORWARD_TOL = 1e-8
GRAD_TOL = 1e-6
GATES = ref.GATES


def _unchanged(inputs):
    return inputs


@dataclass(frozen=True)
class Check:
    """One autograder check, defined once.

    - make_inputs(seed) -> dict: random inputs; the seed also picks the kind of sizes (`kinds`, e.g.
      "B = 1"): kind = kinds[seed % len(kinds)], so seeds 0, 1, ... cover every kind in turn;
    - child_inputs(inputs) -> dict: what the student-call step gets (e.g. plus the reference's cache);
    - run (lstmkit.grading_run.RUNS[name]): calls the student's function; the sandbox runs this step;
    - compare(inputs, outputs): trusted, raises AssertionError with a hint; `components` splits it into
      independent ideas (dx, dh_prev, ...), each scored on its own;
    - uses: earlier student functions the student's function may call; a call that fails is run again
      with the grader's versions in their place (one mistake is charged to one part only);
    - call_limit: whether `lstmkit grade` ends one call that runs longer than its per-call limit of CPU
      time (Limits.call); False for a call that does long work on purpose (trains models), which only
      the submission's own limits end.
    """

    name: str
    make_inputs: Callable[[int], dict]
    compare: Callable[[dict, dict], None]
    kinds: tuple = ("any sizes",)
    components: dict | None = None  # component name -> compare(inputs, outputs)
    child_inputs: Callable[[dict], dict] = _unchanged
    uses: tuple = ()
    call_limit: bool = True

    @property
    def run(self):
        return _runs.RUNS[self.name]

    def kind(self, seed):
        return self.kinds[seed % len(self.kinds)]

    @property
    def component_names(self):
        return tuple(self.components or ("",))

    def judge(self, inputs, outputs):
        """{component: None if it passes, else the message} for the outputs of one call."""
        parts = self.components or {"": self.compare}
        verdict = {}
        for name, compare in parts.items():
            try:
                compare(inputs, outputs)
                verdict[name] = None
            except AssertionError as e:
                verdict[name] = str(e) or "wrong answer"
            except Exception as e:  # noqa: BLE001 - outputs the comparison could not read
                verdict[name] = f"the result is malformed ({type(e).__name__}: {e})"
        return verdict

    def grade(self, fn, seed):
        """Run and judge one call in this process (nbgrader's kernel, `Checks`): a Verdict."""
        inputs = self.make_inputs(seed)
        own = self._judged(fn, inputs)
        sub = None
        if self.uses and any(m is not None for m in own.values()):
            with _runs.substituted(fn, self.uses):
                sub = self._judged(fn, inputs)
        return combine(self, seed, own, sub)

    def _judged(self, fn, inputs):
        try:
            outputs = self.run(fn, self.child_inputs(inputs))
        except AssertionError as e:
            return dict.fromkeys(self.component_names, str(e))
        except Exception as e:  # noqa: BLE001 - the student's code
            return dict.fromkeys(self.component_names, f"{type(e).__name__}: {e}"[:300])
        return self.judge(inputs, outputs)

    def __call__(self, fn, seed=0):
        """Strict form: raise AssertionError with the first failure's message."""
        verdict = self.grade(fn, seed)
        if not verdict.passed:
            raise AssertionError(verdict.message)
        return True


@dataclass
class Verdict:
    """One call's result: {component: message or None}, its kind, and a note on substitution."""

    check: str
    seed: int
    kind: str
    failures: dict
    note: str = ""

    @property
    def passed(self):
        return all(m is None for m in self.failures.values())

    @property
    def message(self):
        first = next((m for m in self.failures.values() if m is not None), "")
        return first or self.note


def combine(check, seed, own, sub):
    """A component passes if it passes with the student's functions or with the grader's in place of
    the earlier ones (`check.uses`); the note says when only the latter."""
    failures, rescued = {}, False
    for name in check.component_names:
        if own.get(name) is None:
            failures[name] = None
        elif sub is not None and sub.get(name) is None:
            failures[name], rescued = None, True
        else:
            failures[name] = (sub or own).get(name) or own.get(name) or "wrong answer"
    note = ""
    if rescued:
        note = (f"passes with the grader's {', '.join(check.uses)} in place of yours: the mistake is in "
                f"{'that function' if len(check.uses) == 1 else 'one of those'}, charged in its own part")
    if note and not all(m is None for m in failures.values()):
        failures = {k: (m if m is None else f"{m} ({note})") for k, m in failures.items()}
        note = ""
    return Verdict(check.name, seed, check.kind(seed), failures, note)


def part_points(points, verdicts, components):
    """Points of one test cell: points x (passing cells / cells) over the grid of components x kinds of
    sizes, where a cell passes when every call of that kind passes that component; 2 decimals. The
    same function scores nbgrader's test cells (Checks.points) and `lstmkit grade`."""
    kinds = sorted({v.kind for v in verdicts})
    if not kinds:
        return 0.0
    cells = [(c, k) for c in components for k in kinds]
    passing = sum(all(v.failures.get(c, "missing") is None for v in verdicts if v.kind == k)
                  for c, k in cells)
    return round(points * passing / len(cells), 2)


class Checks:
    """The checks of one autograded test cell. Calls never raise: a failure prints its message, and
    the cell's last line `checks.points()` shows the points earned, which nbgrader takes as the
    cell's partial credit.

        checks = grading.Checks("cell_forward", points=3)
        checks(cell_forward, seed=0)
        checks.points()
    """

    def __init__(self, check, points):
        self.check, self.max, self.verdicts = CHECKS[check], float(points), []

    def __call__(self, fn, seed):
        verdict = self.check.grade(fn, seed)
        self.verdicts.append(verdict)
        if not verdict.passed:
            print(f"FAILED {self.check.name} (seed {seed}, {verdict.kind}): {verdict.message}")
        elif verdict.note:
            print(f"passed {self.check.name} (seed {seed}, {verdict.kind}): {verdict.note}")
        return verdict.passed

    def points(self):
        earned = part_points(self.max, self.verdicts, self.check.component_names)
        if earned < self.max:
            print(f"{earned:g} of {self.max:g} points")
        return earned


# ----------------------------------------------------------------------------- helpers


def _rel(a, b):
    """Relative error ||a - b|| / ||b|| (b is the reference); 0 when both are zero."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    nb = np.linalg.norm(b)
    diff = np.linalg.norm(a - b)
    if nb == 0.0:
        return float(diff)
    return float(diff / nb)


def _as_array(name, value):
    """Turn a student's output into a float64 array, or explain what was wrong with it."""
    if value is None:
        raise AssertionError(f"{name} is None: did you forget a `return`?")
    try:
        arr = np.asarray(value.detach().cpu().numpy() if hasattr(value, "detach") else value)
    except Exception as e:  # noqa: BLE001 - anything a student may return
        raise AssertionError(f"{name} should be an array; got {type(value).__name__} ({e})") from None
    if arr.dtype == object or not np.issubdtype(arr.dtype, np.number):
        raise AssertionError(f"{name} should be a float array; got {type(value).__name__} of {arr.dtype}")
    return arr.astype(np.float64)


def _expect(name, value, expected, tol, hint=""):
    """Assert that `value` has the shape of `expected`, is finite and matches it to `tol`."""
    arr = _as_array(name, value)
    if arr.shape != expected.shape:
        raise AssertionError(f"{name} has shape {arr.shape}, expected {expected.shape}")
    if not np.all(np.isfinite(arr)):
        raise AssertionError(f"{name} contains NaN or inf")
    err = _rel(arr, expected)
    if err > tol:
        pct = f"{100 * err:.0f}%" if err >= 0.01 else f"{err:.1e} (relative)"
        raise AssertionError(f"{name} is off by {pct}" + (f": {hint}" if hint else ""))
    return arr


CELL_KINDS = ("B = 1", "H = 1", "D = 1", "any sizes")
SEQUENCE_KINDS = ("B = 1", "H = 1", "T = 1", "any sizes")


def _sizes(rng, kind="any sizes"):
    """Random (T, B, D, H) small enough for quick checks: each from 2 to 5 (T to 6), except that the
    kind "B = 1" (or "H = 1", "D = 1", "T = 1") sets that size to 1."""
    sizes = {"T": int(rng.integers(2, 7)), "B": int(rng.integers(2, 6)), "D": int(rng.integers(2, 6)),
             "H": int(rng.integers(2, 6))}
    if kind != "any sizes":
        sizes[kind[0]] = 1
    return sizes["T"], sizes["B"], sizes["D"], sizes["H"]


def _params(rng, D, H, scale=1.0):
    p = ref.init_params(D, H, rng=rng)
    return {k: v * scale for k, v in p.items()}


def _blocks(a, H):
    """Split along the first axis (gradients of weights and biases) into the i, f, g, o blocks."""
    return [a[k * H : (k + 1) * H] for k in range(4)]


# ----------------------------------------------------------------------------- sigmoid


SIGMOID_KINDS = ("one element", "any shape")


def _sigmoid_inputs(seed):
    rng = np.random.default_rng(seed)
    shape = tuple(int(n) for n in rng.integers(2, 6, size=int(rng.integers(1, 4))))
    if SIGMOID_KINDS[seed % 2] == "one element":
        shape = (1,) * int(rng.integers(1, 3))
    z = rng.standard_normal(shape) * 5
    z.flat[0] = -1000.0 if z.size == 1 else z.flat[0]
    big = np.array([-1000.0, -50.0, 0.0, 50.0, 1000.0]) * rng.uniform(0.5, 1.5)
    return {"z": z, "z_big": big}


def _sigmoid_compare(inputs, out):
    for key, z, what in (
        ("s", inputs["z"], "sigmoid(z)"),
        ("s_big", inputs["z_big"], "sigmoid(z) for large |z|"),
    ):
        s = _as_array(what, out[key])
        if s.shape != z.shape:
            raise AssertionError(f"{what} has shape {s.shape}, expected {z.shape} (the shape of z)")
        if not np.all(np.isfinite(s)):
            raise AssertionError(
                f"{what} contains NaN or inf: avoid computing exp of a large positive number"
            )
        if np.any(s < 0) or np.any(s > 1):
            raise AssertionError(f"{what} has values outside [0, 1]")
        _expect(what, s, ref.sigmoid(z), FORWARD_TOL, "sigmoid(z) = 1 / (1 + exp(-z))")


check_sigmoid = Check("sigmoid", _sigmoid_inputs, _sigmoid_compare, kinds=SIGMOID_KINDS)


# ----------------------------------------------------------------------------- gate pre-activations


def _cell_inputs(seed, scale=1.0):
    rng = np.random.default_rng(seed)
    _, B, D, H = _sizes(rng, CELL_KINDS[seed % len(CELL_KINDS)])
    return {
        "x": rng.standard_normal((B, D)),
        "h_prev": rng.standard_normal((B, H)),
        "c_prev": rng.standard_normal((B, H)),
        "params": _params(rng, D, H, scale),
    }


def _preact_compare(inputs, out):
    a_ref = ref.gate_preactivations(inputs["x"], inputs["h_prev"], inputs["params"])
    a = _as_array("a", out["a"])
    if a.shape != a_ref.shape and a.shape == a_ref.shape[::-1]:
        raise AssertionError(
            f"a has shape {a.shape}, expected {a_ref.shape} (B, 4H): transpose the weights, x @ W_ih.T"
        )
    _expect("a", a, a_ref, FORWARD_TOL, "a = x W_ih^T + b_ih + h_prev W_hh^T + b_hh (both biases)")


check_gate_preactivations = Check("gate_preactivations", _cell_inputs, _preact_compare, kinds=CELL_KINDS)


# ----------------------------------------------------------------------------- gate activations


GATE_KINDS = ("B = 1", "H = 1", "any sizes")


def _gates_inputs(seed):
    rng = np.random.default_rng(seed)
    _, B, _, H = _sizes(rng, GATE_KINDS[seed % len(GATE_KINDS)])
    a = rng.standard_normal((B, 4 * H)) * 3
    a[0, 0] = 800.0  # large pre-activations must not overflow
    a[-1, -1] = -800.0
    return {"a": a}


def _gates_compare(inputs, out):
    a = inputs["a"]
    H = a.shape[1] // 4
    expected = dict(zip(GATES, ref._activate(a, H), strict=True))
    got = {k: _as_array(k, out[k]) for k in GATES}
    for k in GATES:
        if got[k].shape != expected[k].shape:
            raise AssertionError(f"gate {k} has shape {got[k].shape}, expected {expected[k].shape} (B, H)")
        if not np.all(np.isfinite(got[k])):
            raise AssertionError(f"gate {k} contains NaN or inf for large pre-activations")
    for k in ("i", "f", "o"):
        if np.any(got[k] < 0) or np.any(got[k] > 1):
            raise AssertionError(f"gate {k} has values outside [0, 1]: it should be a sigmoid")
    if np.any(np.abs(got["g"]) > 1):
        raise AssertionError("gate g has values outside [-1, 1]: it should be a tanh")
    for k in GATES:
        if _rel(got[k], expected[k]) > FORWARD_TOL:
            for j, other in enumerate(GATES):
                if other != k and _rel(got[k], expected[other]) <= FORWARD_TOL:
                    raise AssertionError(
                        f"gate {k} equals what gate {other} should be: the blocks of a are in "
                        f"the order i, f, g, o (block {j} is {other})"
                    )
            _expect(
                f"gate {k}",
                got[k],
                expected[k],
                FORWARD_TOL,
                "i, f, o are sigmoids and g is a tanh of their H-wide blocks of a",
            )


check_gate_activations = Check("gate_activations", _gates_inputs, _gates_compare, kinds=GATE_KINDS,
                               uses=("sigmoid",))


# ----------------------------------------------------------------------------- cell_forward


def _cell_forward_mistakes(inputs):
    """Outputs of common wrong versions, to name the mistake in the failure message."""
    a = ref.gate_preactivations(inputs["x"], inputs["h_prev"], inputs["params"])
    i, f, g, o = ref._activate(a, a.shape[1] // 4)
    c_prev = inputs["c_prev"]
    c = f * c_prev + i * g
    c_swapped = i * c_prev + f * g
    return [
        ("h", o * c, "h looks like o * c: the new hidden state is h = o * tanh(c)"),
        (
            "c",
            c_swapped,
            "c looks like i * c_prev + f * g: the forget gate f scales the old cell c_prev "
            "and the input gate i scales the candidate g",
        ),
        ("c", f * c_prev + g, "c looks like f * c_prev + g: the candidate g is scaled by the input gate i"),
        ("h", np.tanh(c), "h looks like tanh(c): the output gate o is missing"),
    ]


def _cell_forward_compare(inputs, out):
    (h_ref, c_ref), _ = ref.cell_forward(inputs["x"], (inputs["h_prev"], inputs["c_prev"]), inputs["params"])
    got = {"h": _as_array("next h", out["h"]), "c": _as_array("next c", out["c"])}
    for name, expected in (("c", c_ref), ("h", h_ref)):
        if got[name].shape != expected.shape:
            raise AssertionError(f"next {name} has shape {got[name].shape}, expected {expected.shape} (B, H)")
    for name, variant, hint in _cell_forward_mistakes(inputs):
        expected = h_ref if name == "h" else c_ref
        if _rel(got[name], variant) <= FORWARD_TOL and _rel(variant, expected) > FORWARD_TOL:
            raise AssertionError(hint)
    _expect("next c", got["c"], c_ref, FORWARD_TOL, "c = f * c_prev + i * g")
    _expect("next h", got["h"], h_ref, FORWARD_TOL, "h = o * tanh(c)")


check_cell_forward = Check("cell_forward", _cell_inputs, _cell_forward_compare, kinds=CELL_KINDS,
                           uses=("sigmoid", "gate_preactivations", "gate_activations"))


# ----------------------------------------------------------------------------- gradients


def _compare_param_grads(got, expected, H, tol, step_grads=None):
    """Compare a grads dict gate block by gate block and name the likely mistake."""
    if not isinstance(got, dict):
        raise AssertionError(f"grads should be a dict with keys {ref.PARAM_NAMES}; got {type(got).__name__}")
    missing = [k for k in ref.PARAM_NAMES if k not in got]
    if missing:
        raise AssertionError(f"grads is missing {missing}; expected keys {ref.PARAM_NAMES}")
    for k in ref.PARAM_NAMES:
        name = f"gradient w.r.t. {k}"
        arr = _as_array(name, got[k])
        if arr.shape != expected[k].shape:
            raise AssertionError(f"{name} has shape {arr.shape}, expected {expected[k].shape} (same as {k})")
        err = _rel(arr, expected[k])
        if err <= tol:
            continue
        hint = ""
        blocks, ref_blocks = _blocks(arr, H), _blocks(expected[k], H)
        flipped = [_rel(-b, r) <= tol for b, r in zip(blocks, ref_blocks, strict=True)]
        if flipped[0] and flipped[1] and flipped[3] and _rel(blocks[2], ref_blocks[2]) <= tol:
            hint = (
                "the i, f and o blocks have the wrong sign and g is right: "
                "check the sigmoid derivative, sigmoid'(a) = s * (1 - s) with s = sigmoid(a)"
            )
        elif step_grads is not None:
            for t, sg in enumerate(step_grads):
                if _rel(arr, sg[k]) <= tol:
                    hint = (
                        f"it equals the contribution of time step {t} alone: did you sum over the time steps?"
                    )
                    break
            else:
                hint = "did you sum over the time steps?"
        else:
            bad = [g for g, b, r in zip(GATES, blocks, ref_blocks, strict=True) if _rel(b, r) > tol]
            hint = f"the {', '.join(bad)} block(s) are wrong (rows in gate order i, f, g, o)"
        raise AssertionError(f"{name} is off by {100 * err:.0f}%: {hint}")


def _cell_backward_inputs(seed):
    inputs = _cell_inputs(seed)
    rng = np.random.default_rng(seed + 10_000)
    B, H = inputs["h_prev"].shape
    inputs.update(dh=rng.standard_normal((B, H)), dc=rng.standard_normal((B, H)))
    return inputs


def _cell_backward_child_inputs(inputs):
    """The run's inputs plus the reference's forward cache (computed by the trusted side)."""
    state = (inputs["h_prev"], inputs["c_prev"])
    _, cache = ref.cell_forward(inputs["x"], state, _copy_params(inputs["params"]))
    return {**inputs, "cache": cache}


def _cell_backward_expected(inputs):
    _, cache = ref.cell_forward(inputs["x"], (inputs["h_prev"], inputs["c_prev"]), inputs["params"])
    dx, (dh_prev, dc_prev), grads = ref.cell_backward((inputs["dh"], inputs["dc"]), cache)
    return {"dx": dx, "dh_prev": dh_prev, "dc_prev": dc_prev, "grads": grads}


CELL_BACKWARD_HINTS = {
    "dx": "dx = da @ W_ih, with da the gradient w.r.t. the pre-activations",
    "dh_prev": "dh_prev = da @ W_hh",
    "dc_prev": "dc_prev = (dc + dh * o * (1 - tanh(c)^2)) * f",
}


def _output_compare(name, expected_of, hint):
    def compare(inputs, out):
        _expect(name, out[name], expected_of(inputs)[name], GRAD_TOL, hint)

    return compare


def _cell_backward_grads_compare(inputs, out):
    expected = _cell_backward_expected(inputs)
    _compare_param_grads(out["grads"], expected["grads"], expected["dh_prev"].shape[1], GRAD_TOL)


CELL_BACKWARD_COMPONENTS = {  # in the order their messages are most telling
    "dc_prev": _output_compare("dc_prev", _cell_backward_expected, CELL_BACKWARD_HINTS["dc_prev"]),
    "weight and bias gradients": _cell_backward_grads_compare,
    **{k: _output_compare(k, _cell_backward_expected, CELL_BACKWARD_HINTS[k]) for k in ("dx", "dh_prev")},
}


def _all_components(components):
    def compare(inputs, out):
        for c in components.values():
            c(inputs, out)

    return compare


check_cell_backward = Check(
    "cell_backward", _cell_backward_inputs, _all_components(CELL_BACKWARD_COMPONENTS), kinds=CELL_KINDS,
    components=CELL_BACKWARD_COMPONENTS, child_inputs=_cell_backward_child_inputs,
)


def _backward_inputs(seed):
    rng = np.random.default_rng(seed)
    T, B, D, H = _sizes(rng, SEQUENCE_KINDS[seed % len(SEQUENCE_KINDS)])
    return {
        "xs": rng.standard_normal((T, B, D)),
        "h0": rng.standard_normal((B, H)),
        "c0": rng.standard_normal((B, H)),
        "params": _params(rng, D, H),
        "dhs": rng.standard_normal((T, B, H)),
        "dh_T": rng.standard_normal((B, H)),
        "dc_T": rng.standard_normal((B, H)),
    }


def _backward_child_inputs(inputs):
    """The run's inputs plus the reference's forward cache (computed by the trusted side)."""
    _, _, cache = ref.forward(inputs["xs"], (inputs["h0"], inputs["c0"]), _copy_params(inputs["params"]))
    return {**inputs, "cache": cache}


def _step_grads(inputs, cache):
    """Each time step's own contribution to the parameter gradients (they sum to the total)."""
    p = inputs["params"]
    xs, hs, cs = cache["xs"], cache["hs"], cache["cs"]
    dh, dc = inputs["dh_T"].copy(), inputs["dc_T"].copy()
    out = {}
    for t in reversed(range(xs.shape[0])):
        dh = dh + inputs["dhs"][t]
        da, dc = ref._gate_grads(
            dh, dc, cache["i"][t], cache["f"][t], cache["g"][t], cache["o"][t], cache["tanh_c"][t], cs[t]
        )
        dh = da @ p["weight_hh"]
        out[t] = {
            "weight_ih": da.T @ xs[t],
            "weight_hh": da.T @ hs[t],
            "bias_ih": da.sum(0),
            "bias_hh": da.sum(0),
        }
    return [out[t] for t in range(xs.shape[0])]


def _backward_expected(inputs):
    _, _, cache = ref.forward(inputs["xs"], (inputs["h0"], inputs["c0"]), inputs["params"])
    dxs, (dh0, dc0), grads = ref.backward(inputs["dhs"], (inputs["dh_T"], inputs["dc_T"]), cache)
    return {"dxs": dxs, "dh0": dh0, "dc0": dc0, "grads": grads, "cache": cache}


BACKWARD_HINTS = {
    "dxs": "the gradient w.r.t. x_t needs dh from step t+1 added to dhs[t] (and dc carried back)",
    "dh0": "dh0 is the dh_prev of the first step",
    "dc0": "dc0 is the dc_prev of the first step",
}


def _backward_grads_compare(inputs, out):
    e = _backward_expected(inputs)
    _compare_param_grads(out["grads"], e["grads"], e["dh0"].shape[1], GRAD_TOL,
                         step_grads=_step_grads(inputs, e["cache"]))


BACKWARD_COMPONENTS = {
    **{k: _output_compare(k, _backward_expected, hint) for k, hint in BACKWARD_HINTS.items()},
    "weight and bias gradients": _backward_grads_compare,
}
check_backward = Check("backward", _backward_inputs, _all_components(BACKWARD_COMPONENTS),
                       kinds=SEQUENCE_KINDS, components=BACKWARD_COMPONENTS,
                       child_inputs=_backward_child_inputs, uses=("cell_backward",))


# ----------------------------------------------------------------------------- numerical gradient


def _numgrad_inputs(seed):
    rng = np.random.default_rng(seed)
    shape = tuple(int(n) for n in rng.integers(2, 5, size=int(rng.integers(1, 3))))
    if SIGMOID_KINDS[seed % 2] == "one element":
        shape = (1,) * int(rng.integers(1, 3))
    return {"x": rng.standard_normal(shape), "w": rng.standard_normal(shape), "v": rng.standard_normal(shape)}


def _numgrad_compare(inputs, out):
    x, w, v = inputs["x"], inputs["w"], inputs["v"]
    expected = w * np.cos(x) + 3 * v * x**2
    x_after = _as_array("x after numerical_gradient", out["x_after"])
    if _rel(x_after, x) > 1e-12:
        raise AssertionError("numerical_gradient changed x: restore each entry after perturbing it")
    _expect(
        "numerical gradient",
        out["grad"],
        expected,
        GRAD_TOL,
        "use central differences (f(x + eps) - f(x - eps)) / (2 eps), one entry at a time",
    )


check_numerical_gradient = Check("numerical_gradient", _numgrad_inputs, _numgrad_compare, kinds=SIGMOID_KINDS)


# ----------------------------------------------------------------------------- PyTorch modules


check_torch_cell = Check("torch_cell", _cell_inputs, _cell_forward_compare, kinds=CELL_KINDS)


def _torch_layer_compare(inputs, out):
    hs, (h_T, c_T), _ = ref.forward(inputs["xs"], (inputs["h0"], inputs["c0"]), inputs["params"])
    _expect("output", out["hs"], hs, FORWARD_TOL, "output holds h_t of every step, shape (T, B, H)")
    _expect("h_n", out["h_n"], h_T[None], FORWARD_TOL, "h_n is the last h with shape (1, B, H) like nn.LSTM")
    _expect("c_n", out["c_n"], c_T[None], FORWARD_TOL, "c_n is the last c with shape (1, B, H) like nn.LSTM")


check_torch_layer = Check("torch_layer", _backward_inputs, _torch_layer_compare, kinds=SEQUENCE_KINDS,
                          uses=("lstm_step",))


# ----------------------------------------------------------------------------- the adding problem


def adding_problem(T, B, rng):
    """A batch of the adding problem (Hochreiter & Schmidhuber 1997).

    Each sequence has T steps of two channels: a value drawn from U(0, 1) and a marker that is 1
    at exactly two steps (one in each half) and 0 elsewhere. The target is the sum of the two
    marked values. Predicting the mean (1.0) gives a mean squared error of about 1/6.

    Inputs:
    - T (>= 2), B: sequence length and batch size; rng: a numpy Generator or an int seed.
    Returns:
    - xs: (T, B, 2) float32; ys: (B,) float32.
    """
    rng = np.random.default_rng(rng)
    values = rng.uniform(0, 1, size=(T, B))
    markers = np.zeros((T, B))
    first = rng.integers(0, T // 2, size=B)
    second = rng.integers(T // 2, T, size=B)
    markers[first, np.arange(B)] = 1.0
    markers[second, np.arange(B)] = 1.0
    xs = np.stack([values, markers], axis=-1).astype(np.float32)
    ys = (values * markers).sum(axis=0).astype(np.float32)
    return xs, ys


ADDING_T = 30
ADDING_MSE = 0.01


def _adding_inputs(seed):
    xs, ys = adding_problem(ADDING_T, 512, seed)
    return {"xs": xs, "ys": ys}


def _adding_compare(inputs, out):
    pred = _as_array("predict(xs)", out["pred"]).reshape(-1)
    ys = inputs["ys"].astype(np.float64)
    if pred.shape != ys.shape:
        raise AssertionError(f"predict(xs) has {pred.size} values, expected one per sequence ({ys.size})")
    mse = float(np.mean((pred - ys) ** 2))
    if not np.isfinite(mse) or mse > ADDING_MSE:
        raise AssertionError(
            f"the mean squared error on a fresh batch is {mse:.4f}, expected below {ADDING_MSE} "
            f"(always answering 1.0 gives about 0.167): train longer or raise the learning rate"
        )


check_adding = Check("adding", _adding_inputs, _adding_compare, kinds=("a fresh batch",))


# ----------------------------------------------------------------------------- sequences (PyTorch)
# The expected outputs come from running the same run step on lstmkit.sequences' reference functions.


def _expected(name, inputs):
    from . import sequences

    return _runs.RUNS[name](getattr(sequences, name), inputs)


CLIP_KINDS = ("1-element tensors", "any sizes")


def _clip_inputs(seed):
    """4 to 6 gradients, each of norm below max_norm, their global norm above it (clipping per tensor
    changes nothing); `small` scales them to half of max_norm (then nothing may change)."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(4, 7))
    grads = {}
    for j in range(n):
        shape = (1,) if CLIP_KINDS[seed % 2] == "1-element tensors" else tuple(
            int(d) for d in rng.integers(1, 5, size=int(rng.integers(1, 3))))
        g = rng.standard_normal(shape)
        grads[f"t{j}"] = g * rng.uniform(0.8, 1.0) / max(np.linalg.norm(g), 1e-3)
    scale = rng.uniform(0.5, 5.0)
    grads = {k: v * scale for k, v in grads.items()}
    total = np.sqrt(sum(np.sum(g**2) for g in grads.values()))
    max_norm = scale * rng.uniform(1.05, 1.4)
    return {"grads": grads, "max_norm": np.float64(max_norm), "small": np.float64(0.5 * max_norm / total)}


def _clip_compare(inputs, out):
    e = _expected("clip_grad_norm", inputs)
    total, max_norm = float(e["norm"]), float(inputs["max_norm"])
    for suffix in ("", "_small"):
        got = out["grads" + suffix]
        if got is None:
            raise AssertionError("a gradient is missing after clip_grad_norm: rescale p.grad in place "
                                 "(and skip the tensors whose .grad is None)")
        for k, g_ref in e["grads" + suffix].items():
            g = _as_array(f"gradient {k}", got[k])
            before = inputs["grads"][k] * (1.0 if not suffix else float(inputs["small"]))
            if suffix == "" and g.shape == before.shape and _rel(g, before) <= 1e-9:
                raise AssertionError(
                    f"the gradients are unchanged although their global norm {total:.3g} is above max_norm "
                    f"{max_norm:.3g}: each tensor's own norm is below max_norm, so clipping each tensor on "
                    "its own does nothing: clip by the global norm of all the tensors together")
            if suffix == "_small" and g.shape == before.shape and _rel(g, before) > 1e-6:
                raise AssertionError("gradients whose global norm is below max_norm were changed: rescale "
                                     "only when the norm is above max_norm")
            _expect(f"clipped gradient {k}", g, _as_array("", g_ref), 1e-5,
                    "multiply every gradient by max_norm / global norm, where the global norm is "
                    "sqrt(sum of the squares of all the gradients together)")
        norm = _as_array("the returned norm", out["norm" + suffix]).reshape(-1)
        _expect("the returned norm", norm, _as_array("", e["norm" + suffix]).reshape(-1), 1e-6,
                "return the global norm before clipping")


check_clip_grad_norm = Check("clip_grad_norm", _clip_inputs, _clip_compare, kinds=CLIP_KINDS)


TBPTT_KINDS = ("B = 1", "k = 1", "T not a multiple of k", "any sizes")


def _tbptt_inputs(seed):
    rng = np.random.default_rng(seed)
    kind = TBPTT_KINDS[seed % len(TBPTT_KINDS)]
    V, E, H = 5, 3, int(rng.integers(2, 5))
    B = 1 if kind == "B = 1" else int(rng.integers(2, 5))
    k = 1 if kind == "k = 1" else int(rng.integers(2, 5))
    chunks = int(rng.integers(2, 4)) if k > 1 else int(rng.integers(3, 6))
    T = k * chunks + (int(rng.integers(1, k)) if kind == "T not a multiple of k" else 0)
    params = {"emb.weight": rng.standard_normal((V, E)),
              **{f"rnn.{n}_l0": rng.uniform(-1, 1, (4 * H, m)) for n, m in
                 (("weight_ih", E), ("weight_hh", H))},
              "rnn.bias_ih_l0": rng.uniform(-1, 1, 4 * H), "rnn.bias_hh_l0": rng.uniform(-1, 1, 4 * H),
              "head.weight": rng.uniform(-1, 1, (V, H)), "head.bias": rng.uniform(-1, 1, V)}
    ids = rng.integers(0, V, size=(T + 1, B))
    return {"params": params, "xs": ids[:-1], "ys": ids[1:], "k": k, "lr": np.float64(0.5),
            "max_norm": np.float64(0.3), "h0": 0.5 * rng.standard_normal((1, B, H)),
            "c0": 0.5 * rng.standard_normal((1, B, H))}


def _no_carry(model, xs, ys, k, optimizer, max_norm, state=None):
    """train_tbptt's mistake: every chunk starts from zeros (or the initial state)."""
    from . import sequences

    losses = []
    for t in range(0, xs.shape[0], k):
        chunk, last = sequences.train_tbptt(model, xs[t:t + k], ys[t:t + k], k, optimizer, max_norm, state)
        losses += chunk
    return losses, last


def _tbptt_compare(inputs, out):
    attached = _as_array("attached", out["attached"])
    if attached.any():
        j = int(np.argmax(attached))
        raise AssertionError(_runs.NOT_DETACHED.format(j=j + 1, i=j))
    e = _expected("train_tbptt", inputs)
    T, k = inputs["xs"].shape[0], int(inputs["k"])
    n = len(e["losses"])
    losses = _as_array("the losses", out["losses"]).reshape(-1)
    if len(attached) != n or losses.shape != (n,):
        raise AssertionError(f"T = {T} steps in chunks of k = {k} are {n} chunks (the last may be shorter): "
                             f"the model was called {len(attached)} times and {losses.size} losses returned")
    if _rel(losses, e["losses"]) > GRAD_TOL:
        if _rel(losses[:1], e["losses"][:1]) > GRAD_TOL:
            hint = ("the first chunk's loss is wrong: start from the given state, mean cross-entropy of "
                    "the chunk")
        elif _rel(losses, _runs.tbptt_run(_no_carry, inputs)["losses"]) <= GRAD_TOL:
            hint = "the state is not carried from one chunk to the next: pass each chunk's final state on"
        else:
            hint = ("one optimiser step per chunk: zero_grad, backward, clip_grad_norm(model.parameters(), "
                    "max_norm), step")
        err = _rel(losses, e["losses"])
        pct = f"{100 * err:.0f}%" if err >= 0.01 else f"{err:.1e} (relative)"
        raise AssertionError(f"the chunk losses are off by {pct}: {hint}")
    if float(np.asarray(out["final_attached"])) > 0:
        raise AssertionError("the returned state is still attached to the last chunk's graph: return it "
                             "detached")
    for name in ("h_n", "c_n"):
        _expect(f"the final state's {name[0]}", out[name], _as_array("", e[name]), FORWARD_TOL,
                "return the state after the last chunk")
    for name, value in e["params"].items():
        _expect(f"the parameter {name} after the pass", out["params"][name], _as_array("", value), GRAD_TOL,
                "clip with clip_grad_norm(model.parameters(), max_norm) after backward, before the step")


check_tbptt = Check("train_tbptt", _tbptt_inputs, _tbptt_compare, kinds=TBPTT_KINDS, uses=("clip_grad_norm",))


MASK_KINDS = ("B = 1", "any sizes")


def _masked_inputs(seed):
    rng = np.random.default_rng(seed)
    T, V = int(rng.integers(3, 7)), int(rng.integers(2, 6))
    B = 1 if MASK_KINDS[seed % 2] == "B = 1" else int(rng.integers(2, 6))
    lengths = rng.integers(1, T + 1, size=B)
    lengths[0] = int(rng.integers(1, T))  # at least one padded sequence
    return {"logits": 2 * rng.standard_normal((T, B, V)), "targets": rng.integers(0, V, size=(T, B)),
            "lengths": lengths.astype(np.int64)}


def _masked_compare(inputs, out):
    e = _expected("masked_cross_entropy", inputs)
    loss = _as_array("the loss", out["loss"]).reshape(())
    logits, targets, lengths = inputs["logits"], inputs["targets"], inputs["lengths"]
    z = logits - logits.max(-1, keepdims=True)
    nll = -np.take_along_axis(z - np.log(np.exp(z).sum(-1, keepdims=True)), targets[..., None], -1)[..., 0]
    mask = np.arange(logits.shape[0])[:, None] < lengths[None, :]
    for variant, hint in (
        (nll.mean(), "the padded steps count in your loss: average over the real tokens only "
                     "(t < lengths[b]), padding must not count"),
        ((nll * mask).sum() / nll.size, "you divide by T * B: divide by the number of real tokens, "
                                         "lengths.sum()"),
        ((nll * mask).sum(), "that is the sum over the real tokens: take the mean (divide by lengths.sum())"),
    ):
        same = abs(float(loss) - variant) <= 1e-9 * max(1.0, abs(variant))
        if same and abs(variant - float(e["loss"])) > 1e-9:
            raise AssertionError(hint)
    _expect("the loss", loss, _as_array("", e["loss"]).reshape(()), FORWARD_TOL,
            "the mean over t < lengths[b] of -log softmax(logits[t, b])[targets[t, b]]")
    if out["dlogits"] is None:
        raise AssertionError("the loss does not depend on the logits")
    _expect("the gradient w.r.t. the logits", out["dlogits"], _as_array("", e["dlogits"]), GRAD_TOL,
            "the padded steps must get a zero gradient")


check_masked_loss = Check("masked_cross_entropy", _masked_inputs, _masked_compare, kinds=MASK_KINDS)


SAMPLE_KINDS = ("B = 1", "temperature below 1", "temperature above 1")


def _sample_inputs(seed):
    rng = np.random.default_rng(seed)
    kind = SAMPLE_KINDS[seed % 3]
    B, V = (1 if kind == "B = 1" else int(rng.integers(2, 6))), int(rng.integers(3, 8))
    low = kind == "temperature below 1" or (kind == "B = 1" and rng.uniform() < 0.5)
    temperature = rng.uniform(0.3, 0.8) if low else rng.uniform(1.5, 3.0)
    return {"logits": 2 * rng.standard_normal((B, V)), "temperature": np.float64(temperature),
            "seed": int(rng.integers(0, 2**31))}


def _softmax(z):
    z = z - z.max(-1, keepdims=True)
    return np.exp(z) / np.exp(z).sum(-1, keepdims=True)


def _sample_compare(inputs, out):
    e = _expected("sample_next", inputs)
    probs, logits, t = _as_array("probs", out["probs"]), inputs["logits"], float(inputs["temperature"])
    expected = _as_array("", e["probs"])
    if probs.shape != expected.shape:
        raise AssertionError(f"probs has shape {probs.shape}, expected {expected.shape} (B, V)")
    for variant, hint in (
        (_softmax(logits), "the temperature is ignored: probs = softmax(logits / temperature)"),
        (_softmax(logits * t), "you multiply the logits by the temperature: divide them"),
    ):
        if _rel(probs, variant) <= FORWARD_TOL:
            raise AssertionError(hint)
    _expect("probs", probs, expected, FORWARD_TOL, "probs = softmax(logits / temperature) over the last axis")
    ids = _as_array("ids", out["ids"]).reshape(-1)
    if ids.shape != (probs.shape[0],) or not np.array_equal(ids, _as_array("", e["ids"])):
        raise AssertionError("the sampled ids differ from torch.multinomial(probs, 1, generator=generator)"
                             "[:, 0] (one draw per row with the given generator)")


check_sample_next = Check("sample_next", _sample_inputs, _sample_compare, kinds=SAMPLE_KINDS)


def _echo_inputs(seed):
    from . import sequences

    xs, ys = sequences.echo_streams(400, 8, np.random.default_rng([seed, 7]))
    return {"xs": xs.numpy(), "ys": ys.numpy()}


def _echo_model(cell, arrays):
    """The student's weights in lstmkit.sequences.CharModel (sizes read from the weights)."""
    import torch

    from . import sequences

    keys = ("emb.weight", "rnn.weight_ih_l0", "rnn.weight_hh_l0", "rnn.bias_ih_l0", "rnn.bias_hh_l0",
            "head.weight", "head.bias")
    if not isinstance(arrays, dict) or set(arrays) != set(keys):
        raise AssertionError(f"the {cell} model should be a CharModel(V, E, H, '{cell}') with parameters "
                             f"{', '.join(keys)}")
    V, E = _as_array("emb.weight", arrays["emb.weight"]).shape
    H = _as_array("rnn.weight_hh_l0", arrays["rnn.weight_hh_l0"]).shape[1]
    model = sequences.CharModel(V, E, H, cell)
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    got = {k: _as_array(k, v).shape for k, v in arrays.items()}
    if got != shapes or V != len(sequences.ECHO_CHARS):
        raise AssertionError(f"the {cell} model's parameters have shapes {got}, expected those of "
                             f"CharModel({len(sequences.ECHO_CHARS)}, E, H, '{cell}')")
    model.load_state_dict({k: torch.tensor(_as_array(k, v), dtype=torch.float32) for k, v in arrays.items()})
    return model.eval()


def _echo_component(cell, bound_name):
    def compare(inputs, out):
        import torch

        from . import sequences

        bound = getattr(sequences, bound_name)
        loss = sequences.validation_loss(_echo_model(cell, out[cell]), torch.tensor(inputs["xs"]),
                                         torch.tensor(inputs["ys"]))
        if not np.isfinite(loss) or loss > bound:
            raise AssertionError(f"the {cell.upper()}'s validation loss on a fresh text is {loss:.3f} "
                                 f"nats/char, expected below {bound} (remembering nothing of the key gives "
                                 "about 0.68): train longer or check your truncated BPTT")

    return compare


ECHO_COMPONENTS = {"lstm": _echo_component("lstm", "ECHO_BOUND"), "rnn": _echo_component("rnn", "RNN_BOUND")}
check_echo = Check("echo_training", _echo_inputs, _all_components(ECHO_COMPONENTS),
                   kinds=("a fresh validation text",), components=ECHO_COMPONENTS,
                   uses=("train_tbptt", "clip_grad_norm"), call_limit=False)

# The auto-graded test cells of each assignment, in notebook order, with their points: the one place the
# points live (assignments/make_notebooks.py writes them into the notebooks; the tests read them here).
POINTS = {
    "gates": {"test_sigmoid": 2, "test_gate_preactivations": 2, "test_gate_activations": 2,
              "test_cell_forward": 3},
    "bptt": {"test_cell_backward": 4, "test_backward": 4, "test_numerical_gradient": 2},
    "pytorch": {"test_cell": 3, "test_layer": 3, "test_adding": 3},
    "sequences": {"test_clip_grad_norm": 2, "test_train_tbptt": 3, "test_masked_cross_entropy": 2,
                  "test_sample_next": 2, "test_training": 3},
}

CHECKS = {
    c.name: c
    for c in (
        check_sigmoid,
        check_gate_preactivations,
        check_gate_activations,
        check_cell_forward,
        check_cell_backward,
        check_backward,
        check_numerical_gradient,
        check_torch_cell,
        check_torch_layer,
        check_adding,
        check_clip_grad_norm,
        check_tbptt,
        check_masked_loss,
        check_sample_next,
        check_echo,
    )
}
