"""Translation metrics: corpus BLEU (Papineni et al. 2002), exact match, token accuracy.

Corpus BLEU, up to 4-grams, uniform weights, no smoothing::

    p_n  = sum over sentences of clipped n-gram matches / sum of hypothesis n-grams
           (a hypothesis n-gram counts at most as often as in the reference that has it most)
    c    = total hypothesis length,  r = total of each sentence's closest reference length
           (ties: the shorter one)
    BP   = 1 if c > r else exp(1 - r / c)
    BLEU = 100 * BP * exp(mean_n log p_n)      (0 when some p_n is 0 or c = 0)

Sentences are split into words by ``tokenize_13a``, the tokenizer of sacrebleu's default
"13a" (mteval-v13a): punctuation split off, except apostrophes, and periods and commas
inside numbers; so the scores compare with sacrebleu's ``smooth_method="none"``.
"""
from __future__ import annotations

import math
import re
from collections import Counter
from typing import Sequence

_13A = [(re.compile(r"([\{-\~\[-\` -\&\(-\+\:-\@\/])"), r" \1 "),
        (re.compile(r"([^0-9])([\.,])"), r"\1 \2 "),
        (re.compile(r"([\.,])([^0-9])"), r" \1 \2"),
        (re.compile(r"([0-9])(-)"), r"\1 \2 ")]


def tokenize_13a(line: str) -> list[str]:
    """Words of ``line`` as mteval-v13a (sacrebleu's default tokenizer) splits them."""
    line = line.replace("<skipped>", "").replace("-\n", "").replace("\n", " ")
    if "&" in line:
        line = (line.replace("&quot;", '"').replace("&amp;", "&").replace("&lt;", "<")
                .replace("&gt;", ">"))
    line = f" {line} "
    for pattern, repl in _13A:
        line = pattern.sub(repl, line)
    return line.split()


def ngrams(tokens: Sequence[str], n: int) -> Counter:
    return Counter(tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1))


def modified_precision(hyp: Sequence[str], refs: Sequence[Sequence[str]], n: int) -> tuple[int, int]:
    """(clipped matches, hypothesis n-grams) of one sentence: the BLEU paper's p_n parts."""
    counts = ngrams(hyp, n)
    most: Counter = Counter()
    for ref in refs:
        for g, c in ngrams(ref, n).items():
            most[g] = max(most[g], c)
    return sum(min(c, most[g]) for g, c in counts.items()), sum(counts.values())


def corpus_bleu(hyps: Sequence[str], refs: Sequence[str | Sequence[str]], max_n: int = 4,
                tokenize=tokenize_13a) -> dict:
    """Corpus BLEU of hypothesis strings against one reference string (or a list) each.

    Returns {"bleu": 0-100, "precisions": [p_1..p_4] in %, "bp", "sys_len", "ref_len"}.
    """
    if len(hyps) != len(refs):
        raise ValueError(f"{len(hyps)} hypotheses but {len(refs)} references")
    matches, totals = [0] * max_n, [0] * max_n
    c = r = 0
    for hyp, ref in zip(hyps, refs):
        h = tokenize(hyp)
        rs = [tokenize(x) for x in ([ref] if isinstance(ref, str) else ref)]
        if not rs:
            raise ValueError("every hypothesis needs at least one reference")
        c += len(h)
        r += min((abs(len(x) - len(h)), len(x)) for x in rs)[1]
        for n in range(1, max_n + 1):
            m, t = modified_precision(h, rs, n)
            matches[n - 1] += m
            totals[n - 1] += t
    precisions = [100.0 * m / t if t else 0.0 for m, t in zip(matches, totals)]
    if c == 0:
        bp = 0.0
    else:
        bp = 1.0 if c > r else math.exp(1 - r / c)
    if c == 0 or min(matches) == 0:
        bleu = 0.0
    else:
        bleu = 100.0 * bp * math.exp(sum(math.log(m / t) for m, t in zip(matches, totals)) / max_n)
    return {"bleu": bleu, "precisions": precisions, "bp": bp, "sys_len": c, "ref_len": r}


def exact_match(hyps: Sequence[str], refs: Sequence[str]) -> float:
    """Fraction of hypotheses equal to their reference (after stripping outer whitespace)."""
    if not refs:
        return 0.0
    return sum(h.strip() == r.strip() for h, r in zip(hyps, refs)) / len(refs)


def token_accuracy(hyps: Sequence[Sequence], refs: Sequence[Sequence]) -> float:
    """Position-wise token agreement: sum of matches / sum of max(len hyp, len ref).

    A missing or extra token counts as wrong, so only a perfect output scores 1.
    """
    hits = total = 0
    for h, r in zip(hyps, refs):
        hits += sum(a == b for a, b in zip(h, r))
        total += max(len(h), len(r))
    return hits / total if total else 1.0
