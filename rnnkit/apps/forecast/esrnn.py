r"""The ES-RNN hybrid (Smyl 2020, the M4 winner): per-series exponential smoothing learned jointly
with one global recurrent network, forward and backward written out.

Per series i (parameters indexed by the series' position in the training set)::

    alpha_i = sigmoid(a_i)          level smoothing          (a_i: "alpha_raw")
    gamma_i = sigmoid(g_i)          seasonality smoothing    (g_i: "gamma_raw", m > 1 only)
    s_k     = exp(c_{i,k}), k < m   initial seasonal indices (c_i: "season_raw", m > 1 only)

The multiplicative Holt-Winters recursion without trend (the network forecasts the trend) runs
over the series y_0..y_{n-1} (positive; see `shift_of`)::

    l_0     = y_0 / s_0
    l_t     = alpha y_t / s_t + (1 - alpha) l_{t-1}          t >= 1
    s_{t+m} = gamma y_t / l_t + (1 - gamma) s_t              t >= 0

(m = 1: s = 1 and only the level runs.)  Every position t >= C - 1 ends a window of the C values
before it; the network reads the window deseasonalised and normalised by the level at its end,
in logs, and forecasts the H values after it in the same units, for Q quantiles at once::

    x_{t,j}   = log y_{t-C+1+j} - log s_{t-C+1+j} - log l_t              j < C   (B, P, C)
    h_t       = RNN(x_{C-1}, ..., x_t)   (one sequence per series, positions as time steps)
    o_{t,h,q} = W_2 tanh(W_1 h_t + b_1) + b_2                           (B, P, H, Q)
    z_{t,h}   = log y_{t+h} - log s_{t+h} - log l_t                     (the targets, h = 1..H)
    yhat_{t+h, q} = exp(o_{t,h,q}) l_t s_{t+h}

The loss is the pinball loss of o against z (every (t, h) whose target lies in the history),
averaged over quantiles and targets, plus the level-variability penalty of the paper,
lambda * mean_t (log l_{t+2} - 2 log l_{t+1} + log l_t)^2, which keeps the level smooth so that
the network, not the level, follows the short-term wiggles.

Backward.  With L = log l, S = log s, the loss reaches the smoothing states through
dL_t = -sum_j dx_{t,j} - sum_h dz_{t,h} (+ the penalty's terms) and dS_k = -(every dx and dz that
reads position k); then dl = dL / l, ds = dS / s and the recursion is run in reverse
(t = n-1 .. 0), each state's adjoint complete before it is used::

    s_{t+m}:  d gamma += ds_{t+m} (y_t / l_t - s_t),  dl_t += -ds_{t+m} gamma y_t / l_t^2,
              ds_t += ds_{t+m} (1 - gamma)
    l_t:      d alpha += dl_t (y_t / s_t - l_{t-1}),  ds_t += -dl_t alpha y_t / s_t^2,
              dl_{t-1} += dl_t (1 - alpha)                                   (t >= 1)
    l_0:      ds_0 += -dl_0 y_0 / s_0^2
    then  da = d alpha alpha (1 - alpha),  dg = d gamma gamma (1 - gamma),  dc_k = ds_k s_k (k < m)

Training: `ESRNNTask` is a `rnnkit.train.task.Task` (``batch(step)``, ``loss(batch)``,
``evaluate()``, ``state()``) run by the shared loop `rnnkit.train.engine.fit` (Adam, warm-up over
the first epoch then cosine decay to a tenth, global-norm clipping, checkpoints and resume); a
callback keeps the parameters of the last epochs, and the forecaster (`ESRNNForecaster`)
averages the quantile forecasts of every seed's last epochs.
"""
from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from ...data.series import Frequency, SeriesSet
from ...nn import GRU, LSTM, RNN, Linear, Module, no_grad
from ...train.checkpoint import load_checkpoint, save_checkpoint
from ...train.engine import Callback, fit
from ...train.settings import from_dict
from ...train.task import Task
from .metrics import QUANTILES, naive2, seasonal_indices

CELLS = {"lstm": LSTM, "gru": GRU, "rnn": RNN}


def sigmoid(x):
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def default_context(season: int, horizon: int) -> int:
    """The input window: horizon + 1 values, and at least two seasons where there is one."""
    return max(2 * season, horizon + 1) if season > 1 else horizon + 1


def min_length(context: int) -> int:
    """Fewest values a series needs to train: one window of C values and one target after it."""
    return context + 1


@dataclass
class ESRNNConfig:
    """Sizes of an `ESRNN` (saved in checkpoints)."""

    n_series: int          # series with their own smoothing parameters
    season: int            # m (1: level only)
    context: int           # C, values per input window
    horizon: int           # H
    quantiles: tuple = QUANTILES
    cell: str = "lstm"
    hidden: int = 32
    layers: int = 1
    dtype: str = "float32"

    def to_json(self) -> dict:
        d = asdict(self)
        d["quantiles"] = list(self.quantiles)
        return d

    @classmethod
    def from_json(cls, d: dict) -> "ESRNNConfig":
        return cls(**{**d, "quantiles": tuple(d["quantiles"])})


class ESRNN(Module):
    """(y (B, T) > 0, lengths (B,), idx (B,)) -> (o (B, P, H, Q), z (B, P, H), e (B, T - 2)).

    P = T - C + 1 window positions (t = C-1 .. T-1); z are the targets the outputs o forecast,
    e the second differences of the log level (the penalty's terms).  Which entries count is
    the caller's business (`targets_mask`, `penalty_mask`): entries at or past a series' length
    are computed from its padding.  See the module docstring for the equations.
    """

    def __init__(self, cfg: ESRNNConfig, rng: np.random.Generator) -> None:
        super().__init__()
        if cfg.cell not in CELLS:
            raise ValueError(f"cell must be one of {sorted(CELLS)}, got {cfg.cell!r}")
        self.cfg = cfg
        dt = self.dtype = np.dtype(cfg.dtype)
        S, m = cfg.n_series, cfg.season
        self._add_param("alpha_raw", np.zeros(S, dt))              # alpha = 0.5 to start
        if m > 1:
            self._add_param("gamma_raw", np.full(S, -1.0, dt))     # gamma = 0.27
            self._add_param("season_raw", np.zeros((S, m), dt))    # s = 1 until `init_seasons`
        H, Q = cfg.horizon, len(cfg.quantiles)
        self.rnn = CELLS[cfg.cell](cfg.context, cfg.hidden, num_layers=cfg.layers, dtype=dt,
                                   rng=rng)
        self.hid = Linear(cfg.hidden, cfg.hidden, dtype=dt, rng=rng)
        self.out = Linear(cfg.hidden, H * Q, dtype=dt, rng=rng)
        self.out.params["weight"] *= 0.1  # start near the seasonal-naive-on-level forecast

    # -- the smoothing recursion ---------------------------------------------------------------
    def smooth(self, y: np.ndarray, idx: np.ndarray):
        """Levels l (B, T) and seasonal indices s (B, T + m) of series idx (s = 1 for m = 1)."""
        B, T = y.shape
        m = self.cfg.season
        alpha = sigmoid(self.params["alpha_raw"][idx])[:, None]       # (B, 1)
        l = np.empty((B, T), self.dtype)
        if m > 1:
            gamma = sigmoid(self.params["gamma_raw"][idx])[:, None]   # (B, 1)
            s = np.empty((B, T + m), self.dtype)
            s[:, :m] = np.exp(self.params["season_raw"][idx])
            l[:, 0] = y[:, 0] / s[:, 0]
            for t in range(T):
                if t:
                    l[:, t] = alpha[:, 0] * y[:, t] / s[:, t] + (1 - alpha[:, 0]) * l[:, t - 1]
                s[:, t + m] = gamma[:, 0] * y[:, t] / l[:, t] + (1 - gamma[:, 0]) * s[:, t]
        else:
            gamma, s = None, np.ones((B, T + 1), self.dtype)
            l[:, 0] = y[:, 0]
            a = alpha[:, 0]
            for t in range(1, T):
                l[:, t] = a * y[:, t] + (1 - a) * l[:, t - 1]
        return l, s, alpha, gamma

    def smooth_backward(self, dl: np.ndarray, ds: np.ndarray, y, l, s, alpha, gamma, idx) -> None:
        """Adjoints of l (B, T) and s (B, T + m) -> gradients of the per-series parameters."""
        B, T = y.shape
        m = self.cfg.season
        dl, ds = dl.copy(), ds.copy()
        a = alpha[:, 0]
        dalpha = np.zeros(B, self.dtype)
        if m > 1:
            g = gamma[:, 0]
            dgamma = np.zeros(B, self.dtype)
            for t in range(T - 1, -1, -1):
                # s_{t+m} = gamma y_t / l_t + (1 - gamma) s_t
                dsn = ds[:, t + m]
                dgamma += dsn * (y[:, t] / l[:, t] - s[:, t])
                dl[:, t] -= dsn * g * y[:, t] / (l[:, t] * l[:, t])
                ds[:, t] += dsn * (1 - g)
                if t:  # l_t = alpha y_t / s_t + (1 - alpha) l_{t-1}
                    dalpha += dl[:, t] * (y[:, t] / s[:, t] - l[:, t - 1])
                    ds[:, t] -= dl[:, t] * a * y[:, t] / (s[:, t] * s[:, t])
                    dl[:, t - 1] += dl[:, t] * (1 - a)
                else:      # l_0 = y_0 / s_0
                    ds[:, 0] -= dl[:, 0] * y[:, 0] / (s[:, 0] * s[:, 0])
            np.add.at(self.grads["gamma_raw"], idx, dgamma * g * (1 - g))
            np.add.at(self.grads["season_raw"], idx, ds[:, :m] * s[:, :m])
        else:
            for t in range(T - 1, 0, -1):  # l_t = alpha y_t + (1 - alpha) l_{t-1}
                dalpha += dl[:, t] * (y[:, t] - l[:, t - 1])
                dl[:, t - 1] += dl[:, t] * (1 - a)
        np.add.at(self.grads["alpha_raw"], idx, dalpha * a * (1 - a))

    # -- the whole model -------------------------------------------------------------------------
    def forward(self, y: np.ndarray, lengths: np.ndarray, idx: np.ndarray):
        cfg = self.cfg
        C, H, Q = cfg.context, cfg.horizon, len(cfg.quantiles)
        y = np.asarray(y)
        if y.dtype != self.dtype:
            raise ValueError(f"y has dtype {y.dtype}, the model computes in {self.dtype}")
        B, T = y.shape
        if T < C:
            raise ValueError(f"series of {T} values are shorter than the input window {C}")
        lengths = np.asarray(lengths, np.int64)
        l, s, alpha, gamma = self.smooth(y, idx)
        L, Sg = np.log(l), np.log(s[:, :T])                           # (B, T)
        adj = np.log(y) - Sg                                           # (B, T) deseasonalised log
        P = T - C + 1
        x = sliding_window_view(adj, C, axis=1) - L[:, C - 1:, None]   # (B, P, C)
        pad = np.concatenate([adj, np.zeros((B, H), self.dtype)], axis=1)
        z = sliding_window_view(pad[:, C:], H, axis=1)[:, :P] - L[:, C - 1:, None]  # (B, P, H)
        e = L[:, 2:] - 2 * L[:, 1:-1] + L[:, :-2]                      # (B, T - 2)
        steps = np.clip(lengths - C + 1, 1, P)
        hseq, _ = self.rnn.forward(np.ascontiguousarray(x), lengths=steps)  # (B, P, hidden)
        u = np.tanh(self.hid.forward(hseq))                           # (B, P, hidden)
        o = self.out.forward(u).reshape(B, P, H, Q)
        self._push((y, l, s, alpha, gamma, idx, u, B, T, P))
        return o, np.ascontiguousarray(z), e

    def backward(self, do: np.ndarray, dz: np.ndarray, de: np.ndarray) -> None:
        y, l, s, alpha, gamma, idx, u, B, T, P = self._pop()
        C, H, Q = self.cfg.context, self.cfg.horizon, len(self.cfg.quantiles)
        dt = self.dtype
        du = self.out.backward(np.asarray(do, dt).reshape(B, P, H * Q))
        dhseq = self.hid.backward(du * (1 - u * u))
        dx = self.rnn.backward(dhseq)[0]                              # (B, P, C)
        dadj = np.zeros((B, T + H), dt)
        dL = np.zeros((B, T), dt)
        for j in range(C):          # x_{t,j} reads adj[t - C + 1 + j]: position p reads p + j
            dadj[:, j:j + P] += dx[:, :, j]
        for h in range(H):          # z_{t,h+1} reads adj[t + h + 1] = adj[p + C + h]
            dadj[:, C + h:C + h + P] += dz[:, :, h]
        dL[:, C - 1:] -= dx.sum(axis=2) + dz.sum(axis=2)
        dL[:, 2:] += de
        dL[:, 1:-1] -= 2 * de
        dL[:, :-2] += de
        ds = np.zeros_like(s)
        ds[:, :T] = -dadj[:, :T] / s[:, :T]                            # dS / s
        self.smooth_backward(dL / l, ds, y, l, s, alpha, gamma, idx)

    # -- forecasting ---------------------------------------------------------------------------
    def inputs(self, y: np.ndarray, lengths: np.ndarray, idx: np.ndarray):
        """What the network needs to forecast after each series' last value: x (B, P, C) the
        windows of every position (the network reads them all, its state carries through the
        series), steps (B,) the positions of each series, level (B,) = l_{n-1} and season
        (B, H) = s_{n-1+h} (the last season repeated beyond m)."""
        C, H, m = self.cfg.context, self.cfg.horizon, self.cfg.season
        lengths = np.asarray(lengths, np.int64)
        B, T = y.shape
        l, s, _, _ = self.smooth(y, idx)
        adj = np.log(y) - np.log(s[:, :T])
        x = sliding_window_view(adj, C, axis=1) - np.log(l[:, C - 1:, None])   # (B, P, C)
        rows, last = np.arange(B), lengths - 1
        ahead = last[:, None] + 1 + (np.arange(H) % m)[None, :]        # s_{n-1+h}, repeated
        season = s[rows[:, None], ahead] if m > 1 else np.ones((B, H), self.dtype)
        return np.ascontiguousarray(x), lengths - C + 1, l[rows, last], season

    def predict(self, y: np.ndarray, lengths: np.ndarray, idx: np.ndarray) -> np.ndarray:
        """Quantile forecasts (B, H, Q) of the H values after each series' last value, in the
        units of y (a batch of series padded to a common length)::

            yhat_{n-1+h, q} = exp(o_{n-1,h,q}) l_{n-1} s_{n-1+h},  quantiles sorted (never crossed)
        """
        H, Q = self.cfg.horizon, len(self.cfg.quantiles)
        x, steps, level, season = self.inputs(y, lengths, idx)
        with no_grad():
            hseq, _ = self.rnn.forward(x, lengths=steps)               # (B, P, hidden)
            h = hseq[np.arange(len(y)), steps - 1]                     # (B, hidden)
            o = self.out.forward(np.tanh(self.hid.forward(h))).reshape(len(y), H, Q)
        fc = np.exp(o.astype(np.float64)) * (level[:, None, None] * season[:, :, None]
                                              ).astype(np.float64)
        return np.sort(fc, axis=2)


# ----------------------------------------------------------------------------- loss

def targets_mask(lengths: np.ndarray, context: int, horizon: int, P: int) -> np.ndarray:
    """(B, P, H) True where target y_{t+h} (t = p + C - 1) lies inside the series."""
    t = np.arange(P)[None, :, None] + context - 1
    h = np.arange(1, horizon + 1)[None, None, :]
    return (t + h) < np.asarray(lengths)[:, None, None]


def penalty_mask(lengths: np.ndarray, T: int) -> np.ndarray:
    """(B, T - 2) True where the second difference's last level lies inside the series."""
    return (np.arange(T - 2)[None, :] + 2) < np.asarray(lengths)[:, None]


def pinball_loss(o, z, mask, quantiles, e=None, emask=None, penalty: float = 0.0,
                 weights=None):
    """Mean pinball loss of quantile outputs o (B, P, H, Q) against targets z (B, P, H) over the
    True entries of mask (each series' entries weighted by weights (B,) if given), plus
    penalty * mean(e^2) over emask.  Returns (loss, do, dz, de).

    rho_q(d) = max(q d, (q - 1) d) with d = z - o:  d rho / d o = -(q - 1{d < 0}) = -d rho / d z.
    """
    q = np.asarray(quantiles, o.dtype)
    d = z[..., None] - o                                               # (B, P, H, Q)
    w = mask.astype(np.float64)
    if weights is not None:
        w = w * np.asarray(weights, np.float64)[:, None, None]
    w = (w / max(float(mask.sum()) * len(q), 1.0)).astype(o.dtype)[..., None]
    loss = float(np.sum(w * np.maximum(q * d, (q - 1) * d)))
    g = (q - (d < 0)) * w                                              # d rho / d d
    do, dz = -g, g.sum(axis=3)
    de = None
    if e is not None:
        ew = emask.astype(e.dtype) / max(int(emask.sum()), 1)
        loss += penalty * float(np.sum(ew * e * e))
        de = 2 * penalty * ew * e
    return loss, do.astype(o.dtype), dz.astype(o.dtype), de


# ----------------------------------------------------------------------------- data

def shift_of(values: np.ndarray) -> float:
    """What a series is shifted by before the (multiplicative) smoothing: 0 for a positive
    series, else its range minus its minimum, so that it lies in [range, 2 range] (a constant
    series: 1 - min).  The forecasts are shifted back."""
    y = np.asarray(values, np.float64)
    lo, hi = float(y.min()), float(y.max())
    if lo > 0:
        return 0.0
    return (hi - lo if hi > lo else 1.0) - lo


def pad_batch(series: list[np.ndarray], dtype) -> tuple[np.ndarray, np.ndarray]:
    """(y (B, T) padded on the right with each series' last value, lengths (B,))."""
    lengths = np.array([len(v) for v in series], np.int64)
    T = int(lengths.max())
    y = np.empty((len(series), T), dtype)
    for k, v in enumerate(series):
        y[k, :len(v)] = v
        y[k, len(v):] = v[-1]
    return y, lengths


def mase_weights(series: list[np.ndarray], season: int) -> np.ndarray:
    """Per-series loss weights that turn the log-space errors into MASE's units: an error of
    relative size r costs r * level / (mean absolute seasonal difference) in MASE, so each series
    weighs its mean level over its MASE denominator, normalised to mean 1."""
    w = np.empty(len(series))
    for k, v in enumerate(series):
        m = season if len(v) > season else 1
        scale = np.mean(np.abs(v[m:] - v[:-m])) if len(v) > m else 0.0
        w[k] = np.mean(v) / scale if scale > 0 else np.nan
    w = np.where(np.isfinite(w), w, np.nanmedian(w) if np.isfinite(w).any() else 1.0)
    return w / w.mean()


def init_seasons(model: ESRNN, series: list[np.ndarray]) -> None:
    """Initial seasonal indices from classical decomposition where a series holds two seasons."""
    m = model.cfg.season
    if m <= 1:
        return
    for k, v in enumerate(series):
        if len(v) >= 2 * m + 1:
            si = seasonal_indices(v, m)[:m]
            if np.all(si > 0) and np.all(np.isfinite(si)):
                model.params["season_raw"][k] = np.log(si)


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
            budget: bool = True, log=None) -> dict:
        """Train ``ensemble`` models (seeds) on every series long enough; the others fall back
        to Naive2 (see `fallback_forecast`), with a message.  Each seed is one run of the shared
        loop (checkpointed in ``out/runs/seed<k>`` when ``out`` is given, so a stopped command
        resumes); ``max_time`` and ``budget`` as in `Forecaster.fit`."""
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
                                              task.steps_per_epoch)], progress=False)
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
