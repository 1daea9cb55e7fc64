"""The ``train`` verb every application shares: one set of flags, one command body.

``add_train_options(parser, Settings)`` adds the run options (``--out --overwrite --resume
--max-time --quiet --diagnose``) and one option per field of the application's settings dataclass (a
subclass of `TrainSettings`, so the shared flags have the same names, help and validation in
every application).  ``train_command`` is the body of ``rnnkit <app> train``: it validates the
flags, checks ``--out`` and a checkpoint to resume before any data is read, builds the task,
trains it with `fit` and reports.  Under MPI (``mpiexec -n K rnnkit <app> train``) every rank
runs it: the ranks check that they were given the same command, rank 0 alone reads ``--out``
and prints, and every rank reads the data itself.
"""
from __future__ import annotations

import argparse
import math
import sys
from typing import Callable

from .diagnose import Diagnose
from .engine import Callback, fit, resume_settings
from .mpi import Group, world
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
    p.add_argument("--diagnose", action="store_true",
                   help="measure the gradient flow through time at the start and at every "
                        "evaluation: diagnostics.jsonl and gradient_flow.png in --out, a warning "
                        "naming the layer when gradients vanish or explode (changes no number "
                        "of the training; docs/diagnostics.md)")
    add_options(p, settings, skip)


def run_callbacks(args: argparse.Namespace) -> list[Callback]:
    """The callbacks the run options ask for: `Diagnose` with ``--diagnose``."""
    return [Diagnose()] if getattr(args, "diagnose", False) else []


def parse_settings(args: argparse.Namespace, cls: type[TrainSettings]):
    """-> (settings, names given explicitly); every value checked (ValueError names the flag)."""
    settings = from_options(cls, args)
    settings.check()
    check_max_time(args.max_time)
    return settings, explicit_options(cls, args)


def start_run(args: argparse.Namespace, cls: type[TrainSettings], app: str):
    """-> (group, settings, names given explicitly, checkpoint or None) of a ``train`` verb.

    Under MPI the ranks must have been given the same options, and rank 0 alone checks
    ``--out`` (and reads the checkpoint to resume), for every rank.
    """
    given, explicit = parse_settings(args, cls)
    group = world()
    group.same("options", {f"--{k.replace('_', '-')}": v for k, v in sorted(vars(args).items())
                           if not callable(v)})
    group.divides(given.batch)
    settings, ckpt = group.on_root(resume_settings, args.out, app, given, explicit, args.resume,
                                   args.overwrite)
    return group, settings, explicit, ckpt


def train_command(args: argparse.Namespace, cls: type[TrainSettings], app: str,
                  make_task: Callable[[TrainSettings, object], Task]) -> int:
    """``rnnkit <app> train``: returns the exit status (130 when interrupted).

    ``make_task(settings, checkpoint)`` builds the task from the run's settings (the
    checkpoint's on --resume; ``checkpoint`` is (config, arrays, meta) or None).
    """
    group, settings, explicit, ckpt = start_run(args, cls, app)
    task = group.together(make_task, settings, ckpt)
    say = _say(group)
    line = task.describe()
    n = task.model.num_parameters()
    say(f"rnnkit {app} train: {line}{', ' if line else ''}{n:,} parameters"
        + (f", {group.size} ranks" if group.size > 1 else ""))
    summary = fit(task, settings, args.out, checkpoint=ckpt, max_time=args.max_time,
                  fit_to_time=args.max_time is not None and "steps" not in explicit,
                  callbacks=run_callbacks(args), progress=not args.quiet)
    say(report(summary, task, args.out))
    return 130 if summary["stopped"] == "interrupted" else 0


def _say(group: Group) -> Callable[[str], None]:
    """A print to stderr on rank 0, the only rank that prints."""
    def say(line: str) -> None:
        if group.root:
            print(line, file=sys.stderr)
    return say


def report(summary: dict, task: Task, out) -> str:
    """The last line of a training command."""
    how = {"max-time": " (--max-time reached; --resume continues)",
           "interrupted": " (interrupted; --resume continues)",
           "early-stopped": " (early stop: no better validation)"}.get(summary["stopped"], "")
    best = summary["best"]
    if math.isfinite(best):
        kept = (f"best validation {task.metric} {task.show(task.metric, best)} at step "
                f"{summary['best_step']}")
    elif not summary["run"].history["eval_step"]:
        kept = "stopped before the first validation"
    else:
        kept = "no validation metric: the last parameters are the model"
    return (f"step {summary['step']} of {summary['steps']}{how}: {kept}, "
            f"{summary['steps_per_second']:.2f} steps/s; checkpoint in {out}")
