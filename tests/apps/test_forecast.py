"""The forecasting app: the network's gradients, learning, backtests without leakage, many series,
checkpoints and the command line end to end."""
import json

import numpy as np
import pytest

from rnnkit.apps.forecast.backtest import backtest
from rnnkit.apps.forecast.model import ForecastNet, NetConfig
from rnnkit.apps.forecast.train import (Forecaster, ForecastSettings, NetTask, _val_error,
                                        fit_linear, schedule_for)
from rnnkit.apps.forecast.windows import make_windows, training_windows
from rnnkit.cli import main
from rnnkit.data.series import Frequency, Series, SeriesSet, read_series_csv
from rnnkit.nn import gradcheck
from rnnkit.train.engine import fit

TINY = dict(model="direct", hidden=6, steps=20, patience=2, ensemble=2, batch=16)


def one_series(values, freq=Frequency("month", 1), start=2000 * 12):
    values = np.asarray(values, np.float64)
    return SeriesSet([Series("", start, values, np.zeros((len(values), 0)))], freq, "y")


def seasonal_trend(n, noise=0.0, seed=0):
    t = np.arange(n)
    rng = np.random.default_rng(seed)
    return 100 + 0.5 * t + 10 * np.sin(2 * np.pi * t / 12) + 4 * np.cos(4 * np.pi * t / 12) \
        + noise * rng.standard_normal(n)


def write_csv(path, values, start_year=2000, ids=None):
    lines = ["id,date,y" if ids else "date,y"]
    for sid, series in (zip(ids, values) if ids else [(None, values)]):
        for k, v in enumerate(series):
            date = f"{start_year + k // 12}-{k % 12 + 1:02d}-01"
            lines.append((f"{sid}," if sid else "") + f"{date},{v:.6f}")
    path.write_text("\n".join(lines) + "\n")
    return path


# ----------------------------------------------------------------------------- the network

@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_network_gradients_match_finite_differences(rng, cell):
    cfg = NetConfig(input_size=3, extra_size=5, horizon=4, cell=cell, hidden=5, layers=2,
                    dropout=0.0, dtype="float64")
    net = ForecastNet(cfg, rng)
    for _, p, _ in net.named_parameters():  # no zero blocks: every weight matters
        p[...] = rng.normal(0, 0.5, p.shape)
    x, extra = rng.standard_normal((3, 6, 3)), rng.standard_normal((3, 5))
    gradcheck(net, (x, extra), wrt=[])


def test_network_starts_as_the_linear_forecast(rng):
    cfg = NetConfig(input_size=1, extra_size=4, horizon=2, cell="lstm", hidden=3, layers=1,
                    dropout=0.0, dtype="float64")
    net = ForecastNet(cfg, rng)
    W, b, var = rng.standard_normal((2, 4)), rng.standard_normal(2), np.array([0.5, 2.0])
    net.set_linear(W, b, var)
    x, extra = rng.standard_normal((5, 7, 1)), rng.standard_normal((5, 4))
    mean, v = net.forward(x, extra)
    np.testing.assert_allclose(mean, extra @ W.T + b, rtol=1e-12)
    np.testing.assert_allclose(v, np.broadcast_to(var, v.shape), rtol=1e-9)


def test_ridge_recovers_a_linear_rule_exactly():
    # y[t + h] = 2 y[t - 1] - y[t - 2] (a straight line) is linear in the context: with a
    # vanishing penalty the fit is exact, on the training windows and on unseen ones
    data = one_series(3.0 + 0.7 * np.arange(60), Frequency("step", 1), 0)
    train, val, _ = training_windows(data, context=4, horizon=3, dtype=np.float64)
    W, b, var, _ = fit_linear(train, None, context=4, season=1, choice=("naive", 1e-12))
    np.testing.assert_allclose(train.extra @ W.T + b, train.target, rtol=0, atol=1e-8)
    np.testing.assert_allclose(val.extra @ W.T + b, val.target, rtol=0, atol=1e-8)
    assert var.max() < 1e-16


@pytest.mark.parametrize("prior", ["naive", "mean"])
def test_ridge_solves_its_penalised_normal_equations(prior):
    """W, b minimise |[X 1] [W b]^T - Y|^2 + lam n |[W b] - [P 0]|^2, P the prior's weights
    (naive: 0; mean: 1 / context on the context columns), written out with np.linalg.solve."""
    rng = np.random.default_rng(3)
    data = one_series(np.cumsum(rng.standard_normal(80)), Frequency("step", 1), 0)
    train, _, _ = training_windows(data, context=5, horizon=2, dtype=np.float64)
    lam = 0.1
    W, b, _, chosen = fit_linear(train, None, context=5, season=1, choice=(prior, lam))
    assert chosen == (prior, lam)
    X, Y = train.extra, train.target
    n, E = X.shape
    P = np.zeros((2, E))
    if prior == "mean":
        P[:, :5] = 1 / 5
    X1 = np.concatenate([X, np.ones((n, 1))], axis=1)
    W1 = np.linalg.solve(X1.T @ X1 + lam * n * np.eye(E + 1), X1.T @ (Y - X @ P.T)).T  # (2, E + 1)
    np.testing.assert_allclose(W, W1[:, :E] + P, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(b, W1[:, E], rtol=1e-10, atol=1e-12)


# ----------------------------------------------------------------------------- learning

def _mase(summary, name):
    return summary[name]["mase"]


def test_learns_a_noiseless_seasonal_series():
    """Trend + two harmonics: seasonal naive is off by 12 * slope at every step (MASE 1)."""
    data = one_series(seasonal_trend(132))
    s = ForecastSettings(horizon=12, model="direct", hidden=8, steps=60, patience=5, ensemble=1,
                         seed=1)
    summary, _ = backtest(data, s, folds=1, references=())
    assert _mase(summary, "seasonal_naive") == pytest.approx(1.0)
    assert _mase(summary, "model") < 0.1


def test_the_recurrent_part_learns_on_its_own():
    """With the head's linear inputs zeroed, only the LSTM can carry the pattern to the output."""
    data = one_series(seasonal_trend(132))
    train, val, _ = training_windows(data, context=24, horizon=12, dtype=np.float32)
    S = np.zeros((12, val.extra.shape[1]))
    S[np.arange(12), 12 + np.arange(12)] = 1  # z one season back
    snaive = np.mean(np.abs(val.extra @ S.T - val.target))
    train.extra[:] = 0
    val.extra[:] = 0
    cfg = NetConfig(input_size=train.x.shape[2], extra_size=train.extra.shape[1], horizon=12,
                    cell="lstm", hidden=16, layers=1, dropout=0.0, dtype="float32")
    s = schedule_for(ForecastSettings(horizon=12, hidden=16, lr=1e-2, min_lr=1e-2), len(train))
    task = NetTask(cfg, s, train, val, 0)
    summary = fit(task, s, progress=False)
    task.model.load_state_dict(summary["run"].best_params)
    assert _val_error(task.model, val) < 0.5 * snaive


# ----------------------------------------------------------------------------- backtests

def test_backtest_does_not_leak_the_future():
    """Corrupting every value after fold 1's origin leaves fold 1's forecasts bit-identical."""
    y = seasonal_trend(90, noise=1.0)
    s = ForecastSettings(horizon=6, **TINY)
    _, clean = backtest(one_series(y), s, folds=2, references=())
    y_bad = y.copy()
    y_bad[90 - 12:] += 1e4 * np.arange(1, 13)  # fold 1's origin is 2 * 6 before the end
    _, dirty = backtest(one_series(y_bad), s, folds=2, references=())
    f1_clean, f1_dirty = clean[0], dirty[0]
    assert f1_clean["fold"] == f1_dirty["fold"] == 1 and f1_clean["origin"] == 90 - 12
    for key in ("mean", "lower_80", "upper_80", "lower_95", "upper_95"):
        np.testing.assert_array_equal(f1_clean[key], f1_dirty[key])
    assert not np.allclose(clean[1]["mean"], dirty[1]["mean"])  # fold 2 trained on the corruption


def test_training_targets_never_reach_validation_targets():
    data = one_series(np.arange(50.0), Frequency("step", 1), 0)  # value == position, scale 1
    train, val, full = training_windows(data, context=6, horizon=4, dtype=np.float64)
    def positions(w):
        return w.level[:, None] + w.target  # scale 1: target position = level + z
    assert positions(train).max() < positions(val).min()
    assert len(full) == 50 - 4 - 3 + 1  # origins from context // 2 = 3 to 50 - 4
    assert positions(full).max() == 49


def test_backtest_summary_and_baselines():
    y = seasonal_trend(80, noise=0.5)
    summary, forecasts = backtest(one_series(y), ForecastSettings(horizon=4, **TINY), folds=3,
                                  references=())
    assert {k: summary[k] for k in ("horizon", "folds", "season")} == {"horizon": 4, "folds": 3,
                                                                         "season": 12}
    assert set(summary["model"]) == {"mae", "rmse", "smape", "mase", "owa", "coverage_80",
                                     "coverage_95", "msis", "pinball"}
    for name in ("naive", "seasonal_naive", "drift", "naive2"):
        assert set(summary[name]) == {"mae", "rmse", "smape", "mase", "owa"}
    assert summary["naive2"]["owa"] == pytest.approx(1.0)
    # naive by hand, averaged over the three folds
    expect = np.mean([np.mean(np.abs(y[o:o + 4] - y[o - 1])) for o in (68, 72, 76)])
    assert summary["naive"]["mae"] == pytest.approx(expect)
    assert [f["origin"] for f in forecasts] == [68, 72, 76]
    with pytest.raises(ValueError, match="needs at least"):
        backtest(one_series(y[:17]), ForecastSettings(horizon=4, **TINY), folds=3,
                 references=())  # 18 needed


def test_max_time_stops_training_early():
    y = seasonal_trend(200, noise=0.5)
    s = ForecastSettings(horizon=6, model="direct", hidden=8, steps=100_000, patience=10_000,
                         ensemble=2)
    model = Forecaster(s, Frequency("month", 1), 0)
    info = model.fit(one_series(y), max_time=1.0)
    assert info["seconds"] < 5 and info["epochs"] < 10_000 and len(model.nets) == 2


# ----------------------------------------------------------------------------- many series

def test_one_global_model_for_many_series_keeps_each_scale(tmp_path):
    base = seasonal_trend(72, noise=0.2)
    path = write_csv(tmp_path / "long.csv", [base, 1000 * base, base - 50], ids=["a", "b", "c"])
    data = read_series_csv(path, "y", id_col="id")
    model = Forecaster(ForecastSettings(horizon=6, **TINY), data.freq, 0)
    model.fit(data)
    fc = model.forecast(data)
    assert [f["id"] for f in fc] == ["a", "b", "c"]
    # per-series scaling: the same shape at 1000 times the scale gives 1000 times the forecast
    np.testing.assert_allclose(fc[1]["mean"], 1000 * fc[0]["mean"], rtol=1e-4)
    np.testing.assert_allclose(fc[1]["sd"], 1000 * fc[0]["sd"], rtol=1e-4)
    np.testing.assert_allclose(fc[2]["mean"], fc[0]["mean"] - 50, rtol=1e-4)
    summary, _ = backtest(data, ForecastSettings(horizon=6, **TINY), folds=2, references=())
    assert summary["series"] == 3


def test_checkpoint_round_trip(tmp_path):
    data = one_series(seasonal_trend(60, noise=0.3))
    model = Forecaster(ForecastSettings(horizon=5, **TINY), data.freq, 0)
    model.fit(data)
    model.save(tmp_path / "m", {"target": "y", "time_col": None, "id_col": None, "covariates": [],
                                "fill": None})
    loaded, options = Forecaster.load(tmp_path / "m")
    assert options["target"] == "y"
    a, b = model.forecast(data)[0], loaded.forecast(data)[0]
    for key in ("mean", "sd", "lower_95"):
        np.testing.assert_array_equal(a[key], b[key])
    (tmp_path / "m" / "member0.npz").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="corrupt checkpoint"):
        Forecaster.load(tmp_path / "m")


def test_covariates_and_windows(tmp_path):
    data = one_series(seasonal_trend(40))
    data.series[0].covariates = np.arange(80.0).reshape(40, 2)
    data.covariates = ("a", "b")
    w = make_windows(data.series[0], data.freq, np.array([10, 40]), 8, 3, np.float64,
                     with_target=False)
    assert w.x.shape == (2, 8, 1 + 2 + 2) and w.extra.shape == (2, 8 + 3 * 2)
    np.testing.assert_allclose(w.x[:, -1, 0], 0.0)  # the last context value is the level


# ----------------------------------------------------------------------------- command line

CLI_TINY = ["--model", "direct", "--hidden", "6", "--steps", "9", "--patience", "2",
            "--ensemble", "1", "--quiet"]


def test_cli_backtest_json(tmp_path, capsys):
    path = write_csv(tmp_path / "s.csv", seasonal_trend(60, noise=0.3))
    assert main(["forecast", "backtest", "--csv", str(path), "--target", "y", "--horizon", "4",
                 "--folds", "2", "--json", *CLI_TINY]) == 0
    out = json.loads(capsys.readouterr().out)
    assert (out["horizon"], out["folds"], out["season"]) == (4, 2, 12)
    for name in ("model", "naive", "seasonal_naive", "drift", "naive2"):
        assert {"mae", "rmse", "smape", "mase", "owa"} <= set(out[name])
    assert 0.0 <= out["model"]["coverage_80"] <= 1.0
    # ETS and Theta on the same folds wherever statsforecast or statsmodels is installed
    from rnnkit.apps.forecast import classical
    assert out["references"] == list(classical.available())
    for name in classical.available():
        assert out[name]["mase"] > 0 and out[name]["owa"] > 0


def test_cli_train_then_predict(tmp_path, capsys):
    path = write_csv(tmp_path / "s.csv", [seasonal_trend(50), seasonal_trend(50) * 3], ids=["x", "y2"])
    model_dir = tmp_path / "model"
    args = ["forecast", "train", "--csv", str(path), "--target", "y", "--id-col", "id",
            "--horizon", "3", "--out", str(model_dir), *CLI_TINY]
    assert main(args) == 0
    assert main(args) == 1  # refuses to replace a model
    assert "already holds a checkpoint" in capsys.readouterr().err
    assert main(args + ["--overwrite", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["series"] == 2
    assert main(["forecast", "predict", "--model", str(model_dir), "--csv", str(path), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["horizon"] == 3 and [s["id"] for s in out["series"]] == ["x", "y2"]
    first = out["series"][0]
    assert first["time"] == ["2004-03-01", "2004-04-01", "2004-05-01"]  # 50 months from 2000-01
    for h in range(3):
        assert (first["lower_95"][h] <= first["lower_80"][h] <= first["mean"][h]
                <= first["upper_80"][h] <= first["upper_95"][h])
    assert main(["forecast", "predict", "--model", str(model_dir), "--csv", str(path)]) == 0
    rows = capsys.readouterr().out.strip().split("\n")
    assert rows[0] == "id,time,mean,lower_80,upper_80,lower_95,upper_95" and len(rows) == 1 + 2 * 3


def test_cli_plot_is_optional(tmp_path, capsys, monkeypatch):
    path = write_csv(tmp_path / "s.csv", seasonal_trend(40))
    model_dir = tmp_path / "m"
    assert main(["forecast", "train", "--csv", str(path), "--target", "y", "--horizon", "3",
                 "--out", str(model_dir), *CLI_TINY]) == 0
    png = tmp_path / "f.png"
    try:
        import matplotlib  # noqa: F401
        assert main(["forecast", "predict", "--model", str(model_dir), "--csv", str(path),
                     "--plot", str(png)]) == 0
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        png.unlink()
    except ImportError:
        pass
    # without matplotlib: no plot, no error
    import builtins
    real_import = builtins.__import__

    def no_matplotlib(name, *args, **kwargs):
        if name.startswith("matplotlib"):
            raise ImportError("no matplotlib")
        return real_import(name, *args, **kwargs)
    monkeypatch.setattr(builtins, "__import__", no_matplotlib)
    assert main(["forecast", "predict", "--model", str(model_dir), "--csv", str(path),
                 "--plot", str(png)]) == 0
    assert not png.exists() and "matplotlib is not installed" in capsys.readouterr().err


def test_cli_errors_are_one_line_naming_the_row(tmp_path, capsys):
    path = tmp_path / "bad.csv"
    values = [str(k) for k in range(30)]
    values[1] = ""  # line 3
    path.write_text("date,y\n" + "".join(f"{2020 + k // 12}-{k % 12 + 1:02d}-01,{v}\n"
                                          for k, v in enumerate(values)))
    args = ["forecast", "backtest", "--csv", str(path), "--target", "y", "--horizon", "2",
            "--folds", "1", *CLI_TINY]
    assert main(args) == 1
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "line 3" in err and "missing value in column 'y'" in err
    assert main(args + ["--fill", "interpolate", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["folds"] == 1
    assert main(["forecast", "predict", "--model", str(tmp_path / "none"), "--csv", str(path)]) == 1
    assert "no checkpoint" in capsys.readouterr().err
