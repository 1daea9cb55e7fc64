"""``rnnkit.nn.frozen()``: inference with the per-call weight copies made once per scope.

The same numbers as ``no_grad()`` (bit for bit), the copies made once per layer and direction,
parameters read-only inside and writeable again after, a rebound parameter seen, and a persistent
scope that holds no ``no_grad`` between its entries.
"""
import numpy as np
import pytest

from rnnkit.nn import GRU, LSTM, RNN, frozen, grad_enabled, no_grad, recurrent


def _layer(kind, rng, **kw):
    cls = {"rnn": RNN, "lstm": LSTM, "gru": GRU}[kind]
    m = cls(5, 7, num_layers=2, bidirectional=True, dtype=np.float64, rng=rng, **kw)
    for p in m.params.values():  # every parameter random, biases included
        p[...] = rng.standard_normal(p.shape) * 0.5
    return m


def _state(m, kind, N, rng):
    P = m.proj_size or m.hidden_size
    h = rng.standard_normal((4, N, P))
    return (h, rng.standard_normal((4, N, m.hidden_size))) if kind == "lstm" else h


CASES = [("rnn", {}), ("rnn", {"nonlinearity": "relu"}), ("lstm", {}), ("lstm", {"proj_size": 3}),
         ("gru", {}), ("gru", {"reset_after": False})]


@pytest.mark.parametrize("kind,kw", CASES)
def test_same_numbers_as_no_grad(kind, kw):
    rng = np.random.default_rng(0)
    m = _layer(kind, rng, **kw)
    x = rng.standard_normal((4, 6, 5))
    lengths = np.array([6, 2, 5, 3])
    state = _state(m, kind, 4, rng)
    with no_grad():
        y0, s0 = m(x, state, lengths)
    with frozen():
        for _ in range(3):  # the second and third calls run on the cached copies
            y1, s1 = m(x, state, lengths)
            np.testing.assert_array_equal(y1, y0)
            for a, b in zip(s1 if kind == "lstm" else (s1,), s0 if kind == "lstm" else (s0,)):
                np.testing.assert_array_equal(a, b)


def test_copies_made_once_per_layer_and_direction(monkeypatch):
    calls = []
    make = recurrent._make_weights
    monkeypatch.setattr(recurrent, "_make_weights", lambda *a: calls.append(a[2]) or make(*a))
    rng = np.random.default_rng(1)
    m = _layer("lstm", rng)
    x = rng.standard_normal((3, 4, 5))
    with no_grad():
        m(x)
        m(x)
    assert len(calls) == 8  # 2 layers x 2 directions, each call
    calls.clear()
    with frozen():
        for _ in range(5):
            m(x)
    assert sorted(calls) == ["_l0", "_l0_reverse", "_l1", "_l1_reverse"]


def test_parameters_read_only_inside_and_writeable_after():
    rng = np.random.default_rng(2)
    m = _layer("gru", rng)
    x = rng.standard_normal((2, 3, 5))
    w = m.params["weight_hh_l1_reverse"]
    with frozen():
        m(x)
        with pytest.raises(ValueError, match="read-only"):
            w += 1.0  # what an optimizer step would do
    w += 1.0
    with pytest.raises(RuntimeError):
        with frozen():
            m(x)
            raise RuntimeError("boom")
    assert all(p.flags.writeable for p in m.params.values())  # restored on the error path too


def test_a_rebound_parameter_is_seen():
    rng = np.random.default_rng(3)
    m = _layer("rnn", rng)
    x = rng.standard_normal((2, 3, 5))
    new = rng.standard_normal(m.params["weight_hh_l0"].shape)
    with frozen():
        m(x)
        m.params["weight_hh_l0"] = new  # a new array: a new key, a new copy
        y1, _ = m(x)
    with no_grad():
        y0, _ = m(x)
    np.testing.assert_array_equal(y1, y0)


def test_no_grad_inside_and_persistent_scope():
    rng = np.random.default_rng(4)
    m = _layer("lstm", rng)
    x = rng.standard_normal((2, 3, 5))
    scope = frozen(persist=True)
    with scope:
        assert not grad_enabled()
        m(x)
    assert grad_enabled()  # between entries gradients are on, and the copies stay cached
    assert not m.params["weight_ih_l0"].flags.writeable
    with scope:
        y1, _ = m(x)
    scope.release()
    assert all(p.flags.writeable for p in m.params.values())
    with pytest.raises(RuntimeError, match="without a matching forward"):
        m.backward(np.ones_like(y1))  # nothing was cached for backward inside the scope
    y, _ = m(x)  # training after release works as usual
    m.backward(np.ones_like(y))


def test_nested_scopes_release_their_own():
    rng = np.random.default_rng(5)
    a, b = _layer("rnn", rng), _layer("gru", rng)
    x = rng.standard_normal((2, 3, 5))
    with frozen():
        a(x)
        with frozen():
            b(x)
            a(x)  # already read-only by the outer scope: the inner one leaves it to the outer
        assert all(p.flags.writeable for p in b.params.values())
        assert not any(p.flags.writeable for p in a.params.values())
    assert all(p.flags.writeable for p in a.params.values())
