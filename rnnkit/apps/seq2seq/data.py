"""Parallel text: TSV pairs, token vocabularies with specials, batches, and the built-in data sets.

A pairs file is UTF-8 text, one ``source<TAB>target`` pair a line (no header).  Generators:

* ``numbers``: integers -> their words in any num2words language (``4021`` -> ``quatre mille
  vingt et un``).  80 % drawn uniformly below ``high`` (default one million), 20 % log-uniformly
  (so small numbers are seen too); no number appears twice in one file.
* ``dates``: human-written dates -> ISO ``YYYY-MM-DD``, written by babel's ``format_date`` in
  eight locales with the locale's short/medium/long/full patterns and a few common custom ones.
  Years lie in 1950-2049, so two-digit years are unambiguous; every short form is day-first
  (en_US's month-first short form is left out, as ``4/3/05`` would mean two dates).
* ``read_trans_de_en``: German -> English sentence pairs from Debian's ``trans-de-en``
  dictionary (``/usr/share/trans/de-en``, GPL-2+: installed, never copied).
"""
from __future__ import annotations

import datetime
import os
import re
from collections import Counter
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from ...data.batching import pad
from ...data.files import write_atomic
from .model import BOS, EOS, PAD, UNK

SPECIALS = ("<pad>", "<bos>", "<eos>", "<unk>")
TOKEN_KINDS = ("char", "word")
# a word token carries the whitespace before it, so joining tokens restores the text exactly
_WORD_RE = re.compile(r"\s*(?:\w+|[^\w\s])|\s+$")
TRANS_DE_EN = "/usr/share/trans/de-en"


# ------------------------------------------------------------------------------------------
# Vocabularies
# ------------------------------------------------------------------------------------------
def tokenize(text: str, kind: str) -> list[str]:
    """Characters, or words (and single punctuation marks) with their leading whitespace."""
    if kind == "char":
        return list(text)
    if kind == "word":
        return _WORD_RE.findall(text)
    raise ValueError(f"token kind must be one of {TOKEN_KINDS}, got {kind!r}")


class TokenVocab:
    """Tokens <-> ids with the specials <pad>=0, <bos>=1, <eos>=2, <unk>=3 first."""

    def __init__(self, tokens: Sequence[str], kind: str) -> None:
        if kind not in TOKEN_KINDS:
            raise ValueError(f"token kind must be one of {TOKEN_KINDS}, got {kind!r}")
        tokens = list(tokens)
        if tuple(tokens[:4]) != SPECIALS or len(set(tokens)) != len(tokens):
            raise ValueError(f"a vocabulary starts with {SPECIALS} and has no repeated token")
        self.kind, self.tokens = kind, tokens
        self.index = {t: i for i, t in enumerate(tokens)}

    @classmethod
    def build(cls, texts: Iterable[str], kind: str, max_size: int | None = None,
              min_count: int = 1) -> "TokenVocab":
        counts = Counter(t for text in texts for t in tokenize(text, kind))
        ranked = sorted((t for t, c in counts.items() if c >= min_count), key=lambda t: (-counts[t], t))
        if max_size is not None:
            ranked = ranked[: max(max_size - len(SPECIALS), 0)]
        if not ranked:
            raise ValueError("no tokens to build a vocabulary from")
        return cls([*SPECIALS, *sorted(ranked)], kind)

    def __len__(self) -> int:
        return len(self.tokens)

    def __eq__(self, other) -> bool:
        return isinstance(other, TokenVocab) and (self.kind, self.tokens) == (other.kind, other.tokens)

    def encode(self, text: str) -> list[int]:
        get = self.index.get
        return [get(t, UNK) for t in tokenize(text, self.kind)]

    def unknown(self, text: str) -> list[str]:
        """The distinct tokens of ``text`` this vocabulary lacks (`encode` reads them as <unk>)."""
        return sorted({t for t in tokenize(text, self.kind) if t not in self.index})

    def decode(self, ids: Iterable[int]) -> str:
        """Text of ids, stopping at the first <eos>; <pad>/<bos> are skipped, <unk> shown as such."""
        out = []
        for i in ids:
            i = int(i)
            if i == EOS:
                break
            if i in (PAD, BOS):
                continue
            out.append("\ufffd" if (i == UNK and self.kind == "char") else self.tokens[i])
        return "".join(out)

    def to_json(self) -> dict:
        return {"kind": self.kind, "tokens": self.tokens}

    @classmethod
    def from_json(cls, d: dict) -> "TokenVocab":
        if not isinstance(d, dict) or set(d) != {"kind", "tokens"}:
            raise ValueError("a vocabulary JSON needs exactly the keys 'kind' and 'tokens'")
        return cls(d["tokens"], d["kind"])


def pad_batch(seqs: Sequence[Sequence[int]], bos: bool = False, eos: bool = False):
    """Pad id lists into (N, T) int64 with PAD, optionally framed by BOS/EOS; -> (ids, lengths)."""
    pre, post = [BOS] if bos else [], [EOS] if eos else []
    return pad([np.array(pre + list(s) + post, np.int64) for s in seqs], value=PAD)


# ------------------------------------------------------------------------------------------
# Pair files
# ------------------------------------------------------------------------------------------
def read_pairs(path: str | os.PathLike) -> list[tuple[str, str]]:
    """``source<TAB>target`` lines of a UTF-8 file; a clear error names the first bad line."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ValueError(f"cannot read pairs file {path}: {exc.strerror}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path} is not UTF-8 (byte {exc.start})") from None
    pairs = []
    for k, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split("\t")
        if len(parts) != 2 or not parts[0].strip() or not parts[1].strip():
            raise ValueError(f"{path}:{k}: expected 'source<TAB>target', got {line[:60]!r}")
        pairs.append((parts[0], parts[1]))
    if not pairs:
        raise ValueError(f"{path} holds no pairs")
    return pairs


def write_pairs(path: str | os.PathLike, pairs: Iterable[tuple[str, str]]) -> int:
    """Write pairs as TSV atomically (temporary file + rename); returns the number written."""
    path = Path(path)
    lines = []
    for s, t in pairs:
        if "\t" in s + t or "\n" in s + t:
            raise ValueError(f"pair {s!r} -> {t!r} holds a tab or newline")
        lines.append(f"{s}\t{t}\n")
    write_atomic(path, "".join(lines))
    return len(lines)


# ------------------------------------------------------------------------------------------
# Generators
# ------------------------------------------------------------------------------------------
def _num2words():
    try:
        from num2words import num2words
    except ImportError:
        raise ValueError("the numbers data set needs num2words: pip install num2words") from None
    return num2words


def number_words(n: int, lang: str) -> str:
    num2words = _num2words()
    try:
        return num2words(int(n), lang=lang)
    except NotImplementedError:
        raise ValueError(f"num2words has no language {lang!r}") from None


def make_numbers(n: int, lang: str = "fr", seed: int = 0, high: int = 1_000_000,
                 exclude: Iterable[int] = ()) -> list[tuple[str, str]]:
    """n distinct numbers below ``high`` (none of ``exclude``) and their words in ``lang``."""
    if n < 1:
        raise ValueError(f"--n must be >= 1, got {n}")
    if high < 1:
        raise ValueError(f"high must be >= 1, got {high}")
    excluded = set(int(x) for x in exclude)
    if n > high - sum(1 for x in excluded if 0 <= x < high):
        raise ValueError(f"cannot draw {n} distinct numbers below {high}")
    number_words(1, lang)  # fail early on an unknown language
    rng = np.random.default_rng(seed)
    chosen: list[int] = []
    seen = set(excluded)
    while len(chosen) < n:
        k = max(2 * (n - len(chosen)), 64)
        uniform = rng.integers(0, high, k)
        logu = np.floor(10 ** rng.uniform(0, np.log10(high), k)).astype(np.int64) - 1
        draw = np.where(rng.random(k) < 0.8, uniform, np.clip(logu, 0, high - 1))
        for x in draw.tolist():
            if x not in seen:
                seen.add(x)
                chosen.append(x)
                if len(chosen) == n:
                    break
    return [(str(x), number_words(x, lang)) for x in chosen]


DATE_LOCALES = ("en_US", "en_GB", "fr_FR", "de_DE", "es_ES", "it_IT", "pt_BR", "nl_NL")
DATE_PATTERNS = ("short", "medium", "long", "full", "d MMMM y", "d MMM y", "EEE d MMM y",
                 "dd.MM.y", "MMMM d, y")


def make_dates(n: int, seed: int = 0, locales: Sequence[str] = DATE_LOCALES,
               lang: str | None = None) -> list[tuple[str, str]]:
    """n human-written dates (random locale and pattern) and their ISO form.

    ``lang``: a babel locale (e.g. ``de_DE``) to write every date in; default all eight.
    """
    try:
        from babel.dates import format_date
        from babel.core import UnknownLocaleError
    except ImportError:
        raise ValueError("the dates data set needs babel: pip install babel") from None
    if n < 1:
        raise ValueError(f"--n must be >= 1, got {n}")
    if lang:
        locales = (lang,)
    try:
        for loc in locales:
            format_date(datetime.date(2000, 1, 1), "long", locale=loc)
    except (UnknownLocaleError, ValueError) as exc:
        raise ValueError(f"unknown date locale: {exc}") from None
    rng = np.random.default_rng(seed)
    first = datetime.date(1950, 1, 1).toordinal()
    span = datetime.date(2049, 12, 31).toordinal() - first + 1
    days = rng.integers(0, span, n)
    locs = rng.integers(0, len(locales), n)
    pats = rng.integers(0, len(DATE_PATTERNS), n)
    pairs = []
    for d, li, pi in zip(days.tolist(), locs.tolist(), pats.tolist()):
        date = datetime.date.fromordinal(first + d)
        loc, pat = locales[li], DATE_PATTERNS[pi]
        if pat == "short" and loc == "en_US":  # month-first: 4/3/05 would mean two dates
            pat = "medium"
        text = format_date(date, pat, locale=loc)
        pairs.append((" ".join(text.split()), date.isoformat()))  # babel uses narrow no-break spaces
    return pairs


# ------------------------------------------------------------------------------------------
# Debian trans-de-en
# ------------------------------------------------------------------------------------------
_ANNOT_RE = re.compile(r"\s*(\{[^}]*\}|\[[^\]]*\])")
_SENTENCE_END = re.compile(r"[.?!]$")


def _clean(side: str) -> str:
    first = side.split("; ")[0]  # alternatives: keep the first
    return " ".join(_ANNOT_RE.sub("", first).split())


def read_trans_de_en(path: str | os.PathLike = TRANS_DE_EN, max_len: int = 60) -> list[tuple[str, str]]:
    """German -> English sentence pairs of the Ding dictionary (Debian package ``trans-de-en``).

    Each line is ``German :: English``, both sides split on `` | `` into parallel entries;
    an entry is kept when both sides read as a sentence (capital start, several words, final
    ``.?!``) of at most ``max_len`` characters.  Alternatives (``; ``) keep the first; the
    dictionary's annotations (``{f}``, ``[ugs.]``) are removed.  Duplicates are dropped.
    """
    path = Path(path)
    if not path.exists():
        raise ValueError(f"{path} not found: install it with 'apt-get install trans-de-en'")
    pairs, seen = [], set()
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.startswith("#") or " :: " not in line:
                continue
            de, en = line.rstrip("\n").split(" :: ", 1)
            des, ens = de.split(" | "), en.split(" | ")
            if len(des) != len(ens):
                continue
            for d, e in zip(des, ens):
                d, e = _clean(d), _clean(e)
                if not (d and e and d[0].isupper() and e[0].isupper()):
                    continue
                if " " not in d or not _SENTENCE_END.search(d) or not _SENTENCE_END.search(e):
                    continue
                if len(d) > max_len or len(e) > max_len or (d, e) in seen or "\t" in d + e:
                    continue
                seen.add((d, e))
                pairs.append((d, e))
    if not pairs:
        raise ValueError(f"no sentence pairs found in {path}")
    return pairs
