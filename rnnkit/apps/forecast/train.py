"""Training and using a global forecasting model over one or many series.

Every series is cut into windows: ``context`` values before an origin (scaled per window and
series, see `rnnkit.data.series.normalize_windows`) and the ``horizon`` values after it.  One
network is trained on the windows of all series (the DeepAR way); per-series scaling makes series
of any level and unit look alike.

Fitting (`Forecaster.fit`):

1. Split: the last max(horizon, val_fraction * windows) windows of every series validate; the
   training windows end ``horizon`` before them, so no training target is a validation target.
2. Linear start: the head's linear path (scaled context + future calendar -> mean) is fitted in
   closed form by ridge regression, shrunk towards a benchmark forecast (naive, context mean or
   seasonal naive) with the (benchmark, penalty) pair that forecasts the validation windows best
   (`fit_linear`).  The recurrent part starts silent, so epoch 0 *is* that forecast.
3. Early stopping: Adam on the Gaussian NLL with global-norm clipping; the validation MAE of the
   scaled forecasts picks the best epoch (0 included: the recurrent part must earn its place).
   The predicted variances are calibrated on the validation windows (`calibrate_variance`).
4. Refit: ``ensemble`` members (seeds) are trained again from the ridge start on every window for
   the best number of epochs, so that the most recent data is learnt from too; their forecasts
   are averaged (means average, variances combine as a mixture's).

Every random draw comes from generators seeded by ``seed``: same seed, same data, same model.
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, fields

import numpy as np

from ...data.series import (Frequency, Series, SeriesSet, context_windows, denormalize,
                            normalize_windows, series_scale)
from ...nn import GaussianNLLLoss, no_grad
from ...nn.optim import Adam, clip_grad_norm
from ...train.checkpoint import load_checkpoint, save_checkpoint
from ...train.settings import field, from_dict
from .model import ForecastNet, NetConfig

Z80, Z95 = 1.2815515655446004, 1.959963984540054  # standard normal quantiles 0.9 and 0.975


@dataclass
class ForecastSettings:
    """Model and training settings; the defaults suit short business and science series."""

    horizon: int | None = field(None, "steps to forecast (required)")
    season: int | None = field(None, "seasonal period m (default: 12 monthly, 4 quarterly, 52 weekly, "
                                     "7 daily, 24 hourly, else 1)")
    context: int | None = field(None, "context window length (default: 2 * max(m, horizon), "
                                      "at least 8)")
    cell: str = field("lstm", "recurrent cell", choices=("lstm", "gru", "rnn"))
    hidden: int = field(32, "hidden units per layer")
    layers: int = field(1, "recurrent layers")
    dropout: float = field(0.0, "dropout between recurrent layers")
    epochs: int = field(200, "most epochs per model (early stopping usually ends sooner; 0: the "
                             "ridge forecast alone)")
    patience: int = field(20, "stop after this many epochs without a better validation error")
    batch: int = field(32, "windows per batch")
    batches_per_epoch: int = field(50, "most batches per epoch (large data sets sample windows)")
    lr: float = field(1e-3, "learning rate (Adam)")
    clip: float = field(1.0, "clip gradients to this global norm")
    ensemble: int = field(3, "models (seeds) averaged")
    val_fraction: float = field(0.2, "fraction of each series' windows (at least horizon) that "
                                     "validates for early stopping")
    refit: bool = field(True, "after early stopping, retrain on all windows for the best epoch count")
    max_time: float | None = field(None, "seconds the whole command may train (stops early, cleanly)")
    seed: int = field(0, "random seed")
    dtype: str = field("float32", "float32 or float64", choices=("float32", "float64"))
    loss: str = field("nll", "point loss: nll, or mse / mae for the mean with nll for the variance",
                      choices=("nll", "mse", "mae"))
    linear_init: bool = field(True, "start the head's linear path at the ridge-regression forecast")
    model: str = field("direct", "esrnn: per-series exponential smoothing learned jointly with a "
                                 "global RNN (Smyl's M4 winner); direct: an RNN over scaled "
                                 "windows with a Gaussian head", choices=("esrnn", "direct"))
    es_epochs: int = field(20, "ES-RNN: passes over the series per ensemble member")
    es_lr: float = field(3e-3, "ES-RNN: peak learning rate (Adam, warm-up then cosine decay)")
    es_batch: int = field(32, "ES-RNN: series per batch")
    es_penalty: float = field(50.0, "ES-RNN: level-variability penalty (smoothness of the level)")
    es_weighting: bool = field(False, "ES-RNN: weigh each series' loss by its level over its MASE "
                                      "denominator")
    es_last_epochs: int = field(3, "ES-RNN: the parameters of this many last epochs join the "
                                   "ensemble")

    def check(self) -> None:
        if self.horizon is None or self.horizon < 1:
            raise ValueError(f"--horizon must be >= 1, got {self.horizon}")
        if self.epochs < 0:
            raise ValueError(f"--epochs must be >= 0, got {self.epochs}")
        for name in ("hidden", "layers", "batch", "ensemble", "batches_per_epoch"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        for name in ("season", "context"):
            v = getattr(self, name)
            if v is not None and v < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {v}")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ValueError(f"--val-fraction must be in [0, 1), got {self.val_fraction}")
        if self.patience < 0:
            raise ValueError(f"--patience must be >= 0, got {self.patience}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"--dropout must be in [0, 1), got {self.dropout}")
        if not (self.lr > 0 and self.clip > 0):
            raise ValueError("--lr and --clip must be > 0")
        for name in ("es_epochs", "es_batch", "es_last_epochs"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        if not (self.es_lr > 0 and self.es_penalty >= 0):
            raise ValueError("--es-lr must be > 0 and --es-penalty >= 0")
        if self.model not in ("esrnn", "direct"):
            raise ValueError(f"--model must be esrnn or direct, got {self.model!r}")
        if self.max_time is not None and self.max_time <= 0:
            raise ValueError(f"--max-time must be > 0, got {self.max_time}")


def resolve(s: ForecastSettings, freq: Frequency) -> tuple[int, int]:
    """(season, context) of these settings for data of frequency ``freq``."""
    season = s.season if s.season is not None else freq.season
    context = s.context if s.context is not None else max(8, 2 * max(season, s.horizon))
    return season, context


class Deadline:
    """Shares a time budget (seconds, or None for no limit) between the runs of one command."""

    def __init__(self, seconds: float | None) -> None:
        self.end = None if seconds is None else time.monotonic() + seconds

    def share(self, runs_left: int) -> float | None:
        """The monotonic time by which the next of ``runs_left`` equal runs should stop."""
        if self.end is None:
            return None
        now = time.monotonic()
        return now + max(self.end - now, 0.0) / max(runs_left, 1)

    def part(self, parts_left: int) -> "Deadline":
        """A deadline for the next of ``parts_left`` equal parts of what is left."""
        part = Deadline(None)
        part.end = self.share(parts_left)
        return part


# ----------------------------------------------------------------------------- features

def _standardize_covariates(cov: np.ndarray) -> np.ndarray:
    """Per-series standardisation of covariates (T, C) from the history itself."""
    if cov.shape[1] == 0:
        return cov
    mean, std = cov.mean(axis=0), cov.std(axis=0)
    std = np.where(std > 1e-12 * np.maximum(1.0, np.abs(mean)), std, 1.0)
    return (cov - mean) / std


@dataclass
class Windows:
    """Network inputs for a set of windows, plus what turns outputs back into values."""

    x: np.ndarray       # (n, N, F) per-step inputs
    extra: np.ndarray   # (n, E) head inputs: scaled context + future calendar
    level: np.ndarray   # (n,) level of each window (original units)
    scale: np.ndarray   # (n,) scale of each window's series
    target: np.ndarray | None  # (n, H) scaled targets, or None

    def __len__(self) -> int:
        return len(self.level)

    def take(self, idx: np.ndarray) -> "Windows":
        return Windows(self.x[idx], self.extra[idx], self.level[idx], self.scale[idx],
                       None if self.target is None else self.target[idx])


@dataclass
class WindowInputs:
    """What windows are made of, in original units: the part of `make_windows` that needs the
    whole series (and the inputs of a forecaster exported to ONNX, `Forecaster.onnx_inputs`)."""

    context: np.ndarray     # (n, N) the N values before each origin, left-padded by the first
    scale: np.ndarray       # (n,) the series' scale (`series_scale` of the history)
    calendar: np.ndarray    # (n, N + H, 2c) calendar features of the context and horizon steps
    covariates: np.ndarray  # (n, N, k) the context steps' covariates, standardised per series

    @staticmethod
    def concat(parts: list["WindowInputs"]) -> "WindowInputs":
        return WindowInputs(*(np.concatenate([getattr(p, f.name) for p in parts])
                              for f in fields(WindowInputs)))


def window_inputs(s: Series, freq: Frequency, origins: np.ndarray, context: int, horizon: int,
                  history: int | None = None) -> WindowInputs:
    """The inputs of the windows of one series at ``origins`` (see `make_windows`)."""
    origins = np.asarray(origins, np.int64)
    n_hist = len(s) if history is None else history
    values = s.values[:n_hist]
    steps = origins[:, None] + np.arange(-context, horizon)[None, :]       # (n, N + H) positions
    cal = freq.calendar(s.start + freq.step * steps.reshape(-1))
    return WindowInputs(
        context=context_windows(values, origins, context),                 # (n, N)
        scale=np.full(len(origins), series_scale(values)),
        calendar=cal.reshape(len(origins), context + horizon, -1),         # (n, N + H, 2c)
        covariates=context_windows(_standardize_covariates(s.covariates[:n_hist]), origins,
                                   context))                               # (n, N, k)


def assemble(inp: WindowInputs, dtype, target: np.ndarray | None = None) -> Windows:
    """Network inputs from window inputs (and scaled targets from ``target`` (n, H)).

    z = (context - level) / scale with the last context value as level;
    x = [z, calendar of the context steps, covariates] per step, extra = [z, future calendar].
    An exported forecaster's ONNX graph repeats exactly this.
    """
    N = inp.context.shape[1]
    z, level, zt = normalize_windows(inp.context, inp.scale, target)
    x = np.concatenate([z[..., None], inp.calendar[:, :N], inp.covariates], axis=2)  # (n, N, F)
    extra = np.concatenate([z, inp.calendar[:, N:].reshape(len(z), -1)], axis=1)     # (n, E)
    return Windows(x.astype(dtype), extra.astype(dtype), level, inp.scale,
                   None if zt is None else zt.astype(dtype))


def make_windows(s: Series, freq: Frequency, origins: np.ndarray, context: int, horizon: int,
                 dtype, with_target: bool = True, history: int | None = None) -> Windows:
    """Windows of one series at ``origins`` (forecasts of values[o : o + horizon]).

    The scale comes from the series' first ``history`` values (default: all of it): the data a
    model may see, never the values a backtest fold holds out.
    """
    origins = np.asarray(origins, np.int64)
    tgt = None
    if with_target:  # never past the history
        values = s.values[: len(s) if history is None else history]
        tgt = values[origins[:, None] + np.arange(horizon)[None, :]]       # (n, H)
    return assemble(window_inputs(s, freq, origins, context, horizon, history), dtype, tgt)


def _concat(parts: list[Windows]) -> Windows:
    return Windows(np.concatenate([p.x for p in parts]), np.concatenate([p.extra for p in parts]),
                   np.concatenate([p.level for p in parts]), np.concatenate([p.scale for p in parts]),
                   np.concatenate([p.target for p in parts]))


def training_windows(data: SeriesSet, context: int, horizon: int, dtype,
                     val_fraction: float = 0.2):
    """(train, validation, all) windows of every series; validation None when no series can spare any.

    Origins run from half a context into the series (earlier ones are left-padded) to
    len - horizon.  The last max(horizon, val_fraction * origins) origins of each series are
    validation (fewer for a short series) and its training origins stop ``horizon`` before the
    first of them, so no training target is a validation target.
    """
    train, val, full = [], [], []
    for s in data.series:
        n = len(s)
        if n < horizon + 1:
            continue
        first = min(max(1, context // 2), n - horizon)
        origins = np.arange(first, n - horizon + 1)
        w = make_windows(s, data.freq, origins, context, horizon, dtype)
        full.append(w)
        usable = len(origins) - horizon + 1  # training + validation origins without overlap
        v = min(max(horizon, int(round(val_fraction * len(origins)))), usable // 2)
        if val_fraction > 0 and v >= 1 and usable - v >= 2:
            train.append(w.take(np.arange(usable - v)))
            val.append(w.take(np.arange(len(origins) - v, len(origins))))
        else:
            train.append(w)
    if not full:
        raise ValueError(f"every series is shorter than horizon + 1 = {horizon + 1} values: "
                         "nothing to train on")
    return _concat(train), (_concat(val) if val else None), _concat(full)


# ----------------------------------------------------------------------------- training

def _ensemble(means: list[np.ndarray], variances: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Mean and variance of an equal mixture of Gaussians."""
    m = np.mean(means, axis=0)
    second = np.mean([v + mu * mu for mu, v in zip(means, variances)], axis=0)
    return m, np.maximum(second - m * m, np.min(variances, axis=0))


def _predict_z(net: ForecastNet, w: Windows, batch: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    net.eval()
    means, variances = [], []
    with no_grad():
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


def train_net(cfg: NetConfig, s: ForecastSettings, train: Windows, val: Windows | None,
              epochs: int, seed: int, deadline: float | None,
              linear=None) -> tuple[ForecastNet, int, dict]:
    """Train one network; with ``val``, keep the parameters of its best epoch (early stopping).

    Returns (network, epochs that gave its parameters, history).
    """
    rng = np.random.default_rng([s.seed, seed])
    net = ForecastNet(cfg, rng)
    if linear is not None:
        net.set_linear(*linear[:3])
    loss_fn, opt = GaussianNLLLoss(), Adam(lr=s.lr)
    n = len(train)
    per_epoch = min(math.ceil(n / s.batch), s.batches_per_epoch)
    best, best_epoch, best_state = math.inf, 0, None
    history = {"train": [], "val": []}
    if val is not None and linear is not None:  # epoch 0: the linear forecast alone
        best, best_state = _val_error(net, val), net.state_dict()
        history["val"].append(best)
    for epoch in range(1, epochs + 1):
        perm = rng.permutation(n)
        total = 0.0
        for b in range(per_epoch):
            idx = perm[b * s.batch : (b + 1) * s.batch]
            if len(idx) == 0:
                break
            mean, var = net.forward(train.x[idx], train.extra[idx])
            loss = float(loss_fn.forward(mean, train.target[idx], var))
            dmean, dvar = loss_fn.backward()
            if s.loss != "nll":  # the mean learns from its own loss; the variance from the NLL
                diff = mean - train.target[idx]
                g = 2 * diff if s.loss == "mse" else np.sign(diff)
                dmean = (g / diff.size).astype(mean.dtype)
            net.backward(dmean, dvar)
            params = list(net.named_parameters())
            norm = clip_grad_norm(params, s.clip)
            if not (math.isfinite(loss) and math.isfinite(norm)):
                raise ValueError(f"training diverged in epoch {epoch}: loss {loss}, gradient norm "
                                 f"{norm}; try a lower --lr")
            opt.step(params)
            net.zero_grad()
            total += loss
        history["train"].append(total / per_epoch)
        out_of_time = deadline is not None and time.monotonic() >= deadline
        if val is not None:
            err = _val_error(net, val)
            history["val"].append(err)
            if err < best:
                best, best_epoch, best_state = err, epoch, net.state_dict()
            elif epoch - best_epoch >= s.patience:
                break
        else:
            best_epoch = epoch
        if out_of_time:
            break
    if best_state is not None:
        net.load_state_dict(best_state)
    return net, best_epoch, history


class Forecaster:
    """A trained ensemble with everything needed to forecast new data (and to save itself)."""

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

    def fit(self, data: SeriesSet, deadline: Deadline | None = None, log=None) -> dict:
        """Train the ensemble on every window of ``data``; returns a summary."""
        s, H, N = self.s, self.horizon, self.context
        deadline = deadline or Deadline(None)
        train, val, full = training_windows(data, N, H, np.dtype(s.dtype), s.val_fraction)
        cfg = self.net_config()
        start = time.monotonic()
        history: dict = {}
        self.nets = []
        lin = lin_full = None
        if val is None:
            # too little data to validate anything: the ridge forecast shrunk firmly towards the
            # (seasonal) naive one, with no recurrent training, unless asked for without it
            if s.linear_init:
                prior = "seasonal" if 1 < self.season <= N else "naive"
                lin_full = fit_linear(full, None, N, self.season, choice=(prior, 10.0))
            epochs = 0 if s.linear_init else s.epochs
        else:
            if s.linear_init:
                lin = fit_linear(train, val, N, self.season)
                lin_full = fit_linear(full, None, N, self.season, choice=lin[3])
            epochs = s.epochs
        runs = s.ensemble + (1 if (val is not None and s.refit) else 0)
        if val is not None and s.refit:
            # one early-stopped run picks the epoch count; every member then trains on all windows
            net, epochs, history = train_net(cfg, s, train, val, s.epochs, 0, deadline.share(runs),
                                             lin)
            self.var_scale = calibrate_variance(net, val)
            runs -= 1
        for k in range(s.ensemble):
            if val is not None and not s.refit:  # every member early-stopped on its own
                net, _, h = train_net(cfg, s, train, val, epochs, k + 1, deadline.share(runs), lin)
                if not history:
                    history, self.var_scale = h, calibrate_variance(net, val)
            else:
                net, _, _ = train_net(cfg, s, full, None, epochs, k + 1, deadline.share(runs),
                                      lin_full)
            self.nets.append(net)
            runs -= 1
        self.info = {"epochs": epochs, "windows": len(full), "series": len(data),
                     "validation_windows": 0 if val is None else len(val),
                     "linear": None if lin_full is None else list(lin_full[3]),
                     "seconds": time.monotonic() - start, "history": history}
        if log:
            log(f"trained {s.ensemble} x {s.cell} {s.layers}x{s.hidden} on {len(full)} windows of "
                f"{len(data)} series, {epochs} epochs, {self.info['seconds']:.1f}s")
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
        settings = from_dict(ForecastSettings, config["settings"])
        fc = cls(settings, Frequency.from_json(config["freq"]), int(config["n_covariates"]),
                 info=meta.get("info", {}))
        cfg = NetConfig(**config["net"])
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


def load_model(directory, which: str = "best") -> Forecaster:
    """The forecaster of a checkpoint, for ``rnnkit export onnx``; a forecasting checkpoint holds
    one set of parameters (the trained ensemble), so ``which`` (best / latest) changes nothing."""
    return Forecaster.load(directory)[0]
