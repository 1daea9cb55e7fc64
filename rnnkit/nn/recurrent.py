"""The recurrent driver: time, directions, layers, lengths and state, for RNN, LSTM and GRU.

The cells (``cells.py``, with the shapes legend) know one time step; this file owns everything
around it.  ``recurrent_forward`` runs one loop over layers x directions (initial states, the
weights, the directions side by side, dropout between layers) for two per-direction drivers with
the same semantics and the same numbers up to rounding:

* **training** (``_train_direction``, and ``_train_direction_backward`` for backpropagation through
  time), batch-major: the input projection of every time step is one GEMM before the loop,
  ``(T*N, I) @ (I, gH)``; the time loop runs over time-major buffers ``(T, N, ...)`` preallocated
  per sequence, which are the cache; padded steps keep the state by a mask and the reverse
  direction runs over each sequence's valid part by one gather; after the backward loop the weight
  gradients are one GEMM over all steps;
* **inference** (``inference.infer_direction``), hidden-major, without a cache.

With two or more BLAS threads the two directions of a bidirectional layer run side by side, one
core each (``_parallel.py``), in both drivers and in backward; the training driver's cache
buffers come from a pool that hands them back after backward (``_workspace.py``), which spares
the time loop the page faults of fresh memory.

``lengths`` (padded batches) follow torch's packed sequences: a sequence's state is frozen after
its last valid step, outputs at padded steps are exactly 0, and the reverse direction runs over
the valid part only.

``recurrent_forward`` / ``recurrent_backward`` are pure functions over a parameter dict (torch's
names); the modules ``RNN``, ``LSTM`` and ``GRU`` call them and keep the caches.
"""
from __future__ import annotations

import numpy as np

from . import _accel, _parallel, _workspace, cells, inference, probe as gradient_probe
from .cells import GATES
from .init import torch_default
from .module import Module, as_input, check_dtype, frozen, grad_enabled


# ------------------------------------------------------------------------------------------
# Training: one direction of one layer, forward and backward through time
# ------------------------------------------------------------------------------------------
def _train_direction(kind, xg, h0, c0, w, mask, nonlinearity, fast=None, pool=None):
    """Run one cell over xg (T, N, gH), the input side of every step, and keep what backward needs.

    mask: (T, N, 1) bool, False at padded steps, or None; fast: the compiled kernels or None;
    pool: a list of the cache's buffers taken from ``_workspace`` (this adds its own), handed
    back once backward is done with them.
    Returns (outputs (T, N, P) with zeros at padded steps, h_T, c_T or None, cache).
    """
    pool = [] if pool is None else pool
    T, N, _ = xg.shape
    P = h0.shape[-1]
    dtype = xg.dtype
    H_all = np.empty((T, N, P), dtype)  # the state after each step (frozen at padded steps)
    cache = {"kind": kind, "mask": mask, "h0": h0, "H": H_all, "w": w, "act": nonlinearity,
             "pool": pool}
    take = lambda shape: pool.append(_workspace.take(shape, dtype)) or pool[-1]  # noqa: E731
    C = None
    if kind == "lstm":
        Hc = c0.shape[-1]
        G = cache["G"] = take((T, N, 4 * Hc))  # activated i, f, g, o
        C = cache["C"] = take((T, N, Hc))
        TC = cache["TC"] = take((T, N, Hc))  # tanh(c)
        M = cache["M"] = take((T, N, Hc)) if w["hr"] is not None else None
        cache["c0"] = c0
        pointwise = fast.lstm_pointwise if fast else cells.lstm_pointwise
    elif kind == "gru":
        cache["G"] = xg  # the input side becomes the activated r, z, n, step by step
        GH = cache["GH"] = take(xg.shape)  # the recurrent side h W_hh^T + [0, 0, b_hn]
        RH = cache["RH"] = None if w["reset_after"] else take((T, N, P))  # r * h_prev
        pointwise = fast.gru_pointwise if fast else cells.gru_pointwise
    pad = None if mask is None else ~mask  # where the state stays frozen
    h, c = h0, c0
    for t in range(T):
        if kind == "rnn":
            cells.rnn_step(xg[t], h, w["hh_t"], nonlinearity, H_all[t])
        elif kind == "lstm":
            cells.lstm_step(xg[t], h, c, w["hh_t"], w["hr_t"], G[t], C[t], TC[t],
                            H_all[t] if M is None else M[t], H_all[t], pointwise)
        else:
            cells.gru_step(xg[t], h, w["hh_t"], w["b_hn"], GH[t], H_all[t],
                           None if RH is None else RH[t], pointwise)
        if pad is not None:
            np.copyto(H_all[t], h, where=pad[t])
            if C is not None:
                np.copyto(C[t], c, where=pad[t])
        h, c = H_all[t], (None if C is None else C[t])
    y = H_all if mask is None else H_all * mask
    return y, h, c, cache


def _train_direction_backward(cache, dy, dh, dc, grads, fast=None, probe=None):
    """Backward through time for one direction.  dy: (T, N, P) gradient of the outputs; dh, dc:
    of the final state, or None; probe: a ``probe.DirectionProbe`` recording the gradient norms
    (``probe.record_gradients``), or None.

    Accumulates the recurrent weight gradients into ``grads`` (keys hh, hr; b_hh of a GRU) and
    returns (dxg (T, N, gH), the input-side pre-activation gradients; dh0; dc0 or None).  At a padded step
    the state passed through unchanged: its gate gradients are zeroed and dh, dc flow straight
    back.
    """
    kind, mask, w, H_all, h0 = cache["kind"], cache["mask"], cache["w"], cache["H"], cache["h0"]
    T, N, P = H_all.shape
    dtype = H_all.dtype
    if mask is not None:
        dy = dy * mask  # outputs at padded steps are constants (0): their gradient is ignored
    if probe is not None:
        dy = probe.input_gradient(dy, dh)  # with last_step_only: the last step's alone
    dh = np.zeros_like(h0) if dh is None else np.array(dh, dtype, copy=True)  # (N, P), in place
    dh_new = np.empty_like(dh)  # a step's dh_prev (copied into dh where the mask is set)
    pool = cache["pool"]  # handed back by recurrent_backward once dG is used
    take = lambda shape: pool.append(_workspace.take(shape, dtype)) or pool[-1]  # noqa: E731
    if kind == "rnn":
        dG = dgh = take((T, N, P))
        pointwise = fast.rnn_pointwise_backward if fast else cells.rnn_pointwise_backward
    elif kind == "lstm":
        G, C, TC, M, c0 = cache["G"], cache["C"], cache["TC"], cache["M"], cache["c0"]
        Hc = c0.shape[-1]
        dc = np.zeros_like(c0) if dc is None else np.array(dc, dtype, copy=True)  # (N, H), in place
        dc_new = dc if mask is None else np.empty_like(dc)
        dG = dgh = take(G.shape)
        tmp = np.empty((N, 4 * Hc), dtype)
        dHP = take((T, N, P)) if M is not None else None  # dL/dh_t, for dW_hr
        dm = np.empty((N, Hc), dtype) if M is not None else None
        pointwise = fast.lstm_pointwise_backward if fast else cells.lstm_pointwise_backward
    else:
        G = cache["G"]
        HN = cache["GH"][..., 2 * P :] if w["reset_after"] else cache["RH"]
        dG, dgh, tmp = take(G.shape), take(G.shape), np.empty((N, P), dtype)
        pointwise = fast.gru_pointwise_backward if fast else cells.gru_pointwise_backward
    for t in range(T - 1, -1, -1):
        dh += dy[t]
        # dh is now dL/dh_t in full (and, for an LSTM, dc is dL/dc_t through step t + 1): the
        # one place where the probe of the gradient flow reads them
        if probe is not None:
            probe.step(t, dh, dc)
        if kind == "rnn":
            cells.rnn_step_backward(dh, H_all[t], w["hh"], cache["act"], dG[t], dh_new, pointwise)
        elif kind == "lstm":
            if dHP is not None:
                np.multiply(dh, 1 if mask is None else mask[t], out=dHP[t])
            cells.lstm_step_backward(dh, dc, G[t], C[t - 1] if t else c0, TC[t], w["hh"], w["hr"],
                                     dG[t], dc_new, dh_new, dm, tmp, pointwise)
        else:
            cells.gru_step_backward(dh, H_all[t - 1] if t else h0, G[t], HN[t], w["hh"], dG[t],
                                    dgh[t], dh_new, tmp, w["reset_after"], pointwise)
        if mask is None:  # dh_new is the next step's dh; the old buffer is free again
            dh, dh_new = dh_new, dh
        else:  # a padded step has no gate gradient, and dh, dc pass straight back
            dG[t] *= mask[t]
            if dgh is not dG:
                dgh[t] *= mask[t]
            np.copyto(dh, dh_new, where=mask[t])
            if kind == "lstm":
                np.copyto(dc, dc_new, where=mask[t])
    # weight gradients of the recurrent product, one GEMM over all steps each
    if kind == "lstm" and M is not None:  # h = M W_hr^T:  dW_hr = sum_t dh_t^T M_t
        cells.outer_sum_(grads["hr"], dHP.reshape(T * N, P), M.reshape(T * N, Hc))
    gH = dgh.shape[-1]
    if kind == "gru" and not w["reset_after"]:  # W_hn multiplies r * h_{t-1} (kept in HN)
        _sum_prev(grads["hh"][: 2 * P], dgh[..., : 2 * P], h0, H_all)
        cells.outer_sum_(grads["hh"][2 * P :], dgh[..., 2 * P :].reshape(T * N, P),
                         HN.reshape(T * N, P))
    else:
        _sum_prev(grads["hh"], dgh, h0, H_all)  # sum_t dgh_t^T h_{t-1}
    if kind == "gru":  # RNN / LSTM: b_hh joined the input GEMM, its gradient is the input side's
        grads["b_hh"] += dgh.reshape(T * N, gH).sum(axis=0)
    return dG, dh, (dc if kind == "lstm" else None)


def _sum_prev(out, dg, h0, H_all):
    """out += sum_t dg_t^T h_{t-1} with h_{-1} = h0, as two GEMMs (no concatenation)."""
    T, N, P = H_all.shape
    cells.outer_sum_(out, dg[0], h0)
    if T > 1:
        cells.outer_sum_(out, dg[1:].reshape((T - 1) * N, dg.shape[-1]),
                         H_all[:-1].reshape((T - 1) * N, P))
    return out


def _reverse_index(lengths, T, N):
    """Index (T, N) that reverses each sequence within its valid part and leaves padding in place."""
    t = np.arange(T)[:, None]
    return np.where(t < lengths[None, :], lengths[None, :] - 1 - t, t)


def _flip(a, rev):
    """a (T, N, F) with each sequence reversed in time: a view when all have length T, else a gather."""
    if rev is None:
        return a[::-1]
    return a[rev, np.arange(a.shape[1])[None, :]]


# ------------------------------------------------------------------------------------------
# The whole stack: layers x directions, for both drivers
# ------------------------------------------------------------------------------------------
def _weights(kind, params, layer, reverse, has_bias, proj, reset_after, stacked):
    """The weights of one direction of one layer, plus the per-call copies the loops run on:
    transposed contiguous, sigmoid columns halved (``cells.prepare_weights``), or with
    ``stacked`` the matrices of hidden-major inference (``cells.prepare_stacked``).  Fresh
    copies each call, so a cache never sees a later update of the parameters; inside
    ``frozen()`` the stacked ones are made once per scope (the parameters read-only meanwhile)."""
    sfx = f"_l{layer}" + ("_reverse" if reverse else "")
    if stacked:
        names = ["weight_ih", "weight_hh"] + ["bias_ih", "bias_hh"] * has_bias + ["weight_hr"] * proj
        return frozen.cached((kind, "stacked", reset_after), tuple(params[n + sfx] for n in names),
                             lambda: _make_weights(kind, params, sfx, has_bias, proj, reset_after,
                                                   stacked))
    return _make_weights(kind, params, sfx, has_bias, proj, reset_after, stacked)


def _make_weights(kind, params, sfx, has_bias, proj, reset_after, stacked):
    w = {"ih": params["weight_ih" + sfx], "hh": params["weight_hh" + sfx],
         "hr": params.get("weight_hr" + sfx) if proj else None, "reset_after": reset_after}
    gH = w["hh"].shape[0]
    zero = np.zeros(gH, w["hh"].dtype)
    b_ih = params["bias_ih" + sfx] if has_bias else zero
    b_hh = params["bias_hh" + sfx] if has_bias else zero
    # RNN and LSTM: both biases add before the nonlinearity, so they join the input GEMM.
    # GRU: so do b_hh's r and z blocks; with reset_after its n-block sits inside r * (.), so it
    # stays in the step.
    b_in = cells.gru_input_bias(b_ih, b_hh, reset_after) if kind == "gru" else b_ih + b_hh
    H = gH // GATES[kind]
    w["b_hn"] = b_hh[2 * H :] if kind == "gru" else None
    if not stacked:
        w["ih_t"], w["hh_t"], w["b_in"] = cells.prepare_weights(kind, w["ih"], w["hh"], b_in)
        w["hr_t"] = np.ascontiguousarray(w["hr"].T) if proj else None
    elif kind != "gru":
        w["stacked"] = cells.prepare_stacked(kind, w["ih"], b_in, w["hh"])
    else:
        w["in"] = cells.prepare_stacked(kind, w["ih"], b_in)
        if reset_after:
            w["rec"] = cells.prepare_stacked(kind, np.concatenate([zero[: 2 * H], w["b_hn"]]),
                                             w["hh"])
        else:
            w["rec"], w["hn"] = w["hh"][: 2 * H] * 0.5, w["hh"][2 * H :]
    return w


def _dropout_mask(shape, p, rng, dtype):
    """Inverted dropout between layers: keep with probability 1 - p, scaled by 1 / (1 - p); None
    when p = 0."""
    if p <= 0:
        return None
    return (rng.random(shape) >= p).astype(dtype) / dtype.type(1 - p)


def recurrent_forward(kind: str, x: np.ndarray, params: dict, *, num_layers: int = 1,
                      bidirectional: bool = False, state=None, lengths=None, dropout: float = 0.0,
                      training: bool = True, rng: np.random.Generator | None = None,
                      nonlinearity: str = "tanh", proj_size: int = 0, bias: bool = True,
                      reset_after: bool = True, keep_cache: bool = True):
    """Run a stacked (bi)directional RNN / LSTM / GRU (``kind``) with the parameters ``params``
    (torch's names).  Arguments are checked by the modules, which call this.

    x: (N, T, I); state: h or (h, c), each (L*D, N, P / H) or None; lengths: (N,) int64 or None.
    reset_after (GRU only): False selects Keras's form n = tanh(xg_n + (r * h) W_hn^T + b_hn).
    keep_cache=False (inference): the hidden-major driver, which stores nothing; the cache
    returned is None.
    Returns (y (N, T, D*P), final state like ``state``, cache for ``recurrent_backward``).
    """
    N, T, _ = x.shape
    D = 2 if bidirectional else 1
    dtype = x.dtype
    h0_all, c0_all = (state if kind == "lstm" else (state, None)) if state is not None else (None, None)
    fast = _accel.kernels(dtype)
    drop = dropout if training else 0.0
    if keep_cache:  # training: time-major (T, N, F) buffers, a cache for backward
        mask = None if lengths is None else (np.arange(T)[:, None] < lengths[None, :])[:, :, None]
        rev = None if lengths is None else _reverse_index(lengths, T, N)
        X, feature_axis = np.ascontiguousarray(x.transpose(1, 0, 2)), 2

        def direction(X, w, h0, c0, reverse):
            T, N, I = X.shape
            gH = w["ih_t"].shape[1]
            xg = _workspace.take((T, N, gH), dtype)
            np.matmul(X.reshape(T * N, I), w["ih_t"], out=xg.reshape(T * N, gH))  # (T, N, gH)
            xg += w["b_in"]
            pool = [xg]
            if reverse:
                xg = _flip(xg, rev)  # each sequence reversed within its valid part
            y, h, c, cache = _train_direction(kind, xg, h0, c0, w, mask, nonlinearity, fast, pool)
            return (_flip(y, rev) if reverse else y), h, c, cache
    else:  # inference: hidden-major (T, F, N) buffers, the batch sorted by length, no cache
        order, x, lengths, h0_all, c0_all = inference.sort_by_length(x, lengths, h0_all, c0_all)
        X, feature_axis = x.transpose(1, 2, 0), 1  # a view: the driver copies it into its buffer

        def direction(X, w, h0, c0, reverse):
            return (*inference.infer_direction(kind, X, h0, c0, w, lengths, nonlinearity, reverse,
                                               fast), None)

    # the layers x directions loop, the same for both drivers
    hn, cn, layers = [], [], []
    for layer in range(num_layers):
        def run(d, layer=layer, X=X):
            w = _weights(kind, params, layer, d == 1, bias, proj_size > 0, reset_after,
                         stacked=not keep_cache)
            k = layer * D + d
            h0 = h0_all[k] if h0_all is not None else np.zeros((N, w["hh"].shape[1]), dtype)
            c0 = None
            if kind == "lstm":
                c0 = c0_all[k] if c0_all is not None else np.zeros((N, w["hh"].shape[0] // 4), dtype)
            return direction(X, w, h0, c0, d == 1)

        # a bidirectional layer's directions side by side when there are two cores (_parallel)
        flops = 2.0 * T * N * params[f"weight_hh_l{layer}"].size  # one direction's recurrence
        done = _parallel.side_by_side([lambda d=d: run(d) for d in range(D)], flops)
        outs, caches = [r[0] for r in done], [r[3] for r in done]
        hn += [r[1] for r in done]
        cn += [r[2] for r in done]
        Y = outs[0] if D == 1 else np.concatenate(outs, axis=feature_axis)  # D*P features
        keep = _dropout_mask(Y.shape, drop, rng, dtype) if layer < num_layers - 1 else None
        if keep is not None:  # in training mode, with or without a cache
            Y = Y * keep
        if keep_cache:
            layers.append((X, caches, keep))
        X = Y
    if keep_cache:
        y, h_n = np.ascontiguousarray(X.transpose(1, 0, 2)), np.stack(hn)  # y (N, T, D*P)
        c_n = np.stack(cn) if kind == "lstm" else None
        cache = {"kind": kind, "layers": layers, "D": D, "rev": rev, "bias": bias, "params": params,
                 "lengths": lengths, "nonlinearity": nonlinearity}
    else:
        y, h_n, c_n = inference.unsort(X, hn, cn, order, lengths)
        cache = None
    return y, ((h_n, c_n) if kind == "lstm" else h_n), cache


def recurrent_backward(dy, dstate, cache, grads: dict):
    """Backward of ``recurrent_forward``.  dy like y; dstate like the final state, or None.

    Accumulates every parameter gradient into ``grads`` (torch names) and returns
    (dx (N, T, I), gradient of the initial state like ``state``).
    """
    kind, D, rev, params = cache["kind"], cache["D"], cache["rev"], cache["params"]
    dh_all, dc_all = (dstate if kind == "lstm" else (dstate, None)) if dstate is not None else (None, None)
    dY = np.ascontiguousarray(np.asarray(dy).transpose(1, 0, 2))  # (T, N, D*P)
    fast = _accel.kernels(dY.dtype)
    L = len(cache["layers"])
    probe = gradient_probe.active()  # recording the gradient flow (nothing to do when None)
    record = None if probe is None else probe.begin(cache)
    dh0, dc0 = [None] * (L * D), [None] * (L * D)
    for layer in range(L - 1, -1, -1):
        X, dir_caches, keep = cache["layers"][layer]
        if keep is not None:
            dY = dY * keep
        T, N, I = X.shape

        def run(d, layer=layer, X=X, dY=dY, dir_caches=dir_caches):
            c = dir_caches[d]
            P = c["H"].shape[-1]
            k = layer * D + d
            name = lambda base: f"{base}_l{layer}{'_reverse' if d else ''}"  # noqa: E731
            dy_d = dY[:, :, d * P : (d + 1) * P]
            g = {"hh": grads[name("weight_hh")],
                 "b_hh": np.zeros_like(grads[name("weight_hh")][:, 0]),
                 "hr": grads.get(name("weight_hr"))}
            dprobe = None if record is None else gradient_probe.DirectionProbe(
                record, layer, d == 1, c, top=layer == L - 1)
            dxg, dh, dc = _train_direction_backward(
                c, _flip(dy_d, rev) if d else dy_d, None if dh_all is None else dh_all[k],
                None if dc_all is None else dc_all[k], g, fast, dprobe)
            if d:
                dxg = _flip(dxg, rev)
            dxg2 = dxg.reshape(T * N, dxg.shape[-1])  # (T*N, gH)
            cells.outer_sum_(grads[name("weight_ih")], dxg2, X.reshape(T * N, I))  # one GEMM
            dX_d = (dxg2 @ params[name("weight_ih")]).reshape(T, N, I)  # (T, N, I)
            if cache["bias"]:
                db_in = dxg2.sum(axis=0)
                grads[name("bias_ih")] += db_in
                # RNN / LSTM: b_hh joined the input GEMM, so its gradient is the input side's
                grads[name("bias_hh")] += g["b_hh"] if kind == "gru" else db_in
            dh0[k], dc0[k] = dh, dc
            return dX_d, dprobe

        # the directions side by side when there are two cores (_parallel); each writes only its
        # own gradients, and what they share (dX, the probe's record) is joined here, in order
        flops = 2.0 * T * N * params[f"weight_hh_l{layer}"].size
        done = _parallel.side_by_side([lambda d=d: run(d) for d in range(D)], flops)
        dX = done[0][0]
        for d, (dX_d, dprobe) in enumerate(done):
            if d:
                dX += dX_d
            if dprobe is not None:
                dprobe.finish(rev)
            _workspace.give(*dir_caches[d]["pool"])  # the cache's and backward's buffers, done
        dY = dX
    dx = np.ascontiguousarray(dY.transpose(1, 0, 2))
    dh0 = np.stack(dh0)
    return dx, ((dh0, np.stack(dc0)) if kind == "lstm" else dh0)


# ------------------------------------------------------------------------------------------
# Modules
# ------------------------------------------------------------------------------------------
class _Recurrent(Module):
    """Stacked (bi)directional recurrent layer with torch's parameters; see DESIGN.md's contract."""

    kind = "rnn"

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 bidirectional: bool = False, dropout: float = 0.0, *, proj_size: int = 0,
                 nonlinearity: str = "tanh", reset_after: bool = True, dtype=np.float32,
                 rng: np.random.Generator | None = None) -> None:
        super().__init__()
        for label, v in (("input_size", input_size), ("hidden_size", hidden_size),
                         ("num_layers", num_layers)):
            if int(v) != v or v < 1:
                raise ValueError(f"{label} must be a positive integer, got {v!r}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        if proj_size < 0 or (proj_size and proj_size >= hidden_size):
            raise ValueError(f"proj_size must be in [0, hidden_size), got {proj_size}")
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
        if nonlinearity != "tanh" and self.kind != "rnn":
            raise ValueError(f"nonlinearity applies to RNN only, not {type(self).__name__}")
        if not reset_after and self.kind != "gru":
            raise ValueError(f"reset_after applies to GRU only, not {type(self).__name__}")
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        self.bias, self.bidirectional, self.dropout = bias, bidirectional, float(dropout)
        self.proj_size, self.nonlinearity, self.reset_after = proj_size, nonlinearity, reset_after
        self.dtype = check_dtype(dtype)
        self.rng = rng if rng is not None else np.random.default_rng()
        D, gH = (2 if bidirectional else 1), GATES[self.kind] * hidden_size
        P = proj_size or hidden_size
        for layer in range(num_layers):
            in_size = input_size if layer == 0 else D * P
            for sfx in ("", "_reverse")[:D]:
                shapes = {"weight_ih": (gH, in_size), "weight_hh": (gH, P)}
                if bias:
                    shapes.update(bias_ih=(gH,), bias_hh=(gH,))
                if proj_size:
                    shapes["weight_hr"] = (proj_size, hidden_size)
                for base, shape in shapes.items():
                    self._add_param(f"{base}_l{layer}{sfx}",
                                    torch_default(shape, hidden_size, self.rng, self.dtype))

    @property
    def num_directions(self) -> int:
        return 2 if self.bidirectional else 1

    @property
    def output_size(self) -> int:
        return self.num_directions * (self.proj_size or self.hidden_size)

    def _check_state(self, state, N, name, size):
        expected = (self.num_layers * self.num_directions, N, size)
        s = as_input(state, self.dtype, name)
        if s.shape != expected:
            raise ValueError(f"{name} has shape {s.shape}, expected {expected} "
                             "(num_layers * num_directions, N, hidden)")
        return s

    def forward(self, x, state=None, lengths=None):
        """x (N, T, I) -> (y (N, T, D*H), final state); see the module docstring for lengths."""
        x = as_input(x, self.dtype)
        if x.ndim != 3 or x.shape[2] != self.input_size:
            raise ValueError(f"{type(self).__name__} expects x of shape (N, T, {self.input_size}), "
                             f"got {x.shape}")
        N, T, _ = x.shape
        if T == 0:
            raise ValueError("x has no time steps (T = 0)")
        if lengths is not None:
            lengths = np.asarray(lengths)
            if lengths.shape != (N,) or not np.issubdtype(lengths.dtype, np.integer):
                raise ValueError(f"lengths must be an integer array of shape ({N},), "
                                 f"got {lengths.dtype} {lengths.shape}")
            if lengths.size and (lengths.min() < 0 or lengths.max() > T):
                raise ValueError(f"lengths must lie in [0, T={T}], got min {lengths.min()} "
                                 f"max {lengths.max()}")
            lengths = lengths.astype(np.int64)
        P = self.proj_size or self.hidden_size
        if state is not None:
            if self.kind == "lstm":
                if not isinstance(state, (tuple, list)) or len(state) != 2:
                    raise ValueError("LSTM state must be a pair (h, c)")
                state = (self._check_state(state[0], N, "h", P),
                         self._check_state(state[1], N, "c", self.hidden_size))
            else:
                state = self._check_state(state, N, "h", P)
        y, final, cache = recurrent_forward(
            self.kind, x, self.params, num_layers=self.num_layers,
            bidirectional=self.bidirectional, state=state, lengths=lengths,
            dropout=self.dropout, training=self.training, rng=self.rng,
            nonlinearity=self.nonlinearity, proj_size=self.proj_size, bias=self.bias,
            reset_after=self.reset_after, keep_cache=grad_enabled())
        self._push(cache)
        return y, final

    def backward(self, dy, dstate=None):
        """dy like y, dstate like the final state (or None) -> (dx, gradient of the initial state)."""
        cache = self._pop()
        return recurrent_backward(dy, dstate, cache, self.grads)

    def __repr__(self) -> str:
        extra = f", proj_size={self.proj_size}" if self.proj_size else ""
        return (f"{type(self).__name__}({self.input_size}, {self.hidden_size}, "
                f"num_layers={self.num_layers}, bidirectional={self.bidirectional}, "
                f"dropout={self.dropout}{extra}, dtype={self.dtype})")


class RNN(_Recurrent):
    """Elman RNN: h_t = act(x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh), act = tanh or relu."""

    kind = "rnn"

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1,
                 nonlinearity: str = "tanh", bias: bool = True, bidirectional: bool = False,
                 dropout: float = 0.0, **kw) -> None:
        super().__init__(input_size, hidden_size, num_layers, bias, bidirectional, dropout,
                         nonlinearity=nonlinearity, **kw)


class LSTM(_Recurrent):
    """LSTM (gate order i, f, g, o), optional projection ``proj_size`` as in torch."""

    kind = "lstm"


class GRU(_Recurrent):
    """GRU (gate order r, z, n).  ``reset_after=True`` (default) is torch's form, the reset gate
    after the recurrent matmul; ``reset_after=False`` is Keras's other form, reset before it."""

    kind = "gru"

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 bidirectional: bool = False, dropout: float = 0.0, reset_after: bool = True,
                 **kw) -> None:
        super().__init__(input_size, hidden_size, num_layers, bias, bidirectional, dropout,
                         reset_after=reset_after, **kw)


LAYERS = {"rnn": RNN, "lstm": LSTM, "gru": GRU}


def recurrent_layer(cell: str, *args, **kwargs) -> _Recurrent:
    """``RNN``, ``LSTM`` or ``GRU`` by its name ("rnn", "lstm", "gru"), built with the arguments."""
    if cell not in LAYERS:
        raise ValueError(f"cell must be one of {sorted(LAYERS)}, got {cell!r}")
    return LAYERS[cell](*args, **kwargs)
