"""The gradient-flow probe (rnnkit/nn/probe.py): the recorded per-step norms of dL/dh_t and dL/dc_t
equal PyTorch autograd's on the torch cells unrolled over time, per sequence, for every layer and
direction; the summary numbers on cases whose answer is known; recording changes nothing."""
import numpy as np
import pytest

import rnnkit
from rnnkit.nn import _accel
from rnnkit.nn.init import orthogonal
from rnnkit.nn.probe import (decay_ratio, horizon, profile, record_gradients, steps_back,
                             summarize)
from reference import make_layer

CASES = [  # kind, L, bidirectional, lengths (None: all T), proj
    ("rnn", 2, True, [7, 5, 1, 0], 0),
    ("lstm", 2, True, [7, 5, 1, 0], 0),
    ("gru", 2, True, [7, 5, 1, 0], 0),
    ("rnn", 1, False, None, 0),
    ("lstm", 2, False, [3, 7, 6, 2], 3),
    ("gru", 3, True, None, 0),
]


def torch_unrolled(layer, x, state, lengths, dy, dstate, last_step_only=False):
    """The layer as torch cells unrolled over each sequence's valid steps, retain_grad() on
    every h_t (and c_t), the loss sum(y * dy) + the final states times dstate (with
    last_step_only: only each top direction's last step of y).  -> {direction name: (dh (N, T),
    dc (N, T) or None)}, NaN at padded steps."""
    torch = pytest.importorskip("torch")
    kind = type(layer).__name__.lower()
    N, T, _ = x.shape
    D, L, H = layer.num_directions, layer.num_layers, layer.hidden_size
    P = layer.proj_size or H
    p = {k: torch.tensor(v) for k, v in layer.params.items()}
    h0 = torch.tensor(state[0] if kind == "lstm" else state, requires_grad=True)
    c0 = torch.tensor(state[1], requires_grad=True) if kind == "lstm" else None

    def step(name, xt, h, c):
        gates_x = xt @ p["weight_ih" + name].T + p["bias_ih" + name]
        if kind == "rnn":
            cell = torch.nn.RNNCell(xt.shape[-1], H, nonlinearity=layer.nonlinearity,
                                    dtype=torch.float64)
        elif kind == "gru":
            cell = torch.nn.GRUCell(xt.shape[-1], H, dtype=torch.float64)
        if kind in ("rnn", "gru"):
            with torch.no_grad():
                for w in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                    getattr(cell, w).copy_(p[w + name])
            return cell(xt, h), None
        # The LSTM step written out in torch ops, with torch's projection h = (o tanh(c)) W_hr^T.
        # Not nn.LSTMCell: its fused node computes h_t from c_t inside itself, so c_t.grad there
        # holds only the path through c_{t+1} (None at the last step), not dL/dc_t in full.
        a = gates_x + h @ p["weight_hh" + name].T + p["bias_hh" + name]
        i, f, g, o = a[:H].sigmoid(), a[H : 2 * H].sigmoid(), a[2 * H : 3 * H].tanh(), a[3 * H :].sigmoid()
        c = f * c + i * g
        m = o * c.tanh()
        return (m @ p["weight_hr" + name].T if layer.proj_size else m), c

    grads = {}  # direction name -> (dh (N, T), dc (N, T)), NaN at padded steps
    for n in range(N):
        ln = T if lengths is None else int(lengths[n])
        inp = [torch.tensor(x[n, t]) for t in range(ln)]
        loss, kept = 0, []
        for layer_k in range(L):
            outs = []
            for d in range(D):
                name = f"l{layer_k}" + ("_reverse" if d else "")
                k = layer_k * D + d
                h, c = h0[k, n], (c0[k, n] if c0 is not None else None)
                hs, cs = [None] * ln, [None] * ln
                for t in (range(ln - 1, -1, -1) if d else range(ln)):
                    h, c = step("_" + name, inp[t], h, c)
                    h.retain_grad()
                    hs[t] = h
                    if c is not None:
                        c.retain_grad()
                        cs[t] = c
                loss = loss + (h * torch.tensor((dstate[0] if kind == "lstm" else dstate)[k, n])).sum()
                if c is not None:
                    loss = loss + (c * torch.tensor(dstate[1][k, n])).sum()
                outs.append((name, hs, cs))
                if layer_k == L - 1:  # the top layer's outputs enter the loss
                    for t in range(ln):
                        if not last_step_only or t == (0 if d else ln - 1):
                            loss = loss + (hs[t] * torch.tensor(dy[n, t, d * P : (d + 1) * P])).sum()
            inp = [torch.cat([hs[t] for _, hs, _ in outs]) for t in range(ln)]
            kept += outs
        if ln:
            loss.backward()
        for name, hs, cs in kept:
            dh, dc = grads.setdefault(name, (np.full((N, T), np.nan), np.full((N, T), np.nan)))
            for t in range(ln):
                dh[n, t] = float(hs[t].grad.norm())
                if cs[t] is not None:
                    dc[n, t] = float(cs[t].grad.norm())
    return {k: (dh, dc if kind == "lstm" else None) for k, (dh, dc) in grads.items()}


def run_recorded(layer, x, state, lengths, dy, dstate, last_step_only=False):
    layer.zero_grad()
    with record_gradients(last_step_only) as probe:
        layer.forward(x, state, lengths)
        layer.backward(dy, dstate)
    assert len(probe.records) == 1
    return probe.records[0]


def random_case(kind, L, bi, lengths, proj, rng, N=4, T=7, I=3, H=5):
    kw = {"proj_size": proj} if proj else {}
    layer = make_layer(kind, I, H, L, bi, np.float64, rng, **kw)
    D, P = (2 if bi else 1), (proj or H)
    x = rng.standard_normal((N, T, I))
    h0 = rng.standard_normal((L * D, N, P))
    c0 = rng.standard_normal((L * D, N, H))
    dy = rng.standard_normal((N, T, D * P))
    dh = rng.standard_normal((L * D, N, P))
    dc = rng.standard_normal((L * D, N, H))
    state = (h0, c0) if kind == "lstm" else h0
    dstate = (dh, dc) if kind == "lstm" else dh
    return layer, x, state, None if lengths is None else np.array(lengths), dy, dstate


def assert_norms(name, ours, ref):
    assert ours.shape == ref.shape, f"{name}: shape {ours.shape} vs {ref.shape}"
    assert ours.dtype == np.float64
    np.testing.assert_array_equal(np.isnan(ours), np.isnan(ref), err_msg=f"{name}: padded steps")
    ok = ~np.isnan(ref)
    err = np.abs(ours[ok] - ref[ok]) / np.maximum(np.abs(ref[ok]), 1e-300)
    assert err.max(initial=0) < 1e-10, f"{name}: relative error {err.max():.3g}\nours\n{ours}\ntorch\n{ref}"


@pytest.mark.parametrize("last_step_only", [False, True], ids=["whole-loss", "last-step"])
@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c[0]}-L{c[1]}-{'bi' if c[2] else 'uni'}"
                         f"-{'lengths' if c[3] else 'full'}{'-proj' if c[4] else ''}")
def test_recorded_norms_equal_torch_autograd(case, last_step_only):
    rng = np.random.default_rng(CASES.index(case))
    layer, x, state, lengths, dy, dstate = random_case(*case, rng)
    rec = run_recorded(layer, x, state, lengths, dy, dstate, last_step_only)
    ref = torch_unrolled(layer, x, state, lengths, dy, dstate, last_step_only)
    assert sorted(rec.directions) == sorted(ref)
    for name, (dh, dc) in ref.items():
        assert_norms(f"{name} dL/dh", rec.directions[name].dh, dh)
        if dc is not None:
            assert_norms(f"{name} dL/dc", rec.directions[name].dc, dc)
        else:
            assert rec.directions[name].dc is None


@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
def test_recording_changes_no_number(kind, rng):
    layer, x, state, lengths, dy, dstate = random_case(kind, 2, True, [7, 3, 5, 1], 0, rng)
    out = []
    for recording in (False, True):
        layer.zero_grad()
        if recording:
            with record_gradients():
                layer.forward(x, state, lengths)
                dx, ds = layer.backward(dy, dstate)
        else:
            layer.forward(x, state, lengths)
            dx, ds = layer.backward(dy, dstate)
        out.append([dx, *np.atleast_1d(ds if kind != "lstm" else np.stack(ds)),
                    *[g.copy() for g in layer.grads.values()]])
    for a, b in zip(*out):
        np.testing.assert_array_equal(a, b)
    # and nothing is recorded outside the block
    layer.forward(x, state, lengths)
    layer.backward(dy, dstate)


@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
def test_compiled_kernels_record_the_same_numbers(kind, rng):
    pytest.importorskip("numba")
    layer, x, state, lengths, dy, dstate = random_case(kind, 2, True, [7, 3, 5, 1], 0, rng)
    layer = make_layer(kind, 3, 5, 2, True, np.float32, rng)
    x, dy = x.astype(np.float32), dy.astype(np.float32)
    state = tuple(s.astype(np.float32) for s in state) if kind == "lstm" else state.astype(np.float32)
    dstate = (tuple(s.astype(np.float32) for s in dstate) if kind == "lstm"
              else dstate.astype(np.float32))
    was = _accel._enabled
    recs = []
    try:
        for flag in (False, True):
            _accel.set_enabled(flag)
            assert _accel.enabled() is flag
            recs.append(run_recorded(layer, x, state, lengths, dy, dstate))
    finally:
        _accel.set_enabled(was)
    for name, d in recs[0].directions.items():
        e = recs[1].directions[name]
        np.testing.assert_array_equal(d.dh, e.dh)
        if d.dc is not None:
            np.testing.assert_array_equal(d.dc, e.dc)
        assert (d.saturation, d.sigma, d.hidden_norm, d.cell_norm) == \
            (e.saturation, e.sigma, e.hidden_norm, e.cell_norm)


def scaled_rnn(scale, H=32, nonlinearity="tanh"):
    """A one-layer RNN whose W_hh is ``scale`` times an orthogonal matrix (every singular value is
    ``scale``), zero biases."""
    rng = np.random.default_rng(3)
    layer = rnnkit.RNN(4, H, nonlinearity=nonlinearity, dtype=np.float64, rng=rng)
    layer.params["weight_hh_l0"][...] = scale * orthogonal((H, H), rng)
    layer.params["bias_ih_l0"][...] = 0
    layer.params["bias_hh_l0"][...] = 0
    return layer


def last_step_summary(layer, x, lengths=None):
    y, _ = layer.forward(x, lengths=lengths)
    dy = np.zeros_like(y)
    dy[:, -1] = 1.0 / np.sqrt(y.shape[-1])
    with record_gradients(last_step_only=True) as probe:
        layer.backward(dy)
    return summarize(probe.records[0])["l0"], probe.records[0]


def test_linear_regime_decays_and_grows_at_exactly_the_singular_value():
    """x = 0, h0 = 0: every tanh' is 1, so dL/dh_{t-1} = W_hh^T dL/dh_t and the norm changes by
    exactly the singular value at each step: 0.3 -> 0.3^k falls below 1e-3 at k = 6."""
    x = np.zeros((3, 40, 4))
    for scale, decay in ((0.3, 0.3), (2.0, 2.0)):
        s, _ = last_step_summary(scaled_rnn(scale), x)
        assert s["sigma"]["h"] == pytest.approx(scale, rel=1e-12)
        assert s["bound"] == {"h": 1.0}
        assert s["decay"] == pytest.approx(decay, rel=1e-10)
        np.testing.assert_allclose(s["profile"], decay ** np.arange(40), rtol=1e-9)
    s, _ = last_step_summary(scaled_rnn(0.3), x)
    assert (s["horizon"], s["horizon_full"]) == (6, False)
    s, _ = last_step_summary(scaled_rnn(2.0), x)
    assert (s["horizon"], s["horizon_full"]) == (40, True)
    assert s["growth"] == pytest.approx(2.0 ** 39, rel=1e-9)


@pytest.mark.parametrize("nonlinearity", ["tanh", "relu"])
def test_horizon_short_below_the_bound_and_norm_growing_above(nonlinearity):
    """Random inputs: W_hh's largest singular value well below 1/gamma = 1 leaves a horizon of a
    few steps; well above, with inputs small enough for the units to stay unsaturated, the norm
    grows going back from the loss."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((8, 60, 4))
    below, _ = last_step_summary(scaled_rnn(0.25, nonlinearity=nonlinearity), x)
    assert below["sigma"]["h"] < 0.3 * below["bound"]["h"]
    assert below["horizon"] <= 6 and not below["horizon_full"]
    assert below["decay"] < 0.3
    # a relu passes about half of its units, so well above is farther above for it
    scale = 1.6 if nonlinearity == "tanh" else 3.0
    above, _ = last_step_summary(scaled_rnn(scale, nonlinearity=nonlinearity), 1e-6 * x[:, :25])
    assert above["sigma"]["h"] > 1.5 * above["bound"]["h"]
    assert above["horizon_full"] and above["growth"] > 1e3 and above["decay"] > 1.3


def test_summary_numbers_by_hand():
    """Norms written out: sequence 0 (length 4) 8, 4, 2, 1 towards the loss at step 3; sequence 1
    (length 2) 1, 1; padded steps NaN."""
    nan = np.nan
    norms = np.array([[1.0, 2.0, 4.0, 8.0], [1.0, 1.0, nan, nan]])
    lengths = np.array([4, 2])
    back = steps_back(norms, lengths, reverse=False)
    np.testing.assert_array_equal(back, [[8, 4, 2, 1], [1, 1, nan, nan]])
    # g(1) = sqrt(0.5 * 1) (geometric mean), g(2), g(3) from sequence 0 alone
    np.testing.assert_allclose(profile(norms, lengths), [1, np.sqrt(0.5), 0.25, 0.125])
    assert horizon(profile(norms, lengths), threshold=0.2) == (3, False)
    assert horizon(profile(norms, lengths), threshold=0.1) == (4, True)
    # per-step ratio: sequence 0 halves at each of its 3 steps, sequence 1 keeps 1
    assert decay_ratio(norms, lengths) == pytest.approx(np.sqrt(0.5))
    # the reverse direction's loss is at position 0
    np.testing.assert_allclose(profile(norms[:, ::-1][:1], lengths[:1], reverse=True),
                               [1, 0.5, 0.25, 0.125])


def test_loss_step_is_the_last_step_with_a_gradient():
    """A task without targets on its last steps (the ES-RNN): counted back from the last step
    that has a gradient."""
    norms = np.array([[1.0, 2.0, 4.0, 0.0, 0.0], [3.0, 3.0, 3.0, 3.0, 3.0]])
    lengths = np.array([5, 5])
    back = steps_back(norms, lengths, reverse=False)
    np.testing.assert_array_equal(back[0], [4, 2, 1, np.nan, np.nan])
    np.testing.assert_allclose(profile(norms[:1], lengths[:1]), [1, 0.5, 0.25, np.nan, np.nan])
    assert horizon(profile(norms[:1], lengths[:1]), threshold=0.2) == (3, True)
    assert decay_ratio(norms[:1], lengths[:1]) == pytest.approx(0.5)
    # no gradient at all: left out
    assert np.isnan(profile(np.zeros((1, 5)), lengths[:1])).all()
    assert horizon(profile(np.zeros((1, 5)), lengths[:1])) == (None, False)


@pytest.mark.parametrize("kind", ["gru", "lstm"])
def test_last_step_only_keeps_the_last_step_with_a_gradient(kind):
    """dy is 0 after step 4 (no target there): last_step_only keeps step 4's gradient alone,
    which torch confirms with the loss at step 4 alone."""
    rng = np.random.default_rng(5)
    layer, x, state, lengths, dy, _ = random_case(kind, 2, False, [7, 6, 5], 0, rng, N=3)
    dy[:, 5:] = 0
    rec = run_recorded(layer, x, state, lengths, dy, None, last_step_only=True)
    only = np.zeros_like(dy)
    only[:, 4] = dy[:, 4]
    zero = (np.zeros_like(state[0]), np.zeros_like(state[1])) if kind == "lstm" else np.zeros_like(state)
    ref = torch_unrolled(layer, x, state, lengths, only, zero)
    for name, (dh, dc) in ref.items():
        assert_norms(f"{name} dL/dh", rec.directions[name].dh, dh)
        if dc is not None:
            assert_norms(f"{name} dL/dc", rec.directions[name].dc, dc)
    assert summarize(rec)["l1"]["profile"][0] == 1.0


def test_forward_side_numbers(rng):
    """Saturation, state norms and singular values against their definitions on the outputs."""
    layer = make_layer("lstm", 3, 6, 1, False, np.float64, rng)
    layer.params["bias_ih_l0"][6:12] = 5.0  # forget gates near 1: saturated
    x = 3 * rng.standard_normal((5, 9, 3))
    lengths = np.array([9, 4, 1, 6, 2])
    layer.forward(x, lengths=lengths)
    dy = rng.standard_normal((5, 9, 6))
    with record_gradients() as probe:
        layer.backward(dy)
    d = probe.records[0].directions["l0"]
    W = layer.params["weight_hh_l0"]
    for k, gate in enumerate("ifgo"):
        assert d.sigma[gate] == pytest.approx(np.linalg.norm(W[6 * k : 6 * k + 6], 2), rel=1e-12)
        assert d.bound[gate] == (1.0 if gate == "g" else 4.0)
    # the gates recomputed step by step from the layer's own equations
    p = layer.params
    sat = {g: [] for g in "ifgo"}
    hn, cn = [], []
    for n in range(5):
        h, c = np.zeros(6), np.zeros(6)
        for t in range(lengths[n]):
            a = p["weight_ih_l0"] @ x[n, t] + p["bias_ih_l0"] + W @ h + p["bias_hh_l0"]
            gates = [1 / (1 + np.exp(-a[:6])), 1 / (1 + np.exp(-a[6:12])), np.tanh(a[12:18]),
                     1 / (1 + np.exp(-a[18:]))]
            c = gates[1] * c + gates[0] * gates[2]
            h = gates[3] * np.tanh(c)
            for g, v in zip("ifgo", gates):
                sat[g].append(np.abs(v) > 0.98 if g == "g" else (v < 0.02) | (v > 0.98))
            hn.append(np.linalg.norm(h))
            cn.append(np.linalg.norm(c))
    for g in "ifgo":
        assert d.saturation[g] == pytest.approx(np.mean(sat[g]))
    assert d.saturation["f"] > 0.5
    assert d.hidden_norm == pytest.approx((np.mean(hn), np.max(hn)))
    assert d.cell_norm == pytest.approx((np.mean(cn), np.max(cn)))


def test_probes_nest_and_functional_calls_record(rng):
    """record_gradients nests (the inner block records alone) and sees the functional API too."""
    layer = make_layer("gru", 3, 4, 1, False, np.float64, rng)
    x = rng.standard_normal((2, 5, 3))
    with record_gradients() as outer:
        layer.forward(x)
        layer.backward(np.ones((2, 5, 4)))
        with record_gradients() as inner:
            y, _, cache = rnnkit.nn.recurrent_forward("gru", x, layer.params)
            rnnkit.nn.recurrent_backward(np.ones_like(y), None, cache,
                                         {k: np.zeros_like(v) for k, v in layer.params.items()})
    assert len(outer.records) == 1 and len(inner.records) == 1
    np.testing.assert_array_equal(outer.records[0].directions["l0"].dh,
                                  inner.records[0].directions["l0"].dh)
    assert outer.records[0].params is layer.params
