"""The acoustic model: stacked bidirectional GRU / LSTM over audio frames -> Linear -> logits.

The logits (N, T, C) go to ``rnnkit.nn.ctc.CTCLoss`` (which applies the log-softmax) in training
and through ``log_softmax`` to the decoders at inference.  Class 0 is the CTC blank; classes
1..C-1 are the alphabet's characters.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from ...nn import Dropout, Linear, Module, log_softmax, recurrent_layer

DEFAULT_CHARS = " 'abcdefghijklmnopqrstuvwxyz"
BLANK = 0


def normalize_text(text: str) -> str:
    """Lower case, runs of whitespace collapsed to one space, no leading or trailing space."""
    return " ".join(str(text).lower().split())


class Alphabet:
    """Characters <-> class ids; id 0 is the CTC blank, characters are 1..len(chars)."""

    def __init__(self, chars: str = DEFAULT_CHARS) -> None:
        if len(set(chars)) != len(chars) or not chars:
            raise ValueError(f"alphabet characters must be distinct and non-empty, got {chars!r}")
        self.chars = chars
        self.index = {c: k + 1 for k, c in enumerate(chars)}

    @classmethod
    def for_texts(cls, texts) -> "Alphabet":
        """The default letters, apostrophe and space, plus any other character the texts use."""
        extra = sorted(set("".join(texts)) - set(DEFAULT_CHARS))
        return cls(DEFAULT_CHARS + "".join(extra))

    def __len__(self) -> int:
        """Number of classes, blank included."""
        return len(self.chars) + 1

    def __eq__(self, other) -> bool:
        return isinstance(other, Alphabet) and other.chars == self.chars

    def encode(self, text: str) -> np.ndarray:
        missing = sorted(set(text) - set(self.index))
        if missing:
            raise ValueError(f"text {text!r} has characters outside the model's alphabet: {missing}")
        return np.array([self.index[c] for c in text], np.int64)

    def decode(self, ids) -> str:
        return "".join(self.chars[k - 1] for k in ids if 0 < k <= len(self.chars))


@dataclass
class ModelConfig:
    """Sizes of a `SpeechModel` (saved in checkpoints; the defaults live in `ASRSettings`)."""

    input_size: int
    classes: int
    cell: str
    hidden: int
    layers: int
    dropout: float
    dtype: str

    def to_json(self) -> dict:
        return asdict(self)


class SpeechModel(Module):
    """logits (N, T, C) = Linear(Dropout(BiRNN(x, lengths)));  padded frames give the bias only."""

    def __init__(self, cfg: ModelConfig, rng: np.random.Generator,
                 dropout_rng: np.random.Generator | None = None) -> None:
        super().__init__()
        self.cfg = cfg
        dtype = np.dtype(cfg.dtype)
        self.rnn = recurrent_layer(cfg.cell, cfg.input_size, cfg.hidden, num_layers=cfg.layers,
                                   bidirectional=True, dropout=cfg.dropout, dtype=dtype, rng=rng)
        self.drop = Dropout(cfg.dropout)
        self.head = Linear(2 * cfg.hidden, cfg.classes, dtype=dtype, rng=rng)
        self.set_rng(dropout_rng if dropout_rng is not None else np.random.default_rng())

    def set_rng(self, rng: np.random.Generator) -> None:
        self.rng = self.rnn.rng = self.drop.rng = rng

    def forward(self, x: np.ndarray, lengths: np.ndarray | None = None) -> np.ndarray:
        """x (N, T, F) frames, lengths (N,) -> logits (N, T, C)."""
        h, _ = self.rnn.forward(x, lengths=lengths)  # (N, T, 2H), 0 at padded frames
        return self.head.forward(self.drop.forward(h))

    def backward(self, dlogits: np.ndarray) -> None:
        dh = self.drop.backward(self.head.backward(dlogits))
        self.rnn.backward(dh)

    def log_probs(self, x: np.ndarray, lengths: np.ndarray | None = None) -> np.ndarray:
        """(N, T, C) float64 log-probabilities for decoding (call under no_grad, in eval mode)."""
        return log_softmax(self.forward(x, lengths).astype(np.float64))
