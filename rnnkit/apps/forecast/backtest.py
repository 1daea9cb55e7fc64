"""Rolling-origin backtests: K folds at the end of the series, the model and the baselines alike.

Fold k of K (k = 1 oldest) puts its forecast origin ``(K - k + 1) * horizon`` values before the
end of every series: the model is trained from scratch on the values before the origin only
(scales, validation slice and early stopping included) and forecasts the ``horizon`` values
after it, so the folds' test windows tile the last ``K * horizon`` values without overlap.
The naive, seasonal-naive and drift forecasts are made from the same histories.

Each metric is computed per series and fold, averaged over the folds of a series, then over the
series (M4's convention: every series counts the same, whatever its length or scale).
"""
from __future__ import annotations

from ...data.series import SeriesSet
from .metrics import BASELINES, coverage, mean_of, point_metrics
from .train import Deadline, Forecaster, ForecastSettings, resolve

POINT = ("mae", "rmse", "smape", "mase")


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
             max_time: float | None = None, log=None) -> tuple[dict, list[dict]]:
    """Backtest the model and the baselines.

    Returns (summary, forecasts): the JSON-able summary the CLI prints, and for every fold and
    series {fold, id, origin (index into the series), actual, mean, sd, lower_80, ...}.
    """
    settings.check()
    H = settings.horizon
    season, context = resolve(settings, data.freq)
    cuts = fold_cuts(data, H, folds)
    deadline = Deadline(max_time)
    names = ("model",) + tuple(BASELINES)
    # scores[name][series index] -> list of per-fold metric dicts
    scores = {name: [[] for _ in data.series] for name in names}
    forecasts = []
    for k, cut in enumerate(cuts):
        past = data.truncate(cut)
        model = Forecaster(settings, data.freq, len(data.covariates))
        model.fit(past, max_time=deadline.share(len(cuts) - k))
        fc = model.forecast(past)
        for i, (s, f) in enumerate(zip(data.series, fc)):
            history = past.series[i].values
            actual = s.values[len(s) - cut : len(s) - cut + H]
            m = point_metrics(actual, f["mean"], history, season)
            m["coverage_80"] = coverage(actual, f["lower_80"], f["upper_80"])
            m["coverage_95"] = coverage(actual, f["lower_95"], f["upper_95"])
            scores["model"][i].append(m)
            for name, baseline in BASELINES.items():
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
        keys = POINT + (("coverage_80", "coverage_95") if name == "model" else ())
        summary[name] = {key: mean_of(mean_of(m[key] for m in per) for per in scores[name])
                         for key in keys}
    summary["series"] = len(data)
    summary["context"] = context
    return summary, forecasts


def _fmt(x) -> str:
    return "n/a" if x is None else f"{x:.3f}"


def format_table(summary: dict) -> str:
    """The summary as a small text table."""
    lines = [f"backtest: {summary['series']} series, {summary['folds']} folds of horizon "
             f"{summary['horizon']}, season {summary['season']}, context {summary['context']}",
             f"{'method':<16}{'MAE':>12}{'RMSE':>12}{'sMAPE %':>10}{'MASE':>8}{'cov80':>7}{'cov95':>7}"]
    for name in ("model",) + tuple(BASELINES):
        m = summary[name]
        cov = (f"{m['coverage_80']:>7.2f}{m['coverage_95']:>7.2f}" if name == "model" else "")
        lines.append(f"{'rnnkit' if name == 'model' else name:<16}{_num(m['mae']):>12}"
                     f"{_num(m['rmse']):>12}{_fmt2(m['smape']):>10}{_fmt(m['mase']):>8}{cov}")
    return "\n".join(lines)


def _num(x) -> str:
    return "n/a" if x is None else f"{x:.4g}"


def _fmt2(x) -> str:
    return "n/a" if x is None else f"{x:.2f}"


__all__ = ["backtest", "fold_cuts", "format_table"]
