"""lstmkit.plots: the shared chapter plots draw what they are given and check their input."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from lstmkit import reference  # noqa: E402
from lstmkit.plots import forget_path_product, lag_curves, memory_unit_trace, training_curves  # noqa: E402


def test_forget_path_product_is_the_product_of_later_forget_gates():
    rng = np.random.default_rng(0)
    f = rng.uniform(0.2, 0.9, size=(6, 3, 4))
    path = forget_path_product(f)
    T = f.shape[0]
    for lag in range(T):
        t = T - 1 - lag                                     # 0-based step of the lag
        expected = np.prod(f[t + 1:], axis=0).mean()        # f_{t+1} ... f_T
        assert path[lag] == pytest.approx(expected)
    assert path[0] == 1.0
    with pytest.raises(ValueError, match=r"\(T, B, H\)"):
        forget_path_product(f[0])


def test_forget_path_product_matches_the_reference_cell_gradient_path():
    # with i = 0 and o = 0 nothing but the cell path carries dL/dc_T back to c_0
    p = reference.init_params(2, 3, rng=0)
    p["bias_ih"][:3] = -40.0                                # i ~ 0
    p["bias_ih"][9:] = -40.0                                # o ~ 0
    xs = np.random.default_rng(1).standard_normal((8, 1, 2))
    _, _, cache = reference.forward(xs, None, p)
    _, (_, dc0), _ = reference.backward(None, (None, np.ones((1, 3))), cache)
    full = np.prod(cache["f"], axis=0)                      # f_1 ... f_T, per unit
    np.testing.assert_allclose(dc0[0], full[0], rtol=1e-6)
    assert forget_path_product(cache["f"])[-1] == pytest.approx(np.prod(cache["f"][1:], axis=0).mean())


def test_lag_curves_draws_one_labelled_line_per_curve():
    fig, ax = plt.subplots()
    curves = {"a": np.geomspace(1, 1e-3, 5), "b": np.ones(5)}
    lag_curves(ax, curves, ylabel="norm", title="t", cmap="viridis", styles={"b": "k--"})
    lines = ax.get_lines()
    assert [line.get_label() for line in lines] == ["a", "b"]
    assert ax.get_yscale() == "log" and ax.get_title() == "t" and ax.get_ylabel() == "norm"
    np.testing.assert_allclose(lines[0].get_ydata(), curves["a"])
    assert lines[1].get_linestyle() == "--"
    with pytest.raises(ValueError, match="1-D"):
        lag_curves(ax, {"bad": np.ones((2, 2))}, ylabel="")
    with pytest.raises(ValueError, match="at least one"):
        lag_curves(ax, {}, ylabel="")
    plt.close(fig)


def test_training_curves_two_panels_and_threshold():
    fig = training_curves([1.0, 0.5, 0.1], [3.0, 2.0, 0.5], 1.0, title="run")
    ax1, ax2 = fig.axes
    assert ax1.get_title() == "run" and len(ax2.get_lines()) == 2      # norms + threshold
    assert ax2.get_lines()[1].get_ydata()[0] == 1.0
    plt.close(fig)
    with pytest.raises(ValueError, match="one entry per step"):
        training_curves([1.0], [1.0, 2.0], 1.0)


def test_memory_unit_trace_five_panels_with_the_store_steps_marked():
    T = 12
    rng = np.random.default_rng(0)
    store = np.zeros(T, bool)
    store[[2, 7]] = True
    query = np.zeros(T, bool)
    query[[5, 10]] = True
    gates = {k: rng.uniform(size=T) for k in "figo"}
    fig = memory_unit_trace(store, query, rng.uniform(-1, 1, T), gates, rng.standard_normal(T),
                            rng.standard_normal(T), np.zeros(T), np.zeros(T), unit=3)
    assert len(fig.axes) == 5
    labels = [line.get_label() for line in fig.axes[1].get_lines() if not line.get_label().startswith("_")]
    assert labels == ["$f_t$ (unit 3)", "$i_t$ (unit 3)"]
    np.testing.assert_allclose(fig.axes[1].get_lines()[0].get_ydata(), gates["f"])
    # one vertical red line per store step in every panel
    marks = [line for line in fig.axes[4].get_lines() if line.get_xdata()[0] == line.get_xdata()[-1]]
    assert sorted(line.get_xdata()[0] for line in marks) == [2, 7]
    plt.close(fig)
    with pytest.raises(ValueError, match="length of store"):
        memory_unit_trace(store, query[:5], np.zeros(T), gates, np.zeros(T), np.zeros(T), np.zeros(T),
                          np.zeros(T), unit=0)
