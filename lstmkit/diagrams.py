"""Diagrams of the book, drawn by code: the LSTM cell and its variants, unrolled networks, BPTT,
stacked and bidirectional layers, model shapes, gate heatmaps and one animation.

One visual language everywhere: each gate has its colour (i orange, f blue, g green, o purple),
the cell state is a thick dark line, operations are circles (⊙, +), squashing functions are
boxes (σ, tanh). Fonts are large so that the labels stay readable on a 390 px phone screen.

Every drawing function returns a matplotlib Figure made without pyplot (nothing to close; a
notebook shows it as a PNG when it is the value of a cell); animate_cell returns HTML.
Book notation: x, h, c; gates i, f, g, o.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from html import escape as html_escape

import numpy as np
from matplotlib.animation import FuncAnimation
from matplotlib.colors import LinearSegmentedColormap
from matplotlib.figure import Figure
from matplotlib.patches import Circle, FancyArrowPatch, FancyBboxPatch

# ----------------------------------------------------------------------------- style

COLORS = {  # Okabe-Ito, distinguishable with colour-vision deficiencies
    "i": "#E69F00", "f": "#0072B2", "g": "#009E73", "o": "#CC79A7",
    "c": "#222222", "h": "#555555", "x": "#555555", "grad": "#D55E00", "cell": "#F2F2F2",
    "r": "#0072B2", "z": "#E69F00", "n": "#009E73",
}
FONT = 24          # labels of wires (x_t, h_t, c_t ...)
FONT_BOX = 20      # text inside boxes and circles
FONT_VALUE = 14    # numbers printed on an annotated cell
LW = 2.6           # wire width
UNIT = 0.6         # inches per unit of diagram coordinates


class Diagram(Figure):
    """A matplotlib Figure that shows itself as a PNG in a notebook, with or without pyplot."""

    def _repr_png_(self):
        buf = io.BytesIO()
        self.savefig(buf, format="png", bbox_inches="tight")
        return buf.getvalue()


@dataclass
class Node:
    """A box or circle at (x, y) of width w and height h; its sides are where wires attach."""
    x: float
    y: float
    w: float
    h: float

    @property
    def top(self):
        return (self.x, self.y + self.h / 2)

    @property
    def bottom(self):
        return (self.x, self.y - self.h / 2)

    @property
    def left(self):
        return (self.x - self.w / 2, self.y)

    @property
    def right(self):
        return (self.x + self.w / 2, self.y)


class Canvas:
    """An axes in diagram units (1 unit = UNIT inches) with the drawing primitives."""

    def __init__(self, x0, x1, y0, y1, unit=UNIT, dpi=100):
        self.fig = Diagram(figsize=((x1 - x0) * unit, (y1 - y0) * unit), dpi=dpi)
        self.ax = self.fig.add_axes((0, 0, 1, 1))
        self.ax.set_xlim(x0, x1)
        self.ax.set_ylim(y0, y1)
        self.ax.set_aspect("equal")
        self.ax.axis("off")

    def box(self, x, y, text, color="#777777", w=1.1, h=0.8, fontsize=FONT_BOX, fill=None, lw=2.0):
        """A rounded box with centred text; fill defaults to a light tint of color."""
        fill = _tint(color) if fill is None else fill
        self.ax.add_patch(FancyBboxPatch((x - w / 2, y - h / 2), w, h, fc=fill, ec=color, lw=lw, zorder=3,
                                         boxstyle="round,pad=0,rounding_size=0.15"))
        if text:
            self.ax.text(x, y, text, ha="center", va="center", fontsize=fontsize, zorder=4)
        return Node(x, y, w, h)

    def op(self, x, y, symbol, r=0.3, color="#222222"):
        """A circle with an operation symbol: ⊙, +, 1−."""
        self.ax.add_patch(Circle((x, y), r, fc="white", ec=color, lw=2.0, zorder=3))
        size = FONT_BOX if len(symbol) == 1 else FONT_BOX - 5
        self.ax.text(x, y, symbol, ha="center", va="center_baseline", fontsize=size, zorder=4)
        return Node(x, y, 2 * r, 2 * r)

    def wire(self, *points, color="#555555", lw=LW, arrow=True, ls="-", zorder=2, alpha=1.0):
        """A polyline through points; an arrow head at the last point if arrow."""
        xs, ys = zip(*points, strict=True)
        if len(points) > 2 or not arrow:
            self.ax.plot(xs[:-1] if arrow else xs, ys[:-1] if arrow else ys, color=color, lw=lw, ls=ls,
                         solid_capstyle="butt", zorder=zorder, alpha=alpha)
        if arrow:
            head = FancyArrowPatch(points[-2], points[-1], arrowstyle="-|>", mutation_scale=16 + 2 * lw,
                                   color=color, lw=lw, ls=ls, shrinkA=0, shrinkB=0, zorder=zorder,
                                   alpha=alpha)
            self.ax.add_patch(head)

    def dot(self, x, y, color="#555555"):
        """A junction where a wire splits."""
        self.ax.add_patch(Circle((x, y), 0.08, fc=color, ec=color, zorder=3))

    def label(self, x, y, text, color="#222222", ha="center", va="center", fontsize=FONT, **kw):
        return self.ax.text(x, y, text, ha=ha, va=va, fontsize=fontsize, color=color, zorder=5, **kw)

    def value(self, x, y, key, vector, ha="center", va="center", fontsize=FONT_VALUE):
        """Numbers of a wire, one per unit, stacked in a column; the text artist gets gid 'value:key'."""
        text = format_values(vector)
        t = self.ax.text(x, y, text, ha=ha, va=va, fontsize=fontsize, family="DejaVu Sans Mono", zorder=6,
                         linespacing=1.1, bbox=dict(boxstyle="round,pad=0.2", fc="white", ec="#BBBBBB", lw=1))
        t.set_gid(f"value:{key}")
        return t


def _tint(color, amount=0.78):
    """color mixed with white (amount 1 = white)."""
    from matplotlib.colors import to_rgb
    r, g, b = to_rgb(color)
    return (r + (1 - r) * amount, g + (1 - g) * amount, b + (1 - b) * amount)


def format_values(vector):
    """The text printed for a wire's values: each entry with 2 decimals, one per line."""
    v = np.asarray(vector, dtype=float).ravel()
    return "\n".join(f"{x:+.2f}".replace("-", "−") for x in v)


def parse_values(text):
    """Inverse of format_values (for tests and readers of the figure): the numbers of a label."""
    return np.array([float(s.replace("−", "-")) for s in text.split("\n")])


def _gate_cmap(color):
    return LinearSegmentedColormap.from_list("gate", ["white", color])


# ----------------------------------------------------------------------------- the LSTM cell and its variants

# Positions shared by lstm_cell, peephole_cell and coupled_cell (diagram units).
_Y_C, _Y_BUS, _Y_GATE, _Y_IG = 6.1, 1.0, 2.6, 4.5
_X_GATE = {"f": 2.6, "i": 4.4, "g": 6.2, "o": 8.0}
_X_IG, _X_TANH_C, _X_OUT = 5.3, 9.9, 12.0
_CELL_BOX = (0.6, 0.3, 10.5, 6.6)      # x, y, width, height of the grey cell outline


def _cell_outline(cv):
    x, y, w, h = _CELL_BOX
    cv.ax.add_patch(FancyBboxPatch((x, y), w, h, boxstyle="round,pad=0,rounding_size=0.4",
                                   fc=COLORS["cell"], ec="#999999", lw=1.5, zorder=0))


def _lstm_like(variant="lstm", values=None, highlight=False):
    """Draw an LSTM-like cell. variant: 'lstm', 'peephole' or 'coupled'. values: dict of vectors
    (x, h_prev, c_prev, i, f, g, o, c, tanh_c, h) printed on the wires, or None. highlight: mark
    the path from c_{t-1} to c_t."""
    cv = Canvas(-3.0, 13.6, -1.3, 7.8)
    _cell_outline(cv)
    if highlight:
        cv.ax.plot([-0.9, _X_OUT - 0.2], [_Y_C, _Y_C], color=COLORS["grad"], lw=18, alpha=0.3,
                   solid_capstyle="round", zorder=1)
        cv.label(_X_IG + 1.6, 7.0, "only ⊙ $f$ and +", color=COLORS["grad"], fontsize=FONT - 4,
                 ha="left", va="bottom")
    X = _X_GATE
    fn = {"f": "σ", "i": "σ", "g": "tanh", "o": "σ"}
    gates = {}
    for k in "figo":
        if variant == "coupled" and k == "i":
            continue
        gates[k] = cv.box(X[k], _Y_GATE, fn[k], COLORS[k], w=1.1 if fn[k] == "σ" else 1.3)
    # inputs: h_{t-1} along the bus, x_t from below
    cv.wire((-0.9, _Y_BUS), (X["o"], _Y_BUS), color=COLORS["h"], arrow=False)
    cv.wire((1.5, -0.6), (1.5, _Y_BUS), color=COLORS["x"], arrow=False)
    cv.dot(1.5, _Y_BUS, COLORS["x"])
    cv.label(-1.0, _Y_BUS, "$h_{t-1}$", ha="right")
    cv.label(1.5, -0.75, "$x_t$", va="top")
    for k, node in gates.items():
        cv.wire((X[k], _Y_BUS), node.bottom, color=COLORS["h"])
        if k != "o":
            cv.dot(X[k], _Y_BUS, COLORS["h"])
    # cell-state line: c_{t-1} ⊙ f, + i ⊙ g
    mul_f = cv.op(X["f"], _Y_C, "⊙")
    add = cv.op(_X_IG, _Y_C, "+")
    mul_ig = cv.op(_X_IG, _Y_IG, "⊙")
    thick = LW + 1.6
    cv.wire((-0.9, _Y_C), mul_f.left, color=COLORS["c"], lw=thick)
    cv.wire(mul_f.right, add.left, color=COLORS["c"], lw=thick)
    cv.wire(add.right, (_X_OUT - 0.2, _Y_C), color=COLORS["c"], lw=thick)
    cv.label(-1.0, _Y_C, "$c_{t-1}$", ha="right")
    cv.label(_X_OUT - 0.1, _Y_C, "$c_t$", ha="left")
    cv.wire(gates["f"].top, mul_f.bottom, color=COLORS["f"])
    cv.label(X["f"] - 0.15, 4.1, "$f$", color=COLORS["f"], ha="right")
    cv.wire(mul_ig.top, add.bottom, color=COLORS["c"])
    if variant == "coupled":
        one_minus = cv.op(X["i"], 3.7, "1−", r=0.36)
        cv.dot(X["f"], 3.7, COLORS["f"])
        cv.wire((X["f"], 3.7), one_minus.left, color=COLORS["f"])
        cv.wire(one_minus.top, (X["i"], _Y_IG), mul_ig.left, color=COLORS["i"])
        cv.label(X["i"] - 0.15, _Y_IG + 0.3, "$i$", color=COLORS["i"], ha="right")
    else:
        cv.wire(gates["i"].top, (X["i"], _Y_IG), mul_ig.left, color=COLORS["i"])
        cv.label(X["i"] + 0.15, 3.7, "$i$", color=COLORS["i"], ha="left")
    cv.wire(gates["g"].top, (X["g"], _Y_IG), mul_ig.right, color=COLORS["g"])
    cv.label(X["g"] - 0.15, 3.6, "$g$", color=COLORS["g"], ha="right")
    # output: h = o ⊙ tanh(c)
    tanh_c = cv.box(_X_TANH_C, 4.6, "tanh", "#777777", w=1.3, fill="white")
    mul_o = cv.op(_X_TANH_C, _Y_GATE, "⊙")
    cv.dot(_X_TANH_C, _Y_C, COLORS["c"])
    cv.wire((_X_TANH_C, _Y_C), tanh_c.top, color=COLORS["c"])
    cv.wire(tanh_c.bottom, mul_o.top, color=COLORS["c"])
    cv.wire(gates["o"].right, mul_o.left, color=COLORS["o"])
    cv.label((gates["o"].right[0] + mul_o.left[0]) / 2, _Y_GATE + 0.15, "$o$", color=COLORS["o"], va="bottom")
    cv.wire(mul_o.bottom, (_X_TANH_C, _Y_BUS), (_X_OUT - 0.2, _Y_BUS), color=COLORS["h"])
    cv.label(_X_OUT - 0.1, _Y_BUS, "$h_t$", ha="left")
    if variant == "peephole":
        pc = dict(color=COLORS["c"], lw=1.8, ls=(0, (3, 2)))
        cv.dot(0.1, _Y_C, COLORS["c"])
        cv.wire((0.1, _Y_C), (0.1, 1.8), (3.6, 1.8), (3.6, _Y_GATE), gates["i"].left, **pc)
        cv.wire((0.1, _Y_GATE), gates["f"].left, **pc)
        cv.dot(X["o"], _Y_C, COLORS["c"])
        cv.wire((X["o"], _Y_C), gates["o"].top, **pc)
    if values is not None:
        _annotate_lstm(cv, values)
    return cv


# where each wire's numbers go: key -> (x, y, ha, va)
_VALUE_SPOTS = {
    "c_prev": (-1.7, _Y_C - 0.45, "center", "top"), "h_prev": (-1.7, _Y_BUS - 0.45, "center", "top"),
    "x": (1.9, -0.45, "left", "center"),
    "f": (_X_GATE["f"] + 0.2, 5.0, "left", "center"), "i": (_X_GATE["i"] - 0.2, 3.55, "right", "center"),
    "g": (_X_GATE["g"] + 0.2, 3.8, "left", "center"), "o": (9.05, _Y_GATE - 0.35, "center", "top"),
    "f*c_prev": (3.95, _Y_C + 0.35, "center", "bottom"), "i*g": (_X_IG - 0.3, 5.3, "right", "center"),
    "tanh_c": (_X_TANH_C + 0.2, 3.5, "left", "center"),
    "c": (_X_OUT + 0.3, _Y_C - 0.45, "center", "top"), "h": (_X_OUT + 0.3, _Y_BUS - 0.45, "center", "top"),
}


def _annotate_lstm(cv, v):
    """Print the numbers of one step on the wires of an lstm_cell drawing."""
    v = dict(v)
    v["f*c_prev"] = np.asarray(v["f"]) * np.asarray(v["c_prev"])
    v["i*g"] = np.asarray(v["i"]) * np.asarray(v["g"])
    for key, (x, y, ha, va) in _VALUE_SPOTS.items():
        cv.value(x, y, key, v[key], ha=ha, va=va)


def values_from_cache(cache, b=0):
    """The wire values of example b of a reference.cell_forward cache (dict of 1-D arrays)."""
    keys = ("x", "h_prev", "c_prev", "i", "f", "g", "o", "tanh_c")
    v = {k: np.asarray(cache[k])[b] for k in keys}
    v["c"] = v["f"] * v["c_prev"] + v["i"] * v["g"]
    v["h"] = v["o"] * v["tanh_c"]
    return v


def lstm_cell(values=None, b=0, highlight=False):
    """The LSTM cell: cell-state line on top, gates i, f, g, o with σ, σ, tanh, σ, h = o ⊙ tanh(c).

    Inputs:
    - values: None, or the cache of lstmkit.reference.cell_forward (or a dict as from
      values_from_cache); then every wire is annotated with its numbers, one per unit.
    - b: which example of the batch to print.
    - highlight: mark the path from c_{t-1} to c_t (it passes only ⊙ f and +).
    Returns: a matplotlib Figure.
    """
    if values is not None and "params" in values:
        values = values_from_cache(values, b)
    return _lstm_like("lstm", values, highlight).fig


def peephole_cell():
    """The peephole LSTM (Gers & Schmidhuber 2000): i and f also read c_{t-1}, o reads c_t
    (dashed wires, diagonal weights p_i, p_f, p_o), as lstmkit.variants.peephole_step."""
    return _lstm_like("peephole").fig


def coupled_cell():
    """The coupled input-forget gate cell (CIFG): no input gate of its own, i = 1 − f,
    as lstmkit.variants.coupled_step."""
    return _lstm_like("coupled").fig


def gru_cell():
    """The GRU in torch.nn.GRU's convention (lstmkit.variants.gru_step):
    r, z = σ(...), n = tanh(W_in x + b_in + r ⊙ (W_hn h_{t-1} + b_hn)), h = (1 − z) ⊙ n + z ⊙ h_{t-1}."""
    cv = Canvas(-3.0, 13.6, -1.3, 7.8)
    _cell_outline(cv)
    y_top, y_n, y_mix = _Y_C, 3.3, 5.0
    z = cv.box(3.0, _Y_GATE, "σ", COLORS["z"])
    r = cv.box(4.8, _Y_GATE, "σ", COLORS["r"])
    n = cv.box(8.8, y_n, "tanh", COLORS["n"], w=1.3)
    w_hn = cv.box(6.6, 1.9, "$W_{hn}h$", "#777777", w=1.4, h=0.7, fontsize=FONT_BOX - 3, fill="white")
    w_in = cv.box(8.8, 1.9, "$W_{in}x$", "#777777", w=1.4, h=0.7, fontsize=FONT_BOX - 3, fill="white")
    mul_z = cv.op(3.0, y_top, "⊙")
    add = cv.op(8.8, y_top, "+")
    one_minus = cv.op(5.4, y_mix, "1−", r=0.36)
    mul_n = cv.op(8.8, y_mix, "⊙")
    mul_r = cv.op(6.6, y_n, "⊙")
    thick = LW + 1.6
    # h_{t-1} line on top, and down into the bus
    cv.wire((-0.9, y_top), mul_z.left, color=COLORS["c"], lw=thick)
    cv.wire(mul_z.right, add.left, color=COLORS["c"], lw=thick)
    cv.wire(add.right, (_X_OUT - 0.2, y_top), color=COLORS["c"], lw=thick)
    cv.label(-1.0, y_top, "$h_{t-1}$", ha="right")
    cv.label(_X_OUT - 0.1, y_top, "$h_t$", ha="left")
    cv.dot(1.2, y_top, COLORS["c"])
    cv.wire((1.2, y_top), (1.2, _Y_BUS), (w_in.x, _Y_BUS), color=COLORS["h"], arrow=False)
    cv.wire((1.9, -0.6), (1.9, _Y_BUS), color=COLORS["x"], arrow=False)
    cv.dot(1.9, _Y_BUS, COLORS["x"])
    cv.label(1.9, -0.75, "$x_t$", va="top")
    for node in (z, r, w_hn, w_in):
        cv.wire((node.x, _Y_BUS), node.bottom, color=COLORS["h"])
        if node is not w_in:
            cv.dot(node.x, _Y_BUS, COLORS["h"])
    # z keeps z of the old state and takes 1 - z of the candidate n
    cv.wire(z.top, mul_z.bottom, color=COLORS["z"])
    cv.label(2.85, 3.7, "$z$", color=COLORS["z"], ha="right")
    cv.dot(3.0, y_mix, COLORS["z"])
    cv.wire((3.0, y_mix), one_minus.left, color=COLORS["z"])
    cv.wire(one_minus.right, mul_n.left, color=COLORS["z"])
    # r gates the recurrent part of the candidate only
    cv.wire(r.top, (r.x, y_n), mul_r.left, color=COLORS["r"])
    cv.label(r.x - 0.15, 3.3, "$r$", color=COLORS["r"], ha="right")
    cv.wire(w_hn.top, mul_r.bottom, color=COLORS["h"])
    cv.wire(mul_r.right, n.left, color=COLORS["h"])
    cv.wire(w_in.top, n.bottom, color=COLORS["h"])
    cv.wire(n.top, mul_n.bottom, color=COLORS["n"])
    cv.label(n.x + 0.15, (n.top[1] + mul_n.bottom[1]) / 2, "$n$", color=COLORS["n"], ha="left")
    cv.wire(mul_n.top, add.bottom, color=COLORS["c"])
    return cv.fig


# ----------------------------------------------------------------------------- the vanilla RNN and unrolling

def rnn_cell():
    """The vanilla (Elman) RNN cell: h_t = tanh(x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh)."""
    cv = Canvas(-2.7, 7.2, -1.3, 3.6)
    cv.ax.add_patch(FancyBboxPatch((0.3, 0.0), 4.6, 3.3, boxstyle="round,pad=0,rounding_size=0.4",
                                   fc=COLORS["cell"], ec="#999999", lw=1.5, zorder=0))
    t = cv.box(2.6, 2.0, "tanh", COLORS["g"], w=1.4)
    cv.wire((-1.0, 0.8), (2.6, 0.8), t.bottom, color=COLORS["h"])
    cv.wire((1.2, -0.7), (1.2, 0.8), color=COLORS["x"], arrow=False)
    cv.dot(1.2, 0.8, COLORS["x"])
    cv.label(-1.1, 0.8, "$h_{t-1}$", ha="right")
    cv.label(1.2, -0.8, "$x_t$", va="top")
    cv.wire(t.right, (6.0, 2.0), color=COLORS["h"])
    cv.label(6.1, 2.0, "$h_t$", ha="left")
    return cv.fig


def _chain(cv, T, y, kind="rnn", x0=0.0, dx=3.2, w=1.8, h=1.3, color=None, reverse=False):
    """Draw T cells in a row at height y; return their Nodes. kind 'lstm' draws two state wires
    (c above h); reverse draws the state arrows right to left."""
    fill = _tint(color or "#888888", 0.85)
    nodes = [cv.box(x0 + k * dx, y, kind.upper(), color or "#888888", w=w, h=h, fontsize=FONT_BOX - 2,
                    fill=fill) for k in range(T)]
    lanes = [("h", 0.0)] if kind == "rnn" else [("c", 0.3), ("h", -0.3)]
    for a, b in zip(nodes[:-1], nodes[1:], strict=True):
        for name, off in lanes:
            start, end = (a.right, b.left) if not reverse else (b.left, a.right)
            cv.wire((start[0], start[1] + off), (end[0], end[1] + off),
                    color=COLORS["c"] if name == "c" else COLORS["h"], lw=LW + (1.2 if name == "c" else 0))
    return nodes


def unrolled(T=4, kind="rnn"):
    """A recurrent network unrolled over T steps: one cell per step, the same weights in each,
    the state passed from step to step, x_t in below and h_t out on top.

    Inputs: T (2..6), kind 'rnn' (state h) or 'lstm' (state h and c)."""
    if kind not in ("rnn", "lstm"):
        raise ValueError(f"kind must be 'rnn' or 'lstm'; got {kind!r}")
    if not 2 <= T <= 6:
        raise ValueError(f"T must be between 2 and 6 (a picture, not a computation); got {T}")
    dx = 3.2
    cv = Canvas(-2.6, (T - 1) * dx + 2.6, -1.6, 3.3)
    nodes = _chain(cv, T, 0.8, kind, dx=dx)
    lanes = [("h", 0.0)] if kind == "rnn" else [("c", 0.3), ("h", -0.3)]
    for name, off in lanes:
        first, last = nodes[0].left, nodes[-1].right
        cv.wire((first[0] - 0.9, first[1] + off), (first[0], first[1] + off),
                color=COLORS["c" if name == "c" else "h"], lw=LW + (1.2 if name == "c" else 0))
        cv.label(first[0] - 1.0, first[1] + off, f"${name}_0$", ha="right", fontsize=FONT - 2)
        cv.wire((last[0], last[1] + off), (last[0] + 0.6, last[1] + off),
                color=COLORS["c" if name == "c" else "h"], lw=LW + (1.2 if name == "c" else 0))
    for t, node in enumerate(nodes, start=1):
        cv.wire((node.x, node.bottom[1] - 0.8), node.bottom, color=COLORS["x"])
        cv.label(node.x, node.bottom[1] - 0.9, f"$x_{t}$", va="top")
        cv.wire(node.top, (node.x, node.top[1] + 0.8), color=COLORS["h"])
        cv.label(node.x, node.top[1] + 0.9, f"$h_{t}$", va="bottom")
    return cv.fig


def bptt_flow(T=4):
    """Backpropagation through time in an unrolled LSTM with the loss on the last step:
    forward state arrows (grey, left to right) and, right to left, the gradient of the loss
    with respect to h (through W_hh and the gates) and to c (multiplied only by f at each step,
    highlighted: the path that keeps the gradient alive).

    Inputs: T, the number of steps drawn (2..6)."""
    if not 2 <= T <= 6:
        raise ValueError(f"T must be between 2 and 6; got {T}")
    dx, w, h = 3.7, 1.7, 2.2
    grad = COLORS["grad"]
    cv = Canvas(-2.9, (T - 1) * dx + 3.0, -2.7, 2.3)
    nodes = [cv.box(k * dx, 0.0, "LSTM", "#888888", w=w, h=h, fontsize=FONT_BOX - 2,
                    fill=_tint("#888888", 0.85)) for k in range(T)]
    lanes = {"dc": 0.75, "c": 0.3, "h": -0.3, "dh": -0.75}
    for a, b in zip(nodes[:-1], nodes[1:], strict=True):
        x0, x1 = a.right[0], b.left[0]
        cv.wire((x0, lanes["c"]), (x1, lanes["c"]), color=COLORS["c"], lw=LW)
        cv.wire((x0, lanes["h"]), (x1, lanes["h"]), color=COLORS["h"], lw=LW - 1)
        cv.wire((x1, lanes["dc"]), (x0, lanes["dc"]), color=grad, lw=LW + 2.5)
        cv.wire((x1, lanes["dh"]), (x0, lanes["dh"]), color=grad, lw=LW - 0.6, ls=(0, (3, 1.5)))
        cv.label((x0 + x1) / 2, lanes["dc"] + 0.2, "$\\times f$", color=grad, va="bottom", fontsize=FONT - 2)
        cv.label((x0 + x1) / 2, lanes["dh"] - 0.2, "$W_{hh}$", color=grad, va="top", fontsize=FONT - 6)
    cv.label(-w / 2 - 0.15, lanes["dc"] + 0.55, "$\\partial L/\\partial c_t$", ha="right", color=grad,
             fontsize=FONT - 2)
    cv.label(-w / 2 - 0.15, lanes["dh"] - 0.55, "$\\partial L/\\partial h_t$", ha="right", color=grad,
             fontsize=FONT - 2)
    for t, node in enumerate(nodes, start=1):
        cv.wire((node.x, node.bottom[1] - 0.6), node.bottom, color=COLORS["x"])
        cv.label(node.x, node.bottom[1] - 0.7, f"$x_{t}$", va="top", fontsize=FONT - 2)
    last = nodes[-1]
    loss = cv.box(last.right[0] + 1.3, 0.0, "$L$", grad, w=0.9, h=0.9)
    cv.wire((last.right[0], lanes["h"]), (loss.left[0], lanes["h"]), color=COLORS["h"], lw=LW - 1)
    cv.wire((loss.left[0], lanes["dh"]), (last.right[0], lanes["dh"]), color=grad, lw=LW - 0.6,
            ls=(0, (3, 1.5)))
    return cv.fig


# ----------------------------------------------------------------------------- layers and model shapes

def stacked_layers(L=2, T=3):
    """L LSTM layers stacked: layer l reads the hidden states of layer l-1 at every step."""
    dx, dy = 3.0, 2.2
    cv = Canvas(-3.4, (T - 1) * dx + 1.3, -1.9, (L - 1) * dy + 2.2)
    rows = [_chain(cv, T, l * dy, "lstm", dx=dx, w=1.7, h=1.1) for l in range(L)]
    for l, row in enumerate(rows):
        cv.label(row[0].left[0] - 0.35, l * dy, f"layer {l + 1}", ha="right", fontsize=FONT - 4)
    for t in range(T):
        cv.wire((t * dx, -0.55 - 0.55), rows[0][t].bottom, color=COLORS["x"])
        cv.label(t * dx, -1.15, f"$x_{t + 1}$", va="top")
        for lower, upper in zip(rows[:-1], rows[1:], strict=True):
            cv.wire(lower[t].top, upper[t].bottom, color=COLORS["h"])
        cv.wire(rows[-1][t].top, (t * dx, rows[-1][t].top[1] + 0.6), color=COLORS["h"])
        cv.label(t * dx, rows[-1][t].top[1] + 0.65, f"$h^{{({L})}}_{t + 1}$", va="bottom", fontsize=FONT - 2)
    return cv.fig


def bidirectional(T=3):
    """A bidirectional LSTM: one LSTM reads x_1..x_T forwards (bottom row), another reads it
    backwards (top row); the layer's output at step t is the concatenation [→h_t, ←h_t]."""
    if not 2 <= T <= 6:
        raise ValueError(f"T must be between 2 and 6; got {T}")
    dx, y_f, y_x, y_b = 3.0, 0.0, 1.75, 3.5
    cv = Canvas(-3.9, (T - 1) * dx + 1.6, -1.9, 5.8)
    fwd = _chain(cv, T, y_f, "lstm", dx=dx, w=1.7, h=1.0, color=COLORS["f"])
    bwd = _chain(cv, T, y_b, "lstm", dx=dx, w=1.7, h=1.0, color=COLORS["o"], reverse=True)
    cv.label(-1.1, y_f, "forward", ha="right", fontsize=FONT - 4, color=COLORS["f"])
    cv.label(-1.1, y_b, "backward", ha="right", fontsize=FONT - 4, color=COLORS["o"])
    for t in range(T):
        x = t * dx
        cv.label(x, y_x, f"$x_{t + 1}$")
        cv.wire((x, y_x - 0.3), fwd[t].top, color=COLORS["x"])
        cv.wire((x, y_x + 0.3), bwd[t].bottom, color=COLORS["x"])
        cv.wire(fwd[t].bottom, (x, y_f - 1.0), color=COLORS["h"])
        cv.label(x, y_f - 1.05, f"$\\overrightarrow{{h}}_{t + 1}$", va="top")
        cv.wire(bwd[t].top, (x, y_b + 1.0), color=COLORS["h"])
        cv.label(x, y_b + 1.05, f"$\\overleftarrow{{h}}_{t + 1}$", va="bottom")
    return cv.fig


_IO_KINDS = {"sequence-to-one": "one", "many-to-one": "one", "sequence-to-sequence": "seq",
             "many-to-many": "seq"}


def io_shapes(kind, T=4, x="x", y="y", head="linear", last="T", layers=1):
    """The shape of a model: an LSTM reads x_1..x_T; a head maps the last h_T to one output
    ('sequence-to-one') or every h_t to an output y_t ('sequence-to-sequence').

    Inputs: kind ('sequence-to-one' / 'sequence-to-sequence', or 'many-to-one' / 'many-to-many');
    T steps drawn (2..6); x, y: names of input and output (math text); head: the head's label;
    last: the subscript of the last step; layers: stacked LSTM layers (1..3).
    Returns: a matplotlib Figure."""
    if kind not in _IO_KINDS:
        raise ValueError(f"kind must be one of {sorted(_IO_KINDS)}; got {kind!r}")
    if not 2 <= T <= 6:
        raise ValueError(f"T must be between 2 and 6; got {T}")
    if not 1 <= layers <= 3:
        raise ValueError(f"layers must be 1, 2 or 3; got {layers}")
    seq = _IO_KINDS[kind] == "seq"
    dx, dy = 2.8, 1.9
    top = 0.8 + (layers - 1) * dy
    cv = Canvas(-2.4 if layers > 1 else -1.6, (T - 1) * dx + 1.6, -1.6, top + 3.8)
    rows = [_chain(cv, T, 0.8 + l * dy, "lstm", dx=dx, w=1.7, h=1.1) for l in range(layers)]
    subs = [str(t) for t in range(1, T)] + [str(last)]
    for l, row in enumerate(rows if layers > 1 else ()):
        cv.label(row[0].left[0] - 0.2, row[0].y, f"{l + 1}", ha="right", fontsize=FONT - 4, color="#777777")
    if str(last) != str(T):           # steps left out between the last two drawn
        cv.label((T - 1.5) * dx, -0.95, "⋯", fontsize=FONT)
    for k in range(T):
        node = rows[-1][k]
        cv.wire((node.x, -0.6), rows[0][k].bottom, color=COLORS["x"])
        cv.label(node.x, -0.7, f"${x}_{{{subs[k]}}}$", va="top")
        for lower, upper in zip(rows[:-1], rows[1:], strict=True):
            cv.wire(lower[k].top, upper[k].bottom, color=COLORS["h"])
        if seq or k == T - 1:
            hd = cv.box(node.x, top + 1.75, head, "#777777", w=1.7, h=0.8, fontsize=FONT_BOX - 4,
                        fill="white")
            cv.wire(node.top, hd.bottom, color=COLORS["h"])
            cv.wire(hd.top, (node.x, top + 2.8), color=COLORS["h"])
            cv.label(node.x, top + 2.9, f"${y}_{{{subs[k]}}}$" if seq else f"${y}$", va="bottom")
    return cv.fig


# ----------------------------------------------------------------------------- a trained network

_TRACE_NAMES = ("i", "f", "g", "o", "c", "h")


def traces_from_cache(cache, b=0):
    """Units x time traces of example b from a reference.forward cache: dict name -> (T, H)
    for i, f, g, o, c, h (c and h without the initial state)."""
    tr = {k: np.asarray(cache[k])[:, b] for k in "ifgo"}
    tr["c"] = np.asarray(cache["cs"])[1:, b]
    tr["h"] = np.asarray(cache["hs"])[1:, b]
    return tr


def gate_heatmaps(cache, b=0, steps=None, units=None, names=_TRACE_NAMES, labels=None, marks=None):
    """Heatmaps of gates and states, units x time, one panel per quantity.

    Inputs:
    - cache: from lstmkit.reference.forward (or a dict name -> (T, H) array as from traces_from_cache).
    - b: which sequence of the batch; steps: slice or index array of time steps (default all);
      units: index array of units to show (default all).
    - names: quantities to show, from i, f, g, o, c, h.
    - labels: optional list of one string per shown step (e.g. the characters of a text) for the
      time axis; marks: optional steps (in the shown window) to mark with a vertical line.
    Returns: a matplotlib Figure. Gates in (0, 1) use white to the gate's colour; g, c, h a
    diverging map centred on 0.
    """
    tr = traces_from_cache(cache, b) if "cs" in cache else {k: np.asarray(cache[k]) for k in names}
    bad = [n for n in names if n not in _TRACE_NAMES]
    if bad:
        raise ValueError(f"names must be among {_TRACE_NAMES}; got {bad}")
    steps = slice(None) if steps is None else steps
    units = slice(None) if units is None else units
    data = {n: tr[n][steps][:, units].T for n in names}       # (units, time)
    n_units, T = data[names[0]].shape
    if labels is not None and len(labels) != T:
        raise ValueError(f"labels must have one entry per shown step ({T}); got {len(labels)}")
    width = min(max(6.0, 0.1 * T + 2.0), 8.0)
    row_h = min(max(0.9, 0.12 * n_units + 0.5), 2.4)
    height = row_h * len(names) + 0.9
    fig = Diagram(figsize=(width, height), dpi=100)
    left, right, bottom, top = 0.9 / width, 1 - 1.0 / width, 0.8 / height, 1 - 0.15 / height
    gap = 0.2 / height
    panel = (top - bottom - gap * (len(names) - 1)) / len(names)
    first = 1 if labels is None else 0
    extent = (first - 0.5, first + T - 0.5, n_units - 0.5, -0.5)
    axes = []
    for row, n in enumerate(names):
        y = top - (row + 1) * panel - row * gap
        ax = fig.add_axes((left, y, right - left, panel), sharex=axes[0] if axes else None)
        cax = fig.add_axes((right + 0.15 / width, y, 0.18 / width, panel))
        d = data[n]
        if n in ("i", "f", "o"):
            im = ax.imshow(d, aspect="auto", interpolation="nearest", cmap=_gate_cmap(COLORS[n]),
                           vmin=0, vmax=1, extent=extent)
        else:
            vmax = 1.0 if n in ("g", "h") else max(float(np.abs(d).max()), 1e-6)
            im = ax.imshow(d, aspect="auto", interpolation="nearest", cmap="RdBu_r", vmin=-vmax, vmax=vmax,
                           extent=extent)
        ax.set_ylabel(f"${n}$", rotation=0, fontsize=FONT - 2, labelpad=14, va="center", ha="right",
                      color=COLORS[n] if n in "ifgo" else "#222222")
        unit_ids = np.arange(tr[names[0]].shape[1])[units]
        if n_units <= 12:
            ax.set_yticks(range(n_units), [str(u) for u in unit_ids], fontsize=12)
        else:
            ax.set_yticks([])
        cb = fig.colorbar(im, cax=cax)
        lo, hi = im.get_clim()
        cb.set_ticks([lo, hi] if n in ("i", "f", "o") else [lo, 0, hi], labels=None)
        cb.ax.set_yticklabels([f"{v:.2g}".replace("-", "−") for v in cb.get_ticks()], fontsize=12)
        for m in marks if marks is not None else ():
            ax.axvline(m, color="#222222", lw=0.8, alpha=0.6)
        if row < len(names) - 1:
            ax.tick_params(labelbottom=False)
        axes.append(ax)
    if labels is not None:
        axes[-1].set_xticks(range(T))
        axes[-1].set_xticklabels(["↵" if s == "\n" else ("␣" if s == " " else s) for s in labels],
                                 family="DejaVu Sans Mono", fontsize=11)
    else:
        axes[-1].set_xlabel("step $t$", fontsize=FONT - 6)
        axes[-1].tick_params(labelsize=14)
    return fig


def animate_cell(cache, unit=0, b=0, steps=range(12), inputs=None, dpi=55, interval=900,
                 alt="An LSTM cell with the values of one unit on its wires, one frame per step"):
    """An animation of one unit of the cell stepping through a sequence: each frame is the cell of
    lstm_cell with the numbers of step t on its wires, and the gates' wires as thick as the gates
    are open.

    Inputs:
    - cache: from lstmkit.reference.forward; unit, b: which unit and which sequence.
    - steps: the time steps to show (keep them few; every frame is an image in the page).
    - inputs: optional list of one short string per step shown under the cell (e.g. "store 0.31").
    - dpi, interval: resolution and milliseconds per frame; alt: the alt text of the frames.
    Returns: HTML text (matplotlib's JavaScript animation, all frames embedded; nothing is loaded
    from another host). Show it with IPython.display.HTML.
    """
    steps = list(steps)
    tr = traces_from_cache(cache, b)
    cs, hs = np.asarray(cache["cs"])[:, b, unit], np.asarray(cache["hs"])[:, b, unit]
    cv = _lstm_like("lstm")
    cv.fig.set_dpi(dpi)
    texts = {}
    for k in ("c_prev", "h_prev", "f", "i", "g", "o", "c", "h"):
        x, y, ha, va = _VALUE_SPOTS[k]
        texts[k] = cv.value(x, y, k, [0.0], ha=ha, va=va, fontsize=FONT_VALUE + 1)
    title = cv.label(-2.8, 7.5, "", fontsize=FONT, ha="left", va="top")
    caption = cv.label(2.0, -0.6, "", fontsize=FONT - 2, ha="left")

    def frame(k):
        t = steps[k]
        now = {"c_prev": cs[t], "h_prev": hs[t], "c": cs[t + 1], "h": hs[t + 1],
               **{n: tr[n][t, unit] for n in "ifgo"}}
        for key, txt in texts.items():
            txt.set_text(format_values([now[key]]))
        title.set_text(f"step t = {t + 1}")
        caption.set_text(inputs[k] if inputs is not None else "")
        return [*texts.values(), title, caption]

    anim = FuncAnimation(cv.fig, frame, frames=len(steps), interval=interval, blit=False)
    html = anim.to_jshtml(default_mode="once")
    return _offline(html).replace("<img id=", f'<img alt="{html_escape(alt)}" id=', 1)


_ICONS = {"fa-minus": "−", "fa-fast-backward": "«", "fa-step-backward": "‹",
          "fa-play fa-flip-horizontal": "◀", "fa-pause": "||", "fa-play": "▶", "fa-step-forward": "›",
          "fa-fast-forward": "»", "fa-plus": "+"}


def _offline(html):
    """matplotlib's animation HTML without its Font Awesome stylesheet from a CDN: the buttons get
    text symbols instead of icons, so the page loads nothing from another host; the slider gets a
    label for screen readers."""
    html = re.sub(r"<link[^>]*font-awesome[^>]*>", "", html)
    html = html.replace('class="anim-slider"', 'class="anim-slider" aria-label="Step"')
    for cls, symbol in _ICONS.items():
        html = html.replace(f'<i class="fa {cls}"></i>', symbol)
    return html
