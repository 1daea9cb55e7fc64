"""The report of ``rnnkit compare``: the table, why the winner won, ``compare.json``,
``report.md``, ``compare.png`` (validation metric against training time, rungs marked) and
``lr_range.png`` (the range tests' loss curves).

Every number of the table but the times (steps/s, seconds) is a function of the seeds and the
plan, so the same command with the same ``--rung-steps`` writes the same table.
"""
from __future__ import annotations

import json
import math
import shlex
import sys

import numpy as np

from ..data.files import write_atomic
from ..train.progress import save_figure
from .compare_race import best_until

COLORS = {"rnn": "tab:blue", "gru": "tab:orange", "lstm": "tab:green"}
RUNG_MARKERS = "osD^vP*Xh"


def _mean_sd(values: list[float]) -> tuple[float, float]:
    v = [x for x in values if math.isfinite(x)]
    if len(v) < len(values) or not v:
        return math.nan, math.nan
    return float(np.mean(v)), float(np.std(v, ddof=1)) if len(v) > 1 else math.nan


def config_rows(race, ranges: dict, winner: dict | None) -> list[dict]:
    """One row per configuration, the winner first, then by rung reached and metric."""
    rows = []
    for c in race.configs:
        r = ranges.get(c.cell, {})
        row = {"config": c.name, "cell": c.cell, "hidden": c.hidden, "lr": c.lr,
               "params": r.get("params"), "rung": None, "steps": None, "mean": math.nan,
               "sd": math.nan, "seeds": [], "steps_per_second": math.nan, "seconds": math.nan,
               "gradient_horizon": None, "status": c.failed or ""}
        trials = [race.trials[c.trial(s)] for s in race.seeds if c.trial(s) in race.trials]
        if trials:
            rung = max(min(len(c.rungs) - 1, race.completed), 0)
            steps = race.plan.rungs[rung][1]
            row["seeds"] = [best_until(t["evals"], steps, race.higher) for t in trials]
            row["mean"], row["sd"] = _mean_sd(row["seeds"])
            row["rung"], row["steps"] = rung, steps
            row["params"] = trials[0].get("params", row["params"])
            speeds = [t["step"] / t["elapsed"] for t in trials if t.get("elapsed")]
            row["steps_per_second"] = float(np.mean(speeds)) if speeds else math.nan
            row["seconds"] = float(np.mean([t["elapsed"] for t in trials]))
            horizons = [t.get("measures", {}).get("gradient_horizon") for t in trials]
            if horizons and all(h is not None for h in horizons):
                row["gradient_horizon"] = float(np.mean(horizons))
            if not c.failed:
                row["status"] = _status(race, c, rung, trials, winner)
        rows.append(row)
    better = -1 if race.higher else 1
    rows.sort(key=lambda x: (winner is None or x["config"] != winner["config"],
                             x["status"].startswith(("diverged", "crashed", "range")),
                             -(x["rung"] if x["rung"] is not None else -1),
                             better * x["mean"] if math.isfinite(x["mean"]) else math.inf,
                             x["config"]))
    return rows


def _status(race, c, rung: int, trials: list[dict], winner: dict | None) -> str:
    if winner is not None and c.name == winner["config"]:
        return "winner"
    if len(c.rungs) - 1 > race.completed:  # it was in the rung the budget cut short
        return f"budget ran out at step {min(t['step'] for t in trials)}"
    return f"stopped after rung {rung}"


def _fmt(v, spec: str = ".4f") -> str:
    return "-" if v is None or (isinstance(v, float) and not math.isfinite(v)) else format(v, spec)


def format_table(rows: list[dict], label: str, seeds: int) -> str:
    head = ["cell", "hidden", "params", "lr", "rung (steps)",
            f"validation {label}, mean ± sd of {seeds}", "steps/s", "seconds", "grad horizon",
            "status"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        rung = "-" if r["rung"] is None else f"{r['rung']} ({r['steps']})"
        metric = "-" if not math.isfinite(r["mean"]) else (
            f"{r['mean']:.4f} ± {r['sd']:.4f}" if math.isfinite(r["sd"]) else f"{r['mean']:.4f}")
        lines.append("| " + " | ".join([
            r["cell"], str(r["hidden"]), _fmt(r["params"], ","), _fmt(r["lr"], ".2g"), rung,
            metric, _fmt(r["steps_per_second"], ".2f"), _fmt(r["seconds"], ".0f"),
            _fmt(r["gradient_horizon"], ".1f"), r["status"]]) + " |")
    return "\n".join(lines)


def range_table(ranges: dict, hidden: dict, candidates: dict) -> str:
    lines = ["| cell | hidden | params | validation untrained | lowest smoothed training loss "
             "(at lr) | steepest descent at lr | chosen lr (lowest's / 4) | rates raced "
             "| steps/s |", "|" + "---|" * 9]
    for cell, r in ranges.items():
        if r["status"] != "ok":
            lines.append(f"| {cell} | {hidden[cell]} | - | {r['status']}: {r['error']} |"
                         + " |" * 6)
            continue
        s = r["suggestion"]
        lines.append(f"| {cell} | {hidden[cell]} | {r['params']:,} | {_fmt(r['untrained'])} | "
                     f"{s['min_loss']:.4f} "
                     f"({s['lr_min_loss']:.2g}) | {s['lr_steepest']:.2g} | {s['lr']:.2g} | "
                     + ", ".join(f"{x:.2g}" for x in candidates.get(cell, [])) +
                     f" | {r['steps_per_second']:.2f} |")
    return "\n".join(lines)


def why(rows: list[dict], race, label: str, winner: dict | None, rung: int) -> str:
    """Why the winner won: its mean at the deciding rung (the last with a rival, at most
    ``rung``, the last rung every configuration in it finished) against the runner-up's."""
    if winner is None:
        return "no winner: the budget ran out before the first rung finished"
    by_name = {c.name: c for c in race.configs}
    best = by_name[winner["config"]]
    deciding = max((r for r in range(rung + 1)
                    if sum(1 for c in race.configs if len(c.rungs) > r and not c.failed) > 1),
                   default=None)
    k, sense = len(race.seeds), "highest" if race.higher else "lowest"
    text = f"{best.name} won"
    if deciding is None:
        return text + " as the only configuration left in the race."
    others = sorted((c for c in race.configs if len(c.rungs) > deciding and not c.failed
                     and c is not best), key=lambda c: race.key(c, deciding))
    steps = race.plan.rungs[deciding][1]
    mine = [best_until(race.trials[best.trial(s)]["evals"], steps, race.higher) for s in race.seeds]
    theirs = [best_until(race.trials[others[0].trial(s)]["evals"], steps, race.higher)
              for s in race.seeds]
    (m1, s1), (m2, s2) = _mean_sd(mine), _mean_sd(theirs)
    text += (f": the {sense} mean validation {label} at rung {deciding} ({steps} steps, {k} "
             f"seed{'s' * (k > 1)}), {m1:.4f}" + (f" ± {s1:.4f}" if math.isfinite(s1) else "")
             + f", against {m2:.4f}" + (f" ± {s2:.4f}" if math.isfinite(s2) else "")
             + f" for the runner-up {others[0].name}")
    noise = (s1 if math.isfinite(s1) else 0) + (s2 if math.isfinite(s2) else 0)
    if k > 1 and noise > 0:
        gap = abs(m1 - m2) / noise
        text += (f"; the gap is {gap:.1f} x the sum of their seed standard deviations"
                 + (" (within seed noise)" if gap < 1 else ""))
    final = next(r for r in rows if r["config"] == best.name)
    if final["steps"] > steps and math.isfinite(final["mean"]):
        text += f"; trained on to step {final['steps']}, it reached {final['mean']:.4f}"
    if race.stopped_by_budget:
        text += (f"; the budget ran out during rung {race.completed + 1}, so rung "
                 f"{race.completed} decided")
    grid = sorted(c.lr for c in race.configs if c.cell == best.cell)
    if len(grid) > 1 and best.lr in (grid[0], grid[-1]):
        text += (f"; its rate is the {'lowest' if best.lr == grid[0] else 'highest'} its cell "
                 "raced, so a better one may lie beyond (--lr or more --lrs)")
    per_cell = {}
    for r in rows:
        if r["cell"] not in per_cell and math.isfinite(r["mean"]):
            per_cell[r["cell"]] = r
    text += ". Best of each cell: " + ", ".join(
        f"{c} {r['mean']:.4f} (rung {r['rung']}, lr {r['lr']:.2g})" for c, r in per_cell.items())
    return text + "."


def plot_race(path, race, label: str, winner: dict | None) -> bool:
    """Validation metric (mean over seeds) against training seconds for every configuration;
    each rung's last step marked with its own marker, a stopped configuration's end with x."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, ax = plt.subplots(figsize=(8, 5))
    ends = {steps: r for r, (_, steps) in enumerate(race.plan.rungs)}
    styles = ["-", "--", ":", "-."]
    rates: dict[str, list] = {}
    for c in race.configs:
        rates.setdefault(c.cell, []).append(c.lr)
    for c in race.configs:
        rows = [race.trials[c.trial(s)]["evals"] for s in race.seeds if c.trial(s) in race.trials]
        if not rows:
            continue
        common = sorted(set.intersection(*[{st for st, _, _ in x} for x in rows]))
        if not common:
            continue
        at = [{st: (e, m) for st, e, m in x} for x in rows]
        xs = [float(np.mean([a[step][0] for a in at])) for step in common]
        ys = [float(np.mean([a[step][1] for a in at])) for step in common]
        is_winner = winner is not None and c.name == winner["config"]
        style = styles[sorted(rates[c.cell]).index(c.lr) % len(styles)]
        ax.plot(xs, ys, style, color=COLORS.get(c.cell), linewidth=2.5 if is_winner else 1.2,
                label=f"{c.name}{' (winner)' if is_winner else ''}")
        for x, y, step in zip(xs, ys, common):
            if step in ends:
                ax.plot(x, y, RUNG_MARKERS[ends[step] % len(RUNG_MARKERS)],
                        color=COLORS.get(c.cell), markersize=6)
        if not is_winner and len(c.rungs) < len(race.plan.rungs):
            ax.plot(xs[-1], ys[-1], "x", color="black", markersize=8)
    for r, (n, steps) in enumerate(race.plan.rungs):
        ax.plot([], [], RUNG_MARKERS[r % len(RUNG_MARKERS)], color="gray",
                label=f"end of rung {r} (step {steps}, {n} in it)")
    ax.plot([], [], "x", color="black", label="stopped")
    ax.set_xscale("log")  # early evaluations (where a forecaster's best often is) stay visible
    ax.set_xlabel("seconds of training (each trial's own, log scale)")
    ax.set_ylabel(f"validation {label} (mean over seeds)")
    ax.set_title("rnnkit compare: successive halving")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    save_figure(fig, path)
    return True


def plot_ranges(path, ranges: dict) -> bool:
    """Each cell's range test: training loss against the rate, smoothed, the chosen rate marked."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, ax = plt.subplots(figsize=(7, 4))
    for cell, r in ranges.items():
        if r["status"] != "ok":
            continue
        lrs = [lr for lr, loss in zip(r["lrs"], r["losses"]) if math.isfinite(loss)]
        ax.plot(lrs, [x for x in r["losses"] if math.isfinite(x)], color=COLORS.get(cell),
                alpha=0.3)
        ax.plot(lrs, r["suggestion"]["smoothed"], color=COLORS.get(cell), label=cell)
        ax.axvline(r["suggestion"]["lr"], color=COLORS.get(cell), linestyle="--", linewidth=1)
    ax.set_xscale("log")
    ax.set_xlabel("learning rate (dashed: chosen, a quarter of the lowest loss's)")
    ax.set_ylabel("training loss")
    ax.set_title("rnnkit compare: learning-rate range tests")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    save_figure(fig, path)
    return True


def _clean(obj):
    """JSON without NaN: None instead."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    return obj


def write_report(out, *, spec, args, cells, hidden, target, ranges, race, plan, winner, rung,
                 seconds, where) -> dict:
    """Write compare.json, report.md and the pictures; returns {"table", "why"}."""
    label = next((r["label"] for r in ranges.values() if r["status"] == "ok"), "metric")
    rows = config_rows(race, ranges, winner)
    candidates = {}
    for c in race.configs:
        if math.isfinite(c.lr):
            candidates.setdefault(c.cell, []).append(c.lr)
    table = format_table(rows, label, len(race.seeds))
    reason = why(rows, race, label, winner, rung)
    pictures = {"compare.png": plot_race(out / "compare.png", race, label, winner),
                "lr_range.png": plot_ranges(out / "lr_range.png", ranges)}
    sizes = (f"hidden sizes matched to {target:,} parameters (within 5%): " if target else
             "hidden sizes given (--hidden): ") + ", ".join(f"{c} {h}" for c, h in hidden.items())
    data = next((r["describe"] for r in ranges.values() if r.get("describe")), "")
    command = shlex.join(["rnnkit", *sys.argv[1:]]) if "compare" in sys.argv[1:4] else ""
    md = [f"# rnnkit compare {spec.app}", "", f"`{command}`" if command else "",
          "", f"Task: {spec.about}." + (f" Data ({next(iter(ranges))}'s range test): {data}."
                                         if data else ""), "",
          sizes + ".", "",
          "## Learning-rate range tests", "", range_table(ranges, hidden, candidates), "",
          "![range tests](lr_range.png)" if pictures["lr_range.png"] else "", "",
          "## The race", "",
          f"Successive halving in {where}: rungs of " + ", ".join(
              f"{n} configuration(s) to step {s}" for n, s in plan.rungs)
          + f" (x {len(race.seeds)} seeds), evaluated every {plan.eval_every} steps and at the "
          f"end of every rung (--rung-steps {plan.rung_steps} --eval-every {plan.eval_every}); "
          f"{seconds:.0f} s of --budget {args.budget:g}.", "", table, "", reason, "",
          "![validation metric against time](compare.png)" if pictures["compare.png"] else "",
          "", f"Winner's run folder: `{winner['folder']}`" if winner else ""]
    write_atomic(out / "report.md", "\n".join(md) + "\n")
    doc = {"app": spec.app, "about": spec.about, "command": command, "metric": label,
           "higher_is_better": race.higher, "target_params": target, "hidden": hidden,
           "range_tests": {c: {k: v for k, v in r.items() if k != "describe"}
                           for c, r in ranges.items()},
           "plan": {"rung_steps": plan.rung_steps, "rungs": plan.rungs, "fitted": plan.fitted,
                    "eval_every": plan.eval_every,
                    "estimated_seconds": plan.seconds},
           "seeds": race.seeds, "table": rows, "winner": winner, "deciding_rung": rung,
           "why": reason, "trials": race.trials, "budget": args.budget, "seconds": seconds,
           "stopped_by_budget": race.stopped_by_budget, "where": where}
    write_atomic(out / "compare.json", json.dumps(_clean(doc), indent=1) + "\n")
    return {"table": table, "why": reason}
