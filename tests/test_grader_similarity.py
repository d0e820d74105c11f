"""`lstmkit similarity`: a renamed copy of another student's code and a copy of the reference rank above
independent solutions (three honest gates solutions written in different styles); the report shows the
matching lines; nothing else in the course changes. No nbgrader call: the command reads files only."""

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
from grader_corpus import COURSE, ROOT

INDEPENDENT = [
    {  # honest 1: clipping, np.split
        "plot_remember": """params = init_params(3, 4, rng=np.random.default_rng(1))
params["bias_ih"][4:8] = 8.0
params["bias_ih"][:4] = -8.0
state = (np.zeros((1, 4)), np.ones((1, 4)))
trace = []
for step in range(40):
    state, _ = cell_forward(np.random.default_rng(step).normal(size=(1, 3)), state, params)
    trace.append(state[1][0].copy())
plt.plot(trace)
plt.xlabel("t")
plt.show()
""",
        "sigmoid": '''def sigmoid(z):
    z = np.asarray(z, dtype=float)
    out = np.empty_like(z)
    pos = z >= 0
    out[pos] = 1 / (1 + np.exp(-z[pos]))
    ez = np.exp(z[~pos])
    out[~pos] = ez / (1 + ez)
    return out
''',
        "gates": '''def gate_preactivations(x, h_prev, params):
    W, U = params["weight_ih"], params["weight_hh"]
    bias = params["bias_ih"] + params["bias_hh"]
    return np.dot(x, W.T) + np.dot(h_prev, U.T) + bias


def gate_activations(a):
    blocks = np.split(a, 4, axis=1)
    return sigmoid(blocks[0]), sigmoid(blocks[1]), np.tanh(blocks[2]), sigmoid(blocks[3])
''',
        "cell_forward": '''def cell_forward(x, state, params):
    h_prev, c_prev = state
    i, f, g, o = gate_activations(gate_preactivations(x, h_prev, params))
    c = c_prev * f + g * i
    h = np.tanh(c) * o
    cache = dict(x=x, h_prev=h_prev, c_prev=c_prev, i=i, f=f, g=g, o=o, params=params)
    return (h, c), cache
''',
    },
    {  # honest 2: tanh identity, a loop over the gates
        "plot_remember": """gen = np.random.default_rng(7)
for label, fb in (("remember", 10.0), ("forget", -10.0)):
    p = init_params(3, 4, rng=gen)
    p["bias_hh"][4:8] += fb
    h, c = np.zeros((1, 4)), np.full((1, 4), 0.5)
    values = [c[0, 0]]
    for _ in range(30):
        (h, c), _ = cell_forward(gen.standard_normal((1, 3)), (h, c), p)
        values.append(c[0, 0])
    plt.plot(values, label=label)
plt.legend()
plt.show()
""",
        "sigmoid": '''def sigmoid(z):
    return 0.5 * (1.0 + np.tanh(0.5 * np.asarray(z, dtype=np.float64)))
''',
        "gates": '''def gate_preactivations(x, h_prev, params):
    total = np.einsum("bd,kd->bk", x, params["weight_ih"])
    total = total + np.einsum("bh,kh->bk", h_prev, params["weight_hh"])
    return total + params["bias_ih"][None, :] + params["bias_hh"][None, :]


def gate_activations(a):
    n = a.shape[-1] // 4
    acts = []
    for k, fn in enumerate((sigmoid, sigmoid, np.tanh, sigmoid)):
        acts.append(fn(a[..., k * n:(k + 1) * n]))
    return tuple(acts)
''',
        "cell_forward": '''def cell_forward(x, state, params):
    h_prev, c_prev = state
    pre = gate_preactivations(x, h_prev, params)
    gi, gf, gg, go = gate_activations(pre)
    c_next = gf * c_prev
    c_next += gi * gg
    h_next = go * np.tanh(c_next)
    i, f, g, o = gi, gf, gg, go
    c, h = c_next, h_next
    cache = dict(x=x, h_prev=h_prev, c_prev=c_prev, i=i, f=f, g=g, o=o, params=params)
    return (h, c), cache
''',
    },
    {  # honest 3 (the one that gets copied): explicit clipping, reshape
        "plot_remember": """P = init_params(3, 4, rng=np.random.default_rng(3))
P["bias_ih"][:4], P["bias_ih"][4:8] = -9.0, 9.0
hc = (np.zeros((1, 4)), np.linspace(-0.5, 0.5, 4)[None, :])
cells = np.zeros((25, 4))
for t in range(25):
    hc, _ = cell_forward(np.ones((1, 3)) * np.sin(t), hc, P)
    cells[t] = hc[1][0]
fig, axis = plt.subplots()
axis.plot(cells)
axis.set_title("c over time")
plt.show()
""",
        "sigmoid": '''def sigmoid(z):
    zz = np.clip(np.asarray(z, dtype=np.float64), -500.0, 500.0)
    result = np.where(zz < 0, np.exp(zz) / (np.exp(zz) + 1.0), 1.0 / (np.exp(-zz) + 1.0))
    return result
''',
        "gates": '''def gate_preactivations(x, h_prev, params):
    stacked = np.concatenate([x, h_prev], axis=1)
    weights = np.concatenate([params["weight_ih"], params["weight_hh"]], axis=1)
    return stacked @ weights.T + (params["bias_ih"] + params["bias_hh"])


def gate_activations(a):
    batch, four_h = a.shape
    parts = a.reshape(batch, 4, four_h // 4)
    ig, fg, gg, og = parts[:, 0], parts[:, 1], parts[:, 2], parts[:, 3]
    return sigmoid(ig), sigmoid(fg), np.tanh(gg), sigmoid(og)
''',
        "cell_forward": '''def cell_forward(x, state, params):
    h_prev, c_prev = state
    acts = gate_activations(gate_preactivations(x, h_prev, params))
    i, f, g, o = acts
    c = np.add(np.multiply(f, c_prev), np.multiply(i, g))
    h = np.multiply(o, np.tanh(c))
    cache = dict(x=x, h_prev=h_prev, c_prev=c_prev, i=i, f=f, g=g, o=o, params=params)
    return (h, c), cache
''',
    },
]
RENAMES = [("zz", "val"), ("result", "s"), ("stacked", "xh"), ("weights", "Wcat"), ("parts", "blk"),
           ("batch", "nb"), ("four_h", "width"), ("acts", "gates_out"), ("ig", "gi"), ("fg", "gf"),
           ("og", "go"), ("gg", "gc")]


def notebook(source_nb, codes):
    nb = nbformat.from_dict(source_nb)
    for c in nb.cells:
        gid = c.metadata.get("nbgrader", {}).get("grade_id")
        if gid in codes:
            c.source = codes[gid]
    return nb


def build(root, src):
    course = Path(root)
    shutil.copytree(src / "source" / "gates", course / "source" / "gates")
    source_nb = nbformat.read(course / "source" / "gates" / "gates.ipynb", 4)
    subs = {f"honest{k + 1}": notebook(source_nb, codes) for k, codes in enumerate(INDEPENDENT)}
    renamed = {}
    for gid, code in INDEPENDENT[2].items():
        for old, new in RENAMES:
            code = code.replace(old, new)
        renamed[gid] = "# my own work\n" + code
    subs["renamed"] = notebook(source_nb, renamed)
    subs["reference_copy"] = nbformat.from_dict(source_nb)
    for student, nb in subs.items():
        path = course / "submitted" / student / "gates" / "gates.ipynb"
        path.parent.mkdir(parents=True)
        nbformat.write(nb, path)
    return course


def tree(course):
    return {p.relative_to(course).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(course.rglob("*")) if p.is_file() and not p.name.startswith("similarity-")}


def test_copies_rank_above_independent_solutions(tmp_path, page_width):
    course = build(tmp_path / "course", COURSE)
    (course / "grades-gates.csv").write_text("student,total\nhonest1,9\n")
    before = tree(course)
    r = subprocess.run([sys.executable, "-m", "lstmkit.cli", "similarity", "gates", "--course", str(course)],
                       cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    assert tree(course) == before  # it reports; it changes nothing
    report = json.loads((course / "similarity-gates.json").read_text())
    pairs = report["pairs"]
    assert {pairs[0]["a"], pairs[0]["b"]} == {"honest3", "renamed"} and pairs[0]["score"] > 0.9
    honest = [p["score"] for p in pairs if "reference_copy" not in (p["a"], p["b"])][1:]
    assert max(honest) < 0.3, pairs
    near = report["published"]
    assert near[0]["student"] == "reference_copy" and near[0]["score"] > 0.9
    assert near[0]["source"] == "reference solution (source notebook)"
    assert max(p["score"] for p in near[1:]) < 0.3, near
    page = (course / "similarity-gates.html").read_text()
    assert "<mark>" in page and "Wcat" in page and "<script" not in page
    assert r.stdout.splitlines()[1].split() == [f"{pairs[0]['score']:.0%}", "honest3", "renamed"]
    assert "comparing" in r.stderr  # progress on a class of many students (n (n - 1) / 2 pairs)

    width, _ = page_width(course / "similarity-gates.html", 390)  # side-by-side code stacks on a phone
    assert width <= 390, width
