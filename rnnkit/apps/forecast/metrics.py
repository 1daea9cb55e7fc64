"""Forecast accuracy metrics (M4's definitions) and the three benchmark forecasts.

For one series with history y_1..y_n, actuals a_1..a_H and forecasts f_1..f_H::

    MAE   = mean |a_h - f_h|
    RMSE  = sqrt(mean (a_h - f_h)^2)
    sMAPE = 200 / H * sum |a_h - f_h| / (|a_h| + |f_h|)            (percent; a 0/0 term counts 0)
    MASE  = MAE / (1 / (n - m) * sum_{t=m+1..n} |y_t - y_{t-m}|)    (m = seasonal period)
    coverage = fraction of a_h inside [lower_h, upper_h]
    MSIS  = mean_h [(U_h - L_h) + 2/a (L_h - a_h) 1{a_h < L_h} + 2/a (a_h - U_h) 1{a_h > U_h}]
            / MASE's denominator                                (a = 0.05: the 95% interval)
    SPL   = mean over quantiles q of mean_h [q (a_h - Q_h) 1{a_h >= Q_h}
            + (1 - q) (Q_h - a_h) 1{a_h < Q_h}] / MASE's denominator   (scaled pinball loss)

Over many series each metric is the mean of the per-series values (M4 convention); MASE is left
out for a series whose in-sample seasonal differences are all zero (its scale is 0).  The
overall weighted average (OWA) of a method over a collection is M4's:

    OWA = ( mean sMAPE / mean sMAPE of Naive2  +  mean MASE / mean MASE of Naive2 ) / 2

where Naive2 is the naive forecast of the seasonally adjusted series, re-seasonalised: the series
is adjusted by classical multiplicative decomposition only where it passes M4's 90% seasonality
test (|r_m| > 1.645 sqrt((1 + 2 sum_{k<m} r_k^2) / n) on a history of at least 3m values; see
`seasonality_test`, `seasonal_indices`, `naive2`).  These follow the M4 competition's published
benchmark code (the R functions SeasonalityTest, decompose(type="multiplicative") and naive).
"""
from __future__ import annotations

import math

import numpy as np

__all__ = ["BASELINES", "QUANTILES", "acf", "coverage", "drift", "interval_metrics", "mae",
           "mase", "mase_scale", "msis", "naive", "naive2", "owa", "pinball", "rmse",
           "seasonal_indices", "seasonal_naive", "seasonality_test", "smape"]

# the quantiles a forecast with 80% and 95% intervals carries: 95% lower, 80% lower, median, ...
QUANTILES = (0.025, 0.1, 0.5, 0.9, 0.975)


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


def msis(actual, lower, upper, history, season: int, alpha: float = 0.05) -> float | None:
    """M4's mean scaled interval score of the (1 - alpha) interval [lower, upper]."""
    scale = mase_scale(history, season)
    if scale is None:
        return None
    a = np.asarray(actual, np.float64)
    lo, up = np.asarray(lower, np.float64), np.asarray(upper, np.float64)
    score = (up - lo) + 2 / alpha * (lo - a) * (a < lo) + 2 / alpha * (a - up) * (a > up)
    return float(np.mean(score)) / scale


def pinball(actual, quantiles: dict, history, season: int) -> float | None:
    """Scaled pinball loss: the mean over quantile levels q of the pinball loss of the forecast
    quantile Q_q (quantiles {q: (H,) array}), divided by MASE's denominator."""
    scale = mase_scale(history, season)
    if scale is None:
        return None
    a = np.asarray(actual, np.float64)
    losses = []
    for q, Q in quantiles.items():
        d = a - np.asarray(Q, np.float64)
        losses.append(np.mean(np.maximum(q * d, (q - 1) * d)))
    return float(np.mean(losses)) / scale


def interval_metrics(actual, f: dict, history, season: int) -> dict:
    """Coverage, MSIS and scaled pinball loss of a forecast dict with mean, lower_80, upper_80,
    lower_95, upper_95 (the median is taken to be the mean for a symmetric forecast without one)."""
    q = {0.025: f["lower_95"], 0.1: f["lower_80"], 0.5: f.get("median", f["mean"]),
         0.9: f["upper_80"], 0.975: f["upper_95"]}
    return {"coverage_80": coverage(actual, f["lower_80"], f["upper_80"]),
            "coverage_95": coverage(actual, f["lower_95"], f["upper_95"]),
            "msis": msis(actual, f["lower_95"], f["upper_95"], history, season),
            "pinball": pinball(actual, q, history, season)}


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


def acf(y, k: int) -> float:
    """Sample autocorrelation at lag k (denominator n, the overall mean; as R's acf)."""
    y = np.asarray(y, np.float64)
    d = y - y.mean()
    den = float(d @ d)
    return float(d[k:] @ d[:-k]) / den if den > 0 else 0.0


def seasonality_test(history, season: int) -> bool:
    """M4's 90% test: |r_m| > 1.645 sqrt((1 + 2 sum_{k=1}^{m-1} r_k^2) / n); False for m <= 1 or
    a history shorter than 3m (as the competition's SeasonalityTest)."""
    y = np.asarray(history, np.float64)
    if season <= 1 or len(y) < 3 * season:
        return False
    r = [acf(y, k) for k in range(1, season + 1)]
    limit = 1.645 * math.sqrt((1 + 2 * sum(x * x for x in r[:-1])) / len(y))
    return abs(r[-1]) > limit


def seasonal_indices(history, season: int) -> np.ndarray:
    """Multiplicative seasonal indices (n,) of classical decomposition (R's decompose): the
    centred moving average of order m (2 x m for even m), ratios y / MA averaged per position in
    the season (position t mod m), normalised to mean 1, repeated over the series."""
    y = np.asarray(history, np.float64)
    n, m = len(y), season
    if m % 2 == 0:
        w = np.r_[0.5, np.ones(m - 1), 0.5] / m
    else:
        w = np.ones(m) / m
    half = len(w) // 2
    ma = np.full(n, np.nan)
    ma[half: n - half] = np.convolve(y, w, mode="valid")
    ratio = y / ma
    figure = np.array([np.nanmean(ratio[k::m]) for k in range(m)])
    figure /= figure.mean()
    return figure[np.arange(n) % m]


def naive2(history, horizon: int, season: int = 1) -> np.ndarray:
    """M4's Naive2: the naive forecast of the seasonally adjusted series, times the seasonal
    indices of the last season (adjusted only where `seasonality_test` passes and every value
    is positive, which multiplicative indices need; else plain naive)."""
    y = np.asarray(history, np.float64)
    if not (seasonality_test(y, season) and np.all(y > 0)):
        return naive(y, horizon)
    si = seasonal_indices(y, season)
    last = si[-season:]                                        # indices of the last season
    return y[-1] / si[-1] * last[np.arange(horizon) % season]


BASELINES = {"naive": naive, "seasonal_naive": seasonal_naive, "drift": drift, "naive2": naive2}


def owa(smape_method: float | None, mase_method: float | None, smape_naive2: float | None,
        mase_naive2: float | None) -> float | None:
    """M4's overall weighted average of a method relative to Naive2 (collection means in)."""
    if None in (smape_method, mase_method, smape_naive2, mase_naive2) or not (
            smape_naive2 > 0 and mase_naive2 > 0):
        return None
    return 0.5 * (smape_method / smape_naive2 + mase_method / mase_naive2)


def point_metrics(actual, forecast, history, season: int) -> dict[str, float | None]:
    """MAE, RMSE, sMAPE and MASE of one forecast."""
    return {"mae": mae(actual, forecast), "rmse": rmse(actual, forecast),
            "smape": smape(actual, forecast), "mase": mase(actual, forecast, history, season)}


def mean_of(values) -> float | None:
    """Mean of the defined values (None where none is)."""
    vals = [v for v in values if v is not None and math.isfinite(v)]
    return float(np.mean(vals)) if vals else None
