"""The applied chapters' data generators, and that their models learn at the book's sizes and seeds."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from lstmkit import series, tasks
from lstmkit.torch import LSTM

torch.set_num_threads(2)


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


def test_order_task_labels():
    rng = np.random.default_rng(0)
    x, y = series.order_task(30, 12, rng)
    sym = x.argmax(-1)
    for b in range(30):
        s = sym[:, b].tolist()
        assert s.count(0) == 1 and s.count(1) == 1
        assert y[b].item() == float(s.index(0) < s.index(1))


def test_windows_ar_and_recursive_forecast():
    z = np.arange(10.0)
    X, y = series.make_windows(z, 3)
    assert X.shape == (7, 3) and np.array_equal(X[0], [0, 1, 2]) and y[0] == 3
    ar = series.fit_ar(z, 2)                       # a line is exactly AR(2)
    np.testing.assert_allclose(ar(np.array([[4.0, 5.0]])), [6.0], atol=1e-8)
    f = series.forecast_recursive(ar, np.array([[8.0, 9.0]]), 3)
    np.testing.assert_allclose(f, [[10.0, 11.0, 12.0]], atol=1e-6)
    with pytest.raises(ValueError, match="longer than p"):
        series.make_windows(z, 10)


def test_digits_classifier_learns_as_in_the_book():
    # Same sizes, seed and schedule as book/applied/digits.md.
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
    assert acc > 0.85     # chance is 0.10
