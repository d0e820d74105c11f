"""A drop-in replacement for torch.nn.LSTM and torch.nn.LSTMCell with a hand-written backward.

`LSTM` and `LSTMCell` take the same arguments, register the same parameters (names, shapes,
order, initialisation) and return the same things as their torch.nn namesakes, so a state_dict
loads both ways and a model can swap one class for the other. Two implementations:

- impl="fused" (default): `LSTMFunction`, one layer as torch.library custom ops
  (lstmkit::layer_train, layer_backward, layer_infer) whose backward is the
  hand-derived backpropagation through time of lstmkit.reference.backward (Williams & Peng 1990),
  written in torch ops so it runs on any device. The input projection x W_ih^T of every step is
  one matrix product; the backward loop carries only (dh, dc) and stores the pre-activation
  gradients da, and the weight gradients are then one matrix product each over all T*B rows.
  Internally it uses exact rewrites (sigmoids only, c doubled, h negated) that keep the
  per-step work small; LSTMFunction's docstring lists them. On the CPU (float32/float64, no mask,
  no projection) the two step loops run compiled instead (lstmkit/csrc/lstm_cpu.cpp, built with
  g++ on first use: one matrix product and one fused, threaded elementwise pass per step);
  USE_CPU_KERNEL = False or LSTMKIT_CPU_KERNEL=0 keeps the torch ops, and cpu_kernel_status()
  says which runs.
  The ops have fake implementations and vmap rules, so torch.compile (one graph, no break in the
  layer), torch.export, torch.jit.trace and torch.func (grad, vmap, jacrev, and jvp / jacfwd through
  a forward-mode rule, which also serves torch.autograd.forward_ad's dual tensors) work. When the backward
  is itself differentiated (create_graph=True) it runs as differentiable torch ops instead
  (_differentiable_backward): second derivatives are nn.LSTM's.
- impl="loop": a readable cell loop whose gradient autograd derives. For teaching and checking.

Equations of one step (gate order i, f, g, o; Hochreiter & Schmidhuber 1997, Gers et al. 2000):

    a = x W_ih^T + b_ih + h_prev W_hh^T + b_hh         (B, 4H)
    i, f, o = sigmoid(a_i), sigmoid(a_f), sigmoid(a_o);  g = tanh(a_g)
    c = f * c_prev + i * g
    h = o * tanh(c)              (or h = (o * tanh(c)) W_hr^T when proj_size > 0)

Variable-length batches (PackedSequence) are run padded with a per-step mask that freezes h and c
once a sequence has ended, which gives exactly nn.LSTM's final states.
"""

from __future__ import annotations

import math
import numbers
import warnings
import weakref
from typing import NamedTuple

import torch
import torch.autograd.forward_ad as _fwad
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from lstmkit import _cpu_kernel

IMPLS = ("fused", "loop")
USE_CPU_KERNEL = True    # False: the fused path runs its torch ops on the CPU too (the tests compare both)

__all__ = ["LSTM", "LSTMCell", "LSTMFunction", "cpu_kernel_status", "lstm_layer"]


# ----------------------------------------------------------------------------- the fused Function

class Need(NamedTuple):
    """Which inputs of a layer need a gradient (bias: b_ih and b_hh, which share one)."""
    x: bool
    h0: bool
    c0: bool
    w_ih: bool
    w_hh: bool
    bias: bool
    w_hr: bool


class Grads(NamedTuple):
    """The gradients of one layer's backward, None where not needed (bias: of b_ih, equal to b_hh's)."""
    x: Tensor | None
    h0: Tensor | None
    c0: Tensor | None
    w_ih: Tensor | None
    w_hh: Tensor | None
    bias: Tensor | None
    w_hr: Tensor | None


def _g_doubled(w, H, sign=1):
    """sign * w with the g rows (gate order i, f, g, o) doubled, so that sigmoid(a) gives sigmoid(2 a_g).
    One product with a cached column of factors (one op instead of three: at the small benchmark
    size each op's dispatch costs as much as its arithmetic)."""
    key = (w.dim(), w.shape[0], sign, w.dtype, w.device)
    scale = _G_SCALES.get(key)
    if scale is None:
        with torch.inference_mode(False):     # an ordinary tensor, usable in any later mode
            scale = torch.full((4 * H,) + (1,) * (w.dim() - 1), float(sign), dtype=w.dtype, device=w.device)
            scale[2 * H:3 * H] *= 2
        _G_SCALES[key] = scale
    return torch.mul(w, scale).contiguous()


_G_SCALES = {}    # (dim, 4H, sign, dtype, device) -> the factors of _g_doubled


def _fused_forward(x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, mask, keep):
    """The forward loop of LSTMFunction (see its docstring for the rewrites and the layout).

    keep=True stores every step's gates and states for the backward and returns them
    (acts, hn, c2, s_c, rn) after (y, h_T, c_T); it carries -h and 2c as the docstring says.
    keep=False (inference) keeps only h (the outputs) and carries h and -2c instead
    (the same ops with the other sign), so that the outputs need no negation. It returns only
    (y, h_T, c_T).
    """
    T, B, D = x.shape
    H = w_ih.shape[0] // 4
    P = h0.shape[1]
    sign = 1 if keep else -1                      # the carried states are -sign * h and 2 sign c
    # Input part of every step at once, feature-major: acts[t] = W_ih x_t^T + b, (4H, B). The
    # steps add their recurrent part and apply the sigmoids in place, so acts ends as the gates.
    w_x = _g_doubled(w_ih, H).expand(T, 4 * H, D)
    x_t = x.transpose(1, 2)
    if b_ih is not None:
        acts = torch.baddbmm(_g_doubled(b_ih + b_hh, H).view(1, 4 * H, 1), w_x, x_t)
    else:
        acts = torch.bmm(w_x, x_t)
    w_h = _g_doubled(w_hh, H, sign=-sign)         # multiplies hn = -sign * h
    hn = x.new_empty(T + 1, P, B)                 # -sign * h
    if keep:
        c2 = x.new_empty(T + 1, H, B)             # 2c
        s_c = x.new_empty(T, H, B)                # sigmoid(2c) = (1 + tanh(c)) / 2
        rn = x.new_empty(T, H, B) if w_hr is not None else None  # -o * tanh(c), before projection
    # The buffers above are what the caller gets (outputs, tensors saved for the backward), so they
    # are ordinary tensors. The steps run in inference mode: torch then skips the autograd
    # bookkeeping of each view and in-place op, a good part of the cost of these small ops.
    with torch.inference_mode():
        # Lists of the views each step reads and writes, made once: indexing inside the loop costs
        # as much as arithmetic. Without keep, c alternates between two buffers.
        A = acts.unbind(0)
        I, Fg, SG, O = (block.unbind(0) for block in acts.view(T, 4, H, B).unbind(1))
        M = mask.transpose(1, 2).unbind(0) if mask is not None else None     # (1, B) each
        HN = hn.unbind(0)
        if keep:
            C2, SC = c2.unbind(0), s_c.unbind(0)
            RN = rn.unbind(0) if rn is not None else None
        else:
            c_pair = x.new_empty(2, H, B).unbind(0)
            C2 = [c_pair[t % 2] for t in range(T + 1)]
            SC = [x.new_empty(H, B)] * T
            RN = [x.new_empty(H, B)] * T if w_hr is not None else None
        torch.mul(h0.t(), -sign, out=HN[0])
        torch.mul(c0.t(), 2 * sign, out=C2[0])
        for t in range(T):
            c = C2[t + 1]
            torch.addmm(A[t], w_h, HN[t], out=A[t])        # a = W_ih x + b + W_hh h_prev
            A[t].sigmoid_()                                # i, f, s_g, o
            torch.mul(Fg[t], C2[t], out=c)                 # c2 = f * c2_prev + 4 i s_g - 2 i (times sign)
            c.addcmul_(I[t], SG[t], value=4 * sign)
            c.sub_(I[t], alpha=2 * sign)
            torch.sigmoid(c, out=SC[t])
            r = HN[t + 1] if RN is None else RN[t]
            torch.addcmul(O[t], O[t], SC[t], value=-2, out=r)   # -sign * h = o - 2 o sigmoid(c2)
            if RN is not None:
                torch.mm(w_hr, r, out=HN[t + 1])
            if M is not None:  # past a sequence's end, keep the previous state
                torch.where(M[t], c, C2[t], out=c)
                torch.where(M[t], HN[t + 1], HN[t], out=HN[t + 1])
    y = torch.mul(hn[1:].transpose(1, 2), -sign, out=x.new_empty(T, B, P))
    if mask is not None:
        y.mul_(mask)
    out = (y, (hn[T].t() * -sign).contiguous(), (C2[T].t() * (0.5 * sign)).contiguous())
    return out + (acts, hn, c2, s_c, rn) if keep else out


def _fused_backward(x, w_ih, w_hh, w_hr, acts, hn, c2, s_c, rn, mask, dy, dh_T, dc_T, need):
    """The first-order backward in torch ops, for what _fused_forward kept (need: a Need, which
    inputs need a gradient). Returns Grads, None where not needed. Not differentiable itself."""
    T, B, D = x.shape
    H = w_ih.shape[0] // 4
    P = hn.shape[1]
    with torch.no_grad():
        dhs = x.new_empty(T + 1, P, B)                # gradient w.r.t. h_t (t = 0..T); dhs[0] is returned
        dy = dy.transpose(1, 2).clone(memory_format=torch.contiguous_format)   # feature-major
        # The work on internal buffers runs in inference mode, which skips autograd's bookkeeping
        # of each view and in-place op; the gradients returned are formed after it, as ordinary
        # tensors.
        with torch.inference_mode():
            # The local derivatives of every step at once (big elementwise ops over all T steps),
            # so that the sequential loop below is three small ops and one matmul per step:
            #   da_o = dr * tanh(c) o (1 - o);  dc += dr * o (1 - tanh(c)^2);  then
            #   da_i = dc * g i (1 - i),  da_f = dc * c_prev f (1 - f),  da_g = dc * i (1 - g^2),
            #   dc_prev = dc * f.
            # With g = 2 s_g - 1, tanh(c) = 2 s_c - 1 and 1 - (2s - 1)^2 = 4 s (1 - s), each factor is
            # s (1 - s) of its gate (one op over all four blocks) times one more factor, applied in
            # place (memory traffic is what these cost).
            # The loop works with -da, so k[t] holds [f, -k_i, -k_f, -k_g, -k_o]; the loop then
            # multiplies each k[t] in place into [dc_prev, -da_i, -da_f, -da_g, -da_o] (no second
            # buffer to allocate and stream through the cache); k[T, 0] holds dc_T. With f in
            # front, one broadcast multiply by dc gives dc_prev, da_i, da_f and da_g, and -da stays
            # in torch's gate order (i, f, g, o) for the weight-gradient products.
            gates = acts.view(T, 4, H, B)
            i, f, s_g, o = gates.unbind(1)
            zero = acts.new_zeros(())
            k = acts.new_empty(T + 1, 5, H, B)
            k_i, k_f, k_g, k_o = k[:T, 1:].unbind(1)
            torch.addcmul(gates, gates, gates, value=-1, out=k[:T, 1:])       # i (1 - i), f (1 - f), ...
            k_o.addcmul_(k_o, s_c, value=-2)                                  # -tanh(c) o (1 - o)
            k_i.addcmul_(k_i, s_g, value=-2)                                  # -g i (1 - i)
            torch.addcmul(zero, k_f, c2[:T], value=-0.5, out=k_f)             # -c_prev f (1 - f)
            torch.addcmul(zero, k_g, i, value=-4, out=k_g)                    # -i (1 - g^2)
            k[:T, 0] = f
            u = torch.addcmul(s_c, s_c, s_c, value=-1)                        # s_c (1 - s_c)
            k_c = torch.addcmul(zero, u, o, value=4, out=u)                   # o (1 - tanh(c)^2)
            k[T, 0] = dc_T.t()
            keep = None
            if mask is not None:  # masked steps: da = 0, and (dh, dc) pass straight through
                m = mask.to(x.dtype).transpose(1, 2)                         # (T, 1, B)
                k[:T, 1:] *= m.unsqueeze(1)
                k[:T, 0] = torch.where(mask.transpose(1, 2), f, 1)
                k_c *= m
                dy *= m
                keep = (1 - m).unbind(0)

            dan = k[:T, 1:].view(T, 4 * H, B)            # -da after the loop
            w_hh_t = w_hh.t().contiguous()                # (P, 4H): the left operand, as in the forward
            w_hr_t = w_hr.t().contiguous() if w_hr is not None else None
            torch.add(dh_T.t(), dy[T - 1], out=dhs[T])
            dr_buf = x.new_empty(H, B) if w_hr is not None else None
            DA, DH, DY, DC = dan.unbind(0), dhs.unbind(0), dy.unbind(0), k[:, 0].unbind(0)
            KG, KO, KC = k[:T, :4].unbind(0), k[:T, 4].unbind(0), k_c.unbind(0)
            for t in reversed(range(T)):
                dht = DH[t + 1]                                # w.r.t. the output h_t of step t
                dr = dht if w_hr is None else torch.mm(w_hr_t, dht, out=dr_buf)   # h = W_hr r
                dc = DC[t + 1]
                dc.addcmul_(dr, KC[t])
                KG[t].mul_(dc)                                 # dc_prev, -da_i, -da_f, -da_g
                KO[t].mul_(dr)                                 # -da_o
                if t > 0:
                    torch.addmm(DY[t - 1], w_hh_t, DA[t], alpha=-1, out=DH[t])
                else:
                    torch.mm(w_hh_t, DA[t], out=DH[t]).neg_()
                if keep is not None:
                    DH[t].addcmul_(keep[t], dht)

        # The weight gradients sum over steps and batch: one product each over all T*B columns,
        # after one copy that puts the (t, b) columns side by side.
        dan = dan.transpose(0, 1).reshape(4 * H, T * B)
        dx = (dan.t() @ w_ih.neg()).view(T, B, D) if need.x else None
        dw_ih = (dan @ x.reshape(T * B, D)).neg_() if need.w_ih else None
        dw_hh = dan @ hn[:T].transpose(0, 1).reshape(P, T * B).t() if need.w_hh else None  # -da, -h
        db = dan.sum(1).neg_() if need.bias else None
        dw_hr = None
        if w_hr is not None and need.w_hr:
            r = rn if mask is None else rn * m
            dhs_2d = dhs[1:].transpose(0, 1).reshape(P, T * B)
            dw_hr = (dhs_2d @ r.permute(0, 2, 1).reshape(T * B, H)).neg_()
    as_rows = dict(memory_format=torch.contiguous_format)   # (B, K) copies of the feature-major states
    return Grads(dx, dhs[0].t().clone(**as_rows), k[0, 0].t().clone(**as_rows), dw_ih, dw_hh, db, dw_hr)


# ----------------------------------------------------------------------------- the compiled CPU steps

def cpu_kernel_status():
    """One line: whether the fused path runs its compiled CPU loops here, and if not, why not."""
    _cpu_kernel.load()
    return _cpu_kernel.status()


@torch.compiler.assume_constant_result
def _kernel_loaded():
    """_cpu_kernel.load(), run (not traced) by torch.compile, which then takes its result as a constant."""
    return _cpu_kernel.load()


def _use_kernel(x, w_hh, w_hr, mask):
    """Whether the fused path runs its step loops in the compiled CPU kernel (lstmkit/_cpu_kernel.py).
    Not for empty input: the BLAS that torch links rejects zero sizes (and says so on stderr)."""
    if not (USE_CPU_KERNEL and w_hr is None and mask is None and x.is_cpu
            and x.dtype in (torch.float32, torch.float64)):
        return False
    T, B, _ = x.shape
    return T > 0 and B > 0 and w_hh.shape[1] > 0 and (T + 1) * B < 2**31 and _kernel_loaded()


def _kernel_forward(x, h0, c0, w_ih, w_hh, b_ih, b_hh, keep):
    """_fused_forward's contract (no projection, no mask) with the step loop in the compiled kernel.

    Returns (y, h_T, c_T), and with keep=True also (gates, hn, c2, s_c) for _kernel_backward, where
    hn (H, T+1, B) holds -h_{t-1} as columns (t, b), so that dW_hh is one product with it, without
    a copy.
    """
    T, B, D = x.shape
    H = w_hh.shape[1]
    sign = 1 if keep else -1
    gates = torch.bmm(_g_doubled(w_ih, H).expand(T, 4 * H, D), x.transpose(1, 2))   # the kernel adds b
    bias = _g_doubled(b_ih + b_hh, H) if b_ih is not None else x.new_zeros(4 * H)
    hn = x.new_empty(H, T + 1, B)                  # -sign * h, one time column per step
    c2 = x.new_empty(T + 1 if keep else 2, H, B)
    s_c = x.new_empty(T, H, B) if keep else None
    torch.mul(h0.t(), -sign, out=hn[:, 0])
    torch.mul(c0.t(), 2 * sign, out=c2[0])
    w_h = _g_doubled(w_hh, H, sign=-sign)           # multiplies hn = -sign * h
    with torch.inference_mode():
        torch.ops.lstmkit.forward_steps(gates, w_h, bias, hn, c2, s_c, float(sign))
    y = torch.mul(hn[:, 1:].permute(1, 2, 0), -sign, out=x.new_empty(T, B, H))
    out = (y, (hn[:, T].t() * -sign).contiguous(), (c2[T % c2.shape[0]].t() * (0.5 * sign)).contiguous())
    return out + (gates, hn, c2, s_c) if keep else out


def _kernel_backward(x, w_ih, w_hh, gates, hn, c2, s_c, dy, dh_T, dc_T, need):
    """_fused_backward's contract for what _kernel_forward saved."""
    T, B, D = x.shape
    H = w_hh.shape[1]
    with torch.no_grad():
        dy = dy.permute(0, 2, 1).contiguous()                     # (T, H, B)
        dh = (dh_T.t() + dy[T - 1]).contiguous()                   # in: dh_T + dy_{T-1}; out: dh_0
        dc = dc_T.t().clone(memory_format=torch.contiguous_format)  # in: dc_T; out: dc_0
        da = x.new_empty(4 * H, T, B)
        w_hh_t = w_hh.t().contiguous()                             # (H, 4H): the left operand
        with torch.inference_mode():
            torch.ops.lstmkit.backward_steps(gates, c2, s_c, dy, w_hh_t, dh, dc, da)
        da = da.view(4 * H, T * B)       # columns (t, b), side by side already
        dx = (da.t() @ w_ih).view(T, B, D) if need.x else None
        dw_ih = da @ x.reshape(T * B, D) if need.w_ih else None
        dw_hh = (da @ hn[:, :T].reshape(H, T * B).t()).neg_() if need.w_hh else None   # a view of hn
        db = da.sum(1) if need.bias else None
    as_rows = dict(memory_format=torch.contiguous_format)
    return Grads(dx, dh.t().clone(**as_rows), dc.t().clone(**as_rows), dw_ih, dw_hh, db, None)


# ----------------------------------------------------------------------------- the custom ops

# The layer runs as three torch.library custom ops, so that torch.compile, torch.export and the
# torch.func transforms see each one as a single node with known output shapes (the fake
# implementations below), an autograd formula and a vmap rule, instead of tracing into the step loop:
#   lstmkit::layer_infer   (y, h_T, c_T), keeping nothing (no_grad, or nothing requires grad);
#   lstmkit::layer_train   (y, h_T, c_T) and the buffers the backward reads (Saved);
#   lstmkit::layer_backward  the first-order backward from those buffers (Grads).
# `kernel` selects the compiled CPU loops or the torch ops, whose buffers differ in layout (hn).
_LIB = "lstmkit"
_NO_TENSOR = ()     # shape of what the ops return for an absent buffer or an unneeded gradient: a 0-dim
                    # zero (inductor mis-handles saved tensors with no elements)


class Saved(NamedTuple):
    """The buffers layer_train keeps for the backward; their layout differs between the paths:
    acts (T, 4H, B) the gates i, f, sigmoid(2 a_g), o; c2 (T+1, H, B) twice the cell state;
    s_c (T, H, B) sigmoid(c2); hn -h, (T+1, P, B) in torch ops, (H, T+1, B) in the kernel;
    rn (T, H, B) -o tanh(c) before the projection (torch ops with proj_size > 0; else empty)."""
    acts: Tensor
    hn: Tensor
    c2: Tensor
    s_c: Tensor
    rn: Tensor


def _empty(like):
    return like.new_zeros(_NO_TENSOR)     # zeros: uninitialised memory made compiled and eager differ


def _layer_infer_impl(x: Tensor, h0: Tensor, c0: Tensor, w_ih: Tensor, w_hh: Tensor, b_ih: Tensor | None,
                 b_hh: Tensor | None, w_hr: Tensor | None,
                 mask: Tensor | None) -> tuple[Tensor, Tensor, Tensor]:
    if _use_kernel(x, w_hh, w_hr, mask):
        return _kernel_forward(x, h0, c0, w_ih, w_hh, b_ih, b_hh, keep=False)
    return _fused_forward(x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, mask, keep=False)


_layer_infer = torch.library.custom_op(f"{_LIB}::layer_infer", _layer_infer_impl, mutates_args=())


@_layer_infer.register_fake
def _(x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, mask):
    T, B, _ = x.shape
    return x.new_empty(T, B, h0.shape[1]), x.new_empty(B, h0.shape[1]), x.new_empty(B, c0.shape[1])


def _layer_train_impl(x: Tensor, h0: Tensor, c0: Tensor, w_ih: Tensor, w_hh: Tensor, b_ih: Tensor | None,
                 b_hh: Tensor | None, w_hr: Tensor | None, mask: Tensor | None,
                 kernel: bool) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    if kernel:
        y, h_T, c_T, gates, hn, c2, s_c = _kernel_forward(x, h0, c0, w_ih, w_hh, b_ih, b_hh, keep=True)
        return y, h_T, c_T, gates, hn, c2, s_c, _empty(x)
    y, h_T, c_T, acts, hn, c2, s_c, rn = _fused_forward(x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, mask,
                                                        keep=True)
    return y, h_T, c_T, acts, hn, c2, s_c, _empty(x) if rn is None else rn


_layer_train = torch.library.custom_op(f"{_LIB}::layer_train", _layer_train_impl, mutates_args=())


@_layer_train.register_fake
def _(x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, mask, kernel):
    T, B, _ = x.shape
    P, H = h0.shape[1], c0.shape[1]
    new = x.new_empty
    hn = new(H, T + 1, B) if kernel else new(T + 1, P, B)
    rn = new(T, H, B) if (w_hr is not None and not kernel) else new(_NO_TENSOR)
    return (new(T, B, P), new(B, P), new(B, H), new(T, 4 * H, B), hn, new(T + 1, H, B), new(T, H, B), rn)


def _backward(x, w_ih, w_hh, w_hr, acts, hn, c2, s_c, rn, mask, dy, dh_T, dc_T, need, kernel):
    """Grads (None where not needed) from what layer_train saved, on the path it ran."""
    if kernel:
        return _kernel_backward(x, w_ih, w_hh, acts, hn, c2, s_c, dy, dh_T, dc_T, need)
    return _fused_backward(x, w_ih, w_hh, w_hr, acts, hn, c2, s_c, None if w_hr is None else rn, mask,
                           dy, dh_T, dc_T, need)


def _layer_backward_impl(x: Tensor, w_ih: Tensor, w_hh: Tensor, w_hr: Tensor | None, acts: Tensor, hn: Tensor,
                         c2: Tensor, s_c: Tensor, rn: Tensor, mask: Tensor | None, dy: Tensor, dh_T: Tensor,
                         dc_T: Tensor, need: list[bool],
                         kernel: bool) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    g = _backward(x, w_ih, w_hh, w_hr, acts, hn, c2, s_c, rn, mask, dy, dh_T, dc_T, Need(*need), kernel)
    return tuple(_empty(x) if t is None else t for t in g)


_layer_backward = torch.library.custom_op(f"{_LIB}::layer_backward", _layer_backward_impl, mutates_args=())


@_layer_backward.register_fake
def _(x, w_ih, w_hh, w_hr, acts, hn, c2, s_c, rn, mask, dy, dh_T, dc_T, need, kernel):
    need = Need(*need)
    shapes = Grads(x.shape, dh_T.shape, dc_T.shape, w_ih.shape, w_hh.shape, (w_ih.shape[0],),
                   None if w_hr is None else w_hr.shape)
    return tuple(x.new_empty(s if (s is not None and want) else _NO_TENSOR)
                 for s, want in zip(shapes, need, strict=True))


def _plain_eager(*args):
    """True in plain eager mode: no torch.compile / export / jit.trace tracing, no torch.func transform, no
    forward-mode AD level, no dispatch or function mode, only plain tensors. Then the ops' Python
    implementations are called directly: the same computation without the dispatcher's cost (about
    50 us per op call, measured on the small benchmark layer). The global checks come first (torch.compile
    must see is_compiling() first); this runs on every layer call, so it is a plain loop."""
    if (torch.compiler.is_compiling() or _is_tracing() or _peek_interpreter() is not None or _dispatch_modes()
            or _function_modes() or _fwad._current_level >= 0):
        return False
    for a in args:
        cls = a.__class__
        if a is None or cls is bool or cls is nn.Parameter:      # (a wrapper is never a Parameter)
            continue
        if cls is not Tensor or _is_wrapped(a) or _is_legacy_batched(a):
            return False
    return True


# _plain_eager's checks, looked up once. The tensor checks find torch.func or legacy-vmap wrappers
# outside an active transform (e.g. the batched gradients of
# torch.autograd.functional.jacobian(vectorize=True)), which only the ops handle.
_is_tracing = torch._C._is_tracing
_peek_interpreter = torch._C._functorch.peek_interpreter_stack
_dispatch_modes = torch._C._len_torch_dispatch_stack
_function_modes = torch._C._is_torch_function_mode_enabled
_is_wrapped = torch._C._functorch.is_functorch_wrapped_tensor
_is_legacy_batched = torch._C._functorch.is_legacy_batchedtensor


def _call(op, impl, *args):
    return impl(*args) if _plain_eager(*args) else op(*args)


def _save(ctx, inputs, saved, plain=False):
    """plain: saved in plain eager mode (_LayerTrainEager), so the buffers are plain tensors."""
    x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, mask, kernel = inputs
    ctx.kernel, ctx.has_bias, ctx.plain = kernel, b_ih is not None, plain
    ctx.save_for_backward(x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, mask, *saved)


def _setup_context(ctx, inputs, output):
    ctx.mark_non_differentiable(*output[3:])
    _save(ctx, inputs, output[3:])
    if (_peek_interpreter() is not None or _fwad._current_level >= 0) and not torch.compiler.is_compiling():
        ctx.save_for_forward(*inputs[:9])      # for _LayerTrainJvp


def _layer_jvp(ctx, *tangents):
    """Forward mode (torch.func.jvp, jacfwd, forward_ad): the tangents of y, h_T and c_T, propagated through a
    plain forward loop (the product rule on each step's equations; None tangents count as zero):
        da = dx W_ih^T + x dW_ih^T + db_ih + db_hh + dh W_hh^T + h dW_hh^T
        di = i (1-i) da_i,  df, do likewise;  dg = (1-g^2) da_g
        dc = df c_prev + f dc_prev + di g + i dg;  dr = do tanh(c) + o (1-tanh(c)^2) dc
        dh = dr W_hr^T + r dW_hr^T (or dr); masked steps keep the previous state and tangent."""
    x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, mask = ctx.saved_tensors[:9]
    tx, th0, tc0, tw_ih, tw_hh, tb_ih, tb_hh, tw_hr = tangents[:8]

    def lin(a, w, ta, tw):                 # tangent of a @ w.T
        out = 0
        if ta is not None:
            out = out + ta @ w.t()
        if tw is not None:
            out = out + a @ tw.t()
        return out

    zeros = torch.zeros_like
    ta_x = lin(x, w_ih, tx, tw_ih) + (0 if tb_ih is None else tb_ih) + (0 if tb_hh is None else tb_hh)
    b = None if b_ih is None else b_ih + b_hh
    h, c = h0, c0
    th = zeros(h0) if th0 is None else th0
    tc = zeros(c0) if tc0 is None else tc0
    tys = []
    for t in range(x.shape[0]):
        a = F.linear(x[t], w_ih, b) + h @ w_hh.t()
        ta = ta_x[t] + lin(h, w_hh, th, tw_hh) if isinstance(ta_x, Tensor) else lin(h, w_hh, th, tw_hh)
        a_i, a_f, a_g, a_o = a.chunk(4, 1)
        i, f, g, o = torch.sigmoid(a_i), torch.sigmoid(a_f), torch.tanh(a_g), torch.sigmoid(a_o)
        t_i, t_f, t_g, t_o = (ta if isinstance(ta, Tensor) else zeros(a)).chunk(4, 1)
        t_i, t_f, t_o = i * (1 - i) * t_i, f * (1 - f) * t_f, o * (1 - o) * t_o
        t_g = (1 - g * g) * t_g
        c_new = f * c + i * g
        tc_new = t_f * c + f * tc + t_i * g + i * t_g
        k = torch.tanh(c_new)
        r, t_r = o * k, t_o * k + o * (1 - k * k) * tc_new
        h_new, th_new = (r, t_r) if w_hr is None else (r @ w_hr.t(), lin(r, w_hr, t_r, tw_hr))
        if mask is not None:
            m = mask[t]
            tys.append(th_new * m)
            c_new, tc_new = torch.where(m, c_new, c), torch.where(m, tc_new, tc)
            h_new, th_new = torch.where(m, h_new, h), torch.where(m, th_new, th)
        else:
            tys.append(th_new)
        h, c, th, tc = h_new, c_new, th_new, tc_new
    return (torch.stack(tys), th, tc) + (None,) * 5


def _train_backward(ctx, dy, dh_T, dc_T, *_):
    x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, mask, *saved = ctx.saved_tensors
    n = ctx.needs_input_grad
    need = Need(n[0], n[1], n[2], n[3], n[4], ctx.has_bias and (n[5] or n[6]), w_hr is not None and n[7])
    dy = torch.zeros_like(x[..., :1]).expand(*x.shape[:2], h0.shape[1]) if dy is None else dy
    dh_T = torch.zeros_like(h0) if dh_T is None else dh_T
    dc_T = torch.zeros_like(c0) if dc_T is None else dc_T
    if torch.is_grad_enabled():
        # create_graph=True: a backward that autograd can differentiate again (second derivatives).
        g = _differentiable_backward(x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, mask, dy, dh_T, dc_T, need)
    elif _plain_eager(dy, dh_T, dc_T) if ctx.plain else _plain_eager(x, *saved, dy, dh_T, dc_T):
        g = _backward(x, w_ih, w_hh, w_hr, *saved, mask, dy, dh_T, dc_T, need, ctx.kernel)
    else:
        g = _layer_backward(x, w_ih, w_hh, w_hr, *saved, mask, dy, dh_T, dc_T, list(need), ctx.kernel)
        g = Grads(*(t if want else None for t, want in zip(g, need, strict=True)))
    db = g.bias
    return (g.x, g.h0, g.c0, g.w_ih, g.w_hh, db, None if db is None else db.clone(), g.w_hr, None, None)


torch.library.register_autograd(f"{_LIB}::layer_train", _train_backward, setup_context=_setup_context)


def _differentiable_backward(x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, mask, dy, dh_T, dc_T, need):
    """The backward in differentiable torch ops (no in-place or inference-mode steps), for
    create_graph=True: it recomputes the forward from the inputs, so that autograd sees how the
    gradients depend on them. Plain gates here (no rewrites): this path is for correctness.
    Per step, with m the mask (1 if no mask), dh and dc the gradients w.r.t. the carried state:
        dh_new = m (dh + dy_t);  dr = dh_new W_hr (or dh_new);  dc_new = m dc + dr o (1 - tanh(c)^2)
        da = [dc_new g i (1-i), dc_new c_prev f (1-f), dc_new i (1-g^2), dr tanh(c) o (1-o)]
        dh = da W_hh + (1-m) dh;  dc = dc_new f + (1-m) dc.
    Returns Grads (every field computed; the caller keeps what it needs)."""
    T = x.shape[0]
    a_x = F.linear(x, w_ih, None if b_ih is None else b_ih + b_hh)
    h, c = h0, c0
    steps = []                          # (h_prev, c_prev, i, f, g, o, tanh(c), r) of each step
    for t in range(T):
        a_i, a_f, a_g, a_o = (a_x[t] + h @ w_hh.t()).chunk(4, 1)
        i, f, g, o = torch.sigmoid(a_i), torch.sigmoid(a_f), torch.tanh(a_g), torch.sigmoid(a_o)
        c_new = f * c + i * g
        tc = torch.tanh(c_new)
        r = o * tc
        h_new = r if w_hr is None else r @ w_hr.t()
        steps.append((h, c, i, f, g, o, tc, r))
        if mask is not None:
            c_new, h_new = torch.where(mask[t], c_new, c), torch.where(mask[t], h_new, h)
        h, c = h_new, c_new
    dh, dc = dh_T, dc_T
    das, dh_news = [], []
    for t in reversed(range(T)):
        h_prev, c_prev, i, f, g, o, tc, r = steps[t]
        dh_new, dc_new = dh + dy[t], dc
        if mask is not None:
            m = mask[t].to(x.dtype)
            dh_new, dc_new = m * dh_new, m * dc
        dr = dh_new if w_hr is None else dh_new @ w_hr
        dc_new = dc_new + dr * o * (1 - tc * tc)
        da = torch.cat([dc_new * g * i * (1 - i), dc_new * c_prev * f * (1 - f), dc_new * i * (1 - g * g),
                        dr * tc * o * (1 - o)], 1)
        dh_next, dc_next = da @ w_hh, dc_new * f
        if mask is not None:
            dh_next, dc_next = dh_next + (1 - m) * dh, dc_next + (1 - m) * dc
        dh, dc = dh_next, dc_next
        das.append(da)
        dh_news.append(dh_new)
    da = torch.stack(das[::-1]).flatten(0, 1)                                    # (T*B, 4H)
    rows = lambda k: torch.stack([s[k] for s in steps]).flatten(0, 1)           # noqa: E731
    dw_hr = None
    if w_hr is not None:
        dw_hr = torch.stack(dh_news[::-1]).flatten(0, 1).t() @ rows(7)
    return Grads((da @ w_ih).view(x.shape), dh, dc, da.t() @ x.flatten(0, 1), da.t() @ rows(0), da.sum(0),
                 dw_hr)


def _vmap_by_loop(op):
    """A vmap rule for `op`: one call per slice of the vmapped dimension, outputs stacked on dim 0.
    (vmap then sees the same numbers as a Python loop over the samples.)"""

    def rule(info, in_dims, *args):
        outs = []
        for n in range(info.batch_size):
            sliced = [a.select(d, n) if d is not None else a for a, d in zip(args, in_dims, strict=True)]
            outs.append(op(*sliced))
        stacked = tuple(torch.stack(o) for o in zip(*outs, strict=True))
        return stacked, (0,) * len(stacked)

    return rule


for _op in (_layer_infer, _layer_train, _layer_backward):
    torch.library.register_vmap(_op, _vmap_by_loop(_op))


class _LayerTrain(torch.autograd.Function):
    """lstmkit::layer_train with its backward as an autograd.Function with setup_context, which is
    what the torch.func transforms need (the custom op's own register_autograd formula is not
    usable under them); its vmap rule is generated from the ops' own."""

    generate_vmap_rule = True

    @staticmethod
    def forward(x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, mask, kernel):
        return _call(_layer_train, _layer_train_impl, x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, mask, kernel)

    setup_context = staticmethod(_setup_context)
    backward = staticmethod(_train_backward)


class _LayerTrainJvp(_LayerTrain):
    """_LayerTrain with a forward-mode rule, used only in forward mode (torch.func.jvp / jacfwd, or a
    torch.autograd.forward_ad dual level): torch.compile does not trace autograd.Functions that
    define jvp."""

    jvp = staticmethod(_layer_jvp)


def _in_jvp():
    """Whether a torch.func forward-mode transform (jvp, jacfwd) is active."""
    from torch._C._functorch import TransformType
    from torch._functorch.pyfunctorch import retrieve_all_functorch_interpreters

    return any(i.key() == TransformType.Jvp for i in retrieve_all_functorch_interpreters())


class _LayerTrainEager(torch.autograd.Function):
    """The same in plain eager mode (_plain_eager), with the buffers kept on ctx instead of returned
    as outputs: autograd's bookkeeping of five more outputs cost about 30 us per layer (measured)."""

    @staticmethod
    def forward(ctx, x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, mask, kernel):
        out = _layer_train_impl(x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, mask, kernel)
        _save(ctx, (x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, mask, kernel), out[3:], plain=True)
        return out[:3]

    backward = staticmethod(_train_backward)


class LSTMFunction:
    """One layer, one direction of an LSTM over a time-major sequence, with hand-written BPTT.

    LSTMFunction.apply(x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, mask) -> (y, h_T, c_T):
    - x: (T, B, D) inputs.
    - h0: (B, P) and c0: (B, H) initial state (P = proj_size if projecting, else H).
    - w_ih (4H, D), w_hh (4H, P): weights; b_ih, b_hh (4H,) or None; w_hr (P, H) or None.
    - mask: (T, B, 1) bool, True where step t of sequence b is real, or None (all real).
    Returns:
    - y: (T, B, P) outputs (zero at masked steps).
    - h_T: (B, P) and c_T: (B, H): the state after each sequence's last real step.

    It runs the custom op lstmkit::layer_train; the backward is lstmkit::layer_backward, or, when
    the backward itself is differentiated (create_graph=True), _differentiable_backward.

    The step loop runs a few small ops per step, so their number and kind decide the speed. Three
    exact rewrites of the equations keep it at one matrix product and six elementwise ops per step,
    all of them sigmoids and multiply-adds (torch's CPU tanh costs about three sigmoids):
    - tanh(z) = 2 sigmoid(2z) - 1. The g rows of the weights are doubled (exact in binary floating
      point), so one sigmoid over the whole (4H, B) block gives i, f, o and s_g = sigmoid(2 a_g),
      with g = 2 s_g - 1.
    - The cell state is carried doubled, c2 = 2c = f * c2_prev + 4 i s_g - 2 i, so that
      sigmoid(c2) = (1 + tanh(c)) / 2 needs no scaling step.
    - The hidden state is carried negated, hn = -h = o - 2 o sigmoid(c2) (one addcmul), with
      W_hh negated to match.
    Inside, every per-step tensor is feature-major, (4H, B) or (H, B), so each step's product is
    W_hh h_prev^T with the weight on the left: on the CPUs measured, that shape runs 15-25 % faster
    than h_prev W_hh^T (and likewise W_hh^T da in the backward). Inputs and outputs keep nn.LSTM's
    (T, B, K) layout; one transposing copy at each end converts.
    When no gradient can be asked for, lstm_layer runs the same loop (lstmkit::layer_infer) without
    keeping anything for the backward, and with the signs flipped (h and -2c are carried, so the
    outputs need no final negation).
    On the CPU, _kernel_forward and _kernel_backward run the same rewrites compiled: per step one
    matrix product (the same product, through the BLAS that torch links) and one pass that does all
    the elementwise work, split across torch's threads; as torch ops those are six (forward) and
    three (backward) separate passes, each on one thread at small sizes, which cost more than the
    product.
    """

    @staticmethod
    def apply(x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, mask):
        return _run_layer(True, x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, mask)


def _run_layer(train, x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, mask):
    """y, h_T, c_T through the custom ops, or in plain eager mode their Python implementations.
    train: keep the buffers for a backward (lstmkit::layer_train) or not (lstmkit::layer_infer)."""
    args = (x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, mask)
    if _plain_eager(*args):
        if train:
            return _LayerTrainEager.apply(*args, _use_kernel(x, w_hh, w_hr, mask))
        return _layer_infer_impl(*args)
    compiling = torch.compiler.is_compiling()
    if not compiling and _is_tracing():
        # torch.jit.trace: one graph with or without grad mode, because trace's check re-traces
        # under no_grad. The op's registered autograd formula makes the traced graph differentiable.
        return _layer_train(*args, _use_kernel(x, w_hh, w_hr, mask))[:3]
    if not compiling and (_fwad._current_level >= 0 or _in_jvp()):
        # forward mode: torch.autograd.forward_ad's dual tensors, or torch.func.jvp / jacfwd
        return _LayerTrainJvp.apply(*args, _use_kernel(x, w_hh, w_hr, mask))[:3]
    if train or _peek_interpreter() is not None:       # torch.func transforms need the Function
        return _LayerTrain.apply(*args, _use_kernel(x, w_hh, w_hr, mask))[:3]
    return _layer_infer(*args)


# ----------------------------------------------------------------------------- the readable loop

def _loop_layer(x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, mask):
    """Same contract as LSTMFunction.apply, written as a plain cell loop; autograd does BPTT."""
    h, c = h0, c0
    ys = []
    for t in range(x.shape[0]):
        a = F.linear(x[t], w_ih, b_ih) + F.linear(h, w_hh, b_hh)
        a_i, a_f, a_g, a_o = a.chunk(4, 1)
        i, f, g, o = torch.sigmoid(a_i), torch.sigmoid(a_f), torch.tanh(a_g), torch.sigmoid(a_o)
        c_new = f * c + i * g
        h_new = o * torch.tanh(c_new)
        if w_hr is not None:
            h_new = h_new @ w_hr.t()
        if mask is not None:
            c_new = torch.where(mask[t], c_new, c)
            ys.append(h_new * mask[t])
            h_new = torch.where(mask[t], h_new, h)
        else:
            ys.append(h_new)
        h, c = h_new, c_new
    return torch.stack(ys), h, c


def lstm_layer(x, h0, c0, w_ih, w_hh, b_ih=None, b_hh=None, w_hr=None, mask=None, impl="fused"):
    """One layer and direction: y, h_T, c_T (see LSTMFunction for shapes).

    impl="fused" runs LSTMFunction when a gradient may be asked for, and otherwise (no_grad, or
    nothing requires grad) the same forward loop without keeping anything for a backward.
    """
    if impl == "fused":
        train = torch.is_grad_enabled() and (
            x.requires_grad or h0.requires_grad or c0.requires_grad or w_ih.requires_grad
            or w_hh.requires_grad or (b_ih is not None and b_ih.requires_grad)
            or (b_hh is not None and b_hh.requires_grad)
            or (w_hr is not None and w_hr.requires_grad))
        return _run_layer(train, x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, mask)
    return _loop_layer(x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr, mask)


# ----------------------------------------------------------------------------- modules

def _check_impl(impl):
    if impl not in IMPLS:
        raise ValueError(f"impl must be one of {IMPLS}; got {impl!r}")


def _check_rnn_args(input_size, hidden_size, num_layers, bias, batch_first, dropout, proj_size):
    """nn.RNNBase's argument checks (torch 2.13), in its order, with its exception types, messages
    and warning."""
    if not isinstance(dropout, numbers.Number) or not 0 <= dropout <= 1 or isinstance(dropout, bool):
        raise ValueError("dropout should be a number in range [0, 1] representing the probability of an "
                         "element being zeroed")
    if dropout > 0 and num_layers == 1:
        warnings.warn("dropout option adds dropout after all but last recurrent layer, so non-zero dropout "
                      f"expects num_layers greater than 1, but got dropout={dropout} and "
                      f"num_layers={num_layers}", stacklevel=3)
    for name, value, kind in (("bias", bias, bool), ("batch_first", batch_first, bool),
                              ("input_size", input_size, int), ("hidden_size", hidden_size, int),
                              ("num_layers", num_layers, int), ("proj_size", proj_size, int)):
        if not isinstance(value, kind):
            raise TypeError(f"{name} should be of type {kind.__name__}, got: {type(value).__name__}")
        if name in ("input_size", "hidden_size", "num_layers") and value <= 0:
            raise ValueError(f"{name} must be greater than zero")
    if proj_size < 0:
        raise ValueError("proj_size should be a positive integer or zero to disable projections")
    if proj_size >= hidden_size:
        raise ValueError("proj_size has to be smaller than hidden_size")


def _reverse(x, rev_idx):
    """Reverse each sequence of x (T, B, K) in time, within its own length when rev_idx is given."""
    if rev_idx is None:
        return x.flip(0)
    return x.gather(0, rev_idx.expand(-1, -1, x.shape[2]))


class LSTM(nn.Module):
    """Multi-layer (bidirectional, projected) LSTM with the interface of torch.nn.LSTM.

    Inputs (constructor): input_size, hidden_size, num_layers=1, bias=True, batch_first=False,
    dropout=0.0, bidirectional=False, proj_size=0, device=None, dtype=None as in nn.LSTM, plus
    impl="fused" | "loop".

    forward(input, hx=None):
    - input: (T, B, D) (or (B, T, D) if batch_first), (T, D) unbatched, or a PackedSequence.
    - hx: (h0, c0) with h0 (num_layers * num_dirs, B, P) and c0 (num_layers * num_dirs, B, H)
      (no B axis for unbatched input), or None for zeros. P = proj_size or H.
    Returns:
    - output: (T, B, num_dirs * P) (batch_first / unbatched / packed like the input).
    - (h_n, c_n): final states of every layer and direction, shaped like hx.
    """

    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False,
                 dropout=0.0, bidirectional=False, proj_size=0, device=None, dtype=None, *, impl="fused"):
        super().__init__()
        _check_impl(impl)
        _check_rnn_args(input_size, hidden_size, num_layers, bias, batch_first, dropout, proj_size)
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        self.bias, self.batch_first, self.dropout = bias, batch_first, float(dropout)
        self.bidirectional, self.proj_size, self.impl = bidirectional, proj_size, impl
        self.mode = "LSTM"
        num_dirs = 2 if bidirectional else 1
        real_h = proj_size if proj_size > 0 else hidden_size
        kw = {"device": device, "dtype": dtype}
        # As nn.RNNBase: _flat_weights_names, _all_weights (names per layer and direction) and
        # _flat_weights (the tensors, kept in step by __setattr__, _apply and forward), which
        # torch.nn.utils (weight_norm, prune, parametrizations) and PyTorch's RNN tests read.
        self._flat_weights_names, self._all_weights = [], []
        for layer in range(num_layers):
            layer_in = input_size if layer == 0 else real_h * num_dirs
            for d in range(num_dirs):
                sfx = f"_l{layer}{'_reverse' if d else ''}"
                shapes = [("weight_ih", (4 * hidden_size, layer_in)),
                          ("weight_hh", (4 * hidden_size, real_h))]
                if bias:
                    shapes += [("bias_ih", (4 * hidden_size,)), ("bias_hh", (4 * hidden_size,))]
                if proj_size > 0:
                    shapes += [("weight_hr", (proj_size, hidden_size))]
                for name, shape in shapes:
                    setattr(self, name + sfx, nn.Parameter(torch.empty(shape, **kw)))
                self._all_weights.append([name + sfx for name, _ in shapes])
                self._flat_weights_names.extend(self._all_weights[-1])
        self._init_flat_weights()
        self.reset_parameters()

    # _flat_weights bookkeeping, as nn.RNNBase does it
    _init_flat_weights = nn.RNNBase._init_flat_weights
    _weights_have_changed = nn.RNNBase._weights_have_changed

    def _update_flat_weights(self):
        """nn.RNNBase._update_flat_weights (re-read _flat_weights when a weight was replaced, e.g. by
        functional_call or a parametrization), with the registered parameters read from
        _parameters directly: getattr through Module.__getattr__ cost ~10 us per forward."""
        params = self._parameters
        for ref, name in zip(self._flat_weight_refs, self._flat_weights_names, strict=True):
            w = params.get(name)
            if w is None:                       # not a registered parameter (parametrized, weight norm)
                w = getattr(self, name, None)
            if w is not None and ref is not None and ref() is not w:
                self._init_flat_weights()
                return
    __getstate__ = nn.RNNBase.__getstate__

    def __setattr__(self, attr, value):
        if hasattr(self, "_flat_weights_names") and attr in self._flat_weights_names:
            self._flat_weights[self._flat_weights_names.index(attr)] = value   # e.g. self.weight = ...
        super().__setattr__(attr, value)

    def _replicate_for_data_parallel(self):
        replica = super()._replicate_for_data_parallel()
        replica._flat_weights = replica._flat_weights[:]          # not shared with the original
        replica._flat_weight_refs = replica._flat_weight_refs[:]
        return replica

    def __setstate__(self, d):
        super().__setstate__(d)
        self._flat_weight_refs = [weakref.ref(w) if w is not None else None for w in self._flat_weights]

    def _apply(self, fn, recurse=True):
        self._flat_weight_refs = []
        ret = super()._apply(fn, recurse)
        self._init_flat_weights()
        return ret

    def reset_parameters(self):
        """uniform(-1/sqrt(H), 1/sqrt(H)) for every parameter, in registration order, as nn.LSTM."""
        k = 1.0 / math.sqrt(self.hidden_size)
        for p in self.parameters():
            nn.init.uniform_(p, -k, k)

    def flatten_parameters(self):
        """No-op, for code written for nn.LSTM's cuDNN path."""

    @property
    def all_weights(self):
        return [[getattr(self, n) for n in names] for names in self._all_weights]

    def _params(self, k):
        """(w_ih, w_hh, b_ih, b_hh, w_hr) of layer-and-direction k, from _flat_weights."""
        slots = self.__dict__.get("_param_slots")
        if slots is None:          # where each of the five sits in _flat_weights (None: absent), once
            slots = []
            for names in self._all_weights:
                sfx = names[0][len("weight_ih"):]
                slots.append(tuple(self._flat_weights_names.index(n + sfx) if n + sfx in names else None
                                   for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh", "weight_hr")))
            self.__dict__["_param_slots"] = slots
        w = self._flat_weights
        return tuple(None if i is None else w[i] for i in slots[k])

    def _check_input(self, x, dtype_error):
        """nn.RNNBase.check_input: dtype (ValueError, as nn.LSTM; RuntimeError for packed input), then
        the feature size (RuntimeError)."""
        w = self._flat_weights[0]
        if x.dtype != w.dtype and not torch._C._is_any_autocast_enabled():
            raise dtype_error(f"RNN input dtype ({x.dtype}) does not match weight dtype ({w.dtype}). "
                              f"Convert input: input.to({w.dtype}), or convert model: model.to({x.dtype})")
        if x.size(-1) != self.input_size:
            raise RuntimeError(f"input.size(-1) must be equal to input_size. Expected {self.input_size}, "
                               f"got {x.size(-1)}")

    def extra_repr(self):
        s = f"{self.input_size}, {self.hidden_size}"
        for name, default in (("num_layers", 1), ("bias", True), ("batch_first", False), ("dropout", 0.0),
                              ("bidirectional", False), ("proj_size", 0), ("impl", "fused")):
            if getattr(self, name) != default:
                s += f", {name}={getattr(self, name)!r}"
        return s

    def forward(self, input, hx=None):
        self._update_flat_weights()
        num_dirs = 2 if self.bidirectional else 1
        H = self.hidden_size
        P = self.proj_size if self.proj_size > 0 else H
        L = self.num_layers * num_dirs
        # nn.LSTM's checks, exception types and messages (torch 2.13), in its order.
        packed = isinstance(input, PackedSequence)
        lengths = None
        if packed:     # (nn.LSTM leaves these to its kernels, which raise RuntimeError)
            self._check_input(input.data, RuntimeError)
            x, lengths = pad_packed_sequence(input)   # (T, B, D) in the caller's batch order
            batched = True
        else:
            if input.dim() not in (2, 3):
                raise ValueError(f"LSTM: Expected input to be 2D or 3D, got {input.dim()}D instead")
            batched = input.dim() == 3
            if hx is not None:
                want = 3 if batched else 2
                if hx[0].dim() != want or hx[1].dim() != want:
                    kind = "batched 3-D" if batched else "unbatched 2-D"
                    raise RuntimeError(f"For {kind} input, hx and cx should also be {want}-D but got "
                                       f"({hx[0].dim()}-D, {hx[1].dim()}-D) tensors")
            self._check_input(input, ValueError)
            x = input if batched else input.unsqueeze(1)
            if batched and self.batch_first:
                x = x.transpose(0, 1)
        T, B, _ = x.shape
        if hx is None:
            h0 = x.new_zeros(L, B, P)
            c0 = x.new_zeros(L, B, H)
        else:
            h0, c0 = hx if batched else (hx[0].unsqueeze(1), hx[1].unsqueeze(1))
            for i, (s, want) in enumerate(((h0, (L, B, P)), (c0, (L, B, H)))):
                if tuple(s.shape) != want:
                    raise RuntimeError(f"Expected hidden[{i}] size {want}, got {list(s.shape)}")
                if s.dtype != x.dtype:
                    raise RuntimeError(f"LSTM: hidden[{i}] dtype ({s.dtype}) does not match input dtype "
                                       f"({x.dtype})")
        if T == 0:
            raise RuntimeError("Expected sequence length to be larger than 0 in RNN")

        mask = rev_idx = None
        if lengths is not None:
            steps = torch.arange(T).unsqueeze(1)                            # (T, 1)
            mask = (steps < lengths.unsqueeze(0)).unsqueeze(2).to(x.device)  # (T, B, 1)
            if self.bidirectional:
                rev = torch.where(steps < lengths, lengths - 1 - steps, steps)  # (T, B)
                rev_idx = rev.unsqueeze(2).to(x.device)

        layer_input = x
        h_n, c_n = [], []
        for layer in range(self.num_layers):
            outs = []
            for d in range(num_dirs):
                k = layer * num_dirs + d
                xin = layer_input if d == 0 else _reverse(layer_input, rev_idx)
                y, h, c = lstm_layer(xin, h0[k], c0[k], *self._params(k), mask=mask, impl=self.impl)
                outs.append(y if d == 0 else _reverse(y, rev_idx))
                h_n.append(h)
                c_n.append(c)
            layer_input = outs[0] if num_dirs == 1 else torch.cat(outs, 2)
            if self.dropout > 0 and self.training and layer < self.num_layers - 1:
                layer_input = F.dropout(layer_input, self.dropout, training=True)
        out, h_n, c_n = layer_input, torch.stack(h_n), torch.stack(c_n)

        if packed:
            order = input.sorted_indices
            if order is not None:
                out, lengths = out[:, order], lengths[order]
            data = pack_padded_sequence(out, lengths, enforce_sorted=True).data
            out = PackedSequence(data, input.batch_sizes, input.sorted_indices, input.unsorted_indices)
        elif not batched:
            out, h_n, c_n = out.squeeze(1), h_n.squeeze(1), c_n.squeeze(1)
        elif self.batch_first:
            out = out.transpose(0, 1)
        return out, (h_n, c_n)


class LSTMCell(nn.Module):
    """One LSTM step with the interface of torch.nn.LSTMCell.

    Inputs (constructor): input_size, hidden_size, bias=True, device=None, dtype=None; impl as LSTM.
    forward(input, hx=None):
    - input: (B, D) or unbatched (D,).
    - hx: (h, c), each (B, H) (or (H,)), or None for zeros.
    Returns:
    - (h', c'), each (B, H) (or (H,)).
    """

    def __init__(self, input_size, hidden_size, bias=True, device=None, dtype=None, *, impl="fused"):
        super().__init__()
        _check_impl(impl)
        for name, n in (("input_size", input_size), ("hidden_size", hidden_size)):
            if not isinstance(n, int):      # (nn.LSTMCell's torch.empty raises TypeError too)
                raise TypeError(f"{name} should be of type int, got: {type(n).__name__}")
        self.input_size, self.hidden_size, self.bias, self.impl = input_size, hidden_size, bias, impl
        kw = {"device": device, "dtype": dtype}
        self.weight_ih = nn.Parameter(torch.empty(4 * hidden_size, input_size, **kw))
        self.weight_hh = nn.Parameter(torch.empty(4 * hidden_size, hidden_size, **kw))
        if bias:
            self.bias_ih = nn.Parameter(torch.empty(4 * hidden_size, **kw))
            self.bias_hh = nn.Parameter(torch.empty(4 * hidden_size, **kw))
        else:
            self.register_parameter("bias_ih", None)
            self.register_parameter("bias_hh", None)
        self.reset_parameters()

    def reset_parameters(self):
        k = 1.0 / math.sqrt(self.hidden_size)
        for p in self.parameters():
            nn.init.uniform_(p, -k, k)

    def extra_repr(self):
        return f"{self.input_size}, {self.hidden_size}, bias={self.bias}, impl={self.impl!r}"

    def forward(self, input, hx=None):
        # nn.LSTMCell's checks, exception types and messages (torch 2.13), in its order.
        if input.dim() not in (1, 2):
            raise ValueError(f"LSTMCell: Expected input to be 1D or 2D, got {input.dim()}D instead")
        if hx is not None:
            for idx, value in enumerate(hx):
                if value.dim() not in (1, 2):
                    raise ValueError(f"LSTMCell: Expected hx[{idx}] to be 1D or 2D, got {value.dim()}D "
                                     "instead")
        batched = input.dim() == 2
        x = input if batched else input.unsqueeze(0)
        B, H = x.shape[0], self.hidden_size
        if x.shape[1] != self.input_size:
            raise RuntimeError(f"input has inconsistent input_size: got {x.shape[1]} expected "
                               f"{self.input_size}")
        if hx is None:
            h0 = c0 = x.new_zeros(B, H)
        else:
            h0, c0 = hx if batched else (hx[0].unsqueeze(0), hx[1].unsqueeze(0))
            for i, s in enumerate((h0, c0)):
                if s.shape[0] != B:
                    raise RuntimeError(f"Input batch size {B} doesn't match hidden{i} batch size "
                                       f"{s.shape[0]}")
                if s.shape[1] != H:
                    raise RuntimeError(f"hidden{i} has inconsistent hidden_size: got {s.shape[1]}, "
                                       f"expected {H}")
            h0, c0 = h0.to(x.dtype), c0.to(x.dtype)   # nn.LSTMCell promotes a hidden state's dtype
        if x.dtype != self.weight_ih.dtype:
            raise RuntimeError(f"LSTMCell: input dtype ({x.dtype}) does not match weight dtype "
                               f"({self.weight_ih.dtype})")
        _, h, c = lstm_layer(x.unsqueeze(0), h0, c0, self.weight_ih, self.weight_hh, self.bias_ih,
                             self.bias_hh, impl=self.impl)
        if not batched:
            h, c = h.squeeze(0), c.squeeze(0)
        return h, c
