"""``--diagnose``: the gradient flow of a training run, measured at every evaluation.

`Diagnose` is a `Callback` of the shared loop, so every application's ``train`` has it.  At the
start of a run and after every evaluation it measures the gradient flow on a saved batch (the
batch of step 0, the same every time, so that changes come from the parameters alone) with
``rnnkit.nn.probe.record_gradients``, in two backward passes of the task's own loss in eval mode:

* **last step**: the gradient of the loss at each recurrent call's last step alone
  (``last_step_only``), from which the gradient horizon, the per-step decay ratio and the growth
  are measured.  A task whose loss sits at every step (a language model) would otherwise hide the
  decay under the local losses: the norm at step t includes the loss at t;
* **whole loss**: the task's loss as it trains, for the per-step norms it really sees and the
  share of the gradient each layer holds.

Both passes run on copies of what they change: the parameters' gradients, the task's state and
its random generators are put back exactly, and no parameter is touched, so a run with
``--diagnose`` ends bit-identical to one without (tested).  Between evaluations it counts how
often clipping fired (``run.clipped``) and the gradient norms before clipping.

It writes, to the run folder (under MPI rank 0 alone), ``diagnostics.jsonl`` (one JSON record
per measurement, `measure` shows the fields) and ``gradient_flow.png`` (`plot_flow`), and prints
a warning line naming the layer when the gradients explode (the norm grows by more than
EXPLODE_GROWTH going back from the loss, or clipping fired on more than CLIP_MOST of the
steps) or vanish (a horizon shorter than VANISH_FRACTION of the sequence length).
docs/diagnostics.md explains the numbers.
"""
from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np

from ..nn.module import Module
from ..nn.probe import THRESHOLD, record_gradients, summarize
from ..nn import GRU, LSTM, RNN
from .engine import Callback, Run
from ..data.files import write_atomic

EXPLODE_GROWTH = 100.0   # the norm k steps back exceeds the norm at the loss by more than this
CLIP_MOST = 0.5          # clipping fired on more than this fraction of an interval's steps
VANISH_FRACTION = 0.1    # a horizon shorter than this fraction of the sequence length
PLOT_EVERY = 60.0        # seconds between redrawn gradient_flow.png during a run
JSONL, PNG = "diagnostics.jsonl", "gradient_flow.png"


def module_names(model: Module) -> dict[int, str]:
    """{id(params dict): dotted name} of every recurrent layer in ``model`` ("" for the model)."""
    names, stack = {}, [("", model)]
    while stack:
        prefix, m = stack.pop()
        if isinstance(m, (RNN, LSTM, GRU)):
            names[id(m.params)] = prefix or type(m).__name__.lower()
        stack += [(f"{prefix}.{n}" if prefix else n, c) for n, c in m.children()]
    return names


def gradient_shares(model: Module) -> dict[str, float]:
    """The share of the squared gradient norm held by each group of parameters: each recurrent
    layer's by module and layer (``rnn l1``, both directions), every other module's by name."""
    sq: dict[str, float] = {}
    for name, _, g in model.named_parameters():
        module, _, base = name.rpartition(".")
        layer = base.rsplit("_l", 1)[-1].split("_")[0] if "_l" in base else None
        key = f"{module or 'model'} l{layer}" if layer is not None and layer.isdigit() else (module or base)
        sq[key] = sq.get(key, 0.0) + float(np.vdot(g, g))
    total = sum(sq.values())
    return {k: (v / total if total > 0 else 0.0) for k, v in sq.items()}


def _clean(v):
    """JSON-able: arrays to lists, non-finite floats to None, tuples to lists."""
    if isinstance(v, dict):
        return {k: _clean(x) for k, x in v.items()}
    if isinstance(v, (list, tuple, np.ndarray)):
        return [_clean(x) for x in np.asarray(v, dtype=object).tolist()] if isinstance(v, np.ndarray) \
            else [_clean(x) for x in v]
    if isinstance(v, (float, np.floating)):
        return float(v) if math.isfinite(v) else None
    if isinstance(v, np.integer):
        return int(v)
    return v


def measure(task, batch) -> dict:
    """The gradient flow of ``task`` on ``batch``, touching nothing that lasts (see the module
    docstring): {"loss", "modules": [{"module", "kind", "N", "T", "length", "directions": {name:
    {horizon, horizon_full, decay, growth, profile, sigma, bound, saturation, hidden_norm,
    cell_norm, dh_last, dh_all, dc_last, dc_all}}}], "grad_share": {group: share}}, JSON-able
    (lists; None for NaN)."""
    model = task.model
    params = list(model.named_parameters())
    kept = [g.copy() for _, _, g in params]
    states = {n: g.bit_generator.state for n, g in task.rngs().items()}
    arrays = {k: np.array(v, copy=True) for k, v in task.state().items()}
    training = model.training
    passes, loss, shares = {}, math.nan, {}
    model.eval()
    try:
        for which, last in (("last", True), ("all", False)):
            model.zero_grad()
            with record_gradients(last_step_only=last) as probe:
                value = task.loss(batch)
            passes[which] = probe.records
            if not last:
                loss, shares = float(value), gradient_shares(model)
            task.load_state({k: v.copy() for k, v in arrays.items()})
            for n, g in task.rngs().items():
                g.bit_generator.state = states[n]
    finally:
        model.zero_grad()
        for (_, _, g), k in zip(params, kept):
            g[...] = k
        model.train(training)
        task.load_state(arrays)
        for n, g in task.rngs().items():
            g.bit_generator.state = states[n]
    names, seen, modules = module_names(model), {}, []
    for rec, whole in zip(passes["last"], passes["all"]):
        N, T = rec.shape
        if int(rec.lengths.max(initial=0)) < 2:
            continue  # a single step has no flow through time
        name = names.get(id(rec.params), "rnn")
        seen[name] = seen.get(name, 0) + 1
        if seen[name] > 1:
            name = f"{name}#{seen[name]}"
        dirs = {}
        for d, s in summarize(rec).items():
            s["dh_last"], s["dh_all"] = rec.mean(d), whole.mean(d)
            if rec.directions[d].dc is not None:
                s["dc_last"], s["dc_all"] = rec.mean(d, "dc"), whole.mean(d, "dc")
            dirs[d] = s
        valid = rec.lengths[rec.lengths > 0]
        modules.append({"module": name, "kind": rec.kind, "N": N, "T": T,
                        "length": float(valid.mean()) if valid.size else 0.0, "directions": dirs})
    return _clean({"loss": loss, "modules": modules, "grad_share": shares})


def horizons(record: dict) -> dict[str, dict]:
    """The summary of one measurement (`measure`'s dict, or a diagnostics.jsonl record) a report
    shows: {"<module> <direction>": {"horizon", "horizon_full", "decay", "growth", "length"}},
    e.g. {"rnn l0": {"horizon": 37, "horizon_full": False, "decay": 0.81, ...}}."""
    return {f"{m['module']} {d}": {"horizon": s["horizon"], "horizon_full": s["horizon_full"],
                                   "decay": s["decay"], "growth": s["growth"],
                                   "length": m["length"]}
            for m in record["modules"] for d, s in m["directions"].items()}


class HorizonMeasure(Callback):
    """A tool's measurement (``rnnkit compare``'s "grad horizon" column): at the end of a run,
    the gradient horizon of the trained parameters, measured as ``--diagnose`` does (the batch of
    step 0, the last-step probe), of the first recurrent layer, the mean over its directions:
    how many steps back the last step's loss reaches the layer that reads the input.
    ``result()`` -> that number, or None (no recurrent layer, no gradient, or not finished).
    It costs two forward + backward passes of the batch at the end of each run."""

    def __init__(self, task=None) -> None:
        self.value: float | None = None

    def on_fit_end(self, run: Run) -> None:
        if not module_names(run.task.model):
            return  # no recurrent layer: nothing to measure (and no pass of the task's loss)
        m = measure(run.task, run.task.batch(0))
        if not m["modules"]:
            return
        first = m["modules"][0]["directions"]
        hs = [d["horizon"] for name, d in first.items() if name in ("l0", "l0_reverse")]
        self.value = float(np.mean(hs)) if hs and None not in hs else None

    def result(self) -> float | None:
        return self.value


def warnings_of(record: dict, clip: float) -> list[str]:
    """The warning lines of one measurement (see the module docstring), each naming a layer."""
    out = []
    for m in record["modules"]:
        for d, s in m["directions"].items():
            where = f"{m['module']} {d}"
            if s["growth"] is not None and s["growth"] > EXPLODE_GROWTH:
                out.append(f"gradients explode in {where}: the norm grows x{s['growth']:.3g} going "
                           f"back from the loss (x{s['decay']:.3g} per step)")
            elif s["horizon"] is not None and not s["horizon_full"] and \
                    s["horizon"] < VANISH_FRACTION * m["length"]:
                out.append(f"gradients vanish in {where}: horizon {s['horizon']} steps, under "
                           f"{VANISH_FRACTION:g} of the sequence length {m['length']:.0f} (the norm "
                           f"falls below {THRESHOLD:g} of its value at the loss)")
    g = record.get("grad_norm") or {}
    if g.get("steps") and g["clipped_fraction"] > CLIP_MOST:
        shares = record.get("grad_share") or {}
        top = max(shares, key=shares.get) if shares else None
        out.append(f"gradients explode: clipping at --clip {clip:g} fired on "
                   f"{100 * g['clipped_fraction']:.0f}% of steps {g['first']}-{g['last']} (norm "
                   f"before clipping: mean {g['mean']:.3g}, largest {g['max']:.3g})"
                   + (f"; the largest share is {top}'s ({100 * shares[top]:.0f}% of the squared "
                      f"norm)" if top else ""))
    return out


class Diagnose(Callback):
    """``--diagnose``: measure the gradient flow at the start and at every evaluation, write
    ``diagnostics.jsonl`` and ``gradient_flow.png`` to the run folder, warn (module docstring).

    say: where warning lines go (stderr by default); probe_step: the step whose batch is
    measured; plot: draw gradient_flow.png (needs matplotlib).  ``records`` holds this run's
    measurements (those of earlier invocations of a resumed run included).
    """

    def __init__(self, say: Callable[[str], None] | None = None, probe_step: int = 0,
                 plot: bool = True) -> None:
        self.say = say or (lambda line: print(line, file=sys.stderr, flush=True))
        self.probe_step, self.plot = probe_step, plot
        self.records: list[dict] = []

    # -- hooks ---------------------------------------------------------------------------------
    def on_fit_start(self, run: Run) -> None:
        self.active = run.group.root  # under MPI rank 0 alone measures, writes and warns
        self.out = run.out
        self.records, self._plotted = [], time.monotonic()
        self._interval()
        if not self.active:
            return
        path = None if self.out is None else self.out / JSONL
        if path is not None and path.exists():
            if run.step == 0:
                path.unlink()  # a new run (--overwrite): the old measurements go
            else:  # resumed: keep the earlier measurements up to the checkpoint's step
                self.records = [r for r in _read(path) if r["step"] <= run.step]
                self._rewrite(path)
        if run.step == 0:
            self._measure(run, {})

    def on_step_end(self, run: Run) -> None:
        self.norms.append(run.grad_norm)
        self.clipped += bool(run.clipped)
        self.first = self.first or run.step

    def on_evaluate(self, run: Run, metrics: dict[str, float]) -> None:
        if self.active:
            self._measure(run, metrics)
        self._interval()

    def on_fit_end(self, run: Run) -> None:
        if self.active and self.plot and self.out is not None and self.records:
            plot_flow(self.out / PNG, self.records, title=f"rnnkit {run.task.app}: gradient flow")

    # -- the work --------------------------------------------------------------------------------
    def _interval(self) -> None:
        self.norms: list[float] = []
        self.clipped, self.first = 0, 0

    def _measure(self, run: Run, metrics: dict[str, float]) -> None:
        task = run.task
        record = {"step": run.step, "seconds": run.elapsed, "validation": metrics,
                  "probe_step": self.probe_step}
        if self.norms:
            n = np.asarray(self.norms)
            record["grad_norm"] = {"steps": len(n), "first": self.first, "last": run.step,
                                   "mean": float(n.mean()), "max": float(n.max()),
                                   "clip": run.settings.clip,
                                   "clipped_fraction": self.clipped / len(n)}
        record.update(measure(task, task.batch(self.probe_step)))
        record = _clean(record)
        record["warnings"] = warnings_of(record, run.settings.clip)
        for line in record["warnings"]:
            self.say(f"rnnkit diagnose: step {run.step}: warning: {line}")
        self.records.append(record)
        if self.out is None:
            return
        self.out.mkdir(parents=True, exist_ok=True)
        with open(self.out / JSONL, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
        if self.plot and time.monotonic() - self._plotted >= PLOT_EVERY:
            self._plotted = time.monotonic()
            plot_flow(self.out / PNG, self.records, title=f"rnnkit {task.app}: gradient flow")

    def _rewrite(self, path: Path) -> None:
        write_atomic(path, "".join(json.dumps(r) + "\n" for r in self.records))


def _read(path: Path) -> list[dict]:
    """The records of a diagnostics.jsonl; a line cut short by a crash is dropped."""
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out


def rows_of(record: dict) -> list[tuple[str, dict, dict]]:
    """(row label, module, direction summary) of every recurrent direction of a record."""
    return [(f"{m['module']} {d}", m, s) for m in record["modules"]
            for d, s in m["directions"].items()]


def plot_flow(path, records: list[dict], title: str = "", panels: int = 4) -> bool:
    """gradient_flow.png: a layer x time heat-map of log10 ||dL/dh|| relative to its value at the
    loss (the last-step probe; x = steps back from the loss, the horizon marked) at up to
    ``panels`` points of training, and the horizon of every layer over training below.
    Returns False without matplotlib."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    from .progress import save_figure

    records = [r for r in records if r.get("modules")]
    if not records:
        return False
    pick = sorted({round(i * (len(records) - 1) / max(panels - 1, 1))
                   for i in range(min(panels, len(records)))})
    labels = [label for label, _, _ in rows_of(records[-1])]
    fig = plt.figure(figsize=(3.2 * len(pick) + 1.5, 5.2 + 0.3 * len(labels)), layout="constrained")
    grid = fig.add_gridspec(2, len(pick), height_ratios=[0.8 + 0.3 * len(labels), 2.6])
    image, axes = None, []
    for j, i in enumerate(pick):
        r = records[i]
        ax = fig.add_subplot(grid[0, j])
        axes.append(ax)
        rows = rows_of(r)
        K = max(len(s["profile"]) for _, _, s in rows)
        z = np.full((len(rows), K), np.nan)
        for k, (_, _, s) in enumerate(rows):
            g = np.array([np.nan if v is None else v for v in s["profile"]], float)
            z[k, : len(g)] = np.log10(np.maximum(g, 1e-300))
            if s["horizon"] is not None:
                ax.plot([min(s["horizon"], K - 1)], [k], marker="|", color="white",
                        markersize=12, markeredgewidth=2)
        # the first layer at the bottom, as the layers stack
        image = ax.imshow(np.clip(z, -8, 4), aspect="auto", cmap="magma", vmin=-8, vmax=4,
                          interpolation="nearest", origin="lower")
        ax.set_yticks(range(len(rows)))
        ax.set_yticklabels([label for label, _, _ in rows] if j == 0 else [], fontsize=8)
        ax.set_xlabel("steps back from the loss", fontsize=8)
        ax.set_title(f"step {r['step']}", fontsize=10)
    cbar = fig.colorbar(image, ax=axes, fraction=0.03, pad=0.01)
    cbar.set_label("log10 ||dL/dh|| / at loss", fontsize=8)
    ax = fig.add_subplot(grid[1, :])
    steps = [r["step"] for r in records]
    for label in labels:
        hs = []
        for r in records:
            found = {lab: s for lab, _, s in rows_of(r)}.get(label)
            hs.append(np.nan if found is None or found["horizon"] is None else found["horizon"])
        ax.plot(steps, hs, marker="o" if len(steps) < 30 else None, label=label)
    length = records[-1]["modules"][0]["length"]
    ax.axhline(VANISH_FRACTION * length, color="gray", linestyle=":", linewidth=1,
               label=f"{VANISH_FRACTION:g} x sequence length (vanishing below)")
    ax.set_xlabel("training step")
    ax.set_ylabel(f"horizon (steps above {THRESHOLD:g})")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    if title:
        fig.suptitle(title)
    save_figure(fig, path)
    return True


__all__ = ["Diagnose", "HorizonMeasure", "measure", "horizons", "warnings_of", "plot_flow", "module_names", "gradient_shares",
           "EXPLODE_GROWTH", "CLIP_MOST", "VANISH_FRACTION"]
