"""``rnnkit diagnose sweep``: where does each cell stop learning a long-range dependency?

The classic experiment of the vanishing-gradient literature, measured rather than assumed: every
cell (``--cells``) is trained on a long-range problem (``--task``, `rnnkit.tools.synthetic`) at
every sequence length (``--lengths``) with the same parameter count (the LSTM's at ``--hidden``;
the other cells' hidden sizes matched), the same step budget and the same optimizer, for a few
seeds, on the shared training loop.  Each run reports its validation loss against the problem's
baseline and the gradient horizon (`rnnkit.nn.probe`; the last-step probe of
`rnnkit.train.diagnose.measure`) of the initial and of the trained parameters.  A length counts
as solved when at least half the seeds end below ``--solved`` x the baseline; the output states
the budget and the initialisation, on which the answer depends.  Runs go to ``--jobs``
processes (one BLAS thread each); the results do not depend on the number of processes.
"""
from __future__ import annotations

import argparse
import concurrent.futures
import json
import math
import os
import sys
import time

import numpy as np

from ..train.diagnose import measure
from ..train.engine import fit
from ..data.files import check_file_output
from ..train.settings import TrainSettings
from .synthetic import (CELLS, INITS, PROBLEMS, ProblemTask, baseline, matched_hidden, parameters,
                        steps_of)

DESCRIPTION = {"adding": "the adding problem (MSE; predicting 1 scores ~0.167)",
               "copy": "the copy task (cross-entropy per step; baseline 10 log 8 / (T + 20))",
               "temporal-order": "the temporal-order problem (cross-entropy; guessing scores log 4)"}
INIT_TEXT = {"default": "torch's uniform(-1/sqrt(H), 1/sqrt(H))",
             "orthogonal": "orthogonal W_hh per gate", "irnn": "IRNN (relu RNN, W_hh = I, b = 0)",
             "forget-bias": "LSTM forget-gate bias 1"}


def register(sub: argparse._SubParsersAction) -> None:
    d = sub.add_parser("diagnose", help="vanishing and exploding gradients: the classic sweep")
    verbs = d.add_subparsers(dest="verb", required=True, metavar="{sweep}")
    p = verbs.add_parser(
        "sweep", help="train each cell on a long-range problem at several lengths",
        description=__doc__.split("\n\n")[1].replace("``", ""))
    p.add_argument("--task", choices=PROBLEMS, default="adding", help="the problem (default: adding)")
    p.add_argument("--cells", default="rnn,gru,lstm", help="comma-separated cells (default: rnn,gru,lstm)")
    p.add_argument("--lengths", default="10,25,50,100,200",
                   help="comma-separated sequence lengths (default: 10,25,50,100,200)")
    p.add_argument("--seeds", type=int, default=3, help="seeds per cell and length (default: 3)")
    p.add_argument("--steps", type=int, default=2000, help="optimizer steps per run (default: 2000)")
    p.add_argument("--batch", type=int, default=32, help="sequences per step (default: 32)")
    p.add_argument("--hidden", type=int, default=24,
                   help="the LSTM's hidden size; the other cells get its parameter count (default: 24)")
    p.add_argument("--lr", type=float, default=1e-2, help="peak learning rate, Adam (default: 0.01)")
    p.add_argument("--clip", type=float, default=1.0, help="global-norm clipping (default: 1)")
    p.add_argument("--init", default="default",
                   help="comma-separated: default, orthogonal (W_hh per gate), irnn (the rnn cell "
                        "becomes an IRNN: relu, W_hh = I), forget-bias (LSTM forget bias 1) "
                        "(default: default)")
    p.add_argument("--solved", type=float, default=0.1,
                   help="solved: validation loss below this fraction of the baseline (default: 0.1)")
    p.add_argument("--jobs", type=int, default=None,
                   help="processes running the runs (default: the CPU cores, at most 4)")
    p.add_argument("--plot", default="sweep.png", help="the figure (default: sweep.png; '' for none)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    p.add_argument("--quiet", action="store_true", help="no line per finished run")
    p.set_defaults(run=cmd_sweep)


def _list(text: str, flag: str, kind=str) -> list:
    items = [t.strip() for t in text.split(",") if t.strip()]
    if not items:
        raise ValueError(f"{flag} is empty")
    try:
        return [kind(t) for t in items]
    except ValueError:
        raise ValueError(f"{flag} must be comma-separated whole numbers, got {text!r}") from None


def options(args: argparse.Namespace) -> dict:
    """The sweep's checked options (ValueError naming the flag)."""
    cells = _list(args.cells, "--cells")
    bad = [c for c in cells if c not in CELLS]
    if bad:
        raise ValueError(f"--cells: unknown cell {bad[0]!r} (choose from {', '.join(CELLS)})")
    init = tuple(_list(args.init, "--init"))
    bad = [i for i in init if i not in INITS]
    if bad:
        raise ValueError(f"--init: unknown option {bad[0]!r} (choose from {', '.join(INITS)})")
    lengths = _list(args.lengths, "--lengths", int)
    least = {"adding": 2, "copy": 1, "temporal-order": 10}[args.task]
    if min(lengths) < least:
        raise ValueError(f"--lengths: the {args.task} problem needs lengths >= {least}, got "
                         f"{min(lengths)}")
    for flag, value in (("--seeds", args.seeds), ("--steps", args.steps), ("--batch", args.batch),
                        ("--hidden", args.hidden)):
        if value < 1:
            raise ValueError(f"{flag} must be >= 1, got {value}")
    for flag, value in (("--lr", args.lr), ("--clip", args.clip), ("--solved", args.solved)):
        if not (math.isfinite(value) and value > 0):
            raise ValueError(f"{flag} must be > 0, got {value}")
    jobs = args.jobs if args.jobs is not None else min(os.cpu_count() or 1, 4)
    if jobs < 1:
        raise ValueError(f"--jobs must be >= 1, got {jobs}")
    if args.plot:
        check_file_output(args.plot, "--plot")
    target = parameters("lstm", args.hidden, args.task)
    hidden = {c: matched_hidden(c, target, args.task) for c in cells}
    return {"task": args.task, "cells": cells, "lengths": sorted(set(lengths)), "seeds": args.seeds,
            "steps": args.steps, "batch": args.batch, "lr": args.lr, "clip": args.clip,
            "init": init, "solved": args.solved, "jobs": jobs, "hidden": hidden,
            "params": {c: parameters(c, h, args.task) for c, h in hidden.items()}}


def settings_of(o: dict, cell: str, seed: int) -> TrainSettings:
    """The training settings of one run: Adam, warm-up then cosine decay to lr / 10, clipping."""
    return TrainSettings(cell=cell, hidden=o["hidden"][cell], layers=1, dropout=0.0,
                         batch=o["batch"], lr=o["lr"], min_lr=o["lr"] / 10,
                         warmup=min(50, o["steps"] // 10), steps=o["steps"],
                         eval_every=o["steps"], clip=o["clip"], val_fraction=0.0, seed=seed)


def _horizon(flow: dict) -> tuple[int | None, bool, float]:
    d = flow["modules"][0]["directions"]["l0"]
    return d["horizon"], d["horizon_full"], d["decay"]


def run_one(o: dict, cell: str, T: int, seed: int) -> dict:
    """Train one cell at one length for one seed; -> its result (loss, horizons, seconds)."""
    start = time.monotonic()
    task = ProblemTask(o["task"], T, cell, o["hidden"][cell], o["init"], seed, o["batch"])
    probe = (task.val[0][:64], task.val[1][:64])
    h0, full0, _ = _horizon(measure(task, probe))
    summary = fit(task, settings_of(o, cell, seed), None, progress=False)
    h, full, decay = _horizon(measure(task, probe))
    loss, base = float(summary["last"]["loss"]), baseline(o["task"], T)
    return {"cell": cell, "length": T, "seed": seed, "loss": loss, "baseline": base,
            "ratio": loss / base, "solved": bool(loss < o["solved"] * base),
            "horizon_init": h0, "horizon_init_full": full0, "horizon": h, "horizon_full": full,
            "decay": decay, "steps": steps_of(o["task"], T),
            "seconds": time.monotonic() - start}


def _one_thread() -> None:
    """In each worker: BLAS single-threaded (the runs are the parallelism)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return
    threadpool_limits(1, user_api="blas")


def sweep(o: dict, say=None) -> list[dict]:
    """Every (cell, length, seed) run, the longest first; -> results in (cell, length, seed) order."""
    jobs = [(c, T, s) for T in sorted(o["lengths"], reverse=True) for c in o["cells"]
            for s in range(o["seeds"])]
    results = []
    if o["jobs"] == 1:
        for c, T, s in jobs:
            results.append(run_one(o, c, T, s))
            if say:
                say(_line(results[-1]))
    else:
        with concurrent.futures.ProcessPoolExecutor(o["jobs"], initializer=_one_thread) as pool:
            futures = [pool.submit(run_one, o, c, T, s) for c, T, s in jobs]
            try:
                for f in concurrent.futures.as_completed(futures):
                    results.append(f.result())
                    if say:
                        say(_line(results[-1]))
            except BaseException:
                for f in futures:
                    f.cancel()
                raise
    order = {c: k for k, c in enumerate(o["cells"])}
    return sorted(results, key=lambda r: (order[r["cell"]], r["length"], r["seed"]))


def _shown(h, full) -> str:
    return "-" if h is None else f"{h:g}+" if full else f"{h:g}"


def _line(r: dict) -> str:
    return (f"{r['cell']} T={r['length']} seed {r['seed']}: loss {r['loss']:.4g} "
            f"({r['ratio']:.3g} x baseline{', solved' if r['solved'] else ''}), horizon "
            f"{_shown(r['horizon'], r['horizon_full'])} (at init "
            f"{_shown(r['horizon_init'], r['horizon_init_full'])}), {r['seconds']:.1f} s")


def _median_horizon(rows: list[dict], key: str) -> tuple[float, bool]:
    """The median horizon of some runs (a run without gradient at the loss counts 0), and
    whether it is the whole sequence (more than half the runs reached the start)."""
    hs = [r[key] if r[key] is not None else 0 for r in rows]
    median = float(np.median(hs))
    return median, median >= rows[0]["steps"] and sum(r[f"{key}_full"] for r in rows) * 2 > len(rows)


def table(o: dict, results: list[dict]) -> dict:
    """Per cell and length: median loss / baseline, seeds solved, median horizons; per cell the
    longest length solved (by at least half the seeds)."""
    cells = {}
    for c in o["cells"]:
        rows = {}
        for T in o["lengths"]:
            rs = [r for r in results if r["cell"] == c and r["length"] == T]
            if not rs:
                continue
            hi, hi_full = _median_horizon(rs, "horizon_init")
            h, h_full = _median_horizon(rs, "horizon")
            solved = sum(r["solved"] for r in rs)
            rows[T] = {"ratio": float(np.median([r["ratio"] for r in rs])),
                       "ratios": [r["ratio"] for r in rs], "solved": solved, "seeds": len(rs),
                       "horizon_init": hi, "horizon_init_full": hi_full, "horizon": h,
                       "horizon_full": h_full}
        done = [T for T, row in rows.items() if 2 * row["solved"] >= row["seeds"]]
        cells[c] = {"hidden": o["hidden"][c], "params": o["params"][c], "lengths": rows,
                    "longest_solved": max(done) if done else None}
    return cells


def header(o: dict) -> list[str]:
    """What the result depends on: problem, sizes, budget, initialisation, the solved criterion."""
    sizes = ", ".join(f"{c} {o['hidden'][c]} hidden ({o['params'][c]:,} parameters)" for c in o["cells"])
    warm = min(50, o["steps"] // 10)
    return [f"rnnkit diagnose sweep: {DESCRIPTION[o['task']]}",
            f"  cells: {sizes}",
            f"  budget: {o['steps']} steps of {o['batch']} sequences per run, Adam lr {o['lr']:g} "
            f"(warm-up {warm}, cosine to {o['lr'] / 10:g}), clip {o['clip']:g}, float32; "
            f"seeds 0-{o['seeds'] - 1}",
            f"  init: {'; '.join(INIT_TEXT[i] for i in o['init'])}",
            f"  solved: validation loss (256 held-out sequences) below {o['solved']:g} x the "
            "baseline in at least half the seeds; horizon: steps back from the loss over which "
            "||dL/dh_t|| stays above 1e-3 of its value there (median; + = the whole sequence)"]


def format_table(o: dict, cells: dict) -> str:
    seeds = {(c, T): " ".join(f"{x:.2g}" for x in row["ratios"])
             for c, info in cells.items() for T, row in info["lengths"].items()}
    w = max(len(v) for v in seeds.values()) + 12
    lines = header(o) + ["", f"{'cell':<5} {'length':>6}  {'loss / baseline':<{w}} {'solved':>6}  "
                             f"{'horizon at init':>15}  {'horizon trained':>15}",
                         f"{'':<13}median (seeds)"]
    for c, info in cells.items():
        for T, row in info["lengths"].items():
            ratio = f"{row['ratio']:<9.2g} ({seeds[c, T]})"
            lines.append(f"{c:<5} {T:>6}  {ratio:<{w}} {row['solved']:>4}/{row['seeds']:<1}  "
                         f"{_shown(row['horizon_init'], row['horizon_init_full']):>15}  "
                         f"{_shown(row['horizon'], row['horizon_full']):>15}")
    lines.append("")
    lines.append("longest length solved: " + ", ".join(
        f"{c} {info['longest_solved'] if info['longest_solved'] is not None else 'none'}"
        for c, info in cells.items()) + f" (of {', '.join(map(str, o['lengths']))})")
    return "\n".join(lines)


def plot(path: str, o: dict, cells: dict, results: list[dict]) -> bool:
    """Loss / baseline against length (every seed a dot, medians joined) and the horizon
    against length (trained solid, initial dashed, the whole sequence dotted)."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    from ..train.progress import save_figure

    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4.3), layout="constrained")
    colors = dict(zip(o["cells"], plt.rcParams["axes.prop_cycle"].by_key()["color"]))
    for c, info in cells.items():
        Ts = list(info["lengths"])
        rows = list(info["lengths"].values())
        name = "rnn (IRNN)" if c == "rnn" and "irnn" in o["init"] else c
        label = f"{name} ({info['params']:,} params)"
        a.plot(Ts, [r["ratio"] for r in rows], marker="o", color=colors[c], label=label)
        pts = [(r["length"], r["ratio"]) for r in results if r["cell"] == c]
        a.scatter([p[0] for p in pts], [p[1] for p in pts], s=12, color=colors[c], alpha=0.5)
        b.plot(Ts, [r["horizon"] for r in rows], marker="o", color=colors[c], label=f"{c} trained")
        b.plot(Ts, [r["horizon_init"] for r in rows], linestyle="--", color=colors[c], alpha=0.6,
               label=f"{c} at init")
    a.axhline(o["solved"], color="gray", linestyle=":", label=f"solved (< {o['solved']:g})")
    a.set_xscale("log")
    a.set_yscale("log")
    a.set_xlabel("sequence length T")
    a.set_ylabel("validation loss / baseline")
    a.legend(fontsize=8)
    a.grid(alpha=0.3, which="both")
    Ts = o["lengths"]
    b.plot(Ts, [steps_of(o["task"], T) for T in Ts], color="gray", linestyle=":",
           label="the whole sequence")
    b.set_xscale("log")
    b.set_yscale("log")
    b.set_xlabel("sequence length T")
    b.set_ylabel("gradient horizon (steps, median)")
    b.legend(fontsize=7, ncol=2)
    b.grid(alpha=0.3, which="both")
    inits = ", ".join(o["init"])
    fig.suptitle(f"rnnkit diagnose sweep --task {o['task']}: {o['steps']} steps x {o['batch']}, "
                 f"Adam {o['lr']:g}, init {inits}, {o['seeds']} seeds", fontsize=10)
    save_figure(fig, path)
    return True


def cmd_sweep(args: argparse.Namespace) -> int:
    o = options(args)
    say = None if args.quiet else (lambda line: print(line, file=sys.stderr, flush=True))
    if say:
        for line in header(o):
            say(line)
    start = time.monotonic()
    results = sweep(o, say)
    cells = table(o, results)
    if args.json:
        print(json.dumps({"options": {k: (list(v) if isinstance(v, tuple) else v)
                                      for k, v in o.items()},
                          "cells": cells, "runs": results}))
    else:
        print(format_table(o, cells))
        print(f"({len(results)} runs, {time.monotonic() - start:.0f} s with {o['jobs']} processes)")
    if args.plot:
        if plot(args.plot, o, cells, results):
            print(f"plot: {args.plot}", file=sys.stderr)
        else:
            print("plot skipped: matplotlib is not installed (pip install matplotlib)",
                  file=sys.stderr)
    return 0
