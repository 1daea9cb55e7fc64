"""Rolling-origin backtests: K folds at the end of the series, the model and the baselines alike.

Fold k of K (k = 1 oldest) puts its forecast origin ``(K - k + 1) * horizon`` values before the
end of every series: the model is trained from scratch on the values before the origin only
(scales, validation slice and early stopping included) and forecasts the ``horizon`` values
after it, so the folds' test windows tile the last ``K * horizon`` values without overlap.
The naive, seasonal-naive, drift and Naive2 forecasts are made from the same histories, and
so are the statistical references (damped-trend ETS and Theta, `classical`) when statsforecast
or statsmodels is installed.

Each metric is computed per series and fold, averaged over the folds of a series, then over the
series (M4's convention: every series counts the same, whatever its length or scale); the OWA of
every method is M4's, relative to Naive2's mean sMAPE and mean MASE on the same folds.
"""
from __future__ import annotations

from ...data.series import SeriesSet
from . import classical
from .metrics import BASELINES, interval_metrics, mean_of, owa, point_metrics
from .models import build_forecaster, choose_model
from .train import Deadline, ForecastSettings

POINT = ("mae", "rmse", "smape", "mase")
INTERVAL = ("coverage_80", "coverage_95", "msis", "pinball")


def fold_cuts(data: SeriesSet, horizon: int, folds: int) -> list[int]:
    """Values held out at each fold's origin (largest first); checks every series is long enough."""
    if folds < 1:
        raise ValueError(f"--folds must be >= 1, got {folds}")
    need = folds * horizon + horizon + 2
    for s in data.series:
        if len(s) < need:
            who = f"series {s.id!r}" if data.id_col else "the series"
            raise ValueError(f"{who} has {len(s)} values; a backtest of {folds} fold(s) of horizon "
                             f"{horizon} needs at least {need} (fewer --folds or a shorter --horizon)")
    return [(folds - k) * horizon for k in range(folds)]


def backtest(data: SeriesSet, settings: ForecastSettings, folds: int = 3,
             max_time: float | None = None, log=None,
             references: tuple[str, ...] | None = None) -> tuple[dict, list[dict]]:
    """Backtest the model, the baselines and the statistical ``references`` (default: every
    one `classical.available()`; () for none).

    Returns (summary, forecasts): the JSON-able summary the CLI prints, and for every fold and
    series {fold, id, origin (index into the series), actual, mean, sd, lower_80, ...}.
    """
    settings.check()
    settings = choose_model(settings, data)
    H = settings.horizon
    references = classical.available() if references is None else tuple(references)
    season = context = None
    cuts = fold_cuts(data, H, folds)
    deadline = Deadline(max_time)
    others = {**BASELINES, **{r: (lambda y, h, m, r=r: classical.forecast(r, y, h, m))
                              for r in references}}
    names = ("model",) + tuple(others)
    # scores[name][series index] -> list of per-fold metric dicts
    scores = {name: [[] for _ in data.series] for name in names}
    forecasts = []
    for k, cut in enumerate(cuts):
        past = data.truncate(cut)
        model = build_forecaster(settings, data.freq, len(data.covariates))
        season, context = model.season, model.context
        model.fit(past, max_time=deadline.share(len(cuts) - k), log=log)
        fc = model.forecast(past)
        for i, (s, f) in enumerate(zip(data.series, fc)):
            history = past.series[i].values
            actual = s.values[len(s) - cut : len(s) - cut + H]
            m = point_metrics(actual, f["mean"], history, season)
            m.update(interval_metrics(actual, f, history, season))
            scores["model"][i].append(m)
            for name, baseline in others.items():
                scores[name][i].append(point_metrics(actual, baseline(history, H, season), history,
                                                     season))
            forecasts.append({"fold": k + 1, "id": s.id, "origin": len(s) - cut, "actual": actual,
                              **f})
        if log:
            mase_now = mean_of(m["mase"] for per in scores["model"] for m in per[-1:])
            snaive = mean_of(m["mase"] for per in scores["seasonal_naive"] for m in per[-1:])
            log(f"fold {k + 1}/{len(cuts)}: origin {len(cuts) - k} x {H} before the end, "
                f"MASE {_fmt(mase_now)} (seasonal naive {_fmt(snaive)}), "
                f"{model.info['epochs'] if model.info['epochs'] is not None else '-'} passes, "
                f"{model.info['seconds']:.1f}s")
    summary = {"horizon": H, "folds": len(cuts), "season": season}
    for name in names:
        keys = POINT + (INTERVAL if name == "model" else ())
        summary[name] = {key: mean_of(mean_of(m[key] for m in per) for per in scores[name])
                         for key in keys}
    n2 = summary["naive2"]
    for name in names:
        summary[name]["owa"] = owa(summary[name]["smape"], summary[name]["mase"], n2["smape"],
                                   n2["mase"])
    summary["series"] = len(data)
    summary["context"] = context
    summary["model_kind"] = settings.model
    summary["references"] = list(references)
    return summary, forecasts


def _fmt(x) -> str:
    return "n/a" if x is None else f"{x:.3f}"


def format_table(summary: dict) -> str:
    """The summary as a small text table."""
    lines = [f"backtest: {summary['series']} series, {summary['folds']} folds of horizon "
             f"{summary['horizon']}, season {summary['season']}, context {summary['context']}",
             f"{'method':<16}{'MAE':>12}{'RMSE':>12}{'sMAPE %':>10}{'MASE':>8}{'OWA':>7}"
             f"{'cov80':>7}{'cov95':>7}{'MSIS':>8}"]
    for name in ("model",) + tuple(BASELINES) + tuple(summary.get("references", ())):
        m = summary[name]
        cov = (f"{m['coverage_80']:>7.2f}{m['coverage_95']:>7.2f}{_fmt2(m['msis']):>8}"
               if name == "model" else "")
        label = f"rnnkit {summary.get('model_kind', '')}".strip() if name == "model" else name
        lines.append(f"{label:<16}{_num(m['mae']):>12}{_num(m['rmse']):>12}"
                     f"{_fmt2(m['smape']):>10}{_fmt(m['mase']):>8}{_fmt(m['owa']):>7}{cov}")
    return "\n".join(lines)


def _num(x) -> str:
    return "n/a" if x is None else f"{x:.4g}"


def _fmt2(x) -> str:
    return "n/a" if x is None else f"{x:.2f}"


__all__ = ["backtest", "fold_cuts", "format_table"]
