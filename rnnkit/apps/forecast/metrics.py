"""Forecast accuracy metrics (M4's definitions) and the three benchmark forecasts.

For one series with history y_1..y_n, actuals a_1..a_H and forecasts f_1..f_H::

    MAE   = mean |a_h - f_h|
    RMSE  = sqrt(mean (a_h - f_h)^2)
    sMAPE = 200 / H * sum |a_h - f_h| / (|a_h| + |f_h|)            (percent; a 0/0 term counts 0)
    MASE  = MAE / (1 / (n - m) * sum_{t=m+1..n} |y_t - y_{t-m}|)    (m = seasonal period)
    coverage = fraction of a_h inside [lower_h, upper_h]

Over many series each metric is the mean of the per-series values (M4 convention); MASE is left
out for a series whose in-sample seasonal differences are all zero (its scale is 0).
"""
from __future__ import annotations

import math

import numpy as np

__all__ = ["BASELINES", "coverage", "drift", "mae", "mase", "mase_scale", "naive", "rmse",
           "seasonal_naive", "smape"]


def mae(actual, forecast) -> float:
    return float(np.mean(np.abs(np.asarray(actual, np.float64) - forecast)))


def rmse(actual, forecast) -> float:
    d = np.asarray(actual, np.float64) - forecast
    return float(np.sqrt(np.mean(d * d)))


def smape(actual, forecast) -> float:
    a, f = np.asarray(actual, np.float64), np.asarray(forecast, np.float64)
    num, den = np.abs(a - f), np.abs(a) + np.abs(f)
    terms = np.divide(num, den, out=np.zeros_like(num), where=den > 0)
    return float(200.0 * np.mean(terms))


def mase_scale(history, season: int) -> float | None:
    """Mean absolute seasonal difference of the history; m = 1 if the history is too short for m.

    None when it is zero (a constant history): MASE is undefined there.
    """
    y = np.asarray(history, np.float64)
    m = season if len(y) > season else 1
    if len(y) <= m:
        return None
    scale = float(np.mean(np.abs(y[m:] - y[:-m])))
    return scale if scale > 0 else None


def mase(actual, forecast, history, season: int) -> float | None:
    scale = mase_scale(history, season)
    return None if scale is None else mae(actual, forecast) / scale


def coverage(actual, lower, upper) -> float:
    a = np.asarray(actual, np.float64)
    return float(np.mean((a >= lower) & (a <= upper)))


# ----------------------------------------------------------------------------- baselines

def naive(history, horizon: int, season: int = 1) -> np.ndarray:
    """f_h = y_n: the last value, repeated."""
    y = np.asarray(history, np.float64)
    return np.full(horizon, y[-1])


def seasonal_naive(history, horizon: int, season: int) -> np.ndarray:
    """f_h = y_{n + h - m * ceil(h / m)}: the value one season back (naive if m = 1 or the history
    is shorter than a season)."""
    y = np.asarray(history, np.float64)
    if season <= 1 or len(y) < season:
        return naive(y, horizon)
    last_season = y[-season:]
    return last_season[np.arange(horizon) % season]


def drift(history, horizon: int, season: int = 1) -> np.ndarray:
    """f_h = y_n + h (y_n - y_1) / (n - 1): the line through the first and last values."""
    y = np.asarray(history, np.float64)
    slope = (y[-1] - y[0]) / (len(y) - 1) if len(y) > 1 else 0.0
    return y[-1] + slope * np.arange(1, horizon + 1)


BASELINES = {"naive": naive, "seasonal_naive": seasonal_naive, "drift": drift}


def point_metrics(actual, forecast, history, season: int) -> dict[str, float | None]:
    """MAE, RMSE, sMAPE and MASE of one forecast."""
    return {"mae": mae(actual, forecast), "rmse": rmse(actual, forecast),
            "smape": smape(actual, forecast), "mase": mase(actual, forecast, history, season)}


def mean_of(values) -> float | None:
    """Mean of the defined values (None where none is)."""
    vals = [v for v in values if v is not None and math.isfinite(v)]
    return float(np.mean(vals)) if vals else None
