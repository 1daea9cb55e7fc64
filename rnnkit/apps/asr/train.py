"""Training the CTC speech recogniser on the shared loop, and decoding with a trained one.

Features are computed once for the whole manifest and kept in memory; each step takes a batch
of utterances of similar length (bucketing keeps padding small), runs the bidirectional RNN over
the padded batch with its lengths, and minimises the CTC loss (torch's 'mean': each loss divided
by its target length).  The greedy character error rate on the validation utterances decides
which parameters are kept as the best; the checkpoint (``config.json`` + ``.npz``) rebuilds the
model, its alphabet and its feature pipeline for ``transcribe`` and ``eval``.
"""
from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ...data.audio import FeatureConfig
from ...data.batching import EpochBatches, pad
from ...nn import no_grad
from ...nn.ctc import CTCLoss
from ...train.checkpoint import load_checkpoint
from ...train.settings import TrainSettings, at_least, field, from_dict, with_defaults
from ...train.task import Task
from .data import (AugmentedBatches, PrefetchedBatches, load_features, read_manifest,
                   transcribe_features)
from .decode import WordLM, decode_features, error_counts, error_rates, lm_for
from .model import BLANK, Alphabet, ModelConfig, SpeechModel


@dataclass
class ASRSettings(with_defaults(
        TrainSettings,
        cell="gru", hidden=128, layers=3, dropout=0.1, batch=32, lr=2e-3, min_lr=1e-4,
        warmup=100, steps=3000, eval_every=200, clip=5.0, val_fraction=0.05)):
    """Settings of ``rnnkit asr train``; the defaults learn spoken digits in minutes on 2 cores."""

    features: str = field("logmel", "input features", choices=("logmel", "mfcc"))
    n_mels: int = field(40, "mel filters")
    deltas: int = field(0, "orders of delta features appended (0, 1, 2)")
    stack: int = field(3, "consecutive 10 ms frames glued into one input frame")
    skip: int = field(3, "keep every skip-th stacked frame (frame subsampling)")
    augment: str = field("full", "on-the-fly augmentation of the training audio (speed, pitch, "
                         "tempo, vocal tract, noise, reverb, telephone, SpecAugment) or none",
                         choices=("full", "none"))
    augment_workers: int = field(1, "processes preparing augmented batches ahead (0: in the trainer)")

    def check(self) -> None:
        super().check()
        at_least(self, "stack", "skip", "n_mels")
        at_least(self, "augment_workers", low=0)
        if self.deltas not in (0, 1, 2):
            raise ValueError(f"--deltas must be 0, 1 or 2, got {self.deltas}")

    def feature_config(self) -> FeatureConfig:
        return FeatureConfig(kind=self.features, n_mels=self.n_mels, deltas=self.deltas,
                             stack=self.stack, skip=self.skip)


def split_items(items: list, val_fraction: float, seed: int) -> tuple[list, list]:
    """(training, validation) items: a seeded shuffle, ``val_fraction`` of them (at least one)
    held out; refused when that leaves nothing on either side."""
    order = np.random.default_rng(seed).permutation(len(items))
    n_val = int(round(len(items) * val_fraction))
    if val_fraction > 0 and len(items) > 1:
        n_val = min(max(n_val, 1), len(items) - 1)
    if n_val < 1:
        raise ValueError(f"--val-fraction {val_fraction} leaves no validation utterances among "
                         f"{len(items)}; raise it or give --val-manifest")
    return [items[i] for i in order[n_val:]], [items[i] for i in order[:n_val]]


class ASRTask(Task):
    """CTC on bucketed batches of utterances; validation greedy CER picks the best parameters."""

    app = "asr"
    metric = "cer"
    loss_name = "CTC loss"

    def __init__(self, s: ASRSettings, manifest: str | Path | None = None,
                 val_manifest: str | Path | None = None, checkpoint=None, workers: int = 2) -> None:
        if checkpoint is not None:
            saved = checkpoint[0]
            manifest = manifest or saved["manifest"]
            val_manifest = val_manifest or saved.get("val_manifest")
        self.s, self.fcfg = s, s.feature_config()
        items = read_manifest(manifest)
        self.manifest, self.val_manifest = str(manifest), val_manifest and str(val_manifest)
        if val_manifest is not None:
            train_items, val_items = items, read_manifest(val_manifest)
        else:
            train_items, val_items = split_items(items, s.val_fraction, s.seed)
        self.alphabet = Alphabet.for_texts([t for _, t in train_items])
        if checkpoint is not None and Alphabet(checkpoint[0]["alphabet"]) != self.alphabet:
            raise ValueError("--resume: the manifest's alphabet differs from the checkpoint's")
        self.train_feats = load_features(train_items, self.fcfg, workers)
        self.val_feats = load_features(val_items, self.fcfg, workers)
        self.train_targets = [self.alphabet.encode(t) for _, t in train_items]
        self.words = WordLM.from_texts([t for _, t in train_items])  # for word-constrained decoding
        self.val_texts = [t for _, t in val_items]
        lengths = np.array([len(f) for f in self.train_feats])
        # CTC cannot align an utterance with fewer frames than characters (zero_infinity drops it)
        self.too_short = int(np.sum(lengths < np.array([len(t) for t in self.train_targets])))
        cfg = ModelConfig(input_size=self.fcfg.dim, classes=len(self.alphabet), cell=s.cell,
                          hidden=s.hidden, layers=s.layers, dropout=s.dropout, dtype=s.dtype)
        self.model = SpeechModel(cfg, np.random.default_rng([s.seed, 0]),
                                 np.random.default_rng([s.seed, 1]))
        self.batches = EpochBatches(len(self.train_feats), s.batch, [s.seed, 2], lengths)
        # with augmentation every step hears its utterances afresh: a pure function of the step,
        # computed ahead in a worker process
        self.augmented = None if s.augment == "none" else PrefetchedBatches(AugmentedBatches(
            train_items, self.train_targets, self.fcfg, s.batch, s.seed, workers=workers),
            s.augment_workers)
        self.ctc = CTCLoss(blank=BLANK, reduction="mean", zero_infinity=True)

    def describe(self) -> str:
        s = self.s
        line = (f"{len(self.train_feats):,} training and {len(self.val_feats):,} validation "
                f"utterances, {len(self.alphabet) - 1} characters + blank, {s.cell} "
                f"{s.layers}x{s.hidden} bidirectional")
        if self.too_short:
            line += (f"; warning: {self.too_short} utterances have fewer frames than characters "
                     "and cannot be learnt (lower --skip)")
        return line

    def batch(self, step: int):
        dtype = np.dtype(self.s.dtype)  # the model's (the features are float32)
        if self.augmented is not None:
            x, lengths, y, ylen = self.augmented.batch(step)
            return x.astype(dtype, copy=False), lengths, y, ylen
        idx = self.batches[step]
        x, lengths = pad([self.train_feats[i] for i in idx], dtype=dtype)  # (B, T, F)
        y, ylen = pad([self.train_targets[i] for i in idx])               # (B, S)
        return x, lengths, y, ylen

    def close(self) -> None:
        if self.augmented is not None:
            self.augmented.close()

    def loss(self, batch) -> float:
        x, lengths, y, ylen = batch
        logits = self.model.forward(x, lengths)                           # (B, T, C)
        loss = float(self.ctc.forward(logits, y, lengths, ylen))
        self.model.backward(self.ctc.backward())
        return loss

    def shard(self, batch, rank: int, size: int):
        """Every size-th utterance from ``rank``, the padding beyond its longest cut."""
        x, lengths, y, ylen = super().shard(batch, rank, size)
        if not len(x):
            return x, lengths, y, ylen
        return x[:, : max(lengths.max(), 1)], lengths, y[:, : max(ylen.max(), 1)], ylen

    def evaluate_shard(self, rank: int, size: int) -> dict[str, tuple[float, float]]:
        """Greedy character and word errors of rank's share of the validation utterances."""
        texts = self.val_texts[rank::size]
        hyps = decode_features(self.model, self.alphabet, self.val_feats[rank::size]) if texts else []
        ce, cn, we, wn = error_counts(texts, hyps)
        return {"cer": (ce, cn), "wer": (we, wn)}

    def data_digest(self) -> str:
        """The transcripts and the number of frames of every utterance (features are floats
        that may differ in the last bit between machines)."""
        h = hashlib.sha256(json.dumps([self.config(), [len(f) for f in self.train_feats],
                                       [len(f) for f in self.val_feats], self.val_texts]).encode())
        for t in self.train_targets:
            h.update(np.asarray(t, np.int64).tobytes() + b";")
        return h.hexdigest()

    def config(self) -> dict:
        return {"model": self.model.cfg.to_json(), "features": self.fcfg.to_json(),
                "alphabet": self.alphabet.chars, "manifest": self.manifest,
                "val_manifest": self.val_manifest, "words": self.words.to_json()}

    def rngs(self) -> dict[str, np.random.Generator]:
        return {"dropout": self.model.rng}


class Recognizer:
    """A trained recogniser: what ``rnnkit.load`` gives for an asr run (``transcribe``).

    Decoding is a prefix beam search; ``lm`` constrains it to the training transcripts' words:
    "vocab" (only their words), "bigram" (and their word-pair statistics), "none", or "auto"
    (bigram when every training word was seen at least 3 times, i.e. a closed vocabulary).
    """

    def __init__(self, model: SpeechModel, alphabet: Alphabet, features: FeatureConfig,
                 settings: ASRSettings, config: dict | None = None) -> None:
        self.model, self.alphabet, self.features, self.settings = model, alphabet, features, settings
        self.config = config or {}

    def decode(self, feats: list[np.ndarray], beam: int = 8, lm: str = "auto") -> list[str]:
        """Transcripts of utterances' features (beam 1 with lm "none" is greedy)."""
        if beam < 1:
            raise ValueError(f"--beam must be >= 1, got {beam}")
        words = lm_for(self.config, lm)
        return decode_features(self.model, self.alphabet, feats, beam, words,
                               0 if lm == "vocab" else 2)

    def transcribe(self, wavs, beam: int = 8, lm: str = "auto") -> list[str]:
        """The transcript of each WAV file."""
        lm_for(self.config, lm)  # a bad --lm is reported before any audio is read
        return self.decode(transcribe_features(wavs, self.features), beam, lm)

    def evaluate(self, manifest: str | Path, beam: int = 8, lm: str = "auto",
                 workers: int = 2) -> dict:
        """{"cer", "wer", "utterances"} on a JSON-lines manifest."""
        lm_for(self.config, lm)
        items = read_manifest(manifest)
        hyps = self.decode(load_features(items, self.features, workers), beam, lm)
        return error_rates([t for _, t in items], hyps)


def load_model(directory: str | Path, which: str = "best") -> Recognizer:
    """Rebuild a trained recogniser from its run folder."""
    directory = Path(directory)
    config, arrays, _ = load_checkpoint(directory)
    if config.get("app") != "asr":
        raise ValueError(f"{directory} is not a speech-recognition checkpoint")
    settings = from_dict(ASRSettings, config.get("settings"), where=f"{directory}/config.json")
    try:
        model = SpeechModel(ModelConfig(**config["model"]), np.random.default_rng(0))
        alphabet, features = Alphabet(config["alphabet"]), FeatureConfig(**config["features"])
    except (KeyError, TypeError) as e:
        raise ValueError(f"corrupt checkpoint: {directory}/config.json: bad model entry ({e})") from None
    model.load_state_dict(arrays["best" if which == "best" else "params"])
    model.eval()
    return Recognizer(model, alphabet, features, settings, config)
