#!/usr/bin/env python
"""Forecast quality of rnnkit on the bundled series beside the baselines, statsmodels' ETS and ARIMA.

For every bundled series (``rnnkit/data/series``) it runs the same rolling-origin backtest as
``rnnkit forecast backtest`` with rnnkit's default settings (K folds at the end of the series,
each trained only on the values before its origin) and fits, on exactly the same histories:

* ETS: statsmodels ``ETSModel`` with additive errors, chosen by AICc among no trend / damped
  additive trend x no season / additive season (the season only where m > 1 and the history
  holds two full seasons);
* ARIMA: statsmodels ``ARIMA``, chosen by AICc (Hyndman-Khandakar style, on a small grid):
  seasonal differencing D = 1 where the seasonal strength of an STL decomposition exceeds
  0.64, d from repeated KPSS tests, then p, q in 0..2 (p + q <= 3) and, seasonal, P, Q in 0..1
  (P + Q <= 1), with a constant where d + D = 0 and a drift where d + D = 1.

It prints MASE and sMAPE (M4 definitions, mean over folds and then over series) of rnnkit, naive,
seasonal naive, drift, ETS and ARIMA, one row per series, plus an ablation: "linear", rnnkit's
linear path alone (``--no-recurrent``: the ridge forecast the network starts from)::

    python benchmarks/forecast_quality.py                  # every bundled series, 5 folds
    python benchmarks/forecast_quality.py --series nile,co2 --folds 2

statsmodels is needed here only (``pip install statsmodels``), never by rnnkit itself.
A standalone script: never collected by pytest.
"""
from __future__ import annotations

import os

# Small matrices: one BLAS thread is several times faster than a pool fighting over 2 cores
# (this must reach the BLAS before NumPy is imported).
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402

import numpy as np  # noqa: E402

from rnnkit.apps.forecast.backtest import backtest  # noqa: E402
from rnnkit.apps.forecast.metrics import BASELINES, mase, mean_of, smape  # noqa: E402
from rnnkit.apps.forecast.train import ForecastSettings  # noqa: E402
from rnnkit.data.series import BUNDLED, bundled_series  # noqa: E402


# ----------------------------------------------------------------------------- statsmodels

def _aicc(res, n: int) -> float:
    k = len(res.params)
    aic = res.aic
    return aic + 2 * k * (k + 1) / max(n - k - 1, 1)


def ets_forecast(y: np.ndarray, horizon: int, season: int) -> np.ndarray:
    """The AICc-best additive-error ETS model's point forecast."""
    from statsmodels.tsa.exponential_smoothing.ets import ETSModel
    seasonal = [None] + (["add"] if season > 1 and len(y) >= 2 * season + 2 else [])
    best, best_f = np.inf, None
    for trend in (None, "add"):
        for seas in seasonal:
            try:
                model = ETSModel(y, error="add", trend=trend, damped_trend=trend is not None,
                                 seasonal=seas, seasonal_periods=season if seas else None,
                                 initialization_method="estimated")
                res = model.fit(disp=False, maxiter=2000)
                crit = _aicc(res, len(y))
                f = np.asarray(res.forecast(horizon), np.float64)
            except (ValueError, np.linalg.LinAlgError, FloatingPointError):
                continue
            if np.isfinite(crit) and np.all(np.isfinite(f)) and crit < best:
                best, best_f = crit, f
    return best_f if best_f is not None else np.full(horizon, y[-1])


def _seasonal_strength(y: np.ndarray, season: int) -> float:
    from statsmodels.tsa.seasonal import STL
    res = STL(y, period=season, robust=True).fit()
    r, s = res.resid, res.seasonal
    return max(0.0, 1.0 - np.var(r) / max(np.var(s + r), 1e-12))


def _kpss_diffs(y: np.ndarray, max_d: int = 2) -> int:
    from statsmodels.tsa.stattools import kpss
    d = 0
    while d < max_d and len(y) > 10:
        if np.ptp(y) == 0:
            break
        _, p, _, _ = kpss(y, regression="c", nlags="auto")
        if p >= 0.05:
            break
        y = np.diff(y)
        d += 1
    return d


def arima_forecast(y: np.ndarray, horizon: int, season: int) -> np.ndarray:
    """The AICc-best ARIMA on a small grid (see the module docstring)."""
    from statsmodels.tsa.arima.model import ARIMA
    seasonal = season > 1 and len(y) >= 3 * season
    D = 1 if seasonal and _seasonal_strength(y, season) > 0.64 else 0
    yd = y[season:] - y[:-season] if D else y
    d = _kpss_diffs(yd)
    trend = "c" if d + D == 0 else ("t" if d + D == 1 else "n")
    PQ = [(0, 0), (1, 0), (0, 1)] if seasonal else [(0, 0)]
    best, best_f = np.inf, None
    for p in range(3):
        for q in range(3):
            if p + q > 3:
                continue
            for P, Q in PQ:
                sorder = (P, D, Q, season) if seasonal and (P or D or Q) else (0, 0, 0, 0)
                try:
                    res = ARIMA(y, order=(p, d, q), seasonal_order=sorder, trend=trend).fit()
                    crit = _aicc(res, len(y))
                    f = np.asarray(res.forecast(horizon), np.float64)
                except (ValueError, np.linalg.LinAlgError, FloatingPointError):
                    continue
                if np.isfinite(crit) and np.all(np.isfinite(f)) and crit < best:
                    best, best_f = crit, f
    return best_f if best_f is not None else np.full(horizon, y[-1])


# ----------------------------------------------------------------------------- the table

SETUP = {  # name: (horizon, season) as the backtest uses them
    "sunspots": (11, 11),  # the ~11-year solar cycle
    "co2": (12, 12),
    "nile": (10, 1),
    "elnino": (12, 12),
    "us_macro": (8, 4),
}


def evaluate(name: str, folds: int, settings_kw: dict) -> dict:
    horizon, season = SETUP[name]
    data = bundled_series(name)
    start = time.process_time()
    settings = ForecastSettings(horizon=horizon, season=season, **settings_kw)
    summary, forecasts = backtest(data, settings, folds=folds)
    seconds = time.process_time() - start
    # the ablation: the network's linear path alone (ridge, no recurrent training)
    _, linear = backtest(data, ForecastSettings(horizon=horizon, season=season,
                                                **{**settings_kw, "recurrent": False}), folds=folds)
    linear = {(f["fold"], f["id"]): f["mean"] for f in linear}
    series = {s.id: s for s in data.series}
    scores = {k: {} for k in ("rnnkit", "linear", *BASELINES, "ets", "arima")}  # name -> id -> [(mase, smape)]
    for f in forecasts:
        history = series[f["id"]].values[: f["origin"]]
        actual = f["actual"]
        preds = {"rnnkit": f["mean"], "linear": linear[f["fold"], f["id"]],
                 **{b: fn(history, horizon, season) for b, fn in BASELINES.items()},
                 "ets": ets_forecast(history, horizon, season),
                 "arima": arima_forecast(history, horizon, season)}
        for method, pred in preds.items():
            scores[method].setdefault(f["id"], []).append(
                (mase(actual, pred, history, season), smape(actual, pred)))
    row = {"series": name, "n": sum(len(s) for s in data.series), "count": len(data.series),
           "horizon": horizon, "season": season, "seconds": seconds,
           "coverage_80": summary["model"]["coverage_80"],
           "coverage_95": summary["model"]["coverage_95"]}
    for method, per_series in scores.items():
        row[method] = (mean_of(mean_of(m for m, _ in v) for v in per_series.values()),
                       mean_of(mean_of(s for _, s in v) for v in per_series.values()))
    return row


def print_table(rows: list[dict], folds: int) -> None:
    methods = ("rnnkit", "naive", "seasonal_naive", "drift", "ets", "arima", "linear")
    heads = ("rnnkit", "naive", "snaive", "drift", "ETS", "ARIMA", "linear")
    for k, what in enumerate(("MASE", "sMAPE %")):
        print(f"\n{what} (mean over {folds} rolling-origin folds, then over series; lower is better)")
        print(f"| {'series':<10} | {'values':>6} | {'H':>2} | {'m':>2} | "
              + " | ".join(f"{h:>7}" for h in heads) + " |")
        print("|" + "|".join(["-" * 12, "-" * 8, "-" * 4, "-" * 4] + ["-" * 9] * len(heads)) + "|")
        for r in rows:
            vals = [r[m][k] for m in methods]
            best = min(v for v in vals[:-1] if v is not None)  # the ablation does not compete
            cells = [(f"**{v:.3f}**" if v == best else f"{v:.3f}") if k == 0 else
                     (f"**{v:.2f}**" if v == best else f"{v:.2f}") for v in vals]
            n = f"{r['n']}" if r["count"] == 1 else f"{r['count']}x{r['n'] // r['count']}"
            print(f"| {r['series']:<10} | {n:>6} | {r['horizon']:>2} | {r['season']:>2} | "
                  + " | ".join(f"{c:>7}" for c in cells) + " |")
    print("\nlinear: rnnkit's linear path alone (--no-recurrent: the ridge forecast, no recurrent "
          "training)")
    print("\nrnnkit interval coverage (nominal 80% / 95%) and training CPU seconds per backtest:")
    for r in rows:
        print(f"  {r['series']:<10} {r['coverage_80']:.2f} / {r['coverage_95']:.2f}   "
              f"{r['seconds']:.0f}s")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--series", default=",".join(SETUP), help="comma-separated bundled series")
    p.add_argument("--folds", type=int, default=5, help="rolling-origin folds (default: 5)")
    p.add_argument("--seed", type=int, default=0, help="rnnkit's seed (default: 0)")
    args = p.parse_args()
    names = [n for n in args.series.split(",") if n]
    unknown = sorted(set(names) - set(SETUP) - set(BUNDLED))
    if unknown:
        p.error(f"unknown series {unknown}; bundled: {sorted(SETUP)}")
    try:
        import statsmodels  # noqa: F401
    except ImportError:
        print("this benchmark needs statsmodels: pip install statsmodels", file=sys.stderr)
        return 1
    # import statsmodels' models before silencing warnings: importing them resets some filters
    import statsmodels.tsa.arima.model  # noqa: F401
    import statsmodels.tsa.exponential_smoothing.ets  # noqa: F401
    import statsmodels.tsa.seasonal  # noqa: F401
    import statsmodels.tsa.stattools  # noqa: F401
    rows = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # statsmodels' convergence chatter
        for name in names:
            t = time.monotonic()
            rows.append(evaluate(name, args.folds, {"seed": args.seed}))
            r = rows[-1]
            print(f"{name}: rnnkit MASE {r['rnnkit'][0]:.3f}, seasonal naive "
                  f"{r['seasonal_naive'][0]:.3f}, ETS {r['ets'][0]:.3f}, ARIMA {r['arima'][0]:.3f} "
                  f"({time.monotonic() - t:.0f}s)", file=sys.stderr, flush=True)
    print_table(rows, args.folds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
