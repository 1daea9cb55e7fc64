"""The optional compiled kernels (numba, rnnkit/nn/_accel.py) against the NumPy reference.

The kernels do the reference's arithmetic in the same order, so the two paths must agree to the
last bit: every test runs the same computation with the kernels on and off and compares exactly.
"""
import numpy as np
import pytest

import rnnkit
from rnnkit.nn import _accel, cells
from reference import make_layer

pytest.importorskip("numba")


@pytest.fixture
def both_paths():
    """Run a callable with the kernels off (reference) and on; restore the setting afterwards."""
    was = _accel._enabled

    def run(fn):
        out = []
        for flag in (False, True):
            _accel.set_enabled(flag)
            assert _accel.enabled() is flag
            out.append(fn())
        return out

    yield run
    _accel.set_enabled(was)


def assert_same(ref, fast, what=""):
    if isinstance(ref, (tuple, list)):
        assert len(ref) == len(fast)
        for k, (a, b) in enumerate(zip(ref, fast)):
            assert_same(a, b, f"{what}[{k}]")
        return
    if isinstance(ref, dict):
        assert ref.keys() == fast.keys()
        for k in ref:
            assert_same(ref[k], fast[k], f"{what}[{k}]")
        return
    assert ref.dtype == fast.dtype and ref.shape == fast.shape, what
    np.testing.assert_array_equal(fast, ref, err_msg=what)


CASES = [  # kind, options, num_layers, bidirectional, lengths
    ("lstm", {}, 1, False, False),
    ("lstm", {}, 2, True, True),
    ("lstm", {"proj_size": 3}, 2, True, True),
    ("gru", {}, 2, True, True),
    ("gru", {"reset_after": False}, 1, True, True),
    ("rnn", {}, 2, True, True),
    ("rnn", {"nonlinearity": "relu"}, 1, False, True),
]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("kind, options, L, bi, var", CASES)
def test_layer_forward_backward_identical_with_and_without_kernels(both_paths, kind, options, L,
                                                                     bi, var, dtype):
    rng = np.random.default_rng(0)
    layer = make_layer(kind, 3, 5, L, bi, dtype, rng, **options)
    N, T = 4, 6
    x = rng.standard_normal((N, T, 3)).astype(dtype)
    lengths = np.array([6, 2, 0, 5]) if var else None
    P = options.get("proj_size") or 5
    LD = L * (2 if bi else 1)
    h0 = rng.standard_normal((LD, N, P)).astype(dtype)
    state = (h0, rng.standard_normal((LD, N, 5)).astype(dtype)) if kind == "lstm" else h0
    dy = rng.standard_normal((N, T, (2 if bi else 1) * P)).astype(dtype)
    dstate = tuple(s * 0.5 for s in state) if kind == "lstm" else state * 0.5

    def run():
        layer.zero_grad()
        y, final = layer.forward(x, state, lengths=lengths)
        dx, dstate0 = layer.backward(dy, dstate)
        with rnnkit.no_grad():
            y_infer, final_infer = layer.forward(x, state, lengths=lengths)
        grads = {k: g.copy() for k, g in layer.grads.items()}
        return y, final, dx, dstate0, grads, y_infer, final_infer

    ref, fast = both_paths(run)
    assert_same(ref, fast)
    # inference runs in another layout (other GEMM blocking): equal to rounding
    tol = 1e-12 if dtype == np.float64 else 1e-5
    np.testing.assert_allclose(ref[5], ref[0], rtol=tol, atol=tol)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("make", [
    lambda dtype, rng: rnnkit.RNNCell(4, 6, nonlinearity="relu", dtype=dtype, rng=rng),
    lambda dtype, rng: rnnkit.LSTMCell(4, 6, dtype=dtype, rng=rng),
    lambda dtype, rng: rnnkit.GRUCell(4, 6, dtype=dtype, rng=rng),
    lambda dtype, rng: rnnkit.GRUCell(4, 6, reset_after=False, dtype=dtype, rng=rng),
], ids=["rnn-relu", "lstm", "gru", "gru-reset-before"])
def test_cells_identical_with_and_without_kernels(both_paths, make, dtype):
    rng = np.random.default_rng(1)
    cell = make(dtype, rng)
    x, h, c, dh, dc = (rng.standard_normal((3, k)).astype(dtype) for k in (4, 6, 6, 6, 6))
    lstm = isinstance(cell, rnnkit.LSTMCell)

    def run():
        cell.zero_grad()
        out = cell.forward(x, (h, c) if lstm else h)
        back = cell.backward(dh, dc) if lstm else cell.backward(dh)
        return out, back, {k: g.copy() for k, g in cell.grads.items()}

    ref, fast = both_paths(run)
    assert_same(ref, fast)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_pointwise_kernels_equal_reference_including_aliased_dc(dtype):
    k = _accel._build(__import__("numba"), np.dtype(dtype).type)
    rng = np.random.default_rng(2)
    N, H = 5, 7
    r = lambda *s: rng.uniform(-1, 1, s).astype(dtype)  # noqa: E731
    pre, c_prev, dm, dc, tc = r(N, 4 * H), r(N, H), r(N, H), r(N, H), r(N, H)
    gates = []
    for f in (cells.lstm_pointwise, k.lstm_pointwise):
        g, c, t, m = pre.copy(), *(np.empty((N, H), dtype) for _ in range(3))
        f(g, c_prev, c, t, m)
        gates.append((g, c, t, m))
    assert_same(gates[0], gates[1], "lstm_pointwise")
    g = gates[0][0]
    outs = []
    for f in (cells.lstm_pointwise_backward, k.lstm_pointwise_backward):
        dg, d = np.empty((N, 4 * H), dtype), dc.copy()
        f(dm, d, g, c_prev, tc, dg, d, np.empty((N, 4 * H), dtype))  # dc_out aliases dc
        outs.append((dg, d))
    assert_same(outs[0], outs[1], "lstm_pointwise_backward")
    for reset_after in (True, False):
        gru = []
        for f in (cells.gru_pointwise_backward, k.gru_pointwise_backward):
            dgi, dgh, dhz = np.zeros((N, 3 * H), dtype), np.zeros((N, 3 * H), dtype), np.empty((N, H), dtype)
            f(dm, c_prev, np.abs(pre[:, : 3 * H]), tc, dgi, dgh, dhz, reset_after)
            gru.append((dgi, dgh, dhz) if reset_after else (dgi[:, H:], dhz))
        assert_same(gru[0], gru[1], f"gru_pointwise_backward reset_after={reset_after}")
    for act in ("tanh", "relu"):
        rnn = []
        for f in (cells.rnn_pointwise_backward, k.rnn_pointwise_backward):
            rnn.append(f(dm, tc, act, np.empty((N, H), dtype)))
        assert_same(rnn[0], rnn[1], f"rnn_pointwise_backward {act}")


def test_switch_off():
    was = _accel._enabled
    try:
        _accel.set_enabled(False)
        assert _accel.kernels(np.float32) is None and not _accel.enabled()
        _accel.set_enabled(True)
        assert _accel.kernels(np.float64) is not None
    finally:
        _accel.set_enabled(was)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("n", [6, 4])  # the whole batch, and its first columns (a strided view)
def test_hidden_major_kernels_equal_reference(dtype, n):
    k = _accel._build(__import__("numba"), np.dtype(dtype).type)
    rng = np.random.default_rng(3)
    H, N = 5, 6
    r = lambda *s: rng.uniform(-1, 1, s).astype(dtype)  # noqa: E731
    pre, c_prev = r(4 * H, N), r(H, N)
    outs = []
    for f in (cells.lstm_pointwise_hm, k.lstm_pointwise_hm):
        g, c, t, m = pre.copy(), np.zeros((H, N), dtype), np.zeros((H, N), dtype), np.zeros((H, N), dtype)
        f(g[:, :n], c_prev[:, :n], c[:, :n], t[:, :n], m[:, :n])
        outs.append((g, c, t, m))
    assert_same(outs[0], outs[1], "lstm_pointwise_hm")
    gi, gh, h_prev = r(3 * H, N), r(3 * H, N), r(H, N)
    outs = []
    for f in (cells.gru_pointwise_hm, k.gru_pointwise_hm):
        a, b, h = gi.copy(), gh.copy(), np.zeros((H, N), dtype)
        f(a[:, :n], b[:, :n], h_prev[:, :n], h[:, :n])
        outs.append((a, b, h))
    assert_same(outs[0], outs[1], "gru_pointwise_hm")
    np.testing.assert_array_equal(outs[0][1], gh)  # gh is left as it was: backward reads gh_n
    # batch-major: the training driver's and GRUCell's layout, on the first n rows
    bm = []
    for f in (cells.gru_pointwise, k.gru_pointwise):
        a, b, h = gi.T.copy(), gh.T.copy(), np.zeros((N, H), dtype)
        f(a[:n], b[:n], h_prev.T[:n], h[:n])
        bm.append((a, h))
    assert_same(bm[0], bm[1], "gru_pointwise")
    assert_same(bm[0], tuple(o.T for o in (outs[0][0], outs[0][2])), "gru_pointwise vs _hm")
    # and the arithmetic itself, written out once more from the GRU equations
    s = 1 / (1 + np.exp(-2 * (gi[: 2 * H] + gh[: 2 * H])))  # the r, z rows hold a / 2
    nn = np.tanh(gi[2 * H :] + s[:H] * gh[2 * H :])
    np.testing.assert_allclose(outs[0][2][:, :n], ((h_prev - nn) * s[H:] + nn)[:, :n],
                               rtol=1e-5 if dtype == np.float32 else 1e-12, atol=1e-6)
    lstm_in, hw, b1, b2 = r(2, 4 * H), r(2, 4 * H), r(4 * H), r(4 * H)
    scale = cells.gate_scale("lstm", H, dtype)
    got = [f(lstm_in.copy(), hw, b1, b2, scale) for f in (cells.lstm_preactivation,
                                                          k.lstm_preactivation)]
    assert_same(got[0], got[1], "lstm_preactivation")
    np.testing.assert_allclose(got[0], (lstm_in + hw + b1 + b2) * scale, rtol=1e-6)


def test_prepare_stacked_is_the_halved_pre_activation():
    rng = np.random.default_rng(4)
    H, I, N = 3, 2, 4
    w_ih, w_hh = rng.standard_normal((4 * H, I)), rng.standard_normal((4 * H, H))
    b = rng.standard_normal(4 * H)
    x, h = rng.standard_normal((I, N)), rng.standard_normal((H, N))
    stacked = cells.prepare_stacked("lstm", w_ih, b, w_hh)
    a = w_ih @ x + b[:, None] + w_hh @ h
    half = np.r_[np.full(2 * H, 0.5), np.ones(H), np.full(H, 0.5)][:, None]  # i, f, g, o
    np.testing.assert_allclose(stacked @ np.vstack([x, np.ones((1, N)), h]), a * half, rtol=1e-12)
