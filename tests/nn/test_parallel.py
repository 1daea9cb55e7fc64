"""``rnnkit.nn._parallel``: a bidirectional layer's two directions on two threads.

Side by side or one after the other, every output, state and gradient is the same (the gradient
probe included); inside, the BLAS runs at one thread and gets its thread count back after, also
when a direction fails.
"""
import numpy as np
import pytest

from rnnkit.nn import GRU, LSTM, RNN, _parallel, no_grad, record_gradients

threadpoolctl = pytest.importorskip("threadpoolctl")


def blas_threads() -> int:
    return max(lc.get_num_threads() for lc in _parallel._numpy_blas())


@pytest.fixture
def two_threads(monkeypatch):
    """Side by side even for tiny layers, with two BLAS threads to hand out."""
    if not _parallel._numpy_blas():
        pytest.skip("threadpoolctl finds no BLAS to control")
    monkeypatch.setattr(_parallel, "MIN_FLOPS", 0)
    with threadpoolctl.threadpool_limits(2, user_api="blas"):
        yield monkeypatch


def _run(kind, threads, monkeypatch, **kw):
    monkeypatch.setenv("RNNKIT_THREADS", str(threads))
    rng = np.random.default_rng(0)
    cls = {"rnn": RNN, "lstm": LSTM, "gru": GRU}[kind]
    m = cls(4, 6, num_layers=2, bidirectional=True, dtype=np.float64, rng=rng, **kw)
    for p in m.params.values():
        p[...] = rng.standard_normal(p.shape) * 0.5
    x = rng.standard_normal((5, 7, 4))
    lengths = np.array([7, 3, 6, 1, 5])
    P = kw.get("proj_size") or 6
    h0 = rng.standard_normal((4, 5, P))
    state = (h0, rng.standard_normal((4, 5, 6))) if kind == "lstm" else h0
    dy = rng.standard_normal((5, 7, 2 * P))
    with record_gradients() as probe:
        y, final = m(x, state, lengths)
        dx, dstate = m.backward(dy)
    with no_grad():
        yi, _ = m(x, state, lengths)
    flows = [(k, d.dh, d.dc) for k, d in probe.records[0].directions.items()]
    pair = (lambda s: s) if kind == "lstm" else (lambda s: (s,))  # noqa: E731
    return [y, *pair(final), dx, *pair(dstate), yi, *m.grads.values()], flows


@pytest.mark.parametrize("kind,kw", [("rnn", {}), ("lstm", {}), ("lstm", {"proj_size": 3}),
                                     ("gru", {}), ("gru", {"reset_after": False})])
def test_side_by_side_gives_the_same_numbers(kind, kw, two_threads):
    calls = []
    run = _parallel.side_by_side
    two_threads.setattr(_parallel, "side_by_side",
                        lambda fns, flops: calls.append(_parallel.threads()) or run(fns, flops))
    seq, seq_flow = _run(kind, 1, two_threads, **kw)
    par, par_flow = _run(kind, 2, two_threads, **kw)
    assert 1 in calls and 2 in calls  # both ways were taken
    for a, b in zip(seq, par):
        np.testing.assert_array_equal(a, b)
    assert [k for k, _, _ in seq_flow] == [k for k, _, _ in par_flow] == \
        ["l0", "l0_reverse", "l1", "l1_reverse"]
    for (_, dh_a, dc_a), (_, dh_b, dc_b) in zip(seq_flow, par_flow):
        np.testing.assert_array_equal(dh_a, dh_b)
        if dc_a is not None:
            np.testing.assert_array_equal(dc_a, dc_b)


def test_blas_held_at_one_thread_inside_and_restored_after_an_error(two_threads):
    two_threads.setenv("RNNKIT_THREADS", "2")
    seen = []

    def ok():
        seen.append(blas_threads())
        return "ok"

    def fail():
        seen.append(blas_threads())
        raise ValueError("direction failed")

    assert _parallel.side_by_side([ok, ok], 1.0) == ["ok", "ok"]
    with pytest.raises(ValueError, match="direction failed"):
        _parallel.side_by_side([ok, fail], 1.0)
    with pytest.raises(ValueError, match="direction failed"):
        _parallel.side_by_side([fail, ok], 1.0)
    assert seen == [1] * 6  # both ran every time, each with the BLAS at one thread
    assert blas_threads() == 2


def test_bad_thread_setting_is_one_clear_error(monkeypatch):
    monkeypatch.setenv("RNNKIT_THREADS", "two")
    with pytest.raises(ValueError, match="RNNKIT_THREADS must be a whole number >= 1"):
        _parallel.threads()


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="needs os.fork")
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_a_forked_child_runs_directions_side_by_side(two_threads):
    """After the parent has used the pool, a forked child must not wait on the parent's threads."""
    import os
    two_threads.setenv("RNNKIT_THREADS", "2")
    assert _parallel.side_by_side([lambda: 1, lambda: 2], 1.0) == [1, 2]  # the pool exists now
    pid = os.fork()
    if pid == 0:  # the child: exit 0 only if both ran; killed by the alarm if it hangs
        import signal
        signal.alarm(20)
        try:
            os._exit(0 if _parallel.side_by_side([lambda: 1, lambda: 2], 1.0) == [1, 2] else 1)
        except BaseException:
            os._exit(2)
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
