"""Training the CTC speech recogniser, and decoding with a trained one.

Features are computed once for the whole manifest and kept in memory; each step takes a batch
of utterances of similar length (bucketing keeps padding small), runs the bidirectional RNN over
the padded batch with its lengths, and minimises the CTC loss (torch's 'mean': each loss divided
by its target length) with Adam, global-norm clipping and a warm-up + cosine learning rate.
Every ``eval_every`` steps the greedy character error rate on the validation utterances decides
which parameters are kept as the best; the checkpoint (``config.json`` + ``.npz``) rebuilds the
model, its alphabet and its feature pipeline for ``transcribe`` and ``eval``.
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ...data.audio import FeatureConfig
from ...nn import no_grad
from ...nn.ctc import CTCLoss
from ...nn.optim import Adam
from ...train.loop import apply_gradients, schedule
from ...train.checkpoint import load_checkpoint, rng_state, save_checkpoint
from ...train.progress import Progress, plot_curves
from ...train.settings import field, from_dict
from .data import (AugmentedBatches, PrefetchedBatches, buckets, load_features, pad_batch,
                   pad_targets, read_manifest)
from .decode import WordLM, error_rates, greedy_decode, prefix_beam_search
from .model import BLANK, Alphabet, ModelConfig, SpeechModel


@dataclass
class TrainSettings:
    """Settings of ``rnnkit asr train``; the defaults learn spoken digits in minutes on 2 cores."""

    cell: str = field("gru", "recurrent cell", choices=("gru", "lstm"))
    hidden: int = field(128, "hidden units per direction and layer")
    layers: int = field(3, "bidirectional recurrent layers")
    dropout: float = field(0.1, "dropout between layers and before the output layer")
    features: str = field("logmel", "input features", choices=("logmel", "mfcc"))
    n_mels: int = field(40, "mel filters")
    deltas: int = field(0, "orders of delta features appended (0, 1, 2)")
    stack: int = field(3, "consecutive 10 ms frames glued into one input frame")
    skip: int = field(3, "keep every skip-th stacked frame (frame subsampling)")
    batch: int = field(32, "utterances per step")
    lr: float = field(2e-3, "peak learning rate (Adam)")
    min_lr: float = field(1e-4, "learning rate at the end of the cosine decay")
    warmup: int = field(100, "linear warm-up steps")
    clip: float = field(5.0, "clip gradients to this global norm")
    steps: int = field(3000, "total optimizer steps")
    max_time: float | None = field(None, "stop cleanly (with a checkpoint) after this many seconds")
    val_fraction: float = field(0.05, "fraction of the manifest held out for validation")
    eval_every: int = field(200, "validate and checkpoint every N steps")
    seed: int = field(0, "random seed")
    dtype: str = field("float32", "float32 or float64", choices=("float32", "float64"))
    augment: str = field("full", "on-the-fly augmentation of the training audio (speed, pitch, "
                         "tempo, vocal tract, noise, reverb, telephone, SpecAugment) or none",
                         choices=("full", "none"))
    augment_workers: int = field(1, "processes preparing augmented batches ahead (0: in the trainer)")

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
            x, lengths = pad_batch(feats, idx)
            logp = model.log_probs(x, lengths)  # (B, T, C)
            for row, i in enumerate(idx):
                lp = logp[row, : lengths[row]]
                ids = greedy_decode(lp, BLANK) if beam <= 1 else prefix_beam_search(lp, beam, BLANK)[0]
                texts[i] = alphabet.decode(ids)
    model.train(was_training)
    return texts


class Trainer:
    """One training run over a manifest: ``run()`` steps until ``steps`` or ``max_time``."""

    def __init__(self, settings: TrainSettings, manifest: str | Path, out: str | Path,
                 val_manifest: str | Path | None = None, progress: bool = True,
                 overwrite: bool = False, workers: int = 2) -> None:
        self.s = s = settings
        self.out, self.show_progress = Path(out), progress
        if (self.out / "meta.json").exists() and not overwrite:
            raise ValueError(f"{self.out} already holds a checkpoint: pass --overwrite to replace "
                             "it, or choose another --out")
        if not 0.0 <= s.val_fraction < 1.0:
            raise ValueError(f"--val-fraction must be in [0, 1), got {s.val_fraction}")
        for name in ("hidden", "layers", "batch", "steps", "eval_every", "stack", "skip", "n_mels"):
            if getattr(s, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(s, name)}")
        self.fcfg = s.feature_config()
        items = read_manifest(manifest)
        self.manifest = str(manifest)
        rng = np.random.default_rng(s.seed)
        if val_manifest is not None:
            train_items, val_items = items, read_manifest(val_manifest)
        else:
            order = rng.permutation(len(items))
            n_val = int(round(len(items) * s.val_fraction))
            if s.val_fraction > 0 and len(items) > 1:
                n_val = min(max(n_val, 1), len(items) - 1)
            val_items = [items[i] for i in order[:n_val]]
            train_items = [items[i] for i in order[n_val:]]
        self.alphabet = Alphabet.for_texts([t for _, t in train_items])
        self.train_feats = load_features(train_items, self.fcfg, workers)
        self.val_feats = load_features(val_items, self.fcfg, workers)
        self.train_targets = [self.alphabet.encode(t) for _, t in train_items]
        self.batches = None if s.augment == "none" else PrefetchedBatches(AugmentedBatches(
            train_items, self.train_targets, self.fcfg, s.batch, s.seed, workers=workers), s.augment_workers)
        self.words = WordLM.from_texts([t for _, t in train_items])  # for word-constrained decoding
        self.val_texts = [t for _, t in val_items]
        self.train_lengths = np.array([len(f) for f in self.train_feats])
        short = int(np.sum(self.train_lengths < np.array([len(t) for t in self.train_targets])))
        self.too_short = short  # CTC cannot align these (zero_infinity drops them)
        cfg = ModelConfig(input_size=self.fcfg.dim, classes=len(self.alphabet), cell=s.cell,
                          hidden=s.hidden, layers=s.layers, dropout=s.dropout, dtype=s.dtype)
        self.model = SpeechModel(cfg, np.random.default_rng([s.seed, 0]), np.random.default_rng([s.seed, 1]))
        self.batch_rng = np.random.default_rng([s.seed, 2])
        self.ctc = CTCLoss(blank=BLANK, reduction="mean", zero_infinity=True)
        self.opt = Adam(lr=s.lr)
        self.lr_at = schedule(s.lr, s.min_lr, s.warmup, s.steps)
        self.step, self.best, self.best_params = 0, math.inf, None
        self.history = {"step": [], "train": [], "val_step": [], "val_cer": []}
        self.elapsed, self._queue = 0.0, []
        # what --max-time counts; a benchmark on shared cores may pass time.process_time
        self.clock = time.monotonic

    def config(self) -> dict:
        return {"app": "asr", "settings": asdict(self.s), "model": self.model.cfg.to_json(),
                "features": self.fcfg.to_json(), "alphabet": self.alphabet.chars,
                "manifest": self.manifest, "words": self.words.to_json()}

    def save(self) -> None:
        arrays = {"params": self.model.state_dict(),
                  "best": self.best_params if self.best_params is not None else self.model.state_dict(),
                  "optim": self.opt.state_dict()}
        meta = {"step": self.step, "best_val_cer": self.best, "history": self.history,
                "elapsed": self.elapsed, "rng": rng_state(self.model.rng)}
        save_checkpoint(self.out, config=self.config(), arrays=arrays, meta=meta)
        h = self.history
        plot_curves(self.out / "loss.png", {"train CTC loss": (h["step"], h["train"])},
                    ylabel="CTC loss per character", title=f"rnnkit asr: {self.s.cell}")

    def evaluate(self) -> float:
        if not self.val_feats:
            cer = math.nan
        else:
            hyps = decode_all(self.model, self.alphabet, self.val_feats)
            cer = error_rates(self.val_texts, hyps)["cer"]
        self.history["val_step"].append(self.step)
        self.history["val_cer"].append(cer)
        if self.best_params is None or cer < self.best or (math.isnan(self.best) and not math.isnan(cer)):
            self.best = cer if not math.isnan(cer) else self.best
            self.best_params = self.model.state_dict()
        if not self.val_feats:  # nothing to choose with: the latest parameters are the best
            self.best_params = self.model.state_dict()
        return cer

    def next_batch(self) -> np.ndarray:
        if not self._queue:
            self._queue = buckets(self.train_lengths, self.s.batch, self.batch_rng)
        return self._queue.pop()

    def train_step(self) -> float:
        s, model = self.s, self.model
        if self.batches is not None:  # audio augmented afresh: a pure function of (seed, step)
            x, lengths, y, ylen = self.batches.batch(self.step)
        else:
            idx = self.next_batch()
            x, lengths = pad_batch(self.train_feats, idx)  # (B, T, F)
            y, ylen = pad_targets(self.train_targets, idx)
        logits = model.forward(x, lengths)  # (B, T, C)
        loss = float(self.ctc.forward(logits, y, lengths, ylen))
        model.backward(self.ctc.backward())
        apply_gradients(model, self.opt, self.lr_at(self.step), s.clip, loss, self.step)
        self.step += 1
        return loss

    def run(self) -> dict:
        s = self.s
        start = self.clock()
        bar = Progress(s.steps, initial=self.step, desc="asr train", every=10, enabled=self.show_progress)
        recent, cer, stopped = [], math.nan, None
        try:
            while self.step < s.steps:
                loss = self.train_step()
                recent.append(loss)
                self.elapsed = self.clock() - start
                out_of_time = s.max_time is not None and self.elapsed >= s.max_time
                if self.step % s.eval_every == 0 or self.step == s.steps or out_of_time:
                    self.history["step"].append(self.step)
                    self.history["train"].append(float(np.mean(recent)))
                    recent = []
                    cer = self.evaluate()
                    self.save()
                    bar.write(f"step {self.step}: train CTC {self.history['train'][-1]:.4f}  "
                              f"val CER {cer:.4f}  ({self.elapsed:.0f} s)")
                bar.update(1, loss=f"{loss:.3f}", cer=f"{cer:.3f}")
                if out_of_time:
                    stopped = "max-time"
                    break
        except KeyboardInterrupt:
            stopped = "interrupted"
            self.save()
        finally:
            bar.close()
            if self.batches is not None:
                self.batches.close()
        return {"step": self.step, "best_val_cer": self.best, "last_val_cer": cer, "stopped": stopped,
                "seconds": self.elapsed}


def load_model(directory: str | Path, which: str = "best"):
    """Rebuild a trained recogniser: (model in eval mode, alphabet, feature config, settings)."""
    directory = Path(directory)
    if not (directory / "meta.json").exists() and not directory.is_dir():
        raise ValueError(f"{directory}: no such model directory")
    config, arrays, _ = load_checkpoint(directory)
    if config.get("app") != "asr":
        raise ValueError(f"{directory} is not a speech-recognition checkpoint")
    model = SpeechModel(ModelConfig(**config["model"]), np.random.default_rng(0))
    model.load_state_dict(arrays["best" if which == "best" else "params"])
    model.eval()
    return (model, Alphabet(config["alphabet"]), FeatureConfig(**config["features"]),
            from_dict(TrainSettings, config["settings"]))


def evaluate_manifest(model_dir: str | Path, manifest: str | Path, beam: int = 1,
                      workers: int = 2) -> dict:
    """{"cer", "wer", "utterances"} of a trained model on a manifest."""
    model, alphabet, fcfg, _ = load_model(model_dir)
    items = read_manifest(manifest)
    hyps = decode_all(model, alphabet, load_features(items, fcfg, workers), beam)
    return error_rates([t for _, t in items], hyps)
