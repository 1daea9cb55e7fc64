"""Training and using a global forecasting model over one or many series.

One network is trained on the windows (`windows.py`) of all series (the DeepAR way); per-series
scaling makes series of any level and unit look alike.  Fitting (`Forecaster.fit`):

1. Split: the last max(horizon, val_fraction * windows) windows of every series validate; the
   training windows end ``horizon`` before them, so no training target is a validation target.
2. Linear start: the head's linear path (scaled context + future calendar -> mean) is fitted in
   closed form by ridge regression, shrunk towards a benchmark forecast (naive, context mean or
   seasonal naive) with the (benchmark, penalty) pair that forecasts the validation windows best
   (`fit_linear`).  The recurrent part starts silent, so step 0 *is* that forecast.
3. Early stopping: the shared training loop (`rnnkit.train.engine.fit`) with Adam on the
   Gaussian NLL; the validation MAE of the scaled forecasts, measured once per pass over the
   windows (``--eval-every``), picks the best step (0 included: the recurrent part must earn its
   place), ``--patience`` evaluations without improvement stop it.  The predicted variances are
   calibrated on the validation windows (`calibrate_variance`).
4. Refit: ``ensemble`` members (seeds) are trained again from the ridge start on every window for
   the best number of passes, so that the most recent data is learnt from too; their forecasts
   are averaged (means average, variances combine as a mixture's).

Each network is one run of the loop; with an output folder each keeps its checkpoint in
``runs/<name>`` there, so ``--resume`` continues exactly where a stopped command left off.
Every random draw comes from generators seeded by ``seed``: same seed, same data, same model.
"""
from __future__ import annotations

import dataclasses
import hashlib
import math
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ...data.batching import EpochBatches
from ...data.series import Frequency, SeriesSet, denormalize
from ...nn import GaussianNLLLoss, frozen
from ...train.checkpoint import load_checkpoint, save_checkpoint
from ...train.engine import fit
from ...train.mpi import world
from ...train.settings import TrainSettings, at_least, field, from_dict, with_defaults
from ...train.task import Task
from .model import ForecastNet, NetConfig
from .windows import Windows, WindowInputs, assemble, training_windows, window_inputs

Z80, Z95 = 1.2815515655446004, 1.959963984540054  # standard normal quantiles 0.9 and 0.975
EPOCHS = 200      # default --steps: this many passes over the training windows
MAX_PASS = 50     # default --eval-every: one pass over the windows, at most this many batches


@dataclass
class ForecastSettings(with_defaults(
        TrainSettings,
        shown={"steps": f"{EPOCHS} passes over the training windows",
               "eval_every": f"one pass over the training windows, at most {MAX_PASS} steps"},
        cell="lstm", hidden=32, layers=1, dropout=0.0, batch=32, lr=1e-3, min_lr=1e-3,
        warmup=0, steps=None, eval_every=None, clip=1.0, val_fraction=0.2)):
    """Model and training settings; the defaults suit short business and science series."""

    horizon: int | None = field(None, "steps to forecast (required)")
    season: int | None = field(None, "seasonal period m (default: 12 monthly, 4 quarterly, 52 weekly, "
                                     "7 daily, 24 hourly, else 1)")
    context: int | None = field(None, "context window length (default: 2 * max(m, horizon), "
                                      "at least 8)")
    patience: int = field(20, "stop after this many evaluations without a better validation error")
    ensemble: int = field(3, "models (seeds) averaged")
    refit: bool = field(True, "after early stopping, retrain on all windows for the best number "
                              "of steps")
    loss: str = field("nll", "point loss: nll, or mse / mae for the mean with nll for the variance",
                      choices=("nll", "mse", "mae"))
    linear_init: bool = field(True, "start the head's linear path at the ridge-regression forecast")
    recurrent: bool = field(True, "train the network; --no-recurrent keeps the ridge forecast alone")
    model: str = field("auto", "esrnn: per-series exponential smoothing learned jointly with a "
                               "global RNN (Smyl's M4 winner); direct: an RNN over scaled windows "
                               "with a Gaussian head; auto: esrnn for a seasonal collection of 32 "
                               "or more series without covariates, else direct",
                       choices=("auto", "esrnn", "direct"))
    es_epochs: int = field(20, "ES-RNN: passes over the series per ensemble member")
    es_min_steps: int = field(400, "ES-RNN: at least this many updates per member (a data set "
                                   "of few series makes few updates per pass)")
    es_lr: float = field(5e-3, "ES-RNN: peak learning rate (Adam, warm-up then cosine decay)")
    es_batch: int = field(32, "ES-RNN: series per batch")
    es_penalty: float = field(50.0, "ES-RNN: level-variability penalty (smoothness of the level)")
    es_weighting: bool = field(True, "ES-RNN: weigh each series' loss by its level over its MASE "
                                     "denominator (the loss in MASE's units)")
    es_last_epochs: int = field(3, "ES-RNN: the parameters of this many last epochs join the "
                                   "ensemble")

    def check(self) -> None:
        super().check()
        if self.horizon is None or self.horizon < 1:
            raise ValueError(f"--horizon must be >= 1, got {self.horizon}")
        at_least(self, "ensemble", "season", "context", "patience")
        if self.val_fraction <= 0:
            raise ValueError(f"--val-fraction {self.val_fraction} leaves no validation windows; the "
                             "forecaster needs them to choose how long to train (e.g. 0.2)")
        for name in ("es_epochs", "es_batch", "es_last_epochs", "es_min_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        if not (math.isfinite(self.es_lr) and self.es_lr > 0 and self.es_penalty >= 0):
            raise ValueError("--es-lr must be > 0 and --es-penalty >= 0")
        if self.model not in ("auto", "esrnn", "direct"):
            raise ValueError(f"--model must be auto, esrnn or direct, got {self.model!r}")


def resolve(s: ForecastSettings, freq: Frequency) -> tuple[int, int]:
    """(season, context) of these settings for data of frequency ``freq``."""
    season = s.season if s.season is not None else freq.season
    context = s.context if s.context is not None else max(8, 2 * max(season, s.horizon))
    return season, context


def schedule_for(s: ForecastSettings, windows: int) -> ForecastSettings:
    """The settings of one network's run on ``windows`` training windows: --eval-every defaults
    to one pass over them (at most MAX_PASS batches), --steps to EPOCHS such passes."""
    every = s.eval_every or min(math.ceil(windows / s.batch), MAX_PASS)
    return dataclasses.replace(s, eval_every=every, steps=s.steps or EPOCHS * every)


class Deadline:
    """Shares a time budget (seconds, or None for no limit) between the runs of one command."""

    def __init__(self, seconds: float | None) -> None:
        self.end = None if seconds is None else time.monotonic() + seconds

    def share(self, runs_left: int) -> float | None:
        """Seconds for the next of ``runs_left`` equal runs (None: no limit)."""
        if self.end is None:
            return None
        return max(self.end - time.monotonic(), 1e-3) / max(runs_left, 1)

    def left(self) -> float | None:
        return None if self.end is None else max(self.end - time.monotonic(), 1e-3)


# ----------------------------------------------------------------------------- training

def _ensemble(means: list[np.ndarray], variances: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Mean and variance of an equal mixture of Gaussians."""
    m = np.mean(means, axis=0)
    second = np.mean([v + mu * mu for mu, v in zip(means, variances)], axis=0)
    return m, np.maximum(second - m * m, np.min(variances, axis=0))


def _predict_z(net: ForecastNet, w: Windows, batch: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    net.eval()
    means, variances = [], []
    with frozen():
        for i in range(0, len(w), batch):
            mean, var = net.forward(w.x[i : i + batch], w.extra[i : i + batch])
            means.append(mean.astype(np.float64))
            variances.append(var.astype(np.float64))
    net.train()
    return np.concatenate(means), np.concatenate(variances)


def _val_error(net: ForecastNet, w: Windows) -> float:
    """Mean absolute error of the scaled point forecasts (what MASE measures)."""
    mean, _ = _predict_z(net, w)
    return float(np.mean(np.abs(mean - w.target)))


RIDGE = (0.01, 0.1, 1.0, 10.0, 100.0)  # penalties tried (times the number of windows)


def fit_linear(train: Windows, val: Windows | None, context: int, season: int,
               choice: tuple[str, float] | None = None):
    """Ridge regression of the scaled targets on the head's extra inputs (the linear path).

    The penalty (intercept included) shrinks the weights towards a benchmark forecast, the
    "prior": the naive one (all zero), the mean of the context or, for seasonal data, the
    seasonal-naive one.  With ``val`` the (prior, penalty) pair that forecasts the validation
    windows best is chosen, else ``choice``.  Penalties that would leave more than n / 4
    effective parameters are not tried: the windows overlap, so n overstates the information.
    Returns (W (H, E), b (H,), residual variance (H,), (prior, penalty)).
    """
    X = train.extra.astype(np.float64)                        # (n, E)
    Y = train.target.astype(np.float64)                       # (n, H)
    n, E = X.shape
    H = Y.shape[1]
    S = np.zeros((H, E))                                      # seasonal naive: z[N - m + h % m]
    if 1 < season <= context:
        S[np.arange(H), context - season + np.arange(H) % season] = 1.0
    M = np.zeros((H, E))                                      # the mean of the context
    M[:, :context] = 1.0 / context
    priors = {"naive": np.zeros((H, E)), "mean": M}
    if S.any():
        priors["seasonal"] = S
    X1 = np.concatenate([X, np.ones((n, 1))], axis=1)         # the intercept is penalised too
    evals, evecs = np.linalg.eigh(X1.T @ X1)                  # (E + 1,), (E + 1, E + 1)
    evals = np.maximum(evals, 0.0)
    dof = {lam: float(np.sum(evals / (evals + lam * n))) for lam in RIDGE}
    lams = [lam for lam in RIDGE if dof[lam] <= n / 4] or [RIDGE[-1]]
    if choice is not None:
        candidates = [choice]
    elif val is None:
        candidates = [("naive", 1.0)]
    else:
        candidates = [(p, lam) for p in priors for lam in lams]
    best = None
    for prior, lam in candidates:
        P = priors.get(prior, priors["naive"])
        proj = evecs.T @ (X1.T @ (Y - X @ P.T))               # (E + 1, H): what the prior misses
        W1 = (evecs @ (proj / (evals + lam * n)[:, None])).T  # (H, E + 1)
        W, b = W1[:, :E] + P, W1[:, E]
        err = 0.0 if val is None else float(np.mean(np.abs(val.extra @ W.T + b - val.target)))
        if best is None or err < best[0]:
            best = (err, (prior, lam), W, b)
    _, chosen, W, b = best
    resid = Y - (X @ W.T + b)
    return W, b, np.mean(resid * resid, axis=0), chosen


def calibrate_variance(net: ForecastNet, val: Windows) -> np.ndarray:
    """Per-step factors (H,) that make the predicted variances fit the validation errors.

    Errors on unseen windows exceed the in-sample ones the NLL learnt from; the factor
    c_h = mean((target - mean)^2 / var) maximises the validation likelihood of var * c_h.
    Kept within [1/4, 25] so that a short validation slice cannot make intervals absurd.
    """
    mean, var = _predict_z(net, val)
    return np.clip(np.mean((val.target - mean) ** 2 / var, axis=0), 0.25, 25.0)


class NetTask(Task):
    """One forecasting network on a set of windows: the Gaussian NLL (or the point loss for the
    mean), validated by the MAE of the scaled forecasts where ``val`` is given."""

    app = "forecast"
    metric = "mae"
    loss_name = "Gaussian NLL"

    def __init__(self, cfg: NetConfig, s: ForecastSettings, train: Windows, val: Windows | None,
                 member: int, linear=None, data: str = "") -> None:
        self.s, self.train_w, self.val, self.data = s, train, val, data
        self.model = ForecastNet(cfg, np.random.default_rng([s.seed, member]))
        self.linear = linear is not None  # the network starts as the ridge forecast
        if self.linear:
            self.model.set_linear(*linear[:3])
        self.batches = EpochBatches(len(train), s.batch, [s.seed, member, 1])
        self.loss_fn = GaussianNLLLoss()

    def describe(self) -> str:
        s = self.s
        return (f"{len(self.train_w):,} training and {0 if self.val is None else len(self.val):,} "
                f"validation windows, {s.cell} {s.layers}x{s.hidden}")

    def batch(self, step: int) -> np.ndarray:
        return self.batches[step]

    def loss(self, idx) -> float:
        w, net = self.train_w, self.model
        mean, var = net.forward(w.x[idx], w.extra[idx])
        loss = float(self.loss_fn.forward(mean, w.target[idx], var))
        dmean, dvar = self.loss_fn.backward()
        if self.s.loss != "nll":  # the mean learns from its own loss; the variance from the NLL
            diff = mean - w.target[idx]
            g = 2 * diff if self.s.loss == "mse" else np.sign(diff)
            dmean = (g / diff.size).astype(mean.dtype)
        net.backward(dmean, dvar)
        return loss

    def evaluate_shard(self, rank: int, size: int) -> dict[str, tuple[float, float]]:
        """Absolute errors of the scaled forecasts of rank's share of the validation windows."""
        if self.val is None:
            return {}
        val = self.val.take(np.arange(rank, len(self.val), size))
        if not len(val):
            return {"mae": (0.0, 0.0)}
        mean, _ = _predict_z(self.model, val)
        return {"mae": (float(np.sum(np.abs(mean - val.target))), float(val.target.size))}

    def data_digest(self) -> str:
        """The series' fingerprint (``data``, from the values read) and the windows' sizes."""
        sizes = [len(self.train_w), 0 if self.val is None else len(self.val), self.train_w.x.shape]
        return hashlib.sha256(f"{self.data} {sizes}".encode()).hexdigest()

    def rngs(self) -> dict[str, np.random.Generator]:
        return {"dropout": self.model.rnn.rng}


def fingerprint(data: SeriesSet) -> str:
    """sha256 of every series' values and covariates (a resumed run must see the same data)."""
    h = hashlib.sha256()
    for s in data.series:
        h.update(np.ascontiguousarray(s.values, np.float64).tobytes())
        h.update(np.ascontiguousarray(s.covariates, np.float64).tobytes())
    return h.hexdigest()


class Forecaster:
    """A trained ensemble with everything needed to forecast new data (and to save itself).

    What ``rnnkit.load`` gives for a forecast run: ``forecast(data)``.
    """

    def __init__(self, settings: ForecastSettings, freq: Frequency, n_covariates: int,
                 nets: list[ForecastNet] | None = None, info: dict | None = None) -> None:
        settings.check()
        self.s, self.freq, self.n_covariates = settings, freq, n_covariates
        self.season, self.context = resolve(settings, freq)
        self.nets = nets or []
        self.info = info or {}
        # the variance of each step's forecast is multiplied by this (calibrated on validation)
        self.var_scale = np.ones(settings.horizon)

    @property
    def horizon(self) -> int:
        return self.s.horizon

    def net_config(self) -> NetConfig:
        c = self.freq.calendar_size * 2
        return NetConfig(input_size=1 + c + self.n_covariates,
                         extra_size=self.context + self.horizon * c, horizon=self.horizon,
                         cell=self.s.cell, hidden=self.s.hidden, layers=self.s.layers,
                         dropout=self.s.dropout, dtype=self.s.dtype)

    def fit(self, data: SeriesSet, out: str | Path | None = None, max_time: float | None = None,
            budget: bool = True, log=None, callbacks=()) -> dict:
        """Train the ensemble on every window of ``data``; returns a summary (``info``).

        out: a folder for the networks' checkpoints (``out/runs/<name>``; a run found there is
        continued, a finished one reused).  max_time: seconds this call may train; ``budget``
        shares them between the networks and fits each one's steps to its share (the model
        completes), else it is a hard limit after which ``info["stopped"]`` says "max-time"
        and the model is incomplete (fit again with the same ``out`` to continue).  callbacks:
        `rnnkit.train.engine.Callback`s of every network's run (``--diagnose`` writes to each
        run's folder).
        """
        s, H, N = self.s, self.horizon, self.context
        deadline = Deadline(max_time)
        train, val, full = training_windows(data, N, H, np.dtype(s.dtype), s.val_fraction)
        cfg = self.net_config()
        start = time.monotonic()
        digest, group = fingerprint(data), world()
        lin = lin_full = None
        if val is None:
            # too little data to validate anything: the ridge forecast shrunk firmly towards the
            # (seasonal) naive one, with no recurrent training, unless asked for without it
            if s.linear_init:
                prior = "seasonal" if 1 < self.season <= N else "naive"
                lin_full = fit_linear(full, None, N, self.season, choice=(prior, 10.0))
        elif s.linear_init:
            lin = fit_linear(train, val, N, self.season)
            lin_full = fit_linear(full, None, N, self.season, choice=lin[3])
        select = val is not None and s.refit
        runs_left = (s.ensemble + select) if s.recurrent else 0
        history, stopped = {}, None

        def run(name, task, settings, patience=None):
            """One network's run of the loop (None when it has no step to train)."""
            nonlocal runs_left, stopped
            if settings.steps < 1:  # nothing to train: the linear start is the model
                return None
            folder = None if out is None else Path(out) / "runs" / name
            # under MPI rank 0 alone reads the run folder (fit gives its checkpoint to every rank)
            has = folder is not None and group.root and (folder / "meta.json").exists()
            share = deadline.share(runs_left) if budget else deadline.left()
            summary = fit(task, settings, folder, checkpoint=load_checkpoint(folder) if has else None,
                          max_time=share, fit_to_time=budget and share is not None,
                          max_steps=settings.steps, patience=patience,
                          eval_at_start=patience is not None and task.linear,
                          callbacks=callbacks, progress=False)
            runs_left -= 1
            if summary["stopped"] == "interrupted" or (summary["stopped"] == "max-time" and not budget):
                stopped = summary["stopped"]
            if task.val is not None:  # early stopping: the best step's parameters
                task.model.load_state_dict(summary["run"].best_params)
            return summary

        passes = None
        if select:
            # one early-stopped run picks the number of passes; every member then trains on all
            sel = schedule_for(s, len(train))
            task = NetTask(cfg, sel, train, val, 0, lin, digest)
            summary = run("select", task, sel, s.patience) if s.recurrent else None
            if stopped:
                return self._stopped(stopped, start)
            history = summary["run"].history if summary else {}
            passes = summary["best_step"] / sel.eval_every if summary else 0.0
            self.var_scale = calibrate_variance(task.model, val)
        self.nets = []
        for k in range(1, s.ensemble + 1):
            if val is not None and not s.refit:  # every member early-stopped on its own
                member = schedule_for(s, len(train))
                if not s.recurrent:
                    member = dataclasses.replace(member, steps=0)
                task = NetTask(cfg, member, train, val, k, lin, digest)
                summary = run(f"member{k}", task, member, s.patience)
                if k == 1:
                    history = summary["run"].history if summary else {}
                    self.var_scale = calibrate_variance(task.model, val)
            else:
                member = schedule_for(s, len(full))
                if passes is not None:  # the selection run's number of passes over the windows
                    member = dataclasses.replace(member, steps=round(passes * member.eval_every))
                elif not s.recurrent or (val is None and s.linear_init):
                    member = dataclasses.replace(member, steps=0)  # the ridge forecast alone
                task = NetTask(cfg, member, full, None, k, lin_full, digest)
                run(f"member{k}", task, member)
            if stopped:
                return self._stopped(stopped, start)
            task.model.eval()
            self.nets.append(task.model)
        epochs = None if passes is None else round(passes)
        self.info = {"epochs": epochs, "windows": len(full), "series": len(data),
                     "validation_windows": 0 if val is None else len(val),
                     "linear": None if lin_full is None else list(lin_full[3]),
                     "seconds": time.monotonic() - start, "history": history, "stopped": None}
        if log:
            log(f"trained {s.ensemble} x {s.cell} {s.layers}x{s.hidden} on {len(full)} windows of "
                f"{len(data)} series, {epochs if epochs is not None else '-'} passes, "
                f"{self.info['seconds']:.1f}s")
        return self.info

    def validation_task(self, data: SeriesSet) -> NetTask:
        """The network `fit` early-stops on: one network from the ridge start, trained on the
        training windows and validated by the MAE of its scaled forecasts on the validation
        windows (what ``rnnkit compare forecast`` races)."""
        s = self.s
        train, val, _ = training_windows(data, self.context, self.horizon, np.dtype(s.dtype),
                                         s.val_fraction)
        if val is None:
            raise ValueError("the series are too short to hold out validation windows: give "
                             "longer series, a shorter --horizon or a larger --val-fraction")
        lin = fit_linear(train, val, self.context, self.season) if s.linear_init else None
        return NetTask(self.net_config(), s, train, val, 0, lin)

    def _stopped(self, how: str, start: float) -> dict:
        self.nets = []
        self.info = {"stopped": how, "seconds": time.monotonic() - start}
        return self.info

    @property
    def input_names(self) -> list[str]:
        """The `WindowInputs` this model reads (its ONNX graph's inputs): context and scale,
        then calendar where its frequency has calendar features, covariates where it has any."""
        return (["context", "scale"] + ["calendar"] * (self.freq.calendar_size > 0)
                + ["covariates"] * (self.n_covariates > 0))

    def window_inputs(self, data: SeriesSet) -> WindowInputs:
        """The inputs of one window per series, ending at the series' last value."""
        if data.freq.unit != self.freq.unit or data.freq.step != self.freq.step:
            raise ValueError(f"the data is {data.freq.name} but the model was trained on "
                             f"{self.freq.name} data")
        if len(data.covariates) != self.n_covariates:
            raise ValueError(f"the model needs {self.n_covariates} covariates, the data has "
                             f"{len(data.covariates)}")
        return WindowInputs.concat([window_inputs(s, self.freq, np.array([len(s)]), self.context,
                                                  self.horizon) for s in data.series])

    def onnx_inputs(self, data: SeriesSet) -> dict[str, np.ndarray]:
        """The feeds of this forecaster's ONNX graph (``rnnkit export onnx``) for ``data``.

        float64 arrays keyed by `input_names`: context (N, context), scale (N,) [, calendar
        (N, context + horizon, 2c)] [, covariates (N, context, k)]; the graph's outputs are then
        those of `forecast` (mean, sd, lower_80, ..., (N, horizon) each, in series order).
        """
        inp = self.window_inputs(data)
        return {name: getattr(inp, name).astype(np.float64) for name in self.input_names}

    def forecast(self, data: SeriesSet) -> list[dict]:
        """Forecast the ``horizon`` values after the end of every series.

        Returns one dict per series: id, start (time index of the first forecast), mean, sd,
        lower_80 / upper_80 / lower_95 / upper_95 (arrays (H,), original units).
        """
        if not self.nets:
            raise ValueError("the model is not trained")
        w = assemble(self.window_inputs(data), np.dtype(self.s.dtype))
        outs = [_predict_z(net, w) for net in self.nets]
        mean_z, var_z = _ensemble([o[0] for o in outs], [o[1] for o in outs])
        var_z = var_z * self.var_scale
        mean = denormalize(mean_z, w.level, w.scale)
        sd = np.sqrt(var_z) * w.scale[:, None]
        result = []
        for k, s in enumerate(data.series):
            result.append({"id": s.id, "start": s.start + len(s) * data.freq.step,
                           "mean": mean[k], "sd": sd[k],
                           "lower_80": mean[k] - Z80 * sd[k], "upper_80": mean[k] + Z80 * sd[k],
                           "lower_95": mean[k] - Z95 * sd[k], "upper_95": mean[k] + Z95 * sd[k]})
        return result

    # -- checkpoints -------------------------------------------------------------------------
    def save(self, directory, data_options: dict, meta: dict | None = None) -> None:
        """Write the trained ensemble (``config.json`` + one ``member<k>.npz`` each)."""
        config = {"app": "forecast", "settings": asdict(self.s), "freq": self.freq.to_json(),
                  "n_covariates": self.n_covariates, "data": data_options,
                  "net": self.net_config().to_json(), "members": len(self.nets)}
        arrays = {f"member{k}": net.state_dict() for k, net in enumerate(self.nets)}
        arrays["calibration"] = {"var_scale": self.var_scale}
        save_checkpoint(directory, config=config, arrays=arrays,
                        meta={"info": {k: v for k, v in self.info.items() if k != "history"},
                              **(meta or {})})

    @classmethod
    def load(cls, directory) -> tuple["Forecaster", dict]:
        """(forecaster, data options) from a checkpoint written by `save`."""
        config, arrays, meta = load_checkpoint(directory)
        if config.get("app") != "forecast":
            raise ValueError(f"{directory} is not a forecasting checkpoint")
        if "members" not in config:
            raise ValueError(f"{directory}: training has not finished; continue it with "
                             "rnnkit forecast train --resume")
        settings = from_dict(ForecastSettings, config.get("settings"), where=f"{directory}/config.json")
        try:
            fc = cls(settings, Frequency.from_json(config["freq"]), int(config["n_covariates"]),
                     info=meta.get("info", {}))
            cfg = NetConfig(**config["net"])
        except (KeyError, TypeError) as e:
            raise ValueError(f"corrupt checkpoint: {directory}/config.json: bad entry ({e})") from None
        if cfg != fc.net_config():
            raise ValueError(f"corrupt checkpoint: {directory}: network sizes disagree with its "
                             "settings")
        scale = arrays.get("calibration", {}).get("var_scale")
        if scale is None or scale.shape != (settings.horizon,):
            raise ValueError(f"corrupt checkpoint: {directory}: calibration.npz is missing or wrong")
        fc.var_scale = scale.astype(np.float64)
        for k in range(int(config["members"])):
            if f"member{k}" not in arrays:
                raise ValueError(f"corrupt checkpoint: {directory}: member{k}.npz is missing")
            net = ForecastNet(cfg, np.random.default_rng(0))
            net.load_state_dict(arrays[f"member{k}"])
            net.eval()
            fc.nets.append(net)
        return fc, config["data"]


def save_plan(directory: Path, settings: ForecastSettings, data_options: dict, data: SeriesSet) -> None:
    """The checkpoint a forecast run starts with: what ``--resume`` needs before the ensemble
    exists (settings, data options and the data's fingerprint); older network runs are removed."""
    shutil.rmtree(directory / "runs", ignore_errors=True)
    save_checkpoint(directory, config={"app": "forecast", "settings": asdict(settings),
                                       "data": data_options, "fingerprint": fingerprint(data)},
                    arrays={}, meta={})


def load_model(directory, which: str = "best") -> Forecaster:
    """The forecaster of a run folder; a forecasting checkpoint holds one set of parameters (the
    trained ensemble), so ``which`` (best / latest) changes nothing."""
    return Forecaster.load(directory)[0]
