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

Training (`esrnn_train.py`): `ESRNNTask` is a `rnnkit.train.task.Task` (``batch(step)``, ``loss(batch)``,
``evaluate()``, ``state()``) run by the shared loop `rnnkit.train.engine.fit` (Adam, warm-up over
the first epoch then cosine decay to a tenth, global-norm clipping, checkpoints and resume); a
callback keeps the parameters of the last epochs, and the forecaster (`ESRNNForecaster`)
averages the quantile forecasts of every seed's last epochs.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from ...nn import Linear, Module, no_grad, recurrent_layer
from .metrics import QUANTILES, seasonal_indices


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
        self.cfg = cfg
        dt = self.dtype = np.dtype(cfg.dtype)
        S, m = cfg.n_series, cfg.season
        self._add_param("alpha_raw", np.zeros(S, dt))              # alpha = 0.5 to start
        if m > 1:
            self._add_param("gamma_raw", np.full(S, -1.0, dt))     # gamma = 0.27
            self._add_param("season_raw", np.zeros((S, m), dt))    # s = 1 until `init_seasons`
        H, Q = cfg.horizon, len(cfg.quantiles)
        self.rnn = recurrent_layer(cfg.cell, cfg.context, cfg.hidden, num_layers=cfg.layers,
                                   dtype=dt, rng=rng)
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
