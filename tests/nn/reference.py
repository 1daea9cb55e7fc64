"""Shared helpers of the layer tests: a torch twin of an rnnkit layer and an exact comparison.

One call compares the forward outputs, final state, dx, the initial-state gradient and *every*
parameter gradient with torch (STYLE.md habit 6).  Every parameter, bias and initial state is
random, so a wrong bias or a dropped state term cannot pass.
"""
from __future__ import annotations

import numpy as np
import pytest

import rnnkit

CLASSES = {"rnn": rnnkit.RNN, "lstm": rnnkit.LSTM, "gru": rnnkit.GRU}


def assert_close(name, ours, ref, rtol):
    """Shape and dtype first, then values; on failure print ours beside the reference."""
    ours, ref = np.asarray(ours), np.asarray(ref)
    assert ours.shape == ref.shape, f"{name}: shape {ours.shape} vs reference {ref.shape}"
    scale = max(np.abs(ref).max(initial=0.0), 1e-30)
    err = np.abs(ours - ref).max(initial=0.0) / scale
    if err > rtol:
        j = int(np.argmax(np.abs(ours - ref)))
        raise AssertionError(f"{name}: relative error {err:.3g} > {rtol:g}; worst at flat index {j}: "
                             f"ours {ours.flat[j]!r} vs torch {ref.flat[j]!r}")


def flat_arrays(out):
    """The arrays of a result, nested tuples and lists flattened (a state (h, c), a pair (y, state))."""
    if isinstance(out, (tuple, list)):
        return [a for item in out for a in flat_arrays(item)]
    return [np.asarray(out)]


def make_layer(kind, I, H, L, bi, dtype, rng, **kw):
    layer = CLASSES[kind](I, H, num_layers=L, bidirectional=bi, dtype=dtype, rng=rng, **kw)
    # randomise every parameter, biases included, with a wider range than the default init
    for p in layer.params.values():
        p[...] = rng.uniform(-0.6, 0.6, p.shape)
    return layer


def torch_twin(layer):
    torch = pytest.importorskip("torch")
    kind = type(layer).__name__
    kw = dict(num_layers=layer.num_layers, bidirectional=layer.bidirectional, batch_first=True,
              bias=layer.bias)
    if kind == "RNN":
        kw["nonlinearity"] = layer.nonlinearity
    if getattr(layer, "proj_size", 0):
        kw["proj_size"] = layer.proj_size
    tdtype = torch.float64 if layer.dtype == np.float64 else torch.float32
    twin = getattr(torch.nn, kind)(layer.input_size, layer.hidden_size, dtype=tdtype, **kw)
    with torch.no_grad():
        for name, p in twin.named_parameters():
            p.copy_(torch.from_numpy(layer.params[name]))
    return twin


def compare_with_torch(layer, N, T, rng, lengths=None, with_state=True, rtol=1e-10):
    """Forward + backward of ``layer`` and of its torch twin on the same random data."""
    torch = pytest.importorskip("torch")
    dtype = layer.dtype
    is_lstm = isinstance(layer, rnnkit.LSTM)
    D, P = layer.num_directions, layer.proj_size or layer.hidden_size
    LD = layer.num_layers * D
    x = rng.standard_normal((N, T, layer.input_size)).astype(dtype)
    h0 = rng.standard_normal((LD, N, P)).astype(dtype)
    c0 = rng.standard_normal((LD, N, layer.hidden_size)).astype(dtype)
    state = ((h0, c0) if is_lstm else h0) if with_state else None

    y, final = layer.forward(x, state, lengths)
    dy = rng.standard_normal(y.shape).astype(dtype)
    dh = rng.standard_normal(h0.shape).astype(dtype)
    dc = rng.standard_normal(c0.shape).astype(dtype)
    layer.zero_grad()
    y, final = layer.forward(x, state, lengths)
    dx, dstate = layer.backward(dy, (dh, dc) if is_lstm else dh)

    twin = torch_twin(layer)
    xt = torch.tensor(x, requires_grad=True)
    h0t, c0t = torch.tensor(h0, requires_grad=True), torch.tensor(c0, requires_grad=True)
    tstate = ((h0t, c0t) if is_lstm else h0t) if with_state else None
    if lengths is None:
        yt, ft = twin(xt, tstate)
    else:
        packed = torch.nn.utils.rnn.pack_padded_sequence(
            xt, torch.as_tensor(lengths, dtype=torch.int64), batch_first=True, enforce_sorted=False)
        yp, ft = twin(packed, tstate)
        yt, _ = torch.nn.utils.rnn.pad_packed_sequence(yp, batch_first=True, total_length=T)
    ft = ft if is_lstm else (ft,)
    loss = (yt * torch.tensor(dy)).sum() + (ft[0] * torch.tensor(dh)).sum()
    if is_lstm:
        loss = loss + (ft[1] * torch.tensor(dc)).sum()
    loss.backward()

    for name, arr in (("y", y), ("dx", dx)):
        assert arr.dtype == dtype, f"{name} has dtype {arr.dtype}, expected {dtype}"
    t = lambda a: a.detach().numpy()  # noqa: E731
    assert_close("y", y, t(yt), rtol)
    assert_close("h_n", final[0] if is_lstm else final, t(ft[0]), rtol)
    assert_close("dx", dx, t(xt.grad), rtol)
    if is_lstm:
        assert_close("c_n", final[1], t(ft[1]), rtol)
    if with_state:
        assert_close("dh0", dstate[0] if is_lstm else dstate, t(h0t.grad), rtol)
        if is_lstm:
            assert_close("dc0", dstate[1], t(c0t.grad), rtol)
    for name, p in twin.named_parameters():
        assert layer.grads[name].dtype == dtype
        assert_close(f"grad {name}", layer.grads[name], t(p.grad), rtol)
    # inference (no cache) runs its own loops, in the hidden-major layout: same numbers
    with rnnkit.no_grad():
        y_inf, final_inf = layer.forward(x, state, lengths)
    assert y_inf.dtype == dtype
    assert_close("y (no_grad)", y_inf, t(yt), rtol)
    for k, (ours, ref) in enumerate(zip(final_inf if is_lstm else (final_inf,), ft)):
        assert_close(f"final state {k} (no_grad)", ours, t(ref), rtol)
    return y, final


def ctc_case(rng, N, T, C, S, blank, repeats=False, impossible=False):
    """Random CTC logits (N, T, C), padded targets (N, max(S, 1)) and their lengths."""
    logits = rng.standard_normal((N, T, C)) * 2
    il = rng.integers(max(T // 2, 1), T + 1, N)
    il[0] = T
    labels = [c for c in range(C) if c != blank]
    tl = rng.integers(0, S + 1, N)
    tl[-1] = S
    targets = rng.choice(labels, (N, max(S, 1)))
    if repeats:  # runs of the same label need a blank between them
        targets[:, 1::2] = targets[:, ::2][:, : targets[:, 1::2].shape[1]]
    if impossible:
        tl[0], il[0] = S, max(S - 1, 0)
    return logits, targets, il, tl
