"""lstmkit.torch.LSTM / LSTMCell beyond a training loop: PyTorch's own module tests, torch.compile,
torch.export, torch.func, second derivatives, torch's errors and RNN utilities.

Every comparison is against torch.nn.LSTM / nn.LSTMCell on the same weights. The fused path runs
twice where it matters: with the compiled CPU kernel and with its torch ops (USE_CPU_KERNEL)."""

import copy
import io
import pickle
import warnings

import pytest
import torch
import torch.nn.utils.prune
from torch import nn
from torch.func import functional_call, grad, jacfwd, jacrev, jvp, vmap
from torch.nn.utils.rnn import pack_padded_sequence, pack_sequence
from torch.testing._internal import common_modules  # needs expecttest (the dev extra)

import lstmkit.torch as lt
from lstmkit.torch import LSTM, LSTMCell, LSTMFunction

pytestmark = pytest.mark.usefixtures("one_thread")

OURS = {nn.LSTM: LSTM, nn.LSTMCell: LSTMCell}
MODULE_INFOS = [m for m in common_modules.module_db if m.module_cls in OURS]
TOL = {torch.float64: dict(rtol=0, atol=1e-10), torch.float32: dict(rtol=1e-4, atol=2e-5)}


@pytest.fixture(params=["kernel", "torch-ops"])
def backend(request, monkeypatch):
    monkeypatch.setattr(lt, "USE_CPU_KERNEL", request.param == "kernel")
    if request.param == "kernel":           # loads it, so that a test run alone has it too
        assert lt._kernel_loaded(), lt.cpu_kernel_status()
    return request.param


def twin(ref):
    """An lstmkit module with ref's constructor arguments and weights."""
    if isinstance(ref, nn.LSTM):
        ours = LSTM(ref.input_size, ref.hidden_size, ref.num_layers, ref.bias, ref.batch_first, ref.dropout,
                    ref.bidirectional, ref.proj_size)
    else:
        ours = LSTMCell(ref.input_size, ref.hidden_size, ref.bias)
    ours.load_state_dict(ref.state_dict())
    return ours.to(ref.weight_ih_l0.dtype if isinstance(ref, nn.LSTM) else ref.weight_ih.dtype)


def leaves(tree):
    return [t for t in torch.utils._pytree.tree_leaves(tree) if isinstance(t, torch.Tensor)]


# ----------------------------------------------------------------------------- PyTorch's ModuleInfo tests

@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("info", MODULE_INFOS, ids=lambda m: m.module_cls.__name__)
def test_module_info_inputs(info, dtype, backend):
    """torch.testing._internal.common_modules' module inputs for nn.LSTM / nn.LSTMCell: same outputs
    and gradients (w.r.t. inputs, hidden state and weights) as torch's module."""
    samples = info.module_inputs_func(info, device="cpu", dtype=dtype, requires_grad=True, training=True)
    assert samples
    for sample in samples:
        c, f = sample.constructor_input, sample.forward_input
        torch.manual_seed(0)
        ref = info.module_cls(*c.args, **c.kwargs).to(dtype)
        ours = twin(ref)
        results = []
        for mod in (ref, ours):
            args = torch.utils._pytree.tree_map(
                lambda t: t.detach().clone().requires_grad_() if isinstance(t, torch.Tensor) else t, f.args)
            out = mod(*args, **f.kwargs)
            inputs = leaves(args) + list(mod.parameters())
            weights = [torch.linspace(1, 2, t.numel(), dtype=dtype).view(t.shape) for t in leaves(out)]
            loss = sum((t * w).sum() for t, w in zip(leaves(out), weights, strict=True))
            results.append(leaves(out) + list(torch.autograd.grad(loss, inputs)))
        for e, o in zip(*results, strict=True):
            torch.testing.assert_close(o, e, **TOL[dtype])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("info", MODULE_INFOS, ids=lambda m: m.module_cls.__name__)
def test_module_info_error_inputs(info, dtype):
    """common_modules' error inputs: lstmkit raises torch's exception type with torch's message."""
    samples = info.module_error_inputs_func(info, device="cpu", dtype=dtype, requires_grad=False,
                                            training=True)
    assert samples
    for sample in samples:
        mi = sample.module_error_input
        c = mi.constructor_input
        for cls in (info.module_cls, OURS[info.module_cls]):
            with pytest.raises(sample.error_type, match=sample.error_regex):
                torch.manual_seed(0)
                mod = cls(*c.args, **c.kwargs)
                assert sample.error_on == common_modules.ModuleErrorEnum.FORWARD_ERROR
                mod(*mi.forward_input.args, **mi.forward_input.kwargs)


# ----------------------------------------------------------------------------- errors and arguments

@pytest.mark.parametrize("make_input", [
    lambda: torch.randn(5, 2, 3).unsqueeze(0),                                   # 4-D input
    lambda: torch.randn(0, 2, 3),                                                # no steps
    lambda: (torch.randn(5, 2, 3), (torch.randn(1, 2, 4), torch.randn(1, 2, 4)[0])),  # 2-D cx
    lambda: (torch.randn(5, 3), (torch.randn(1, 1, 4), torch.randn(1, 1, 4))),   # unbatched, 3-D hx
    lambda: (torch.randn(5, 2, 3), (torch.randn(1, 2, 4), torch.randn(2, 2, 4))),  # wrong cx size
    lambda: (torch.randn(5, 2, 3), (torch.randn(1, 3, 4), torch.randn(1, 2, 4))),  # wrong hx batch
    lambda: torch.randn(5, 2, 4),                                                # wrong feature size
    lambda: torch.randn(5, 2, 3, dtype=torch.float64),                           # wrong dtype
])
def test_forward_errors_are_torchs(make_input):
    args = make_input()
    args = args if isinstance(args, tuple) else (args,)
    errors = []
    for cls in (nn.LSTM, LSTM):
        with pytest.raises(Exception) as e:
            cls(3, 4)(*args)
        errors.append(e)
    assert errors[1].type is errors[0].type
    assert str(errors[1].value) == str(errors[0].value)


def test_cell_hidden_errors_are_torchs():
    for hx in [(torch.randn(2, 5), torch.randn(2, 4)), (torch.randn(2, 4), torch.randn(3, 4)),
               (torch.randn(2, 4, 1), torch.randn(2, 4))]:
        errors = []
        for cls in (nn.LSTMCell, LSTMCell):
            with pytest.raises(Exception) as e:
                cls(3, 4)(torch.randn(2, 3), hx)
            errors.append(e)
        assert errors[1].type is errors[0].type and str(errors[1].value) == str(errors[0].value)


@pytest.mark.parametrize("kwargs", [dict(bidirectional=True), dict(num_layers=2, proj_size=2)])
def test_bidirectional_is_not_type_checked_like_torch(kwargs):
    """nn.RNNBase checks bias and batch_first (TypeError) but not bidirectional: neither does lstmkit."""
    assert LSTM(3, 4, **kwargs).bidirectional == nn.LSTM(3, 4, **kwargs).bidirectional
    LSTM(3, 4, bidirectional=1)
    nn.LSTM(3, 4, bidirectional=1)


def test_dropout_warning_and_range_as_torch():
    caught = {}
    for cls in (nn.LSTM, LSTM):
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            cls(3, 4, dropout=0.5)
            cls(3, 4, num_layers=2, dropout=0.5)       # no warning here
        caught[cls] = [(x.category, str(x.message)) for x in w]
        for bad in (1.5, -0.1, True, "0.5"):
            with pytest.raises(ValueError, match="dropout should be a number in range"):
                cls(3, 4, dropout=bad)
    assert caught[LSTM] == caught[nn.LSTM] and len(caught[LSTM]) == 1


@pytest.mark.parametrize("backend_", ["kernel", "torch-ops"])
def test_empty_batch_as_torch_and_silent(backend_, monkeypatch, capfd):
    """Batch size 0 gives torch's (empty) outputs and gradients, with nothing printed (no BLAS call
    with zero sizes, which prints "oneMKL ERROR")."""
    monkeypatch.setattr(lt, "USE_CPU_KERNEL", backend_ == "kernel")
    torch.manual_seed(0)
    ref = nn.LSTM(3, 4, num_layers=2)
    ours = twin(ref)
    for grad_on in (False, True):
        results = []
        for mod in (ref, ours):
            x = torch.randn(5, 0, 3, requires_grad=grad_on)
            with torch.set_grad_enabled(grad_on):
                out, (h, c) = mod(x)
            assert out.shape == (5, 0, 4) and h.shape == c.shape == (2, 0, 4)
            if grad_on:
                (out.sum() + h.sum()).backward()
                results.append([x.grad] + [p.grad for p in mod.parameters()])
        for e, o in zip(*results, strict=True):
            torch.testing.assert_close(o, e)
    with torch.no_grad():
        h, c = LSTMCell(3, 4)(torch.randn(0, 3))
    assert h.shape == (0, 4)
    out, err = capfd.readouterr()
    assert out == "" and err == ""


# ----------------------------------------------------------------------------- RNN utilities

@pytest.mark.parametrize("name,kwargs", [("weight_ih_l0", {}), ("weight_hr_l0", dict(proj_size=16))])
def test_rnn_weight_norm(name, kwargs):
    """PyTorch test/test_nn.py TestNN.test_rnn_weight_norm, for lstmkit.LSTM (and its outputs)."""
    num_params = 5 if kwargs else 4
    torch.manual_seed(0)
    ref = nn.LSTM(32, 32, **kwargs)
    l = twin(ref)
    l = torch.nn.utils.weight_norm(l, name=name)
    ref = torch.nn.utils.weight_norm(ref, name=name)
    assert sum(isinstance(p, nn.Parameter) for p in l._flat_weights) == num_params - 1
    x = torch.randn(3, 2, 32)
    torch.testing.assert_close(l(x)[0], ref(x)[0])
    l = torch.nn.utils.remove_weight_norm(l, name=name)
    assert sum(isinstance(p, nn.Parameter) for p in l._flat_weights) == num_params
    assert name in l._parameters and l._parameters[name] is not None
    assert name + "_v" not in l._parameters and name + "_g" not in l._parameters
    assert name in dict(l.named_parameters()) and name + "_g" not in dict(l.named_parameters())


def test_rnn_pruning():
    """PyTorch test/nn/test_pruning.py TestPruningNN.test_rnn_pruning, for lstmkit.LSTM."""
    torch.manual_seed(0)
    ref = nn.LSTM(32, 32)
    l = twin(ref)
    for m in (l, ref):
        torch.manual_seed(1)
        torch.nn.utils.prune.l1_unstructured(m, "weight_ih_l0", 0.5)
    assert sum(isinstance(p, nn.Parameter) for p in l._flat_weights) == 3
    x = torch.randn(3, 2, 32)
    torch.testing.assert_close(l(x)[0], ref(x)[0])
    torch.nn.utils.prune.remove(l, "weight_ih_l0")
    assert sum(isinstance(p, nn.Parameter) for p in l._flat_weights) == 4
    assert "weight_ih_l0" in l._parameters and "weight_ih_l0_orig" not in l._parameters
    assert "weight_ih_l0" in dict(l.named_parameters())


def test_parametrization_orthogonal_weight_hh():
    """torch.nn.utils.parametrizations on a recurrent weight: outputs and gradients as nn.LSTM's."""
    torch.manual_seed(0)
    ref = nn.LSTM(4, 4, bias=False)
    ours = twin(ref)
    results = []
    for m in (ref, ours):
        torch.nn.utils.parametrize.register_parametrization(m, "weight_hh_l0", _Symmetric())
        x = torch.randn(3, 2, 4, generator=torch.Generator().manual_seed(0))
        m(x)[0].pow(2).sum().backward()
        results.append([m(x)[0]] + [p.grad for p in m.parameters()])
    for e, o in zip(*results, strict=True):
        torch.testing.assert_close(o, e)


class _Symmetric(nn.Module):
    def forward(self, w):
        return w + w.flip(0)


# ----------------------------------------------------------------------------- PyTorch test_nn.py, adapted

def test_rnn_initial_hidden_state():
    """test_nn.py TestNN.test_rnn_initial_hidden_state (LSTM), and
    test_projections_lstm_initial_hidden_state (proj_size): zeros given = no hx."""
    for kwargs, P in (({}, 20), (dict(proj_size=10), 10)):
        rnn = LSTM(30, 20, 2, **kwargs)
        x = torch.randn(10, 32, 30)
        hidden = (torch.zeros(2, 32, P), torch.zeros(2, 32, 20))
        out1, (h1, c1) = rnn(x, hidden)
        out2, (h2, c2) = rnn(x)
        torch.testing.assert_close(out1, out2, rtol=0, atol=0)
        torch.testing.assert_close((h1, c1), (h2, c2), rtol=0, atol=0)


@pytest.mark.parametrize("train", [True, False])
@pytest.mark.parametrize("p", [0.0, 0.1234])
def test_rnn_dropout_state(p, train):
    """test_nn.py TestNN.test_RNN_dropout_state: dropout differs between calls only when training;
    a module saved and loaded (torch.save of the whole module) computes the same."""
    rnn = LSTM(100, 100, 2, bias=False, dropout=p).train(train)
    x, hx = torch.rand(1, 1, 100), (torch.rand(2, 1, 100), torch.rand(2, 1, 100))
    out1, _ = rnn(x, hx)
    out2, _ = rnn(x, hx)
    buf = io.BytesIO()
    torch.save(rnn, buf)
    buf.seek(0)
    rnn2 = torch.load(buf, weights_only=False)
    rnn2.flatten_parameters()
    out3, _ = rnn2(x, hx)
    if p == 0 or not train:
        torch.testing.assert_close(out1, out2)
        torch.testing.assert_close(out1, out3)
    else:
        assert not torch.equal(out1, out2) and not torch.equal(out1, out3)


def test_rnn_change_dropout():
    """test_nn.py TestNN.test_RNN_change_dropout: the dropout attribute may change between calls."""
    rnn = LSTM(100, 100, 2, dropout=0.0).train()
    x = torch.rand(3, 2, 100)
    for p in (0, 0.276, 0.731, 1, 0):
        rnn.dropout = p
        out1, _ = rnn(x)
        out2, _ = rnn(x)
        if p in (0, 1):
            torch.testing.assert_close(out1, out2)
        else:
            assert not torch.equal(out1, out2)
        if p == 1:       # the last layer's output after an all-dropped input is the bias-only state
            torch.testing.assert_close(out1, rnn(torch.zeros_like(x))[0])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_rnn_retain_variables(dtype, backend):
    """test_nn.py TestNN.test_rnn_retain_variables: backward(retain_graph=True) repeated gives the
    same gradients."""
    rnn = LSTM(10, 20, num_layers=2).to(dtype)
    x = torch.randn(5, 6, 10, dtype=dtype, requires_grad=True)
    out = rnn(x)
    out[0].sum().backward(retain_graph=True)
    grads = [x.grad.clone()] + [p.grad.clone() for p in rnn.parameters()]
    for _ in range(3):
        rnn.zero_grad()
        x.grad.zero_()
        out[0].sum().backward(retain_graph=True)
        assert all(torch.equal(a, b) for a, b in zip(grads, [x.grad] + [p.grad for p in rnn.parameters()],
                                                      strict=True))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_variable_sequence(dtype, backend):
    """test_nn.py TestNNDeviceType.test_variable_sequence: a packed batch gives each sequence's own
    outputs, final states and gradients, as running the sequences one by one (nn.LSTM as reference)."""
    torch.manual_seed(0)
    ref = nn.LSTM(4, 5, num_layers=2, bidirectional=True).to(dtype)
    lstm = twin(ref)
    lengths = [7, 5, 5, 2, 1]
    seqs = [torch.randn(n, 4, dtype=dtype, requires_grad=True) for n in lengths]
    out, (h, c) = lstm(pack_sequence(seqs))
    padded, _ = torch.nn.utils.rnn.pad_packed_sequence(out)
    padded.pow(2).sum().backward()
    for b, s in enumerate(seqs):
        s1 = s.detach().clone().requires_grad_()
        o1, (h1, c1) = ref(s1.unsqueeze(1))
        o1.pow(2).sum().backward()
        torch.testing.assert_close(padded[:lengths[b], b], o1[:, 0], **TOL[dtype])
        torch.testing.assert_close(h[:, b], h1[:, 0], **TOL[dtype])
        torch.testing.assert_close(c[:, b], c1[:, 0], **TOL[dtype])
        torch.testing.assert_close(s.grad, s1.grad, **TOL[dtype])


def test_lstm_cell():
    """test_nn.py TestNN.test_LSTM_cell (a smoke test there), here against nn.LSTMCell."""
    for bias in (True, False):
        torch.manual_seed(0)
        ref = nn.LSTMCell(10, 20, bias=bias)
        ours = twin(ref)
        x = torch.randn(3, 10)
        states = {}
        for mod in (ref, ours):
            hx, cx = torch.randn(3, 20, generator=torch.Generator().manual_seed(1)), torch.zeros(3, 20)
            for _ in range(6):
                hx, cx = mod(x, (hx, cx))
            (hx + cx).sum().backward()
            states[mod] = [hx, cx] + [p.grad for p in mod.parameters()]
        for e, o in zip(states[ref], states[ours], strict=True):
            torch.testing.assert_close(o, e)


@pytest.mark.parametrize("backend,kwargs", [("kernel", {}), ("torch-ops", {}),
                                            ("torch-ops", dict(proj_size=2, bidirectional=True))],
                         indirect=["backend"])
def test_grad_and_gradgrad(kwargs, backend):
    """Module gradcheck and gradgradcheck (test_modules.py TestModule.test_grad / test_gradgrad),
    float64, plain and packed input, w.r.t. the input and the recurrent weights (kept small: the
    numerical second derivatives cost (number of inputs)^2 forward passes)."""
    torch.manual_seed(0)
    mod = LSTM(2, 3, **kwargs).double()
    names = [n for n, _ in mod.named_parameters() if n.startswith(("weight_hh", "weight_hr"))]
    x = torch.randn(3, 2, 2, dtype=torch.float64, requires_grad=True)

    def run(inp, params):
        out, (h, c) = functional_call(mod, dict(zip(names, params, strict=True)), (inp,))
        return getattr(out, "data", out), h, c

    def f(x, *params):
        return run(x, params)

    def f_packed(x, *params):
        return run(pack_padded_sequence(x, torch.tensor([3, 1])), params)

    params = tuple(getattr(mod, n).detach().clone().requires_grad_() for n in names)
    for fn in (f, f_packed):
        assert torch.autograd.gradcheck(fn, (x, *params))
        assert torch.autograd.gradgradcheck(fn, (x, *params))


def test_pickle_deepcopy_and_state_dict_both_ways():
    """Pickling and deepcopy (test_nn.py TestNN.test_pickle_module / test_deepcopy style) keep the
    weights and _flat_weights; a state_dict loads into nn.LSTM and back."""
    torch.manual_seed(0)
    ours = LSTM(3, 4, num_layers=2, bidirectional=True, proj_size=2)
    x = torch.randn(5, 2, 3)
    for other in (pickle.loads(pickle.dumps(ours)), copy.deepcopy(ours)):
        torch.testing.assert_close(other(x)[0], ours(x)[0], rtol=0, atol=0)
        assert [w.data_ptr() for w in other._flat_weights] == [p.data_ptr() for p in other.parameters()]
    ref = nn.LSTM(3, 4, num_layers=2, bidirectional=True, proj_size=2)
    ref.load_state_dict(ours.state_dict())
    torch.testing.assert_close(ref(x)[0], ours(x)[0])
    ours.to(torch.float64)
    assert all(w.dtype == torch.float64 for w in ours._flat_weights)


# ----------------------------------------------------------------------------- second derivatives

@pytest.mark.parametrize("kind", ["plain", "proj", "packed"])
def test_second_derivatives_equal_torch(kind, backend):
    """Gradient penalty y^2.mean() + |dy/dx|^2: the weights' gradient equals nn.LSTM's to 1e-10."""
    torch.manual_seed(0)
    kwargs = dict(proj_size=3) if kind == "proj" else {}
    ref = nn.LSTM(3, 5, num_layers=2, bidirectional=True, **kwargs).double()
    ours = twin(ref)
    x = torch.randn(6, 3, 3, dtype=torch.float64)
    results = []
    for mod in (ref, ours):
        xi = x.clone().requires_grad_()
        inp = pack_padded_sequence(xi, torch.tensor([6, 4, 1])) if kind == "packed" else xi
        y, (h, c) = mod(inp)
        y = y.data if kind == "packed" else y
        g, = torch.autograd.grad(y.pow(2).mean() + c.sum(), xi, create_graph=True)
        assert g.requires_grad
        loss = y.pow(2).mean() + g.pow(2).sum()
        results.append(torch.autograd.grad(loss, [xi, *mod.parameters()]))
    for e, o in zip(*results, strict=True):
        torch.testing.assert_close(o, e, rtol=0, atol=1e-10)


def test_hessian_vector_product_equals_torch(backend):
    torch.manual_seed(0)
    ref = nn.LSTMCell(3, 4).double()
    ours = twin(ref)
    x = torch.randn(2, 3, dtype=torch.float64)
    v = torch.randn(2, 3, dtype=torch.float64)
    hvps = [torch.autograd.functional.hvp(lambda x, m=m: m(x)[0].sin().sum(), x, v)[1] for m in (ref, ours)]
    torch.testing.assert_close(hvps[1], hvps[0], rtol=0, atol=1e-10)


# ----------------------------------------------------------------------------- torch.func

def test_func_grad_vmap_jacobians(backend):
    """torch.func.grad(functional_call), per-sample gradients with vmap(grad) (equal to a loop over
    samples), jacrev and torch.autograd.functional.jacobian(vectorize=True), as nn.LSTM's."""
    torch.manual_seed(0)
    ref = nn.LSTM(3, 4, num_layers=2).double()
    ours = twin(ref)
    params = {k: v.detach() for k, v in ours.named_parameters()}

    def loss(p, mod, x):
        return functional_call(mod, p, (x,))[0].pow(2).sum()

    x = torch.randn(5, 2, 3, dtype=torch.float64)
    g_ours, g_ref = grad(loss)(params, ours, x), grad(loss)(params, ref, x)
    for k in params:
        torch.testing.assert_close(g_ours[k], g_ref[k], rtol=0, atol=1e-10)

    xs = torch.randn(4, 5, 1, 3, dtype=torch.float64)           # 4 samples of one sequence each
    per_sample = vmap(grad(loss), in_dims=(None, None, 0))(params, ours, xs)
    for n in range(4):
        loop = grad(loss)(params, ours, xs[n])
        for k in params:
            torch.testing.assert_close(per_sample[k][n], loop[k], rtol=0, atol=1e-12)

    def f(m):
        return lambda x: m(x)[0]

    want = torch.autograd.functional.jacobian(f(ref), x)
    torch.testing.assert_close(torch.autograd.functional.jacobian(f(ours), x, vectorize=True), want,
                               rtol=0, atol=1e-10)
    torch.testing.assert_close(jacrev(f(ours))(x), want, rtol=0, atol=1e-10)


def test_forward_mode_jvp_and_jacfwd(backend):
    """torch.func.jvp (w.r.t. the weights) and jacfwd (w.r.t. the input) equal nn.LSTM's; jacfwd of
    the layer with a mask and a projection equals its jacrev."""
    torch.manual_seed(0)
    ref = nn.LSTM(3, 4, num_layers=2, bidirectional=True, proj_size=2).double()
    ours = twin(ref)
    x = torch.randn(5, 2, 3, dtype=torch.float64)
    torch.testing.assert_close(jacfwd(lambda x: ours(x)[0])(x), jacrev(lambda x: ref(x)[0])(x),
                               rtol=0, atol=1e-10)
    params = {n: p.detach() for n, p in ours.named_parameters()}
    tangents = {n: torch.randn_like(p) for n, p in params.items()}
    got, want = (jvp(lambda p, m=m: functional_call(m, p, (x,))[1][1], (params,), (tangents,))[1]
                 for m in (ours, ref))
    torch.testing.assert_close(got, want, rtol=0, atol=1e-10)

    g = torch.Generator().manual_seed(0)
    T, B, D, H, P = 4, 3, 2, 3, 2
    w = [torch.randn(*s, generator=g, dtype=torch.float64) for s in ((4 * H, D), (4 * H, P), (4 * H,),
                                                                       (4 * H,), (P, H))]
    mask = (torch.arange(T).unsqueeze(1) < torch.tensor([4, 2, 1])).unsqueeze(2)
    h0, c0 = torch.randn(B, P, dtype=torch.float64), torch.randn(B, H, dtype=torch.float64)

    def layer(x):
        return torch.cat([t.flatten() for t in LSTMFunction.apply(x, h0, c0, *w, mask)])

    xs = torch.randn(T, B, D, dtype=torch.float64)
    torch.testing.assert_close(jacfwd(layer)(xs), jacrev(layer)(xs), rtol=0, atol=1e-12)



@pytest.mark.parametrize("grad_mode", [True, False])
def test_forward_ad_dual_tensors_equal_torch(backend, grad_mode):
    """torch.autograd.forward_ad outside torch.func (make_dual / unpack_dual in a dual_level): the
    tangents of the output and final states, w.r.t. the input, the initial state and the weights at
    once, equal nn.LSTM's (float64, 1e-10); with and without grad mode, batched and unbatched, and
    for LSTMCell."""
    fwAD = torch.autograd.forward_ad
    torch.manual_seed(0)
    ref = nn.LSTM(3, 4, num_layers=2, bidirectional=True, proj_size=2).double()
    cell_ref = nn.LSTMCell(3, 4).double()
    x = torch.randn(5, 2, 3, dtype=torch.float64)
    hx = (torch.randn(4, 2, 2, dtype=torch.float64), torch.randn(4, 2, 4, dtype=torch.float64))
    cases = [(ref, (x, hx)), (ref, (x[:, 0], (hx[0][:, 0], hx[1][:, 0]))),
             (cell_ref, (x[0], (torch.randn(2, 4, dtype=torch.float64),) * 2))]
    for mod_ref, inputs in cases:
        mod = twin(mod_ref)
        params = {n: p.detach() for n, p in mod_ref.named_parameters()}
        tangents = torch.utils._pytree.tree_map(torch.randn_like, (inputs, params))
        results = []
        for m in (mod_ref, mod):
            with fwAD.dual_level(), torch.set_grad_enabled(grad_mode):
                dual_inputs, dual_params = torch.utils._pytree.tree_map(fwAD.make_dual, (inputs, params),
                                                                        tangents)
                outs = leaves(functional_call(m, dual_params, dual_inputs))
                results.append([fwAD.unpack_dual(o) for o in outs])
        for want, got in zip(*results, strict=True):
            assert got.tangent is not None
            torch.testing.assert_close(got.primal, want.primal, rtol=0, atol=1e-10)
            torch.testing.assert_close(got.tangent, want.tangent, rtol=0, atol=1e-10)

def test_function_gradgradcheck():
    """The layer's own second derivatives (plain; masked and projected) pass gradgradcheck."""
    g = torch.Generator().manual_seed(0)
    T, B, D, H, P = 3, 2, 2, 3, 2

    def rnd(*shape):
        return torch.randn(*shape, generator=g, dtype=torch.float64).requires_grad_()

    mask = (torch.arange(T).unsqueeze(1) < torch.tensor([3, 1])).unsqueeze(2)
    for w_hr, m in ((None, None), (rnd(P, H), mask)):
        p = P if w_hr is not None else H
        args = [rnd(T, B, D), rnd(B, p), rnd(B, H), rnd(4 * H, D), rnd(4 * H, p), rnd(4 * H), rnd(4 * H),
                w_hr]
        assert torch.autograd.gradgradcheck(lambda *a, m=m: LSTMFunction.apply(*a, m), args)


# ----------------------------------------------------------------------------- torch.compile, torch.export

class Model(nn.Module):
    """A small model around the LSTM class under test."""

    def __init__(self, lstm_cls):
        super().__init__()
        self.lstm = lstm_cls(3, 4, num_layers=2, batch_first=True)
        self.head = nn.Linear(4, 2)

    def forward(self, x):
        y, (h, c) = self.lstm(x)
        return self.head(y + h[-1].unsqueeze(1) * c[-1].unsqueeze(1))


def model_pair(dtype=torch.float64):
    torch.manual_seed(0)
    ref = Model(nn.LSTM).to(dtype)
    torch.manual_seed(0)
    ours = Model(LSTM).to(dtype)
    return ref, ours


def check_outputs_and_grads(ref, ours, run, x, **tol):
    results = []
    for mod in (ref, ours):
        xi = x.clone().requires_grad_()
        y = run(mod, xi)
        y.pow(2).sum().backward()
        results.append([y, xi.grad] + [p.grad for p in mod.parameters()])
    for e, o in zip(*results, strict=True):
        torch.testing.assert_close(o, e, **tol)


def test_compile_no_graph_break_and_matches_torch(backend):
    """torch.compile (aot_eager: the same tracing as inductor, without code generation) of a model
    containing lstmkit.LSTM: one graph, no break, nn.LSTM's outputs and gradients; also under no_grad."""
    torch._dynamo.reset()
    ref, ours = model_pair()
    x = torch.randn(2, 5, 3, dtype=torch.float64)
    explained = torch._dynamo.explain(ours)(x)
    assert explained.graph_count == 1 and explained.graph_break_count == 0, explained.break_reasons
    compiled = torch.compile(ours, backend="aot_eager", fullgraph=True)
    check_outputs_and_grads(ref, ours, lambda m, x: (compiled if m is ours else m)(x), x, rtol=0, atol=1e-10)
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), ref(x), rtol=0, atol=1e-10)


def test_compile_inductor_matches_torch():
    """One real inductor compile (float32, the CPU kernel): outputs and gradients as nn.LSTM's."""
    torch._dynamo.reset()
    ref, ours = model_pair(torch.float32)
    compiled = torch.compile(ours, fullgraph=True)
    x = torch.randn(2, 5, 3)
    check_outputs_and_grads(ref, ours, lambda m, x: (compiled if m is ours else m)(x), x,
                            rtol=1e-5, atol=1e-5)


def test_export_matches_torch(backend):
    """torch.export.export of the model: the layer is one lstmkit op per layer in the graph, and the
    exported program gives nn.LSTM's outputs and (through its module) gradients."""
    ref, ours = model_pair()
    x = torch.randn(2, 5, 3, dtype=torch.float64)
    exported = torch.export.export(ours, (x,))
    code = exported.graph_module.code
    assert code.count("torch.ops.lstmkit.layer_train") == 2
    module = exported.module()
    check_outputs_and_grads(ref, module, lambda m, x: m(x), x, rtol=0, atol=1e-10)
    with torch.no_grad():
        exported_infer = torch.export.export(ours, (x,))
    assert "torch.ops.lstmkit.layer_infer" in exported_infer.graph_module.code
    torch.testing.assert_close(exported_infer.module()(x), ref(x), rtol=0, atol=1e-10)



def test_jit_trace_passes_its_check_and_matches_torch(backend):
    """torch.jit.trace with its default check (it re-traces under no_grad and compares the graphs and
    outputs): the trace has one lstmkit::layer_train per layer either way, and the traced model gives
    nn.LSTM's outputs and gradients on a new input, its outputs under no_grad and after
    torch.jit.save / load; a traced LSTMCell gives nn.LSTMCell's outputs."""
    ref, ours = model_pair()
    x = torch.randn(2, 5, 3, dtype=torch.float64)
    traced = torch.jit.trace(ours, x)            # check_trace=True: raises if the check fails
    assert str(traced.inlined_graph).count("lstmkit::layer_train") == 2
    x_new = torch.randn(2, 5, 3, dtype=torch.float64)
    check_outputs_and_grads(ref, traced, lambda m, x: m(x), x_new, rtol=0, atol=1e-10)
    with torch.no_grad():
        torch.testing.assert_close(traced(x_new), ref(x_new), rtol=0, atol=1e-10)
    buf = io.BytesIO()
    torch.jit.save(traced, buf)
    buf.seek(0)
    torch.testing.assert_close(torch.jit.load(buf)(x_new), ref(x_new), rtol=0, atol=1e-10)
    cell_ref = nn.LSTMCell(3, 4).double()
    cell = torch.jit.trace(twin(cell_ref), x[0])
    torch.testing.assert_close(cell(x_new[0]), cell_ref(x_new[0]), rtol=0, atol=1e-10)

def test_custom_ops_pass_opcheck(backend):
    """torch.library.opcheck: schemas, fake implementations, autograd registration and the vmap rule
    of lstmkit::layer_train / layer_infer are consistent with what the ops compute."""
    g = torch.Generator().manual_seed(0)
    T, B, D, H = 3, 2, 2, 3
    x, h0, c0 = (torch.randn(*s, generator=g, dtype=torch.float64) for s in ((T, B, D), (B, H), (B, H)))
    w = [torch.randn(*s, generator=g, dtype=torch.float64, requires_grad=True)
         for s in ((4 * H, D), (4 * H, H), (4 * H,), (4 * H,))]
    kernel = backend == "kernel"
    args = (x, h0, c0, *w, None, None)
    torch.library.opcheck(torch.ops.lstmkit.layer_train, (*args, kernel))
    torch.library.opcheck(torch.ops.lstmkit.layer_infer,
                          tuple(a.detach() if a is not None else a for a in args))



def test_absent_buffers_and_unneeded_grads_are_zeros(backend):
    """The ops return a zero for rn without a projection and for gradients nobody asked for, never an
    uninitialised number (compiled and eager results then differed: CI run of stop 20)."""
    kernel = backend == "kernel"
    T, B, D, H = 2, 3, 2, 4
    x, h0, c0 = torch.randn(T, B, D), torch.randn(B, H), torch.randn(B, H)
    w = [torch.randn(4 * H, D), torch.randn(4 * H, H), torch.randn(4 * H), torch.randn(4 * H)]
    for _ in range(20):                    # leave freed scalars holding NaN for the allocator to hand out
        torch.full((), float("nan")).add_(1)
    out = torch.ops.lstmkit.layer_train(x, h0, c0, *w, None, None, kernel)
    assert torch.equal(out[7], torch.zeros(()))
    for _ in range(20):
        torch.full((), float("nan")).add_(1)
    grads = torch.ops.lstmkit.layer_backward(x, w[0], w[1], None, *out[3:], None, torch.ones(T, B, H),
                                             torch.zeros(B, H), torch.zeros(B, H),
                                             [True, False, False, True, False, False, False], kernel)
    assert grads[0].shape == x.shape and grads[3].shape == w[0].shape
    for k in (4, 5, 6):
        assert torch.equal(grads[k], torch.zeros(())), k
