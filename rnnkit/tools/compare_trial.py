"""One unit of work of ``rnnkit compare``, run wherever a worker runs it (this process, a local
process, a Ray task): the learning-rate range test of one cell, or one trial (cell, rate, seed)
trained on to the last step of its rung.

A job is a plain dict: the import path of the application's `TaskSpec`, the parsed data flags,
the trial's settings, the deadline, and the trial's checkpoint as bytes.  The worker builds the
task with the application's ``make_task``, restores the checkpoint, trains with the shared loop
(`rnnkit.train.engine.fit`) and returns the new checkpoint's files as bytes, which the caller
writes under its ``--out``: a worker needs nothing from the caller's disk but the data files.

Every trial of a race trains on one schedule, the one of a run as long as the race's last rung
(warm-up, then cosine decay to that step), whatever rung it stops at; the checkpoint holds
everything else, so a trial continued rung by rung ends bit-identical to one trained straight
through (tested).
"""
from __future__ import annotations

import argparse
import importlib
import math
import shutil
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np

from ..nn import LSTM, LSTMCell
from ..nn.init import lstm_forget_bias
from ..train.checkpoint import load_checkpoint
from ..train.engine import Callback, TrainingDiverged, fit, schedule
from ..train.settings import from_dict

FORGET_BIAS = 1.0  # LSTM forget-gate bias at the start (Jozefowicz et al. 2015)
DIVERGED = 4.0     # the range test stops once its averaged loss exceeds this multiple of its lowest

# Measurements every trial takes besides its metric: name -> "module:factory", factory(task)
# giving a `Callback` with ``result() -> float | None``; shown as columns of the table.
# "gradient_horizon": how many steps back the last step's loss reaches the first recurrent
# layer (rnnkit/train/diagnose.py, docs/diagnostics.md).
MEASURES: dict[str, str] = {"gradient_horizon": "rnnkit.train.diagnose:HorizonMeasure"}


def resolve(path: str):
    """The object at "package.module:attribute"."""
    module, _, attr = path.partition(":")
    return getattr(importlib.import_module(module), attr)


def forget_bias(model, value: float = FORGET_BIAS) -> int:
    """Set the forget-gate bias of every LSTM in ``model`` to ``value`` (b_if = value, b_hf = 0,
    torch adds the two); returns how many LSTM modules were changed."""
    changed, stack = 0, [model]
    while stack:
        m = stack.pop()
        stack.extend(child for _, child in m.children())
        if isinstance(m, (LSTM, LSTMCell)):
            for name, p in m.params.items():
                if name.startswith("bias_ih"):
                    lstm_forget_bias(p, value)
                elif name.startswith("bias_hh"):
                    lstm_forget_bias(p, 0.0)
            changed += 1
    return changed


def pack(folder: Path) -> dict[str, bytes]:
    """The files of a run folder (no subfolders, no hidden temporaries), as bytes."""
    return {f.name: f.read_bytes() for f in sorted(folder.iterdir())
            if f.is_file() and not f.name.startswith(".")}


def unpack(files: dict[str, bytes], folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        if "/" in name or name.startswith("."):
            raise ValueError(f"refusing a trial file named {name!r}")
        (folder / name).write_bytes(data)


class RaceSchedule(Callback):
    """Train on the schedule of a run ``total`` steps long, whatever step this call stops at."""

    def __init__(self, total: int) -> None:
        self.total = total

    def on_fit_start(self, run) -> None:
        s = run.settings
        run.lr_at = schedule(s.lr, s.min_lr, s.warmup, self.total)


class Evals(Callback):
    """(step, seconds trained, metric) of every evaluation."""

    def __init__(self, metric: str) -> None:
        self.metric, self.rows = metric, []

    def on_evaluate(self, run, metrics) -> None:
        self.rows.append([run.step, run.elapsed, float(metrics.get(self.metric, math.nan))])


class _Done(Exception):
    """Ends the range test (raised by its callback)."""


class Ramp(Callback):
    """The range test's rates: lr_k = lo * (hi / lo) ** (k / (n - 1)); records (rate, loss)
    and the time of each step, and ends the run after n steps or once the loss diverges: its
    moving average (bias-corrected, as fast.ai's) above DIVERGED times its lowest."""

    def __init__(self, lo: float, hi: float, n: int, clock: Callable[[], float],
                 beta: float = 0.9) -> None:
        self.lo, self.hi, self.n, self.clock, self.beta = lo, hi, n, clock, beta
        self.lrs: list[float] = []
        self.losses: list[float] = []
        self.times: list[float] = []
        self.avg, self.lowest = 0.0, math.inf

    def on_fit_start(self, run) -> None:
        lo, hi, n = self.lo, self.hi, max(self.n - 1, 1)
        run.lr_at = lambda step: lo * (hi / lo) ** (min(step, n) / n)

    def on_step_end(self, run) -> None:
        self.lrs.append(run.lr)
        self.losses.append(run.loss)
        self.times.append(self.clock())
        k = len(self.losses)
        self.avg = self.beta * self.avg + (1 - self.beta) * run.loss
        avg = self.avg / (1 - self.beta ** k)
        self.lowest = min(self.lowest, avg)
        if k >= self.n or (k > 5 and avg > DIVERGED * self.lowest):
            raise _Done

    def steps_per_second(self) -> float:
        t = self.times[2:] if len(self.times) > 6 else self.times
        return (len(t) - 1) / (t[-1] - t[0]) if len(t) > 1 and t[-1] > t[0] else math.nan


def _build(job: dict, clock):
    spec = resolve(job["spec"])
    settings = from_dict(spec.settings, job["settings"], where="compare job")
    start = clock()
    task = spec.make_task(settings, argparse.Namespace(**job["args"]))
    return spec, settings, task, clock() - start


def _left(job: dict, clock) -> float | None:
    return None if job.get("deadline") is None else job["deadline"] - clock()


def _failure(exc: BaseException) -> dict:
    kind = "diverged" if isinstance(exc, TrainingDiverged) else "crashed"
    message = str(exc) if isinstance(exc, (ValueError, TrainingDiverged)) else \
        f"{type(exc).__name__}: {exc}"
    return {"status": kind, "error": message.splitlines()[0] if message else kind}


def run_job(job: dict, clock: Callable[[], float] = time.time) -> dict:
    """Run one job (see the module docstring); never raises for a failing trial: its result
    says "crashed" or "diverged" with the message instead."""
    left = _left(job, clock)
    if left is not None and left <= 0:
        return {"status": "not-run", "error": "the budget was spent before it started"}
    try:
        return range_test(job, clock) if job["kind"] == "range" else trial(job, clock)
    except Exception as exc:  # a bad setting fails its trial, never the race
        return _failure(exc)


def _timed(function, clock) -> float:
    start = clock()
    function()
    return clock() - start


def range_test(job: dict, clock) -> dict:
    """Train with exponentially increasing rates; the loss at each one, the speed, the time one
    evaluation takes and the task's size (the caller chooses the rate from the curve)."""
    spec, s, task, build = _build(job, clock)
    if s.cell == "lstm":
        forget_bias(task.model)
    start = clock()
    untrained = task.evaluate()
    evals = [clock() - start]  # a first call may compile kernels: timed again after training
    ramp = Ramp(job["lo"], job["hi"], s.steps, clock)
    left = _left(job, clock)
    if left is not None and left <= 0:
        return {"status": "not-run", "error": "the budget was spent before it started"}
    try:
        fit(task, s, None, callbacks=[ramp], progress=False, clock=clock,
            max_time=None if left is None else max(left, 1e-3))
    except (_Done, TrainingDiverged):
        pass
    evals.append(_timed(task.evaluate, clock))
    return {"status": "ok", "error": None, "lrs": ramp.lrs, "losses": ramp.losses,
            "steps_per_second": ramp.steps_per_second(), "eval_seconds": min(evals),
            "build_seconds": build, "params": task.model.num_parameters(),
            "describe": task.describe(), "metric": task.metric, "higher": task.higher_is_better,
            "untrained": float(untrained.get(task.metric, math.nan)),
            "label": task.loss_name if task.metric == "loss" else task.metric}


def trial(job: dict, clock) -> dict:
    """Continue (or start) one trial up to ``settings.steps``; returns its new checkpoint."""
    spec, s, task, _ = _build(job, clock)
    work = Path(tempfile.mkdtemp(prefix="rnnkit-trial-"))
    try:
        folder = work / "run"
        ckpt = None
        if job.get("files"):
            unpack(job["files"], folder)
            ckpt = load_checkpoint(folder)
        elif s.cell == "lstm":
            forget_bias(task.model)
        evals = Evals(task.metric)
        measures = {name: resolve(path)(task) for name, path in job.get("measures", {}).items()}
        left = _left(job, clock)
        if left is not None and left <= 0:
            return {"status": "not-run", "error": "the budget was spent before it started"}
        summary = fit(task, s, folder, checkpoint=ckpt, max_time=left, progress=False,
                      callbacks=[RaceSchedule(job["total"]), evals, *measures.values()],
                      clock=clock)
        run = summary["run"]
        return {"status": "ok" if run.step >= s.steps else summary["stopped"], "error": None,
                "step": run.step, "elapsed": run.elapsed, "evals": evals.rows,
                "params": task.model.num_parameters(), "files": pack(folder),
                "measures": {name: m.result() for name, m in measures.items()}}
    finally:
        shutil.rmtree(work, ignore_errors=True)


def best_params(folder: Path) -> dict[str, np.ndarray]:
    """The best parameters in a trial's checkpoint."""
    return load_checkpoint(folder)[1]["best"]
