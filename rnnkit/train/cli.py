"""The ``train`` verb every application shares: one set of flags, one command body.

``add_train_options(parser, Settings)`` adds the run options (``--out --overwrite --resume
--max-time --quiet``) and one option per field of the application's settings dataclass (a
subclass of `TrainSettings`, so the shared flags have the same names, help and validation in
every application).  ``train_command`` is the body of ``rnnkit <app> train``: it validates the
flags, checks ``--out`` and a checkpoint to resume before any data is read, builds the task,
trains it with `fit` and reports.
"""
from __future__ import annotations

import argparse
import math
import sys
from typing import Callable

from .engine import fit, resume_settings
from .settings import TrainSettings, add_options, check_max_time, explicit_options, from_options
from .task import Task


def add_train_options(p: argparse.ArgumentParser, settings: type[TrainSettings],
                      skip: tuple[str, ...] = ()) -> None:
    """The run options and the settings' options of a ``train`` verb (but those in ``skip``)."""
    p.add_argument("--out", required=True, help="run folder: checkpoints, best parameters, loss.png")
    p.add_argument("--overwrite", action="store_true", help="replace a checkpoint already in --out")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in --out (its settings; --steps and --eval-every may "
                        "change); ends exactly as if it had never stopped")
    p.add_argument("--max-time", type=float, default=None, metavar="SECONDS",
                   help="seconds this command may train, then a checkpoint and a clean stop "
                        "(--resume continues); without --steps the schedule is fitted to it")
    p.add_argument("--quiet", action="store_true", help="no progress display")
    add_options(p, settings, skip)


def parse_settings(args: argparse.Namespace, cls: type[TrainSettings]):
    """-> (settings, names given explicitly); every value checked (ValueError names the flag)."""
    settings = from_options(cls, args)
    settings.check()
    check_max_time(args.max_time)
    return settings, explicit_options(cls, args)


def train_command(args: argparse.Namespace, cls: type[TrainSettings], app: str,
                  make_task: Callable[[TrainSettings, object], Task]) -> int:
    """``rnnkit <app> train``: returns the exit status (130 when interrupted).

    ``make_task(settings, checkpoint)`` builds the task from the run's settings (the
    checkpoint's on --resume; ``checkpoint`` is (config, arrays, meta) or None).
    """
    given, explicit = parse_settings(args, cls)
    settings, ckpt = resume_settings(args.out, app, given, explicit, args.resume, args.overwrite)
    task = make_task(settings, ckpt)
    line = task.describe()
    n = task.model.num_parameters()
    print(f"rnnkit {app} train: {line}{', ' if line else ''}{n:,} parameters", file=sys.stderr)
    summary = fit(task, settings, args.out, checkpoint=ckpt, max_time=args.max_time,
                  fit_to_time=args.max_time is not None and "steps" not in explicit,
                  progress=not args.quiet)
    print(report(summary, task, args.out), file=sys.stderr)
    return 130 if summary["stopped"] == "interrupted" else 0


def report(summary: dict, task: Task, out) -> str:
    """The last line of a training command."""
    how = {"max-time": " (--max-time reached; --resume continues)",
           "interrupted": " (interrupted; --resume continues)",
           "early-stopped": " (early stop: no better validation)"}.get(summary["stopped"], "")
    best = summary["best"]
    shown = task.show(task.metric, best) if math.isfinite(best) else "n/a"
    return (f"step {summary['step']} of {summary['steps']}{how}: best validation {task.metric} "
            f"{shown} at step {summary['best_step']}, {summary['steps_per_second']:.2f} steps/s; "
            f"checkpoint in {out}")
