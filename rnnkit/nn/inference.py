"""The inference driver: one direction of one layer in hidden-major layout, keeping no cache.

Buffers are time x features x batch, (T, F, N) (shapes legend in ``cells.py``), so a step's
product is (gH, K) @ (K, N), the layout OpenBLAS runs fastest at these sizes; training keeps the
batch-major layout its backward pass needs.  ``recurrent.recurrent_forward`` runs this driver
over layers and directions in the same loop as the training one; the element-wise math of every
step is the cells' (``cells.*_pointwise`` on transposed views, or their compiled twins).
Figures: docs/performance.md.

A padded batch runs sorted by length, longest first (``sort_by_length``), so the sequences still
running at step t are the first n_t columns and a step computes only those, as torch's packed
sequences do; ``unsort`` puts the outputs back in the caller's order.
"""
from __future__ import annotations

import numpy as np

from . import cells


def sort_by_length(x, lengths, h0_all, c0_all):
    """(order, x, lengths, h0_all, c0_all) with the batch sorted longest first; order is None
    (nothing moved) without lengths."""
    if lengths is None:
        return None, x, lengths, h0_all, c0_all
    order = np.argsort(-lengths, kind="stable")
    return (order, x[order], lengths[order], None if h0_all is None else h0_all[:, order],
            None if c0_all is None else c0_all[:, order])


def unsort(Y, hn, cn, order, lengths):
    """The last layer's output Y (T, D*P, N) and the final states back in batch-first layout and the
    caller's order, y (N, T, D*P) with 0 at padded steps (a reverse pass leaves h0 there)."""
    y, h_n = np.ascontiguousarray(Y.transpose(2, 0, 1)), np.stack(hn)
    c_n = None if cn[0] is None else np.stack(cn)
    if order is None:
        return y, h_n, c_n
    back = np.argsort(order)
    y = y[back]
    y *= (np.arange(y.shape[1])[None, :] < lengths[back][:, None])[:, :, None]
    return y, h_n[:, back], None if c_n is None else c_n[:, back]


def infer_direction(kind, X, h0, c0, w, lengths=None, nonlinearity="tanh", reverse=False,
                    fast=None):
    """Run one direction of one layer over X (T, I, N), without a cache.

    h0 (N, P), c0 (N, H) (LSTM) or None; lengths (N,) sorted longest first, or None; w: the
    stacked matrices of ``recurrent._weights``; fast: the compiled kernels or None.  One buffer
    holds every step's operand XH[t] = [x_t; 1; h_{t-1}], and each step writes its h straight
    into the next step's block, so the loop copies nothing.  An RNN or LSTM step is one GEMM
    for the input projection, the bias and the recurrence at once::

        a_t = [W_ih  b  W_hh] [x_t; 1; h_{t-1}]        (gH, K) @ (K, n_t)

    (sigmoid rows halved, ``cells.prepare_stacked``); a GRU step is two, the input part
    [W_ih  b] [x_t; 1] and the recurrent part [b_hn  W_hh] [1; h_{t-1}], since its reset gate
    multiplies only the latter.  The outputs of finished sequences are set to 0 and their state
    is the output at their last step.  ``reverse`` runs from each sequence's last valid step back
    to its first: the buffer takes x in reversed time, where the running sequences are again the
    first columns (those long enough to have started), and a sequence not yet started keeps h0
    in its slot; its outputs there are left as they are (``unsort`` zeroes padded steps once).
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
        pointwise = fast.gru_pointwise_hm if fast else cells.gru_pointwise_hm
    running = [N] * T
    if lengths is not None:
        running = np.searchsorted(-lengths, -np.arange(T), "left").tolist()  # lengths > t
    if reverse:
        running = running[::-1]
    for t in range(T):
        n = running[t]  # the sequences still running are the first n columns
        whole = n == N  # no column slicing then: the views cost a noticeable share of a small step
        h = Y[t + 1] if whole else Y[t + 1, :, :n]
        if kind == "rnn":
            np.matmul(w["stacked"], XH[t] if whole else XH[t, :, :n], out=h)  # (P, n)
            cells.rnn_pointwise(h, nonlinearity)
        elif kind == "lstm":
            g, c, tc = (G, C, TC) if whole else (G[:, :n], C[:, :n], TC[:, :n])
            m = M if M is None or whole else M[:, :n]
            np.matmul(w["stacked"], XH[t] if whole else XH[t, :, :n], out=g)  # (4H, n)
            pointwise(g, c, c, tc, h if m is None else m)
            if m is not None:
                np.matmul(w["hr"], m, out=h)  # h = W_hr m   (P, H) @ (H, n)
        else:  # gru: [W_ih  b] [x_t; 1] and [b_hn  W_hh] [1; h_{t-1}]
            g, gh, h_prev = G[:, :n], GH[:, :n], Y[t, :, :n]
            np.matmul(w["in"], XH[t, : I + 1, :n], out=g)  # (3P, n)
            if RH is None:
                np.matmul(w["rec"], XH[t, I:, :n], out=gh)  # (3P, n)
                pointwise(g, gh, h_prev, h)
            else:  # reset before: W_hn multiplies r * h_{t-1}, known only once r is
                np.matmul(w["rec"], h_prev, out=gh[: 2 * P])  # (2P, n)
                cells.gru_reset_update_(g.T, gh.T)
                rh = np.multiply(g[:P], h_prev, out=RH[:, :n])
                np.matmul(w["hn"], rh, out=gh[2 * P :])  # (P, n)
                cells.gru_new_state(g.T, gh[2 * P :].T, h_prev.T, h.T)
        if n < N:  # finished: output 0, the state stays at Y[length]; not started: h0
            Y[t + 1, :, n:] = h0[n:].T if reverse else 0
    h_T = Y[T].T.copy() if lengths is None or reverse else Y[lengths, :, np.arange(N)]
    return (Y[:0:-1] if reverse else Y[1:]), h_T, (C.T.copy() if kind == "lstm" else None)
