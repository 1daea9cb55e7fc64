"""``rnnkit.nn._workspace``: the reused cache buffers of the training driver.

The pool lends each buffer to one user at a time: arrays given back are reused, anything else is
ignored, and a training step's numbers do not depend on what the buffers held before.
"""
import gc

import numpy as np
import pytest

from rnnkit.nn import GRU, LSTM, RNN, _workspace


@pytest.fixture(autouse=True)
def empty_pool():
    _workspace.clear()
    yield
    _workspace.clear()


def test_take_give_reuses_memory_and_fits_varying_lengths():
    a = _workspace.take((3, 4, 5), np.float32)
    assert a.shape == (3, 4, 5) and a.dtype == np.float32 and a.flags.c_contiguous
    base = a.base
    _workspace.give(a)
    b = _workspace.take((2, 4, 5), np.float32)  # smaller, within 2x: the same buffer
    assert b.base is base
    c = _workspace.take((2, 4, 5), np.float32)  # b is lent: a new buffer
    assert not np.shares_memory(b, c)
    d = _workspace.take((2, 4, 5), np.float64)  # another dtype never shares
    assert d.base is not base


def test_give_ignores_foreign_arrays_and_second_gives():
    a = _workspace.take((10,), np.float64)
    _workspace.give(np.empty(10), None, a[:5], a, a)  # a foreign array, a view, a twice
    assert _workspace.kept_bytes() == 80
    b, c = _workspace.take((10,), np.float64), _workspace.take((10,), np.float64)
    assert not np.shares_memory(b, c)  # a was kept once, so only one of them reuses it


def test_a_collected_view_is_forgotten_and_the_pool_is_bounded(monkeypatch):
    a = _workspace.take((100,), np.float32)
    del a
    gc.collect()
    assert not _workspace._lent
    monkeypatch.setattr(_workspace, "MAX_BYTES", 1000)
    xs = [_workspace.take((100,), np.float32) for _ in range(5)]  # 400 bytes each
    _workspace.give(*xs)
    assert _workspace.kept_bytes() == 800


@pytest.mark.parametrize("cls", [RNN, LSTM, GRU])
def test_nested_calls_and_reuse_give_the_same_numbers(cls):
    """Two forwards before their backwards (a decoder's pattern) while the pool recycles buffers:
    every gradient equals the one of a fresh layer running each call alone."""
    rng = np.random.default_rng(0)
    m = cls(3, 5, num_layers=2, bidirectional=True, dtype=np.float64, rng=rng)
    x1, x2 = rng.standard_normal((4, 6, 3)), rng.standard_normal((4, 6, 3))
    dy1, dy2 = rng.standard_normal((4, 6, 10)), rng.standard_normal((4, 6, 10))
    lengths = np.array([6, 3, 5, 1])

    def alone(x, dy):
        fresh = cls(3, 5, num_layers=2, bidirectional=True, dtype=np.float64)
        fresh.load_state_dict(m.state_dict())
        y, _ = fresh(x, lengths=lengths)
        dx, _ = fresh.backward(dy)
        return y, dx, {k: g.copy() for k, g in fresh.grads.items()}

    for _ in range(2):  # the second round runs on recycled buffers
        y1, _ = m(x1, lengths=lengths)
        y2, _ = m(x2, lengths=lengths)
        dx2, _ = m.backward(dy2)
        g2 = {k: g.copy() for k, g in m.grads.items()}
        for g in m.grads.values():  # not zero_grad(): that drops the first call's cache
            g.fill(0)
        dx1, _ = m.backward(dy1)
        g1 = {k: g.copy() for k, g in m.grads.items()}
        m.zero_grad()
        for y, dx, g, (ry, rdx, rg) in ((y1, dx1, g1, alone(x1, dy1)), (y2, dx2, g2, alone(x2, dy2))):
            np.testing.assert_array_equal(y, ry)
            np.testing.assert_array_equal(dx, rdx)
            for k in g:
                np.testing.assert_array_equal(g[k], rg[k])
