"""Training a sequence classifier on the shared loop, and classifying with a trained one.

The training file is read once (`data.read_data`).  With ``--val-fraction`` a stratified part of
it is held out (every class keeps at least one training sequence) and its accuracy (balanced
accuracy with ``--balance``) picks the best parameters; by default every sequence trains and the
last parameters are kept.  `Inputs` prepares the sequences once - per-channel scaling fitted on
the training part only and frames glued in groups of ``--stack`` for features, a vocabulary of
the training part for text.  Each step gives every member of the `Ensemble` its own batch of
sequences of similar length (`EpochBatches`), features seen as fresh random views
(`data.augment`: time-stretched by default) drawn from (seed, member, step) alone, so a resumed
run draws the same; each member runs over its padded batch with the lengths and minimises the
cross-entropy (weighted by inverse class frequency with ``--balance``).  The checkpoint rebuilds
the `Classifier`.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ...data.audio import FeatureConfig
from ...data.batching import EpochBatches, pad
from ...data.text import Vocab
from ...nn import CrossEntropyLoss, frozen
from ...train.engine import load_run
from ...train.settings import TrainSettings, at_least, field, with_defaults
from ...train.task import Task
from .data import Dataset, ReadOptions, Scaler, augment, class_list, encode_labels, read_data, \
    stratified_split
from .metrics import scores
from .model import POOLS, Ensemble, NetConfig


def shown(f, text: str):
    """A settings field whose default reads ``text`` in --help (worked out from the data)."""
    f.metadata = {**f.metadata, "shown": text}
    return f


@dataclass
class ClassifySettings(with_defaults(
        TrainSettings,
        cell="gru", hidden=64, layers=1, dropout=0.1, batch=32, lr=3e-3, min_lr=1e-4,
        warmup=50, steps=1500, eval_every=100, val_fraction=0.0)):
    """Settings of ``rnnkit classify train``: one set of defaults for every data set."""

    ensemble: int = field(5, "networks trained side by side from different seeds and batch "
                             "orders; their probabilities are averaged")
    bidirectional: bool = field(True, "run the recurrent layers in both directions")
    pool: str = field("concat", "how the outputs over time become one vector", choices=POOLS)
    embed: int | None = shown(field(None, "input width: an Embedding for text, a Linear for "
                                          "features (0: features straight into the recurrent "
                                          "layer)"), "64 for text, 0 for features")
    stack: int | None = shown(field(None, "glue this many consecutive feature frames into one "
                                          "step"), "as many as keep the longest training "
                                                   "sequence near 64 steps")
    crop: float = field(1.0, "features: each training step shows every sequence as a random "
                             "window of at least this fraction of its length (1: whole)")
    stretch: float = field(0.25, "features: resample each training sequence to between 1 / (1 + "
                                "this) and 1 + this times its length each step")
    jitter: float = field(0.0, "features: add Gaussian noise of this sd (in scaled units) to "
                               "the training sequences each step")
    magnitude: float = field(0.0, "features: multiply each training sequence's channels by "
                                  "factors drawn from N(1, this sd) each step")
    balance: bool = field(False, "weight the loss by inverse class frequency (and pick the "
                                 "best parameters by balanced accuracy)")
    tokens: str = field("char", "text: characters or words", choices=("char", "word"))
    vocab_size: int = field(0, "text: keep the most frequent tokens (0: all of the training text)")
    fill: str | None = shown(field(None, "fill missing values instead of refusing them",
                                   choices=("ffill", "interpolate")), "refuse them")
    id_col: str | None = shown(field(None, "CSV: the column naming each sequence"), "-")
    time_col: str | None = shown(field(None, "CSV: the column ordering the rows of a "
                                             "sequence"), "the file's order")
    label_col: str | None = shown(field(None, "CSV: the column holding the class"), "-")
    features: str | None = shown(field(None, "CSV: comma-separated feature columns"),
                                 "every other column")

    def check(self) -> None:
        super().check()
        at_least(self, "ensemble", "stack")
        at_least(self, "embed", "vocab_size", low=0)
        if not 0 < self.crop <= 1:
            raise ValueError(f"--crop must lie in (0, 1], got {self.crop}")
        for name in ("stretch", "jitter", "magnitude"):
            if getattr(self, name) < 0:
                raise ValueError(f"--{name} must be >= 0, got {getattr(self, name)}")

    @property
    def augments(self) -> bool:
        return self.crop < 1 or self.stretch > 0 or self.jitter > 0 or self.magnitude > 0

    def read_options(self) -> ReadOptions:
        return ReadOptions(self.id_col, self.time_col, self.label_col, self.features, self.fill)


AUTO_STEPS = 64  # --stack by default glues frames so the longest sequence is about this long


class Inputs:
    """Dataset -> model inputs: per-channel scaling and frame stacking (features) or token ids.

    ``kind`` "series" / "audio": (T, F) float -> scaled, zero-padded to a multiple of ``stack``
    frames and reshaped to (ceil(T / stack), stack F); "text": str -> (T,) int64 ids (0 =
    unknown, counted in ``unknown`` / ``symbols`` by `encode`).
    """

    def __init__(self, kind: str, channels: int = 0, scaler: Scaler | None = None,
                 stack: int = 1, vocab: Vocab | None = None, audio: dict | None = None) -> None:
        self.kind, self.channels, self.scaler, self.stack = kind, channels, scaler, stack
        self.vocab, self.audio = vocab, audio
        self.unknown = self.symbols = 0

    @classmethod
    def fit(cls, ds: Dataset, s: ClassifySettings) -> "Inputs":
        """Fitted on the training sequences only."""
        if ds.kind == "text":
            joined = ("" if s.tokens == "char" else " ").join(ds.items)
            vocab = Vocab.from_text(joined, s.tokens, max_size=s.vocab_size or None)
            return cls("text", vocab=vocab)
        longest = max(len(x) for x in ds.items)
        stack = s.stack or max(1, int(np.ceil(longest / AUTO_STEPS)))
        return cls(ds.kind, ds.items[0].shape[1], Scaler.fit(ds.items), stack,
                   audio=FeatureConfig().to_json() if ds.kind == "audio" else None)

    @property
    def size(self) -> int:
        """Features per model step, or the vocabulary size."""
        return len(self.vocab) if self.kind == "text" else self.channels * self.stack

    def check(self, ds: Dataset) -> None:
        if (ds.kind == "text") != (self.kind == "text"):
            raise ValueError(f"{ds.source}: {ds.kind} data, but the model classifies "
                             f"{self.kind} data")
        if self.kind != "text":
            bad = next((k for k, x in enumerate(ds.items) if x.shape[1] != self.channels), None)
            if bad is not None:
                raise ValueError(f"{ds.source} ({ds.names[bad]}): {ds.items[bad].shape[1]} "
                                 f"channels, the model takes {self.channels}")

    def encode(self, ds: Dataset, dtype) -> list[np.ndarray]:
        self.check(ds)
        if self.kind == "text":
            out = [self.token_ids(t) for t in ds.items]
            self.symbols = sum(len(o) for o in out)
            self.unknown = int(sum(int((o == 0).sum()) for o in out))
            empty = next((k for k, o in enumerate(out) if len(o) == 0), None)
            if empty is not None:
                raise ValueError(f"{ds.source} ({ds.names[empty]}): the text has no tokens")
            return out
        return [self.frames(x, dtype) for x in ds.items]

    def token_ids(self, text: str) -> np.ndarray:
        if self.vocab.kind == "char":
            return self.vocab.encode(text)
        return np.array([self.vocab.index(t) for t in self.vocab.tokenize(text)
                         if not t.isspace()], np.int64)

    def frames(self, x: np.ndarray, dtype) -> np.ndarray:
        """(T, F) -> (ceil(T / stack), stack F), scaled; the last group zero-padded."""
        return self.glue(self.scaler(x), dtype)

    def glue(self, z: np.ndarray, dtype) -> np.ndarray:
        """Scaled (T, F) -> (ceil(T / stack), stack F); the last group zero-padded."""
        k = self.stack
        T = len(z)
        if T % k:
            z = np.concatenate([z, np.zeros((k - T % k, z.shape[1]))])
        return np.ascontiguousarray(z.reshape(-1, k * z.shape[1]), dtype)

    def to_json(self) -> dict:
        return {"kind": self.kind, "channels": self.channels, "stack": self.stack,
                "scaler": self.scaler.to_json() if self.scaler else None,
                "vocab": self.vocab.to_json() if self.vocab else None, "audio": self.audio}

    @classmethod
    def from_json(cls, d: dict) -> "Inputs":
        return cls(d["kind"], d["channels"], Scaler(**d["scaler"]) if d["scaler"] else None,
                   d["stack"], Vocab.from_json(d["vocab"]) if d["vocab"] else None, d["audio"])


def predict_probs(model: Ensemble, xs: list[np.ndarray], batch: int = 64) -> np.ndarray:
    """(n, C) float64 class probabilities, in eval mode, batches sorted by length."""
    was = model.training
    model.eval()
    probs = np.zeros((len(xs), model.cfg.classes))
    order = np.argsort([len(x) for x in xs], kind="stable")
    with frozen():
        for b in range(0, len(order), batch):
            idx = order[b : b + batch]
            x, lengths = pad([xs[i] for i in idx])
            probs[idx] = model.probs(x, lengths)
    model.train(was)
    return probs


def class_weights(y: np.ndarray, classes: int) -> np.ndarray:
    """n / (C n_c): inverse class frequency, 1 on average over the training sequences."""
    counts = np.bincount(y, minlength=classes).astype(np.float64)
    return np.where(counts > 0, len(y) / (classes * np.maximum(counts, 1)), 0.0)


class ClassifyTask(Task):
    """Cross-entropy on bucketed batches of sequences; validation accuracy picks the best."""

    app = "classify"
    metric = "accuracy"
    higher_is_better = True
    loss_name = "cross-entropy"

    def __init__(self, s: ClassifySettings, data: str | Path | None = None,
                 checkpoint=None, dataset: Dataset | None = None) -> None:
        if checkpoint is not None and data is None and dataset is None:
            data = checkpoint[0]["data"]
        self.s, self.data = s, None if data is None else str(data)
        ds = dataset if dataset is not None else read_data(data, s.read_options(), labelled=True)
        self.classes = class_list(ds.labels)
        if len(self.classes) < 2:
            raise ValueError(f"{ds.source}: every sequence has the label {self.classes[0]!r}; "
                             "a classifier needs at least two classes")
        if checkpoint is not None and checkpoint[0].get("classes") != self.classes:
            raise ValueError("--resume: the training file's classes differ from the checkpoint's")
        y = encode_labels(ds.labels, self.classes, ds.source)
        tr, va = stratified_split(y, s.val_fraction, [s.seed, 3])
        if s.val_fraction > 0 and len(va) == 0:
            raise ValueError(f"--val-fraction {s.val_fraction} holds out no sequence of "
                             f"{len(y)}: raise it, or pass --val-fraction 0 to keep the last "
                             "parameters")
        self.metric = "balanced_accuracy" if s.balance else "accuracy"
        train, val = ds.subset(tr), ds.subset(va)
        self.inputs = Inputs.fit(train, s)
        dtype = np.dtype(s.dtype)
        self.train_x, self.train_y = self.inputs.encode(train, dtype), y[tr]
        self.val_x, self.val_y = self.inputs.encode(val, dtype), y[va]
        # augmentation (features only): each step views the scaled training sequences afresh,
        # from a generator of (seed, member, step) alone, so a resumed run draws the same views
        self.augment = s.augments and ds.kind != "text"
        self.train_z = [self.inputs.scaler(x) for x in train.items] if self.augment else None
        self.source = ds.source
        if ds.kind == "text" and s.embed == 0:
            raise ValueError("--embed 0 sends features straight into the recurrent layer; text "
                             "needs an Embedding: give --embed >= 1")
        cfg = NetConfig(input_size=self.inputs.size, classes=len(self.classes),
                        tokens=ds.kind == "text",
                        embed=s.embed if s.embed is not None else (64 if ds.kind == "text" else 0),
                        cell=s.cell, hidden=s.hidden, layers=s.layers,
                        bidirectional=s.bidirectional, pool=s.pool, attn=s.hidden,
                        dropout=s.dropout, dtype=s.dtype)
        self.model = Ensemble(cfg, s.ensemble, s.seed, np.random.default_rng([s.seed, 1]))
        lengths = np.array([len(x) for x in self.train_x])
        self.batches = [EpochBatches(len(self.train_x), s.batch, [s.seed, 2, k], lengths)
                        for k in range(s.ensemble)]
        w = class_weights(self.train_y, len(self.classes))
        self.weights = w.astype(dtype) if s.balance else None
        self.ce = CrossEntropyLoss(reduction="sum")

    def describe(self) -> str:
        s, inp = self.s, self.inputs
        what = (f"{inp.kind}, {inp.channels} channels x {inp.stack} frames a step"
                if inp.kind != "text" else f"text, {len(inp.vocab)} {s.tokens} tokens")
        val = (f"{len(self.val_x):,} validation" if self.val_x
               else "no validation (the last parameters are kept)")
        return (f"{len(self.train_x):,} training sequences, {val}, "
                f"{len(self.classes)} classes, {what}, {s.cell} {s.layers}x{s.hidden}"
                f"{' bidirectional' if s.bidirectional else ''}, {s.pool} pooling")

    def batch(self, step: int):
        """(members, totals): one batch (x, lengths, y) per member, and each member's total loss
        weight over its whole batch (its rows, or the sum of their class weights)."""
        members, totals = [], []
        s = self.s
        for k, b in enumerate(self.batches):
            idx = b[step]
            if self.augment:
                rng = np.random.default_rng([s.seed, 4, k, step])
                views = (augment(self.train_z[i], rng, s.crop, s.jitter, s.magnitude, s.stretch)
                         for i in idx)
                xs = [self.inputs.glue(v, self.model.dtype) for v in views]
            else:
                xs = [self.train_x[i] for i in idx]
            x, lengths = pad(xs)
            y = self.train_y[idx]
            members.append((x, lengths, y))
            totals.append(len(y) if self.weights is None else float(self.weights[y].sum()))
        return members, np.array(totals, np.float64)

    def shard(self, batch, rank: int, size: int):
        """Rows rank, rank + size, ... of every member's batch (data parallelism); the totals
        stay those of the whole batch, so a shard's loss is its part of the whole mean."""
        members, totals = batch
        return [tuple(a[rank::size] for a in m) for m in members], totals

    def weight(self, batch) -> float:
        """1 for a batch or shard with rows (its loss is already its part of the whole batch's
        mean: the ranks' losses and gradients simply add up), 0 for an empty shard."""
        return float(any(len(m[2]) for m in batch[0]))

    def loss(self, batch) -> float:
        """Each member learns from its own batch as if alone (the gradient of its mean
        cross-entropy over its whole batch); returns the members' mean loss."""
        members, totals = batch
        total = 0.0
        for net, (x, lengths, y), t in zip(self.model.members, members, totals):
            if len(y) == 0:
                continue
            logits = net.forward(x, lengths)
            mask = None if self.weights is None else self.weights[y]
            total += float(self.ce.forward(logits, y, mask)) / t
            net.backward(self.ce.backward(1.0 / t))
        return total / len(members)

    def evaluate(self) -> dict[str, float]:
        if not self.val_x:
            return {}  # no validation: the latest parameters are the best
        probs = predict_probs(self.model, self.val_x)
        r = scores(self.val_y, probs, self.classes)
        return {"loss": r["log_loss"], "accuracy": r["accuracy"],
                "balanced_accuracy": r["balanced_accuracy"], "macro_f1": r["macro_f1"]}

    def config(self) -> dict:
        return {"model": self.model.cfg.to_json(), "members": len(self.model.members),
                "inputs": self.inputs.to_json(),
                "classes": self.classes, "data": self.data}

    def rngs(self) -> dict[str, np.random.Generator]:
        return {"dropout": self.model.rng}


class Classifier:
    """A trained classifier: what ``rnnkit.load`` gives for a classify run.

    ``predict(data)`` -> (labels, probabilities (n, C)); ``evaluate(data)`` -> metrics dict;
    ``data`` is a file (.ts, .csv, .jsonl) or a `Dataset`.
    """

    def __init__(self, model: Ensemble, inputs: Inputs, classes: list[str],
                 settings: ClassifySettings) -> None:
        self.model, self.inputs, self.classes, self.settings = model, inputs, classes, settings
        self.history: dict | None = None   # the training run's curves (a loaded run)
        self.best_step: int | None = None

    def read(self, data, labelled: bool | None = None) -> Dataset:
        if isinstance(data, Dataset):
            return data
        opts = self.settings.read_options()
        opts.audio = self.inputs.audio
        return read_data(data, opts, labelled=labelled)

    def predict(self, data) -> tuple[list[str], np.ndarray]:
        """(predicted label per sequence, class probabilities (n, C) in ``classes`` order)."""
        ds = self.read(data, labelled=False)
        probs = predict_probs(self.model, self.inputs.encode(ds, self.model.dtype))
        return [self.classes[k] for k in probs.argmax(axis=1)], probs

    def evaluate(self, data) -> dict:
        """{"accuracy", "balanced_accuracy", "macro_f1", "log_loss", "per_class", "confusion",
        "n"} (and "unknown_symbols" / "symbols" for text)."""
        ds = self.read(data, labelled=True)
        if ds.labels is None:
            raise ValueError(f"{ds.source}: no labels to evaluate against")
        y = encode_labels(ds.labels, self.classes, ds.source, ds.names)
        probs = predict_probs(self.model, self.inputs.encode(ds, self.model.dtype))
        out = scores(y, probs, self.classes)
        if self.inputs.kind == "text":
            out["unknown_symbols"], out["symbols"] = self.inputs.unknown, self.inputs.symbols
        return out

    def onnx_inputs(self, data) -> dict[str, np.ndarray]:
        """The feeds of this classifier's ONNX graph for ``data``: x (N, T, F) float32 raw
        features (int64 ids (N, T) for text), zero-padded, and lengths (N,) int64."""
        ds = self.read(data, labelled=False)
        self.inputs.check(ds)
        if self.inputs.kind == "text":
            x, lengths = pad([self.inputs.token_ids(t) for t in ds.items])
            return {"x": x.astype(np.int64), "lengths": lengths.astype(np.int64)}
        x, lengths = pad([np.asarray(a, np.float32) for a in ds.items])
        return {"x": x, "lengths": lengths.astype(np.int64)}


def load_model(directory: str | Path, which: str = "best") -> Classifier:
    """Rebuild a trained classifier from its run folder."""
    run = load_run(directory, "classify", ClassifySettings)
    with run.entries() as config:
        model = Ensemble(NetConfig(**config["model"]), int(config["members"]), 0)
        inputs, classes = Inputs.from_json(config["inputs"]), list(config["classes"])
    model.load_state_dict(run.params(which))
    model.eval()
    clf = Classifier(model, inputs, classes, run.settings)
    clf.history, clf.best_step = run.meta.get("history"), run.meta.get("best_step")
    return clf
