"""The recurrent driver: time, directions, layers, lengths and state for RNN, LSTM and GRU.

The cells (``cells.py``) know one time step; this module owns everything around it, in two
drivers with the same semantics and the same numbers up to rounding:

* **Training** (with a cache for backward), batch-major: the input projection of every time step
  is one GEMM before the loop, ``(T*N, I) @ (I, gH)``; the time loop runs over time-major buffers
  ``(T, N, ...)`` preallocated per sequence; padded steps keep the state by a mask and the reverse
  direction runs over each sequence's valid part by one gather; after the backward loop the
  weight gradients are one GEMM over all steps.
* **Inference** (no cache), hidden-major (``_infer_direction``): buffers are time x features x
  batch, so a step's product is (gH, K) @ (K, N), the layout OpenBLAS runs fastest; an RNN or
  LSTM step does its input projection, bias and recurrence in one GEMM; a padded batch runs
  sorted by length, so a step computes only the sequences still running.

``lengths`` (padded batches) follow torch's packed sequences: a sequence's state is frozen after
its last valid step, outputs at padded steps are exactly 0, and the reverse direction runs over
the valid part only.

``recurrent_forward`` / ``recurrent_backward`` are pure functions over a parameter dict; the
modules ``RNN``, ``LSTM`` and ``GRU`` wrap them with torch's parameter names and a cache stack.
"""
from __future__ import annotations

import numpy as np

from . import _accel, cells
from .init import torch_default
from .module import Module, as_input, check_dtype, grad_enabled

GATES = cells.GATES


# ------------------------------------------------------------------------------------------
# One direction of one layer over a whole sequence
# ------------------------------------------------------------------------------------------
def _run_direction(kind, xg, h0, c0, w, mask, nonlinearity, fast=None):
    """Run one cell over xg (T, N, gH) for training.  mask: (T, N, 1) bool or None.

    fast: the compiled kernels of ``_accel`` or None for the NumPy reference.
    Returns (outputs (T, N, P) with zeros at padded steps, h_T, c_T, cache for backward).
    """
    T, N, _ = xg.shape
    P = h0.shape[-1]
    dtype = xg.dtype
    H_all = np.empty((T, N, P), dtype)  # the state after each step (frozen at padded steps)
    cache = {"kind": kind, "mask": mask, "h0": h0, "H": H_all, "w": w, "act": nonlinearity}
    pad = None if mask is None else ~mask  # where the state stays frozen
    h, c = h0, c0
    if kind == "rnn":
        for t in range(T):
            cells.rnn_step(xg[t], h, w["hh_t"], nonlinearity, H_all[t])
            if mask is not None:
                np.copyto(H_all[t], h, where=pad[t])
            h = H_all[t]
    elif kind == "lstm":
        Hc = c0.shape[-1]
        G = cache["G"] = np.empty((T, N, 4 * Hc), dtype)
        C = cache["C"] = np.empty((T, N, Hc), dtype)
        TC = cache["TC"] = np.empty((T, N, Hc), dtype)
        M = cache["M"] = np.empty((T, N, Hc), dtype) if w["hr"] is not None else None
        cache["c0"] = c0
        pointwise = fast.lstm_pointwise if fast else cells.lstm_pointwise
        for t in range(T):
            cells.lstm_step(xg[t], h, c, w["hh_t"], w["hr_t"], G[t], C[t], TC[t],
                            H_all[t] if M is None else M[t], H_all[t], pointwise)
            if mask is not None:
                np.copyto(H_all[t], h, where=pad[t])
                np.copyto(C[t], c, where=pad[t])
            h, c = H_all[t], C[t]
    else:  # gru
        G = cache["G"] = np.empty((T, N, 3 * P), dtype)
        HN = cache["HN"] = np.empty((T, N, P), dtype)
        for t in range(T):
            cells.gru_step(xg[t], h, w["hh_t"], w["b_hn"], G[t], HN[t], H_all[t], w["reset_after"])
            if mask is not None:
                np.copyto(H_all[t], h, where=pad[t])
            h = H_all[t]
    y = H_all if mask is None else H_all * mask
    return y, h, c, cache


def _infer_direction(kind, X, h0, c0, w, lengths=None, nonlinearity="tanh", reverse=False,
                     fast=None):
    """Run one direction of one layer for inference, in hidden-major layout (time x features x
    batch), the layout OpenBLAS runs fastest for a step's product: (gH, K) @ (K, N) is about 20%
    faster than (N, K) @ (K, gH) at N = 64, H = 256.  Training keeps the batch-major layout its
    backward pass needs.

    X (T, I, N) input; h0 (N, P), c0 (N, H) (LSTM) or None; lengths (N,) sorted longest first, or
    None.  One buffer holds every step's operand XH[t] = [x_t; 1; h_{t-1}], and each step writes
    its h straight into the next step's block, so the loop copies nothing.  An RNN or LSTM step
    is one GEMM for the input projection, the recurrence and the bias at once::

        a_t = [W_ih  b  W_hh] [x_t; 1; h_{t-1}]        (gH, K) @ (K, N),  K = I + 1 + P

    (sigmoid rows halved, ``cells.prepare_stacked``); a GRU step is two, the input part
    [W_ih  b] [x_t; 1] and the recurrent part [b_hn  W_hh] [1; h_{t-1}], since its reset gate
    multiplies only the latter.  With lengths sorted longest first, the sequences still running
    at step t are the first ``n_t`` columns, so a step computes only those, as torch's packed
    sequences do; the outputs of finished sequences are set to 0 and their state is the output at
    their last step.  ``reverse`` runs from each sequence's last valid step back to its first: the
    buffer takes x in reversed time, where the running sequences are again the first columns
    (those long enough to have started), and a sequence not yet started keeps h0 in its slot;
    its outputs there are left as they are (the caller zeroes padded steps once, at the end).
    Returns (outputs (T, P, N) in time order, h_T (N, P), c_T (N, H) or None).
    """
    T, I, N = X.shape
    P = h0.shape[1]
    dtype = X.dtype
    XH = np.empty((T + 1, I + 1 + P, N), dtype)  # XH[t] = [x_t; 1; h_{t-1}]
    XH[:T, :I] = X[::-1] if reverse else X
    XH[:, I] = 1
    XH[0, I + 1 :] = h0.T
    Y = XH[:, I + 1 :]  # Y[t + 1] is h_t
    gH = w["hh"].shape[0]
    G = np.empty((gH, N), dtype)
    if kind == "lstm":
        Hc = c0.shape[1]
        C = np.ascontiguousarray(c0.T)  # (H, N), updated in place: it freezes by itself
        TC = np.empty((Hc, N), dtype)
        M = np.empty((Hc, N), dtype) if w["hr"] is not None else None
        pointwise = fast.lstm_pointwise_hm if fast else cells.lstm_pointwise_hm
    elif kind == "gru":
        GH = np.empty((gH, N), dtype)
        RH = None if w["reset_after"] else np.empty((P, N), dtype)
        pointwise = fast.gru_pointwise_hm if fast and w["reset_after"] else cells.gru_pointwise_hm
    running = [N] * T
    if lengths is not None:
        running = np.searchsorted(-lengths, -np.arange(T), "left").tolist()  # lengths > t
    if reverse:
        running = running[::-1]
    for t in range(T):
        n = running[t]  # the sequences still running are the first n columns
        if kind == "rnn":
            h = Y[t + 1, :, :n]
            np.matmul(w["stacked"], XH[t, :, :n], out=h)
            if nonlinearity == "tanh":
                np.tanh(h, out=h)
            else:
                np.maximum(h, 0, out=h)
        elif kind == "lstm":
            if n == N:  # the whole batch (no slicing: at N = 1 the views cost ~10% of a step)
                g, c, tc, m, h = G, C, TC, M, Y[t + 1]
            else:
                g, c, tc, h = G[:, :n], C[:, :n], TC[:, :n], Y[t + 1, :, :n]
                m = None if M is None else M[:, :n]
            np.matmul(w["stacked"], XH[t] if n == N else XH[t, :, :n], out=g)
            pointwise(g, c, c, tc, h if m is None else m)
            if m is not None:
                np.matmul(w["hr"], m, out=h)  # h = W_hr m   (P, H) @ (H, n)
        else:  # gru: [W_ih  b] [x_t; 1] and [b_hn  W_hh] [1; h_{t-1}] (or W_hh's r, z rows alone)
            h, g = Y[t + 1, :, :n], G[:, :n]
            np.matmul(w["in"], XH[t, : I + 1, :n], out=g)
            if RH is None:
                np.matmul(w["rec"], XH[t, I:, :n], out=GH[:, :n])
                pointwise(g, GH[:, :n], Y[t, :, :n], h)
            else:
                np.matmul(w["rec"], Y[t, :, :n], out=GH[: 2 * P, :n])
                pointwise(g, GH[:, :n], Y[t, :, :n], h, w["hn"], RH[:, :n])
        if n < N:  # finished: output 0, the state stays at Y[length]; not started: h0
            Y[t + 1, :, n:] = h0[n:].T if reverse else 0
    h_T = Y[T].T.copy() if lengths is None or reverse else Y[lengths, :, np.arange(N)]
    return (Y[:0:-1] if reverse else Y[1:]), h_T, (C.T.copy() if kind == "lstm" else None)


def _backward_direction(cache, dy, dh, dc, grads, fast=None):
    """Backward through time for one direction.  dy: (T, N, P) gradient of the outputs.

    Accumulates the recurrent weight gradients into ``grads`` (keys hh, b_hh, hr) and returns
    (dxg (T, N, gH) input-side pre-activation gradients, dh0, dc0).
    At a padded step the state passed through unchanged: its gate gradients are zeroed and dh, dc
    flow straight back (the step's dh_prev is kept only where ``mask``).
    """
    kind, mask, w, H_all, h0 = cache["kind"], cache["mask"], cache["w"], cache["H"], cache["h0"]
    T, N, P = H_all.shape
    dtype = H_all.dtype
    if mask is not None:
        dy = dy * mask  # outputs at padded steps are constants (0): their gradient is ignored
    dh = np.zeros_like(h0) if dh is None else np.array(dh, dtype, copy=True)  # (N, P), in place
    dh_new = np.empty_like(dh)  # dh_prev of a step (copied into dh where the mask is set)
    H_prev = lambda t: H_all[t - 1] if t > 0 else h0  # noqa: E731
    if kind == "rnn":
        dG = np.empty((T, N, P), dtype)
        pointwise = fast.rnn_pointwise_backward if fast else cells.rnn_pointwise_backward
        for t in range(T - 1, -1, -1):
            dh += dy[t]
            cells.rnn_step_backward(dh, H_all[t], w["hh"], cache["act"], dG[t], dh_new, pointwise)
            dh, dh_new = _pass_through(dG, t, mask, dh_new, dh)
        dgh = dG
    elif kind == "lstm":
        G, C, TC, M, c0 = cache["G"], cache["C"], cache["TC"], cache["M"], cache["c0"]
        Hc = c0.shape[-1]
        dc = np.zeros_like(c0) if dc is None else np.array(dc, dtype, copy=True)  # (N, H), in place
        dc_new = dc if mask is None else np.empty_like(dc)
        dG, tmp = np.empty_like(G), np.empty((N, 4 * Hc), dtype)
        dHP = np.empty((T, N, P), dtype) if M is not None else None
        dm = np.empty((N, Hc), dtype) if M is not None else None
        pointwise = fast.lstm_pointwise_backward if fast else cells.lstm_pointwise_backward
        for t in range(T - 1, -1, -1):
            dh += dy[t]
            if dHP is not None:
                np.multiply(dh, 1 if mask is None else mask[t], out=dHP[t])
            cells.lstm_step_backward(dh, dc, G[t], C[t - 1] if t > 0 else c0, TC[t], w["hh"],
                                     w["hr"], dG[t], dc_new, dh_new, dm, tmp, pointwise)
            dh, dh_new = _pass_through(dG, t, mask, dh_new, dh)
            if mask is not None:
                np.copyto(dc, dc_new, where=mask[t])
        if M is not None:  # h = M W_hr^T:  dW_hr = sum_t dh_t^T M_t, one GEMM
            cells.outer_sum_(grads["hr"], dHP.reshape(T * N, P), M.reshape(T * N, M.shape[-1]))
        dgh = dG
    else:  # gru
        G, HN = cache["G"], cache["HN"]
        dG, dgh, tmp = np.empty_like(G), np.empty_like(G), np.empty((N, P), dtype)
        pointwise = fast.gru_pointwise_backward if fast else cells.gru_pointwise_backward
        for t in range(T - 1, -1, -1):
            dh += dy[t]
            cells.gru_step_backward(dh, H_prev(t), G[t], HN[t], w["hh"], dG[t], dgh[t], dh_new,
                                    tmp, w["reset_after"], pointwise)
            if mask is not None:
                dgh[t] *= mask[t]
            dh, dh_new = _pass_through(dG, t, mask, dh_new, dh)
    # weight gradient of the recurrent matmul: sum_t dgh_t^T h_{t-1}, one GEMM over all steps
    gH = dgh.shape[-1]
    if kind == "gru" and not w["reset_after"]:  # the n-block multiplies r * h_{t-1} (kept in HN)
        H = gH // 3
        _sum_prev(grads["hh"][: 2 * H], dgh[..., : 2 * H], h0, H_all)
        cells.outer_sum_(grads["hh"][2 * H :], dgh[..., 2 * H :].reshape(T * N, H),
                         cache["HN"].reshape(T * N, H))
    else:
        _sum_prev(grads["hh"], dgh, h0, H_all)
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


def _pass_through(dG, t, mask, dh_new, dh):
    """(dh, spare buffer) for step t-1: dh is the step's dh_prev, or at padded steps dh itself
    (and no gate gradient there).  Without a mask the two buffers just swap roles."""
    if mask is None:
        return dh_new, dh
    dG[t] *= mask[t]
    np.copyto(dh, dh_new, where=mask[t])
    return dh, dh_new


# ------------------------------------------------------------------------------------------
# Whole stack: layers x directions
# ------------------------------------------------------------------------------------------
def _reverse_index(lengths, T, N):
    """Index (T, N) that reverses each sequence within its valid part and leaves padding in place."""
    t = np.arange(T)[:, None]
    return np.where(t < lengths[None, :], lengths[None, :] - 1 - t, t)


def _flip(a, rev):
    """a (T, N, F) with each sequence reversed in time: a view when all have length T, else a gather."""
    if rev is None:
        return a[::-1]
    return a[rev, np.arange(a.shape[1])[None, :]]


def _weights(kind, params, layer, sfx, has_bias, proj, reset_after=True, stacked=False):
    """The weights of one direction of one layer, plus the per-call copies the loops run on:
    transposed contiguous, sigmoid columns halved (``cells.prepare_weights``), or with
    ``stacked`` the one matrix of hidden-major inference (``cells.prepare_stacked``).  Fresh
    copies each call, so a cache never sees a later update of the parameters."""
    w = {"ih": params[f"weight_ih_l{layer}{sfx}"], "hh": params[f"weight_hh_l{layer}{sfx}"],
         "hr": params.get(f"weight_hr_l{layer}{sfx}") if proj else None}
    gH = w["hh"].shape[0]
    zero = np.zeros(gH, w["hh"].dtype)
    b_ih = params[f"bias_ih_l{layer}{sfx}"] if has_bias else zero
    b_hh = params[f"bias_hh_l{layer}{sfx}"] if has_bias else zero
    # RNN and LSTM: both biases add before the nonlinearity, so they join the input GEMM.
    # GRU: so do b_hh's r and z blocks; with reset_after its n-block sits inside r * (.), so it
    # stays in the step.
    b_in = cells.gru_input_bias(b_ih, b_hh, reset_after) if kind == "gru" else b_ih + b_hh
    if stacked and kind != "gru":
        w["stacked"] = cells.prepare_stacked(kind, w["ih"], b_in, w["hh"])
    elif stacked:
        H = gH // 3
        w["in"] = cells.prepare_stacked(kind, w["ih"], b_in)
        if reset_after:
            w["rec"] = cells.prepare_stacked(kind, np.concatenate([zero[: 2 * H], b_hh[2 * H :]]),
                                             w["hh"])
        else:
            w["rec"], w["hn"] = w["hh"][: 2 * H] * 0.5, w["hh"][2 * H :]
    else:
        w["ih_t"], w["hh_t"], w["b_in"] = cells.prepare_weights(kind, w["ih"], w["hh"], b_in)
    w["hr_t"] = np.ascontiguousarray(w["hr"].T) if proj else None
    w["b_hn"] = b_hh[2 * (gH // 3) :] if kind == "gru" else None
    w["reset_after"] = reset_after
    return w


def recurrent_forward(kind: str, x: np.ndarray, params: dict, *, num_layers: int = 1,
                      bidirectional: bool = False, state=None, lengths=None, dropout: float = 0.0,
                      training: bool = True, rng: np.random.Generator | None = None,
                      nonlinearity: str = "tanh", proj_size: int = 0, bias: bool = True,
                      reset_after: bool = True, keep_cache: bool = True):
    """Run a stacked (bi)directional RNN / LSTM / GRU.  Arguments are checked by the modules.

    x: (N, T, I); state: h or (h, c), each (L*D, N, H) or None; lengths: (N,) int or None.
    reset_after (GRU only): False selects Keras's form n = tanh(xg_n + (r * h) W_hn^T + b_hn).
    keep_cache=False (inference): store nothing for backward (the hidden-major driver); the cache
    returned is None.
    Returns (y (N, T, D*P), final state like ``state``, cache).
    """
    N, T, _ = x.shape
    D = 2 if bidirectional else 1
    dtype = x.dtype
    h0_all, c0_all = (state if kind == "lstm" else (state, None)) if state is not None else (None, None)
    fast = _accel.kernels(dtype)
    drop = dropout if training else 0.0
    if not keep_cache:
        y, final = _stack_inference(kind, x, params, num_layers, D, h0_all, c0_all, lengths, bias,
                                    proj_size > 0, reset_after, nonlinearity, drop, rng, fast)
        return y, final, None
    mask = None if lengths is None else (np.arange(T)[:, None] < lengths[None, :])[:, :, None]
    rev = None if lengths is None else _reverse_index(lengths, T, N)
    X = np.ascontiguousarray(x.transpose(1, 0, 2))  # (T, N, I) time-major for the loop
    hn, cn, layer_caches = [], [], []
    for layer in range(num_layers):
        I = X.shape[-1]
        dir_caches, outs = [], []
        for d in range(D):
            sfx = "_reverse" if d else ""
            w = _weights(kind, params, layer, sfx, bias, proj_size > 0, reset_after)
            P = w["hh"].shape[1]
            Hc = w["hh"].shape[0] // GATES[kind]
            k = layer * D + d
            h0 = h0_all[k] if h0_all is not None else np.zeros((N, P), dtype)
            c0 = None
            if kind == "lstm":
                c0 = c0_all[k] if c0_all is not None else np.zeros((N, Hc), dtype)
            xg = (X.reshape(T * N, I) @ w["ih_t"]).reshape(T, N, w["ih_t"].shape[1])
            xg += w["b_in"]
            if d:
                xg = _flip(xg, rev)  # each sequence reversed within its valid part
            y, h, c, cache = _run_direction(kind, xg, h0, c0, w, mask, nonlinearity, fast)
            if d:
                y = _flip(y, rev)
            outs.append(y)
            hn.append(h)
            cn.append(c)
            dir_caches.append(cache)
        Y = outs[0] if D == 1 else np.concatenate(outs, axis=-1)  # (T, N, D*P)
        drop_mask = _dropout_mask(Y.shape, drop, rng, dtype) if layer < num_layers - 1 else None
        if drop_mask is not None:
            Y = Y * drop_mask
        layer_caches.append((X, dir_caches, drop_mask))
        X = Y
    y = np.ascontiguousarray(X.transpose(1, 0, 2))  # (N, T, D*P)
    h_n = np.stack(hn)
    final = (h_n, np.stack(cn)) if kind == "lstm" else h_n
    cache = {"kind": kind, "layers": layer_caches, "D": D, "rev": rev,
             "bias": bias, "proj": proj_size > 0, "params": params}
    return y, final, cache


def _dropout_mask(shape, p, rng, dtype):
    """Inverted dropout between layers: keep with probability 1 - p, scaled by 1 / (1 - p); None
    when p = 0."""
    if p <= 0:
        return None
    return (rng.random(shape) >= p).astype(dtype) / dtype.type(1 - p)


def _stack_inference(kind, x, params, num_layers, D, h0_all, c0_all, lengths, bias, proj,
                     reset_after, nonlinearity, dropout, rng, fast):
    """``recurrent_forward`` without a cache, layer after layer in the hidden-major layout of
    ``_infer_direction`` (time x features x batch): each layer's outputs are the next layer's
    inputs as they are, and the only transposes are of x and of the final y.  With lengths, the
    batch runs sorted longest first and is put back in order at the end."""
    N, T, _ = x.shape
    order = None
    if lengths is not None:
        order = np.argsort(-lengths, kind="stable")
        x, lengths = x[order], lengths[order]
        h0_all = None if h0_all is None else h0_all[:, order]
        c0_all = None if c0_all is None else c0_all[:, order]
    X = x.transpose(1, 2, 0)  # (T, I, N), a view: _infer_direction copies it into its buffer
    hn, cn = [], []
    for layer in range(num_layers):
        outs = []
        for d in range(D):
            w = _weights(kind, params, layer, "_reverse" if d else "", bias, proj, reset_after,
                         stacked=True)
            k = layer * D + d
            P = w["hh"].shape[1]
            h0 = h0_all[k] if h0_all is not None else np.zeros((N, P), x.dtype)
            c0 = None
            if kind == "lstm":
                c0 = c0_all[k] if c0_all is not None else np.zeros((N, w["hh"].shape[0] // 4),
                                                                   x.dtype)
            Y, h, c = _infer_direction(kind, X, h0, c0, w, lengths, nonlinearity, d == 1, fast)
            outs.append(Y)
            hn.append(h)
            cn.append(c)
        X = outs[0] if D == 1 else np.concatenate(outs, axis=1)  # (T, D*P, N)
        drop_mask = _dropout_mask(X.shape, dropout, rng, x.dtype) if layer < num_layers - 1 else None
        if drop_mask is not None:  # in training mode without gradients (no_grad)
            X = X * drop_mask
    y, h_n = np.ascontiguousarray(X.transpose(2, 0, 1)), np.stack(hn)  # y (N, T, D*P)
    back = slice(None) if order is None else np.argsort(order)
    if order is not None:  # back in the caller's order, 0 at padded steps (a reverse pass leaves h0)
        y = y[back]
        y *= (np.arange(T)[None, :] < lengths[back][:, None])[:, :, None]
    return y, ((h_n[:, back], np.stack(cn)[:, back]) if kind == "lstm" else h_n[:, back])


def recurrent_backward(dy, dstate, cache, grads: dict):
    """Backward of ``recurrent_forward``.  dy like y; dstate like the final state or None.

    Accumulates every parameter gradient into ``grads`` (torch names) and returns
    (dx (N, T, I), gradient of the initial state like ``state``).
    """
    kind, D, rev = cache["kind"], cache["D"], cache["rev"]
    params = cache["params"]
    dh_all, dc_all = (dstate if kind == "lstm" else (dstate, None)) if dstate is not None else (None, None)
    dY = np.ascontiguousarray(np.asarray(dy).transpose(1, 0, 2))  # (T, N, D*P)
    fast = _accel.kernels(dY.dtype)
    L = len(cache["layers"])
    dh0 = [None] * (L * D)
    dc0 = [None] * (L * D)
    for layer in range(L - 1, -1, -1):
        X, dir_caches, drop_mask = cache["layers"][layer]
        if drop_mask is not None:
            dY = dY * drop_mask
        T, N, I = X.shape
        dX = None
        for d in range(D):
            sfx = "_reverse" if d else ""
            c = dir_caches[d]
            P = c["H"].shape[-1]
            k = layer * D + d
            dy_d = dY[:, :, d * P : (d + 1) * P]
            if d:
                dy_d = _flip(dy_d, rev)
            name = lambda base: f"{base}_l{layer}{sfx}"  # noqa: E731
            g = {"hh": grads[name("weight_hh")],
                 "b_hh": np.zeros_like(grads[name("weight_hh")][:, 0]),
                 "hr": grads.get(name("weight_hr"))}
            dxg, dh, dc = _backward_direction(
                c, dy_d, None if dh_all is None else dh_all[k],
                None if dc_all is None else dc_all[k], g, fast)
            if d:
                dxg = _flip(dxg, rev)
            gH = dxg.shape[-1]
            dxg2 = dxg.reshape(T * N, gH)
            cells.outer_sum_(grads[name("weight_ih")], dxg2, X.reshape(T * N, I))  # one GEMM
            dX_d = (dxg2 @ params[name("weight_ih")]).reshape(T, N, I)  # (T, N, I)
            if dX is None:
                dX = dX_d
            else:
                dX += dX_d
            if cache["bias"]:
                db_in = dxg2.sum(axis=0)
                grads[name("bias_ih")] += db_in
                # RNN / LSTM: b_hh joined the input GEMM, so its gradient is the input side's
                grads[name("bias_hh")] += g["b_hh"] if kind == "gru" else db_in
            dh0[k], dc0[k] = dh, dc
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


def _functional(kind):
    def forward(x, params, **options):
        return recurrent_forward(kind, x, params, **options)
    forward.__doc__ = f"Pure {kind.upper()} forward: see ``recurrent_forward``."
    forward.__name__ = f"{kind}_forward"
    return forward


rnn_forward, lstm_forward, gru_forward = (_functional(k) for k in ("rnn", "lstm", "gru"))
rnn_backward = lstm_backward = gru_backward = recurrent_backward
