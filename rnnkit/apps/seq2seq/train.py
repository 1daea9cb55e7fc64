"""Training a translation model: length-bucketed batches, masked cross-entropy, Adam, checkpoints.

The pairs are split once (a seeded shuffle; the last ``val_fraction``, at most ``max_val``
pairs, are held out).  Each epoch shuffles the training pairs, sorts chunks of 50 batches by
target length (so a batch pads little) and shuffles the batches.  The loss is the mean
cross-entropy over the real target tokens (<pad> ignored), <eos> included.  A linear warm-up
then cosine learning-rate schedule, global-norm clipping; every ``eval_every`` steps the
validation loss and greedy exact match are measured and a checkpoint written; the best
parameters (highest validation exact match, then lowest loss) are what ``run``/``eval`` use.
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ...nn import CrossEntropyLoss, no_grad
from ...nn.optim import Adam
from ...train.loop import apply_gradients, schedule
from ...train.checkpoint import load_checkpoint, rng_state, save_checkpoint
from ...train.progress import Progress, plot_curves
from ...train.settings import field, from_dict
from .data import TokenVocab, pad_batch
from .decode import translate
from .metrics import exact_match
from .model import PAD, ModelConfig, Seq2Seq


@dataclass
class TrainSettings:
    """Settings of ``rnnkit translate train``; the defaults suit short strings on 2 CPU cores."""

    cell: str = field("gru", "recurrent cell", choices=("gru", "lstm"))
    hidden: int = field(128, "hidden units (per direction in the encoder)")
    layers: int = field(1, "recurrent layers of the encoder and of the decoder")
    embed: int = field(32, "token embedding size")
    bidirectional: bool = field(True, "bidirectional encoder")
    attention: str = field("bahdanau", "attention", choices=("bahdanau", "luong", "none"))
    score: str = field("general", "Luong's score function", choices=("general", "dot"))
    tokens: str = field("char", "target token unit", choices=("char", "word"))
    src_tokens: str | None = field(None, "source token unit (default: --tokens)", choices=("char", "word"))
    vocab_size: int = field(8000, "largest vocabulary per side (specials included)")
    batch: int = field(64, "pairs per batch")
    lr: float = field(3e-3, "peak learning rate (Adam)")
    min_lr: float = field(1e-4, "learning rate at the end of the cosine decay")
    warmup: int = field(100, "linear warm-up steps")
    clip: float = field(5.0, "clip gradients to this global norm")
    teacher_forcing: float = field(1.0, "probability that the decoder reads the true previous token")
    steps: int = field(3000, "total optimizer steps")
    max_time: float | None = field(None, "stop cleanly (with a checkpoint) after this many seconds")
    val_fraction: float = field(0.05, "fraction of the pairs held out for validation")
    max_val: int = field(500, "at most this many validation pairs")
    eval_every: int = field(250, "validate and checkpoint every N steps")
    seed: int = field(0, "random seed")
    dtype: str = field("float32", "float32 or float64", choices=("float32", "float64"))

    def model_config(self, src_vocab: int, tgt_vocab: int) -> ModelConfig:
        return ModelConfig(src_vocab=src_vocab, tgt_vocab=tgt_vocab, cell=self.cell,
                           embed=self.embed, hidden=self.hidden, layers=self.layers,
                           bidirectional=self.bidirectional, attention=self.attention,
                           score=self.score, dtype=self.dtype)


def split_pairs(pairs, s: TrainSettings):
    """(train, validation) pairs: a seeded shuffle, the last val_fraction (<= max_val) held out."""
    if not 0.0 <= s.val_fraction < 1.0:
        raise ValueError(f"--val-fraction must be in [0, 1), got {s.val_fraction}")
    order = np.random.default_rng([s.seed, 7]).permutation(len(pairs))
    n_val = min(int(round(len(pairs) * s.val_fraction)), s.max_val)
    if len(pairs) - n_val < 1:
        raise ValueError("no training pairs left after holding out validation pairs")
    return [pairs[i] for i in order[n_val:]], [pairs[i] for i in order[:n_val]]


class Batches:
    """Shuffled, length-bucketed batches of encoded pairs, endlessly, from one generator."""

    def __init__(self, src: list[list[int]], tgt: list[list[int]], batch: int, rng: np.random.Generator):
        self.src, self.tgt, self.batch, self.rng = src, tgt, batch, rng
        self.queue: list[np.ndarray] = []

    def _epoch(self) -> None:
        order = self.rng.permutation(len(self.src))
        chunk = 50 * self.batch
        batches = []
        for k in range(0, len(order), chunk):
            part = sorted(order[k : k + chunk].tolist(), key=lambda i: len(self.tgt[i]))
            batches += [np.array(part[j : j + self.batch]) for j in range(0, len(part), self.batch)]
        self.queue = [batches[i] for i in self.rng.permutation(len(batches))]

    def next(self):
        if not self.queue:
            self._epoch()
        idx = self.queue.pop()
        return make_batch([self.src[i] for i in idx], [self.tgt[i] for i in idx])


def make_batch(src_ids, tgt_ids):
    """-> src (N, S), src_len (N,), tgt_in (N, T) = <bos> y, tgt_out (N, T) = y <eos>."""
    src, src_len = pad_batch([s or [PAD] for s in src_ids])
    tgt_in, _ = pad_batch(tgt_ids, bos=True)
    tgt_out, _ = pad_batch(tgt_ids, eos=True)
    return src, src_len, tgt_in, tgt_out


class Trainer:
    def __init__(self, settings: TrainSettings, pairs, out: str | Path, progress: bool = True,
                 overwrite: bool = False, pairs_path: str | None = None) -> None:
        self.out = Path(out)
        if (self.out / "meta.json").exists() and not overwrite:
            raise ValueError(f"{self.out} already holds a checkpoint: pass --overwrite to replace "
                             "it, or choose another --out")
        for name in ("hidden", "layers", "embed", "batch", "steps", "eval_every", "max_val"):
            if getattr(settings, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(settings, name)}")
        if not 0.0 <= settings.teacher_forcing <= 1.0:
            raise ValueError(f"--teacher-forcing must be in [0, 1], got {settings.teacher_forcing}")
        self.s = s = settings
        self.show_progress, self.pairs_path = progress, pairs_path
        self.train_pairs, self.val_pairs = split_pairs(pairs, s)
        src_kind = s.src_tokens or s.tokens
        self.src_vocab = TokenVocab.build((p[0] for p in self.train_pairs), src_kind, s.vocab_size)
        self.tgt_vocab = TokenVocab.build((p[1] for p in self.train_pairs), s.tokens, s.vocab_size)
        enc = lambda ps: ([self.src_vocab.encode(a) for a, _ in ps], [self.tgt_vocab.encode(b) for _, b in ps])
        self.train_src, self.train_tgt = enc(self.train_pairs)
        self.val_src, self.val_tgt = enc(self.val_pairs)
        # decoding stops after this many tokens: room beyond the longest training target
        self.max_len = int(max(len(t) for t in self.train_tgt) * 1.5) + 10
        self.model = Seq2Seq(s.model_config(len(self.src_vocab), len(self.tgt_vocab)),
                             np.random.default_rng(s.seed))
        self.rng = np.random.default_rng([s.seed, 1])
        self.batches = Batches(self.train_src, self.train_tgt, s.batch, self.rng)
        self.loss_fn = CrossEntropyLoss(ignore_index=PAD)
        self.opt = Adam(lr=s.lr)
        self.lr_at = schedule(s.lr, s.min_lr, s.warmup, s.steps)
        self.step, self.best, self.best_params = 0, (-1.0, math.inf), None
        self.history = {"step": [], "train": [], "val_step": [], "val": [], "val_exact": []}
        self.elapsed = 0.0

    def config(self) -> dict:
        return {"app": "translate", "settings": asdict(self.s), "model": self.model.cfg.to_json(),
                "src_vocab": self.src_vocab.to_json(), "tgt_vocab": self.tgt_vocab.to_json(),
                "max_len": self.max_len, "pairs": self.pairs_path}

    def save(self) -> None:
        arrays = {"params": self.model.state_dict(),
                  "best": self.best_params if self.best_params is not None else self.model.state_dict(),
                  "optim": self.opt.state_dict()}
        meta = {"step": self.step, "rng": rng_state(self.rng), "best_val_exact": self.best[0],
                "best_val_loss": self.best[1], "history": self.history, "elapsed": self.elapsed}
        save_checkpoint(self.out, config=self.config(), arrays=arrays, meta=meta)
        h = self.history
        plot_curves(self.out / "loss.png",
                    {"train": (h["step"], h["train"]), "validation": (h["val_step"], h["val"])},
                    ylabel="nats per target token", title=f"rnnkit translate: {self.s.cell}")

    def train_step(self) -> float:
        s, model = self.s, self.model
        src, src_len, tgt_in, tgt_out = self.batches.next()
        feed = None
        if s.teacher_forcing < 1.0:
            feed = self.rng.random(tgt_in.shape) < s.teacher_forcing
        logits = model.forward(src, src_len, tgt_in, feed)
        loss = float(self.loss_fn.forward(logits, tgt_out))
        model.backward(self.loss_fn.backward())
        apply_gradients(model, self.opt, self.lr_at(self.step), s.clip, loss, self.step)
        self.step += 1
        return loss

    def validate(self) -> tuple[float, float]:
        """(mean nats per target token, greedy exact match) on the validation pairs."""
        if not self.val_pairs:
            return float("nan"), float("nan")
        model = self.model
        model.eval()
        total = count = 0.0
        with no_grad():
            for k in range(0, len(self.val_src), 256):
                src, src_len, tgt_in, tgt_out = make_batch(self.val_src[k : k + 256], self.val_tgt[k : k + 256])
                logits = model.forward(src, src_len, tgt_in)
                n = float((tgt_out != PAD).sum())
                total += float(CrossEntropyLoss(ignore_index=PAD).forward(logits, tgt_out)) * n
                count += n
            model.clear_caches()
        hyps = translate(model, self.src_vocab, self.tgt_vocab, [p[0] for p in self.val_pairs],
                         beam=1, max_len=self.max_len)
        model.train()
        return total / count, exact_match(hyps, [p[1] for p in self.val_pairs])

    def run(self) -> dict:
        s = self.s
        start = time.monotonic()
        bar = Progress(s.steps, desc="translate train", every=max(s.eval_every // 5, 1),
                       enabled=self.show_progress)
        recent, val, exact, stopped = [], float("nan"), float("nan"), None
        try:
            while self.step < s.steps:
                loss = self.train_step()
                recent.append(loss)
                self.elapsed = time.monotonic() - start
                out_of_time = s.max_time is not None and self.elapsed >= s.max_time
                if self.step % s.eval_every == 0 or self.step == s.steps or out_of_time:
                    val, exact = self.validate()
                    h = self.history
                    h["step"].append(self.step)
                    h["train"].append(float(np.mean(recent)))
                    h["val_step"].append(self.step)
                    h["val"].append(val)
                    h["val_exact"].append(exact)
                    recent = []
                    key = (0.0 if math.isnan(exact) else exact, -(val if math.isfinite(val) else 0.0))
                    if self.best_params is None or key > (self.best[0], -self.best[1]):
                        self.best = (key[0], -key[1])
                        self.best_params = self.model.state_dict()
                    self.save()
                    bar.write(f"step {self.step}: train {h['train'][-1]:.4f}  val {val:.4f} nats/token  "
                              f"val exact match {exact:.3f}  ({self.elapsed:.0f} s)")
                bar.update(1, loss=f"{loss:.3f}")
                if out_of_time:
                    stopped = "max-time"
                    break
        except KeyboardInterrupt:
            stopped = "interrupted"
            self.save()
        finally:
            bar.close()
        return {"step": self.step, "best_val_exact": self.best[0], "best_val_loss": self.best[1],
                "last_val": val, "last_exact": exact, "stopped": stopped, "seconds": self.elapsed}


def load_model(directory: str | Path, which: str = "best"):
    """Rebuild a trained translator: (model, src_vocab, tgt_vocab, config)."""
    config, arrays, _ = load_checkpoint(directory)
    if config.get("app") != "translate":
        raise ValueError(f"{directory} is not a translation checkpoint")
    from_dict(TrainSettings, config["settings"])  # refuses settings of another version
    model = Seq2Seq(ModelConfig(**config["model"]), np.random.default_rng(0))
    model.load_state_dict(arrays["best" if which == "best" else "params"])
    model.eval()
    return (model, TokenVocab.from_json(config["src_vocab"]), TokenVocab.from_json(config["tgt_vocab"]),
            config)
