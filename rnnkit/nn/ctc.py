"""Connectionist temporal classification (CTC) loss, forward and backward, in log space.

The input is **logits** (N, T, C), batch-first like the rest of rnnkit; the log-softmax over the
C classes is part of the loss (``log_probs = log_softmax(logits)``), so ``backward`` returns the
gradient with respect to the logits.  (Why not log-probabilities as torch takes them: torch's
gradient "with respect to log_probs" silently assumes they came out of a log-softmax - it is the
logits' gradient - so taking logits states the same thing honestly.)  The loss equals
``torch.nn.functional.ctc_loss(log_softmax(logits).transpose(0, 1), ...)`` with its gradient
flowing back to the logits.

For one sequence with labels l (length S) the blank-extended labels are
l' = (b, l_1, b, l_2, ..., b, l_S, b), length L' = 2S + 1, and y_t(k) = softmax(z_t)_k::

    alpha_0(0) = y_0(b),  alpha_0(1) = y_0(l_1)
    alpha_t(s) = y_t(l'_s) [alpha_{t-1}(s) + alpha_{t-1}(s-1) + [l'_s != b, l'_s != l'_{s-2}] alpha_{t-1}(s-2)]
    beta_{T-1}(L'-1) = y_{T-1}(b),  beta_{T-1}(L'-2) = y_{T-1}(l_S)
    beta_t(s)  = y_t(l'_s) [beta_{t+1}(s) + beta_{t+1}(s+1) + [l'_{s+2} != b, l'_{s+2} != l'_s] beta_{t+1}(s+2)]
    p(l | x) = alpha_{T-1}(L'-1) + alpha_{T-1}(L'-2),     loss = -log p(l | x)
    dloss/dz_t(k) = y_t(k) - 1/(p y_t(k)) sum_{s: l'_s = k} alpha_t(s) beta_t(s)

everything computed with log-sum-exp (alpha, beta hold logarithms).  The batch is vectorised:
the only Python loop is over time.  Reductions follow torch: 'none' gives (N,), 'sum' the sum,
'mean' divides each loss by its target length (at least 1) and averages over the batch.  A pair
that cannot be aligned (a target longer than the frames allow, counting the blank needed between
repeated labels) has an infinite loss and, as in torch, a NaN gradient - unless
``zero_infinity=True``, which makes both 0.  An empty target is the all-blank path.
"""
from __future__ import annotations

import numpy as np

from .losses import _check_reduction, log_softmax
from .module import Module

NEG_INF = -np.inf


def _lse3(a, b, c):
    """log(exp a + exp b + exp c) element-wise, exact for -inf entries (no warnings)."""
    m = np.maximum(np.maximum(a, b), c)
    finite = np.isfinite(m)
    ms = np.where(finite, m, 0.0)
    with np.errstate(divide="ignore"):  # log 0 = -inf where all three are -inf
        return np.where(finite, ms + np.log(np.exp(a - ms) + np.exp(b - ms) + np.exp(c - ms)), NEG_INF)


def _targets_2d(targets, target_lengths, N):
    """Targets as padded (N, S) ints, from (N, S) padded or torch's 1-D concatenated form."""
    targets = np.asarray(targets)
    if targets.size == 0:
        targets = targets.reshape(N, 0) if targets.ndim == 2 else targets.astype(np.int64)
    if not np.issubdtype(targets.dtype, np.integer):
        raise ValueError(f"targets must be integers, got dtype {targets.dtype}")
    if targets.ndim == 2:
        if targets.shape[0] != N:
            raise ValueError(f"targets has {targets.shape[0]} rows for a batch of {N}")
        if np.any(target_lengths > targets.shape[1]):
            raise ValueError(f"target_lengths exceed the padded target width {targets.shape[1]}")
        return targets.astype(np.int64)
    if targets.ndim != 1:
        raise ValueError(f"targets must be (N, S) padded or 1-D concatenated, got shape {targets.shape}")
    if targets.shape[0] != target_lengths.sum():
        raise ValueError(f"concatenated targets have {targets.shape[0]} labels but target_lengths "
                         f"sum to {int(target_lengths.sum())}")
    S = int(target_lengths.max()) if N else 0
    out = np.zeros((N, S), np.int64)
    starts = np.concatenate([[0], np.cumsum(target_lengths)[:-1]]).astype(np.int64)
    for n in range(N):  # only reshapes the labels; the lattice below is batched
        out[n, : target_lengths[n]] = targets[starts[n] : starts[n] + target_lengths[n]]
    return out


def _lengths(x, N, bound, name):
    x = np.asarray(x)
    if x.shape != (N,) or not np.issubdtype(x.dtype, np.integer):
        raise ValueError(f"{name} must be {N} integers, got shape {x.shape} dtype {x.dtype}")
    if N and (x.min() < 0 or (bound is not None and x.max() > bound)):
        raise ValueError(f"{name} must lie in [0, {bound}], got min {x.min()} max {x.max()}")
    return x.astype(np.int64)


def ctc_lattice(logp, ext, allow_skip, input_lengths, ext_lengths):
    """Log alpha and log beta (each (T, N, L')) for log-probabilities ``logp`` (T, N, C) float64.

    ext: (N, L') blank-extended labels; allow_skip: (N, L') whether s-2 -> s is allowed;
    positions s >= ext_lengths[n] and times t >= input_lengths[n] stay -inf.
    """
    T, N, _ = logp.shape
    Lp = ext.shape[1]
    lpe = np.take_along_axis(logp, np.broadcast_to(ext[None], (T, N, Lp)), axis=2)  # (T, N, L')
    s_idx = np.arange(Lp)
    inside = s_idx[None, :] < ext_lengths[:, None]  # (N, L')
    lpe = np.where(inside[None], lpe, NEG_INF)
    alpha = np.full((T, N, Lp), NEG_INF)
    beta = np.full((T, N, Lp), NEG_INF)
    skip = np.where(allow_skip, 0.0, NEG_INF)  # log of the indicator
    if T == 0:
        return alpha, beta, lpe
    alpha[0, :, :2] = lpe[0, :, :2]
    neg = np.full((N, 1), NEG_INF)
    for t in range(1, T):
        a = alpha[t - 1]
        a1 = np.concatenate([neg, a[:, :-1]], axis=1)  # alpha_{t-1}(s-1)
        a2 = np.concatenate([neg, neg, a[:, :-2]], axis=1)[:, :Lp] + skip  # alpha_{t-1}(s-2)
        alpha[t] = lpe[t] + _lse3(a, a1, a2)
    # beta: start at each sequence's own last frame; frames after it stay -inf
    last = input_lengths - 1
    init = np.full((N, Lp), NEG_INF)
    ends = (s_idx[None, :] >= ext_lengths[:, None] - 2) & inside
    skip_next = np.concatenate([skip[:, 2:], np.full((N, 2), NEG_INF)], axis=1)[:, :Lp]  # at s+2
    for t in range(T - 1, -1, -1):
        if t == T - 1:
            rec = init
        else:
            b = beta[t + 1]
            b1 = np.concatenate([b[:, 1:], neg], axis=1)
            b2 = np.concatenate([b[:, 2:], neg, neg], axis=1)[:, :Lp] + skip_next
            rec = lpe[t] + _lse3(b, b1, b2)
        start = np.where(ends, lpe[t], NEG_INF)
        beta[t] = np.where((t == last)[:, None], start, np.where((t < last)[:, None], rec, NEG_INF))
    return alpha, beta, lpe


class CTCLoss(Module):
    """CTC loss on logits: ``forward(logits (N, T, C), targets, input_lengths, target_lengths)``.

    targets: (N, S) padded integers (entries past a target's length are ignored) or torch's 1-D
    concatenation; labels in [0, C) and never ``blank``.  input_lengths: (N,) in [0, T];
    target_lengths: (N,).  ``backward(dloss=1)`` returns dloss/dlogits (N, T, C), 0 at frames
    past a sequence's input length.  The lattice runs in float64 whatever the logits' dtype; the
    loss and gradient come back in the logits' dtype.
    """

    def __init__(self, blank: int = 0, reduction: str = "mean", zero_infinity: bool = False) -> None:
        super().__init__()
        self.blank, self.reduction = int(blank), _check_reduction(reduction)
        self.zero_infinity = bool(zero_infinity)

    def forward(self, logits, targets, input_lengths, target_lengths):
        logits = np.asarray(logits)
        if logits.ndim != 3 or logits.dtype.kind != "f":
            raise ValueError(f"logits must be a float (N, T, C) array, got shape {logits.shape} "
                             f"dtype {logits.dtype}")
        N, T, C = logits.shape
        if not 0 <= self.blank < C:
            raise ValueError(f"blank {self.blank} outside [0, {C})")
        input_lengths = _lengths(input_lengths, N, T, "input_lengths")
        target_lengths = _lengths(target_lengths, N, None, "target_lengths")
        tg = _targets_2d(targets, target_lengths, N)
        S = tg.shape[1]
        valid = np.arange(S)[None, :] < target_lengths[:, None]
        if np.any(valid & ((tg < 0) | (tg >= C))):
            raise ValueError(f"target labels must lie in [0, {C})")
        if np.any(valid & (tg == self.blank)):
            raise ValueError(f"targets contain the blank index {self.blank}")
        tg = np.where(valid, tg, self.blank)
        # blank-extended labels (N, 2S+1) and where the s-2 -> s skip is allowed
        Lp = 2 * S + 1
        ext = np.full((N, Lp), self.blank, np.int64)
        ext[:, 1::2] = tg
        allow = np.zeros((N, Lp), bool)
        allow[:, 3::2] = tg[:, 1:] != tg[:, :-1]
        ext_lengths = 2 * target_lengths + 1

        logp = log_softmax(logits.astype(np.float64), axis=-1).transpose(1, 0, 2)  # (T, N, C)
        alpha, beta, lpe = ctc_lattice(logp, ext, allow, input_lengths, ext_lengths)
        n_idx = np.arange(N)
        tl = np.maximum(input_lengths - 1, 0)
        a_end = alpha[tl, n_idx]  # (N, L') at each sequence's last frame
        e = ext_lengths
        last2 = np.where(e >= 2, a_end[n_idx, np.maximum(e - 2, 0)], NEG_INF)
        logp_path = np.logaddexp(a_end[n_idx, e - 1], last2)
        # no frames: only the empty target is possible, with probability 1
        logp_path = np.where(input_lengths == 0, np.where(target_lengths == 0, 0.0, NEG_INF), logp_path)
        nll = -logp_path  # (N,)
        infinite = ~np.isfinite(nll)
        if self.zero_infinity:
            nll = np.where(infinite, 0.0, nll)

        if self.reduction == "none":
            loss = nll.astype(logits.dtype)
            scale = np.ones(N)
        elif self.reduction == "sum":
            loss = logits.dtype.type(nll.sum())
            scale = np.ones(N)
        else:
            scale = 1.0 / (np.maximum(target_lengths, 1) * max(N, 1))
            loss = logits.dtype.type((nll * scale).sum()) if N else logits.dtype.type(np.nan)
        self._push((logp, alpha, beta, ext, nll, infinite, input_lengths, scale, logits.dtype))
        return loss

    def backward(self, dloss=1.0):
        logp, alpha, beta, ext, nll, infinite, input_lengths, scale, dtype = self._pop()
        T, N, C = logp.shape
        # posterior occupancy of each extended label: alpha beta / (p y) in log space
        safe_nll = np.where(infinite, 0.0, nll)
        lpe = np.take_along_axis(logp, np.broadcast_to(ext[None], alpha.shape), axis=2)
        with np.errstate(invalid="ignore"):  # -inf - (-inf) only at unreachable entries
            log_occ = alpha + beta - lpe + safe_nll[None, :, None]
        log_occ = np.where(np.isfinite(alpha) & np.isfinite(beta), log_occ, NEG_INF)
        occ = np.exp(log_occ)  # (T, N, L'), sums to 1 over s at each valid frame
        onehot = np.zeros((N, ext.shape[1], C))
        np.put_along_axis(onehot, ext[:, :, None], 1.0, axis=2)
        post = np.einsum("tns,nsc->tnc", occ, onehot)  # (T, N, C) summed over s with l'_s = k
        grad = np.exp(logp) - post
        # as torch: an impossible alignment has a NaN gradient (0 with zero_infinity) at its frames
        grad[:, infinite] = 0.0 if self.zero_infinity else np.nan
        frames = np.arange(T)[:, None] < input_lengths[None, :]  # (T, N)
        grad = np.where(frames[:, :, None], grad, 0.0)
        d = np.asarray(dloss, np.float64)
        w = scale * (d if d.ndim == 0 else d.reshape(N))  # (N,)
        grad = grad * w[None, :, None]
        return grad.transpose(1, 0, 2).astype(dtype)
