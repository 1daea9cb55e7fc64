"""Windows of a series: what the forecasting network reads and what it must predict.

Every series is cut into windows: ``context`` values before an origin (scaled per window and
series, see `rnnkit.data.series.normalize_windows`) and the ``horizon`` values after it.  The
inputs of a window (`WindowInputs`, original units) are also the inputs of an exported
forecaster's ONNX graph; `assemble` turns them into network inputs the same way the graph does.
"""
from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

from ...data.series import (Frequency, Series, SeriesSet, context_windows, normalize_windows,
                            series_scale)


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
