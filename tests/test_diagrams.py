"""The drawing module: every diagram draws, carries the labels it promises, and the annotated cell
prints the numbers that lstmkit.reference computes."""

import re

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest
from matplotlib.figure import Figure
from matplotlib.text import Text

from lstmkit import diagrams
from lstmkit import reference as ref


def texts(fig):
    """Every non-empty string drawn on the figure (text artists, tick labels, axis labels)."""
    return [t.get_text() for t in fig.findobj(Text) if t.get_text()]


def worked_example():
    """The gates chapter's worked example (book/gates.md): D=2, H=3, one input."""
    params = ref.init_params(2, 3, rng=0)
    x = np.array([[1.0, -0.5]])
    h_prev = np.array([[0.1, -0.2, 0.3]])
    c_prev = np.array([[0.5, -1.0, 2.0]])
    return ref.cell_forward(x, (h_prev, c_prev), params)


CELL_LABELS = ["$x_t$", "$h_{t-1}$", "$c_{t-1}$", "$h_t$", "$c_t$"]


@pytest.mark.parametrize("draw, expected", [
    (diagrams.lstm_cell, CELL_LABELS + ["$i$", "$f$", "$g$", "$o$", "σ", "tanh", "⊙", "+"]),
    (diagrams.peephole_cell, CELL_LABELS + ["$i$", "$f$", "$g$", "$o$", "σ", "tanh", "⊙", "+"]),
    (diagrams.coupled_cell, CELL_LABELS + ["$i$", "$f$", "$g$", "$o$", "1−", "⊙", "+"]),
    (diagrams.gru_cell, ["$x_t$", "$h_{t-1}$", "$h_t$", "$r$", "$z$", "$n$", "1−", "σ", "tanh", "⊙", "+",
                         "$W_{hn}h$", "$W_{in}x$"]),
    (diagrams.rnn_cell, ["$x_t$", "$h_{t-1}$", "$h_t$", "tanh"]),
    (lambda: diagrams.unrolled(4, "rnn"), ["$h_0$", "$x_1$", "$x_4$", "$h_1$", "$h_4$", "RNN"]),
    (lambda: diagrams.unrolled(3, "lstm"), ["$h_0$", "$c_0$", "$x_3$", "$h_3$", "LSTM"]),
    (diagrams.bptt_flow, ["$L$", "$x_1$", "$x_4$", "$\\times f$", "$\\partial L/\\partial c_t$",
                          "$\\partial L/\\partial h_t$"]),
    (lambda: diagrams.stacked_layers(L=3, T=2), ["layer 1", "layer 3", "$x_1$", "$h^{(3)}_2$"]),
    (diagrams.bidirectional, ["forward", "backward", "$x_3$", "$\\overrightarrow{h}_1$",
                              "$\\overleftarrow{h}_3$"]),
    (lambda: diagrams.io_shapes("sequence-to-one"), ["$x_{1}$", "$x_{T}$", "$y$", "linear"]),
    (lambda: diagrams.io_shapes("sequence-to-sequence", T=3, y="p"), ["$x_{1}$", "$p_{1}$", "$p_{T}$"]),
])
def test_every_diagram_draws_with_its_labels(draw, expected):
    fig = draw()
    assert isinstance(fig, Figure)
    fig.canvas.draw()                                  # renders every artist (mathtext included)
    drawn = texts(fig)
    missing = [label for label in expected if label not in drawn]
    assert not missing, f"missing labels {missing}; drawn: {drawn}"


def test_the_cell_has_one_gate_box_per_gate_and_the_right_squashing():
    drawn = texts(diagrams.lstm_cell())
    assert drawn.count("σ") == 3 and drawn.count("tanh") == 2       # σ for i, f, o; tanh for g and for c
    assert drawn.count("⊙") == 3 and drawn.count("+") == 1
    coupled = texts(diagrams.coupled_cell())
    assert coupled.count("σ") == 2                                   # no input gate of its own


def test_sequence_to_one_has_one_output_and_sequence_to_sequence_one_per_step():
    one = texts(diagrams.io_shapes("sequence-to-one", T=5))
    seq = texts(diagrams.io_shapes("many-to-many", T=5))
    assert one.count("linear") == 1 and seq.count("linear") == 5


def test_annotated_cell_prints_the_numbers_of_cell_forward():
    (h, c), cache = worked_example()
    fig = diagrams.lstm_cell(cache)
    printed = {t.get_gid()[len("value:"):]: t.get_text() for t in fig.findobj(Text)
               if (t.get_gid() or "").startswith("value:")}
    expected = {
        "x": cache["x"], "h_prev": cache["h_prev"], "c_prev": cache["c_prev"],
        "i": cache["i"], "f": cache["f"], "g": cache["g"], "o": cache["o"],
        "f*c_prev": cache["f"] * cache["c_prev"], "i*g": cache["i"] * cache["g"],
        "c": c, "tanh_c": np.tanh(c), "h": h,
    }
    assert set(printed) == set(expected)
    for key, value in expected.items():
        assert printed[key] == diagrams.format_values(value[0]), key
        np.testing.assert_allclose(diagrams.parse_values(printed[key]), value[0], atol=0.005, err_msg=key)
    # the numbers are not all alike: the printed c_t is the reference's, not a neighbour's
    assert printed["c"] != printed["c_prev"] and printed["h"] != printed["h_prev"]


def test_format_values_rounds_and_uses_a_true_minus():
    assert diagrams.format_values([0.126, -1.0, 2]) == "+0.13\n−1.00\n+2.00"
    np.testing.assert_allclose(diagrams.parse_values("+0.13\n−1.00"), [0.13, -1.0])


def test_gate_heatmaps_show_the_traces_of_a_forward_pass():
    params = ref.init_params(2, 5, rng=1)
    xs = np.random.default_rng(0).normal(size=(12, 2, 2))
    _, _, cache = ref.forward(xs, None, params)
    fig = diagrams.gate_heatmaps(cache, b=1, steps=slice(2, 10), units=[0, 3, 4])
    images = [ax.images[0] for ax in fig.axes if ax.images]
    assert len(images) == 6                                          # i, f, g, o, c, h
    np.testing.assert_allclose(images[1].get_array(), cache["f"][2:10, 1][:, [0, 3, 4]].T)
    np.testing.assert_allclose(images[4].get_array(), cache["cs"][3:11, 1][:, [0, 3, 4]].T)
    assert {"$i$", "$f$", "$g$", "$o$", "$c$", "$h$"} <= set(texts(fig))
    labelled = diagrams.gate_heatmaps(cache, names=("c",), steps=slice(0, 4), labels=list("a b\n"))
    assert [t.get_text() for t in labelled.axes[0].get_xticklabels()] == ["a", "␣", "b", "↵"]
    with pytest.raises(ValueError, match="labels"):
        diagrams.gate_heatmaps(cache, labels=["a"])
    with pytest.raises(ValueError, match="names"):
        diagrams.gate_heatmaps(cache, names=("q",))


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="kind"):
        diagrams.io_shapes("one-to-many")
    with pytest.raises(ValueError, match="kind"):
        diagrams.unrolled(3, "gru")
    with pytest.raises(ValueError, match="T must"):
        diagrams.unrolled(40)


def test_animation_is_self_contained_html_with_the_step_values():
    params = ref.init_params(2, 3, rng=0)
    xs = np.random.default_rng(0).normal(size=(6, 1, 2))
    _, _, cache = ref.forward(xs, None, params)
    html = diagrams.animate_cell(cache, unit=2, steps=range(3), dpi=30)
    assert "<script" in html and html.count("data:image/png;base64,") == 3
    assert not re.search(r"https?://", html), "the animation must not load anything from another host"
    assert "font-awesome" not in html
    assert 'aria-label="Step"' in html and re.search(r'<img alt="[^"]+" id="_anim_img', html)


def test_every_chapter_of_the_first_part_shows_a_captioned_diagram():
    """Each chapter of the first part has a folded cell that draws with lstmkit.diagrams, with a
    caption and alt text (the book build renders them; this checks the sources stay wired up)."""
    from pathlib import Path

    import yaml

    root = Path(__file__).resolve().parents[1]
    toc = yaml.safe_load((root / "_toc.yml").read_text())
    first_part = [c["file"] for c in toc["parts"][0]["chapters"]]
    assert len(first_part) >= 9
    cell_re = re.compile(r"```\{code-cell\} ipython3\n---\n(.*?)\n---\n(.*?)```", re.S)
    for chapter in first_part:
        text = (root / f"{chapter}.md").read_text()
        diagram_cells = [(meta, code) for meta, code in cell_re.findall(text) if "diagrams." in code]
        assert diagram_cells, f"{chapter} shows no diagram from lstmkit.diagrams"
        for meta, _ in diagram_cells:
            meta = yaml.safe_load(meta)
            assert "hide-input" in meta["tags"], chapter
            assert meta["mystnb"]["figure"]["caption"] and meta["mystnb"]["image"]["alt"], chapter
