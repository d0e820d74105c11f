"""Sequence to sequence (lstmkit.seq2seq): the reversal task, the packed bidirectional encoder,
additive attention, the decoding paths (teacher forcing, scheduled sampling, greedy, beam search)."""

import pytest
import torch

from lstmkit import seq2seq as s2s
from lstmkit.seq2seq import BOS, EOS, PAD, AdditiveAttention, Encoder, Seq2Seq, V

torch.set_num_threads(1)


def batch(B=6, min_len=1, max_len=7, seed=0):
    return s2s.reversal_batch(B, min_len, max_len, generator=torch.Generator().manual_seed(seed))


def model(attention, seed=0, dtype=torch.float32):
    torch.manual_seed(seed)
    return Seq2Seq(5, 4, 6, attention=attention, A=3).to(dtype).eval()


@pytest.fixture(scope="module")
def trained():
    """Small models trained briefly on strings of 1-5 digits: they decode longer strings with
    errors and outputs of varied length, which is what the decoding tests need."""
    models, losses = {}, {}
    for attention, steps in ((False, 150), (True, 100)):
        torch.manual_seed(0)
        m = Seq2Seq(16, 32, 64, attention=attention)
        losses[attention] = s2s.train(m, steps, B=64, min_len=1, max_len=5, lr=1e-2, progress=False)
        models[attention] = m
    return models, losses


def test_reversal_batch_is_the_reversed_source():
    src, src_len, tgt = batch(B=50, min_len=2, max_len=9)
    S = src.shape[0]
    assert src.dtype == tgt.dtype == torch.int64 and tgt.shape == (S + 1, 50)
    assert S == int(src_len.max()) and int(src_len.min()) >= 2
    for b, n in enumerate(src_len.tolist()):
        digits = s2s.decode_digits(src[:n, b])
        assert len(digits) == n and (src[n:, b] == PAD).all()
        assert s2s.decode_digits(tgt[:, b]) == digits[::-1]
        assert tgt[n, b] == EOS and (tgt[n + 1:, b] == PAD).all()
    assert s2s.decode_digits(s2s.encode_digits("0907")) == "0907"


def test_bad_input_is_refused_with_a_clear_error():
    with pytest.raises(ValueError, match="min_len"):
        s2s.reversal_batch(4, 5, 3)
    with pytest.raises(ValueError, match="digits"):
        s2s.encode_digits("12a")
    src, src_len, _ = batch()
    with pytest.raises(ValueError, match="width"):
        s2s.beam_search(model(False), src, src_len, 0)


def test_shapes():
    src, src_len, tgt = batch(B=6)
    S, T = src.shape[0], tgt.shape[0]
    for attention in (False, True):
        m = model(attention)
        mem = m.encode(src, src_len)
        assert mem["memory"].shape == (S, 6, 8) and mem["state"][0].shape == (6, 6)
        assert m(src, src_len, tgt).shape == (T, 6, V)
        logits, (h, c), alpha = m.step(torch.full((6,), BOS), mem["state"], mem)
        assert logits.shape == (6, V) and h.shape == c.shape == (6, 6)
        assert (alpha is None) != attention
        out = s2s.greedy_decode(m, src, src_len)
        assert out.dim() == 2 and out.shape[1] == 6 and out.shape[0] <= S + 1
    out, alpha = s2s.greedy_decode(model(True), src, src_len, return_attention=True)
    assert alpha.shape == (out.shape[0], S, 6)


def test_packed_encoder_equals_each_sequence_alone_and_unpacked_differs():
    torch.manual_seed(1)
    enc = Encoder(5, 4).double()
    src, src_len, _ = batch(B=5, min_len=2, max_len=8, seed=3)
    S = src.shape[0]
    mem, (h_n, c_n) = enc(src, src_len)
    raw, (h_raw, _) = enc(src, src_len, packed=False)
    H = 4
    shorter = 0
    for b, n in enumerate(src_len.tolist()):
        alone, (h1, c1) = enc(src[:n, b:b + 1], src_len[b:b + 1])
        torch.testing.assert_close(mem[:n, b], alone[:, 0], rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(h_n[:, b], h1[:, 0], rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(c_n[:, b], c1[:, 0], rtol=1e-12, atol=1e-12)
        assert (mem[n:, b] == 0).all()
        # Unpacked, the forward direction's outputs at the real steps are still right ...
        torch.testing.assert_close(raw[:n, b, :H], alone[:, 0, :H], rtol=1e-12, atol=1e-12)
        if n < S:
            shorter += 1
            # ... but the backward direction has read the padding first: all its outputs and
            # both final states differ from the sequence's own.
            assert (raw[:n, b, H:] - alone[:, 0, H:]).abs().amin(1).min() > 1e-6
            assert (h_raw[1, b] - h1[1, 0]).abs().max() > 1e-3
            assert (h_raw[0, b] - h1[0, 0]).abs().max() > 1e-3
        else:
            torch.testing.assert_close(h_raw[:, b], h1[:, 0], rtol=1e-12, atol=1e-12)
    assert shorter >= 2


def test_additive_attention_gradcheck_and_masking():
    torch.manual_seed(0)
    S, B, Q, K, A = 5, 3, 4, 6, 3
    attn = AdditiveAttention(Q, K, A).double()
    query = torch.randn(B, Q, dtype=torch.float64, requires_grad=True)
    keys = torch.randn(S, B, K, dtype=torch.float64, requires_grad=True)
    mask = torch.arange(S).unsqueeze(1) < torch.tensor([5, 2, 4])
    assert torch.autograd.gradcheck(lambda q, k: attn(q, k, mask), (query, keys))
    names, params = zip(*attn.named_parameters(), strict=True)

    def with_params(*w):
        return torch.func.functional_call(attn, dict(zip(names, w, strict=True)), (query, keys, mask))

    assert torch.autograd.gradcheck(with_params, params)

    context, alpha = attn(query, keys, mask)
    torch.testing.assert_close(alpha.sum(0), torch.ones(B, dtype=torch.float64))
    assert (alpha[~mask] == 0).all() and (alpha[mask] > 0).all()
    # The formula, written out for one column: softmax over the real positions of v . tanh(...).
    b = 2
    e = torch.stack([attn.v.weight[0] @ torch.tanh(attn.W_q.weight @ query[b] + attn.W_k.weight @ keys[j, b]
                                                   + attn.W_k.bias) for j in range(4)])
    torch.testing.assert_close(alpha[:4, b], torch.softmax(e, 0))
    torch.testing.assert_close(context[b], (alpha[:4, b, None] * keys[:4, b]).sum(0))
    # Padding cannot leak in: no gradient reaches the keys at padded positions.
    context.sum().backward()
    assert (keys.grad[~mask] == 0).all() and (keys.grad[mask] != 0).any()


def test_teacher_forcing_fast_path_equals_the_step_loop():
    src, src_len, tgt = batch(B=5)
    m = model(False)
    fast = m(src, src_len, tgt)                                  # one LSTM call over the target
    mem = m.encode(src, src_len)
    state, prev, loop = mem["state"], torch.full((5,), BOS), []
    for t in range(tgt.shape[0]):
        logits, state, _ = m.step(prev, state, mem)
        loop.append(logits)
        prev = tgt[t]
    torch.testing.assert_close(fast, torch.stack(loop), rtol=1e-5, atol=1e-6)
    # The scheduled-sampling loop with a coin that always says "target" is teacher forcing too.
    torch.testing.assert_close(m(src, src_len, tgt, feed_prob=1 - 1e-9), fast, rtol=1e-5, atol=1e-6)


def test_scheduled_sampling_feeds_the_models_own_samples():
    src, src_len, tgt = batch(B=40)
    m = model(True)
    tf = m(src, src_len, tgt)
    gen = lambda: torch.Generator().manual_seed(5)  # noqa: E731
    ss = m(src, src_len, tgt, feed_prob=0.0, generator=gen())
    torch.testing.assert_close(ss[0], tf[0])                    # the first input is BOS either way
    assert (ss[1:] - tf[1:]).abs().max() > 1e-3
    torch.testing.assert_close(m(src, src_len, tgt, feed_prob=0.0, generator=gen()), ss)
    # With feed_prob=0, the inputs are samples: replaying them as targets reproduces the logits.
    mem = m.encode(src, src_len)
    g, state, prev = gen(), mem["state"], torch.full((40,), BOS)
    fed = []
    for _ in range(tgt.shape[0]):
        logits, state, _ = m.step(prev, state, mem)
        own = torch.multinomial(torch.softmax(logits, 1), 1, generator=g)[:, 0]
        torch.rand(own.shape, generator=g)
        prev = own
        fed.append(own)
    torch.testing.assert_close(m(src, src_len, torch.stack(fed)), ss)


@pytest.mark.parametrize("attention", [False, True])
def test_greedy_decoding_is_teacher_forcing_on_its_own_output(attention, trained):
    src, src_len, _ = batch(B=40, max_len=9, seed=2)
    for m in (model(attention, seed=3), trained[0][attention]):
        check_greedy_is_teacher_forced(m, src, src_len)


def check_greedy_is_teacher_forced(m, src, src_len):
    out = s2s.greedy_decode(m, src, src_len, max_len=12)
    logits = m(src, src_len, out)           # teacher forcing with the decoded tokens as targets
    masked = logits.clone()
    masked[:, :, [PAD, BOS]] = float("-inf")
    real = torch.ones_like(out, dtype=torch.bool)
    real[1:] = (out[:-1] != EOS) & (out[:-1] != PAD)
    assert (masked.argmax(2)[real] == out[real]).all()
    assert ((out == PAD) == ~real).all()


@pytest.mark.parametrize("attention", [False, True])
def test_beam_width_1_is_greedy_and_scores_are_log_probabilities(attention, trained):
    src, src_len, tgt = batch(B=60, min_len=1, max_len=9, seed=4)
    greedy = s2s.greedy_decode(trained[0][attention], src, src_len)
    lengths = (greedy != PAD).sum(0)
    assert len(set(lengths.tolist())) >= 5                    # outputs of many lengths ...
    assert 0 < s2s.evaluate(greedy, tgt)[0].float().mean() < 1    # ... right and wrong ones
    for m in (trained[0][attention], model(attention, seed=1)):
        greedy = s2s.greedy_decode(m, src, src_len)
        beam, _ = s2s.beam_search(m, src, src_len, 1)
        assert torch.equal(s2s._trim(beam, greedy.shape[0]), greedy) and (beam[greedy.shape[0]:] == PAD).all()
        for width in (3, 10):
            out, scores = s2s.beam_search(m, src, src_len, width)
            with torch.no_grad():
                logp = torch.log_softmax(s2s._no_pad_bos(m(src, src_len, out).view(-1, V)), 1)
            logp = logp.view(*out.shape, V).gather(2, out.unsqueeze(2))[:, :, 0]
            total = torch.where(out == PAD, 0.0, logp).sum(0)
            torch.testing.assert_close(total, scores, rtol=1e-4, atol=1e-4)
            assert ((out == EOS).sum(0) <= 1).all()


def test_evaluate_counts_whole_sequences_and_tokens():
    tgt = torch.tensor([[5, 7], [6, 8], [EOS, 9], [PAD, EOS]])
    out = torch.tensor([[5, 7], [6, 3], [EOS, 9]])           # second: one wrong token, EOS missing
    seq, tok = s2s.evaluate(out, tgt)
    assert seq.tolist() == [True, False]
    torch.testing.assert_close(tok, torch.tensor([1.0, 0.5]))
    assert s2s.accuracy_by_length([1.0, 0.0, 1.0], [2, 3, 2], 2, 3).tolist() == [1.0, 0.0]


def test_training_learns_short_reversals(trained):
    models, losses = trained
    src, src_len, tgt = batch(B=300, min_len=1, max_len=4, seed=9)
    for attention in (False, True):
        assert sum(losses[attention][-10:]) < 0.2 * sum(losses[attention][:10])
        seq, _ = s2s.evaluate(s2s.greedy_decode(models[attention], src, src_len), tgt)
        assert seq.float().mean() > 0.8, attention
    seen = s2s.training_sources(100, B=64, min_len=1, max_len=5)
    assert all(1 <= len(x) <= 5 for x in seen) and len(seen) > 1000
