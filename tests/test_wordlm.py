"""lstmkit.wordlm: tokens, the vocabulary and its <unk>, the bigram baseline against counting by
hand, the model's shapes and gradients, next-word suggestions, and learning on the help texts."""

import math

import pytest
import torch

from lstmkit import charlm
from lstmkit.torch import LSTM
from lstmkit.wordlm import UNK, WordLM, WordVocab, bigram_cross_entropy, next_words, tokenize

torch.set_num_threads(1)


def test_tokenize():
    assert tokenize('The x.append(y) "call", 3 times;\nDone_2 é') == [
        "the", "x", ".", "append", "(", "y", ")", '"', "call", '"', ",", "3", "times", ";", "done_2", "é"]
    assert tokenize("") == []
    with pytest.raises(TypeError, match="takes a str"):
        tokenize(["a"])


def test_vocab_order_unk_and_round_trip():
    tokens = "b a b c b a d".split()
    v = WordVocab(tokens)
    assert v.itos == [UNK, "b", "a", "c", "d"]           # <unk> first, then by count, ties a-z
    assert len(v) == 5 and "a" in v and "z" not in v
    ids = v.encode(["a", "z", "b"])
    assert ids.dtype == torch.int64 and ids.tolist() == [2, 0, 1]   # unknown -> 0
    assert v.decode(ids) == ["a", UNK, "b"]
    assert v.encode("A b!").tolist() == [2, 1, 0]         # a str is tokenised first; "!" unknown
    assert v.oov_rate(["a", "z", "y", "b"]) == 0.5
    small = WordVocab(tokens, min_count=2)
    assert small.itos == [UNK, "b", "a"]
    assert WordVocab(tokens, max_size=1).itos == [UNK, "b"]


def test_vocab_errors():
    v = WordVocab(["a"])
    with pytest.raises(ValueError, match=r"id 2 is out of range: ids must be in 0\.\.1"):
        v.decode([0, 2])
    with pytest.raises(ValueError, match="1-D"):
        v.decode(torch.zeros(2, 2, dtype=torch.int64))
    with pytest.raises(ValueError, match="non-empty"):
        WordVocab([])
    with pytest.raises(ValueError, match=">= 1"):
        WordVocab(["a"], min_count=0)


def test_bigram_against_counting_by_hand():
    V, k = 3, 0.5
    train = [0, 1, 1, 2, 0, 1]
    ev = [1, 2, 2, 0]
    pairs = list(zip(train[:-1], train[1:], strict=True))
    total = 0.0
    for v, w in zip(ev[:-1], ev[1:], strict=True):
        c_vw = pairs.count((v, w))
        c_v = sum(1 for a, _ in pairs if a == v)
        total -= math.log((c_vw + k) / (c_v + k * V))
    assert bigram_cross_entropy(torch.tensor(train), torch.tensor(ev), V, k) == pytest.approx(total / 3)
    # the smoothed distribution p(. | v) sums to one for every v
    for v in range(V):
        probs = [math.exp(-bigram_cross_entropy(torch.tensor(train), torch.tensor([v, w]), V, k))
                 for w in range(V)]
        assert sum(probs) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="k must be > 0"):
        bigram_cross_entropy(torch.tensor(train), torch.tensor(ev), V, 0)
    with pytest.raises(ValueError, match="at least two tokens"):
        bigram_cross_entropy(torch.tensor(train), torch.tensor([1]), V)


def test_model_shapes_state_gradients_and_errors():
    torch.manual_seed(0)
    model = WordLM(13, 5, 7, dropout=0.0).double()
    assert isinstance(model.lstm, LSTM)
    torch.manual_seed(0)
    plain = WordLM(13, 5, 7, forget_bias=0.0).double()
    shift = model.lstm.bias_ih_l0 - plain.lstm.bias_ih_l0      # the default forget_bias=1.0
    torch.testing.assert_close(shift, torch.cat([torch.zeros(7), torch.ones(7), torch.zeros(14)]).double())
    torch.testing.assert_close(model.lstm.bias_hh_l0, plain.lstm.bias_hh_l0)
    idx = torch.randint(0, 13, (6, 3))
    logits, (h, c) = model(idx)
    assert logits.shape == (6, 3, 13) and h.shape == c.shape == (1, 3, 7)
    first, state = model(idx[:2])
    second, _ = model(idx[2:], state)
    torch.testing.assert_close(torch.cat([first, second]), logits)
    # gradients of the loss with respect to every parameter, against finite differences
    names = [n for n, _ in model.named_parameters()]

    def loss(*ps):
        out, _ = torch.func.functional_call(model, dict(zip(names, ps, strict=True)), (idx,))
        return torch.nn.functional.cross_entropy(out.reshape(-1, 13), idx.roll(-1, 0).reshape(-1))

    assert torch.autograd.gradcheck(loss, tuple(p.detach().requires_grad_() for p in model.parameters()))
    with pytest.raises(ValueError, match=r"\(T, B\) int64"):
        model(idx.float())
    with pytest.raises(ValueError, match=r"outside 0\.\.12"):
        model(idx + 13)


def test_dropout_only_in_training():
    torch.manual_seed(0)
    model = WordLM(13, 5, 7, dropout=0.5)
    idx = torch.randint(0, 13, (6, 3))
    assert not torch.allclose(model(idx)[0], model(idx)[0])
    model.eval()
    torch.testing.assert_close(model(idx)[0], model(idx)[0])


def test_next_words_is_the_models_distribution():
    torch.manual_seed(0)
    vocab = WordVocab("the cat sat on the mat".split())
    model = WordLM(len(vocab), 4, 6)
    top = next_words(model, vocab, "The cat", k=3)
    with torch.no_grad():
        logits, _ = model(vocab.encode(["the", "cat"]).view(-1, 1))
    p = torch.softmax(logits[-1, 0].double(), -1)
    p[0] = 0
    assert [w for w, _ in top] == [vocab.itos[i] for i in torch.argsort(p, descending=True)[:3]]
    assert [pr for _, pr in top] == pytest.approx(p[torch.argsort(p, descending=True)[:3]].tolist())
    assert UNK not in [w for w, _ in next_words(model, vocab, "the", k=len(vocab) - 1)]
    assert UNK in [w for w, _ in next_words(model, vocab, "the", k=len(vocab), include_unk=True)]
    assert model.training                            # the mode is restored
    with pytest.raises(ValueError, match="at least one token"):
        next_words(model, vocab, "   ")
    with pytest.raises(ValueError, match=r"k must be in 1\.\.5"):
        next_words(model, vocab, "the", k=6)


def test_learns_on_the_help_texts():
    """A short run at the chapter's sizes beats word frequencies (the unigram model) clearly on
    held-out help text (the chapter's longer run is compared with the bigram model there)."""
    text = charlm.python_help_text()
    train_text, val_text = charlm.split_text(text, 0.1)
    train_tok, val_tok = tokenize(train_text), tokenize(val_text)
    vocab = WordVocab(train_tok, min_count=3)
    ids_train, ids_val = vocab.encode(train_tok), vocab.encode(val_tok)
    assert 0 < vocab.oov_rate(val_tok) < 0.1 and (ids_val == 0).any()
    unigram = charlm.unigram_cross_entropy(ids_train, ids_val[1:4000], len(vocab))
    xs, ys = charlm.lm_streams(ids_train, 32)
    xv, yv = charlm.lm_streams(ids_val[:4000], 16)
    torch.manual_seed(0)
    model = WordLM(len(vocab), 64, 128, dropout=0.2)
    hist = charlm.train_lm(model, xs, ys, 60, 32, lr=5e-3, eval_every=30,
                           eval_fn=lambda: charlm.evaluate(model, xv, yv), progress=False)
    assert hist["val"][-1] < hist["val"][0] < math.log(len(vocab))
    assert hist["val"][-1] < unigram - 0.3
