"""Text -> token ids: reading UTF-8 files, char and word vocabularies, stream batching.

The pieces a character- or word-level language model needs, NumPy only:

- `read_text(path)`: strict UTF-8, ``\\r\\n`` -> ``\\n``; every failure is one `ValueError`
  that names the file (the CLI prints it as one line).
- `Vocab`: char (every distinct code point) or word tokens; index 0 is ``<unk>``, so a symbol
  never seen in training encodes to 0 instead of being dropped, and
  ``len(vocab.encode(text)) == len(vocab.tokenize(text))`` always holds.
- `split_train_val(ids, f)`: the last fraction of the stream is validation (no shuffling:
  neighbouring text is correlated, so a random split would leak).
- `StreamBatcher`: char-rnn style truncated BPTT windows, consecutive in time so the hidden
  state is carried from one window to the next; random access by index for exact resume.
- `eval_windows(ids, seq_len)`: one stream through a whole text, every target scored once.
- `default_corpus_path()`: the bundled ~1 MB Shakespeare corpus (see corpora/ATTRIBUTION.md).
"""
from __future__ import annotations

import os
import re
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "UNK",
    "UNK_ID",
    "Vocab",
    "StreamBatcher",
    "default_corpus_path",
    "eval_windows",
    "read_text",
    "split_train_val",
]

UNK = "<unk>"
UNK_ID = 0
VOCAB_KINDS = ("char", "word")

# Word tokeniser. Every character of any string falls in exactly one branch, so the tokens
# concatenate back to the input exactly (decode(encode(text)) == text for seen tokens):
#   \w+(?:'\w+)*   words, keeping inner apostrophes ("crown'd", "let's", "o'er")
#   [^\w\s]        one punctuation / symbol character
#   \n             each newline on its own, so line structure is learnable and never merged
#                  with indentation into thousands of distinct whitespace tokens
#   [^\S\n]+       a run of other whitespace (spaces, tabs, ...)
_WORD_RE = re.compile(r"\w+(?:'\w+)*|[^\w\s]|\n|[^\S\n]+")


def default_corpus_path() -> Path:
    """Path of the bundled default corpus (eight Shakespeare plays, ~1 MB, ASCII)."""
    # Path(__file__) rather than importlib.resources: the package is always installed as
    # files (setuptools package-data), and callers want a real path to hand to `read_text`.
    return Path(__file__).resolve().parent / "corpora" / "shakespeare.txt"


def read_text(path: str | os.PathLike[str]) -> str:
    """Read a UTF-8 text file strictly, normalising ``\\r\\n`` line endings to ``\\n``.

    A leading UTF-8 byte-order mark is dropped (Windows editors add it; it is not text).
    Raises `ValueError` naming the file when it is missing or unreadable, is not valid
    UTF-8 (with the byte offset of the first bad byte), or holds no characters at all.
    Whitespace-only text is returned as is: it is valid, if useless, training text.
    """
    p = Path(path)
    try:
        data = p.read_bytes()
    except FileNotFoundError:
        raise ValueError(f"text file not found: {p}") from None
    except IsADirectoryError:
        raise ValueError(f"text path is a directory, not a file: {p}") from None
    except OSError as e:
        raise ValueError(f"cannot read text file {p}: {e.strerror or e}") from None
    try:
        text = data.decode("utf-8")  # strict: a bad byte is an error, never silently replaced
    except UnicodeDecodeError as e:
        raise ValueError(
            f"{p} is not valid UTF-8: {e.reason} at byte offset {e.start} "
            f"(byte 0x{data[e.start]:02x})"
        ) from None
    if text.startswith("\ufeff"):
        text = text[1:]
    if not text:
        raise ValueError(f"text file {p} is empty")
    return text.replace("\r\n", "\n")


def _as_id_array(ids: Any, name: str = "ids") -> np.ndarray:
    """Validate a 1-D integer id stream and return it as int64 (no copy when already int64)."""
    arr = np.asarray(ids)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
    if arr.size == 0:
        return arr.astype(np.int64)
    if not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"{name} must be integers, got dtype {arr.dtype}")
    return arr.astype(np.int64, copy=False)


def _check_positive_int(value: Any, name: str) -> int:
    # bool is an int subclass; batch=True is a bug, not batch=1.
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an int, got {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value}")
    return int(value)


class Vocab:
    """A token <-> id mapping; id 0 is the unknown token ``<unk>``.

    ``kind="char"``: tokens are single Unicode code points, stored sorted by code point so the
    same text always gives the same ids. ``kind="word"``: tokens come from the `_WORD_RE`
    tokeniser (words with inner apostrophes, single punctuation marks, each newline, runs of
    other whitespace), stored by descending frequency, ties alphabetically. Whitespace tokens
    are ordinary tokens, so ``vocab.decode(vocab.encode(text)) == text`` whenever every token
    of ``text`` is in the vocabulary; unseen tokens encode to 0 and decode to a visible
    placeholder (``"\\ufffd"`` for char, ``"<unk>"`` for word) - never dropped.

    Build one with `Vocab.from_text`; `to_json` / `from_json` store it in a config JSON.
    """

    def __init__(self, tokens: Sequence[str], kind: str = "char") -> None:
        """Wrap an explicit token list; ``tokens[0]`` must be ``"<unk>"``."""
        if kind not in VOCAB_KINDS:
            raise ValueError(f"vocab kind must be one of {VOCAB_KINDS}, got {kind!r}")
        tokens = list(tokens)
        if not tokens or tokens[0] != UNK:
            raise ValueError(f"vocab tokens must start with {UNK!r} at index {UNK_ID}")
        for t in tokens:
            if not isinstance(t, str) or not t:
                raise ValueError(f"vocab tokens must be non-empty strings, got {t!r}")
        if len(set(tokens)) != len(tokens):
            dup = next(t for t, c in Counter(tokens).items() if c > 1)
            raise ValueError(f"vocab token {dup!r} appears more than once")
        if kind == "char":
            bad = [t for t in tokens[1:] if len(t) != 1]
            if bad:
                raise ValueError(f"char vocab tokens must be single characters, got {bad[0]!r}")
        self.kind: str = kind
        self.tokens: list[str] = tokens
        self._index: dict[str, int] = {t: i for i, t in enumerate(tokens)}
        self.unk_text: str = "\ufffd" if kind == "char" else UNK
        if kind == "char":
            # Vectorised lookup tables: code points sorted for searchsorted (encode) and
            # id -> code point (decode), so a 1 MB corpus encodes without a Python loop.
            cps = np.array([ord(t) for t in tokens[1:]], dtype=np.int64)
            order = np.argsort(cps, kind="stable")
            self._sorted_cps = cps[order]
            self._sorted_ids = (order + 1).astype(np.int64)
            self._id_to_cp = np.concatenate(
                [np.array([ord(self.unk_text)], dtype=np.int64), cps]
            ).astype(np.uint32)

    @classmethod
    def from_text(
        cls,
        text: str,
        kind: str = "char",
        *,
        min_count: int = 1,
        max_size: int | None = None,
    ) -> "Vocab":
        """Build a vocabulary from training text.

        ``min_count``: tokens seen fewer times map to ``<unk>``. ``max_size``: the most
        frequent tokens are kept so that ``len(vocab) <= max_size`` *including* ``<unk>``
        (frequency ties broken alphabetically, so the result is deterministic).
        """
        if kind not in VOCAB_KINDS:
            raise ValueError(f"vocab kind must be one of {VOCAB_KINDS}, got {kind!r}")
        if not isinstance(text, str):
            raise ValueError(f"vocab text must be a str, got {type(text).__name__}")
        if not text:
            raise ValueError("cannot build a vocabulary from empty text")
        min_count = _check_positive_int(min_count, "min_count")
        if max_size is not None:
            max_size = _check_positive_int(max_size, "max_size")
            if max_size < 2:
                raise ValueError(f"max_size must be >= 2 (<unk> plus one token), got {max_size}")
        counts = Counter(text if kind == "char" else _WORD_RE.findall(text))
        ranked = sorted((t for t, c in counts.items() if c >= min_count),
                        key=lambda t: (-counts[t], t))
        if max_size is not None:
            ranked = ranked[: max_size - 1]
        if not ranked:
            raise ValueError(f"no token occurs at least min_count={min_count} times")
        if kind == "char":
            ranked.sort()  # code-point order: ids independent of frequency ties
        return cls([UNK, *ranked], kind)

    def __len__(self) -> int:
        return len(self.tokens)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Vocab):
            return NotImplemented
        return self.kind == other.kind and self.tokens == other.tokens

    def __repr__(self) -> str:
        return f"Vocab(kind={self.kind!r}, size={len(self)})"

    def index(self, token: str) -> int:
        """Id of one token; 0 (``<unk>``) when unknown."""
        return self._index.get(token, UNK_ID)

    def tokenize(self, text: str) -> list[str]:
        """Split text into tokens; ``"".join(tokenize(text)) == text`` for both kinds."""
        return list(text) if self.kind == "char" else _WORD_RE.findall(text)

    def join(self, tokens: Iterable[str]) -> str:
        """Inverse of `tokenize`: whitespace is tokenised, so joining is concatenation."""
        return "".join(tokens)

    def encode(self, text: str) -> np.ndarray:
        """Token ids (int64, one per token of `tokenize`); unseen tokens become 0."""
        if not isinstance(text, str):
            raise ValueError(f"encode expects a str, got {type(text).__name__}")
        if self.kind == "word":
            get = self._index.get
            return np.fromiter((get(t, UNK_ID) for t in _WORD_RE.findall(text)),
                               dtype=np.int64)
        if not text or len(self._sorted_cps) == 0:
            return np.zeros(len(text), dtype=np.int64)
        # utf-32 gives one code unit per code point; surrogatepass keeps lone surrogates
        # (possible in str, never from read_text) from raising here.
        cps = np.frombuffer(text.encode("utf-32-le", "surrogatepass"),
                            dtype="<u4").astype(np.int64)
        pos = np.searchsorted(self._sorted_cps, cps)
        pos_c = np.minimum(pos, len(self._sorted_cps) - 1)
        hit = self._sorted_cps[pos_c] == cps
        return np.where(hit, self._sorted_ids[pos_c], UNK_ID).astype(np.int64)

    def decode(self, ids: Iterable[int] | np.ndarray) -> str:
        """Text of a 1-D id sequence; id 0 renders as `unk_text`. Out-of-range ids raise."""
        arr = _as_id_array(ids if isinstance(ids, np.ndarray) else list(ids))
        if arr.size and (arr.min() < 0 or arr.max() >= len(self)):
            bad = arr[(arr < 0) | (arr >= len(self))][0]
            raise ValueError(f"id {bad} out of range for a vocabulary of {len(self)} tokens")
        if self.kind == "char":
            return self._id_to_cp[arr].astype("<u4").tobytes().decode(
                "utf-32-le", "surrogatepass")
        toks = self.tokens
        return "".join(self.unk_text if i == UNK_ID else toks[i] for i in arr.tolist())

    def to_json(self) -> dict[str, Any]:
        """A plain JSON-able dict: ``{"kind": ..., "tokens": [...]}`` (``tokens[0]`` is <unk>)."""
        return {"kind": self.kind, "tokens": list(self.tokens)}

    @classmethod
    def from_json(cls, d: Any) -> "Vocab":
        """Rebuild from `to_json` output; a malformed dict raises `ValueError`."""
        if not isinstance(d, dict) or set(d) != {"kind", "tokens"}:
            keys = sorted(d) if isinstance(d, dict) else type(d).__name__
            raise ValueError(f"vocab JSON must have exactly keys 'kind' and 'tokens', got {keys}")
        if not isinstance(d["tokens"], list):
            raise ValueError("vocab JSON 'tokens' must be a list")
        return cls(d["tokens"], d["kind"])


def split_train_val(
    ids: np.ndarray, val_fraction: float, *, min_len: int = 2
) -> tuple[np.ndarray, np.ndarray]:
    """Split an id stream: the first part trains, the last ``val_fraction`` validates.

    The validation part has ``round(len(ids) * val_fraction)`` ids; ``val_fraction=0`` gives
    an empty validation array. Each non-empty part must hold at least ``min_len`` ids (2 is
    one input/target pair), otherwise a `ValueError` gives the sizes. Returns int64 views.
    """
    arr = _as_id_array(ids)
    if isinstance(val_fraction, bool) or not isinstance(val_fraction, (int, float, np.floating)):
        raise ValueError(f"val_fraction must be a number, got {val_fraction!r}")
    if not 0.0 <= float(val_fraction) < 1.0:  # also rejects NaN
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    n = len(arr)
    n_val = int(round(n * float(val_fraction)))
    if val_fraction > 0 and n_val < min_len:
        raise ValueError(
            f"text of {n} tokens is too short for val_fraction={val_fraction}: the validation "
            f"part would have {n_val} tokens (need >= {min_len})")
    if n - n_val < min_len:
        raise ValueError(
            f"text of {n} tokens is too short for val_fraction={val_fraction}: the training "
            f"part would have {n - n_val} tokens (need >= {min_len})")
    return arr[: n - n_val], arr[n - n_val:]


class StreamBatcher:
    """Truncated-BPTT windows over ``batch`` parallel, contiguous streams of one id sequence.

    With ``L = len(ids) // batch``, stream ``b`` is ``ids[b*L : (b+1)*L]`` (the last
    ``len(ids) % batch`` ids are unused). Window ``k`` is ``(x, y)``, both ``(batch, seq_len)``
    int64::

        x[b] = stream_b[k*seq_len     : (k+1)*seq_len]
        y[b] = stream_b[k*seq_len + 1 : (k+1)*seq_len + 1]      # next-token targets

    so window ``k+1`` continues each stream exactly where window ``k`` stopped, and the hidden
    state of row ``b`` can be carried across windows. There are ``(L - 1) // seq_len``
    windows per epoch; the final partial window is dropped so every window has the full shape
    (at most ``seq_len`` targets per stream go unused per epoch). Each epoch replays the same
    windows from the start; the training loop resets the state at epoch boundaries and can
    resume anywhere with ``window(step % len(batcher))``.
    """

    def __init__(self, ids: np.ndarray, batch: int, seq_len: int) -> None:
        arr = _as_id_array(ids)
        self.batch = _check_positive_int(batch, "batch")
        self.seq_len = _check_positive_int(seq_len, "seq_len")
        need = self.batch * (self.seq_len + 1)
        if len(arr) < need:
            raise ValueError(
                f"text too short for one window: {len(arr)} tokens, but batch={self.batch} "
                f"streams of seq_len={self.seq_len} + 1 need at least {need}")
        self.stream_len = len(arr) // self.batch
        # A private contiguous copy: windows are then plain row slices and a caller mutating
        # its id array later cannot change what the batcher yields.
        self.streams = np.array(
            arr[: self.batch * self.stream_len].reshape(self.batch, self.stream_len),
            dtype=np.int64, copy=True)  # (batch, L)
        self.streams.flags.writeable = False
        self._n = (self.stream_len - 1) // self.seq_len

    def __len__(self) -> int:
        """Windows per epoch."""
        return self._n

    def window(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Window ``k`` of an epoch as ``(x, y)``, each ``(batch, seq_len)`` int64 (fresh copies)."""
        if isinstance(k, (bool, np.bool_)) or not isinstance(k, (int, np.integer)):
            raise ValueError(f"window index must be an int, got {k!r}")
        if not 0 <= k < self._n:
            raise ValueError(f"window index {k} out of range [0, {self._n})")
        t0 = int(k) * self.seq_len
        x = self.streams[:, t0: t0 + self.seq_len].copy()           # (N, T)
        y = self.streams[:, t0 + 1: t0 + self.seq_len + 1].copy()   # (N, T)
        return x, y

    def __iter__(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """One epoch of windows in time order."""
        for k in range(self._n):
            yield self.window(k)


def eval_windows(ids: np.ndarray, seq_len: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Walk one stream (batch 1) through the whole of ``ids`` for evaluation with state carried.

    Yields ``(x, y)`` of shape ``(1, t)`` int64 with ``t <= seq_len``; consecutive windows
    continue each other and the last one may be shorter, so every one of the
    ``len(ids) - 1`` targets is scored exactly once (nothing dropped, unlike training).
    Validates eagerly: a bad argument raises here, not at the first ``next()``.
    """
    arr = _as_id_array(ids)
    seq_len = _check_positive_int(seq_len, "seq_len")
    if len(arr) < 2:
        raise ValueError(f"evaluation text needs at least 2 tokens (one target), got {len(arr)}")

    def gen() -> Iterator[tuple[np.ndarray, np.ndarray]]:
        n_targets = len(arr) - 1
        for t0 in range(0, n_targets, seq_len):
            t1 = min(t0 + seq_len, n_targets)
            yield arr[None, t0:t1].copy(), arr[None, t0 + 1: t1 + 1].copy()  # (1, t)

    return gen()
