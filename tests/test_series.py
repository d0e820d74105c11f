"""lstmkit.series: the order task, the sunspot data, the split by time, the AR baseline and
recursive forecasts; and that the stacked and forecasting chapters' models learn at the book's
sizes and seeds."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.linear_model import LogisticRegression

from lstmkit import series, tasks

pytestmark = pytest.mark.usefixtures("one_thread")


# ----------------------------------------------------------------------------- order task

def test_order_task_shapes_labels_and_balance():
    x, y = series.order_task(400, 20, np.random.default_rng(0), n_symbols=6)
    assert x.shape == (20, 400, 6) and y.shape == (400,)
    assert x.dtype == torch.float32 and y.dtype == torch.float32
    assert torch.all(x.sum(-1) == 1)                          # one-hot at every step
    sym = x.argmax(-1)
    assert torch.all((sym == 0).sum(0) == 1) and torch.all((sym == 1).sum(0) == 1)
    first_a = (sym == 0).float().argmax(0)
    first_b = (sym == 1).float().argmax(0)
    assert torch.equal(y, (first_a < first_b).float())
    assert 0.4 < y.mean().item() < 0.6
    with pytest.raises(ValueError, match="n_symbols >= 3"):
        series.order_task(4, 10, np.random.default_rng(0), n_symbols=2)


def test_bag_of_symbols_ignores_order():
    x, _ = series.order_task(50, 12, np.random.default_rng(1))
    counts = series.bag_of_symbols(x)
    assert counts.shape == (50, 8)
    np.testing.assert_array_equal(counts.sum(1), 12)
    np.testing.assert_array_equal(counts[:, :2], 1)           # A and B once each, whatever the label
    shuffled = x[torch.from_numpy(np.random.default_rng(2).permutation(12))]
    np.testing.assert_array_equal(series.bag_of_symbols(shuffled), counts)
    with pytest.raises(ValueError, match=r"\(T, n, S\)"):
        series.bag_of_symbols(np.zeros((3, 4)))


# ----------------------------------------------------------------------------- sunspots and split

def test_sunspot_series_is_the_yearly_record():
    years, z = series.sunspot_series()
    assert years.shape == z.shape == (309,)
    assert years[0] == 1700 and years[-1] == 2008 and np.all(np.diff(years) == 1)
    assert z.dtype == np.float64 and z.min() >= 0 and z.max() > 100


def test_split_by_time_and_scaler_use_the_past_only():
    years, z = series.sunspot_series()
    n = series.split_by_time(years, z, 1959)
    assert years[n - 1] == 1958 and years[n] == 1959
    assert np.all(years[:n] < 1959) and np.all(years[n:] >= 1959)

    scaler = series.Scaler(z[:n])
    z_changed = z.copy()
    z_changed[n:] *= 10                                       # the future changes ...
    other = series.Scaler(z_changed[:n])
    assert (scaler.mean, scaler.std) == (other.mean, other.std)   # ... the scaling does not
    np.testing.assert_allclose(scaler.transform(z[:n]).mean(), 0, atol=1e-12)
    np.testing.assert_allclose(scaler.transform(z[:n]).std(), 1)
    np.testing.assert_allclose(scaler.inverse(scaler.transform(z)), z, atol=1e-10)

    with pytest.raises(ValueError, match="no train or no test"):
        series.split_by_time(years, z, 2020)
    with pytest.raises(ValueError, match="increasing years"):
        series.split_by_time(years[::-1], z, 1900)


def test_forecasts_from_an_origin_do_not_see_the_future():
    z = np.sin(np.arange(80) / 3.0) + 0.01 * np.arange(80)
    origins = np.array([40, 55, 70])
    ar = series.fit_ar(z[:40], 6)
    W = series.origin_windows(z, origins, 6)
    np.testing.assert_array_equal(W[1], z[49:55])
    f = series.forecast_recursive(ar, W, 8)

    for k, o in enumerate(origins):
        z_future = z.copy()
        z_future[o:] += 100.0                                 # change everything from the origin on
        w = series.origin_windows(z_future, origins[k:k + 1], 6)
        np.testing.assert_array_equal(w, W[k:k + 1])
        np.testing.assert_allclose(series.forecast_recursive(ar, w, 8), f[k:k + 1], rtol=1e-12)
        z_past = z.copy()
        z_past[o - 1] += 1.0                                  # ... but the last observed value counts
        assert series.origin_windows(z_past, origins[k:k + 1], 6)[0, -1] == z[o - 1] + 1.0
    with pytest.raises(ValueError, match="origins must lie"):
        series.origin_windows(z, np.array([3]), 6)


# ----------------------------------------------------------------------------- AR and horizons

def _ar2(n, noise, rng):
    """z_t = 1.5 z_{t-1} - 0.75 z_{t-2} + 0.3 + noise (stationary, oscillating)."""
    z = np.zeros(n)
    z[:2] = [2.0, -1.0]
    for t in range(2, n):
        z[t] = 1.5 * z[t - 1] - 0.75 * z[t - 2] + 0.3 + noise * rng.standard_normal()
    return z


def test_ar_baseline_is_exact_on_an_ar_series():
    z = _ar2(60, 0.0, np.random.default_rng(0))
    ar = series.fit_ar(z[:40], 2)
    np.testing.assert_allclose(ar.coef, [-0.75, 1.5], atol=1e-8)   # coef[-1] weights z_{t-1}
    np.testing.assert_allclose(ar.intercept, 0.3, atol=1e-8)
    f = series.forecast_recursive(ar, z[38:40][None], 20)          # the unseen future, recursively
    np.testing.assert_allclose(f[0], z[40:60], atol=1e-6)

    noisy = _ar2(5000, 0.5, np.random.default_rng(1))
    fit = series.fit_ar(noisy, 2)
    np.testing.assert_allclose(fit.coef, [-0.75, 1.5], atol=0.03)


def test_horizon_errors_by_hand():
    z = np.arange(10.0)
    origins = np.array([7, 8])
    forecasts = np.array([[7.0, 9.0, 9.0],                  # errors 0, +1, 0
                          [6.0, 9.0, 0.0]])                 # errors -2, 0, (target beyond the end)
    mae, rmse, count = series.horizon_errors(forecasts, z, origins)
    np.testing.assert_allclose(mae, [1.0, 0.5, 0.0])
    np.testing.assert_allclose(rmse, [np.sqrt(2.0), np.sqrt(0.5), 0.0])
    np.testing.assert_array_equal(count, [2, 2, 1])


def test_torch_predictor_reads_windows_oldest_first():
    class Last(torch.nn.Module):
        def forward(self, x):                                # x (p, B, 1) -> its last step
            return x[-1, :, 0]

    w = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    np.testing.assert_allclose(series.torch_predictor(Last())(w), [3.0, 6.0])


# ----------------------------------------------------------------------------- learning at book sizes

def test_stacked_lstm_learns_the_order_task_as_in_the_book():
    # Same data, sizes, seed 0 and schedule as book/applied/stacked.md.
    SEED, T, S, H, N_TRAIN, N_TEST, BATCH, STEPS = 0, 30, 8, 32, 2000, 1000, 64, 150
    rng = tasks.set_seed(SEED)
    x_train, y_train = series.order_task(N_TRAIN, T, rng, n_symbols=S)
    x_test, y_test = series.order_task(N_TEST, T, rng, n_symbols=S)

    bag = LogisticRegression(max_iter=1000).fit(series.bag_of_symbols(x_train), y_train.numpy())
    bag_acc = bag.score(series.bag_of_symbols(x_test), y_test.numpy())

    def fit(num_layers):
        tasks.set_seed(SEED)
        model = tasks.SequenceClassifier(S, H, 1, num_layers=num_layers)
        batch_rng = np.random.default_rng(SEED)

        def batch(step):
            idx = torch.from_numpy(batch_rng.integers(0, N_TRAIN, size=BATCH))
            return x_train[:, idx], y_train[idx]

        loss = lambda m, x, y: F.binary_cross_entropy_with_logits(m(x).squeeze(-1), y)  # noqa: E731
        tasks.train(model, batch, loss, STEPS, lr=1e-2, progress=False)
        with torch.no_grad():
            return ((model(x_test).squeeze(-1) > 0).float() == y_test).float().mean().item()

    stacked, single = fit(2), fit(1)
    assert bag_acc < 0.56                  # order-blind: chance
    assert stacked > 0.95 and stacked > bag_acc + 0.35
    assert single > 0.95                   # the chapter's point: one layer solves it too


def test_lstm_one_step_forecast_beats_naive_as_in_the_book():
    # Same split, window, sizes, seeds and schedule as book/applied/forecasting.md.
    P, H, STEPS, SEEDS = 12, 16, 200, range(5)
    years, z = series.sunspot_series()
    n = series.split_by_time(years, z, 1959)
    scaler = series.Scaler(z[:n])
    s = scaler.transform(z)
    X, y = series.make_windows(s[:n], P)
    x_train = torch.tensor(X.T[:, :, None], dtype=torch.float32)
    t_train = torch.tensor(y, dtype=torch.float32)

    lstms = []
    for seed in SEEDS:
        tasks.set_seed(seed)
        model = tasks.SequenceRegressor(D=1, H=H)
        tasks.train(model, lambda step: (x_train, t_train), lambda m, a, b: F.mse_loss(m(a), b),
                    STEPS, lr=1e-2, progress=False)
        lstms.append(series.torch_predictor(model))

    origins = np.arange(n, len(z))
    W = series.origin_windows(s, origins, P)
    lstm_pred = scaler.inverse(np.mean([f(W) for f in lstms], axis=0))
    naive_pred = scaler.inverse(W[:, -1])
    ar_pred = scaler.inverse(series.fit_ar(s[:n], P)(W))
    mae = {name: np.abs(pred - z[origins]).mean()
           for name, pred in (("lstm", lstm_pred), ("naive", naive_pred), ("ar", ar_pred))}
    assert mae["lstm"] < 0.75 * mae["naive"]
    assert mae["ar"] < 0.75 * mae["naive"]
    assert mae["lstm"] < mae["ar"]         # one step ahead the LSTM mean wins (the chapter says so) ...

    lstm_mean = lambda w: np.mean([f(w) for f in lstms], axis=0)  # noqa: E731
    mae_h = {name: series.horizon_errors(scaler.inverse(series.forecast_recursive(f, W, 11)), z,
                                         origins)[0]
             for name, f in (("lstm", lstm_mean), ("ar", series.fit_ar(s[:n], P)))}
    assert np.all(mae_h["ar"][2:] < mae_h["lstm"][2:])   # ... 3 to 11 years ahead AR does


def test_plot_forecasts_draws_errors_members_and_the_chosen_origins():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    years = np.arange(1900, 1940)
    z = np.sin(years / 2.0)
    origins = np.arange(30, 40)                                  # 1930..1939
    fc = {"a": np.zeros((10, 4)), "b": np.ones((10, 4)) * np.arange(10)[:, None]}
    mae = {"a": np.arange(4.0), "b": np.arange(4.0) + 1}
    fig = series.plot_forecasts(years, z, origins, fc, mae, single_mae=[np.ones(4)] * 2,
                                first_years=(1932,), before=5, unit="spots")
    ax0, ax1 = fig.axes
    assert len(ax0.lines) == 2 + 2 and ax0.get_ylabel() == "MAE (spots)"
    assert np.allclose(ax0.lines[1].get_ydata(), mae["b"])
    actual, line_a, line_b = ax1.lines[:3]
    assert np.array_equal(actual.get_xdata(), years[25:])       # 5 years before the first origin
    assert np.array_equal(line_b.get_xdata(), [1932, 1933, 1934, 1935])
    assert np.allclose(line_b.get_ydata(), 2)                   # row of origin 1932 (index 2)
    plt.close(fig)
    with pytest.raises(ValueError, match="not the first year"):
        series.plot_forecasts(years, z, origins, fc, mae, first_years=(1920,))
    with pytest.raises(ValueError, match="names"):
        series.plot_forecasts(years, z, origins, fc, {"a": mae["a"]})
