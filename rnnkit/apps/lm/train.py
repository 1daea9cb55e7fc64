"""Training a language model: char-rnn-style stateful truncated BPTT, checkpoints, resume.

``batch`` parallel streams walk through the training text; the hidden state is carried from one
``seq_len`` window to the next and reset at every epoch boundary.  Adam, global-norm clipping, a
linear warm-up then cosine learning-rate schedule, periodic validation, the best parameters kept.
Everything that decides the next step (parameters, optimizer moments, carried state, dropout
generator, step) is in the checkpoint, so ``--resume`` ends bit-identical to a run never stopped.
"""
from __future__ import annotations

import hashlib
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ...data.text import StreamBatcher, Vocab, default_corpus_path, read_text
from ...nn import CrossEntropyLoss, no_grad
from ...nn.optim import Adam
from ...train.loop import apply_gradients, schedule
from ...train.checkpoint import load_checkpoint, rng_from_state, rng_state, save_checkpoint
from ...train.progress import Progress, plot_curves
from ...train.settings import field, from_dict
from .model import LanguageModel, ModelConfig, state_arrays, state_from_arrays, stream_nll


@dataclass
class TrainSettings:
    """Settings of ``rnnkit lm train``; the defaults learn best in a few minutes on 2 CPU cores."""

    cell: str = field("lstm", "recurrent cell", choices=("lstm", "gru", "rnn"))
    hidden: int = field(256, "hidden units per layer")
    layers: int = field(2, "recurrent layers")
    embed: int = field(64, "embedding size")
    dropout: float = field(0.1, "dropout between layers and before the output layer")
    tokens: str = field("char", "token unit", choices=("char", "word"))
    vocab_size: int = field(10000, "largest word vocabulary (word tokens only), <unk> included")
    seq_len: int = field(100, "truncated-BPTT window length")
    batch: int = field(32, "parallel streams through the text")
    lr: float = field(3e-3, "peak learning rate (Adam)")
    min_lr: float = field(3e-4, "learning rate at the end of the cosine decay")
    warmup: int = field(100, "linear warm-up steps")
    clip: float = field(5.0, "clip gradients to this global norm")
    steps: int = field(2000, "total optimizer steps (with --max-time alone: fitted to the budget)")
    max_time: float | None = field(None, "wall-clock budget in seconds: unless --steps is given, the "
                                   "schedule is fitted to it; training stops cleanly when it is spent")
    val_fraction: float = field(0.05, "last fraction of the text held out for validation")
    eval_every: int = field(250, "validate and checkpoint every N steps")
    seed: int = field(0, "random seed")
    dtype: str = field("float32", "float32 or float64", choices=("float32", "float64"))

    def model_config(self, vocab_size: int) -> ModelConfig:
        return ModelConfig(vocab_size=vocab_size, cell=self.cell, embed=self.embed,
                           hidden=self.hidden, layers=self.layers, dropout=self.dropout,
                           dtype=self.dtype)


# settings a resumed run may change; every other one must match the checkpoint
RESUMABLE = ("steps", "max_time", "eval_every")


def load_corpus(paths: list[str] | None) -> tuple[str, list[str]]:
    """The training text: the given UTF-8 files joined, or the bundled Shakespeare."""
    paths = [str(p) for p in paths] if paths else [str(default_corpus_path())]
    return "".join(read_text(p) for p in paths), paths


def prepare(text: str, s: TrainSettings):
    """Split the text (the last val_fraction is validation) and build the vocabulary from training."""
    if not 0.0 <= s.val_fraction < 1.0:
        raise ValueError(f"--val-fraction must be in [0, 1), got {s.val_fraction}")
    if s.tokens == "char":
        cut = len(text) - int(round(len(text) * s.val_fraction))
        train_text, val_text = text[:cut], text[cut:]
        vocab = Vocab.from_text(train_text, kind="char")
        return vocab, vocab.encode(train_text), vocab.encode(val_text)
    words = Vocab.from_text(text[:1], kind="word").tokenize(text)
    cut = len(words) - int(round(len(words) * s.val_fraction))
    train_text, val_text = "".join(words[:cut]), "".join(words[cut:])
    vocab = Vocab.from_text(train_text, kind="word", max_size=s.vocab_size)
    return vocab, vocab.encode(train_text), vocab.encode(val_text)


def validate(model: LanguageModel, ids: np.ndarray, s: TrainSettings) -> float:
    """Mean nats per token over the validation ids (``batch`` streams, state carried)."""
    if len(ids) < 2:
        return float("nan")
    model.eval()
    with no_grad():
        total, count = stream_nll(model, ids, s.seq_len, s.batch)
    model.train()
    return total / count


class Trainer:
    """One training run: builds or restores everything, then ``run()`` steps until done."""

    def __init__(self, settings: TrainSettings, out: str | Path, texts: list[str] | None = None,
                 resume: bool = False, explicit: set[str] = frozenset(), progress: bool = True,
                 overwrite: bool = False) -> None:
        self.out = Path(out)
        self.show_progress = progress
        self._explicit = set(explicit)
        ckpt = None
        if resume:
            if not (self.out / "meta.json").exists():
                raise ValueError(f"--resume: no checkpoint in {self.out}")
            ckpt = load_checkpoint(self.out)
            settings = self._merge(ckpt[0], settings, explicit)
            texts = ckpt[0]["texts"] if texts is None else texts
        elif (self.out / "meta.json").exists() and not overwrite:
            raise ValueError(f"{self.out} already holds a checkpoint: pass --resume to continue it, "
                             "--overwrite to replace it, or choose another --out")
        self.s = s = settings
        text, self.texts = load_corpus(texts)
        self.fingerprint = hashlib.sha256(text.encode("utf-8")).hexdigest()
        self.vocab, self.train_ids, self.val_ids = prepare(text, s)
        self.batcher = StreamBatcher(self.train_ids, s.batch, s.seq_len)
        self.model = LanguageModel(s.model_config(len(self.vocab)), np.random.default_rng(s.seed),
                                   np.random.default_rng([s.seed, 1]))
        self.loss_fn = CrossEntropyLoss()
        self.opt = Adam(lr=s.lr)
        # the schedule's length; with --max-time and no --steps it is fitted to the budget once
        # the speed is known (see run), and from then on saved with the checkpoint
        self.horizon = s.steps
        self.fit_to_time = s.max_time is not None and "steps" not in explicit and not resume
        self.lr_at = self.schedule(self.horizon)
        self.clock = time.monotonic  # a benchmark may count CPU time instead
        self.step, self.state, self.best = 0, None, math.inf
        self.best_params = None
        self.history = {"step": [], "train": [], "val_step": [], "val": []}
        self.elapsed = 0.0
        if ckpt is not None:
            self._restore(ckpt)

    def schedule(self, total: int):
        """Linear warm-up, then cosine decay from --lr to --min-lr at step ``total``."""
        return schedule(self.s.lr, self.s.min_lr, self.s.warmup, total)

    def fit_horizon(self, seconds_per_step: float, seconds_left: float) -> None:
        """Fit the schedule to the time budget: as many steps as the time left allows.

        The fitted total becomes the run's --steps (saved with the checkpoint, so a resumed run
        follows the same schedule).
        """
        fits = self.step + int(0.95 * seconds_left / seconds_per_step)  # 5% for validation
        self.horizon = self.s.steps = max(self.step + 1, fits)
        self.lr_at = self.schedule(self.horizon)

    # -- checkpoints ---------------------------------------------------------------------------
    def _merge(self, config: dict, given: TrainSettings, explicit: set[str]) -> TrainSettings:
        saved = from_dict(TrainSettings, config["settings"])
        for name in explicit - set(RESUMABLE):
            if getattr(given, name) != getattr(saved, name):
                raise ValueError(f"--resume: --{name.replace('_', '-')} {getattr(given, name)} differs "
                                 f"from the checkpoint's {getattr(saved, name)}")
        for name in RESUMABLE:
            if name in explicit:
                setattr(saved, name, getattr(given, name))
        return saved

    def _restore(self, ckpt) -> None:
        config, arrays, meta = ckpt
        if config["fingerprint"] != self.fingerprint:
            raise ValueError("--resume: the training text differs from the one the checkpoint was "
                             "trained on")
        if Vocab.from_json(config["vocab"]) != self.vocab:
            raise ValueError("--resume: the vocabulary differs from the checkpoint's")
        self.model.load_state_dict(arrays["params"])
        self.best_params = arrays["best"]
        self.opt.load_state_dict(arrays["optim"])
        self.state = state_from_arrays(arrays.get("state", {}))
        self.model.set_rng(rng_from_state(meta["rng"]))
        self.step, self.best = meta["step"], meta["best_val"]
        self.history, self.elapsed = meta["history"], meta["elapsed"]
        self.horizon = self.s.steps if "steps" in self._explicit else min(meta["horizon"], self.s.steps)
        self.lr_at = self.schedule(self.horizon)

    def config(self) -> dict:
        return {"app": "lm", "settings": asdict(self.s), "model": self.model.cfg.to_json(),
                "vocab": self.vocab.to_json(), "texts": self.texts, "fingerprint": self.fingerprint}

    def save(self) -> None:
        arrays = {"params": self.model.state_dict(),
                  "best": self.best_params if self.best_params is not None else self.model.state_dict(),
                  "optim": self.opt.state_dict(), "state": state_arrays(self.state)}
        meta = {"step": self.step, "rng": rng_state(self.model.rng), "best_val": self.best,
                "history": self.history, "elapsed": self.elapsed, "horizon": self.horizon}
        save_checkpoint(self.out, config=self.config(), arrays=arrays, meta=meta)
        h = self.history
        plot_curves(self.out / "loss.png",
                    {"train": (h["step"], h["train"]), "validation": (h["val_step"], h["val"])},
                    ylabel=f"nats per {self.s.tokens}", title=f"rnnkit lm: {self.s.cell}")

    # -- the loop ------------------------------------------------------------------------------
    def evaluate(self) -> float:
        val = validate(self.model, self.val_ids, self.s)
        self.history["val_step"].append(self.step)
        self.history["val"].append(val)
        if val < self.best or self.best_params is None:
            self.best = min(val, self.best)
            self.best_params = self.model.state_dict()
        return val

    def train_step(self) -> float:
        s, model = self.s, self.model
        k = self.step % len(self.batcher)
        if k == 0:
            self.state = None  # a new epoch starts every stream from the beginning again
        x, y = self.batcher.window(k)
        logits, self.state = model.forward(x, self.state)
        loss = float(self.loss_fn.forward(logits, y))
        model.backward(self.loss_fn.backward())
        apply_gradients(model, self.opt, self.lr_at(self.step), s.clip, loss, self.step)
        self.step += 1
        return loss

    def run(self, until: int | None = None) -> dict:
        """Train up to the horizon (``settings.steps`` unless fitted to --max-time), or stop early
        after step ``until`` as an interruption would."""
        s = self.s
        start, start_step, elapsed0 = self.clock(), self.step, self.elapsed
        explode = 3 * math.log(len(self.vocab)) + 1  # far worse than guessing uniformly
        bar = Progress(self.horizon, initial=self.step, desc="lm train",
                       every=max(s.eval_every // 5, 1), enabled=self.show_progress)
        recent, stopped = [], None
        val = self.history["val"][-1] if self.history["val"] else float("nan")
        timed = {}  # clock readings for measuring the speed: after 10 and 40 steps of this run
        try:
            while self.step < min(self.horizon, s.steps if until is None else until):
                loss = self.train_step()
                recent.append(loss)
                if self.step > s.warmup and loss > explode:
                    raise ValueError(f"training exploded at step {self.step}: loss {loss:.3f} nats "
                                     f"(uniform guessing gives {math.log(len(self.vocab)):.3f}); "
                                     "try a lower --lr")
                now = self.clock()
                self.elapsed = elapsed0 + now - start
                ran = self.step - start_step
                if self.fit_to_time and ran in (10, 40):
                    timed[ran] = now
                    if ran == 40:
                        self.fit_horizon((timed[40] - timed[10]) / 30, s.max_time - (now - start))
                        self.fit_to_time = False
                        bar.set_total(self.horizon)
                        bar.write(f"fitted to --max-time {s.max_time:g}s: {self.horizon} steps")
                tps = ran * s.batch * s.seq_len / max(now - start, 1e-9)
                out_of_time = s.max_time is not None and now - start >= s.max_time
                if self.step == until and until < self.horizon:
                    stopped = "until"
                if (self.step % s.eval_every == 0 or self.step in (until, self.horizon)
                        or out_of_time):
                    self.history["step"].append(self.step)
                    self.history["train"].append(float(np.mean(recent)))
                    recent = []
                    val = self.evaluate()
                    self.save()
                    bar.write(f"step {self.step}: train {self.history['train'][-1]:.4f}  "
                              f"val {val:.4f} nats/{s.tokens} ({val / math.log(2):.3f} bits)")
                shown = f"{val:.3f}" if math.isfinite(val) else "-"
                bar.update(1, loss=f"{loss:.3f}", val=shown, **{f"{s.tokens}s/s": f"{tps:,.0f}"})
                if out_of_time:
                    stopped = "max-time"
                    break
        except KeyboardInterrupt:
            stopped = "interrupted"
            self.save()
        finally:
            bar.close()
        run_time = self.elapsed - elapsed0
        return {"step": self.step, "best_val": self.best, "last_val": val, "stopped": stopped,
                "seconds": run_time, "tokens_per_second":
                (self.step - start_step) * s.batch * s.seq_len / max(run_time, 1e-9)}


def load_model(directory: str | Path, which: str = "best"):
    """Rebuild a trained language model from its checkpoint: (model, vocab, settings)."""
    config, arrays, _ = load_checkpoint(directory)
    if config.get("app") != "lm":
        raise ValueError(f"{directory} is not a language-model checkpoint")
    cfg = ModelConfig(**config["model"])
    model = LanguageModel(cfg, np.random.default_rng(0))
    model.load_state_dict(arrays["best" if which == "best" else "params"])
    model.eval()
    return model, Vocab.from_json(config["vocab"]), from_dict(TrainSettings, config["settings"])
