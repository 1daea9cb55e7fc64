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


def _advance(beams: dict[tuple, tuple[float, float]], row: np.ndarray, blank: int,
             prune: float | None, allowed=None) -> dict[tuple, list[float]]:
    """One frame of CTC prefix beam search: every prefix extended by blank (it stays), by its
    last label (a repeat collapses; after a blank it is a new label) or by another label whose
    log-probability is at least ``prune`` (at least the best label).  ``allowed(prefix, k)``
    may forbid appending label k.  Returns {prefix: [log p_b, log p_nb]}, not yet ranked."""
    C = row.shape[0]
    cands = [int(k) for k in (np.flatnonzero(row >= prune) if prune is not None else range(C))
             if k != blank]
    if not cands:  # keep at least the best label so nothing is lost on a flat frame
        cands = [int(np.argmax(np.where(np.arange(C) == blank, -np.inf, row)))]
    nxt: dict[tuple, list[float]] = defaultdict(lambda: [-math.inf, -math.inf])
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
            if allowed is not None and not allowed(prefix, k):
                continue
            new = nxt[prefix + (k,)]  # after a blank (or another label) it is a new label
            new[1] = _lse(new[1], (pb if k == last else total) + lk)
    return nxt


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
    beams: dict[tuple, tuple[float, float]] = {(): (0.0, -math.inf)}  # prefix -> (log p_b, log p_nb)
    for row in np.asarray(logp, np.float64):
        nxt = _advance(beams, row, blank, prune)
        ranked = sorted(nxt.items(), key=lambda kv: _lse(*kv[1]), reverse=True)[:beam]
        beams = {p: (v[0], v[1]) for p, v in ranked}
    best, (pb, pnb) = max(beams.items(), key=lambda kv: _lse(*kv[1]))
    return list(best), _lse(pb, pnb)


# ------------------------------------------------------------------------------ word constraint
class WordLM:
    """Word statistics of the training transcripts: the vocabulary, unigram and bigram counts.

    ``logp(prev, word)`` is an interpolated bigram, lam P(word | prev) + (1 - lam) P(word), and
    -inf for a word outside the vocabulary, which is how the decoder keeps a digit model from
    spelling non-words.  ``closed`` says whether the vocabulary looks complete (every word seen
    at least ``min_count`` times), the test ``--lm auto`` uses.
    """

    def __init__(self, unigrams: dict[str, int], bigrams: dict[str, int] | None = None) -> None:
        self.unigrams = {w: int(c) for w, c in unigrams.items() if c > 0 and w}
        self.bigrams = {k: int(c) for k, c in (bigrams or {}).items() if c > 0}
        self.total = sum(self.unigrams.values())
        self.following: dict[str, int] = defaultdict(int)  # count of bigrams starting with w
        for k, c in self.bigrams.items():
            self.following[k.split(" ", 1)[0]] += c

    @classmethod
    def from_texts(cls, texts) -> "WordLM":
        uni: dict[str, int] = defaultdict(int)
        bi: dict[str, int] = defaultdict(int)
        for t in texts:
            words = t.split()
            for w in words:
                uni[w] += 1
            for a, b in zip(["<s>"] + words, words):
                bi[f"{a} {b}"] += 1
        return cls(dict(uni), dict(bi))

    def to_json(self) -> dict:
        return {"unigrams": self.unigrams, "bigrams": self.bigrams}

    @classmethod
    def from_json(cls, d: dict) -> "WordLM":
        return cls(d.get("unigrams", {}), d.get("bigrams", {}))

    def __contains__(self, word: str) -> bool:
        return word in self.unigrams

    def closed(self, min_count: int = 3) -> bool:
        return bool(self.unigrams) and min(self.unigrams.values()) >= min_count

    def entropy(self) -> float:
        """Unigram entropy in nats: the average cost of a word under the unigram model."""
        p = np.array(list(self.unigrams.values()), np.float64) / max(self.total, 1)
        return float(-(p * np.log(p)).sum()) if len(p) else 0.0

    def logp(self, prev: str, word: str, order: int = 2, lam: float = 0.7) -> float:
        if word not in self.unigrams:
            return -math.inf
        if order < 1:  # the vocabulary alone: every word alike
            return -math.log(len(self.unigrams))
        uni = self.unigrams[word] / self.total
        if order < 2 or not self.following.get(prev):
            return math.log(uni)
        bi = self.bigrams.get(f"{prev} {word}", 0) / self.following[prev]
        return math.log(lam * bi + (1 - lam) * uni)


def constrained_beam_search(logp: np.ndarray, chars: str, lm: WordLM, beam: int = 8,
                            blank: int = 0, order: int = 2, alpha: float = 0.5,
                            beta: float | None = None, prune: float = -12.0) -> tuple[list[int], float]:
    """CTC prefix beam search that only spells words of ``lm``'s vocabulary.

    Like ``prefix_beam_search``, but a character may extend a prefix only if the word it is
    building is the beginning of a vocabulary word, and a space (or the end) only if that word
    is complete.  Each completed word adds alpha * log P(word | previous word) (``order`` 1:
    unigram, 2: bigram, 0: the vocabulary alone) plus beta; by default beta = alpha * the unigram entropy, so that on
    average a word costs nothing and the search is not biased towards fewer or more words.
    ``chars`` maps label k to ``chars[k - 1]``.  When every surviving prefix ends inside a word,
    the best one's complete words are returned.  Returns (labels, acoustic + weighted word score).
    """
    logp = np.asarray(logp, np.float64)
    T, C = logp.shape
    if len(chars) != C - 1:
        raise ValueError(f"{len(chars)} characters for {C} classes (blank included)")
    if beta is None:
        beta = alpha * (math.log(len(lm.unigrams)) if order < 1 else lm.entropy())
    space = chars.index(" ") + 1 if " " in chars else -1
    starts = {w[:i] for w in lm.unigrams for i in range(1, len(w) + 1)}
    NEG = -math.inf
    # prefix -> (log p_b, log p_nb); context of a prefix: (previous word, word being spelt, LM score)
    beams: dict[tuple, tuple[float, float]] = {(): (0.0, NEG)}
    ctx: dict[tuple, tuple[str, str, float]] = {(): ("<s>", "", 0.0)}

    def extend(prefix: tuple, k: int):
        """The context after appending label k to prefix, or None where the words forbid it."""
        if prefix + (k,) in ctx:
            return ctx[prefix + (k,)]
        prev, part, score = ctx[prefix]
        if k == space:
            if not part or part not in lm:
                return None
            new = (part, "", score + alpha * lm.logp(prev, part, order) + beta)
        else:
            if part + chars[k - 1] not in starts:
                return None
            new = (prev, part + chars[k - 1], score)
        ctx[prefix + (k,)] = new
        return new

    for t in range(T):
        nxt = _advance(beams, logp[t], blank, prune, lambda prefix, k: extend(prefix, k) is not None)
        ranked = sorted(nxt.items(), key=lambda kv: _lse(*kv[1]) + ctx[kv[0]][2], reverse=True)[:beam]
        beams = {p: (v[0], v[1]) for p, v in ranked}

    def final(prefix):
        prev, part, score = ctx[prefix]
        if part:
            if part not in lm:
                return NEG
            score += alpha * lm.logp(prev, part, order) + beta
        elif prefix and prefix[-1] == space:
            return NEG  # a trailing space: the last word was never finished
        return _lse(*beams[prefix]) + score

    scored = [(final(p), p) for p in beams]
    best_score, best = max(scored, key=lambda sp: sp[0])
    if best_score == NEG:  # every prefix ends inside a word: keep the best one's complete words
        best = max(beams, key=lambda p: _lse(*beams[p]) + ctx[p][2])
        best_score = _lse(*beams[best]) + ctx[best][2]
        best = best[: len(best) - len(ctx[best][1])]
        while best and best[-1] == space:
            best = best[:-1]
    return list(best), best_score


def lm_for(config: dict, mode: str = "auto") -> WordLM | None:
    """The word constraint of a checkpoint's config for ``--lm`` mode auto, none, vocab or bigram."""
    if mode not in ("auto", "none", "vocab", "bigram"):
        raise ValueError(f"--lm must be auto, none, vocab or bigram, got {mode!r}")
    words = config.get("words")
    if mode == "none" or (mode == "auto" and not words):
        return None
    if not words:
        raise ValueError(f"--lm {mode}: this model was saved without word statistics "
                         "(retrain it with this version)")
    lm = WordLM.from_json(words)
    return None if mode == "auto" and not lm.closed() else lm


def decode_features(model, alphabet, feats: list[np.ndarray], beam: int = 1, lm: WordLM | None = None,
                    order: int = 2, batch: int = 32) -> list[str]:
    """Transcripts of utterances' features: greedy (beam 1, no lm), prefix beam search, or the
    word-constrained beam search when ``lm`` is given."""
    from ...data.batching import pad
    from ...nn import frozen
    from .model import BLANK

    was_training = model.training
    model.eval()
    order_idx = np.argsort([len(f) for f in feats], kind="stable")
    texts: list[str] = [""] * len(feats)
    with frozen():
        for b in range(0, len(order_idx), batch):
            idx = order_idx[b : b + batch]
            x, lengths = pad([feats[i] for i in idx], dtype=model.cfg.dtype)
            logp = model.log_probs(x, lengths)  # (B, T, C)
            for row, i in enumerate(idx):
                lp = logp[row, : lengths[row]]
                if lm is not None:
                    ids = constrained_beam_search(lp, alphabet.chars, lm, max(beam, 1), BLANK, order)[0]
                elif beam <= 1:
                    ids = greedy_decode(lp, BLANK)
                else:
                    ids = prefix_beam_search(lp, beam, BLANK)[0]
                texts[i] = alphabet.decode(ids)
    model.train(was_training)
    return texts


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
