"""The forecasting network: a recurrent encoder and a direct multi-horizon Gaussian head.

For a window whose context (N steps before the forecast origin) is scaled to
z_t = (y_t - y_origin) / s (the last value as level, s the series' scale)::

    x_t   = [z_t, calendar_t, covariates_t]                        (N, F) inputs per step
    h     = RNN(x_1..x_N)[N]                                       (hidden,) the last output
    u     = [h, z_1..z_N, calendar of the H future steps]          head input
    o     = W u + b                                                (2H,)
    mean  = o[:H],   var = softplus(o[H:]) + var_floor             all H steps at once

The linear path from the scaled context to the outputs (an "autoregressive highway", as in
LSTNet) lets the network express the naive, seasonal-naive and drift forecasts exactly, so the
recurrent part only has to learn what they miss; with the head's weights at zero the network
starts as the naive forecast.  It is trained with the Gaussian negative log-likelihood of the
scaled targets, so the variance gives prediction intervals.

Backward, with L the loss and sigma(x) = 1 / (1 + exp(-x)) = d softplus(x) / dx::

    dL/do[:H] = dL/dmean,   dL/do[H:] = dL/dvar * sigma(o[H:])
    dL/du = W^T dL/do  ->  dL/dh is the gradient of the RNN's last output
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from ...nn import Linear, Module, recurrent_layer



@dataclass
class NetConfig:
    """Sizes of a `ForecastNet` (saved in checkpoints)."""

    input_size: int        # features per context step: 1 + calendar + covariates
    extra_size: int        # head inputs besides the RNN's output: context + future calendar
    horizon: int
    cell: str              # the sizes below come from ForecastSettings (no defaults here)
    hidden: int
    layers: int
    dropout: float
    dtype: str
    var_floor: float = 1e-4  # smallest variance, in scaled units (not a setting)

    def to_json(self) -> dict:
        return asdict(self)


def softplus(x: np.ndarray) -> np.ndarray:
    """log(1 + e^x) without overflow."""
    return np.logaddexp(0, x)


def sigmoid(x: np.ndarray) -> np.ndarray:
    """1 / (1 + e^-x) without overflow."""
    return 0.5 * (1.0 + np.tanh(0.5 * x))


class ForecastNet(Module):
    """(x (N, T, F), extra (N, E)) -> (mean (N, H), var (N, H)); see the module docstring."""

    def __init__(self, cfg: NetConfig, rng: np.random.Generator) -> None:
        super().__init__()
        self.cfg = cfg
        dtype = np.dtype(cfg.dtype)
        self.dtype = dtype
        self.rnn = recurrent_layer(cfg.cell, cfg.input_size, cfg.hidden, num_layers=cfg.layers,
                                   dropout=cfg.dropout, dtype=dtype, rng=rng)
        self.head = Linear(cfg.hidden + cfg.extra_size, 2 * cfg.horizon, dtype=dtype, rng=rng)
        w, b = self.head.params["weight"], self.head.params["bias"]
        # start as the naive forecast (mean 0) with unit variance: softplus(0.5413) = 1
        w[:, cfg.hidden:] = 0
        w[:, : cfg.hidden] *= 0.1
        b[: cfg.horizon] = 0
        b[cfg.horizon:] = 0.5413
        self._raw = None

    def set_linear(self, W: np.ndarray, b: np.ndarray, var: np.ndarray) -> None:
        """Set the linear path (extra -> mean) to W (H, E), b (H,) and the variance to ``var``."""
        H, hid = self.cfg.horizon, self.cfg.hidden
        w, bias = self.head.params["weight"], self.head.params["bias"]
        w[:H, hid:] = W
        w[:, :hid] = 0  # the recurrent part starts silent: the network starts as this forecast
        bias[:H] = b
        v = np.maximum(np.asarray(var, np.float64) - self.cfg.var_floor, 1e-3)
        bias[H:] = np.where(v > 20, v, np.log(np.expm1(np.minimum(v, 20))))  # softplus^-1

    def forward(self, x: np.ndarray, extra: np.ndarray):
        y, _ = self.rnn.forward(x)                                       # (N, T, hidden)
        u = np.concatenate([y[:, -1], extra], axis=1)                    # (N, hidden + E)
        o = self.head.forward(u)                                         # (N, 2H)
        H = self.cfg.horizon
        raw = o[:, H:]
        self._push((y.shape, raw))
        var = softplus(raw) + self.dtype.type(self.cfg.var_floor)
        return o[:, :H], var

    def backward(self, dmean: np.ndarray, dvar: np.ndarray) -> None:
        shape, raw = self._pop()
        do = np.concatenate([dmean, dvar * sigmoid(raw)], axis=1).astype(self.dtype)  # (N, 2H)
        du = self.head.backward(do)                                      # (N, hidden + E)
        dy = np.zeros(shape, self.dtype)                                 # (N, T, hidden)
        dy[:, -1] = du[:, : self.cfg.hidden]
        self.rnn.backward(dy)
