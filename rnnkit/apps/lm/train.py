"""Training a language model: char-rnn-style stateful truncated BPTT on the shared loop.

``batch`` parallel streams walk through the training text; the hidden state is carried from one
``seq_len`` window to the next and reset at every epoch boundary.  The batch of step k is window
``k mod windows-per-epoch``, and the carried state is part of every checkpoint, so ``--resume``
ends bit-identical to a run never stopped (`rnnkit.train.engine.fit` does the rest).
"""
from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ...data.text import StreamBatcher, Vocab, default_corpus_path, read_text
from ...nn import CrossEntropyLoss, frozen
from ...train.engine import load_run
from ...train.settings import TrainSettings, at_least, field, with_defaults
from ...train.task import Task
from .model import LanguageModel, ModelConfig, state_arrays, state_from_arrays, stream_nll


@dataclass
class LMSettings(with_defaults(
        TrainSettings,
        cell="lstm", hidden=256, layers=2, dropout=0.1, batch=32, lr=3e-3, min_lr=3e-4,
        warmup=100, steps=2000, eval_every=250, clip=5.0, val_fraction=0.05)):
    """Settings of ``rnnkit lm train``; the defaults learn best in a few minutes on 2 CPU cores."""

    embed: int = field(64, "embedding size")
    tokens: str = field("char", "token unit", choices=("char", "word"))
    vocab_size: int = field(10000, "largest word vocabulary (word tokens only), <unk> included")
    seq_len: int = field(100, "truncated-BPTT window length")

    def check(self) -> None:
        super().check()
        at_least(self, "embed", "vocab_size", "seq_len")

    def model_config(self, vocab_size: int) -> ModelConfig:
        return ModelConfig(vocab_size=vocab_size, cell=self.cell, embed=self.embed,
                           hidden=self.hidden, layers=self.layers, dropout=self.dropout,
                           dtype=self.dtype)


def load_corpus(paths: list[str] | None) -> tuple[str, list[str]]:
    """The training text: the given UTF-8 files joined, or the bundled Shakespeare."""
    paths = [str(p) for p in paths] if paths else [str(default_corpus_path())]
    return "".join(read_text(p) for p in paths), paths


def prepare(text: str, s: LMSettings):
    """Split the text (the last val_fraction is validation) and build the vocabulary from training."""
    if s.tokens == "char":
        cut = len(text) - int(round(len(text) * s.val_fraction))
        train_text, val_text = text[:cut], text[cut:]
        vocab = Vocab.from_text(train_text, kind="char")
    else:
        words = Vocab.from_text(text[:1], kind="word").tokenize(text)
        cut = len(words) - int(round(len(words) * s.val_fraction))
        train_text, val_text = "".join(words[:cut]), "".join(words[cut:])
        vocab = Vocab.from_text(train_text, kind="word", max_size=s.vocab_size)
    val_ids = vocab.encode(val_text)
    need = s.seq_len + 1
    if len(val_ids) < need:
        raise ValueError(f"--val-fraction {s.val_fraction} leaves {len(val_ids)} validation "
                         f"{s.tokens}s, too few to measure (at least --seq-len + 1 = {need}); "
                         "raise --val-fraction or give more text")
    return vocab, vocab.encode(train_text), val_ids


class LMTask(Task):
    """Next-token prediction over ``batch`` parallel streams, state carried between windows."""

    app = "lm"
    state_rows = 1  # the carried state (L, N, H) has one row per stream

    def __init__(self, s: LMSettings, texts: list[str] | None = None, checkpoint=None) -> None:
        if checkpoint is not None and texts is None:
            texts = checkpoint[0]["texts"]
        self.s = s
        text, self.texts = load_corpus(texts)
        self.fingerprint = hashlib.sha256(text.encode("utf-8")).hexdigest()
        self.vocab, self.train_ids, self.val_ids = prepare(text, s)
        if checkpoint is not None:
            config = checkpoint[0]
            if config.get("fingerprint") != self.fingerprint:
                raise ValueError("--resume: the training text differs from the one the checkpoint "
                                 "was trained on")
            if Vocab.from_json(config["vocab"]) != self.vocab:
                raise ValueError("--resume: the vocabulary differs from the checkpoint's")
        self.batcher = StreamBatcher(self.train_ids, s.batch, s.seq_len)
        self.model = LanguageModel(s.model_config(len(self.vocab)), np.random.default_rng(s.seed),
                                   np.random.default_rng([s.seed, 1]))
        self.loss_fn = CrossEntropyLoss()
        self.carried = None  # the hidden state carried from window to window
        self.loss_name = f"nats/{s.tokens}"
        self.explode = 3 * math.log(len(self.vocab)) + 1  # far worse than guessing uniformly

    def describe(self) -> str:
        s = self.s
        return (f"{len(self.train_ids):,} training and {len(self.val_ids):,} validation "
                f"{s.tokens}s, vocabulary {len(self.vocab)}, {s.cell} {s.layers}x{s.hidden}")

    def show(self, name: str, value: float) -> str:
        return f"{value:.4f} nats/{self.s.tokens} ({value / math.log(2):.3f} bits)"

    def batch(self, step: int):
        k = step % len(self.batcher)
        return (k, *self.batcher.window(k))

    def loss(self, batch) -> float:
        k, x, y = batch
        if k == 0:
            self.carried = None  # a new epoch starts every stream from the beginning again
        logits, self.carried = self.model.forward(x, self.carried)
        loss = float(self.loss_fn.forward(logits, y))
        self.model.backward(self.loss_fn.backward())
        return loss

    def evaluate_shard(self, rank: int, size: int) -> dict[str, tuple[float, float]]:
        """Nats and tokens over the validation text (``batch`` streams, state carried; under MPI
        each rank scores its share of the streams)."""
        self.model.eval()
        with frozen():
            total, count = stream_nll(self.model, self.val_ids, self.s.seq_len, self.s.batch,
                                      rank, size)
        return {"loss": (total, count)}

    def config(self) -> dict:
        return {"model": self.model.cfg.to_json(), "vocab": self.vocab.to_json(),
                "texts": self.texts, "fingerprint": self.fingerprint}

    def state(self) -> dict[str, np.ndarray]:
        return state_arrays(self.carried)

    def load_state(self, arrays) -> None:
        self.carried = state_from_arrays(arrays)

    def rngs(self) -> dict[str, np.random.Generator]:
        return {"dropout": self.model.rng}


def load_model(directory: str | Path, which: str = "best"):
    """Rebuild a trained language model from its run folder: (model, vocab, settings)."""
    run = load_run(directory, "lm", LMSettings)
    with run.entries() as config:
        cfg, vocab = ModelConfig(**config["model"]), Vocab.from_json(config["vocab"])
    model = LanguageModel(cfg, np.random.default_rng(0))
    model.load_state_dict(run.params(which))
    model.eval()
    return model, vocab, run.settings
