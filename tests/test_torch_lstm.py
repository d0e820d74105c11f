"""lstmkit.torch.LSTM / LSTMCell against torch.nn.LSTM / nn.LSTMCell, for both implementations.

The fused implementation is tested twice on the CPU: with its compiled step loops (the default
where they build) and with its torch ops (lstmkit.torch.USE_CPU_KERNEL = False), which are what
every other device runs."""

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

import lstmkit.torch as lt
from lstmkit import _cpu_kernel, reference
from lstmkit.torch import LSTM, LSTMCell, LSTMFunction

pytestmark = pytest.mark.usefixtures("one_thread")

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
IMPLS = ["fused", "fused-torch-ops", "loop"]
TOL = {torch.float64: dict(rtol=0, atol=1e-10), torch.float32: dict(rtol=1e-5, atol=1e-6)}

# (constructor kwargs, input kind, pass hx?): a small grid that still touches every feature.
GRID = [
    (dict(), "plain", False),
    (dict(), "plain", True),
    (dict(num_layers=3), "plain", True),
    (dict(num_layers=2, bidirectional=True), "plain", True),
    (dict(batch_first=True), "plain", False),
    (dict(proj_size=3), "plain", True),
    (dict(num_layers=2, bidirectional=True, proj_size=4, batch_first=True), "plain", True),
    (dict(bias=False), "plain", False),
    (dict(num_layers=2, dropout=0.5), "plain", True),          # dropout is inactive in eval mode
    (dict(), "packed", False),
    (dict(num_layers=2, bidirectional=True, proj_size=3), "packed", True),
    (dict(bidirectional=True, batch_first=True), "packed", False),
    (dict(), "unbatched", False),
    (dict(bidirectional=True), "unbatched", True),
]


@pytest.fixture(params=IMPLS)
def impl(request, monkeypatch):
    """The impl argument, where "fused-torch-ops" is impl="fused" with the compiled CPU kernel off."""
    if request.param == "fused-torch-ops":
        monkeypatch.setattr(lt, "USE_CPU_KERNEL", False)
        return "fused"
    return request.param


@pytest.fixture(params=["kernel", "torch-ops"])
def fused_backend(request, monkeypatch):
    monkeypatch.setattr(lt, "USE_CPU_KERNEL", request.param == "kernel")
    return request.param


def make_pair(kwargs, dtype, device, impl):
    """An nn.LSTM and an lstmkit LSTM with identical parameters (same seed, same init order)."""
    torch.manual_seed(0)
    ref = nn.LSTM(5, 6, **kwargs).to(device, dtype).eval()
    torch.manual_seed(0)
    ours = LSTM(5, 6, **kwargs, impl=impl).to(device, dtype).eval()
    return ref, ours


def run(mod, x, kind, hx, lengths, batch_first):
    """Forward, backward of a random-ish scalar; returns outputs and all gradients."""
    for p in mod.parameters():
        p.grad = None
    x = x.detach().requires_grad_()
    hx = None if hx is None else tuple(s.detach().requires_grad_() for s in hx)
    inp = x
    if kind == "packed":
        inp = pack_padded_sequence(x, lengths, batch_first=batch_first, enforce_sorted=False)
    out, (h, c) = mod(inp, hx)
    out = out.data if kind == "packed" else out
    loss = (out.sin() * 1.3).sum() + (h * h).sum() + c.cos().sum()
    loss.backward()
    grads = [x.grad] + ([] if hx is None else [s.grad for s in hx]) + [p.grad for p in mod.parameters()]
    return [out, h, c] + grads


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("kwargs,kind,with_hx", GRID)
@pytest.mark.filterwarnings("ignore:LSTM with projections is not supported with oneDNN")
def test_lstm_matches_torch(kwargs, kind, impl, dtype, device, with_hx):
    ref, ours = make_pair(kwargs, dtype, device, impl)
    assert list(ref.state_dict()) == list(ours.state_dict())
    T, B = 7, 4
    g = torch.Generator().manual_seed(1)
    bf = kwargs.get("batch_first", False)
    shape = (T, 5) if kind == "unbatched" else ((B, T, 5) if bf else (T, B, 5))
    x = torch.randn(shape, generator=g, dtype=dtype).to(device)
    lengths = torch.tensor([7, 3, 5, 1]) if kind == "packed" else None
    hx = None
    if with_hx:
        dirs = 2 if kwargs.get("bidirectional") else 1
        L = kwargs.get("num_layers", 1) * dirs
        P = kwargs.get("proj_size", 0) or 6
        bshape = () if kind == "unbatched" else (B,)
        hx = (torch.randn((L, *bshape, P), generator=g, dtype=dtype).to(device),
              torch.randn((L, *bshape, 6), generator=g, dtype=dtype).to(device))
    expected = run(ref, x, kind, hx, lengths, bf)
    got = run(ours, x, kind, hx, lengths, bf)
    assert len(expected) == len(got)
    for e, o in zip(expected, got, strict=True):
        assert e.shape == o.shape
        torch.testing.assert_close(o, e, **TOL[dtype])


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("kwargs,kind,with_hx", GRID)
@pytest.mark.filterwarnings("ignore:LSTM with projections is not supported with oneDNN")
def test_no_grad_forward_matches_torch(kwargs, kind, dtype, device, with_hx, fused_backend):
    """Under no_grad the fused path keeps nothing for a backward (its own loop): same outputs as nn.LSTM,
    and ordinary tensors (not inference tensors) that later autograd code can use."""
    ref, ours = make_pair(kwargs, dtype, device, "fused")
    g = torch.Generator().manual_seed(2)
    bf = kwargs.get("batch_first", False)
    shape = (7, 5) if kind == "unbatched" else ((4, 7, 5) if bf else (7, 4, 5))
    x = torch.randn(shape, generator=g, dtype=dtype).to(device)
    if kind == "packed":
        x = pack_padded_sequence(x, torch.tensor([7, 3, 5, 1]), batch_first=bf, enforce_sorted=False)
    hx = None
    if with_hx:
        L = kwargs.get("num_layers", 1) * (2 if kwargs.get("bidirectional") else 1)
        bshape = () if kind == "unbatched" else (4,)
        hx = (torch.randn((L, *bshape, kwargs.get("proj_size", 0) or 6), generator=g, dtype=dtype).to(device),
              torch.randn((L, *bshape, 6), generator=g, dtype=dtype).to(device))
    with torch.no_grad():
        (e_out, (e_h, e_c)), (o_out, (o_h, o_c)) = ref(x, hx), ours(x, hx)
    if kind == "packed":
        e_out, o_out = e_out.data, o_out.data
    for e, o in ((e_out, o_out), (e_h, o_h), (e_c, o_c)):
        assert not o.is_inference() and not o.requires_grad
        torch.testing.assert_close(o, e, **TOL[dtype])


def test_packed_output_keeps_sorting_metadata():
    torch.manual_seed(0)
    x = torch.randn(5, 3, 2)
    packed = pack_padded_sequence(x, torch.tensor([2, 5, 3]), enforce_sorted=False)
    ref_out, _ = nn.LSTM(2, 3)(packed)
    torch.manual_seed(0)
    out, _ = LSTM(2, 3)(packed)
    torch.manual_seed(0)
    ref_out, _ = nn.LSTM(2, 3)(packed)
    assert torch.equal(out.batch_sizes, ref_out.batch_sizes)
    assert torch.equal(out.sorted_indices, ref_out.sorted_indices)
    torch.testing.assert_close(out.data, ref_out.data)


def test_state_dict_loads_both_ways():
    kw = dict(num_layers=2, bidirectional=True, proj_size=2)
    ref, ours = nn.LSTM(4, 5, **kw), LSTM(4, 5, **kw)
    ours.load_state_dict(ref.state_dict())
    ref2 = nn.LSTM(4, 5, **kw)
    ref2.load_state_dict(ours.state_dict())
    for a, b in zip(ref.parameters(), ref2.parameters(), strict=True):
        assert torch.equal(a, b)


def test_same_init_as_torch():
    torch.manual_seed(3)
    ref = nn.LSTM(4, 5, num_layers=2, bidirectional=True)
    torch.manual_seed(3)
    ours = LSTM(4, 5, num_layers=2, bidirectional=True)
    for (n1, a), (n2, b) in zip(ref.named_parameters(), ours.named_parameters(), strict=True):
        assert n1 == n2 and torch.equal(a, b)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("batched", [True, False])
@pytest.mark.parametrize("with_hx", [True, False])
def test_cell_matches_torch(impl, bias, batched, with_hx, device):
    torch.manual_seed(0)
    ref = nn.LSTMCell(5, 6, bias=bias).double().to(device)
    torch.manual_seed(0)
    ours = LSTMCell(5, 6, bias=bias, impl=impl).double().to(device)
    assert list(ref.state_dict()) == list(ours.state_dict())
    shape = (3, 5) if batched else (5,)
    x = torch.randn(shape, dtype=torch.float64, device=device)
    hx = None
    if with_hx:
        hshape = (3, 6) if batched else (6,)
        hx = (torch.randn(hshape, dtype=torch.float64, device=device),
              torch.randn(hshape, dtype=torch.float64, device=device))
    results = []
    for mod in (ref, ours):
        xi = x.clone().requires_grad_()
        hi = None if hx is None else tuple(s.clone().requires_grad_() for s in hx)
        h, c = mod(xi, hi)
        (h.sin().sum() + (c * c).sum()).backward()
        results.append([h, c, xi.grad] + ([] if hi is None else [s.grad for s in hi])
                       + [p.grad for p in mod.parameters()])
    for e, o in zip(*results, strict=True):
        torch.testing.assert_close(o, e, rtol=0, atol=1e-10)


@pytest.mark.parametrize("proj", [False, True])
@pytest.mark.parametrize("masked", [False, True])
def test_function_gradcheck(proj, masked, fused_backend):
    g = torch.Generator().manual_seed(0)
    T, B, D, H, P = 4, 3, 3, 4, 2
    P = P if proj else H

    def rnd(*shape):
        return torch.randn(*shape, generator=g, dtype=torch.float64).requires_grad_()

    args = [rnd(T, B, D), rnd(B, P), rnd(B, H), rnd(4 * H, D), rnd(4 * H, P), rnd(4 * H), rnd(4 * H),
            rnd(P, H) if proj else None]
    mask = None
    if masked:
        mask = (torch.arange(T).unsqueeze(1) < torch.tensor([4, 2, 1])).unsqueeze(2)
    assert torch.autograd.gradcheck(lambda *a: LSTMFunction.apply(*a, mask), args)


def test_function_matches_numpy_reference(fused_backend):
    """The Function's gradients equal lstmkit.reference.backward's up to float64 rounding."""
    rng = np.random.default_rng(0)
    T, B, D, H = 5, 3, 4, 6
    params = reference.init_params(D, H, rng=rng)
    xs = rng.standard_normal((T, B, D))
    h0, c0 = rng.standard_normal((B, H)), rng.standard_normal((B, H))
    dhs = rng.standard_normal((T, B, H))
    dh_T, dc_T = rng.standard_normal((B, H)), rng.standard_normal((B, H))

    hs, (h_T, c_T), cache = reference.forward(xs, (h0, c0), params)
    dxs, (dh0, dc0), grads = reference.backward(dhs, (dh_T, dc_T), cache)

    t = {k: torch.tensor(v, requires_grad=True) for k, v in params.items()}
    x, h, c = (torch.tensor(a, requires_grad=True) for a in (xs, h0, c0))
    y, hT, cT = LSTMFunction.apply(x, h, c, t["weight_ih"], t["weight_hh"], t["bias_ih"], t["bias_hh"],
                                   None, None)
    np.testing.assert_allclose(y.detach().numpy(), hs, rtol=0, atol=1e-12)
    np.testing.assert_allclose(cT.detach().numpy(), c_T, rtol=0, atol=1e-12)
    torch.autograd.backward([y, hT, cT], [torch.tensor(dhs), torch.tensor(dh_T), torch.tensor(dc_T)])
    for got, want in [(x.grad, dxs), (h.grad, dh0), (c.grad, dc0)] + [(t[k].grad, grads[k]) for k in grads]:
        np.testing.assert_allclose(got.numpy(), want, rtol=0, atol=1e-12)


class TinyLM(nn.Module):
    """Embedding -> LSTM -> Linear language model, with the LSTM class as a parameter."""

    def __init__(self, lstm_cls, vocab=11, emb=8, hidden=16, **lstm_kwargs):
        super().__init__()
        self.emb = nn.Embedding(vocab, emb)
        self.lstm = lstm_cls(emb, hidden, batch_first=True, **lstm_kwargs)
        self.head = nn.Linear(hidden, vocab)

    def forward(self, tokens):
        h, _ = self.lstm(self.emb(tokens))
        return self.head(h)


def test_language_model_trains_identically(impl):
    def train(lstm_cls, **kw):
        torch.manual_seed(0)
        model = TinyLM(lstm_cls, num_layers=2, **kw)
        opt = torch.optim.Adam(model.parameters(), lr=1e-2)
        tokens = torch.randint(0, 11, (4, 9), generator=torch.Generator().manual_seed(1))
        losses = []
        for _ in range(4):  # a few steps on one fixed batch: the loss must fall
            logits = model(tokens[:, :-1])
            loss = nn.functional.cross_entropy(logits.reshape(-1, 11), tokens[:, 1:].reshape(-1))
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
        return losses

    want = train(nn.LSTM)
    got = train(LSTM, impl=impl)
    assert want[-1] < want[0]  # it learned something, so the comparison is not vacuous
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)


def test_clear_errors():
    """torch's exception types, with messages that name the expected size (more in test_torch_compat.py)."""
    with pytest.raises(RuntimeError, match="sequence length to be larger than 0"):
        LSTM(3, 4)(torch.zeros(0, 2, 3))
    with pytest.raises(ValueError, match="impl"):
        LSTM(3, 4, impl="cudnn")
    with pytest.raises(ValueError, match="proj_size"):
        LSTM(3, 4, proj_size=4)
    with pytest.raises(RuntimeError, match="Expected 3, got 7"):
        LSTM(3, 4)(torch.randn(5, 2, 7))
    with pytest.raises(RuntimeError, match=r"Expected hidden\[0\] size \(1, 2, 4\), got \[1, 3, 4\]"):
        LSTM(3, 4)(torch.randn(5, 2, 3), (torch.zeros(1, 3, 4), torch.zeros(1, 2, 4)))
    with pytest.raises(ValueError, match="dtype"):
        LSTM(3, 4)(torch.randn(5, 2, 3, dtype=torch.float64))
    with pytest.raises(RuntimeError, match="inconsistent input_size: got 5 expected 3"):
        LSTMCell(3, 4)(torch.randn(2, 5))


def test_cpu_kernel_is_built_and_used(monkeypatch):
    """On this CPU the fused path runs its compiled step loops, except with masks or projections."""
    assert _cpu_kernel.load(), _cpu_kernel.status()
    calls = []
    original = lt._kernel_forward
    monkeypatch.setattr(lt, "_kernel_forward", lambda *a, **k: calls.append(k["keep"]) or original(*a, **k))
    x = torch.randn(4, 2, 5, dtype=torch.float64)
    LSTM(5, 6).double()(x)[0].sum().backward()
    with torch.no_grad():
        LSTM(5, 6).double()(x)
    assert calls == [True, False]
    LSTM(5, 6, proj_size=2).double()(x)
    LSTM(5, 6).double()(pack_padded_sequence(x, torch.tensor([4, 2])))
    assert calls == [True, False]


@pytest.mark.parametrize("n_threads", [1, 2, 3])
def test_cpu_kernel_with_threads(n_threads):
    """The kernel splits each step's hidden units between threads (3: unequal blocks of H=64);
    results must not depend on that. float64 equals nn.LSTM; in float32 (where nn.LSTM's own
    rounding at this size exceeds 1e-5) the kernel's largest error against the float64 result is no
    worse than nn.LSTM's."""
    g = torch.Generator().manual_seed(1)
    x = torch.randn(9, 37, 7, generator=g, dtype=torch.float64)   # 37: vector loop and remainder
    hx = tuple(torch.randn(2, 37, 64, generator=g, dtype=torch.float64) for _ in range(2))
    n = torch.get_num_threads()
    torch.set_num_threads(n_threads)
    try:
        results = {}
        for dtype in (torch.float64, torch.float32):
            for cls in (nn.LSTM, LSTM):
                torch.manual_seed(0)
                mod = cls(7, 64, num_layers=2).to(dtype)
                state = tuple(s.to(dtype) for s in hx)
                results[cls, dtype] = run(mod, x.to(dtype), "plain", state, None, False)
    finally:
        torch.set_num_threads(n)
    truth = results[nn.LSTM, torch.float64]
    for e, o in zip(truth, results[LSTM, torch.float64], strict=True):
        torch.testing.assert_close(o, e, **TOL[torch.float64])

    def worst(got):
        return max((a.double() - b).abs().max().item() for a, b in zip(got, truth, strict=True))

    assert worst(results[LSTM, torch.float32]) <= 1.5 * worst(results[nn.LSTM, torch.float32])
    assert worst(results[LSTM, torch.float32]) < 1e-3


def test_cpu_kernel_falls_back_with_a_reason(monkeypatch, tmp_path):
    """Where the kernel cannot be built, load() says why and the torch ops give the same results."""
    monkeypatch.setenv("LSTMKIT_CPU_KERNEL", "0")
    with pytest.raises(RuntimeError, match="LSTMKIT_CPU_KERNEL=0"):
        _cpu_kernel._load()
    monkeypatch.delenv("LSTMKIT_CPU_KERNEL")
    monkeypatch.delenv("CXX", raising=False)
    monkeypatch.setattr(_cpu_kernel.shutil, "which", lambda name: None)
    with pytest.raises(RuntimeError, match="no C.. compiler"):
        _cpu_kernel._load()
    monkeypatch.undo()
    monkeypatch.setenv("LSTMKIT_CACHE", str(tmp_path))
    monkeypatch.setenv("CXX", "false")            # a "compiler" that fails
    with pytest.raises(RuntimeError, match="false failed"):
        _cpu_kernel._load()
    assert not list(tmp_path.glob("*.so"))         # no half-written library left behind

    monkeypatch.setattr(_cpu_kernel, "_state", {"loaded": None, "status": "not loaded yet"})
    assert not _cpu_kernel.load()
    assert _cpu_kernel.status().startswith("not used: false failed")
    ref, ours = make_pair({}, torch.float64, "cpu", "fused")
    x = torch.randn(5, 3, 5, dtype=torch.float64)
    for e, o in zip(run(ref, x, "plain", None, None, False), run(ours, x, "plain", None, None, False),
                    strict=True):
        torch.testing.assert_close(o, e, **TOL[torch.float64])


def test_cpu_kernel_keeps_denormals():
    """Loading the kernel must not switch the process to flush-to-zero (as gcc's fast-math start-up
    code would): torch's own float results elsewhere must stay as they were."""
    assert _cpu_kernel.load(), _cpu_kernel.status()
    tiny = torch.tensor([1e-40, 1e-310], dtype=torch.float64)
    assert (tiny * 1.0 > 0).all()
    assert (torch.tensor(1e-40, dtype=torch.float32) * 1.0).item() > 0


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_non_finite_inputs_propagate_like_nn(fused_backend, dtype):
    """A NaN in the input makes its sequence's later outputs NaN and leaves the other sequences
    alone; an infinite input saturates the gates as in nn.LSTM. Batch 9: the kernel's eight-wide
    loop and its remainder both see a NaN and an inf."""
    torch.manual_seed(0)
    ref = nn.LSTM(3, 16).to(dtype)
    ours = LSTM(3, 16).to(dtype)
    ours.load_state_dict(ref.state_dict())
    x = torch.randn(4, 9, 3, dtype=dtype)
    x[1, 2, 0] = x[2, 8, 1] = float("nan")
    x[1, 5, 2], x[0, 7, 0] = float("inf"), -float("inf")
    for grad in (False, True):
        with torch.set_grad_enabled(grad):
            expected, got = ref(x)[0], ours(x)[0]
        nan = expected.isnan().any(-1)
        assert nan[1:, 2].all() and nan[2:, 8].all() and nan.sum() == 3 + 2
        torch.testing.assert_close(got, expected, equal_nan=True, **TOL[dtype])


def test_cpu_kernel_rejects_wrong_buffers():
    """The kernel writes through raw pointers, so its ops check every buffer's shape and dtype first."""
    assert _cpu_kernel.load(), _cpu_kernel.status()
    T, H, B = 5, 4, 3
    fwd = dict(gates=torch.zeros(T, 4 * H, B), w_h=torch.zeros(4 * H, H), bias=torch.zeros(4 * H),
               hn=torch.zeros(H, T + 1, B), c2=torch.zeros(T + 1, H, B), s_c=torch.zeros(T, H, B))
    torch.ops.lstmkit.forward_steps(*fwd.values(), 1.0)
    with pytest.raises(RuntimeError, match=r"hn has shape \[3, 6, 3\], expected \[4, 6, 3\]"):
        torch.ops.lstmkit.forward_steps(*{**fwd, "hn": torch.zeros(H - 1, T + 1, B)}.values(), 1.0)
    with pytest.raises(RuntimeError, match=r"c2 has shape \[2, 4, 3\], expected \[6, 4, 3\]"):
        torch.ops.lstmkit.forward_steps(*{**fwd, "c2": torch.zeros(2, H, B)}.values(), 1.0)
    with pytest.raises(RuntimeError, match="contiguous CPU tensor of one dtype"):
        torch.ops.lstmkit.forward_steps(*{**fwd, "bias": torch.zeros(4 * H).double()}.values(), 1.0)
    bwd = dict(gates=fwd["gates"], c2=fwd["c2"], s_c=fwd["s_c"], dy=torch.zeros(T, H, B),
               w_hh_t=torch.zeros(H, 4 * H), dh=torch.zeros(H, B), dc=torch.zeros(H, B),
               da=torch.zeros(4 * H, T, B))
    torch.ops.lstmkit.backward_steps(*bwd.values())
    with pytest.raises(RuntimeError, match=r"da has shape \[16, 4, 3\], expected \[16, 5, 3\]"):
        torch.ops.lstmkit.backward_steps(*{**bwd, "da": torch.zeros(4 * H, T - 1, B)}.values())
    with pytest.raises(RuntimeError, match="contiguous"):
        torch.ops.lstmkit.backward_steps(*{**bwd, "dy": torch.zeros(T, B, H).transpose(1, 2)}.values())
