"""The attention encoder-decoder: gradcheck of the whole model, torch parity of one decoder step,
padding invariance, and beam search against exhaustive search."""
import itertools

import numpy as np
import pytest

import rnnkit
from rnnkit.apps.seq2seq.decode import beam_search, greedy
from rnnkit.apps.seq2seq.model import BOS, EOS, PAD, ModelConfig, Seq2Seq
from rnnkit.nn import no_grad


def _model(rng, **kw):
    cfg = dict(src_vocab=7, tgt_vocab=6, cell="gru", embed=3, hidden=4, layers=1, bidirectional=True,
               attention="bahdanau", score="general", dtype="float64")
    cfg.update(kw)
    return Seq2Seq(ModelConfig(**cfg), rng)


def _batch(rng, pad_target=True):
    src = rng.integers(4, 7, (3, 5))
    src_len = np.array([5, 3, 1])
    for n, L in enumerate(src_len):
        src[n, L:] = PAD
    tgt_in = rng.integers(1, 6, (3, 4))
    tgt_in[:, 0] = BOS
    if pad_target:  # (gradcheck leaves it out: the <pad> embedding row is a constant by design)
        tgt_in[2, 2:] = PAD
    return src, src_len, tgt_in


@pytest.mark.parametrize("cell,attention,layers,bidirectional", [
    ("gru", "bahdanau", 2, True),
    ("lstm", "luong", 1, True),
    ("gru", "luong", 1, False),
    ("lstm", "none", 2, False),
])
def test_gradcheck_whole_model(cell, attention, layers, bidirectional, rng):
    model = _model(rng, cell=cell, attention=attention, layers=layers, bidirectional=bidirectional)
    errors = rnnkit.gradcheck(model, _batch(rng, pad_target=False))
    names = {name for name, _, _ in model.named_parameters()}
    assert set(errors) == names  # every parameter was checked
    if attention != "none":
        assert any(n.startswith("attention.") for n in names)


def test_gradcheck_luong_dot(rng):
    # dot needs the query (H) and memory (D*H) sizes equal: a unidirectional encoder
    model = _model(rng, attention="luong", score="dot", bidirectional=False)
    rnnkit.gradcheck(model, _batch(rng, pad_target=False))


def test_teacher_forcing_all_true_is_plain_forward(rng):
    model = _model(rng)
    src, src_len, tgt_in = _batch(rng)
    a = model.forward(src, src_len, tgt_in)
    model.clear_caches()
    b = model.forward(src, src_len, tgt_in, feed=np.ones(tgt_in.shape, bool))
    model.clear_caches()
    np.testing.assert_array_equal(a, b)
    # feeding own predictions changes later steps but never step 0
    c = model.forward(src, src_len, tgt_in, feed=np.zeros(tgt_in.shape, bool))
    model.backward(np.ones_like(c))  # runs, and consumes every cache
    np.testing.assert_array_equal(c[:, 0], a[:, 0])
    assert not np.allclose(c[:, 1:], a[:, 1:])


def test_padded_batch_equals_each_sentence_alone(rng):
    model = _model(rng, cell="lstm", attention="bahdanau", layers=2)
    src, src_len, tgt_in = _batch(rng)
    with no_grad():
        together = model.forward(src, src_len, tgt_in)
        for n in range(3):
            alone = model.forward(src[n : n + 1, : src_len[n]], src_len[n : n + 1], tgt_in[n : n + 1])
            np.testing.assert_allclose(together[n], alone[0], rtol=1e-12, atol=1e-13)


def test_one_decoder_step_matches_torch(rng):
    """Attention (Bahdanau) + GRU cell + output layers: values and every gradient vs torch autograd."""
    torch = pytest.importorskip("torch")
    N, S, E, H, V = 3, 5, 3, 4, 6
    model = _model(rng, attention="bahdanau", bidirectional=True)
    M = 2 * H
    for _, p, _ in model.named_parameters():  # random biases too, not torch's defaults
        p[...] = rng.standard_normal(p.shape) * 0.5
    memory = rng.standard_normal((N, S, M))
    mask = np.arange(S)[None, :] < np.array([5, 2, 1])[:, None]
    emb = rng.standard_normal((N, E))
    h_prev = rng.standard_normal((N, H))
    R_logits, R_h = rng.standard_normal((N, V)), rng.standard_normal((N, H))

    # ours: prepare keys, one step, the output layers, then backward through all of it
    keys = model.attention.prepare(memory)
    h, ctx, w, _ = model.step(emb, memory, mask, keys, [h_prev])
    logits = model.head(h, ctx)
    dh, dctx = model._head_backward(R_logits)
    dx, dh_prev = model.cells[0].backward(dh + R_h)
    dq, dmem, dkeys = model.attention.step_backward(dctx + dx[:, E:])
    dmem = dmem + model.attention.prepare_backward(dkeys)
    dh_prev = dh_prev + dq
    demb = dx[:, :E]

    # torch: the same computation written with autograd
    T = {name: torch.tensor(p, requires_grad=True) for name, p, _ in model.named_parameters()}
    tm = torch.tensor(memory, requires_grad=True)
    te = torch.tensor(emb, requires_grad=True)
    th = torch.tensor(h_prev, requires_grad=True)
    a = T["attention.key.weight"]
    pre = tm @ a.T + (th @ T["attention.query.weight"].T + T["attention.query.bias"])[:, None, :]
    scores = torch.tanh(pre) @ T["attention.v"]
    scores = scores.masked_fill(~torch.tensor(mask), float("-inf"))
    tw = torch.softmax(scores, dim=1)
    tctx = torch.bmm(tw[:, None, :], tm)[:, 0]
    cell = torch.nn.GRUCell(E + M, H, dtype=torch.float64)
    with torch.no_grad():
        for k in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            getattr(cell, k).copy_(T[f"cells.0.{k}"])
    th_new = cell(torch.cat([te, tctx], 1), th)
    o = torch.tanh(torch.cat([th_new, tctx], 1) @ T["combine.weight"].T + T["combine.bias"])
    tlogits = o @ T["out.weight"].T + T["out.bias"]
    loss = (tlogits * torch.tensor(R_logits)).sum() + (th_new * torch.tensor(R_h)).sum()
    loss.backward()

    np.testing.assert_allclose(w, tw.detach().numpy(), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(h, th_new.detach().numpy(), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(logits, tlogits.detach().numpy(), rtol=1e-12, atol=1e-13)
    for ours, theirs in ((dmem, tm), (demb, te), (dh_prev, th)):
        np.testing.assert_allclose(ours, theirs.grad.numpy(), rtol=1e-10, atol=1e-12)
    grads = {name: g for name, _, g in model.named_parameters()}
    torch_grads = {**{k: t.grad for k, t in T.items() if t.grad is not None},
                   **{f"cells.0.{k}": getattr(cell, k).grad for k in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")}}
    checked = 0
    for name, g in torch_grads.items():
        if name.startswith(("attention.", "cells.", "combine.", "out.")):
            np.testing.assert_allclose(grads[name], g.numpy(), rtol=1e-10, atol=1e-12, err_msg=name)
            checked += 1
    assert checked == 12


def _all_outputs(model, src, src_len, max_len, alpha):
    """Exhaustive search: the normalised score of every output of at most max_len tokens."""
    V = model.cfg.tgt_vocab
    best = {}
    with no_grad():
        for L in range(1, max_len + 1):
            for body in itertools.product(range(3, V), repeat=L - 1):
                seq = list(body) + [EOS]
                tgt_in = np.array([[BOS] + seq[:-1]])
                logp = rnnkit.nn.log_softmax(model.forward(src, src_len, tgt_in)[0].astype(np.float64))
                total = sum(logp[t, s] for t, s in enumerate(seq))
                best[tuple(seq)] = total / L ** alpha
    return best


@pytest.mark.parametrize("alpha", [0.0, 1.0])
def test_beam_search_finds_the_exhaustive_optimum(alpha, rng):
    model = _model(rng, tgt_vocab=6, hidden=5)
    for _, p, _ in model.named_parameters():
        p *= 3  # sharper distributions make the search non-trivial
    model.eval()
    src, src_len = np.array([[4, 5, 6]]), np.array([3])
    max_len = 4
    scores = _all_outputs(model, src, src_len, max_len, alpha)
    want = max(scores, key=scores.get)
    V = model.cfg.tgt_vocab
    ids, _, got_score = beam_search(model, src, src_len, max_len, beam=V ** max_len, alpha=alpha)
    got = tuple(int(i) for i in ids[0] if i != PAD)
    got = got[: got.index(EOS) + 1] if EOS in got else got
    assert got == want
    np.testing.assert_allclose(got_score[0], scores[want], rtol=1e-10)


def test_beam_one_is_greedy_and_wider_beams_score_no_worse(rng):
    model = _model(rng, tgt_vocab=6, hidden=5, attention="luong")
    for _, p, _ in model.named_parameters():
        p *= 2
    model.eval()
    src, src_len, _ = _batch(rng)
    g, att = greedy(model, src, src_len, 6)
    b, att_b, _ = beam_search(model, src, src_len, 6, beam=1)
    np.testing.assert_array_equal(g, b)
    np.testing.assert_allclose(att.sum(axis=2), 1.0, rtol=1e-12)
    assert np.all(att[1, :, 3:] == 0) and np.all(att[2, :, 1:] == 0)  # padded source positions

    def score(ids, n):
        seq = [int(i) for i in ids if i != PAD]
        seq = seq[: seq.index(EOS) + 1] if EOS in seq else seq
        with no_grad():
            logp = rnnkit.nn.log_softmax(model.forward(src[n : n + 1], src_len[n : n + 1],
                                                       np.array([[BOS] + seq[:-1]]))[0])
        return sum(logp[t, s] for t, s in enumerate(seq)), seq

    for n in range(3):
        wide, _, _ = beam_search(model, src[n : n + 1], src_len[n : n + 1], 6, beam=4, alpha=0.0)
        s_wide, seq = score(wide[0], 0 if False else n)
        s_greedy, gseq = score(g[n], n)
        if EOS in seq and EOS in gseq:  # both finished: the wider beam's raw sum is at least greedy's
            assert s_wide >= s_greedy - 1e-9
