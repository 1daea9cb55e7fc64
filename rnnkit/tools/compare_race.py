"""The arithmetic of ``rnnkit compare``: equal sizes, the rate from a range test, the plan that
fits a budget, and successive halving.

* **Sizes** (`size_function`, `match_hidden`): a model's parameter count is a sum of products of
  dimensions that are affine in the hidden size H (4H, 2H + E, V...), so the shapes of two builds
  give the count at any H exactly; each cell gets the H whose count is nearest the target.
* **Rates** (`suggest_lr`): fast.ai's ``lr_find`` - the training loss of a short run whose rate
  grows exponentially, smoothed; a quarter of the rate of its lowest value (Smith 2017).
* **Plan** (`plan_race`): rung r trains the n_r best configurations (cell, rate) of rung r - 1,
  each with every seed, up to step s0 * 2^r (n_0 = all, n_{r+1} = n_r // 2, down to one); s0 is
  the largest round number whose estimated time (the steps and evaluations of every trial at the
  speeds the range tests measured, the slowest cells assumed to survive, scheduled on the
  workers) fits the budget.  Trials evaluate as often as costs at most a tenth of their
  training time (at most 500 times in the first rung), and at the end of every rung.
* **Race** (`Race`): runs the rungs through an executor; a configuration that is stopped is never
  trained again; a failing trial (a crash, a divergence) fails its configuration, never the race.
"""
from __future__ import annotations

import dataclasses
import math
import os
import shutil
from pathlib import Path
from typing import Callable

import numpy as np

from .compare_trial import pack, unpack

# rung-0 step counts are these times a power of 10 (about 10% apart)
NICE = (1, 1.1, 1.2, 1.3, 1.5, 1.6, 1.8, 2, 2.2, 2.5, 2.8, 3, 3.5, 4, 4.5, 5, 5.5, 6, 7, 8, 9)
MIN_RUNG_STEPS = 5
BUDGET_USED = 0.9   # the plan aims at this fraction of the budget left after the range tests
OVERHEAD = 1.0      # seconds per job besides building the task: process hand-over, checkpoint
EVAL_SHARE = 0.1    # evaluations may take this share of a trial's training time
EVALS_PER_RUNG = 500  # ... and be at most this many in the first rung (a forecaster's best
                      # step is often among its first hundred: evaluate often enough to see it)


# ----------------------------------------------------------------------------- sizes
def size_function(shapes_a: dict, ha: int, shapes_b: dict, hb: int) -> Callable[[int], int]:
    """params(H) from the parameter shapes {name: shape} at hidden sizes ha != hb."""
    if set(shapes_a) != set(shapes_b):
        raise ValueError("the model's parameters change names with its hidden size")
    terms = []
    for name in sorted(shapes_a):
        a, b = shapes_a[name], shapes_b[name]
        if len(a) != len(b):
            raise ValueError(f"parameter {name} changes rank with the hidden size")
        terms.append([((db - da) / (hb - ha), da - (db - da) / (hb - ha) * ha)
                      for da, db in zip(a, b)])

    def count(h: int) -> int:
        return int(round(sum(math.prod(s * h + c for s, c in dims) for dims in terms)))
    return count


def match_hidden(count: Callable[[int], int], target: int, cell: str, tolerance: float = 0.05,
                 largest: int = 1 << 16) -> int:
    """The hidden size whose parameter count is nearest ``target``; ValueError beyond tolerance."""
    lo, hi = 1, largest
    while lo < hi:  # the smallest h with count(h) >= target (counts grow with h)
        mid = (lo + hi) // 2
        lo, hi = (mid + 1, hi) if count(mid) < target else (lo, mid)
    h = min((c for c in (lo - 1, lo) if c >= 1), key=lambda c: (abs(count(c) - target), c))
    off = abs(count(h) - target) / target
    if off > tolerance:
        raise ValueError(f"--params {target:,}: the nearest {cell} (hidden {h}) has "
                         f"{count(h):,} parameters, {100 * off:.0f}% off (sizes are matched "
                         f"within {100 * tolerance:.0f}%); choose another --params or --hidden")
    return h


# ----------------------------------------------------------------------------- rates
def smooth(values: list[float], width: int) -> np.ndarray:
    """Centred moving average (no lag, unlike an exponential one); shorter at the ends."""
    v = np.asarray(values, np.float64)
    half = width // 2
    return np.array([v[max(0, k - half): k + half + 1].mean() for k in range(len(v))])


def suggest_lr(lrs: list[float], losses: list[float], divisor: float = 4.0) -> dict:
    """The rate to train with, from a range test's training losses at growing rates.

    The loss is smoothed (centred, so without the lag that would shift its minimum to higher
    rates) and the rate of its lowest value - about the largest rate at which training still
    converges - is divided by ``divisor``.  Smith (2017, the range test's origin): the best
    rate is usually within a factor of 2 of the largest that converges, and a third to a
    quarter of it is a safe base rate; fast.ai's ``lr_find`` suggests a tenth of it for SGD.
    The steepest descent is returned too (reported only: it is noisy).
    """
    keep = [k for k in range(len(losses)) if math.isfinite(losses[k])]
    if len(keep) < 3:
        raise ValueError("the range test diverged at once: lower --lr-range")
    lrs_k = np.asarray(lrs, np.float64)[keep]
    smoothed = smooth([losses[k] for k in keep], max(3, (len(keep) // 10) | 1))
    low = int(np.argmin(smoothed))
    slope = np.gradient(smoothed, np.log(lrs_k))
    steep = int(np.argmin(slope[: low + 1])) if low > 0 else 0
    return {"lr": float(lrs_k[low] / divisor), "lr_min_loss": float(lrs_k[low]),
            "min_loss": float(smoothed[low]), "lr_steepest": float(lrs_k[steep]),
            "smoothed": [float(v) for v in smoothed], "at_end": low == len(keep) - 1}


def lr_grid(lr: float, k: int, factor: float = 3.0) -> list[float]:
    """k rates spaced by ``factor`` and centred on ``lr`` (2 significant digits)."""
    return [float(f"{lr * factor ** (j - (k - 1) / 2):.2g}") for j in range(k)]


# ----------------------------------------------------------------------------- plan
@dataclasses.dataclass
class Plan:
    rung_steps: int                # s0: the steps of rung 0
    rungs: list[tuple[int, int]]   # (configurations, last step) of each rung
    eval_every: int                # steps between evaluations (and at the end of every rung)
    seconds: float                 # estimated wall-clock seconds
    fitted: bool                   # s0 fitted to the budget (else given)

    @property
    def total(self) -> int:
        return self.rungs[-1][1]


def rung_sizes(n: int) -> list[int]:
    sizes = [n]
    while sizes[-1] > 1:
        sizes.append(sizes[-1] // 2)
    return sizes


def makespan(durations: list[float], workers: int) -> float:
    """Wall time of jobs handed in order to the first free of ``workers``."""
    free = [0.0] * max(workers, 1)
    for d in durations:
        k = int(np.argmin(free))
        free[k] += d
    return max(free) if durations else 0.0


def nice_numbers(largest: int):
    k = 1
    while True:
        for m in NICE:
            v = int(round(m * k))
            if v > largest:
                return
            yield v
        k *= 10


def eval_interval(s0: int, costs: list[dict]) -> int:
    """Steps between evaluations: the least round number that keeps evaluating within
    EVAL_SHARE of the training time of every configuration and to at most EVALS_PER_RUNG in the
    first rung, and at most s0 (a rung's end is always evaluated)."""
    steps = max(max(c["eval"] / c["step"] for c in costs) / EVAL_SHARE, s0 / EVALS_PER_RUNG)
    return min(s0, next(v for v in nice_numbers(10 ** 9) if v >= steps))


def estimate(s0: int, costs: list[dict], seeds: int, workers: int,
             every: int | None = None) -> float:
    """Seconds the race takes with rung-0 steps s0.  ``costs``: per configuration in race order,
    {"step": seconds per step, "eval": seconds per evaluation, "setup": seconds per job}; a rung
    after the first assumes the slowest configurations survived."""
    every = every or eval_interval(s0, costs)
    slowest = sorted(costs, key=lambda c: -c["step"])
    total, done = 0.0, 0
    for r, n in enumerate(rung_sizes(len(costs))):
        steps = s0 * 2 ** r - done
        done += steps
        which = costs if r == 0 else slowest[:n]
        jobs = [c["step"] * steps + c["eval"] * (steps // every + 1) + c["setup"] + OVERHEAD
                for c in which for _ in range(seeds)]
        total += makespan(jobs, workers)
    return total


def plan_race(costs: list[dict], seeds: int, workers: int, seconds: float,
              rung_steps: int | None = None, eval_every: int | None = None) -> Plan:
    """The plan (see the module docstring); ValueError when even MIN_RUNG_STEPS do not fit."""
    sizes = rung_sizes(len(costs))
    fitted = rung_steps is None

    def fits(s0: int) -> bool:
        return estimate(s0, costs, seeds, workers, eval_every) <= BUDGET_USED * seconds
    if fitted:
        ok = [s for s in nice_numbers(10 ** 7) if s >= MIN_RUNG_STEPS and fits(s)]
        if not ok:
            need = estimate(MIN_RUNG_STEPS, costs, seeds, workers, eval_every) / BUDGET_USED
            raise ValueError(
                f"the budget left after the range tests ({seconds:.0f} s) is too small for "
                f"{len(costs)} configurations x {seeds} seeds (about {need:.0f} s needed for "
                f"{MIN_RUNG_STEPS} steps a rung): raise --budget, or use fewer --cells, "
                "--lrs or --seeds, or a smaller model")
        rung_steps = max(ok)
    every = eval_every or eval_interval(rung_steps, costs)
    rungs = [(n, rung_steps * 2 ** r) for r, n in enumerate(sizes)]
    return Plan(rung_steps, rungs, every, estimate(rung_steps, costs, seeds, workers, every),
                fitted=fitted)


# ----------------------------------------------------------------------------- race
@dataclasses.dataclass
class Config:
    """One candidate of the race: a cell at its matched size with one learning rate."""

    cell: str
    hidden: int
    lr: float
    failed: str | None = None       # why it is out for good (a crash, a divergence)
    rungs: list[float] = dataclasses.field(default_factory=list)  # mean metric at each rung

    @property
    def name(self) -> str:
        return f"{self.cell}-h{self.hidden}-lr{self.lr:.2g}"

    def trial(self, seed: int) -> str:
        return f"{self.name}-s{seed}"


def install(files: dict[str, bytes], folder: Path) -> None:
    """Replace ``folder`` by a folder of ``files`` (written aside, then renamed into place)."""
    tmp = folder.with_name(f".{folder.name}.tmp-{os.getpid()}")
    old = folder.with_name(f".{folder.name}.old-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    unpack(files, tmp)
    if folder.exists():
        os.replace(folder, old)
    os.replace(tmp, folder)
    shutil.rmtree(old, ignore_errors=True)


def best_until(rows: list, step: int, higher: bool) -> float:
    """The best metric among evaluations (step, seconds, metric) at steps <= ``step``."""
    values = [m for s, _, m in rows if s <= step and math.isfinite(m)]
    if not values:
        return math.nan
    return max(values) if higher else min(values)


class Race:
    """Successive halving over configurations x seeds (see the module docstring).

    ``job(config, seed, steps)`` makes a trial's job (without its checkpoint); ``run(jobs)``
    runs a list of jobs and returns their results in order.  Trials live in ``folder``/<id>.
    """

    def __init__(self, configs: list[Config], seeds: list[int], plan: Plan, folder: Path,
                 job: Callable, run: Callable, higher: bool, log=None) -> None:
        self.configs, self.seeds, self.plan, self.folder = configs, seeds, plan, folder
        self.job, self.run_jobs, self.higher, self.log = job, run, higher, log or (lambda m: None)
        self.trials: dict[str, dict] = {}   # id -> {"evals", "status", "error", "rung", ...}
        self.completed = -1                 # the last rung every configuration in it finished
        self.stopped_by_budget = False

    def key(self, c: Config, rung: int):
        """Sort key: failed last, then the better mean metric, then the name."""
        m = c.rungs[rung] if len(c.rungs) > rung else math.nan
        bad = c.failed is not None or not math.isfinite(m)
        return (bad, 0.0 if bad else (-m if self.higher else m), c.name)

    def run(self) -> list[Config]:
        alive = [c for c in self.configs if c.failed is None]
        for r, (n, steps) in enumerate(self.plan.rungs):
            if r > 0:
                alive = sorted(alive, key=lambda c: self.key(c, r - 1))[:n]
                alive = [c for c in alive if c.failed is None]
            if not alive:
                break
            self.log(f"rung {r}: {len(alive)} configuration(s) x {len(self.seeds)} seed(s) to "
                     f"step {steps}: " + ", ".join(c.name for c in alive))
            pairs = [(c, seed) for c in alive for seed in self.seeds]
            jobs = []
            for c, seed in pairs:
                job = self.job(c, seed, steps)
                folder = self.folder / c.trial(seed)
                job["files"] = pack(folder) if r > 0 and folder.exists() else None
                jobs.append(job)
            results = self.run_jobs(jobs)
            if any(res["status"] == "interrupted" for res in results):
                raise KeyboardInterrupt  # Ctrl-C: the trials saved their checkpoints
            complete = True
            for (c, seed), res in zip(pairs, results):
                complete &= self._record(c, seed, r, steps, res)
            for c in alive:
                rows = [self.trials.get(c.trial(s), {}).get("evals", []) for s in self.seeds]
                c.rungs.append(float(np.mean([best_until(x, steps, self.higher) for x in rows])))
            if not complete:
                self.stopped_by_budget = True
                self.log(f"rung {r}: the budget ran out before every trial reached step {steps}")
                break
            self.completed = r
        return self.configs

    def _record(self, c: Config, seed: int, rung: int, steps: int, res: dict) -> bool:
        """Keep a trial's result; False when the budget stopped it short of ``steps``."""
        t = self.trials.setdefault(c.trial(seed), {"config": c.name, "seed": seed, "evals": [],
                                                   "rungs": [], "elapsed": 0.0, "step": 0})
        t["rungs"].append(rung)
        t["status"], t["error"] = res["status"], res.get("error")
        if res.get("files"):
            install(res["files"], self.folder / c.trial(seed))
        for k in ("step", "elapsed", "params", "measures"):
            if k in res:
                t[k] = res[k]
        t["evals"] += res.get("evals", [])
        if res["status"] in ("diverged", "crashed"):
            c.failed = c.failed or f"{res['status']} (seed {seed}): {res['error']}"
            return True
        return res["status"] == "ok" and t["step"] >= steps

    def winner(self) -> tuple[Config | None, int]:
        """(the best configuration of the last rung all its configurations finished, that rung);
        (None, -1) when no rung finished."""
        for r in range(self.completed, -1, -1):
            entered = [c for c in self.configs if len(c.rungs) > r and c.failed is None]
            if entered:
                return sorted(entered, key=lambda c: self.key(c, r))[0], r
        return None, -1
