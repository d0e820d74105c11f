"""The character-level language model of the applied chapter (lstmkit.charlm): data, errors,
learning at the chapter's size, sampling at a temperature."""

import math

import numpy as np
import pytest
import torch

from lstmkit import charlm
from lstmkit.charlm import CharLM, Vocab
from lstmkit.torch import LSTM

torch.set_num_threads(1)

# The chapter's sizes (book/applied/charlm.md): E, H, B (streams), K (chunk length), Adam lr.
E, H, B, K, LR = 32, 64, 64, 64, 2e-2


@pytest.fixture(scope="module")
def data():
    text = charlm.python_help_text()
    train_text, val_text = charlm.split_text(text, val_fraction=0.1)
    return text, train_text, val_text, Vocab(text)


def test_help_text_is_the_pydoc_topics(data):
    from pydoc_data.topics import topics

    text, train_text, val_text, vocab = data
    assert len(text) > 100_000
    assert topics["assert"].strip("\n") in text and topics["yield"].strip("\n") in text
    assert train_text + val_text == text
    assert train_text.endswith("\n") and 0.09 < len(val_text) / len(text) < 0.11
    assert "Beautiful is better than ugly." in charlm.zen_text()


def test_encode_decode_round_trip(data):
    text, _, _, vocab = data
    piece = text[5000:7000]
    ids = vocab.encode(piece)
    assert ids.dtype == torch.int64 and ids.shape == (len(piece),)
    assert vocab.decode(ids) == piece
    assert vocab.decode(ids.numpy()) == piece and vocab.decode(ids.tolist()) == piece
    assert len(vocab) == len(set(text)) and vocab.chars == sorted(vocab.chars)
    assert vocab.decode(vocab.encode("")) == ""


def test_vocabulary_errors():
    vocab = Vocab("abc\n")
    with pytest.raises(ValueError, match=r"character 'z' \(position 2\) is not in the vocabulary"):
        vocab.encode("abz")
    with pytest.raises(TypeError, match="takes a str"):
        vocab.encode([0, 1])
    with pytest.raises(ValueError, match=r"id 4 is out of range: ids must be in 0\.\.3"):
        vocab.decode([0, 4])
    with pytest.raises(ValueError, match="out of range"):
        vocab.decode([-1])
    with pytest.raises(ValueError, match="1-D"):
        vocab.decode(torch.zeros(2, 2, dtype=torch.int64))
    with pytest.raises(TypeError, match="integers"):
        vocab.decode(torch.zeros(3))
    with pytest.raises(ValueError, match="non-empty str"):
        Vocab("")


def test_streams_shapes_and_targets():
    ids = torch.arange(103)
    xs, ys = charlm.lm_streams(ids, 4)
    T = (103 - 1) // 4
    assert xs.shape == ys.shape == (T, 4)
    torch.testing.assert_close(ys, xs + 1)                 # the target is the next character
    torch.testing.assert_close(xs[:, 1], ids[T:2 * T])    # column b is the b-th consecutive piece
    with pytest.raises(ValueError, match="too few"):
        charlm.lm_streams(ids[:4], 4)
    with pytest.raises(ValueError, match="1-D"):
        charlm.lm_streams(ids.view(1, -1), 4)
    with pytest.raises(ValueError, match="val_fraction"):
        charlm.split_text("a\nb\n", val_fraction=1.5)


def test_model_shapes_state_and_input_errors():
    torch.manual_seed(0)
    model = CharLM(11, 5, 7, forget_bias=1.0)
    assert isinstance(model.lstm, LSTM)
    torch.manual_seed(0)
    plain = CharLM(11, 5, 7)
    # lstmkit's one convention (lstmkit.train.add_forget_bias): +1 on the f block of bias_ih only
    torch.testing.assert_close(model.lstm.bias_ih_l0 - plain.lstm.bias_ih_l0,
                               torch.tensor([0.0] * 7 + [1.0] * 7 + [0.0] * 14))
    assert torch.equal(model.lstm.bias_hh_l0, plain.lstm.bias_hh_l0)
    idx = torch.randint(0, 11, (6, 3))
    logits, (h, c) = model(idx)
    assert logits.shape == (6, 3, 11) and h.shape == c.shape == (1, 3, 7)
    # carrying the state over two halves gives the same logits as one pass
    first, state = model(idx[:2])
    second, _ = model(idx[2:], state)
    torch.testing.assert_close(torch.cat([first, second]), logits)
    with pytest.raises(ValueError, match=r"\(T, B\) int64"):
        model(idx.float())
    with pytest.raises(ValueError, match=r"outside 0\.\.10"):
        model(idx + 5)


def test_cell_states_match_the_torch_lstm():
    torch.manual_seed(1)
    vocab = Vocab("abcd \n")
    model = CharLM(len(vocab), 4, 6)
    text = "ab cd\nba dc\n"
    c = charlm.cell_states(model, vocab, text)
    assert c.shape == (len(text), 6)
    with torch.no_grad():
        for t in (0, 5, len(text) - 1):                 # c after text[t] = final c of the prefix
            _, (_, c_t) = model(vocab.encode(text[:t + 1]).view(-1, 1))
            np.testing.assert_allclose(c[t], c_t[0, 0].double().numpy(), atol=1e-5)


def test_text_features():
    text = 'say "hi" (x)\n  ab\n'
    f = charlm.text_features(text)
    quote = "".join("1" if v else "0" for v in f["inside quotes"])
    assert quote == "000011100000000000"      # from the opening quote to before the closing one
    assert "".join("1" if v else "0" for v in f["inside parentheses"]) == "000000000110000000"
    assert f["position in line"].tolist() == [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 0, 1, 2, 3, 4, 0]
    assert f["indented line"].tolist() == [0] * 13 + [1] * 4 + [0]


def test_unigram_baseline():
    ids = torch.tensor([0, 0, 0, 1])
    # add-one smoothed frequencies over V=3: (4, 2, 1) / 7
    assert charlm.unigram_cross_entropy(ids, torch.tensor([0, 2]), 3) == pytest.approx(
        -(math.log(4 / 7) + math.log(1 / 7)) / 2)


def test_model_learns_at_the_chapters_size(data):
    """At the chapter's sizes and seed, 40 steps already beat the unigram baseline clearly."""
    _, train_text, val_text, vocab = data
    xs, ys = charlm.lm_streams(vocab.encode(train_text), B)
    xv, yv = charlm.lm_streams(vocab.encode(val_text[:8000]), 16)
    unigram = charlm.unigram_cross_entropy(vocab.encode(train_text), yv.flatten(), len(vocab))
    torch.manual_seed(0)
    model = CharLM(len(vocab), E, H, forget_bias=1.0)
    before = charlm.evaluate(model, xv, yv)
    hist = charlm.train_lm(model, xs, ys, 40, K, lr=LR, eval_every=20,
                           eval_fn=lambda: charlm.evaluate(model, xv, yv), progress=False)
    assert len(hist["train"]) == 40 and hist["val_step"] == [20, 40]
    assert before > unigram                       # an untrained model is worse than frequencies
    assert hist["val"][-1] < 0.85 * unigram       # the trained one is clearly better
    assert hist["val"][-1] < hist["val"][0]


def test_train_lm_wraps_to_a_new_pass():
    torch.manual_seed(0)
    vocab = Vocab("abcab\n")
    xs, ys = charlm.lm_streams(vocab.encode("abcab\n" * 20), 2)   # T = 59: 7 chunks of 8
    model = CharLM(len(vocab), 3, 4)
    hist = charlm.train_lm(model, xs, ys, 17, 8, eval_every=5, progress=False)
    assert len(hist["train"]) == 17 and hist["val"] == []
    with pytest.raises(ValueError, match="shorter than one chunk"):
        charlm.train_lm(model, xs, ys, 3, 100, progress=False)


def test_sampling_temperature():
    torch.manual_seed(0)
    vocab = Vocab("abcdefgh \n")
    model = CharLM(len(vocab), 8, 16)

    def draw(tau, seed):
        return charlm.sample(model, vocab, "ab", 200, temperature=tau,
                             generator=torch.Generator().manual_seed(seed))

    # near zero temperature: every draw is the most likely character, whatever the random seed
    cold = draw(1e-4, 0)
    assert cold == draw(1e-4, 1) == draw(1e-4, 2)
    greedy = []
    with torch.no_grad():
        logits, state = model(vocab.encode("ab").view(-1, 1))
        for _ in range(200):
            nxt = logits[-1, 0].argmax().view(1, 1)
            greedy.append(nxt.item())
            logits, state = model(nxt, state)
    assert cold == vocab.decode(greedy)
    # high temperature: different seeds give different texts, with more distinct characters
    hot = draw(5.0, 0)
    assert len(hot) == 200 and hot != draw(5.0, 1)
    assert len(set(hot)) > len(set(cold))
    # the same seed reproduces the same sample
    assert draw(1.0, 3) == draw(1.0, 3)
    with pytest.raises(ValueError, match="temperature must be > 0"):
        charlm.sample(model, vocab, "ab", 5, temperature=0)
    with pytest.raises(ValueError, match="non-empty"):
        charlm.sample(model, vocab, "", 5)
    with pytest.raises(ValueError, match="not in the vocabulary"):
        charlm.sample(model, vocab, "xyz", 5)


def test_text_heatmap_checks_length():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    im = charlm.plot_text_heatmap("ab\ncd", np.arange(5.0), ax=ax)
    assert im.get_array().shape == (2, 3)
    with pytest.raises(ValueError, match=r"shape \(len\(text\),\) = \(5,\)"):
        charlm.plot_text_heatmap("ab\ncd", np.arange(4.0), ax=ax)
    plt.close(fig)
