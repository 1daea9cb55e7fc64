"""Statistical reference forecasts for backtests: damped-trend ETS and the Theta method.

Both come from an optional package, imported on first use: ``statsforecast`` when installed (fast,
numba), else ``statsmodels``; with neither, `available()` is empty and backtests leave them out.

* ``ets``: exponential smoothing with a damped additive trend, error and season types chosen by
  AICc (statsforecast ``AutoETS(season_length=m, damped=True)``, a mirror of R's
  ``forecast::ets(damped=TRUE)``; statsmodels: ``ETSModel`` with additive errors and a damped
  trend, additive season where m > 1 and the history holds two seasons, the AICc-best of with and
  without the season).
* ``theta``: the standard Theta method of the M3 / M4 benchmarks (SES with drift on the series
  deseasonalised by multiplicative decomposition where M4's seasonality test passes;
  statsforecast ``Theta``, statsmodels ``ThetaModel``).

A method that fails on a series (too short, numerically degenerate) gives the naive forecast for
it, so every method always forecasts every series.
"""
from __future__ import annotations

import importlib.util
import warnings

import numpy as np

__all__ = ["REFERENCES", "available", "forecast"]

REFERENCES = ("ets", "theta")


def backend() -> str | None:
    """'statsforecast', 'statsmodels' or None: the package the references come from."""
    for name in ("statsforecast", "statsmodels"):
        if importlib.util.find_spec(name) is not None:
            return name
    return None


def available() -> tuple[str, ...]:
    """The reference methods this environment can run (none without either package)."""
    return REFERENCES if backend() else ()


def forecast(method: str, history, horizon: int, season: int) -> np.ndarray:
    """The point forecast (horizon,) of reference ``method`` ('ets' or 'theta') from ``history``."""
    y = np.asarray(history, np.float64)
    which = backend()
    if which is None:
        raise ImportError("the ETS and Theta references need statsforecast or statsmodels: "
                          "pip install statsforecast")
    fn = {("statsforecast", "ets"): _sf_ets, ("statsforecast", "theta"): _sf_theta,
          ("statsmodels", "ets"): _sm_ets, ("statsmodels", "theta"): _sm_theta}[which, method]
    try:
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            f = np.asarray(fn(y, horizon, season), np.float64)
    except (ValueError, ArithmeticError, np.linalg.LinAlgError, IndexError, ZeroDivisionError,
            NotImplementedError, RuntimeError):  # statsforecast refuses "tiny datasets"
        f = None
    if f is None or f.shape != (horizon,) or not np.all(np.isfinite(f)):
        return np.full(horizon, y[-1])
    return f


def _season(y: np.ndarray, season: int) -> int:
    return season if season > 1 and len(y) >= 2 * season + 2 else 1


def _sf_ets(y, horizon, season):
    from statsforecast.models import AutoETS
    return AutoETS(season_length=_season(y, season), damped=True).forecast(y=y, h=horizon)["mean"]


def _sf_theta(y, horizon, season):
    from statsforecast.models import Theta
    return Theta(season_length=_season(y, season)).forecast(y=y, h=horizon)["mean"]


def _sm_ets(y, horizon, season):
    from statsmodels.tsa.exponential_smoothing.ets import ETSModel
    m = _season(y, season)
    best, best_f = np.inf, None
    for seasonal in [None] + (["add"] if m > 1 else []):
        res = ETSModel(y, error="add", trend="add", damped_trend=True, seasonal=seasonal,
                       seasonal_periods=m if seasonal else None).fit(disp=False, maxiter=1000)
        k = len(res.params)
        aicc = res.aic + 2 * k * (k + 1) / max(len(y) - k - 1, 1)
        if np.isfinite(aicc) and aicc < best:
            best, best_f = aicc, res.forecast(horizon)
    return best_f


def _sm_theta(y, horizon, season):
    from statsmodels.tsa.forecasting.theta import ThetaModel
    m = _season(y, season)
    return ThetaModel(y, period=m, deseasonalize=m > 1, method="additive"
                      ).fit().forecast(horizon)
