"""Write the source notebooks of the course from this file: python assignments/make_notebooks.py

Each notebook is a list of cells. The helpers below attach nbgrader's cell metadata
(schema_version 3): `solution` cells hold code between ### BEGIN SOLUTION / ### END SOLUTION,
`tests` cells are autograded (hidden tests between ### BEGIN HIDDEN TESTS / ### END HIDDEN TESTS),
`written` cells are manually graded answers.
"""

import copy
from pathlib import Path

import nbformat

from lstmkit import grading

HERE = Path(__file__).resolve().parent
STUB_HINT = "# (the hint above says where to start)"


def _meta(grade_id, *, grade=False, solution=False, locked=False, points=None, task=False):
    meta = {"grade": grade, "grade_id": grade_id, "locked": locked, "schema_version": 3,
            "solution": solution, "task": task}
    if points is not None:
        meta["points"] = points
    return {"nbgrader": meta}


def rules(allowed, off_limits):
    """The paragraph every notebook states: what is off limits, how the checks score, keep the outputs."""
    return f"""
**Rules.** Keep the names and signatures of the functions. {allowed} Off limits: {off_limits}, and code
from another student; a part that uses them scores 0 and is flagged by the grader.

**How the checks score.** Each test cell runs your function on one input of each kind of sizes (for
example B = 1, H = 1, any sizes) and prints what fails; the grader runs more inputs of each kind with other
seeds. A part's points are in proportion to the kinds of sizes (and, for gradients, the outputs such as
`dx` and `dh_prev`) that pass on every input; the number the test cell shows is what the visible checks
give. A function that calls one of your earlier functions is also graded with a correct version of that
function in its place, so one mistake costs one part. `lstmkit check <notebook>.ipynb` runs the visible
checks as the grader does.

**Before you submit**, run *Kernel > Restart & Run All* and save the notebook **with its outputs**: the
plots and written answers are graded by hand from what your notebook shows.
"""


def md(text, grade_id=None):
    cell = nbformat.v4.new_markdown_cell(text.strip())
    if grade_id:
        cell.metadata = _meta(grade_id, locked=True)
    return cell


def code(text, grade_id):
    """Given code, read-only."""
    return nbformat.v4.new_code_cell(text.strip(), metadata=_meta(grade_id, locked=True))


def solution(text, grade_id):
    return nbformat.v4.new_code_cell(text.strip(), metadata=_meta(grade_id, solution=True))


def tests(text, grade_id, points):
    return nbformat.v4.new_code_cell(text.strip(), metadata=_meta(grade_id, grade=True, locked=True,
                                                                  points=points))


def check_tests(check, fn, grade_id, hidden_per_kind=2):
    """An autograded cell: `grading.Checks` on one visible seed per kind of sizes (B = 1, H = 1, ...,
    any sizes), then hidden_per_kind hidden seeds per kind; its last line shows the points earned,
    which nbgrader takes as partial credit."""
    kinds = grading.CHECKS[check].kinds
    (points,) = [p[grade_id] for p in grading.POINTS.values() if grade_id in p]
    lines = [f'checks = grading.Checks("{check}", points={points})']
    lines += [f"checks({fn}, seed={seed})  # {kind}" for seed, kind in enumerate(kinds)]
    lines += ["### BEGIN HIDDEN TESTS", f"for seed in range(100, {100 + hidden_per_kind * len(kinds)}):",
              f"    checks({fn}, seed=seed)", "### END HIDDEN TESTS", "checks.points()"]
    return tests("\n".join(lines), grade_id, points)


def written(text, grade_id, points):
    return nbformat.v4.new_markdown_cell(text.strip(), metadata=_meta(grade_id, grade=True, solution=True,
                                                                      points=points))


def build(cells):
    """The notebook of a list of cells, with stable cell ids (regenerating changes nothing)."""
    nb = nbformat.v4.new_notebook(cells=copy.deepcopy(cells))
    for k, cell in enumerate(nb.cells):
        cell.id = cell.metadata.get("nbgrader", {}).get("grade_id") or f"cell-{k:02d}"
    nb.metadata = {"kernelspec": {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"},
                   "language_info": {"name": "python"}}
    nbformat.validate(nb)
    return nb


def notebooks(steps=600):
    """assignment -> notebook, as written to source/<assignment>/<assignment>.ipynb."""
    out = {name: build(cells) for name, cells in (("gates", GATES), ("bptt", BPTT), ("pytorch", PYTORCH))}
    train = next(c for c in out["pytorch"].cells if c.id == "train")
    train.source = train.source.replace("STEPS_PLACEHOLDER", str(steps))
    return out


def write(assignment, nb):
    path = HERE / "source" / assignment / f"{assignment}.ipynb"
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    return path


# ============================================================================ 1. gates

GATES = [
    md("""
# Assignment 1: the LSTM gates (NumPy)

You will build one step of an LSTM cell (Hochreiter & Schmidhuber 1997, with the forget gate of
Gers et al. 2000) in NumPy, in PyTorch's parameter layout:

- `weight_ih` (4H, D), `weight_hh` (4H, H), `bias_ih` (4H,), `bias_hh` (4H,), rows in gate order **i, f, g, o**;
- $a = x W_{ih}^\\top + b_{ih} + h_{prev} W_{hh}^\\top + b_{hh}$, shape (B, 4H);
- $i = \\sigma(a_i)$, $f = \\sigma(a_f)$, $g = \\tanh(a_g)$, $o = \\sigma(a_o)$;
- $c = f \\odot c_{prev} + i \\odot g$ and $h = o \\odot \\tanh(c)$.

Fill in every cell that says `raise NotImplementedError`. The test cells below each part check your
function on random inputs against `lstmkit.reference`.
""" + rules("You may use NumPy, matplotlib and the given `init_params`.",
            "`lstmkit.reference` (other than `init_params`), `lstmkit.torch`, `torch`'s LSTM modules and "
            "functions"), "intro"),
    code("""
import numpy as np
import matplotlib.pyplot as plt

from lstmkit import grading
from lstmkit.reference import init_params
""", "imports"),
    md("""
## Part 1: a numerically stable sigmoid (2 points)

`1 / (1 + np.exp(-z))` overflows for `z = -1000` (NumPy warns and the grader counts the warning as a
failure). Write $\\sigma(z)$ so that it never computes `exp` of a large positive number.
""", "p1"),
    solution('''
def sigmoid(z):
    """Numerically stable logistic function 1 / (1 + exp(-z)).

    Inputs:
    - z: float array of any shape.
    Returns:
    - array of the same shape with values in [0, 1].
    """
    # Hint: e = exp(-|z|) lies in (0, 1]; write sigma(z) with e for z >= 0 and for z < 0 (np.where).
    ### BEGIN SOLUTION
    z = np.asarray(z, dtype=np.float64)
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1.0 / (1.0 + e), e / (1.0 + e))
    ### END SOLUTION
''', "sigmoid"),
    check_tests("sigmoid", "sigmoid", "test_sigmoid"),
    md("""
## Part 2: gate pre-activations and activations (2 + 2 points)

`gate_preactivations(x, h_prev, params)` returns $a$ of shape (B, 4H). `gate_activations(a)` splits
$a$ into its four H-wide blocks (order i, f, g, o) and returns the tuple `(i, f, g, o)`, each (B, H).
""", "p2"),
    solution('''
def gate_preactivations(x, h_prev, params):
    """a = x W_ih^T + b_ih + h_prev W_hh^T + b_hh.

    Inputs:
    - x: (B, D); h_prev: (B, H); params: dict with weight_ih (4H, D), weight_hh (4H, H),
      bias_ih (4H,), bias_hh (4H,).
    Returns:
    - a: (B, 4H).
    """
    # Hint: x @ W.T multiplies every row of x by W; both biases are added.
    ### BEGIN SOLUTION
    return x @ params["weight_ih"].T + params["bias_ih"] + h_prev @ params["weight_hh"].T + params["bias_hh"]
    ### END SOLUTION


def gate_activations(a):
    """Split a (B, 4H) into the gates.

    Returns:
    - (i, f, g, o), each (B, H): sigmoid, sigmoid, tanh, sigmoid of the four blocks.
    """
    # Hint: H = a.shape[1] // 4; block k is a[:, k * H:(k + 1) * H].
    ### BEGIN SOLUTION
    H = a.shape[1] // 4
    i = sigmoid(a[:, 0 * H:1 * H])
    f = sigmoid(a[:, 1 * H:2 * H])
    g = np.tanh(a[:, 2 * H:3 * H])
    o = sigmoid(a[:, 3 * H:4 * H])
    return i, f, g, o
    ### END SOLUTION
''', "gates"),
    check_tests("gate_preactivations", "gate_preactivations", "test_gate_preactivations"),
    check_tests("gate_activations", "gate_activations", "test_gate_activations"),
    md("""
## Part 3: one step of the cell (3 points)

`cell_forward(x, (h_prev, c_prev), params)` returns `(h, c), cache`, like `lstmkit.reference.cell_forward`.
Name the gates `i`, `f`, `g`, `o` and the new state `h`, `c`: the given line after your code builds the
cache from these names (any extra entries are up to you; assignment 2 uses the reference's cache).
""", "p3"),
    solution('''
def cell_forward(x, state, params):
    """One LSTM step.

    Inputs:
    - x: (B, D); state: (h_prev, c_prev), each (B, H); params: as above.
    Returns:
    - (h, c): each (B, H).
    - cache: dict of intermediate values.
    """
    h_prev, c_prev = state
    # Hint: use your two functions above, then the equations for c and h.
    ### BEGIN SOLUTION
    a = gate_preactivations(x, h_prev, params)
    i, f, g, o = gate_activations(a)
    c = f * c_prev + i * g
    h = o * np.tanh(c)
    ### END SOLUTION
    cache = dict(x=x, h_prev=h_prev, c_prev=c_prev, i=i, f=f, g=g, o=o, params=params)
    return (h, c), cache
''', "cell_forward"),
    check_tests("cell_forward", "cell_forward", "test_cell_forward"),
    md("""
## Part 4: remembering (3 points, graded by hand)

Set the biases so that $f \\approx 1$ and $i \\approx 0$ (for example `bias_ih[H:2H] = 10`,
`bias_ih[:H] = -10`), start from a cell state $c_0$ of your choice and feed 50 steps of random
inputs through your `cell_forward`. Plot $c_t$ (a few units) against $t$, and, on the same figure
or a second one, the same run with ordinary random biases. Then answer in the cell below the plot:

**Question.** What does the cell state do when $f \\approx 1$ and $i \\approx 0$, and why does that
let a gradient travel back over many steps? **Rubric (3 points):** 1 for the plot with both runs
labelled; 1 for the behaviour ($c_t \\approx c_{t-1}$: the inputs are ignored and $c_0$ is kept, while with
random biases $c_0$ is forgotten within a few steps); 1 for the reason
($\\partial c_t / \\partial c_{t-1} = f \\approx 1$, so the gradient along $c$ does not shrink).
""", "p4"),
    solution("""
### BEGIN SOLUTION
rng = np.random.default_rng(0)
D, H, T = 3, 4, 50
fig, ax = plt.subplots(1, 2, figsize=(9, 3), sharey=True)
for k, remember in enumerate([True, False]):
    params = init_params(D, H, rng=rng)
    if remember:
        params["bias_ih"][:H] = -10.0     # i ~ 0
        params["bias_ih"][H:2 * H] = 10.0  # f ~ 1
    h, c = np.zeros((1, H)), np.linspace(-1, 1, H)[None]
    cs = [c[0]]
    for t in range(T):
        (h, c), _ = cell_forward(rng.standard_normal((1, D)), (h, c), params)
        cs.append(c[0])
    ax[k].plot(np.array(cs))
    ax[k].set_title("f ~ 1, i ~ 0" if remember else "random biases")
    ax[k].set_xlabel("step t")
ax[0].set_ylabel("c_t")
plt.show()
### END SOLUTION
""", "plot_remember"),
    written("""
With $f \\approx 1$ and $i \\approx 0$ the update is $c_t \\approx c_{t-1}$: the cell ignores its inputs
and carries its state unchanged (the plot shows flat lines at $c_0$; with random biases $c_t$ follows
the inputs and forgets $c_0$ within a few steps). Because $\\partial c_t / \\partial c_{t-1} = f \\approx 1$,
a gradient flows back along the cell state without shrinking: this is the constant error carousel
of Hochreiter & Schmidhuber (1997). The hidden state $h_t = o \\odot \\tanh(c_t)$ can still read the
stored value through the output gate.
""", "answer_remember", 3),
]

# ============================================================================ 2. bptt

BPTT = [
    md("""
# Assignment 2: backpropagation through time (NumPy)

You will write the backward pass of one LSTM step and of a whole sequence (Williams & Peng 1990),
check it with finite differences, and measure how gradients shrink over time (Pascanu et al. 2013).
The forward pass is given: `lstmkit.reference.cell_forward` and `lstmkit.reference.forward`.
Their caches are dicts; a step cache has `x, h_prev, c_prev, i, f, g, o, tanh_c, params` and a
sequence cache has `xs`, `hs` and `cs` of shape (T+1, B, H) (index 0 is the initial state), the gates
`i, f, g, o` and `tanh_c` each (T, B, H), and `params`.
""" + rules("You may use NumPy, matplotlib and the given `cell_forward`, `forward` and `init_params`.",
            "`lstmkit.reference.cell_backward` and `backward`, `lstmkit.gradcheck`, `lstmkit.torch`, torch's "
            "autograd and LSTM modules"), "intro"),
    code("""
import numpy as np
import matplotlib.pyplot as plt

from lstmkit import grading
from lstmkit.reference import cell_forward, forward, init_params
""", "imports"),
    md("""
## Part 1: backward through one step (4 points)

`cell_backward((dh, dc), cache)` returns `dx, (dh_prev, dc_prev), grads` where `grads` has the keys
and shapes of `params`. Go backwards through the equations of the forward pass; $\\sigma'(a) = \\sigma(a)(1-\\sigma(a))$
and $\\tanh'(a) = 1 - \\tanh^2(a)$.
""", "p1"),
    solution('''
def dsigmoid(s):
    """Derivative of the sigmoid, given its output s = sigmoid(a)."""
    ### BEGIN SOLUTION
    return s * (1 - s)
    ### END SOLUTION


def cell_backward(dstate, cache):
    """Backward pass of one LSTM step.

    Inputs:
    - dstate: (dh, dc), each (B, H).
    - cache: from lstmkit.reference.cell_forward.
    Returns:
    - dx: (B, D); (dh_prev, dc_prev): each (B, H); grads: dict like params.
    """
    dh, dc = dstate
    x, h_prev, c_prev = cache["x"], cache["h_prev"], cache["c_prev"]
    i, f, g, o, tanh_c, p = (cache[k] for k in ("i", "f", "g", "o", "tanh_c", "params"))
    # Hint: first the total gradient reaching c (from dc and through h = o * tanh(c)), then the
    # gates, then da (B, 4H) in gate order i, f, g, o; the weight gradients are da.T @ inputs.
    ### BEGIN SOLUTION
    dc = dc + dh * o * (1 - tanh_c ** 2)
    do = dh * tanh_c
    di, dg, df = dc * g, dc * i, dc * c_prev
    dc_prev = dc * f
    da = np.concatenate([di * dsigmoid(i), df * dsigmoid(f), dg * (1 - g ** 2), do * dsigmoid(o)], axis=1)
    dx = da @ p["weight_ih"]
    dh_prev = da @ p["weight_hh"]
    grads = {"weight_ih": da.T @ x, "weight_hh": da.T @ h_prev,
             "bias_ih": da.sum(axis=0), "bias_hh": da.sum(axis=0)}
    ### END SOLUTION
    return dx, (dh_prev, dc_prev), grads
''', "cell_backward"),
    check_tests("cell_backward", "cell_backward", "test_cell_backward"),
    md("""
## Part 2: backward through the sequence (4 points)

`backward(dhs, (dh_T, dc_T), cache)` returns `dxs, (dh0, dc0), grads`. Walk the steps from $T-1$
down to $0$, build each step's cache from the sequence cache and call your `cell_backward`. Every
step uses the same parameters, so their gradients add up.
""", "p2"),
    solution('''
def backward(dhs, dstate_T, cache):
    """Backpropagation through time.

    Inputs:
    - dhs: (T, B, H) gradients w.r.t. every h_t; dstate_T: (dh_T, dc_T) each (B, H).
    - cache: from lstmkit.reference.forward.
    Returns:
    - dxs: (T, B, D); (dh0, dc0): each (B, H); grads: dict like params.
    """
    xs, hs, cs, p = cache["xs"], cache["hs"], cache["cs"], cache["params"]
    T = xs.shape[0]
    dh, dc = dstate_T
    dxs = np.zeros_like(xs)
    grads = {k: np.zeros_like(v) for k, v in p.items()}
    # Hint: the step cache at t has x = xs[t], h_prev = hs[t], c_prev = cs[t] and the gates [t].
    ### BEGIN SOLUTION
    for t in reversed(range(T)):
        step = dict(x=xs[t], h_prev=hs[t], c_prev=cs[t], i=cache["i"][t], f=cache["f"][t],
                    g=cache["g"][t], o=cache["o"][t], tanh_c=cache["tanh_c"][t], params=p)
        dxs[t], (dh, dc), step_grads = cell_backward((dh + dhs[t], dc), step)
        for k in grads:
            grads[k] += step_grads[k]
    ### END SOLUTION
    return dxs, (dh, dc), grads
''', "backward"),
    check_tests("backward", "backward", "test_backward"),
    md("""
## Part 3: a gradient check (2 points)

Write `numerical_gradient(f, x, eps)`: the central difference $(f(x+\\epsilon) - f(x-\\epsilon)) / 2\\epsilon$
for each entry of `x` in turn (`f()` takes no arguments and reads `x`, which you change in place and
restore). Then use it to check your `backward` on a small problem.
""", "p3"),
    solution('''
def numerical_gradient(f, x, eps=1e-5):
    """Central-difference gradient of the scalar f() w.r.t. the array x (changed in place, restored)."""
    grad = np.zeros_like(x)
    # Hint: np.ndindex(x.shape) gives every index of x.
    ### BEGIN SOLUTION
    for idx in np.ndindex(x.shape):
        old = x[idx]
        x[idx] = old + eps
        f_plus = f()
        x[idx] = old - eps
        f_minus = f()
        x[idx] = old
        grad[idx] = (f_plus - f_minus) / (2 * eps)
    ### END SOLUTION
    return grad
''', "numerical_gradient"),
    check_tests("numerical_gradient", "numerical_gradient", "test_numerical_gradient"),
    solution("""
# Check your backward against finite differences on L = sum(dhs * hs): for xs and every parameter print
# the relative error max|analytic - numeric| / max|numeric|. In float64 with eps = 1e-5 a correct backward
# gives errors around 1e-9 to 1e-7; above 1e-5 something is wrong (a wrong gate block gives 1e-1 or more).
### BEGIN SOLUTION
rng = np.random.default_rng(0)
params = init_params(3, 4, rng=rng)
xs = rng.standard_normal((5, 2, 3))
dhs = rng.standard_normal((5, 2, 4))
zero = (np.zeros((2, 4)), np.zeros((2, 4)))

def loss():
    return float(np.sum(dhs * forward(xs, None, params)[0]))

_, _, cache = forward(xs, None, params)
dxs, _, grads = backward(dhs, zero, cache)
for name, analytic in [("xs", dxs)] + [(k, grads[k]) for k in params]:
    target = xs if name == "xs" else params[name]
    numeric = numerical_gradient(loss, target)
    print(name, np.abs(analytic - numeric).max() / np.abs(numeric).max())
### END SOLUTION
""", "use_gradcheck"),
    md("""
## Part 4: vanishing gradients (3 points, graded by hand)

Run a sequence of T = 100 steps with only a loss on the last hidden state (`dhs` zero except
`dhs[-1]`), and plot the norm of the gradient w.r.t. each input $x_t$ against $t$ (log scale).
Compare the default initialisation with a forget-gate bias of 3 (`init_params(..., forget_bias=3.0)`,
see Jozefowicz et al. 2015). Then answer in the cell below the plot:

**Question.** How does $\\|\\partial L / \\partial x_t\\|$ change as $T - t$ grows, why, and what does a
forget-gate bias of 3 change? **Rubric (3 points):** 1 for the plot (log scale, both initialisations,
labelled); 1 for the decay (roughly geometric, by many orders of magnitude within a few tens of steps with the
default initialisation) and its cause (each step multiplies the gradient along $c$ by $f$, and along $h$
by Jacobians with gate derivatives); 1 for the effect of the bias ($f \\approx 0.95$, so the decay is far
slower and early inputs still get a usable gradient).
""", "p4"),
    solution("""
### BEGIN SOLUTION
rng = np.random.default_rng(1)
T, B, D, H = 100, 8, 4, 16
xs = rng.standard_normal((T, B, D))
for forget_bias in (0.0, 3.0):
    params = init_params(D, H, rng=np.random.default_rng(2), forget_bias=forget_bias)
    _, _, cache = forward(xs, None, params)
    dhs = np.zeros((T, B, H))
    dhs[-1] = 1.0
    dxs, _, _ = backward(dhs, (np.zeros((B, H)), np.zeros((B, H))), cache)
    plt.semilogy(np.linalg.norm(dxs.reshape(T, -1), axis=1), label=f"forget bias {forget_bias}")
plt.xlabel("step t")
plt.ylabel("|dL/dx_t|")
plt.legend()
plt.show()
### END SOLUTION
""", "plot_vanishing"),
    written("""
The gradient reaching $x_t$ shrinks roughly geometrically as $T - t$ grows: along the cell state each
step multiplies it by $f$, and along $h$ by products involving $W_{hh}$ and gate derivatives, so with
the default initialisation ($f \\approx 0.5$) it falls by many orders of magnitude within a few tens
of steps (Pascanu et al. 2013 analyse the same product of Jacobians). With a forget bias of 3,
$f \\approx 0.95$ and the decay is far slower, so early inputs still receive a usable gradient;
this is why Gers et al. (2000) and Jozefowicz et al. (2015) favour a positive forget bias.
""", "answer_vanishing", 3),
]

# ============================================================================ 3. pytorch

PYTORCH = [
    md("""
# Assignment 3: an LSTM in PyTorch

You will write an LSTM cell and a sequence layer as `torch.nn.Module`s with the same parameter names
and shapes as `torch.nn.LSTMCell` and a one-layer `torch.nn.LSTM` (time-major, `batch_first=False`),
so that loading an `nn.LSTM`'s weights into yours gives the same outputs. Then you will train it on
the adding problem of Hochreiter & Schmidhuber (1997).

Write the equations yourself with tensor operations: `torch.nn.LSTM`, `torch.nn.LSTMCell`, torch's
fused LSTM functions and `lstmkit`'s implementations are what your code is compared with.
""" + rules("You may use torch's tensor operations, `nn.Linear`, `nn.Parameter` and its optimisers. "
            "The training should take well under a minute.",
            "`torch.nn.LSTM`, `torch.nn.LSTMCell`, `torch.lstm`, `torch.lstm_cell` (and `torch._VF`), "
            "`lstmkit.torch` and `lstmkit.reference`"), "intro"),
    code("""
import numpy as np
import torch
from torch import nn

from lstmkit import grading

torch.manual_seed(0)
torch.set_num_threads(1)  # small matrices: one thread is fastest
""", "imports"),
    md("""
## Part 1: the cell (3 points)

`LSTMCell(input_size, hidden_size)` has parameters `weight_ih` (4H, D), `weight_hh` (4H, H), `bias_ih`
and `bias_hh` (4H,), initialised uniformly in $(-1/\\sqrt{H}, 1/\\sqrt{H})$ like PyTorch's.
`cell(x, (h, c))` returns `(h, c)`. Write the step as a function `lstm_step` that the layer can reuse.
""", "p1"),
    solution('''
def lstm_step(x, h_prev, c_prev, weight_ih, weight_hh, bias_ih, bias_hh):
    """One LSTM step on tensors: x (B, D), h_prev and c_prev (B, H). Returns (h, c), each (B, H)."""
    # Hint: a.chunk(4, dim=-1) splits a (B, 4H) into its i, f, g, o blocks.
    ### BEGIN SOLUTION
    a = x @ weight_ih.T + bias_ih + h_prev @ weight_hh.T + bias_hh
    a_i, a_f, a_g, a_o = a.chunk(4, dim=-1)
    i, f, g, o = torch.sigmoid(a_i), torch.sigmoid(a_f), torch.tanh(a_g), torch.sigmoid(a_o)
    c = f * c_prev + i * g
    h = o * torch.tanh(c)
    return h, c
    ### END SOLUTION


def _uniform(*shape, k):
    return nn.Parameter(torch.empty(*shape).uniform_(-k, k))


class LSTMCell(nn.Module):
    def __init__(self, input_size, hidden_size):
        super().__init__()
        self.input_size, self.hidden_size = input_size, hidden_size
        k = hidden_size ** -0.5
        # Hint: four nn.Parameters, made with _uniform(rows, cols, k=k).
        ### BEGIN SOLUTION
        self.weight_ih = _uniform(4 * hidden_size, input_size, k=k)
        self.weight_hh = _uniform(4 * hidden_size, hidden_size, k=k)
        self.bias_ih = _uniform(4 * hidden_size, k=k)
        self.bias_hh = _uniform(4 * hidden_size, k=k)
        ### END SOLUTION

    def forward(self, x, state):
        h_prev, c_prev = state
        ### BEGIN SOLUTION
        return lstm_step(x, h_prev, c_prev, self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh)
        ### END SOLUTION
''', "cell"),
    check_tests("torch_cell", "LSTMCell", "test_cell"),
    md("""
## Part 2: the layer (3 points)

`LSTM(input_size, hidden_size)` has the parameters of `nn.LSTM(input_size, hidden_size)`:
`weight_ih_l0`, `weight_hh_l0`, `bias_ih_l0`, `bias_hh_l0`. `lstm(xs, state=None)` takes xs of shape
(T, B, D) and an optional `(h0, c0)` each (1, B, H), and returns `output` (T, B, H) and `(h_n, c_n)`
each (1, B, H), like `nn.LSTM`.
""", "p2"),
    solution('''
class LSTM(nn.Module):
    def __init__(self, input_size, hidden_size):
        super().__init__()
        self.input_size, self.hidden_size = input_size, hidden_size
        k = hidden_size ** -0.5
        ### BEGIN SOLUTION
        self.weight_ih_l0 = _uniform(4 * hidden_size, input_size, k=k)
        self.weight_hh_l0 = _uniform(4 * hidden_size, hidden_size, k=k)
        self.bias_ih_l0 = _uniform(4 * hidden_size, k=k)
        self.bias_hh_l0 = _uniform(4 * hidden_size, k=k)
        ### END SOLUTION

    def forward(self, xs, state=None):
        T, B, _ = xs.shape
        if state is None:
            zeros = xs.new_zeros(1, B, self.hidden_size)
            state = (zeros, zeros)
        # Hint: loop over t with lstm_step, collect the h's and torch.stack them.
        ### BEGIN SOLUTION
        h, c = state[0][0], state[1][0]
        hs = []
        for t in range(T):
            h, c = lstm_step(xs[t], h, c, self.weight_ih_l0, self.weight_hh_l0, self.bias_ih_l0, self.bias_hh_l0)
            hs.append(h)
        return torch.stack(hs), (h[None], c[None])
        ### END SOLUTION
''', "layer"),
    check_tests("torch_layer", "LSTM", "test_layer"),
    md("""
## Part 3: the adding problem (3 points)

Each input sequence has two channels: random numbers in (0, 1) and a marker that is 1 at exactly two
steps. The target is the sum of the two marked numbers. `grading.adding_problem(T, B, rng)` makes a
batch: `xs` (T, B, 2), `ys` (B,). Always answering 1.0 gives a mean squared error of about 0.167.

Train your `LSTM` followed by a linear read-out of the last hidden state on sequences of length
T = 30 until the mean squared error on a fresh batch is below **0.01**. Then write
`predict(xs)` that takes a NumPy array (T, B, 2) and returns a NumPy array of B predictions.
Keep the training under a minute on a laptop CPU (Adam with a learning rate around 1e-2 works).
""", "p3"),
    solution('''
class Adder(nn.Module):
    def __init__(self, hidden_size=32):
        super().__init__()
        self.lstm = LSTM(2, hidden_size)
        self.readout = nn.Linear(hidden_size, 1)

    def forward(self, xs):
        _, (h_n, _) = self.lstm(xs)
        return self.readout(h_n[0]).squeeze(-1)


### BEGIN SOLUTION
model = Adder()
opt = torch.optim.Adam(model.parameters(), lr=1e-2)
rng = np.random.default_rng(0)
for step in range(STEPS_PLACEHOLDER):
    xs, ys = grading.adding_problem(30, 64, rng)
    loss = ((model(torch.from_numpy(xs)) - torch.from_numpy(ys)) ** 2).mean()
    opt.zero_grad()
    loss.backward()
    opt.step()
    if step % 100 == 0:
        print(f"step {step}: loss {loss.item():.4f}")
### END SOLUTION


def predict(xs):
    """xs: NumPy (T, B, 2). Returns NumPy (B,) predictions."""
    ### BEGIN SOLUTION
    with torch.no_grad():
        return model(torch.tensor(xs, dtype=torch.float32)).numpy()
    ### END SOLUTION
''', "train"),
    check_tests("adding", "predict", "test_adding"),
]


if __name__ == "__main__":
    import sys

    for name, nb in notebooks(int(sys.argv[1]) if len(sys.argv) > 1 else 600).items():
        print(write(name, nb))
