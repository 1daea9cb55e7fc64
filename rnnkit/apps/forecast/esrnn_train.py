"""Training and using the ES-RNN (`esrnn.py`): the shared loop's task, the callback that keeps
the last epochs, the forecaster (an ensemble over seeds and epochs, with the Naive2 fallback for
series too short to train), its checkpoints and its ONNX feeds."""
from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

from ...data.series import Frequency, SeriesSet
from ...train.checkpoint import load_checkpoint, save_checkpoint
from ...train.engine import Callback, fit
from ...train.settings import from_dict
from ...train.task import Task
from .esrnn import (ESRNN, ESRNNConfig, default_context, init_seasons, mase_weights, min_length,
                    pad_batch, penalty_mask, pinball_loss, shift_of, targets_mask)
from .metrics import naive2


# ----------------------------------------------------------------------------- the task

class ESRNNTask(Task):
    """Training of one `ESRNN`, for the shared loop (`rnnkit.train.engine.fit`).

    batch(step) -> idx: the series (positions in the training set) of update ``step``, a pure
        function of (seed, step): the series shuffled once per epoch, ``batch`` at a time.
    loss(idx) -> float: forward and backward of those series (masked, weighted pinball loss +
        level penalty); the gradients sit in ``self.model.grads``.
    evaluate() -> {} by default (every value of a short series trains; there is no validation
        slice, the run is a fixed number of epochs); with ``validate=True``: {"loss", "smape"} of
        each series' last window (its last H values, in-sample) for monitoring.
    state() / load_state(): the parameters kept from the last epochs (``kept``, the ensemble
        over epochs), so that a resumed run ends with the same ensemble.
    ``steps_per_epoch``: updates per pass over the series; `KeepLast` fills ``kept``.
    """

    app = "forecast"
    loss_name = "pinball loss"

    def __init__(self, model: ESRNN, series: list[np.ndarray], batch: int, penalty: float,
                 seed: int, weights: np.ndarray | None = None, validate: bool = False) -> None:
        self.model, self.series = model, series
        self.weights, self.validate = weights, validate
        self.batch_size, self.penalty, self.seed = max(1, batch), penalty, seed
        self.steps_per_epoch = math.ceil(len(series) / self.batch_size)
        self.kept: list[dict] = []
        self._perm = (None, None)

    def batch(self, step: int) -> np.ndarray:
        epoch, k = divmod(step, self.steps_per_epoch)
        if self._perm[0] != epoch:
            self._perm = (epoch, np.random.default_rng([self.seed, epoch]).permutation(
                len(self.series)))
        return np.sort(self._perm[1][k * self.batch_size:(k + 1) * self.batch_size])

    def loss(self, idx: np.ndarray) -> float:
        m, cfg = self.model, self.model.cfg
        y, lengths = pad_batch([self.series[i] for i in idx], m.dtype)
        o, z, e = m.forward(y, lengths, idx)
        mask = targets_mask(lengths, cfg.context, cfg.horizon, o.shape[1])
        loss, do, dz, de = pinball_loss(o, z, mask, cfg.quantiles, e,
                                        penalty_mask(lengths, y.shape[1]), self.penalty,
                                        None if self.weights is None else self.weights[idx])
        m.backward(do, dz, de)
        return loss

    def evaluate(self) -> dict:
        if not self.validate:
            return {}
        cfg, H = self.model.cfg, self.model.cfg.horizon
        idx = np.array([i for i, v in enumerate(self.series) if len(v) >= cfg.context + 1 + H])
        if not len(idx):
            return {}
        y, lengths = pad_batch([self.series[i][:-H] for i in idx], self.model.dtype)
        fc = self.model.predict(y, lengths, idx)                       # (B, H, Q)
        actual = np.stack([self.series[i][-H:] for i in idx]).astype(np.float64)
        q = np.asarray(cfg.quantiles)[None, None, :]
        d = actual[..., None] - fc
        med = fc[:, :, len(cfg.quantiles) // 2]
        scale = np.abs(actual) + np.abs(med)
        level = np.mean(np.abs(actual), axis=1)[:, None, None]
        return {"loss": float(np.mean(np.maximum(q * d, (q - 1) * d) / level)),
                "smape": float(200 * np.mean(np.abs(actual - med) / np.where(scale > 0, scale, 1)))}

    def state(self) -> dict[str, np.ndarray]:
        return {f"kept{j}/{name}": a for j, st in enumerate(self.kept) for name, a in st.items()}

    def load_state(self, arrays: dict[str, np.ndarray]) -> None:
        kept: dict[int, dict] = {}
        for key, a in arrays.items():
            head, _, name = key.partition("/")
            kept.setdefault(int(head[4:]), {})[name] = np.asarray(a)
        self.kept = [kept[j] for j in sorted(kept)]


class KeepLast(Callback):
    """Keeps the parameters at the end of each of the last ``n`` epochs of a run of ``steps``
    in ``task.kept`` (after the update, before the loop's evaluation and checkpoint, so that a
    checkpoint holds every epoch kept so far)."""

    def __init__(self, n: int, steps: int, per_epoch: int) -> None:
        self.first = max(steps - n * per_epoch, 0)

    def on_step_end(self, run) -> None:
        task = run.task
        if run.step > self.first and run.step % task.steps_per_epoch == 0:
            task.kept.append(task.model.state_dict())


def run_settings(s, task: ESRNNTask):
    """The shared loop's settings for one ES-RNN run: ``es_epochs`` passes over the series, but
    at least ``es_min_steps`` updates (a single series is one update per pass), at ``es_lr``
    (warm-up over the first epoch, cosine decay to a tenth), one evaluation per epoch."""
    per = task.steps_per_epoch
    steps = max(s.es_epochs * per, s.es_min_steps)
    return dataclasses.replace(s, lr=s.es_lr, min_lr=s.es_lr / 10, warmup=min(per, steps // 4),
                               steps=steps, eval_every=per, batch=s.es_batch)


# ----------------------------------------------------------------------------- the forecaster

Z80 = 1.2815515655446004  # standard normal quantile 0.9: sd from the 80% interval


def fallback_forecast(values: np.ndarray, horizon: int, season: int) -> dict:
    """The forecast of a series too short for the ES-RNN: Naive2 (M4's seasonally adjusted
    naive) with random-walk intervals, sd_h = sqrt(h) * the RMS of the history's one-step
    changes (0 for a single value)."""
    y = np.asarray(values, np.float64)
    mean = naive2(y, horizon, season)
    sigma = float(np.sqrt(np.mean(np.diff(y) ** 2))) if len(y) > 1 else 0.0
    sd = sigma * np.sqrt(np.arange(1, horizon + 1))
    return {"mean": mean, "median": mean, "sd": sd,
            "lower_80": mean - Z80 * sd, "upper_80": mean + Z80 * sd,
            "lower_95": mean - 1.959963984540054 * sd, "upper_95": mean + 1.959963984540054 * sd}


class ESRNNForecaster:
    """A trained ES-RNN ensemble (seeds x the last epochs' parameters), the interface of
    `rnnkit.apps.forecast.train.Forecaster`: fit, forecast, save, load."""

    def __init__(self, settings, freq: Frequency, n_covariates: int = 0,
                 info: dict | None = None) -> None:
        settings.check()
        if n_covariates:
            raise ValueError("--model esrnn reads no covariates; drop --covariates or use "
                             "--model direct")
        self.s, self.freq, self.n_covariates = settings, freq, 0
        self.season = settings.season if settings.season is not None else freq.season
        self.context = (settings.context if settings.context is not None
                        else default_context(self.season, settings.horizon))
        self.members: list[dict] = []  # parameter sets (state dicts), averaged in forecast
        self.ids: list[str] = []       # training series, in parameter order
        self.shifts = np.zeros(0)
        self.info = info or {}

    @property
    def horizon(self) -> int:
        return self.s.horizon

    def config(self, n_series: int) -> ESRNNConfig:
        s = self.s
        return ESRNNConfig(n_series=max(n_series, 1), season=self.season, context=self.context,
                           horizon=self.horizon, cell=s.cell, hidden=s.hidden, layers=s.layers,
                           dtype=s.dtype)

    def _too_short(self, data: SeriesSet, need: int) -> list[str]:
        return [s.id for s in data.series if len(s) < need]

    def fit(self, data: SeriesSet, out: str | Path | None = None, max_time: float | None = None,
            budget: bool = True, log=None, callbacks=()) -> dict:
        """Train ``ensemble`` models (seeds) on every series long enough; the others fall back
        to Naive2 (see `fallback_forecast`), with a message.  Each seed is one run of the shared
        loop (checkpointed in ``out/runs/seed<k>`` when ``out`` is given, so a stopped command
        resumes); ``max_time``, ``budget`` and ``callbacks`` as in `Forecaster.fit`."""
        s = self.s
        start = time.monotonic()
        deadline = None if max_time is None else start + max_time
        need = min_length(self.context)
        short = [x.id for x in data.series if len(x) < need]
        if short and log:
            names = ", ".join(repr(i) for i in short[:5]) + (" ..." if len(short) > 5 else "")
            log(f"{len(short)} series shorter than {need} values (input window {self.context} + "
                f"1 target) cannot train the ES-RNN: {names}; they get the Naive2 forecast "
                f"(a shorter --context lowers the minimum)")
        used = [x for x in data.series if len(x) >= need]
        self.ids = [x.id for x in used]
        self.shifts = np.array([shift_of(x.values) for x in used])
        series = [x.values + sh for x, sh in zip(used, self.shifts)]
        weights = mase_weights(series, self.season) if s.es_weighting and used else None
        self.members = []
        stopped = None
        for k in range(s.ensemble if used else 0):
            model = ESRNN(self.config(len(series)), np.random.default_rng([s.seed, k]))
            init_seasons(model, series)
            task = ESRNNTask(model, series, s.es_batch, s.es_penalty, seed=s.seed * 1000 + k,
                             weights=weights)
            settings = run_settings(s, task)
            folder = None if out is None else Path(out) / "runs" / f"seed{k}"
            has = folder is not None and (folder / "meta.json").exists()
            share = None
            if deadline is not None:
                left = max(deadline - time.monotonic(), 1e-3)
                share = left / (s.ensemble - k) if budget else left
            summary = fit(task, settings, folder,
                          checkpoint=load_checkpoint(folder) if has else None, max_time=share,
                          fit_to_time=budget and share is not None, max_steps=settings.steps,
                          callbacks=[KeepLast(s.es_last_epochs, settings.steps,
                                              task.steps_per_epoch), *callbacks],
                          progress=False)
            if summary["stopped"] == "interrupted" or (summary["stopped"] == "max-time"
                                                       and not budget):
                stopped = summary["stopped"]
                break
            self.members += task.kept or [task.model.state_dict()]
        if stopped:
            self.members = []
        self.info = {"epochs": s.es_epochs, "series": len(data), "windows": sum(
            max(len(v) - self.context, 0) for v in series), "fallback": short,
            "members": len(self.members), "seconds": time.monotonic() - start, "history": {},
            "stopped": stopped}
        if log and used and not stopped:
            log(f"trained {s.ensemble} x ES-RNN ({s.cell} {s.layers}x{s.hidden}, input window "
                f"{self.context}, season {self.season}) on {len(used)} series, {s.es_epochs} "
                f"epochs, {self.info['seconds']:.1f}s")
        return self.info

    def _model_for(self, data: SeriesSet):
        """A model whose per-series parameters follow ``data``'s series (known ids take their
        learned ones; a series never trained on takes the median smoothing coefficients and
        its own classical seasonal indices) and the network of each member."""
        pos = {sid: k for k, sid in enumerate(self.ids)}
        rows = [pos.get(x.id, -1) for x in data.series]
        cfg = self.config(len(data.series))
        model = ESRNN(cfg, np.random.default_rng(0))
        return model, np.array(rows)

    def forecast(self, data: SeriesSet) -> list[dict]:
        """The H values after the end of every series: mean (the median of the ensemble's
        averaged quantiles), median, sd (from the 80% interval), lower/upper 80 and 95."""
        if data.freq.unit != self.freq.unit or data.freq.step != self.freq.step:
            raise ValueError(f"the data is {data.freq.name} but the model was trained on "
                             f"{self.freq.name} data")
        H = self.horizon
        model, rows = self._model_for(data)
        shifts = self._shifts(data, rows)
        need = min_length(self.context)  # as in training: shorter series get the fallback
        ok = [k for k, x in enumerate(data.series) if len(x) >= need and self.members]
        out: dict[int, dict] = {}
        if ok:
            series = [np.maximum(data.series[k].values + shifts[k], 1e-12) for k in ok]
            y, lengths = pad_batch(series, model.dtype)
            idx = np.array(ok)
            total = np.zeros((len(ok), H, len(model.cfg.quantiles)))
            for state in self.members:
                self._load_member(model, state, rows, series, ok)
                total += model.predict(y, lengths, idx)
            q = total / len(self.members) - shifts[idx][:, None, None]
            for j, k in enumerate(ok):
                lo95, lo80, med, up80, up95 = (q[j, :, i] for i in range(5))
                out[k] = {"mean": med, "median": med, "sd": (up80 - lo80) / (2 * Z80),
                          "lower_80": lo80, "upper_80": up80, "lower_95": lo95, "upper_95": up95}
        result = []
        for k, x in enumerate(data.series):
            f = out.get(k) or fallback_forecast(x.values, H, self.season)
            result.append({"id": x.id, "start": x.start + len(x) * data.freq.step, **f})
        return result

    input_names = ["x", "steps", "level", "season", "shift"]

    def onnx_inputs(self, data: SeriesSet) -> dict[str, np.ndarray]:
        """The feeds of this forecaster's ONNX graph (``rnnkit export onnx``) for ``data``: the
        part of `forecast` that runs each member's smoothing recursion over each whole series.

        x (M, N, P, C) float32: every member's windows (M = members, P = the longest series'
        positions, padded); steps (N,) int32: each series' positions; level (M, N) and season
        (M, N, H) float64: the level at the last value and the seasonal indices ahead; shift (N,)
        float64.  The graph's outputs are those of `forecast` (mean, median, sd, lower_80, ...,
        (N, H) each).  Every series needs ``context + 1`` values (no fallback in the graph).
        """
        need = min_length(self.context)
        short = [x.id for x in data.series if len(x) < need]
        if short or not self.members:
            raise ValueError(f"ONNX feeds need every series to hold at least {need} values and a "
                             f"trained model; too short: {short[:5]}")
        model, rows = self._model_for(data)
        shifts = self._shifts(data, rows)
        series = [np.maximum(x.values + sh, 1e-12) for x, sh in zip(data.series, shifts)]
        y, lengths = pad_batch(series, model.dtype)
        idx = np.arange(len(series))
        xs, levels, seasons = [], [], []
        for state in self.members:
            self._load_member(model, state, rows, series, list(idx))
            x, steps, level, season = model.inputs(y, lengths, idx)
            xs.append(x.astype(np.float32))
            levels.append(level.astype(np.float64))
            seasons.append(season.astype(np.float64))
        return {"x": np.stack(xs), "steps": steps.astype(np.int32), "level": np.stack(levels),
                "season": np.stack(seasons), "shift": np.asarray(shifts, np.float64)}

    def _shifts(self, data: SeriesSet, rows: np.ndarray) -> np.ndarray:
        return np.array([self.shifts[r] if r >= 0 else shift_of(x.values)
                         for x, r in zip(data.series, rows)])

    def _load_member(self, model: ESRNN, state: dict, rows: np.ndarray, series, ok) -> None:
        """Copy a member's network and the per-series parameters of ``rows`` into ``model``."""
        own = {k: v for k, v in state.items() if "." in k}           # the network's parameters
        for name, p, _ in model.named_parameters():
            if name in own:
                p[...] = own[name]
        known = rows >= 0
        for name in ("alpha_raw", "gamma_raw", "season_raw"):
            if name not in model.params:
                continue
            learned = state[name]
            target = model.params[name]
            target[known] = learned[rows[known]]
            if (~known).any():
                target[~known] = (np.median(learned, axis=0) if name != "season_raw" else 0.0)
        if "season_raw" in model.params and (~known).any():
            fresh = ESRNN(model.cfg, np.random.default_rng(0))
            new = [j for j, k in enumerate(ok) if rows[k] < 0]
            init_seasons(fresh, [series[j] if j in new else np.ones(1) for j in range(len(ok))])
            for j in new:
                model.params["season_raw"][ok[j]] = fresh.params["season_raw"][j]

    # -- checkpoints -------------------------------------------------------------------------
    def save(self, directory, data_options: dict, meta: dict | None = None) -> None:
        config = {"app": "forecast", "model": "esrnn", "settings": asdict(self.s),
                  "freq": self.freq.to_json(), "n_covariates": 0, "data": data_options,
                  "esrnn": self.config(len(self.ids)).to_json(), "ids": self.ids,
                  "members": len(self.members)}
        arrays = {f"member{k}": st for k, st in enumerate(self.members)}
        arrays["series"] = {"shift": np.asarray(self.shifts, np.float64)}
        save_checkpoint(directory, config=config, arrays=arrays,
                        meta={"info": {k: v for k, v in self.info.items() if k != "history"},
                              **(meta or {})})

    @classmethod
    def load_from(cls, directory, settings_cls) -> tuple["ESRNNForecaster", dict]:
        config, arrays, meta = load_checkpoint(directory)
        if "members" not in config:
            raise ValueError(f"{directory}: training has not finished; continue it with "
                             "rnnkit forecast train --resume")
        settings = from_dict(settings_cls, config.get("settings"), where=f"{directory}/config.json")
        fc = cls(settings, Frequency.from_json(config["freq"]), 0, info=meta.get("info", {}))
        fc.ids = [str(i) for i in config["ids"]]
        cfg = ESRNNConfig.from_json(config["esrnn"])
        if cfg != fc.config(len(fc.ids)):
            raise ValueError(f"corrupt checkpoint: {directory}: ES-RNN sizes disagree with its "
                             "settings")
        shift = arrays.get("series", {}).get("shift")
        if shift is None or shift.shape != (len(fc.ids),):
            raise ValueError(f"corrupt checkpoint: {directory}: series.npz is missing or wrong")
        fc.shifts = shift
        check = ESRNN(cfg, np.random.default_rng(0))
        for k in range(int(config["members"])):
            if f"member{k}" not in arrays:
                raise ValueError(f"corrupt checkpoint: {directory}: member{k}.npz is missing")
            check.load_state_dict(arrays[f"member{k}"])  # names, shapes, dtypes
            fc.members.append(arrays[f"member{k}"])
        return fc, config["data"]
