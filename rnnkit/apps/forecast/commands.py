"""``rnnkit forecast train | predict | backtest``: argument definitions and the thin command bodies."""
from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import os
import sys
from pathlib import Path

import numpy as np

from ...data.series import FILL_METHODS, SeriesSet, read_series_csv
from ...train.cli import add_train_options, run_callbacks, start_run
from ...data.files import check_file_output
from ...train.mpi import world
from ...train.progress import plot_curves
from ...train.settings import add_options, check_max_time, from_options
from ...train.task import TaskSpec
from .backtest import backtest, format_table
from .plot import plot_forecasts
from .models import build_forecaster, choose_model, load_forecaster
from .train import Forecaster, ForecastSettings, calibrate_variance, fingerprint, save_plan


def _data_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--csv", required=True, help="CSV file with a header row")
    p.add_argument("--target", required=True, help="column to forecast")
    p.add_argument("--time-col", default=None,
                   help="time column: dates (2024-01-31, 2024-01, 2024-Q1, 2024-01-31 13:00) or "
                        "integer steps (default: a column named date, time, timestamp, year, ...; "
                        "else the row order)")
    p.add_argument("--id-col", default=None,
                   help="series-id column: many series in long format, one global model")
    p.add_argument("--covariates", nargs="+", default=None, metavar="COL",
                   help="extra input columns (their past values are inputs; no future values needed)")
    p.add_argument("--fill", choices=FILL_METHODS, default=None,
                   help="fill missing values and missing timestamps instead of stopping with an error")


def _model_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--horizon", type=int, required=True, help="steps to forecast")
    add_options(p, ForecastSettings, skip=("horizon",))
    p.add_argument("--max-time", type=float, default=None, metavar="SECONDS",
                   help="seconds the whole backtest may train (shared between folds and networks)")
    p.add_argument("--quiet", action="store_true", help="no progress messages")


def register(sub: argparse._SubParsersAction) -> None:
    fc = sub.add_parser("forecast", help="time-series forecasting",
                        description="Forecast one or many time series with a global LSTM/GRU/RNN.")
    verbs = fc.add_subparsers(dest="verb", required=True, metavar="{train,predict,backtest}")

    p = verbs.add_parser("backtest", help="rolling-origin backtest against naive baselines",
                         description="Train on the values before each of K origins at the end of the "
                                     "series, forecast the horizon after it, and score the model "
                                     "beside the naive, seasonal-naive and drift forecasts.")
    _data_options(p)
    _model_options(p)
    p.add_argument("--folds", type=int, default=3, help="rolling-origin folds (default: 3)")
    p.add_argument("--references", action=argparse.BooleanOptionalAction, default=True,
                   help="also score damped-trend ETS and Theta on the same folds when "
                        "statsforecast or statsmodels is installed (default: yes)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--plot", default=None, metavar="PNG",
                   help="draw the folds' forecasts over the history (needs matplotlib)")
    p.set_defaults(run=cmd_backtest)

    p = verbs.add_parser("train", help="train a forecasting model on all the data",
                         description="Train the model on every series of the CSV and save it to "
                                     "--out.  --max-time without --steps is a budget the networks "
                                     "share (the model completes); with --steps it is a limit "
                                     "after which --resume continues.")
    data_options(p)
    add_train_options(p, ForecastSettings, skip=("horizon",))
    p.add_argument("--json", action="store_true", help="print a JSON summary")
    p.set_defaults(run=cmd_train)

    p = verbs.add_parser("predict", help="forecast the horizon after the end of every series",
                         description="Forecast with a trained model from the history in --csv "
                                     "(the columns the model was trained with).")
    p.add_argument("--model", required=True, help="model directory written by train")
    p.add_argument("--csv", required=True, help="CSV holding the history to forecast from")
    p.add_argument("--fill", choices=FILL_METHODS, default=None,
                   help="fill missing values (default: as in training)")
    p.add_argument("--json", action="store_true", help="print one JSON object (default: CSV rows)")
    p.add_argument("--plot", default=None, metavar="PNG",
                   help="draw history, forecast and intervals (needs matplotlib)")
    p.set_defaults(run=cmd_predict)


def _log(args):
    if getattr(args, "quiet", False) or not world().root:  # under MPI rank 0 alone prints
        return None
    return lambda msg: print(msg, file=sys.stderr, flush=True)


def _settings(args) -> ForecastSettings:
    s = from_options(ForecastSettings, args, horizon=args.horizon)
    s.check()
    check_max_time(args.max_time)
    return s


def _read(args) -> SeriesSet:
    return read_series_csv(args.csv, args.target, time_col=args.time_col, id_col=args.id_col,
                           covariates=args.covariates or (), fill=args.fill)


def _describe(data: SeriesSet) -> str:
    lengths = [len(s) for s in data.series]
    sizes = f"{min(lengths)}-{max(lengths)}" if min(lengths) != max(lengths) else f"{lengths[0]}"
    filled = sum(s.filled for s in data.series)
    return (f"{len(data)} series of {sizes} values ({data.freq.name})"
            + (f", {filled} filled" if filled else ""))


def _plot(path: str | None, panels: list[dict], freq, title: str) -> None:
    if not path:
        return
    if plot_forecasts(path, panels, freq, title):
        print(f"plot: {path}", file=sys.stderr)
    else:
        print("plot skipped: matplotlib is not installed (pip install matplotlib)", file=sys.stderr)


def _tail(values: np.ndarray, start: int, step: int, keep: int):
    """The last ``keep`` values and the time index of the first of them."""
    cut = max(len(values) - keep, 0)
    return values[cut:], start + step * cut


def _options(args, data: SeriesSet) -> dict:
    """The data options a forecast run folder records (predict reads its CSV with them)."""
    return {"target": args.target, "time_col": data.time_col, "id_col": args.id_col,
            "covariates": list(data.covariates), "fill": args.fill}


def data_options(p: argparse.ArgumentParser) -> None:
    _data_options(p)
    p.add_argument("--horizon", type=int, required=True, help="steps to forecast")


def make_task(settings: ForecastSettings, args: argparse.Namespace):
    data = _read(args)
    return Forecaster(settings, data.freq, len(data.covariates)).validation_task(data)


def save_run(task, settings: ForecastSettings, args: argparse.Namespace, directory) -> None:
    """A forecaster of the task's one network (its parameters as they are), variances
    calibrated on the validation windows: ``forecast train --ensemble 1 --no-refit``'s model."""
    data = _read(args)
    s = dataclasses.replace(settings, ensemble=1, refit=False)
    fc = Forecaster(s, data.freq, len(data.covariates), nets=[task.model.eval()])
    fc.var_scale = calibrate_variance(task.model, task.val)
    fc.save(directory, _options(args, data),
            meta={"csv": os.path.abspath(args.csv), "fingerprint": fingerprint(data)})


# how tools (rnnkit compare) build this app's task
TASK = TaskSpec("forecast", ForecastSettings, data_options, make_task,
                skip=("horizon", "ensemble", "refit", "patience", "recurrent"), save_run=save_run,
                about="the early-stopping network of forecast train (one network from the ridge "
                      "start on the training windows); validation MAE of the scaled forecasts "
                      "on the validation windows")


def cmd_backtest(args: argparse.Namespace) -> int:
    settings = _settings(args)
    if args.plot:
        check_file_output(args.plot, "--plot")
    data = _read(args)
    log = _log(args)
    if log:
        log(f"rnnkit forecast backtest: {_describe(data)}, {args.folds} folds of horizon "
            f"{settings.horizon}")
    summary, forecasts = backtest(data, settings, folds=args.folds, max_time=args.max_time,
                                  log=log, references=None if args.references else ())
    if not world().root:
        return 0
    if args.json:
        print(json.dumps(summary))
    else:
        print(format_table(summary))
    if args.plot:
        panels = []
        for s in data.series:
            keep = args.folds * settings.horizon + 4 * max(summary["context"], settings.horizon)
            hist, start = _tail(s.values, s.start, data.freq.step, keep)
            fcs = [{**f, "start": s.start + data.freq.step * f["origin"]}
                   for f in forecasts if f["id"] == s.id]
            panels.append({"id": s.id, "history": hist, "history_start": start, "forecasts": fcs})
        _plot(args.plot, panels, data.freq, f"rnnkit backtest: {args.target}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    group, settings, explicit, ckpt = start_run(args, ForecastSettings, "forecast")
    out = Path(args.out)

    def read():
        data = _read(args)
        options = _options(args, data)
        if ckpt is not None and (ckpt[0].get("fingerprint") != fingerprint(data)
                                 or ckpt[0].get("data") != options):
            raise ValueError("--resume: the data (or its options) differ from the run's")
        return data, options
    data, options = group.together(read)  # every rank reads the CSV itself
    settings = choose_model(settings, data)  # --model auto: by the data, saved as chosen
    if ckpt is None and group.root:  # under MPI rank 0 alone writes the run folder
        out.mkdir(parents=True, exist_ok=True)
        save_plan(out, settings, options, data)
    log = _log(args)
    if log:
        log(f"rnnkit forecast train: {_describe(data)}, horizon {settings.horizon}, "
            f"model {settings.model}")
    model = build_forecaster(settings, data.freq, len(data.covariates))
    info = model.fit(data, out=out, max_time=args.max_time, budget="steps" not in explicit, log=log,
                     callbacks=run_callbacks(args))
    if not group.root:
        return 130 if info["stopped"] == "interrupted" else 0
    if not info.get("validation_windows", 1):
        print("rnnkit forecast train: warning: the series are too short to spare validation "
              "windows; the model is the ridge forecast shrunk towards the (seasonal) naive one",
              file=sys.stderr)
    if info["stopped"]:
        print(f"rnnkit forecast train: {info['stopped']} after {info['seconds']:.1f}s; "
              f"--resume continues the run in {out}", file=sys.stderr)
        return 130 if info["stopped"] == "interrupted" else 0
    model.save(out, options, meta={"csv": os.path.abspath(args.csv), "fingerprint": fingerprint(data)})
    history = info["history"]
    if history and history["eval"].get("mae"):  # the early-stopping run's validation curve
        plot_curves(out / "validation.png", {"validation MAE": (history["eval_step"],
                                                                history["eval"]["mae"])},
                    ylabel="MAE of the scaled forecasts", title="rnnkit forecast train")
    summary = {"out": str(out), "series": info["series"], "windows": info["windows"],
               "epochs": info["epochs"], "seconds": round(info["seconds"], 3),
               "season": model.season, "context": model.context, "horizon": model.horizon,
               "frequency": data.freq.name}
    if args.json:
        print(json.dumps(summary))
    elif log:
        log(f"model saved to {out}")
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    if args.plot:
        check_file_output(args.plot, "--plot")
    model, options = load_forecaster(args.model)
    data = read_series_csv(args.csv, options["target"], time_col=options["time_col"],
                           id_col=options["id_col"], covariates=options["covariates"],
                           fill=args.fill if args.fill is not None else options["fill"])
    forecasts = model.forecast(data)
    freq = data.freq
    rows = []
    for f in forecasts:
        times = [freq.format(f["start"] + freq.step * h) for h in range(model.horizon)]
        rows.append({"id": f["id"] if options["id_col"] else None, "time": times,
                     **{k: [float(v) for v in f[k]] for k in
                        ("mean", "lower_80", "upper_80", "lower_95", "upper_95")}})
    if args.json:
        print(json.dumps({"horizon": model.horizon, "frequency": freq.name, "target": options["target"],
                          "series": rows}))
    else:
        keys = ("mean", "lower_80", "upper_80", "lower_95", "upper_95")
        out = csv.writer(sys.stdout, lineterminator="\n")
        out.writerow((["id"] if options["id_col"] else []) + ["time", *keys])
        for r in rows:
            for h in range(model.horizon):
                cells = ([r["id"]] if options["id_col"] else []) + [r["time"][h]]
                out.writerow(cells + [f"{r[k][h]:.6g}" for k in keys])
    if args.plot:
        panels = []
        for s, f in zip(data.series, forecasts):
            hist, start = _tail(s.values, s.start, freq.step, max(8 * model.horizon, 4 * model.context))
            panels.append({"id": s.id, "history": hist, "history_start": start, "forecasts": [f]})
        _plot(args.plot, panels, freq, f"rnnkit forecast: {options['target']}")
    return 0
