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
from .data import load_features, read_manifest, transcribe_features
from .decode import error_counts, error_rates, greedy_decode, prefix_beam_search
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

    def check(self) -> None:
        super().check()
        at_least(self, "stack", "skip", "n_mels")
        if self.deltas not in (0, 1, 2):
            raise ValueError(f"--deltas must be 0, 1 or 2, got {self.deltas}")

    def feature_config(self) -> FeatureConfig:
        return FeatureConfig(kind=self.features, n_mels=self.n_mels, deltas=self.deltas,
                             stack=self.stack, skip=self.skip)


def decode_all(model: SpeechModel, alphabet: Alphabet, feats: list[np.ndarray], beam: int = 1,
               batch: int = 32) -> list[str]:
    """Transcripts of the utterances' features (greedy for beam <= 1, else prefix beam search)."""
    was_training = model.training
    model.eval()
    order = np.argsort([len(f) for f in feats], kind="stable")
    texts: list[str] = [""] * len(feats)
    with no_grad():
        for b in range(0, len(order), batch):
            idx = order[b : b + batch]
            x, lengths = pad([feats[i] for i in idx], dtype=np.dtype(model.cfg.dtype))
            logp = model.log_probs(x, lengths)  # (B, T, C)
            for row, i in enumerate(idx):
                lp = logp[row, : lengths[row]]
                ids = greedy_decode(lp, BLANK) if beam <= 1 else prefix_beam_search(lp, beam, BLANK)[0]
                texts[i] = alphabet.decode(ids)
    model.train(was_training)
    return texts


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
        self.val_texts = [t for _, t in val_items]
        lengths = np.array([len(f) for f in self.train_feats])
        # CTC cannot align an utterance with fewer frames than characters (zero_infinity drops it)
        self.too_short = int(np.sum(lengths < np.array([len(t) for t in self.train_targets])))
        cfg = ModelConfig(input_size=self.fcfg.dim, classes=len(self.alphabet), cell=s.cell,
                          hidden=s.hidden, layers=s.layers, dropout=s.dropout, dtype=s.dtype)
        self.model = SpeechModel(cfg, np.random.default_rng([s.seed, 0]),
                                 np.random.default_rng([s.seed, 1]))
        self.batches = EpochBatches(len(self.train_feats), s.batch, [s.seed, 2], lengths)
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
        idx = self.batches[step]
        # (B, T, F) in the model's dtype (the features are float32)
        x, lengths = pad([self.train_feats[i] for i in idx], dtype=np.dtype(self.s.dtype))
        y, ylen = pad([self.train_targets[i] for i in idx])               # (B, S)
        return x, lengths, y, ylen

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
        hyps = decode_all(self.model, self.alphabet, self.val_feats[rank::size]) if texts else []
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
                "val_manifest": self.val_manifest}

    def rngs(self) -> dict[str, np.random.Generator]:
        return {"dropout": self.model.rng}


class Recognizer:
    """A trained recogniser: what ``rnnkit.load`` gives for an asr run (``transcribe``)."""

    def __init__(self, model: SpeechModel, alphabet: Alphabet, features: FeatureConfig,
                 settings: ASRSettings) -> None:
        self.model, self.alphabet, self.features, self.settings = model, alphabet, features, settings

    def transcribe(self, wavs, beam: int = 1) -> list[str]:
        """The transcript of each WAV file (greedy for beam 1, else prefix beam search)."""
        if beam < 1:
            raise ValueError(f"--beam must be >= 1, got {beam}")
        return decode_all(self.model, self.alphabet, transcribe_features(wavs, self.features), beam)

    def evaluate(self, manifest: str | Path, beam: int = 1, workers: int = 2) -> dict:
        """{"cer", "wer", "utterances"} on a JSON-lines manifest."""
        if beam < 1:
            raise ValueError(f"--beam must be >= 1, got {beam}")
        items = read_manifest(manifest)
        hyps = decode_all(self.model, self.alphabet, load_features(items, self.features, workers),
                          beam)
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
    return Recognizer(model, alphabet, features, settings)
