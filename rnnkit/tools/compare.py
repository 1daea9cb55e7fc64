"""``rnnkit compare <app> [data flags] --cells rnn,gru,lstm --out DIR``: which recurrent cell to
use for a task, by measurement, done the way the comparative studies do it (Chung et al. 2014;
Jozefowicz et al. 2015; Greff et al. 2017): equal parameter counts, the learning rate tuned per
cell, the LSTM forget-gate bias at 1, several seeds.

1. Sizes: every cell gets the hidden size whose parameter count is nearest ``--params`` (within
   5%; default: the app's default model), or ``--hidden`` for all.
2. A learning-rate range test per cell (rates growing exponentially over a short run, fast.ai's
   ``lr_find``): ``--lrs`` rates (factor 3 apart) around a quarter of the rate of the lowest
   smoothed loss are the cell's candidates (or ``--lr`` rates for every cell).
3. Successive halving over (cell, rate) x ``--seeds`` seeds within ``--budget`` seconds: each
   rung trains the better half of the previous one twice as long, from its checkpoints; the
   plan is fitted to the budget from the speeds the range tests measured.
4. The winner's run folder (``DIR/winner``) is a normal trained run: ``rnnkit.load`` works on it.
   The report: ``report.md`` (the table and why the winner won), ``compare.json``,
   ``compare.png`` (validation metric against training time for every candidate, rungs marked)
   and ``lr_range.png``.

Trials run in ``--workers`` local processes, or as Ray tasks with ``--ray ADDRESS|auto``; the
application's `TaskSpec` (``TASK`` in its commands.py) builds each trial's task.
"""
from __future__ import annotations

import argparse
import dataclasses
import importlib
import math
import os
import shutil
import sys
import time
from pathlib import Path

from ..train.settings import add_options, from_options
from .compare_race import (Config, Plan, Race, best_until, install, lr_grid, match_hidden,
                           plan_race, size_function, suggest_lr)
from .compare_trial import MEASURES, best_params, pack, resolve

# app -> its TaskSpec; an app still being written (no module yet) is left out of the CLI
APPS = {
    "lm": "rnnkit.apps.lm.commands:TASK",
    "forecast": "rnnkit.apps.forecast.commands:TASK",
    "translate": "rnnkit.apps.seq2seq.commands:TASK",
    "asr": "rnnkit.apps.asr.commands:TASK",
    "classify": "rnnkit.apps.classify.commands:TASK",
}
CELLS = ("rnn", "gru", "lstm")
CONTROLLED = ("cell", "hidden", "lr", "min_lr", "steps")  # set by the race
PROBE = (16, 32)  # hidden sizes whose parameter shapes give a model's size at any hidden size
OUTPUTS = ("trials", "winner", "compare.json", "report.md", "compare.png", "lr_range.png")


def register(sub: argparse._SubParsersAction) -> None:
    cmp = sub.add_parser(
        "compare", help="choose RNN, GRU or LSTM for a task by measurement",
        description="Race the cells at equal parameter counts, each at its own learning rate "
                    "(a range test), over several seeds, by successive halving within a time "
                    "budget; the winner's run folder is a normal trained run.")
    apps = cmp.add_subparsers(dest="compare_app", required=True, metavar="APP")
    for app, path in APPS.items():
        module, _, attr = path.partition(":")
        try:
            spec = getattr(importlib.import_module(module), attr, None)
        except ModuleNotFoundError as exc:
            if exc.name is None or not module.startswith(exc.name):
                raise
            continue
        if spec is None:  # the app has no TaskSpec yet
            continue
        p = apps.add_parser(app, help=f"compare cells on the {app} task ({spec.about})",
                            description=f"The task: {spec.about}.")
        spec.data_options(p)
        add_options(p, spec.settings, skip=CONTROLLED + spec.skip)
        _options(p)
        p.set_defaults(run=cmd_compare, spec_path=path)


def _options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("compare")
    g.add_argument("--out", required=True, help="folder for the trials, the winner and the report")
    g.add_argument("--overwrite", action="store_true", help="replace a comparison already in --out")
    g.add_argument("--cells", default="rnn,gru,lstm", help="cells to race (default: rnn,gru,lstm)")
    size = g.add_mutually_exclusive_group()
    size.add_argument("--params", type=int, default=None, metavar="N",
                      help="parameters of every model, matched within 5%% by choosing each cell's "
                           "hidden size (default: those of the app's default model)")
    size.add_argument("--hidden", type=int, default=None, metavar="N",
                      help="the same hidden size for every cell instead (unequal parameters)")
    g.add_argument("--budget", type=float, default=600.0, metavar="SECONDS",
                   help="wall-clock seconds for everything (default: 600)")
    g.add_argument("--seeds", type=int, default=2, help="seeds per candidate (default: 2)")
    g.add_argument("--lrs", type=int, default=3,
                   help="learning rates per cell around its range test's (default: 3)")
    g.add_argument("--lr", dest="rates", default=None, metavar="RATES",
                   help="comma-separated learning rates for every cell instead")
    g.add_argument("--lr-range", default="1e-5,1", metavar="LO,HI",
                   help="rates the range test sweeps (default: 1e-5,1)")
    g.add_argument("--range-steps", type=int, default=100,
                   help="steps of each range test (default: 100)")
    g.add_argument("--rung-steps", type=int, default=None, metavar="N",
                   help="steps of the first rung (default: fitted to the budget); give the "
                        "number a report shows to repeat a comparison exactly")
    g.add_argument("--workers", type=int, default=None,
                   help="trials at a time (default: the number of cores, or the Ray cluster's "
                        "CPUs); 1 runs them in this process")
    g.add_argument("--ray", default=None, metavar="ADDRESS",
                   help="run the trials on the Ray cluster at ADDRESS ('auto': the one this "
                        "machine belongs to, e.g. after `ray start --head`); needs rnnkit[ray]")
    g.add_argument("--quiet", action="store_true", help="no progress lines")


# ----------------------------------------------------------------------------- checks
def _rates(text: str, flag: str) -> list[float]:
    try:
        rates = [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ValueError(f"{flag} must be comma-separated numbers, got {text!r}") from None
    if not rates or not all(math.isfinite(r) and r > 0 for r in rates):
        raise ValueError(f"{flag} must be positive numbers, got {text!r}")
    return rates


def _check(args: argparse.Namespace) -> list[str]:
    """The cells, after checking every compare option (ValueError names the flag)."""
    cells = [c.strip() for c in args.cells.split(",") if c.strip()]
    unknown = [c for c in cells if c not in CELLS]
    if not cells or unknown or len(set(cells)) != len(cells):
        raise ValueError(f"--cells must list distinct cells among {','.join(CELLS)}, "
                         f"got {args.cells!r}")
    if not (math.isfinite(args.budget) and args.budget > 0):
        raise ValueError(f"--budget must be a number of seconds > 0, got {args.budget}")
    for flag, value, low in (("--seeds", args.seeds, 1), ("--lrs", args.lrs, 1),
                             ("--params", args.params, 1), ("--hidden", args.hidden, 1),
                             ("--range-steps", args.range_steps, 10),
                             ("--rung-steps", args.rung_steps, 1), ("--workers", args.workers, 1)):
        if value is not None and value < low:
            raise ValueError(f"{flag} must be >= {low}, got {value}")
    lo_hi = _rates(args.lr_range, "--lr-range")
    if len(lo_hi) != 2 or lo_hi[0] >= lo_hi[1]:
        raise ValueError(f"--lr-range must be LO,HI with LO < HI, got {args.lr_range!r}")
    if args.rates is not None:
        _rates(args.rates, "--lr")
    return cells


def _check_out(out: Path, overwrite: bool) -> bool:
    """Whether ``out`` holds a comparison to replace (refused without ``overwrite``)."""
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} exists and is not a folder")
    held = (out / "compare.json").exists() or (out / "trials").exists()
    if held and not overwrite:
        raise ValueError(f"{out} already holds a comparison: pass --overwrite to replace it, "
                         "or choose another --out")
    return held


def _prepare_out(out: Path, overwrite: bool) -> None:
    if _check_out(out, overwrite):
        for name in OUTPUTS:
            target = out / name
            if target.is_dir():
                shutil.rmtree(target)
            elif target.exists():
                target.unlink()
    (out / "trials").mkdir(parents=True, exist_ok=True)


def base_eval_every(args: argparse.Namespace) -> int | None:
    """--eval-every when given (the app's default is for a train command, not for a race)."""
    return getattr(args, "eval_every", None)


def _plain(args: argparse.Namespace) -> dict:
    """The parsed flags a worker needs to build the task (JSON-like values only)."""
    ok = (str, int, float, bool, type(None))
    return {k: v for k, v in vars(args).items()
            if isinstance(v, ok) or (isinstance(v, list) and all(isinstance(x, ok) for x in v))}


# ----------------------------------------------------------------------------- sizes
def _sizes(spec, base, args, cells: list[str], log) -> tuple[dict, int | None]:
    """{cell: hidden} and the parameter target (None with --hidden)."""
    if args.hidden is not None:
        return {c: args.hidden for c in cells}, None
    counts = {}
    for cell in dict.fromkeys([*cells, base.cell]):
        shapes = []
        for h in PROBE:
            task = spec.make_task(dataclasses.replace(base, cell=cell, hidden=h), args)
            shapes.append({n: p.shape for n, p, _ in task.model.named_parameters()})
        counts[cell] = size_function(shapes[0], PROBE[0], shapes[1], PROBE[1])
    target = args.params or counts[base.cell](base.hidden)
    hidden = {c: match_hidden(counts[c], target, c) for c in cells}
    log("sizes for {:,} parameters: ".format(target) + ", ".join(
        f"{c} hidden {h} ({counts[c](h):,})" for c, h in hidden.items()))
    return hidden, target


# ----------------------------------------------------------------------------- the command
def cmd_compare(args: argparse.Namespace) -> int:
    """``rnnkit compare <app> ...``: 0 with a winner; an error when no rung finished."""
    result = compare(args)
    if result["winner"] is None:
        raise ValueError(f"no rung finished within --budget {args.budget:g}: raise it (report "
                         f"in {args.out})")
    return 0


def compare(args: argparse.Namespace, executor=None, clock=time.time) -> dict:
    """The comparison the parsed ``args`` ask for; the report's contents.  ``executor`` and
    ``clock`` (what the budget counts) default to those of the flags and the wall clock."""
    from .compare_exec import Processes, RayCluster, Serial, cores
    from .compare_report import write_report

    cells = _check(args)
    spec = resolve(args.spec_path)
    base = from_options(spec.settings, args)
    base.check()
    out = Path(args.out)
    _check_out(out, args.overwrite)
    log = (lambda m: None) if args.quiet else (lambda m: print(m, file=sys.stderr, flush=True))
    start = clock()
    deadline = start + args.budget
    hidden, target = _sizes(spec, base, args, cells, log)  # builds tasks: checks the data
    if executor is None:
        if args.ray is not None:
            executor = RayCluster(args.ray, args.workers)
        elif (args.workers or cores()) == 1:
            executor = Serial(clock)
        else:
            executor = Processes(args.workers or cores())
    log(f"rnnkit compare {spec.app}: trials in {executor.where}")
    try:
        _prepare_out(out, args.overwrite)  # nothing is written before every check passed
        common = {"spec": args.spec_path, "args": _plain(args), "deadline": deadline,
                  "cwd": os.getcwd()}
        ranges = _range_tests(executor, base, args, cells, hidden, common, log)
        configs, costs = _configs(args, cells, hidden, ranges, target)
        plan = plan_race(costs, args.seeds, executor.workers, deadline - clock(),
                         args.rung_steps, base_eval_every(args))
        log(f"plan: {' -> '.join(str(n) for n, _ in plan.rungs)} configurations at steps "
            f"{', '.join(str(s) for _, s in plan.rungs)} (x {args.seeds} seeds), evaluated "
            f"every {plan.eval_every} steps, about {plan.seconds:.0f} s (--rung-steps "
            f"{plan.rung_steps} --eval-every {plan.eval_every} repeat it)")
        race = _race(executor, base, args, configs, plan, ranges, common, out, log)
    finally:
        executor.close()
    best, rung = race.winner()
    winner = _install_winner(spec, base, args, race, best, rung, out) if best else None
    report = write_report(out, spec=spec, args=args, cells=cells, hidden=hidden, target=target,
                          ranges=ranges, race=race, plan=plan, winner=winner, rung=rung,
                          seconds=clock() - start, where=executor.where)
    print(report["table"])
    log(report["why"])
    if winner is not None:
        log(f"winner: {winner['folder']} (rnnkit.load works on it); report: "
            f"{out / 'report.md'}")
    return {**report, "winner": winner, "race": race, "plan": plan, "ranges": ranges,
            "hidden": hidden}


def _range_tests(executor, base, args, cells, hidden, common, log) -> dict:
    lo, hi = _rates(args.lr_range, "--lr-range")
    jobs = [{**common, "kind": "range", "lo": lo, "hi": hi,
             "settings": dataclasses.asdict(dataclasses.replace(
                 base, cell=c, hidden=hidden[c], lr=lo, min_lr=0.0, warmup=0,
                 steps=args.range_steps, eval_every=args.range_steps))} for c in cells]
    log(f"learning-rate range tests: {args.range_steps} steps from {lo:g} to {hi:g}, "
        + ", ".join(f"{c} hidden {hidden[c]}" for c in cells))
    ranges = {}
    for cell, res in zip(cells, executor.run(jobs)):
        if res["status"] == "ok":
            try:
                res["suggestion"] = suggest_lr(res["lrs"], res["losses"])
            except ValueError as exc:
                res.update(status="crashed", error=str(exc))
        ranges[cell] = res
        if res["status"] == "ok":
            log(f"range test {cell}: {res['params']:,} parameters, {res['steps_per_second']:.2f} "
                f"steps/s, lowest loss at lr {res['suggestion']['lr_min_loss']:.2g} -> lr "
                f"{res['suggestion']['lr']:.2g}"
                + (" (the lowest loss is at the end of --lr-range: raise it)"
                   if res["suggestion"]["at_end"] else ""))
        else:
            log(f"range test {cell}: {res['status']}: {res['error']}")
    return ranges


def _configs(args, cells, hidden, ranges, target) -> tuple[list[Config], list[dict]]:
    configs, costs = [], []
    fixed = _rates(args.rates, "--lr") if args.rates else None
    for cell in cells:
        r = ranges[cell]
        if r["status"] != "ok":
            configs.append(Config(cell, hidden[cell], math.nan,
                                  failed=f"range test {r['status']}: {r['error']}"))
            continue
        if target is not None and abs(r["params"] - target) > 0.05 * target:
            raise ValueError(f"internal: the {cell} model has {r['params']:,} parameters, not "
                             f"about {target:,}")
        for lr in fixed or lr_grid(r["suggestion"]["lr"], args.lrs):
            configs.append(Config(cell, hidden[cell], lr))
            costs.append({"step": 1 / r["steps_per_second"], "eval": r["eval_seconds"],
                          "setup": r["build_seconds"]})
    if not costs:
        raise ValueError("every cell failed its range test: "
                         + "; ".join(f"{c.cell}: {c.failed}" for c in configs))
    return configs, costs


def _race(executor, base, args, configs, plan: Plan, ranges, common, out: Path, log) -> Race:
    ratio = base.min_lr / base.lr  # the decay keeps the app's proportion
    warmup = base.warmup if "warmup" in vars(args) and args.warmup is not None \
        else min(base.warmup, plan.rung_steps // 4)

    def job(c: Config, seed: int, steps: int) -> dict:
        s = dataclasses.replace(base, cell=c.cell, hidden=c.hidden, lr=c.lr, min_lr=c.lr * ratio,
                                seed=seed, steps=steps, eval_every=plan.eval_every,
                                warmup=warmup)
        return {**common, "kind": "trial", "settings": dataclasses.asdict(s),
                "total": plan.total, "measures": dict(MEASURES)}

    def run(jobs):
        def done(i, res):
            s = jobs[i]["settings"]
            what = f"step {res.get('step')}" if res["status"] == "ok" else res["status"]
            log(f"  {s['cell']} lr {s['lr']:.2g} seed {s['seed']}: {what}"
                + (f": {res['error']}" if res.get("error") else ""))
        return executor.run(jobs, done)

    seeds = [base.seed + k for k in range(args.seeds)]
    higher = next(r["higher"] for r in ranges.values() if r["status"] == "ok")
    race = Race([c for c in configs if c.failed is None], seeds, plan, out / "trials", job, run,
                higher=higher, log=log)
    race.run()
    race.configs = configs  # failed cells stay in the report
    return race


def _install_winner(spec, base, args, race: Race, best: Config, rung: int, out: Path) -> dict:
    """Copy the winner's best seed into DIR/winner (or let the app write its run folder)."""
    steps = race.plan.rungs[rung][1]
    scores = [(best_until(race.trials[best.trial(s)]["evals"], steps, race.higher), s)
              for s in race.seeds]
    seed = sorted(scores, key=lambda x: ((-x[0] if race.higher else x[0])
                                         if math.isfinite(x[0]) else math.inf, x[1]))[0][1]
    trial = out / "trials" / best.trial(seed)
    folder = out / "winner"
    if spec.save_run is None:
        install(pack(trial), folder)
    else:
        s = dataclasses.replace(base, cell=best.cell, hidden=best.hidden, lr=best.lr, seed=seed)
        task = spec.make_task(s, args)
        task.model.load_state_dict(best_params(trial))
        shutil.rmtree(folder, ignore_errors=True)
        spec.save_run(task, s, args, folder)
    return {"config": best.name, "cell": best.cell, "hidden": best.hidden, "lr": best.lr,
            "seed": seed, "trial": str(trial), "folder": str(folder)}
