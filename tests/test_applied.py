"""The applied chapters' data generators, and that their models learn at the book's sizes and seeds.

The learning tests repeat the training runs of book/applied/digits.md and hochreiter1997.md with
the same sizes, seeds, learning rates and numbers of steps (single-threaded, as in the chapters),
and assert a stated margin over chance or over the trivial predictor.
"""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from lstmkit import grading, tasks
from lstmkit.torch import LSTM

pytestmark = pytest.mark.usefixtures("one_thread")


def test_tasks_use_lstmkit_lstm():
    assert tasks.LSTM is LSTM
    assert isinstance(tasks.SequenceClassifier(8, 4, 3).lstm, LSTM)


def test_digits_shapes_and_split():
    xtr, ytr, xte, yte = tasks.digits_sequences(test_size=0.25, seed=0)
    assert xtr.shape[0] == 8 and xtr.shape[2] == 8 and xte.shape[0] == 8
    assert xtr.shape[1] + xte.shape[1] == 1797
    assert xtr.dtype == torch.float32 and 0 <= xtr.min() and xtr.max() <= 1
    assert set(ytr.tolist()) == set(range(10)) == set(yte.tolist())


def test_adding_problem_targets_are_the_marked_sums():
    rng = np.random.default_rng(1)
    x, y = tasks.adding_problem(50, 20, rng)
    assert x.shape == (20, 50, 2) and y.shape == (50,)
    marker = x[..., 1]
    assert torch.all(marker.sum(0) == 2)
    assert torch.all(marker[:10].sum(0) == 1)   # one marker in each half
    torch.testing.assert_close((x[..., 0] * marker).sum(0), y)
    with pytest.raises(ValueError, match="T >= 2"):
        tasks.adding_problem(3, 1, rng)


def test_adding_problem_is_the_assignments_generator():
    x, y = tasks.adding_problem(16, 30, np.random.default_rng(5))
    xs, ys = grading.adding_problem(30, 16, np.random.default_rng(5))
    assert torch.equal(x, torch.from_numpy(xs)) and torch.equal(y, torch.from_numpy(ys))


def test_forget_bias_shifts_only_the_forget_block():
    torch.manual_seed(0)
    plain = tasks.SequenceClassifier(3, 5, 2, num_layers=2)
    torch.manual_seed(0)
    biased = tasks.SequenceClassifier(3, 5, 2, num_layers=2, forget_bias=2.0)
    for layer in range(2):
        b0, b1 = (getattr(m.lstm, f"bias_ih_l{layer}").detach() for m in (plain, biased))
        torch.testing.assert_close(b1[5:10] - b0[5:10], torch.full((5,), 2.0))
        assert torch.equal(b1[:5], b0[:5]) and torch.equal(b1[10:], b0[10:])
        hh0, hh1 = (getattr(m.lstm, f"bias_hh_l{layer}") for m in (plain, biased))
        assert torch.equal(hh0, hh1)


def test_rnn_baselines_shapes():
    x = torch.randn(7, 3, 4)
    assert tasks.RNNClassifier(4, 6, 5)(x).shape == (3, 5)
    assert tasks.RNNClassifier(4, 6, 5, per_step=True)(x).shape == (7, 3, 5)
    assert tasks.RNNRegressor(4, 6)(x).shape == (3,)


def test_embedded_reber_strings_and_key_step():
    rng = np.random.default_rng(0)
    for _ in range(50):
        s = tasks.embedded_reber(rng)
        assert s[0] == "B" and s[-1] == "E" and s[1] in "TP" and s[-2] == s[1]
        assert s[2] == "B" and s[-3] == "E"
    x, y, key = tasks.reber_batch(16, rng)
    cols = torch.arange(16)
    second = x[1].argmax(-1)                    # input at step 1 is the remembered T/P
    torch.testing.assert_close(y[key, cols], second)
    assert torch.all(x[key, cols].argmax(-1) == tasks.REBER_SYMBOLS.index("E"))


def test_temporal_order_labels():
    rng = np.random.default_rng(0)
    x, y = tasks.temporal_order(40, 50, rng)
    sym = x.argmax(-1)                           # (T, n)
    for b in range(40):
        xy = [s - 4 for s in sym[:, b].tolist() if s >= 4]
        assert len(xy) == 2 and y[b].item() == 2 * xy[0] + xy[1]


def test_digits_classifier_learns_as_in_the_book():
    # Same sizes, seed and schedule as book/applied/digits.md (the book gets about 96 %).
    SEED, H, STEPS, BATCH = 0, 64, 300, 64
    rng = tasks.set_seed(SEED)
    xtr, ytr, xte, yte = tasks.digits_sequences(test_size=0.25, seed=SEED)
    model = tasks.SequenceClassifier(8, H, 10)
    N = xtr.shape[1]

    def batch(step):
        idx = torch.from_numpy(rng.integers(0, N, size=BATCH))
        return xtr[:, idx], ytr[idx]

    tasks.train(model, batch, lambda m, x, y: F.cross_entropy(m(x), y), STEPS, lr=1e-2, progress=False)
    with torch.no_grad():
        acc = (model(xte).argmax(1) == yte).float().mean().item()
    assert acc > 0.90     # chance is 0.10


def _fit_as_in_the_book(model, make_batch, loss, steps, lr, seed=0):
    """hochreiter1997.md's training: batches from their own generator seeded with the chapter's seed."""
    rng = np.random.default_rng(seed)
    return tasks.train(model, lambda step: make_batch(rng), loss, steps, lr=lr, progress=False)


def test_adding_problem_lstm_beats_the_trivial_predictor_as_in_the_book():
    # book/applied/hochreiter1997.md: T=100, H=32, Adam lr 2e-2, 600 steps of 64 sequences, seed 0.
    tasks.set_seed(0)
    lstm = tasks.SequenceRegressor(D=2, H=32)
    _fit_as_in_the_book(lstm, lambda rng: tasks.adding_problem(64, 100, rng),
                        lambda m, x, y: F.mse_loss(m(x), y), 600, 2e-2)
    x, y = tasks.adding_problem(1000, 100, np.random.default_rng(1))
    trivial = F.mse_loss(torch.ones_like(y), y).item()
    with torch.no_grad():
        mse = F.mse_loss(lstm(x), y).item()
    assert abs(trivial - 1 / 6) < 0.02
    assert mse < trivial / 20     # at least 20 times better than always answering 1


def test_embedded_reber_lstm_remembers_the_second_symbol_as_in_the_book():
    # book/applied/hochreiter1997.md: H=16, Adam lr 1e-2, 400 steps of 64 strings, seed 0.
    tasks.set_seed(0)
    model = tasks.StepClassifier(D=7, H=16, n_out=7)
    loss = lambda m, x, y: F.cross_entropy(m(x).reshape(-1, 7), y.reshape(-1), ignore_index=-1)  # noqa: E731
    _fit_as_in_the_book(model, lambda rng: tasks.reber_batch(64, rng)[:2], loss, 400, 1e-2)
    x, y, key = tasks.reber_batch(1000, np.random.default_rng(1))
    with torch.no_grad():
        pred = model(x).argmax(-1)
    cols = torch.arange(1000)
    assert (pred[key, cols] == y[key, cols]).float().mean().item() > 0.9    # guessing gives 0.5


def test_temporal_order_lstm_with_forget_bias_learns_as_in_the_book():
    # book/applied/hochreiter1997.md: T=50, H=32, forget bias 2, Adam lr 1e-2, 250 steps, seed 0.
    tasks.set_seed(0)
    model = tasks.SequenceClassifier(D=6, H=32, n_out=4, forget_bias=2.0)
    _fit_as_in_the_book(model, lambda rng: tasks.temporal_order(64, 50, rng),
                        lambda m, x, y: F.cross_entropy(m(x), y), 250, 1e-2)
    x, y = tasks.temporal_order(1000, 50, np.random.default_rng(1))
    with torch.no_grad():
        acc = (model(x).argmax(1) == y).float().mean().item()
    assert acc > 0.9      # chance is 0.25


def test_plot_confusion_writes_the_nonzero_counts():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    conf = np.array([[5, 0, 1], [0, 7, 0], [2, 0, 3]])
    fig, ax = plt.subplots()
    im = tasks.plot_confusion(conf, ax=ax)
    assert np.array_equal(im.get_array(), conf)
    assert sorted(t.get_text() for t in ax.texts) == sorted(["5", "1", "7", "2", "3"])
    assert ax.get_xlabel() == "predicted" and ax.get_ylabel() == "true"
    plt.close(fig)
    with pytest.raises(ValueError, match="square"):
        tasks.plot_confusion(np.zeros((2, 3)))


def test_plot_curves_draws_moving_averages_and_the_reference():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    tasks.plot_curves(ax, {"a": np.arange(20.0), "b": np.ones(20)}, smooth=10, reference=0.5,
                      reference_label="trivial", ylabel="loss")
    a, b, ref = ax.lines
    assert np.allclose(a.get_ydata(), np.arange(11) + 4.5)        # means of 10 consecutive values
    assert np.allclose(a.get_xdata(), np.arange(10, 21))           # plotted at the window's end
    assert np.allclose(b.get_ydata(), 1) and np.allclose(ref.get_ydata(), 0.5)
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["a", "b", "trivial"]
    plt.close(fig)
    with pytest.raises(ValueError, match="fewer than smooth"):
        tasks.plot_curves(ax, {"short": [1.0, 2.0]}, smooth=10)
