"""The training loop every application runs on: `fit(task, settings, out)`.

Read it top to bottom like nanoGPT's ``train.py``: each step takes the task's batch for that
step, lets the task run forward and backward, clips the gradients by their global norm, refuses
a diverged step, sets the learning rate of the schedule (linear warm-up, then cosine decay) and
updates the parameters with Adam.  Every ``eval_every`` steps it validates, keeps the best
parameters and writes a checkpoint; it stops at the planned step, when ``max_time`` is spent,
when the validation metric has not improved for ``patience`` evaluations, or on Ctrl-C
(SIGINT/SIGTERM: the step in progress finishes, a checkpoint is written, the CLI exits 130).

With ``fit_to_time`` the schedule's length is fitted to ``max_time`` once the speed is known
(after 40 steps); from then on it is part of the run, saved with every checkpoint, so a resumed
run follows the same schedule.  Everything that decides the next step - parameters, optimizer
moments, the task's generators and state, the step - is in the checkpoint, and batches are a
function of the step, so a run stopped anywhere and resumed ends bit-identical to one never
stopped.  Callbacks (`Callback`) see the run after backward, after each step and after each
evaluation without touching the loop.

Under MPI (``mpiexec -n K``, `rnnkit.train.mpi`) the same loop runs on every rank: the group
(``run.group``) gives each rank its shard of the step's batch and sums the weighted gradients
with one allreduce before clipping, so every rank applies the same update; rank 0 alone writes
checkpoints and prints.  Outside MPI the group is a plain one-process `Group` that changes
nothing.
"""
from __future__ import annotations

import contextlib
import dataclasses
import math
import signal
import threading
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from ..nn.optim import Adam, clip_grad_norm, cosine_lr, warmup
from .checkpoint import checkpoint_format, load_checkpoint, rng_state, save_checkpoint, set_rng_state
from .mpi import Group, world
from .progress import Progress, plot_history
from .settings import TrainSettings, check_max_time, from_dict, merge_resumed
from .task import Task

SPEED_STEPS = (10, 40)  # the speed for fit_to_time is measured between these steps of a run
PLOT_EVERY = 60.0       # seconds between redrawn loss.png during a run (drawing is not free)


class TrainingDiverged(ValueError):
    """The loss or the gradient norm is not finite, or the loss exploded."""

    all_ranks = True  # under MPI the loss and the norm are the same on every rank


def schedule(lr: float, min_lr: float, warmup_steps: int, total: int) -> Callable[[int], float]:
    """lr_at(step): linear warm-up to ``lr``, then cosine decay to ``min_lr`` at step ``total``."""
    return warmup(cosine_lr(lr, max(total - warmup_steps, 1), min_lr), min(warmup_steps, total))


class Callback:
    """Hooks into `fit`; override what you need.  ``run`` is the `Run` in progress."""

    def on_fit_start(self, run: "Run") -> None: ...

    def on_backward(self, run: "Run") -> None:
        """After ``task.loss`` (gradients in ``run.task.model.grads``), before clipping."""

    def on_step_end(self, run: "Run") -> None:
        """After the update of step ``run.step`` (``run.loss``, ``run.grad_norm``, ``run.lr``)."""

    def on_evaluate(self, run: "Run", metrics: dict[str, float]) -> None: ...

    def on_fit_end(self, run: "Run") -> None: ...


@dataclasses.dataclass
class Run:
    """One training run: what the loop changes, what a checkpoint saves, what callbacks see.

    The schedule's length is ``settings.steps``: the run ends at that step unless stopped
    earlier (fit_to_time sets it; a resumed run may be given a new one).
    """

    task: Task
    settings: TrainSettings
    out: Path | None
    step: int = 0
    best: dict | None = None           # the validation metrics of the best parameters so far
    best_step: int = 0
    best_params: dict | None = None
    elapsed: float = 0.0               # seconds trained, over every invocation
    history: dict = dataclasses.field(default_factory=lambda: {
        "train_step": [], "train": [], "eval_step": [], "eval": {}})
    early_stopped: str | None = None   # "early-stopped" once patience ran out: the run is over
    # set during a step, for callbacks
    loss: float = math.nan
    grad_norm: float = math.nan
    lr: float = 0.0
    clipped: bool = False
    group: Group = dataclasses.field(default_factory=Group)  # the MPI ranks (or this process)

    def __post_init__(self) -> None:
        self.opt = Adam(lr=self.settings.lr)
        self._plotted = time.monotonic()
        self.set_steps(self.settings.steps)

    def set_steps(self, steps: int) -> None:
        """Give the schedule its length (fit_to_time fits it to the time budget)."""
        s = self.settings
        s.steps = max(int(steps), 1)
        self.lr_at = schedule(s.lr, s.min_lr, s.warmup, s.steps)

    # -- checkpoints ---------------------------------------------------------------------------
    def save(self, final: bool = False) -> None:
        """Write the checkpoint (and, at the end or every PLOT_EVERY seconds, loss.png)."""
        if self.out is None:
            return
        state = self.group.gather_state(self.task)  # every rank's rows of it, at rank 0
        if not self.group.root:
            return
        task, model = self.task, self.task.model
        config = {"app": task.app, "settings": dataclasses.asdict(self.settings)}
        extra = task.config()
        clash = set(extra) & set(config)
        if clash:
            raise ValueError(f"task config may not use the keys {sorted(clash)}")
        arrays = {"params": model.state_dict(),
                  "best": self.best_params if self.best_params is not None else model.state_dict(),
                  "optim": self.opt.state_dict()}
        if state:
            arrays["task"] = state
        meta = {"step": self.step, "best": self.best, "best_step": self.best_step,
                "elapsed": self.elapsed, "early_stopped": self.early_stopped,
                "history": self.history,
                "rngs": {name: rng_state(g) for name, g in task.rngs().items()}}
        save_checkpoint(self.out, config={**config, **extra}, arrays=arrays, meta=meta)
        if final or time.monotonic() - self._plotted >= PLOT_EVERY:
            self._plotted = time.monotonic()
            plot_history(self.out / "loss.png", self.history, task, self.best_step,
                         title=f"rnnkit {task.app}: {getattr(self.settings, 'cell', '')}")

    def restore(self, ckpt) -> None:
        """Continue from a checkpoint of this run (see `resume_settings`)."""
        _, arrays, meta = ckpt
        try:
            self.task.model.load_state_dict(arrays["params"])
            self.opt.load_state_dict(arrays["optim"])
            self.task.load_state(self.group.shard_state(self.task, arrays.get("task", {})))
            self.best_params = arrays["best"]
            rngs = self.task.rngs()
            if set(meta["rngs"]) != set(rngs):
                raise ValueError(f"random generators {sorted(meta['rngs'])}, expected {sorted(rngs)}")
            for name, g in rngs.items():
                set_rng_state(g, meta["rngs"][name])
            self.step = int(meta["step"])
            self.best, self.best_step = meta["best"], int(meta["best_step"])
            self.elapsed, self.history = float(meta["elapsed"]), meta["history"]
            self.early_stopped = meta["early_stopped"]
        except (KeyError, TypeError) as e:
            raise ValueError(f"corrupt checkpoint: {self.out}: missing or malformed {e}") from None


def resume_settings(out: str | Path, app: str, given: TrainSettings, explicit: set[str],
                    resume: bool, overwrite: bool):
    """Check ``out`` before anything trains; -> (settings, checkpoint or None).

    With ``resume`` the checkpoint in ``out`` is loaded and its settings are the run's, except
    the resumable ones given explicitly (a changed model setting is refused, naming it).
    Without, a checkpoint already in ``out`` is refused unless ``overwrite``.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} exists and is not a folder")
    if out.is_symlink():
        raise ValueError(f"--out {out} is a symbolic link; give the folder itself")
    has = (out / "meta.json").exists()
    if resume:
        if not has:
            raise ValueError(f"--resume: {out} holds no checkpoint (no run has trained there)")
        ckpt = load_checkpoint(out)
        if checkpoint_format(out) < 2:
            raise ValueError(f"--resume: {out} was written by an older rnnkit (checkpoint format "
                             "1): it loads for inference, but a run resumes only in the version "
                             "that started it; start a new run")
        config = ckpt[0]
        if config.get("app") != app:
            raise ValueError(f"--resume: {out} holds a checkpoint of {config.get('app')!r}, "
                             f"not of {app!r}")
        saved = from_dict(type(given), config.get("settings"), where=f"{out}/config.json")
        return merge_resumed(saved, given, explicit), ckpt
    if has and not overwrite:
        raise ValueError(f"{out} already holds a checkpoint: pass --resume to continue it, "
                         "--overwrite to replace it, or choose another --out")
    return given, None


@dataclasses.dataclass
class SavedRun:
    """A run folder read back for inference (`load_run`): what rebuilds the trained model."""

    directory: Path
    config: dict
    arrays: dict
    meta: dict
    settings: TrainSettings

    def params(self, which: str = "best") -> dict:
        """The best parameters, or the latest with ``which="latest"``."""
        if which not in ("best", "latest"):
            raise ValueError(f"which must be 'best' or 'latest', got {which!r}")
        return self.arrays["best" if which == "best" else "params"]

    @contextlib.contextmanager
    def entries(self):
        """Reading config.json's entries: a missing or malformed one is a corrupt checkpoint."""
        try:
            yield self.config
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"corrupt checkpoint: {self.directory}/config.json: bad entry "
                             f"({e})") from None


def load_run(directory: str | Path, app: str, settings: type[TrainSettings]) -> SavedRun:
    """The checkpoint of an application's run folder, checked to be ``app``'s, its settings
    rebuilt (unknown or missing keys refused by name)."""
    directory = Path(directory)
    config, arrays, meta = load_checkpoint(directory)
    if config.get("app") != app:
        raise ValueError(f"{directory} holds a run of {config.get('app')!r}, not of {app!r}")
    return SavedRun(directory, config, arrays, meta,
                    from_dict(settings, config.get("settings"), where=f"{directory}/config.json",
                              older=checkpoint_format(directory) < 2))


@contextlib.contextmanager
def _stop_on_signals():
    """SIGINT / SIGTERM ask the loop to stop after the step in progress (a second one raises).

    Yields a function that tells whether a stop was asked.  Outside the main thread signals
    cannot be caught; the loop then relies on KeyboardInterrupt alone.
    """
    asked = []
    if threading.current_thread() is not threading.main_thread():
        yield lambda: False
        return

    def handler(signum, frame):
        if asked:
            raise KeyboardInterrupt
        asked.append(signum)

    old = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield lambda: bool(asked)
    finally:
        for sig, h in old.items():
            signal.signal(sig, h)


def fit(task: Task, settings: TrainSettings, out: str | Path | None = None, *,
        checkpoint=None, max_time: float | None = None, fit_to_time: bool = False,
        max_steps: int | None = None, patience: int | None = None, eval_at_start: bool = False,
        callbacks: Sequence[Callback] = (), progress: bool = True, log_every: int | None = None,
        clock: Callable[[], float] = time.monotonic) -> dict:
    """Train ``task.model`` (see the module docstring); returns a summary dict.

    out: checkpoint folder (None: nothing written).  checkpoint: what `resume_settings`
    returned, to continue that run.  max_time: seconds this call may train (a budget of this
    invocation, not a setting of the run); with ``fit_to_time`` the schedule is fitted to it
    (to at most ``max_steps`` steps).  patience: stop after this many evaluations without a
    better metric.  eval_at_start: evaluate the parameters before the first step too (they may
    be the best: a model that starts from a fitted baseline).  clock: what max_time counts (a
    benchmark on shared cores may pass ``time.process_time``).  Under MPI only rank 0's
    ``checkpoint`` counts: it is broadcast.
    """
    settings.check()
    check_max_time(max_time)
    s = dataclasses.replace(settings)  # fit_to_time changes steps: never the caller's object
    model = task.model
    group = world()
    run = Run(task, s, None if out is None else Path(out), group=group)
    checkpoint = group.start(task, s, checkpoint)  # the ranks agree on settings and data
    if checkpoint is not None:
        run.restore(checkpoint)
    group.sync(task)
    fit_to_time = fit_to_time and max_time is not None and run.step == 0
    log_every = log_every or max(1, s.eval_every // 10)
    params = list(model.named_parameters())
    start, start_step, elapsed0 = clock(), run.step, run.elapsed
    timed: dict[int, float] = {}
    recent: list[float] = []      # training losses since the last logged interval
    since_eval: list[float] = []  # ... and since the last evaluation
    metrics: dict[str, float] = {}
    stopped = "early-stopped" if run.early_stopped else "finished" if run.step >= s.steps else None
    bar = Progress(s.steps, initial=run.step, desc=f"{task.app} train", every=log_every,
                   enabled=progress and group.root)
    for cb in callbacks:
        cb.on_fit_start(run)
    if eval_at_start and run.step == 0 and not run.history["eval_step"]:
        metrics = _evaluate(run, [], bar)
    model.train()

    def out_of_time() -> bool:
        return max_time is not None and clock() - start >= max_time

    try:
        with _stop_on_signals() as stop_asked:
            while stopped is None:
                # -- one step: batch, forward + backward, clip, update -------------------------
                run.lr = run.lr_at(run.step)
                snapshot = _snapshot(task)
                try:
                    # forward + backward (under MPI: this rank's shard, then one allreduce of the
                    # weighted gradients, the loss and the stop flags, so the ranks agree)
                    loss, time_up, asked = group.loss(task, task.batch(run.step), out_of_time,
                                                      stop_asked)
                    run.loss = loss
                    for cb in callbacks:
                        cb.on_backward(run)
                    norm = run.grad_norm = clip_grad_norm(params, s.clip)
                    _check_finite(task, run, loss, norm)
                except KeyboardInterrupt:
                    _rewind(task, snapshot)  # the step never happened: the checkpoint is exact
                    raise
                run.clipped = norm > s.clip
                run.opt.lr = run.lr
                run.opt.step(params)
                model.zero_grad()
                run.step += 1
                recent.append(loss)
                since_eval.append(loss)
                now = clock()
                run.elapsed = elapsed0 + now - start
                for cb in callbacks:
                    cb.on_step_end(run)

                # -- the schedule fitted to the time budget, once the speed is known -----------
                ran = run.step - start_step
                if fit_to_time and ran in SPEED_STEPS:
                    timed[ran] = now
                    if ran == SPEED_STEPS[1]:
                        per_step = (now - timed[SPEED_STEPS[0]]) / (SPEED_STEPS[1] - SPEED_STEPS[0])
                        left = max_time - (now - start)
                        fits = max(run.step + 1, run.step + int(0.95 * left / per_step))
                        fits = fits if max_steps is None else min(fits, max_steps)
                        run.set_steps(group.bcast(fits))  # rank 0's clock decides for all
                        fit_to_time = False
                        bar.set_total(s.steps)
                        bar.write(f"fitted to --max-time {max_time:g}s: {s.steps} steps")

                # -- logging, validation, checkpoints, stopping ----------------------------------
                done = run.step >= s.steps
                # evaluations keep to their schedule (a stop for time or Ctrl-C only checkpoints),
                # so a stopped and resumed run keeps the same best parameters as one never stopped
                evaluate = run.step % s.eval_every == 0 or done
                if evaluate or run.step % log_every == 0:
                    run.history["train_step"].append(run.step)
                    run.history["train"].append(float(np.mean(recent)))
                    recent = []
                if evaluate:
                    metrics = _evaluate(run, since_eval, bar)
                    since_eval = []
                    if patience is not None and _evals_since_best(run) >= patience:
                        stopped = run.early_stopped = "early-stopped"
                if stopped is None:
                    stopped = ("finished" if done else "max-time" if time_up
                               else "interrupted" if asked else None)
                if evaluate or stopped is not None:
                    run.save(final=stopped is not None)
                if evaluate:
                    for cb in callbacks:
                        cb.on_evaluate(run, metrics)
                bar.update(1, loss=f"{loss:.3f}", **_shown(task, metrics),
                           **{"steps/s": f"{ran / max(now - start, 1e-9):.2f}"})
    except KeyboardInterrupt:
        if group.size > 1:
            raise  # mid-step on one rank: the ranks can no longer agree on a checkpoint
        stopped = "interrupted"
        run.save(final=True)
    finally:
        bar.close()
        task.close()
    for cb in callbacks:
        cb.on_fit_end(run)
    seconds = run.elapsed - elapsed0
    best = (run.best or {}).get(task.metric, math.nan)
    return {"step": run.step, "steps": s.steps, "stopped": stopped, "best": best,
            "best_step": run.best_step, "metric": task.metric, "last": metrics,
            "seconds": seconds, "steps_per_second": (run.step - start_step) / max(seconds, 1e-9),
            "run": run}


def _snapshot(task: Task):
    return ({name: g.bit_generator.state for name, g in task.rngs().items()}, task.state())


def _rewind(task: Task, snapshot) -> None:
    states, arrays = snapshot
    for name, g in task.rngs().items():
        g.bit_generator.state = states[name]
    task.load_state(arrays)
    task.model.zero_grad()


def _check_finite(task: Task, run: Run, loss: float, norm: float) -> None:
    if not (math.isfinite(loss) and math.isfinite(norm)):
        raise TrainingDiverged(
            f"training diverged at step {run.step + 1}: {task.loss_name} {loss}, gradient norm "
            f"{norm}; try a lower --lr or --clip (the last checkpoint is kept)")
    if task.explode is not None and run.step >= run.settings.warmup and loss > task.explode:
        raise TrainingDiverged(
            f"training exploded at step {run.step + 1}: {task.loss_name} {loss:.4g} (above "
            f"{task.explode:.4g}, far worse than where it started); try a lower --lr (the last "
            "checkpoint is kept)")


def _evaluate(run: Run, since_eval: list[float], bar: Progress) -> dict[str, float]:
    """Validate, record, keep the best parameters; one line to the progress display."""
    task = run.task
    metrics = run.group.evaluate(task)
    run.group.check(task.model, run.step)
    task.model.train()
    h = run.history
    h["eval_step"].append(run.step)
    for k, v in metrics.items():
        h["eval"].setdefault(k, []).append(v)
    if run.best_params is None or task.better(metrics, run.best):
        # the first evaluation always gives best parameters, even with no metric to judge by
        run.best, run.best_step, run.best_params = metrics, run.step, task.model.state_dict()
    shown = "  ".join(f"{k} {task.show(k, v)}" for k, v in metrics.items())
    trained = (f"train {task.loss_name} {np.mean(since_eval):.4f} (mean of steps "
               f"{run.step - len(since_eval) + 1}-{run.step})  " if since_eval else "")
    bar.write(f"step {run.step}: {trained}validation {shown}  ({run.elapsed:.0f} s)")
    return metrics


def _evals_since_best(run: Run) -> int:
    steps = run.history["eval_step"]
    return sum(1 for st in steps if st > run.best_step)


def _shown(task: Task, metrics: dict[str, float]) -> dict[str, str]:
    value = metrics.get(task.metric)
    return {"val": "-" if value is None or not math.isfinite(value) else f"{value:.3f}"}


__all__ = ["Callback", "Run", "SavedRun", "TrainingDiverged", "fit", "load_run", "resume_settings",
           "schedule"]
