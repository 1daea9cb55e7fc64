"""Training a translation model on the shared loop: length-bucketed batches, masked cross-entropy.

The pairs are split once (a seeded shuffle; the last ``val_fraction``, at most ``max_val``
pairs, are held out).  Each epoch shuffles the training pairs, sorts chunks of 50 batches by
target length (so a batch pads little) and shuffles the batches (`EpochBatches`: the batch of a
step is a function of the step).  The loss is the mean cross-entropy over the real target tokens
(<pad> ignored), <eos> included.  Validation measures the loss and greedy exact match; the best
parameters (highest validation exact match, then lowest loss) are what ``run``/``eval`` use.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ...data.batching import EpochBatches
from ...nn import CrossEntropyLoss, frozen
from ...train.engine import load_run
from ...train.settings import TrainSettings, at_least, field, with_defaults
from ...train.task import Task
from .data import TokenVocab, pad_batch
from .decode import translate
from .metrics import exact_match
from .model import PAD, ModelConfig, Seq2Seq


@dataclass
class TranslateSettings(with_defaults(
        TrainSettings,
        cell="gru", hidden=128, layers=1, dropout=0.0, batch=64, lr=3e-3, min_lr=1e-4,
        warmup=100, steps=3000, eval_every=250, clip=5.0, val_fraction=0.05)):
    """Settings of ``rnnkit translate train``; the defaults suit short strings on 2 CPU cores."""

    embed: int = field(32, "token embedding size")
    bidirectional: bool = field(True, "bidirectional encoder")
    attention: str = field("bahdanau", "attention", choices=("bahdanau", "luong", "none"))
    score: str = field("general", "Luong's score function", choices=("general", "dot"))
    tokens: str = field("char", "target token unit", choices=("char", "word"))
    src_tokens: str | None = field(None, "source token unit (default: --tokens)", choices=("char", "word"))
    vocab_size: int = field(8000, "largest vocabulary per side (specials included)")
    teacher_forcing: float = field(1.0, "probability that the decoder reads the true previous token")
    max_val: int = field(500, "at most this many validation pairs")

    def check(self) -> None:
        super().check()
        at_least(self, "embed", "vocab_size", "max_val")
        if not 0.0 <= self.teacher_forcing <= 1.0:
            raise ValueError(f"--teacher-forcing must be in [0, 1], got {self.teacher_forcing}")

    def model_config(self, src_vocab: int, tgt_vocab: int) -> ModelConfig:
        return ModelConfig(src_vocab=src_vocab, tgt_vocab=tgt_vocab, cell=self.cell,
                           embed=self.embed, hidden=self.hidden, layers=self.layers,
                           bidirectional=self.bidirectional, attention=self.attention,
                           score=self.score, dtype=self.dtype, dropout=self.dropout)


def split_pairs(pairs, s: TranslateSettings):
    """(train, validation) pairs: a seeded shuffle, the last val_fraction (<= max_val) held out."""
    order = np.random.default_rng([s.seed, 7]).permutation(len(pairs))
    n_val = min(int(round(len(pairs) * s.val_fraction)), s.max_val)
    if n_val < 1:
        raise ValueError(f"--val-fraction {s.val_fraction} leaves no validation pairs among "
                         f"{len(pairs)}; raise it")
    if len(pairs) - n_val < 1:
        raise ValueError("no training pairs left after holding out validation pairs")
    return [pairs[i] for i in order[n_val:]], [pairs[i] for i in order[:n_val]]


def make_batch(src_ids, tgt_ids):
    """-> src (N, S), src_len (N,), tgt_in (N, T) = <bos> y, tgt_out (N, T) = y <eos>."""
    src, src_len = pad_batch([s or [PAD] for s in src_ids])
    tgt_in, _ = pad_batch(tgt_ids, bos=True)
    tgt_out, _ = pad_batch(tgt_ids, eos=True)
    return src, src_len, tgt_in, tgt_out


class TranslateTask(Task):
    """Teacher-forced cross-entropy on bucketed pair batches; validation exact match picks the best."""

    app = "translate"
    metric = "exact_match"
    higher_is_better = True
    loss_name = "nats/token"

    def __init__(self, s: TranslateSettings, pairs, pairs_path: str | None = None,
                 checkpoint=None) -> None:
        self.s, self.pairs_path = s, pairs_path
        self.train_pairs, self.val_pairs = split_pairs(pairs, s)
        src_kind = s.src_tokens or s.tokens
        self.src_vocab = TokenVocab.build((p[0] for p in self.train_pairs), src_kind, s.vocab_size)
        self.tgt_vocab = TokenVocab.build((p[1] for p in self.train_pairs), s.tokens, s.vocab_size)
        if checkpoint is not None and (
                TokenVocab.from_json(checkpoint[0]["src_vocab"]) != self.src_vocab
                or TokenVocab.from_json(checkpoint[0]["tgt_vocab"]) != self.tgt_vocab):
            raise ValueError("--resume: the pairs give other vocabularies than the checkpoint's")

        def encode(ps):
            return [self.src_vocab.encode(a) for a, _ in ps], [self.tgt_vocab.encode(b) for _, b in ps]
        self.train_src, self.train_tgt = encode(self.train_pairs)
        self.val_src, self.val_tgt = encode(self.val_pairs)
        # decoding stops after this many tokens: room beyond the longest training target
        self.max_len = int(max(len(t) for t in self.train_tgt) * 1.5) + 10
        self.model = Seq2Seq(s.model_config(len(self.src_vocab), len(self.tgt_vocab)),
                             np.random.default_rng(s.seed), np.random.default_rng([s.seed, 1]))
        self.batches = EpochBatches(len(self.train_pairs), s.batch, [s.seed, 2],
                                    np.array([len(t) for t in self.train_tgt]))
        self.loss_fn = CrossEntropyLoss(ignore_index=PAD)

    def describe(self) -> str:
        s = self.s
        return (f"{len(self.train_pairs):,} training and {len(self.val_pairs):,} validation pairs, "
                f"vocabularies {len(self.src_vocab)} -> {len(self.tgt_vocab)} "
                f"({s.src_tokens or s.tokens} -> {s.tokens}), {s.cell} {s.layers}x{s.hidden}, "
                f"attention {s.attention}")

    def batch(self, step: int):
        idx = self.batches[step]
        src, src_len, tgt_in, tgt_out = make_batch([self.train_src[i] for i in idx],
                                                   [self.train_tgt[i] for i in idx])
        feed = None
        if self.s.teacher_forcing < 1.0:  # drawn from the step alone: resumable, shardable
            rng = np.random.default_rng([self.s.seed, 3, step])
            feed = rng.random(tgt_in.shape) < self.s.teacher_forcing
        return src, src_len, tgt_in, tgt_out, feed

    def loss(self, batch) -> float:
        src, src_len, tgt_in, tgt_out, feed = batch
        logits = self.model.forward(src, src_len, tgt_in, feed)
        loss = float(self.loss_fn.forward(logits, tgt_out))
        self.model.backward(self.loss_fn.backward())
        return loss

    def shard(self, batch, rank: int, size: int):
        """Every size-th pair from ``rank``, the padding beyond its longest source and target cut."""
        src, src_len, tgt_in, tgt_out, feed = super().shard(batch, rank, size)
        if not len(src):
            return src, src_len, tgt_in, tgt_out, feed
        width = int((tgt_out != PAD).sum(axis=1).max())
        return (src[:, : src_len.max()], src_len, tgt_in[:, :width], tgt_out[:, :width],
                None if feed is None else feed[:, :width])

    def weight(self, batch) -> float:
        """The loss is a mean over the real target tokens: their number."""
        return float((batch[3] != PAD).sum())

    def evaluate_shard(self, rank: int, size: int) -> dict[str, tuple[float, float]]:
        """Nats per target token and greedy exact match on rank's share of the validation pairs."""
        model = self.model
        model.eval()
        total = count = 0.0
        val_src, val_tgt = self.val_src[rank::size], self.val_tgt[rank::size]
        with frozen():
            for k in range(0, len(val_src), 256):
                src, src_len, tgt_in, tgt_out = make_batch(val_src[k : k + 256],
                                                           val_tgt[k : k + 256])
                logits = model.forward(src, src_len, tgt_in)
                n = float((tgt_out != PAD).sum())
                total += float(CrossEntropyLoss(ignore_index=PAD).forward(logits, tgt_out)) * n
                count += n
            model.clear_caches()
        pairs = self.val_pairs[rank::size]
        hyps = translate(model, self.src_vocab, self.tgt_vocab, [p[0] for p in pairs], beam=1,
                         max_len=self.max_len) if pairs else []
        matches = sum(h.strip() == p[1].strip() for h, p in zip(hyps, pairs))  # as exact_match
        return {"loss": (total, count), "exact_match": (matches, len(pairs))}

    def config(self) -> dict:
        return {"model": self.model.cfg.to_json(), "src_vocab": self.src_vocab.to_json(),
                "tgt_vocab": self.tgt_vocab.to_json(), "max_len": self.max_len,
                "pairs": self.pairs_path}

    def rngs(self) -> dict[str, np.random.Generator]:
        return {"dropout": self.model.rng}


class Translator:
    """A trained translator: what ``rnnkit.load`` gives for a translate run (``translate``)."""

    def __init__(self, model: Seq2Seq, src_vocab: TokenVocab, tgt_vocab: TokenVocab,
                 max_len: int, settings: TranslateSettings) -> None:
        self.model, self.src_vocab, self.tgt_vocab = model, src_vocab, tgt_vocab
        self.max_len, self.settings = max_len, settings

    def unknown(self, text: str) -> list[str]:
        """The distinct source tokens of ``text`` outside the vocabulary (read as <unk>)."""
        return self.src_vocab.unknown(text)

    def translate(self, texts, beam: int = 1, max_len: int | None = None, alpha: float = 1.0,
                  return_attention: bool = False):
        """Translations of ``texts`` (a list of str; greedy for beam 1, else beam search with
        length normalisation ``alpha``); with ``return_attention`` also the attention weights."""
        if beam < 1:
            raise ValueError(f"--beam must be >= 1, got {beam}")
        if max_len is not None and max_len < 1:
            raise ValueError(f"--max-len must be >= 1, got {max_len}")
        return translate(self.model, self.src_vocab, self.tgt_vocab, list(texts), beam,
                         max_len or self.max_len, alpha, return_attention=return_attention)

    def evaluate(self, pairs, beam: int = 1, max_len: int | None = None, alpha: float = 1.0):
        """-> ({"bleu", "exact_match", "token_accuracy", "pairs"}, outputs) on (source, target) pairs."""
        from .data import tokenize
        from .metrics import corpus_bleu, token_accuracy
        outs = self.translate([p[0] for p in pairs], beam, max_len, alpha)
        refs = [p[1] for p in pairs]
        kind = self.tgt_vocab.kind
        result = {"bleu": corpus_bleu(outs, refs)["bleu"], "exact_match": exact_match(outs, refs),
                  "token_accuracy": token_accuracy([tokenize(o, kind) for o in outs],
                                                   [tokenize(r, kind) for r in refs]),
                  "pairs": len(pairs)}
        return result, outs


def load_model(directory: str | Path, which: str = "best") -> Translator:
    """Rebuild a trained translator from its run folder."""
    run = load_run(directory, "translate", TranslateSettings)
    with run.entries() as config:
        model = Seq2Seq(ModelConfig(**config["model"]), np.random.default_rng(0))
        src, tgt = TokenVocab.from_json(config["src_vocab"]), TokenVocab.from_json(config["tgt_vocab"])
        max_len = int(config["max_len"])
    model.load_state_dict(run.params(which))
    model.eval()
    return Translator(model, src, tgt, max_len, run.settings)
