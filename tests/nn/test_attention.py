"""Attention: gradcheck of every score, masks give exactly zero weight, values against the formulas."""
import numpy as np
import pytest

import rnnkit
from rnnkit.nn.attention import Attention, lengths_mask, masked_softmax

SCORES = ["bahdanau", "dot", "general"]


def _inputs(rng, N=3, S=5, Q=4, M=4):
    q = rng.standard_normal((N, Q))
    m = rng.standard_normal((N, S, M))
    mask = lengths_mask(np.array([S, 3, 1]), S)
    return q, m, mask


@pytest.mark.parametrize("score", SCORES)
def test_gradcheck_with_mask(score, rng):
    att = Attention(4, 4, 6, score=score, dtype=np.float64, rng=rng)
    q, m, mask = _inputs(rng)
    errors = rnnkit.gradcheck(att, (q, m), {"mask": mask})
    expected = {"bahdanau": {"query.weight", "query.bias", "key.weight", "v"},
                "general": {"key.weight"}, "dot": set()}[score]
    assert set(errors) == {"input0", "input1"} | expected


@pytest.mark.parametrize("score", SCORES)
def test_values_match_the_formulas(score, rng):
    att = Attention(4, 4, 6, score=score, dtype=np.float64, rng=rng)
    q, m, mask = _inputs(rng)
    ctx, w = att.forward(q, m, mask)
    p = {name: v for name, v, _ in att.named_parameters()}
    for n in range(q.shape[0]):
        L = int(mask[n].sum())
        if score == "bahdanau":
            s = np.array([p["v"] @ np.tanh(p["query.weight"] @ q[n] + p["query.bias"] + p["key.weight"] @ m[n, j])
                          for j in range(L)])
        elif score == "dot":
            s = m[n, :L] @ q[n]
        else:
            s = np.array([q[n] @ (p["key.weight"] @ m[n, j]) for j in range(L)])
        a = np.exp(s - s.max()) / np.exp(s - s.max()).sum()
        np.testing.assert_allclose(w[n, :L], a, rtol=1e-12, atol=0)
        np.testing.assert_allclose(ctx[n], a @ m[n, :L], rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("score", SCORES)
def test_padding_gets_exactly_zero_weight_and_gradient(score, rng):
    att = Attention(4, 4, 6, score=score, dtype=np.float64, rng=rng)
    q, m, mask = _inputs(rng)
    ctx, w = att.forward(q, m, mask)
    assert np.all(w[~mask] == 0.0)
    np.testing.assert_allclose(w.sum(axis=1), 1.0, rtol=1e-14)
    dq, dm = att.backward(np.ones_like(ctx), np.ones_like(w))
    assert np.all(dm[~mask] == 0.0)
    m2 = m.copy()
    m2[~mask] = 1e6  # garbage (even huge) in the padding cannot reach the output
    ctx2, w2 = att.forward(q, m2, mask)
    att.clear_caches()
    np.testing.assert_array_equal(ctx2, ctx)
    np.testing.assert_array_equal(w2, w)


def test_float32_stays_float32(rng):
    att = Attention(4, 8, score="bahdanau", dtype=np.float32, rng=rng)
    q = rng.standard_normal((2, 4)).astype(np.float32)
    m = rng.standard_normal((2, 3, 8)).astype(np.float32)
    ctx, w = att.forward(q, m, np.ones((2, 3), bool))
    assert ctx.dtype == w.dtype == np.float32
    dq, dm = att.backward(np.ones_like(ctx))
    assert dq.dtype == dm.dtype == np.float32


def test_bad_input(rng):
    with pytest.raises(ValueError, match="dot attention needs"):
        Attention(4, 6, score="dot")
    with pytest.raises(ValueError, match="score must be one of"):
        Attention(4, 4, score="concat")
    att = Attention(4, 4, score="general", dtype=np.float64, rng=rng)
    q, m, mask = _inputs(rng)
    mask[1] = False
    with pytest.raises(ValueError, match="at least one valid position"):
        att.forward(q, m, mask)
    with pytest.raises(ValueError, match="memory must have shape"):
        att.forward(q, m[..., :3])
    with pytest.raises(ValueError, match="dtype"):
        att.forward(q.astype(np.float32), m)


def test_masked_softmax_extremes():
    s = np.array([[1000.0, -1000.0, 5.0], [3.0, 2.0, 1.0]])
    w = masked_softmax(s, np.array([[False, True, True], [True, True, True]]))
    assert w[0, 0] == 0.0
    np.testing.assert_allclose(w[0], [0.0, 0.0, 1.0])
    np.testing.assert_allclose(w[1], np.exp([3.0, 2.0, 1.0]) / np.exp([3.0, 2.0, 1.0]).sum())
