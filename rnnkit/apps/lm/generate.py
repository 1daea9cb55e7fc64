"""Sampling text from a trained language model, and measuring how well it predicts a text."""
from __future__ import annotations

import math
from typing import Callable, Iterator

import numpy as np

from ...data.text import UNK_ID, Vocab
from ...nn import frozen
from .model import LanguageModel, stream_nll


def next_token_distribution(logits: np.ndarray, temperature: float, top_k: int | None,
                            top_p: float | None) -> np.ndarray:
    """Probabilities over the vocabulary from one step's logits (V,), float64.

    temperature 0 puts all mass on the arg-max (greedy); top-k keeps the k most likely tokens;
    top-p keeps the smallest set of most likely tokens whose mass reaches p (nucleus sampling).
    """
    z = logits.astype(np.float64)
    z[UNK_ID] = -np.inf  # never write the unknown token
    if temperature == 0:
        p = np.zeros_like(z)
        p[int(np.argmax(z))] = 1.0
        return p
    z = z / temperature
    if top_k is not None and top_k < len(z):
        kth = np.partition(z, -top_k)[-top_k]
        z[z < kth] = -np.inf
    p = np.exp(z - z.max())
    p /= p.sum()
    if top_p is not None and top_p < 1.0:
        order = np.argsort(-p, kind="stable")
        mass = np.cumsum(p[order])
        keep = order[: int(np.searchsorted(mass, top_p)) + 1]  # the first token always stays
        q = np.zeros_like(p)
        q[keep] = p[keep]
        p = q / q.sum()
    return p


def check_sampling(temperature: float, top_k: int | None, top_p: float | None, length: int) -> None:
    if not temperature >= 0 or math.isinf(temperature):
        raise ValueError(f"--temperature must be a finite number >= 0, got {temperature}")
    if top_k is not None and top_k < 1:
        raise ValueError(f"--top-k must be >= 1, got {top_k}")
    if top_p is not None and not 0 < top_p <= 1:
        raise ValueError(f"--top-p must be in (0, 1], got {top_p}")
    if length < 0:
        raise ValueError(f"--length must be >= 0, got {length}")


def sample(model: LanguageModel, vocab: Vocab, prime: str = "", length: int = 500,
           temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None,
           seed: int | None = None) -> Iterator[str]:
    """Yield ``length`` generated tokens (as text) one at a time, after reading ``prime``."""
    check_sampling(temperature, top_k, top_p, length)
    rng = np.random.default_rng(seed)
    ids = vocab.encode(prime) if prime else np.array([], np.int64)
    if ids.size == 0:  # no prime: start as after a line break (or a random token)
        start = vocab.index("\n") if "\n" in vocab.tokens else int(rng.integers(1, len(vocab)))
        ids = np.array([start], np.int64)
    model.eval()
    # one frozen scope entered around each call, not held across the yields: the weight copies
    # are made once for the whole text (the parameters read-only until it ends), and the
    # caller's code between tokens runs with gradients on as usual
    scope = frozen(persist=True)
    try:
        with scope:
            logits, state = model.forward(ids[None, :])
        for _ in range(length):
            p = next_token_distribution(logits[0, -1], temperature, top_k, top_p)
            token = int(rng.choice(len(p), p=p))
            yield vocab.decode([token])
            with scope:
                logits, state = model.forward(np.array([[token]]), state)
    finally:
        scope.release()


def evaluate_text(model: LanguageModel, vocab: Vocab, text: str, seq_len: int = 200,
                  streams: int | None = None) -> dict:
    """Nats, bits and perplexity per token of ``text``; unknown symbols count (as <unk>)."""
    ids = vocab.encode(text)
    if len(ids) < 2:
        raise ValueError("the text needs at least two tokens to evaluate")
    if streams is None:  # each stream at least 20k tokens: state resets are negligible
        streams = max(1, min(64, len(ids) // 20000))
    model.eval()
    with frozen():
        total, count = stream_nll(model, ids, seq_len, streams)
    nats = total / count
    unit = "char" if vocab.kind == "char" else "token"
    return {"nats_per_char": nats, "bits_per_char": nats / math.log(2),
            "perplexity": math.exp(nats), "chars": int(count), "unit": unit,
            "unknown": int(np.sum(ids[1:] == UNK_ID)), "streams": streams}


def stream_to(write: Callable[[str], object], flush: Callable[[], object], tokens: Iterator[str]) -> None:
    for piece in tokens:
        write(piece)
        flush()


class TextModel:
    """A trained language model with its vocabulary: what ``rnnkit.load`` gives for an lm run.

    ``generate(prime, length, ...)`` writes text; ``evaluate(text)`` scores one.
    """

    def __init__(self, model: LanguageModel, vocab: Vocab, settings) -> None:
        self.model, self.vocab, self.settings = model, vocab, settings

    def unknown(self, text: str) -> list[str]:
        """The distinct symbols of ``text`` the vocabulary lacks (they are read as <unk>)."""
        return sorted({t for t in self.vocab.tokenize(text) if self.vocab.index(t) == UNK_ID})

    def generate(self, prime: str = "", length: int = 500, temperature: float = 0.8,
                 top_k: int | None = None, top_p: float | None = None,
                 seed: int | None = None) -> str:
        """``length`` tokens written after reading ``prime`` (the prime is not repeated)."""
        return "".join(self.stream(prime, length, temperature, top_k, top_p, seed))

    def stream(self, prime: str = "", length: int = 500, temperature: float = 0.8,
               top_k: int | None = None, top_p: float | None = None,
               seed: int | None = None) -> Iterator[str]:
        """The tokens of `generate` one at a time, as they are drawn."""
        check_sampling(temperature, top_k, top_p, length)  # now, not at the first token
        return sample(self.model, self.vocab, prime, length, temperature, top_k, top_p, seed)

    def evaluate(self, text: str, streams: int | None = None) -> dict:
        """Nats, bits and perplexity per token of ``text`` (see `evaluate_text`)."""
        if streams is not None and streams < 1:
            raise ValueError(f"--streams must be >= 1, got {streams}")
        return evaluate_text(self.model, self.vocab, text, self.settings.seq_len, streams)
