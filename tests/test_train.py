"""lstmkit.train: seeding, progress bars, fit, clipping, truncated BPTT."""

import io

import matplotlib

matplotlib.use("Agg")

import pytest  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

from lstmkit import reference  # noqa: E402
from lstmkit.convert import from_torch  # noqa: E402
from lstmkit.torch import LSTM  # noqa: E402
from lstmkit.train import (  # noqa: E402
    History,
    add_forget_bias,
    detach_state,
    fit,
    fit_tbptt,
    progress_bar,
    seed_everything,
    tbptt_chunks,
)

pytestmark = pytest.mark.usefixtures("one_thread")


class SeqRegressor(nn.Module):
    """LSTM + linear read-out; forward(x, state) -> (y, state) for TBPTT, forward(x) -> y for fit."""

    def __init__(self, d=1, h=8):
        super().__init__()
        self.lstm = LSTM(d, h)
        self.out = nn.Linear(h, 1)

    def forward(self, x, state=None):
        hs, state = self.lstm(x, state)
        return self.out(hs), state


def test_seed_everything_reproduces():
    seed_everything(4)
    a = torch.randn(3)
    seed_everything(4)
    assert torch.equal(a, torch.randn(3))


def test_fit_learns_running_sum_and_records_history():
    seed_everything(0)
    xs = torch.randn(10, 16, 1)
    ys = xs.cumsum(0) * 0.3                          # needs memory across steps
    model = SeqRegressor()
    hist = fit(_First(model), [(xs[:, :8], ys[:, :8]), (xs[:, 8:], ys[:, 8:])], nn.functional.mse_loss,
               torch.optim.Adam(model.parameters(), lr=3e-2), epochs=15, progress=False)
    assert len(hist.losses) == len(hist.grad_norms) == 30
    assert len(hist.epoch_losses) == 15
    assert hist.losses[-1] < 0.2 * hist.losses[0]
    fig = hist.plot()
    assert len(fig.axes) == 2


class _First(nn.Module):
    """Wrap a (y, state) model so fit sees only y."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, x):
        return self.inner(x)[0]


def test_fit_clips_gradient_norm():
    seed_everything(0)
    model = nn.Linear(3, 1)
    x, y = torch.randn(8, 3) * 100, torch.randn(8, 1)
    before = [p.detach().clone() for p in model.parameters()]
    lr = 0.1
    hist = fit(model, [(x, y)], nn.functional.mse_loss, torch.optim.SGD(model.parameters(), lr=lr),
               clip=1.0, progress=False)
    assert hist.grad_norms[0] > 1.0                 # reported norm is the one before clipping
    step = torch.cat([(b - p.detach()).flatten() for b, p in zip(before, model.parameters(), strict=True)])
    torch.testing.assert_close(step.norm(), torch.tensor(lr * 1.0))
    with pytest.raises(ValueError, match="clip"):
        fit(model, [(x, y)], nn.functional.mse_loss, torch.optim.SGD(model.parameters(), lr=lr), clip=0)


def test_tbptt_chunks_cover_sequence():
    xs, ys = torch.arange(10.0), -torch.arange(10.0)
    chunks = list(tbptt_chunks(xs, ys, 4))
    assert [len(c[0]) for c in chunks] == [4, 4, 2]
    assert torch.equal(torch.cat([c[0] for c in chunks]), xs)
    assert torch.equal(torch.cat([c[1] for c in chunks]), ys)


def test_detach_state_cuts_graph_keeps_values():
    h = torch.ones(2, requires_grad=True) * 2
    s = detach_state((h, [h * 3]))
    assert isinstance(s, tuple) and isinstance(s[1], list)
    assert s[0].grad_fn is None and s[1][0].grad_fn is None
    assert torch.equal(s[1][0], h * 3)
    assert detach_state(None) is None


def test_fit_tbptt_carries_state_across_chunks():
    """With lr=0 the chunked run must end in exactly the state of one full-length run."""
    seed_everything(0)
    model = SeqRegressor()
    xs, ys = torch.randn(12, 3, 1), torch.randn(12, 3, 1)
    hist = fit_tbptt(model, xs, ys, nn.functional.mse_loss, torch.optim.SGD(model.parameters(), lr=0.0),
                     k=5, progress=False)
    _, (h_full, c_full) = model(xs)
    h, c = hist.final_state
    assert h.grad_fn is None and c.grad_fn is None
    torch.testing.assert_close(h, h_full.detach())
    torch.testing.assert_close(c, c_full.detach())
    assert len(hist.losses) == 3                    # chunks of 5, 5, 2


def test_fit_tbptt_learns():
    seed_everything(1)
    model = SeqRegressor()
    xs = torch.randn(40, 4, 1)
    ys = 0.5 * torch.roll(xs, 1, 0)                  # predict the previous input: needs the carried state
    hist = fit_tbptt(model, xs, ys, nn.functional.mse_loss, torch.optim.Adam(model.parameters(), lr=3e-2),
                     k=8, epochs=12, progress=False)
    assert isinstance(hist, History)
    assert hist.epoch_losses[-1] < 0.3 * hist.epoch_losses[0]


def test_progress_bar_in_a_terminal_is_plain_tqdm():
    out = io.StringIO()
    items = list(progress_bar(range(7), desc="steps", file=out, mininterval=0))
    assert items == list(range(7))
    assert "steps: 100%" in out.getvalue() and "7/7" in out.getvalue()
    assert list(progress_bar(range(3), disable=True)) == [0, 1, 2]


NOTEBOOK_LOOPS = """
import torch
from lstmkit import tasks
from lstmkit.train import fit, fit_tbptt, progress_bar

torch.manual_seed(0)
for _ in progress_bar(range(40), desc="plain", mininterval=0):
    pass
m = torch.nn.Linear(2, 1)
tasks.train(m, lambda s: (torch.randn(4, 2), torch.randn(4)),
            lambda m, x, y: ((m(x).squeeze(-1) - y) ** 2).mean(), 30, desc="tasks.train")
fit(m, [(torch.randn(4, 2), torch.randn(4, 1))], torch.nn.functional.mse_loss,
    torch.optim.SGD(m.parameters(), lr=0.1), epochs=3)
rnn = torch.nn.RNN(1, 2)
hist = fit_tbptt(rnn, torch.randn(6, 1, 1), torch.randn(6, 1, 2), torch.nn.functional.mse_loss,
                 torch.optim.SGD(rnn.parameters(), lr=0.1), k=3, epochs=2)
"""


def test_progress_bars_in_an_executed_notebook_are_one_text_line_each():
    """The book executes chapters with nbclient: each loop must leave one final text line, no widget."""
    import nbclient
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(NOTEBOOK_LOOPS)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbclient.NotebookClient(nb, timeout=120, kernel_name="python3").execute()
    outputs = nb.cells[0].outputs
    assert [o.output_type for o in outputs] == ["display_data"] * 4, outputs   # nothing on stderr
    lines = [o.data["text/plain"] for o in outputs]
    assert all(list(o.data) == ["text/plain"] for o in outputs)                  # no widget view
    assert "widgets" not in nb.metadata
    for line, (desc, total) in zip(lines, [("plain", 40), ("tasks.train", 30), ("epochs", 3), ("epochs", 2)],
                                   strict=True):
        assert line.startswith(f"{desc}: 100%") and f"{total}/{total}" in line, line
        assert "\r" not in line and "\n" not in line
    assert "loss=" in lines[1] and "loss=" in lines[2]


def test_add_forget_bias_is_the_reference_convention():
    """+b on rows H..2H-1 of every bias_ih (all layers, both directions), bias_hh untouched: the
    same as reference.init_params(..., forget_bias=b), so the two agree on the f gate's bias."""
    H = 5
    torch.manual_seed(0)
    plain = LSTM(3, H, num_layers=2, bidirectional=True)
    torch.manual_seed(0)
    biased = add_forget_bias(LSTM(3, H, num_layers=2, bidirectional=True), 2.5)
    offset = torch.tensor([0.0] * H + [2.5] * H + [0.0] * 2 * H)
    for name, p in biased.named_parameters():
        q = dict(plain.named_parameters())[name]
        if name.startswith("bias_ih"):
            torch.testing.assert_close(p - q, offset)
        else:
            assert torch.equal(p, q), name
    # the reference's convention, on the same random draw
    p0 = reference.init_params(3, H, rng=7)
    p1 = reference.init_params(3, H, rng=7, forget_bias=2.5)
    torch.testing.assert_close(torch.from_numpy(p1["bias_ih"] - p0["bias_ih"]), offset.double())
    assert (p1["bias_hh"] == p0["bias_hh"]).all()
    # and a torch module biased this way loads into the reference with the offset in bias_ih
    single = add_forget_bias(LSTM(3, H).double(), 2.5)
    p = from_torch(single)
    torch.testing.assert_close(torch.from_numpy(p["bias_ih"]), single.bias_ih_l0.detach())
