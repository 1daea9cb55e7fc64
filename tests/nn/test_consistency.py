"""Self-consistency: a padded batch equals each sequence alone; a layer equals a loop of its cell;
caches are consumed last-in first-out; float32 stays float32."""
import numpy as np
import pytest

import rnnkit
from reference import flat_arrays, make_layer

CELLS = {"rnn": rnnkit.RNNCell, "lstm": rnnkit.LSTMCell, "gru": rnnkit.GRUCell}


@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
def test_padded_batch_equals_each_sequence_alone(kind):
    rng = np.random.default_rng(0)
    layer = make_layer(kind, 3, 5, 2, True, np.float64, rng)
    lengths = np.array([6, 2, 0, 4])
    x = rng.standard_normal((4, 6, 3))
    x[np.arange(6)[None, :] >= lengths[:, None]] = 1e3  # garbage in the padding must not leak
    y, final = layer.forward(x, lengths=lengths)
    dy = rng.standard_normal(y.shape)
    dx, _ = layer.backward(dy)
    batch_grads = {k: g.copy() for k, g in layer.grads.items()}
    layer.zero_grad()
    h_n = final[0] if kind == "lstm" else final
    for n, L in enumerate(lengths):
        assert not y[n, L:].any() and not dx[n, L:].any()  # exactly 0 at padded steps
        if L == 0:
            assert not h_n[:, n].any()  # nothing ran: the (zero) initial state comes back
            continue
        yn, fn = layer.forward(x[n : n + 1, :L])
        np.testing.assert_allclose(y[n : n + 1, :L], yn, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(h_n[:, n : n + 1], fn[0] if kind == "lstm" else fn, rtol=1e-12, atol=1e-14)
        dxn, _ = layer.backward(dy[n : n + 1, :L])
        np.testing.assert_allclose(dx[n : n + 1, :L], dxn, rtol=1e-12, atol=1e-14)
    for k, g in layer.grads.items():  # summed over the sequences alone = the batch's gradient
        np.testing.assert_allclose(g, batch_grads[k], rtol=1e-10, atol=1e-12, err_msg=k)


CELL_CASES = [("rnn", {}), ("rnn", {"nonlinearity": "relu"}), ("lstm", {}), ("gru", {}),
              ("gru", {"reset_after": False})]


@pytest.mark.parametrize("kind,options", CELL_CASES, ids=[f"{k}-{o}" for k, o in CELL_CASES])
def test_layer_equals_manual_loop_of_its_cell(kind, options):
    """The training driver, the inference driver and the cell called once per step agree."""
    rng = np.random.default_rng(1)
    layer = make_layer(kind, 4, 6, 1, False, np.float64, rng, **options)
    cell = CELLS[kind](4, 6, dtype=np.float64, rng=rng, **options)
    cell.load_state_dict({k[: -len("_l0")]: v for k, v in layer.state_dict().items()})
    x = rng.standard_normal((3, 5, 4))
    h = rng.standard_normal((1, 3, 6))
    c = rng.standard_normal((1, 3, 6))
    state = (h, c) if kind == "lstm" else h
    y, final = layer.forward(x, state)
    with rnnkit.no_grad():
        y_infer, final_infer = layer.forward(x, state)
    s = (h[0], c[0]) if kind == "lstm" else h[0]
    outs = []
    for t in range(5):  # the cell called once per step, then backward consumes caches LIFO
        s = cell.forward(x[:, t], s)
        outs.append(s[0] if kind == "lstm" else s)
    np.testing.assert_allclose(np.stack(outs, 1), y, rtol=1e-13, atol=1e-14)
    # inference runs another GEMM layout (other blocking): equal up to rounding
    np.testing.assert_allclose(y_infer, y, rtol=1e-13, atol=1e-14)
    for got, want in zip(final_infer if kind == "lstm" else (final_infer,), s if kind == "lstm" else (s,)):
        np.testing.assert_allclose(got[0], want, rtol=1e-13, atol=1e-14)
    dy = rng.standard_normal(y.shape)
    dx, _ = layer.backward(dy)
    ds = (np.zeros((3, 6)), np.zeros((3, 6))) if kind == "lstm" else np.zeros((3, 6))
    dxs = []
    for t in reversed(range(5)):
        if kind == "lstm":
            ds = (ds[0] + dy[:, t], ds[1])
            dxt, ds = cell.backward(*ds)
        else:
            dxt, ds = cell.backward(ds + dy[:, t])
        dxs.append(dxt)
    np.testing.assert_allclose(np.stack(dxs[::-1], 1), dx, rtol=1e-12, atol=1e-13)
    for k, g in cell.grads.items():
        np.testing.assert_allclose(g, layer.grads[k + "_l0"], rtol=1e-12, atol=1e-13, err_msg=k)


@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
def test_functional_forward_and_backward_are_the_modules(kind):
    """recurrent_forward / recurrent_backward over a plain parameter dict give the module's numbers."""
    rng = np.random.default_rng(12)
    layer = make_layer(kind, 3, 4, 2, True, np.float64, rng)
    x, lengths = rng.standard_normal((3, 5, 3)), np.array([5, 1, 3])
    y, final = layer.forward(x, lengths=lengths)
    dy = rng.standard_normal(y.shape)
    dx, dstate = layer.backward(dy)
    params = {k: v.copy() for k, v in layer.params.items()}
    grads = {k: np.zeros_like(v) for k, v in params.items()}
    y2, final2, cache = rnnkit.nn.recurrent_forward(kind, x, params, num_layers=2,
                                                    bidirectional=True, lengths=lengths)
    dx2, dstate2 = rnnkit.nn.recurrent_backward(dy, None, cache, grads)
    got, want = flat_arrays((y2, final2, dx2, dstate2)), flat_arrays((y, final, dx, dstate))
    assert len(got) == len(want)
    for a, b in zip(got, want):
        np.testing.assert_array_equal(a, b)
    for k, g in grads.items():
        np.testing.assert_array_equal(g, layer.grads[k], err_msg=k)
    _, _, none = rnnkit.nn.recurrent_forward(kind, x, params, keep_cache=False, num_layers=2,
                                             bidirectional=True)
    assert none is None


def test_final_state_is_state_at_last_valid_step():
    rng = np.random.default_rng(2)
    layer = make_layer("gru", 2, 3, 1, False, np.float64, rng)
    x = rng.standard_normal((2, 5, 2))
    y, h = layer.forward(x, lengths=np.array([5, 3]))
    np.testing.assert_array_equal(h[0, 0], y[0, 4])
    np.testing.assert_array_equal(h[0, 1], y[1, 2])


def test_reverse_direction_runs_over_valid_part_only():
    rng = np.random.default_rng(3)
    layer = make_layer("lstm", 2, 3, 1, True, np.float64, rng)
    x = rng.standard_normal((1, 6, 2))
    y_pad, (h_pad, _) = layer.forward(x, lengths=np.array([4]))
    y_cut, (h_cut, _) = layer.forward(x[:, :4])
    np.testing.assert_allclose(y_pad[:, :4], y_cut, rtol=1e-13)
    np.testing.assert_allclose(h_pad[1], h_cut[1], rtol=1e-13)  # reverse: state after t = 0


def test_caches_are_consumed_last_in_first_out():
    rng = np.random.default_rng(4)
    layer = make_layer("rnn", 2, 3, 1, False, np.float64, rng)
    a, b = rng.standard_normal((2, 2, 3, 2))
    layer.forward(a)
    layer.forward(b)
    dy = rng.standard_normal((2, 3, 3))
    dxb, _ = layer.backward(dy)
    dxa, _ = layer.backward(dy)
    layer.forward(a)
    np.testing.assert_allclose(layer.backward(dy)[0], dxa)
    layer.forward(b)
    np.testing.assert_allclose(layer.backward(dy)[0], dxb)
    assert not np.allclose(dxa, dxb)
    with pytest.raises(RuntimeError, match="without a matching forward"):
        layer.backward(dy)


@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
def test_no_grad_keeps_no_cache_and_gives_the_same_output(kind):
    rng = np.random.default_rng(5)
    layer = make_layer(kind, 2, 3, 2, True, np.float64, rng)
    x = rng.standard_normal((2, 4, 2))
    lengths = np.array([4, 2])
    y, final = layer.forward(x, lengths=lengths)
    with rnnkit.no_grad():
        y2, final2 = layer.forward(x, lengths=lengths)
    # inference runs in a hidden-major layout (other GEMM blocking): equal up to rounding
    np.testing.assert_allclose(y2, y, rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(np.concatenate(final2) if kind == "lstm" else final2,
                               np.concatenate(final) if kind == "lstm" else final,
                               rtol=1e-13, atol=1e-15)
    layer.backward(np.ones_like(y))
    with pytest.raises(RuntimeError):
        layer.backward(np.ones_like(y))


@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
def test_float32_stays_float32(kind):
    rng = np.random.default_rng(6)
    layer = make_layer(kind, 3, 4, 2, True, np.float32, rng)
    x = rng.standard_normal((2, 5, 3)).astype(np.float32)
    y, final = layer.forward(x, lengths=np.array([5, 3]))
    dx, dstate = layer.backward(np.ones_like(y))
    for a in [y, dx, *(final if kind == "lstm" else (final,)), *(dstate if kind == "lstm" else (dstate,)),
              *layer.grads.values(), *layer.params.values()]:
        assert a.dtype == np.float32


def test_dropout_train_and_eval():
    rng = np.random.default_rng(7)
    layer = make_layer("gru", 3, 8, 2, False, np.float64, rng, dropout=0.5)
    x = rng.standard_normal((4, 5, 3))
    y1, _ = layer.forward(x)
    y2, _ = layer.forward(x)
    assert not np.allclose(y1, y2)  # a new mask each call
    layer.eval()
    y3, _ = layer.forward(x)
    y4, _ = layer.forward(x)
    np.testing.assert_array_equal(y3, y4)
    nodrop = make_layer("gru", 3, 8, 2, False, np.float64, np.random.default_rng(0))
    nodrop.load_state_dict(layer.state_dict())
    np.testing.assert_allclose(nodrop.forward(x)[0], y3, rtol=1e-14)


def test_state_dict_round_trip_and_checks():
    rng = np.random.default_rng(8)
    a = make_layer("lstm", 3, 4, 2, True, np.float64, rng, proj_size=2)
    b = rnnkit.LSTM(3, 4, num_layers=2, bidirectional=True, proj_size=2, dtype=np.float64)
    names = {f"{w}_l{k}{s}" for w in ("weight_ih", "weight_hh", "bias_ih", "bias_hh", "weight_hr")
             for k in range(2) for s in ("", "_reverse")}
    assert set(a.state_dict()) == names
    b.load_state_dict(a.state_dict())
    x = rng.standard_normal((2, 3, 3))
    np.testing.assert_array_equal(a.forward(x)[0], b.forward(x)[0])
    sd = a.state_dict()
    sd["weight_hh_l1"] = sd["weight_hh_l1"][:, :1]
    with pytest.raises(ValueError, match="weight_hh_l1.*shape"):
        b.load_state_dict(sd)
    sd = a.state_dict()
    sd["bias_ih_l0"] = sd["bias_ih_l0"].astype(np.float32)
    with pytest.raises(ValueError, match="bias_ih_l0.*dtype"):
        b.load_state_dict(sd)
    sd = a.state_dict()
    sd["weight_xx_l0"] = sd.pop("weight_ih_l0")
    with pytest.raises(ValueError, match="missing.*weight_ih_l0.*unexpected.*weight_xx_l0"):
        b.load_state_dict(sd)


def test_gru_reset_before_follows_its_equations():
    """reset_after=False: n = tanh(W_in x + b_in + W_hn (r * h) + b_hn), written out independently."""
    rng = np.random.default_rng(9)
    layer = make_layer("gru", 3, 4, 1, False, np.float64, rng, reset_after=False)
    x, h0 = rng.standard_normal((2, 5, 3)), rng.standard_normal((1, 2, 4))
    y, h_n = layer.forward(x, h0)
    p = layer.params
    sig = lambda a: 1 / (1 + np.exp(-a))  # noqa: E731
    Wr, Wz, Wn = np.split(p["weight_ih_l0"], 3)
    Ur, Uz, Un = np.split(p["weight_hh_l0"], 3)
    br, bz, bn = np.split(p["bias_ih_l0"], 3)
    cr, cz, cn = np.split(p["bias_hh_l0"], 3)
    h = h0[0]
    for t in range(5):
        r = sig(x[:, t] @ Wr.T + br + h @ Ur.T + cr)
        z = sig(x[:, t] @ Wz.T + bz + h @ Uz.T + cz)
        n = np.tanh(x[:, t] @ Wn.T + bn + (r * h) @ Un.T + cn)
        h = (1 - z) * n + z * h
        np.testing.assert_allclose(y[:, t], h, rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(h_n[0], h, rtol=1e-13)
    torch_form = make_layer("gru", 3, 4, 1, False, np.float64, rng)
    torch_form.load_state_dict(layer.state_dict())
    assert np.abs(torch_form.forward(x, h0)[0] - y).max() > 1e-3  # the two forms really differ


@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("grad", [True, False])
def test_empty_batch_and_zero_length_sequences(kind, grad):
    """N = 0 runs; a sequence of length 0 outputs zeros, keeps its initial state, and passes the
    state's gradient straight back (training and inference drivers alike)."""
    rng = np.random.default_rng(8)
    layer = make_layer(kind, 3, 4, 2, True, np.float64, rng)
    run = (lambda f: f()) if grad else (lambda f: _no_grad_call(f))  # noqa: E731
    y, _ = run(lambda: layer.forward(np.zeros((0, 5, 3))))
    assert y.shape == (0, 5, 8)
    if grad:
        dx, _ = layer.backward(y)
        assert dx.shape == (0, 5, 3)
    x = rng.standard_normal((3, 5, 3))
    h0 = rng.standard_normal((4, 3, 4))
    state = (h0, rng.standard_normal((4, 3, 4))) if kind == "lstm" else h0
    lengths = np.array([0, 5, 0])
    layer.zero_grad()
    y, final = run(lambda: layer.forward(x, state, lengths=lengths))
    np.testing.assert_array_equal(y[[0, 2]], 0)
    assert np.abs(y[1]).min() > 0
    for got, want in zip(final if kind == "lstm" else (final,), state if kind == "lstm" else (state,)):
        np.testing.assert_array_equal(got[:, [0, 2]], want[:, [0, 2]])
    if grad:
        dstate = tuple(s * 0.5 for s in state) if kind == "lstm" else state * 0.5
        dx, dstate0 = layer.backward(np.ones_like(y), dstate)
        np.testing.assert_array_equal(dx[[0, 2]], 0)
        for got, want in zip(dstate0 if kind == "lstm" else (dstate0,),
                             dstate if kind == "lstm" else (dstate,)):
            np.testing.assert_array_equal(got[:, [0, 2]], want[:, [0, 2]])


def _no_grad_call(f):
    with rnnkit.no_grad():
        return f()


class _ConstantRng:
    """Stands in for the layer's generator: every dropout draw is ``value``."""

    def __init__(self, value):
        self.value = value

    def random(self, shape):
        return np.full(shape, self.value)


@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("grad", [True, False])
def test_dropout_between_layers_scales_and_drops(kind, grad):
    """Draws above p keep every input of layer 1 scaled by 1 / (1 - p): the same as scaling that
    layer's input weights; draws below p drop them all: the same as zeroing those weights.  Both
    drivers (training with a cache, and inference without one)."""
    rng = np.random.default_rng(9)
    p = 0.25
    layer = make_layer(kind, 3, 4, 2, True, np.float64, rng, dropout=p)
    x, lengths = rng.standard_normal((3, 6, 3)), np.array([6, 2, 4])
    for draw, factor in ((0.9, 1 / (1 - p)), (0.1, 0.0)):
        layer.rng = _ConstantRng(draw)
        layer.train()
        y = (layer.forward(x, lengths=lengths) if grad else _no_grad_call(
            lambda: layer.forward(x, lengths=lengths)))[0]
        layer.clear_caches()
        ref = make_layer(kind, 3, 4, 2, True, np.float64, rng)
        ref.load_state_dict(layer.state_dict())
        for sfx in ("", "_reverse"):
            ref.params[f"weight_ih_l1{sfx}"] *= factor
        ref.eval()
        np.testing.assert_allclose(y, ref.forward(x, lengths=lengths)[0], rtol=1e-12, atol=1e-14)
