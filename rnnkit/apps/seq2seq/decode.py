"""Decoding: greedy and beam search (vectorised over the batch and the beam), attention heat-maps.

Beam search keeps K hypotheses per sentence as N*K rows of one batch.  Each step extends every
live row by every token, ranks the N x (K*V) candidates by summed log-probability and keeps the
best K per sentence; a finished hypothesis (it produced <eos>) stays in the beam with its score
frozen.  At the end the hypothesis with the best length-normalised score

    score / length^alpha          (alpha = 0: raw sum, favours short outputs; 1: mean log-prob)

wins.  Beam width 1 is greedy decoding.
"""
from __future__ import annotations

import os
from typing import Sequence

import numpy as np

from ...nn import frozen
from ...train.progress import save_figure
from .data import TokenVocab, pad_batch, tokenize
from .model import BOS, EOS, PAD, Seq2Seq, select


def greedy(model: Seq2Seq, src: np.ndarray, src_len: np.ndarray, max_len: int):
    """-> (ids (N, T) int64 padded after <eos>, attention weights (N, T, S) or None)."""
    with frozen():
        ctx = model.start(src, src_len)
        N = src.shape[0]
        prev = np.full(N, BOS, np.int64)
        out = np.full((N, max_len), PAD, np.int64)
        done = np.zeros(N, bool)
        weights = []
        for t in range(max_len):
            logp, w, ctx["state"] = model.decode_step(prev, ctx)
            logp[:, [PAD, BOS]] = -np.inf  # never output
            tok = np.argmax(logp, axis=1)
            tok[done] = PAD
            out[:, t] = tok
            if w is not None:
                weights.append(w)
            done |= tok == EOS
            prev = tok
            if done.all():
                break
    att = np.stack(weights, axis=1) if weights else None
    return out[:, : t + 1], att


def beam_search(model: Seq2Seq, src: np.ndarray, src_len: np.ndarray, max_len: int,
                beam: int = 5, alpha: float = 1.0):
    """-> (ids (N, T), attention weights (N, T, S) or None, normalised scores (N,)) of the best beams."""
    if beam < 1:
        raise ValueError(f"--beam must be >= 1, got {beam}")
    if beam == 1:
        ids, att = greedy(model, src, src_len, max_len)
        return ids, att, None
    N, K = src.shape[0], beam
    with frozen():
        ctx = select(model.start(src, src_len), np.repeat(np.arange(N), K))  # row n*K + k
        scores = np.full((N, K), -np.inf)
        scores[:, 0] = 0.0  # one live hypothesis at the start, not K copies of it
        tokens = np.zeros((N * K, 0), np.int64)
        hist = None
        finished = np.zeros(N * K, bool)
        lengths = np.zeros(N * K, np.int64)
        prev = np.full(N * K, BOS, np.int64)
        for _ in range(max_len):
            logp, w, ctx["state"] = model.decode_step(prev, ctx)  # (N*K, V)
            V = logp.shape[1]
            logp[:, [PAD, BOS]] = -np.inf  # never output
            if finished.any():  # a finished hypothesis only continues with <pad>, at no cost
                logp[finished] = -np.inf
                logp[finished, PAD] = 0.0
            cand = (scores.reshape(N * K, 1) + logp).reshape(N, K * V)
            idx = np.argsort(-cand, axis=1, kind="stable")[:, :K]  # (N, K)
            scores = np.take_along_axis(cand, idx, axis=1)
            rows = (np.arange(N)[:, None] * K + idx // V).ravel()
            tok = (idx % V).ravel()
            tokens = np.concatenate([tokens[rows], tok[:, None]], axis=1)
            if w is not None:
                w = w[rows][:, None, :]
                hist = w if hist is None else np.concatenate([hist[rows], w], axis=1)
            was = finished[rows]
            lengths = lengths[rows] + ~was
            finished = was | (tok == EOS)
            ctx = select(ctx, rows)
            prev = tok
            if finished.all():
                break
    norm = scores / np.maximum(lengths.reshape(N, K), 1) ** alpha
    # a finished hypothesis beats one cut off by max_len (unless none finished)
    done = finished.reshape(N, K)
    norm = np.where(done | ~done.any(axis=1, keepdims=True), norm, -np.inf)
    best = np.argmax(norm, axis=1)
    pick = np.arange(N) * K + best
    return tokens[pick], (hist[pick] if hist is not None else None), norm[np.arange(N), best]


def translate(model: Seq2Seq, src_vocab: TokenVocab, tgt_vocab: TokenVocab, texts: Sequence[str],
              beam: int = 1, max_len: int = 100, alpha: float = 1.0, batch: int = 256,
              return_attention: bool = False):
    """Translate strings; batches are formed from sources of similar length.

    -> list of strings (and, with ``return_attention``, one (T, S) weight array per text or None).
    """
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    outs: list[str | None] = [None] * len(texts)
    atts: list = [None] * len(texts)
    model.eval()
    for k in range(0, len(order), batch):
        part = order[k : k + batch]
        seqs = [src_vocab.encode(texts[i]) or [PAD] for i in part]  # an empty line reads as <pad>
        src, src_len = pad_batch(seqs)
        ids, att, _ = beam_search(model, src, src_len, max_len, beam, alpha)
        for j, i in enumerate(part):
            row = ids[j]
            outs[i] = tgt_vocab.decode(row)
            if return_attention and att is not None:
                stop = np.flatnonzero(row == EOS)
                T = int(stop[0]) + 1 if stop.size else len(row)
                atts[i] = att[j, :T, : src_len[j]]
    return (outs, atts) if return_attention else outs


def plot_attention(path: str | os.PathLike, source: str, output: str, weights: np.ndarray,
                   src_kind: str, tgt_kind: str) -> None:
    """Draw one sentence's attention weights (T output x S source tokens) as a heat-map PNG."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ValueError("drawing the attention needs matplotlib: pip install matplotlib") from None
    if weights is None:
        raise ValueError("this model has no attention to draw (--attention none)")
    xs = [t.replace(" ", "\u2423") for t in tokenize(source, src_kind)]
    ys = [t.replace(" ", "\u2423") for t in tokenize(output, tgt_kind)] + ["<eos>"]
    weights = weights[: len(ys), : len(xs)]
    fig, ax = plt.subplots(figsize=(max(4, 0.3 * len(xs) + 2), max(3, 0.25 * len(ys) + 1.5)))
    ax.imshow(weights, cmap="viridis", aspect="auto", vmin=0, vmax=1)
    ax.set_xticks(range(len(xs)), xs, fontsize=7)
    ax.set_yticks(range(weights.shape[0]), ys[: weights.shape[0]], fontsize=7)
    ax.set_xlabel("source")
    ax.set_ylabel("output")
    fig.tight_layout()
    save_figure(fig, path, dpi=120)
