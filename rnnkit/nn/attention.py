"""Attention over a memory of encoder outputs: Bahdanau (additive) and Luong (dot, general).

One decoder step asks "which source positions matter now?"  Given a query q (N, Q) - the
decoder state - and a memory m (N, S, M) - the encoder outputs - every variant computes::

    score_j = f(q, m_j)                                   (N, S)
    a       = softmax over the valid j of score           (N, S), exactly 0 where mask_j = 0
    context = sum_j a_j m_j                               (N, M)

with the scores

    bahdanau  f = v^T tanh(W_q q + b_q + W_k m_j)         (additive; attn_size A)
    dot       f = q^T m_j                                  (Luong; needs Q == M)
    general   f = q^T (W_a m_j)                            (Luong; W_a (Q, M))

The part of f that depends on the memory only (``keys``: W_k m, W_a m, or m itself) is the
same at every decoder step, so it is computed once per sentence by ``prepare(memory)``; each
step then costs O(N S A).  Backward, with ds the score gradient::

    da      = m dcontext                          dm_j += a_j dcontext
    ds      = a * (da - sum_j a_j da_j)           (softmax; 0 at masked positions since a = 0)
    bahdanau: e = tanh(pre);  dpre = ds v (1 - e^2);  dv = sum ds e;  dkeys = dpre;
              dq = (sum_j dpre_j) W_q
    dot / general: dq = sum_j ds_j keys_j;  dkeys_j = ds_j q

Masked positions never take part: their weight is exactly 0 (not merely tiny), so padding
can never leak into the context, and their keys and memory rows get exactly zero gradient.

Usage inside a decoder (one ``prepare`` per batch, one ``step`` per target position; the caches
are consumed last-in first-out like every module's)::

    keys = att.prepare(memory)                       # (N, S, A) or (N, S, M)
    for t in range(T):
        context, weights = att.step(h, memory, keys, mask)
    ...
    for t in reversed(range(T)):
        dq, dm, dk = att.step_backward(dcontext_t)   # sum dm and dk over the steps
    dmemory += att.prepare_backward(dkeys)

``forward(query, memory, mask)`` / ``backward(dcontext, dweights)`` do both at once (one query
against its memory): the form ``gradcheck`` and single-step users take.
"""
from __future__ import annotations

import numpy as np

from .init import torch_default
from .layers import Linear
from .module import Module, as_input, check_dtype

SCORES = ("bahdanau", "dot", "general")


def masked_softmax(scores: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    """Softmax over the last axis restricted to ``mask`` (bool, same shape): masked entries are 0.

    Every row needs at least one valid entry (a source of length 0 has nothing to attend to).
    """
    if mask is None:
        shifted = scores - scores.max(axis=-1, keepdims=True)
        w = np.exp(shifted)
    else:
        top = np.max(np.where(mask, scores, -np.inf), axis=-1, keepdims=True)
        # exp(-inf) = 0 exactly, with no floating-point warning
        w = np.exp(np.where(mask, scores - top, -np.inf))
    w /= w.sum(axis=-1, keepdims=True)
    return w


class Attention(Module):
    """Attention of a query (N, Q) over a memory (N, S, M) with a padding mask (N, S).

    ``score``: ``"bahdanau"`` (additive, Bahdanau et al. 2015), ``"dot"`` or ``"general"``
    (multiplicative, Luong et al. 2015); equations in the module docstring.
    Parameters (torch-like names): bahdanau ``query.weight (A, Q)``, ``query.bias (A,)``,
    ``key.weight (A, M)``, ``v (A,)``;  general ``key.weight (Q, M)``;  dot none.
    """

    def __init__(self, query_size: int, memory_size: int, attn_size: int | None = None,
                 score: str = "bahdanau", *, dtype=np.float32,
                 rng: np.random.Generator | None = None) -> None:
        super().__init__()
        if score not in SCORES:
            raise ValueError(f"attention score must be one of {SCORES}, got {score!r}")
        if score == "dot" and query_size != memory_size:
            raise ValueError(f"dot attention needs query size == memory size, got {query_size} "
                             f"and {memory_size}; use 'general' (a learned W_a) instead")
        self.score, self.dtype = score, check_dtype(dtype)
        self.query_size, self.memory_size = query_size, memory_size
        rng = rng if rng is not None else np.random.default_rng()
        if score == "bahdanau":
            A = attn_size or query_size
            self.attn_size = A
            self.query = Linear(query_size, A, dtype=self.dtype, rng=rng)
            self.key = Linear(memory_size, A, bias=False, dtype=self.dtype, rng=rng)
            self._add_param("v", torch_default((A,), A, rng, self.dtype))
        elif score == "general":
            self.key = Linear(memory_size, query_size, bias=False, dtype=self.dtype, rng=rng)

    # -- the memory side, once per sentence ----------------------------------------------------
    def prepare(self, memory: np.ndarray) -> np.ndarray:
        """keys (N, S, A | Q | M): the memory-only part of the score."""
        memory = self._check_memory(memory)
        if self.score == "dot":
            return memory
        return self.key.forward(memory)  # (N, S, A) or (N, S, Q)

    def prepare_backward(self, dkeys: np.ndarray) -> np.ndarray:
        """dL/dmemory through ``prepare`` given dL/dkeys summed over every step."""
        if self.score == "dot":
            return dkeys
        return self.key.backward(dkeys)

    # -- one decoder step --------------------------------------------------------------------
    def step(self, query: np.ndarray, memory: np.ndarray, keys: np.ndarray,
             mask: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(context (N, M), weights (N, S)) for one query against prepared keys."""
        query = as_input(query, self.dtype, "query")
        N, S, _ = memory.shape
        if query.shape != (N, self.query_size):
            raise ValueError(f"query has shape {query.shape}, expected {(N, self.query_size)}")
        mask = self._check_mask(mask, N, S)
        if self.score == "bahdanau":
            pre = keys + self.query.forward(query)[:, None, :]  # (N, S, A)
            e = np.tanh(pre, out=pre)
            scores = e @ self.params["v"]  # (N, S)
        else:
            e = None
            scores = (keys @ query[:, :, None])[:, :, 0]  # (N, S)
        w = masked_softmax(scores, mask)
        context = (w[:, None, :] @ memory)[:, 0, :]  # (N, M)
        self._push((query, memory, keys, e, w))
        return context, w

    def step_backward(self, dcontext: np.ndarray, dweights: np.ndarray | None = None):
        """-> (dquery (N, Q), dmemory (N, S, M), dkeys) of the last ``step`` not yet backpropagated."""
        query, memory, keys, e, w = self._pop()
        da = (memory @ dcontext[:, :, None])[:, :, 0]  # (N, S)
        if dweights is not None:
            da = da + dweights
        ds = w * (da - (w * da).sum(axis=1, keepdims=True))  # (N, S); 0 where masked
        dmemory = w[:, :, None] * dcontext[:, None, :]  # (N, S, M)
        if self.score == "bahdanau":
            v = self.params["v"]
            self.grads["v"] += np.einsum("ns,nsa->a", ds, e)
            dpre = ds[:, :, None] * v * (1 - e * e)  # (N, S, A)
            dquery = self.query.backward(dpre.sum(axis=1))
            dkeys = dpre
        else:
            dquery = (ds[:, None, :] @ keys)[:, 0, :]  # (N, Q)
            dkeys = ds[:, :, None] * query[:, None, :]  # (N, S, Q)
        return dquery, dmemory, dkeys

    # -- both at once ------------------------------------------------------------------------
    def forward(self, query, memory, mask=None):
        """(context (N, M), weights (N, S)) = attention of query (N, Q) over memory (N, S, M)."""
        keys = self.prepare(memory)
        return self.step(query, memory, keys, mask)

    def backward(self, dcontext, dweights=None):
        """-> (dquery, dmemory) given dL/dcontext and optionally dL/dweights."""
        dquery, dmemory, dkeys = self.step_backward(dcontext, dweights)
        return dquery, dmemory + self.prepare_backward(dkeys)

    # -- checks ------------------------------------------------------------------------------
    def _check_memory(self, memory):
        memory = as_input(memory, self.dtype, "memory")
        if memory.ndim != 3 or memory.shape[2] != self.memory_size:
            raise ValueError(f"memory must have shape (N, S, {self.memory_size}), got {memory.shape}")
        return memory

    @staticmethod
    def _check_mask(mask, N, S):
        if mask is None:
            return None
        mask = np.asarray(mask)
        if mask.shape != (N, S):
            raise ValueError(f"mask has shape {mask.shape}, expected {(N, S)}")
        mask = mask.astype(bool, copy=False)
        if not mask.any(axis=1).all():
            raise ValueError("every row of the attention mask needs at least one valid position "
                             "(an empty source has nothing to attend to)")
        return mask


def lengths_mask(lengths: np.ndarray, S: int) -> np.ndarray:
    """(N, S) bool: True at the positions j < lengths[n]."""
    return np.arange(S)[None, :] < np.asarray(lengths)[:, None]
