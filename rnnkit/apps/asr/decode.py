"""CTC decoding (greedy and prefix beam search) and error rates by edit distance.

Decoders take one utterance's log-probabilities (T, C) over the alphabet plus blank and return
label ids; ``Alphabet.decode`` turns them into text.
"""
from __future__ import annotations

import math
from collections import defaultdict
from typing import Sequence

import numpy as np


def greedy_decode(logp: np.ndarray, blank: int = 0) -> list[int]:
    """Best class per frame, repeats collapsed, blanks dropped."""
    best = np.asarray(logp).argmax(axis=-1)
    keep = np.ones(len(best), bool)
    keep[1:] = best[1:] != best[:-1]
    return [int(k) for k in best[keep] if k != blank]


def _lse(a: float, b: float) -> float:
    if a == -math.inf:
        return b
    if b == -math.inf:
        return a
    m = max(a, b)
    return m + math.log(math.exp(a - m) + math.exp(b - m))


def prefix_beam_search(logp: np.ndarray, beam: int = 8, blank: int = 0,
                       prune: float = -12.0) -> tuple[list[int], float]:
    """CTC prefix beam search: the labelling with the highest total path probability it finds.

    Each prefix carries log P(prefix, path ends in blank) and log P(prefix, path ends in a
    label); at frame t a prefix is extended by blank (stays), by its last label (stays: a
    repeat collapses; after a blank it is a new label) or by any other label.  The ``beam`` most
    probable prefixes survive each frame; labels with log-probability below ``prune`` at a frame
    are not tried (they cannot change the ranking noticeably).  With a beam at least as large as
    the number of distinct prefixes the search is exact.  Returns (labels, log-probability).
    """
    logp = np.asarray(logp, np.float64)
    T, C = logp.shape
    beams: dict[tuple, tuple[float, float]] = {(): (0.0, -math.inf)}  # prefix -> (log p_b, log p_nb)
    NEG = -math.inf
    for t in range(T):
        row = logp[t]
        cands = [k for k in np.flatnonzero(row >= prune) if k != blank] if prune is not None else \
            [k for k in range(C) if k != blank]
        if not cands:  # keep at least the best label so nothing is lost on a flat frame
            cands = [int(np.argmax(np.where(np.arange(C) == blank, -np.inf, row)))]
        nxt: dict[tuple, list[float]] = defaultdict(lambda: [NEG, NEG])
        lb = row[blank]
        for prefix, (pb, pnb) in beams.items():
            total = _lse(pb, pnb)
            e = nxt[prefix]
            e[0] = _lse(e[0], total + lb)  # blank: the prefix is unchanged
            last = prefix[-1] if prefix else None
            for k in cands:
                lk = float(row[k])
                if k == last:
                    e[1] = _lse(e[1], pnb + lk)  # the repeat collapses into the same label
                    new = nxt[prefix + (int(k),)]
                    new[1] = _lse(new[1], pb + lk)  # after a blank it is a new label
                else:
                    new = nxt[prefix + (int(k),)]
                    new[1] = _lse(new[1], total + lk)
        ranked = sorted(nxt.items(), key=lambda kv: _lse(*kv[1]), reverse=True)[:beam]
        beams = {p: (v[0], v[1]) for p, v in ranked}
    best, (pb, pnb) = max(beams.items(), key=lambda kv: _lse(*kv[1]))
    return list(best), _lse(pb, pnb)


def edit_distance(ref: Sequence, hyp: Sequence) -> int:
    """Levenshtein distance: the fewest substitutions, insertions and deletions from ref to hyp."""
    prev = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        cur = [i] + [0] * len(hyp)
        for j, h in enumerate(hyp, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (r != h))
        prev = cur
    return prev[-1]


def error_rates(refs: Sequence[str], hyps: Sequence[str]) -> dict:
    """Corpus character and word error rates: total edits / total reference characters (words).

    Both texts are compared after collapsing runs of whitespace; an empty reference counts its
    hypothesis' length as edits (and 0 reference units), so a corpus of empty references with
    empty hypotheses has rates 0.
    """
    ce, cn, we, wn = error_counts(refs, hyps)
    return {"cer": ce / cn if cn else float(ce > 0), "wer": we / wn if wn else float(we > 0),
            "utterances": len(refs)}


def error_counts(refs: Sequence[str], hyps: Sequence[str]) -> tuple[int, int, int, int]:
    """(character edits, reference characters, word edits, reference words) of `error_rates`."""
    if len(refs) != len(hyps):
        raise ValueError(f"{len(refs)} references but {len(hyps)} hypotheses")
    ce = cn = we = wn = 0
    for r, h in zip(refs, hyps):
        r, h = " ".join(r.split()), " ".join(h.split())
        ce += edit_distance(r, h)
        cn += len(r)
        we += edit_distance(r.split(), h.split())
        wn += len(r.split())
    return ce, cn, we, wn
