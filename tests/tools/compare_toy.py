"""A toy application for the compare tests: least squares y = x w + noise with one Linear layer.

``CLOCK`` is a fake clock the tests drive: each training step costs STEP seconds of it, each
evaluation EVAL, each task build BUILD, so budgets are exact and independent of the machine.
``--crash-cell`` makes building that cell's task fail (a bad setting); a rate that makes the loss
explode (``explode``) fails its trial as a divergence.
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass

import numpy as np

from rnnkit.nn import Linear
from rnnkit.train.settings import TrainSettings, with_defaults
from rnnkit.train.task import Task, TaskSpec

STEP, EVAL, BUILD = 1.0, 0.25, 0.5


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


CLOCK = FakeClock()
STEPS: dict = {}  # (cell, lr, seed) -> training steps taken


@dataclass
class ToySettings(with_defaults(TrainSettings, hidden=4, batch=16, lr=1e-2, min_lr=1e-2, warmup=0,
                                dtype="float64")):
    """The shared settings with the toy's defaults."""


class ToyTask(Task):
    app = "toy"
    metric = "loss"
    explode = 1e6

    def __init__(self, s: ToySettings, n: int = 256, d: int = 8) -> None:
        CLOCK.now += BUILD
        data = np.random.default_rng(123)
        self.w = data.standard_normal((d, 1))
        self.x = data.standard_normal((n, d))
        self.y = self.x @ self.w + 0.1 * data.standard_normal((n, 1))
        self.s = s
        # the cell and the hidden size only change how the weights start
        cell = ("rnn", "gru", "lstm").index(s.cell)
        self.model = Linear(d, 1, dtype=np.float64,
                            rng=np.random.default_rng([s.seed, s.hidden, cell]))

    def batch(self, step: int):
        return np.random.default_rng([self.s.seed, step]).integers(0, 192, self.s.batch)

    def loss(self, idx) -> float:
        CLOCK.now += STEP
        key = (self.s.cell, self.s.lr, self.s.seed)
        STEPS[key] = STEPS.get(key, 0) + 1
        err = self.model.forward(self.x[idx]) - self.y[idx]
        self.model.backward(2 * err / len(idx))
        return float(np.mean(err ** 2))

    def evaluate(self) -> dict[str, float]:
        CLOCK.now += EVAL
        err = self.model.forward(self.x[192:]) - self.y[192:]
        self.model.clear_caches()
        return {"loss": float(np.mean(err ** 2))}


def data_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--crash-cell", default=None, help="building this cell's task fails")


def make_task(s: ToySettings, args: argparse.Namespace) -> ToyTask:
    if s.cell == args.crash_cell:
        raise ValueError(f"a bad setting for {s.cell}")
    return ToyTask(s)


TASK = TaskSpec("toy", ToySettings, data_options, make_task, about="least squares")
