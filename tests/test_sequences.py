"""lstmkit.sequences (the `sequences` assignment's reference) and its checks in lstmkit.grading.

The reference agrees with torch's own clipping and loss functions; each check passes the reference and
fails each typical mistake with a message that names it; the given cells of the notebook are verbatim
copies of the reference's task code; the delayed echo separates an LSTM from a vanilla RNN.
"""

import inspect
from pathlib import Path

import nbformat
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.nn.utils import clip_grad_norm_

from lstmkit import grading, grading_run
from lstmkit import sequences as S
from lstmkit.train import detach_state

ROOT = Path(__file__).resolve().parents[1]


# ----------------------------------------------------------------------------- the reference


def _params_with_grads(seed, scale):
    g = torch.Generator().manual_seed(seed)
    params = [torch.zeros(shape, dtype=torch.float64, requires_grad=True) for shape in ((3, 4), (5,), (2, 2))]
    for p in params:
        p.grad = torch.randn(p.shape, generator=g, dtype=torch.float64) * scale
    return params


@pytest.mark.parametrize("scale", [0.01, 10.0])
def test_clip_grad_norm_matches_torch(scale):
    mine, theirs = _params_with_grads(0, scale), _params_with_grads(0, scale)
    norm = S.clip_grad_norm(iter(mine), 1.0)  # a generator, as model.parameters()
    expected = torch.nn.utils.clip_grad_norm_(theirs, 1.0)
    assert torch.allclose(norm, expected)
    for a, b in zip(mine, theirs, strict=True):
        assert torch.allclose(a.grad, b.grad, rtol=1e-12)
    total = torch.sqrt(sum((p.grad ** 2).sum() for p in mine))
    assert (total <= 1.0 + 1e-9) if scale == 10.0 else torch.allclose(total, expected)


def test_clip_grad_norm_skips_missing_gradients():
    p, q = torch.zeros(3, requires_grad=True), torch.zeros(2, requires_grad=True)
    p.grad = torch.tensor([3.0, 4.0, 0.0])
    assert float(S.clip_grad_norm([p, q], 1.0)) == pytest.approx(5.0)
    assert q.grad is None and torch.allclose(p.grad, torch.tensor([0.6, 0.8, 0.0]), atol=1e-6)


def test_masked_cross_entropy_is_the_mean_over_real_tokens():
    g = torch.Generator().manual_seed(1)
    logits, targets = torch.randn(5, 3, 4, generator=g), torch.randint(0, 4, (5, 3), generator=g)
    lengths = torch.tensor([5, 2, 1])
    loss = S.masked_cross_entropy(logits.requires_grad_(), targets, lengths)
    per_token = [F.cross_entropy(logits[t, b][None], targets[t, b][None]) for b in range(3)
                 for t in range(int(lengths[b]))]
    assert torch.allclose(loss, torch.stack(per_token).mean())
    loss.backward()
    assert logits.grad[2:, 1].abs().max() == 0 and logits.grad[1:, 2].abs().max() == 0
    assert logits.grad[:2, 1].abs().max() > 0


def test_sample_next_draws_from_the_tempered_softmax():
    logits = torch.tensor([[2.0, 0.0, -1.0]]).repeat(4000, 1)
    for temperature in (0.5, 2.0):
        probs, ids = S.sample_next(logits, temperature, torch.Generator().manual_seed(0))
        assert torch.allclose(probs[0], torch.softmax(logits[0] / temperature, -1))
        freq = torch.bincount(ids, minlength=3).double() / len(ids)
        assert torch.allclose(freq, probs[0].double(), atol=0.03)
    again = S.sample_next(logits[:10], 0.5, torch.Generator().manual_seed(3))[1]
    assert torch.equal(again, S.sample_next(logits[:10], 0.5, torch.Generator().manual_seed(3))[1])


def test_train_tbptt_matches_lstmkit_train_fit_tbptt():
    """The same chunks, losses and weights as lstmkit.train.fit_tbptt with torch's clipping."""
    from lstmkit.train import fit_tbptt

    xs, ys = S.echo_streams(60, 4, 0)
    models = []
    for _ in range(2):
        torch.manual_seed(0)
        models.append(S.CharModel(len(S.ECHO_CHARS), 4, 6, "lstm").double())
    opt0 = torch.optim.SGD(models[0].parameters(), lr=0.1)
    opt1 = torch.optim.SGD(models[1].parameters(), lr=0.1)
    losses, state = S.train_tbptt(models[0], xs, ys, 7, opt0, 0.5)

    def loss_fn(logits, y):
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))

    hist = fit_tbptt(models[1], xs, ys, loss_fn, opt1, 7, clip=0.5, progress=False)
    assert len(losses) == -(-xs.shape[0] // 7)
    np.testing.assert_allclose(losses, hist.losses, rtol=1e-10)
    for a, b in zip(models[0].parameters(), models[1].parameters(), strict=True):
        assert torch.allclose(a, b, rtol=1e-10)
    assert not any(s.requires_grad for s in state)


def test_echo_text_lines_repeat_their_key():
    ids = S.echo_text(50, 0)
    lines = "".join(S.ECHO_CHARS[i] for i in ids).split("\n")[:-1]
    assert len(lines) == 50
    for line in lines:
        assert line[0] == line[-1] in "abcdefgh" and set(line[1:-1]) == {"."} and 3 <= len(line) - 2 <= 9
    xs, ys = S.echo_streams(50, 4, 0)
    assert xs.shape == ys.shape and torch.equal(xs[1:], ys[:-1])


def test_the_losses_the_notebook_states():
    """A line is a key (1 of 8), 3..9 dots (7 lengths), the key, a line break: 9 characters on average.
    With memory only the key and the run length are uncertain; without, the echo costs log 8 again."""
    ids = S.echo_text(20000, 0)
    per_line = len(ids) / 20000
    assert per_line == pytest.approx(9.0, abs=0.05)
    best, no_memory = (np.log(8) + np.log(7)) / 9, (2 * np.log(8) + np.log(7)) / 9
    assert round(best, 2) == 0.45 and round(no_memory, 2) == 0.68
    nb = (ROOT / "assignments" / "notebooks" / "sequences.md").read_text()
    assert "about 0.45 nats per character" in nb and "cannot go below about 0.68" in nb
    assert S.ECHO_BOUND < no_memory and f"**{S.ECHO_BOUND}** nats per character" in nb


def test_the_lstm_reaches_the_bound_and_the_vanilla_rnn_does_not(one_thread):
    """The task needs memory: the solution's training gets the LSTM under ECHO_BOUND, the same budget
    leaves the RNN above it (but under RNN_BOUND)."""
    xs, ys = S.echo_streams(400, 8, np.random.default_rng([100, 7]))
    lstm, _ = S.train_echo("lstm")
    rnn, _ = S.train_echo("rnn")
    lstm_loss, rnn_loss = S.validation_loss(lstm, xs, ys), S.validation_loss(rnn, xs, ys)
    assert lstm_loss < S.ECHO_BOUND - 0.03 < S.ECHO_BOUND < rnn_loss < S.RNN_BOUND, (lstm_loss, rnn_loss)


def test_the_notebook_s_given_code_is_the_reference_s():
    nb = nbformat.read(ROOT / "assignments" / "source" / "sequences" / "sequences.ipynb", 4)
    given = next(c.source for c in nb.cells if c.get("id") == "given")
    for obj in (S.echo_text, S.echo_streams, S.CharModel, S.validation_loss):
        assert inspect.getsource(obj).rstrip() in given, obj.__name__
    namespace = {}
    exec(given.split("\n")[0], namespace)
    assert namespace["ECHO_CHARS"] == S.ECHO_CHARS


# ----------------------------------------------------------------------------- the checks


CORRECT = {"clip_grad_norm": S.clip_grad_norm, "train_tbptt": S.train_tbptt,
           "masked_cross_entropy": S.masked_cross_entropy, "sample_next": S.sample_next}


@pytest.mark.parametrize("name", sorted(CORRECT))
def test_the_reference_passes_every_kind(name):
    check = grading.CHECKS[name]
    for seed in range(2 * len(check.kinds)):
        assert check(CORRECT[name], seed)


def points(name, fn, seeds=None):
    checks = grading.Checks(name, points=1)
    for seed in seeds if seeds is not None else range(len(checks.check.kinds)):
        checks(fn, seed)
    return checks.points(), [v.message for v in checks.verdicts if not v.passed]


def clip_per_tensor(params, max_norm):
    grads = [p.grad for p in params if p.grad is not None]
    for g in grads:
        g.mul_(min(1.0, max_norm / (float(g.norm()) + 1e-6)))
    return torch.sqrt(sum((g ** 2).sum() for g in grads))


def test_clipping_each_tensor_on_its_own_loses_the_part(capsys):
    earned, messages = points("clip_grad_norm", clip_per_tensor)
    assert earned == 0 and all("clipping each tensor on its own does nothing" in m for m in messages)


def uses_torch_by_name(params, max_norm):
    return clip_grad_norm_(params, max_norm)  # imported by name at the top of this module


def test_torch_s_clipping_is_off_limits_even_imported_by_name(capsys):
    earned, messages = points("clip_grad_norm", uses_torch_by_name)
    assert earned == 0 and "torch.nn.utils.clip_grad_norm_ is off limits" in messages[0]
    assert torch.nn.utils.clip_grad_norm_ is clip_grad_norm_  # restored after the call
    assert globals()["clip_grad_norm_"] is torch.nn.utils.clip_grad_norm_
    earned, messages = points("clip_grad_norm", lambda p, m: torch.nn.utils.clip_grad_norm_(p, m))
    assert earned == 0 and "off limits" in messages[0]


def tbptt_without_detach(model, xs, ys, k, optimizer, max_norm, state=None):
    losses = []
    for t in range(0, xs.shape[0], k):
        logits, state = model(xs[t:t + k], state)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), ys[t:t + k].reshape(-1))
        optimizer.zero_grad()
        loss.backward(retain_graph=True)  # "fixes" the error PyTorch raises otherwise
        S.clip_grad_norm(model.parameters(), max_norm)
        optimizer.step()
        losses.append(loss.item())
    return losses, state


def tbptt_without_carry(model, xs, ys, k, optimizer, max_norm, state=None):
    losses = []
    for t in range(0, xs.shape[0], k):
        logits, last = model(xs[t:t + k], state)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), ys[t:t + k].reshape(-1))
        optimizer.zero_grad()
        loss.backward()
        S.clip_grad_norm(model.parameters(), max_norm)
        optimizer.step()
        losses.append(loss.item())
    return losses, detach_state(last)


def test_a_state_not_detached_between_chunks_loses_the_part_with_a_message_naming_it(capsys):
    earned, messages = points("train_tbptt", tbptt_without_detach)
    assert earned == 0 and all("is still attached to the graph of chunk 1: detach it" in m for m in messages)
    source = inspect.getsource(tbptt_without_detach).replace("retain_graph=True", "")
    namespace = {"F": F, "S": S}
    exec(source, namespace)  # without retain_graph PyTorch raises; the message names the mistake all the same
    earned, messages = points("train_tbptt", namespace["tbptt_without_detach"])
    assert earned == 0 and all("detach it" in m and "PyTorch said" in m for m in messages)


def test_a_state_not_carried_is_named(capsys):
    earned, messages = points("train_tbptt", tbptt_without_carry, seeds=[3])
    assert earned == 0 and "the state is not carried" in messages[0]


def test_tbptt_with_a_wrong_clip_is_graded_with_the_grader_s_clip_in_its_place():
    """A per-tensor clip_grad_norm costs Part 1 only: train_tbptt, which calls it, keeps its points."""
    namespace = {"F": F, "clip_grad_norm": clip_per_tensor, "detach_state": detach_state}
    source = inspect.getsource(S.train_tbptt)
    exec(compile(source, "<student>", "exec"), namespace)
    student = namespace["train_tbptt"]
    own = grading_run.RUNS["train_tbptt"](student, grading.CHECKS["train_tbptt"].make_inputs(3))
    assert grading.CHECKS["train_tbptt"].judge(grading.CHECKS["train_tbptt"].make_inputs(3), own)[""]
    verdict = grading.CHECKS["train_tbptt"].grade(student, 3)
    assert verdict.passed and "passes with the grader's clip_grad_norm" in verdict.note
    assert namespace["clip_grad_norm"] is clip_per_tensor  # put back


def test_padding_counted_in_the_loss_loses_the_part_with_a_message_naming_it(capsys):
    def unmasked(logits, targets, lengths):
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))

    earned, messages = points("masked_cross_entropy", unmasked)
    assert earned == 0 and all("the padded steps count in your loss" in m for m in messages)

    def over_all(logits, targets, lengths):
        return S.masked_cross_entropy(logits, targets, lengths) * lengths.sum() / targets.numel()

    earned, messages = points("masked_cross_entropy", over_all)
    assert earned == 0 and "divide by the number of real tokens" in messages[0]


def test_sampling_without_temperature_loses_the_part_with_a_message_naming_it(capsys):
    def ignores_temperature(logits, temperature, generator):
        return S.sample_next(logits, 1.0, generator)

    earned, messages = points("sample_next", ignores_temperature)
    assert earned == 0 and all("the temperature is ignored" in m for m in messages)

    def other_draw(logits, temperature, generator):
        probs, _ = S.sample_next(logits, temperature, generator)
        return probs, probs.argmax(-1)

    earned, messages = points("sample_next", other_draw)
    assert earned < 1 and "the sampled ids differ from torch.multinomial" in messages[0]


def test_the_training_target_is_judged_from_the_weights_on_fresh_text(one_thread):
    check = grading.CHECKS["echo_training"]
    inputs = check.make_inputs(100)
    trained = {"lstm": S.train_echo("lstm", passes=40)[0], "rnn": S.train_echo("rnn", passes=10)[0]}
    assert check.judge(inputs, check.run(lambda: trained, inputs)) == {"lstm": None, "rnn": None}
    untrained = {"lstm": S.CharModel(len(S.ECHO_CHARS), 8, 32, "lstm"), "rnn": trained["rnn"]}
    verdict = check.judge(inputs, check.run(lambda: untrained, inputs))
    assert verdict["rnn"] is None and "the LSTM's validation loss on a fresh text is" in verdict["lstm"]
    swapped = {"lstm": trained["rnn"], "rnn": trained["lstm"]}
    verdict = check.judge(inputs, check.run(lambda: swapped, inputs))
    assert "CharModel(10, E, H, 'lstm')" in verdict["lstm"] and "'rnn'" in verdict["rnn"]


def test_torch_s_clipping_is_off_limits_in_the_training_part_too():
    check = grading.CHECKS["echo_training"]
    model = S.CharModel(len(S.ECHO_CHARS), 2, 2, "lstm")
    model(torch.zeros(3, 1, dtype=torch.int64))[0].sum().backward()

    def train_models():
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        return {"lstm": model, "rnn": model}

    verdict = check.grade(train_models, 0)
    assert "clip_grad_norm_ is off limits" in verdict.message
