"""The ES-RNN: exact gradients through the smoothing recursion, coefficients recovered from a
Holt-Winters process, short series, the too-short fallback, checkpoints and the command line."""
import json

import numpy as np
import pytest

from rnnkit.apps.forecast.esrnn import (ESRNN, ESRNNConfig, pad_batch, penalty_mask,
                                        pinball_loss, shift_of, sigmoid, targets_mask)
from rnnkit.apps.forecast.esrnn_train import ESRNNForecaster, ESRNNTask, fallback_forecast
from rnnkit.apps.forecast.metrics import mase, naive, naive2
from rnnkit.apps.forecast.models import COLLECTION, build_forecaster, choose_model, load_forecaster
from rnnkit.apps.forecast.train import ForecastSettings
from rnnkit.cli import main
from rnnkit.data.series import Frequency, Series, SeriesSet
from rnnkit.nn import gradcheck
from rnnkit.nn.gradcheck import numerical_grad
from rnnkit.nn.optim import Adam, clip_grad_norm

YEARLY, MONTHLY, QUARTERLY = Frequency("month", 12), Frequency("month", 1), Frequency("month", 3)


def collection(values, freq):
    return SeriesSet([Series(f"s{k}", 0, np.asarray(v, np.float64), np.zeros((len(v), 0)))
                      for k, v in enumerate(values)], freq, "y")


def random_model(rng, season, cell="lstm", quantiles=(0.1, 0.5, 0.9)):
    cfg = ESRNNConfig(n_series=5, season=season, context=4, horizon=3, quantiles=quantiles,
                      cell=cell, hidden=4, layers=2, dtype="float64")
    net = ESRNN(cfg, rng)
    for _, p, _ in net.named_parameters():  # no zero blocks: every parameter matters
        p[...] = rng.normal(0, 0.5, p.shape)
    series = [np.exp(rng.normal(0, 0.3, n)) * 10 for n in (12, 9, 7)]
    y, lengths = pad_batch(series, np.float64)
    return net, y, lengths, np.array([4, 0, 2])


# ----------------------------------------------------------------------------- gradients

@pytest.mark.parametrize("season, cell", [(3, "lstm"), (3, "gru"), (1, "lstm"), (4, "rnn")])
def test_esrnn_outputs_gradcheck(rng, season, cell):
    """Every output (forecasts, targets, level second differences) against central differences,
    for every parameter: the smoothing coefficients, the initial seasonal indices, the network."""
    net, y, lengths, idx = random_model(rng, season, cell)
    errors = gradcheck(net, (y, lengths, idx), wrt=[])
    assert {"alpha_raw", "rnn.weight_hh_l1", "out.bias"} <= set(errors)
    if season > 1:
        assert {"gamma_raw", "season_raw"} <= set(errors)


@pytest.mark.parametrize("season", [1, 3])
def test_whole_training_loss_gradcheck(rng, season):
    """The scalar the task minimises (masked, weighted pinball loss + level penalty) against
    central differences of itself, through the whole model."""
    net, y, lengths, idx = random_model(rng, season, quantiles=(0.025, 0.5, 0.9))
    weights = np.array([0.5, 2.0, 1.0])
    cfg = net.cfg

    def total():
        o, z, e = net.forward(y, lengths, idx)
        mask = targets_mask(lengths, cfg.context, cfg.horizon, o.shape[1])
        loss = pinball_loss(o, z, mask, cfg.quantiles, e, penalty_mask(lengths, y.shape[1]),
                            7.0, weights)[0]
        net.clear_caches()
        return loss

    net.zero_grad()
    o, z, e = net.forward(y, lengths, idx)
    mask = targets_mask(lengths, cfg.context, cfg.horizon, o.shape[1])
    assert mask.sum() < mask.size  # short series: some targets lie outside and must not count
    _, do, dz, de = pinball_loss(o, z, mask, cfg.quantiles, e, penalty_mask(lengths, y.shape[1]),
                                 7.0, weights)
    net.backward(do, dz, de)
    for name, p, g in net.named_parameters():
        num = numerical_grad(total, p, 1e-6)
        np.testing.assert_allclose(g, num, atol=1e-7, rtol=1e-5, err_msg=name)


def test_smoothing_recursion_matches_its_equations(rng):
    net, y, lengths, idx = random_model(rng, 3)
    l, s, alpha, gamma = net.smooth(y, idx)
    a, g = sigmoid(net.params["alpha_raw"][idx[0]]), sigmoid(net.params["gamma_raw"][idx[0]])
    ss = list(np.exp(net.params["season_raw"][idx[0]]))
    lev = y[0, 0] / ss[0]
    for t in range(y.shape[1]):  # written out for one series
        if t:
            lev = a * y[0, t] / ss[t] + (1 - a) * lev
        ss.append(g * y[0, t] / lev + (1 - g) * ss[t])
        assert l[0, t] == pytest.approx(lev, rel=1e-12)
    np.testing.assert_allclose(s[0], ss, rtol=1e-12)


# ----------------------------------------------------------------------------- learning

def holt_winters(n, alpha, gamma, season, sigma, rng):
    """Multiplicative Holt-Winters without trend: y_t = l_{t-1} s_t (1 + sigma e_t)."""
    s = list(1 + 0.3 * np.sin(2 * np.pi * np.arange(season) / season))
    lev, y = 100.0, []
    for t in range(n):
        yt = lev * s[t] * (1 + sigma * rng.standard_normal())
        y.append(yt)
        lev = alpha * yt / s[t] + (1 - alpha) * lev
        s.append(gamma * yt / lev + (1 - gamma) * s[t])
    return np.array(y)


def test_learned_coefficients_recover_a_holt_winters_process():
    """Data from y_t = l_{t-1} s_t (1 + e_t) with alpha = 0.3, gamma = 0.2: with the network's
    output held at zero the ES-RNN's one-step forecast is the Holt-Winters one, and gradient
    descent through the recursion must find the generating coefficients.  One series' estimate
    is noisy (sd about 0.05 at 300 values), so 32 series are fitted and their mean is checked."""
    rng = np.random.default_rng(0)
    alpha, gamma, m, n = 0.3, 0.2, 4, 32
    series = [holt_winters(300, alpha, gamma, m, 0.03, rng) for _ in range(n)]
    cfg = ESRNNConfig(n_series=n, season=m, context=m, horizon=1, quantiles=(0.5,), hidden=2,
                      dtype="float64")
    model = ESRNN(cfg, rng)
    model.out.params["weight"][:] = 0
    model.out.params["bias"][:] = 0
    task = ESRNNTask(model, series, batch=n, penalty=0.0, seed=0)
    opt = Adam(lr=0.1)
    network = [g for name, _, g in model.named_parameters() if "." in name]
    for step in range(100):
        loss = task.loss(task.batch(step))
        for g in network:  # only the smoothing parameters learn
            g[...] = 0
        params = list(model.named_parameters())
        assert np.isfinite(loss) and np.isfinite(clip_grad_norm(params, 10.0))
        opt.step(params)
        model.zero_grad()
    got_a = sigmoid(model.params["alpha_raw"])
    got_g = sigmoid(model.params["gamma_raw"])
    assert got_a.mean() == pytest.approx(alpha, abs=0.02)   # started at 0.5
    assert got_g.mean() == pytest.approx(gamma, abs=0.02)   # started at 0.27
    assert np.median(np.abs(got_a - alpha)) < 0.05 and np.median(np.abs(got_g - gamma)) < 0.05


def trending(n_series, rng, lo=15, hi=40):
    out = []
    for _ in range(n_series):
        n = int(rng.integers(lo, hi + 1))
        slope = rng.uniform(0.02, 0.06)
        out.append(100 * np.exp(slope * np.arange(n)) * (1 + 0.01 * rng.standard_normal(n)))
    return out


def test_short_yearly_series_train_and_beat_naive():
    """Yearly series of 15-40 values with growth: one global model pools them and learns the
    growth that the naive forecast misses."""
    rng = np.random.default_rng(3)
    values = trending(60, rng)
    H = 6
    data = collection([v[:-H] for v in values], YEARLY)
    s = ForecastSettings(horizon=H, model="esrnn", es_min_steps=1, es_epochs=30, ensemble=1, hidden=16)
    fc = build_forecaster(s, YEARLY, 0)
    info = fc.fit(data)
    assert info["fallback"] == [] and fc.context == H + 1  # yearly: horizon + 1
    out = fc.forecast(data)
    ours = np.mean([mase(v[-H:], f["mean"], v[:-H], 1) for v, f in zip(values, out)])
    base = np.mean([mase(v[-H:], naive(v[:-H], H), v[:-H], 1) for v, f in zip(values, out)])
    assert ours < 0.5 * base
    for f in out:  # quantiles in order, the mean is the median
        assert np.all(f["lower_95"] <= f["lower_80"]) and np.all(f["lower_80"] <= f["mean"])
        assert np.all(f["mean"] <= f["upper_80"]) and np.all(f["upper_80"] <= f["upper_95"])


def test_too_short_series_get_naive2_and_a_message():
    rng = np.random.default_rng(4)
    values = trending(10, rng, 20, 30) + [np.array([5.0, 6.0, 7.0, 8.0])]
    data = collection(values, QUARTERLY)
    s = ForecastSettings(horizon=4, model="esrnn", es_min_steps=1, es_epochs=2, ensemble=1, hidden=4)
    fc = build_forecaster(s, QUARTERLY, 0)
    messages = []
    info = fc.fit(data, log=messages.append)
    assert info["fallback"] == ["s10"]
    assert any("1 series shorter than 9 values" in msg and "'s10'" in msg and "Naive2" in msg
               for msg in messages)
    out = fc.forecast(data)
    np.testing.assert_array_equal(out[10]["mean"], naive2(values[10], 4, 4))
    assert out[10]["upper_95"][3] > out[10]["upper_95"][0] > out[10]["mean"][0]  # widening
    # a whole data set too short: every series falls back, nothing is trained
    fc = build_forecaster(s, QUARTERLY, 0)
    info = fc.fit(collection([values[10]], QUARTERLY), log=messages.append)
    assert info["members"] == 0 and info["stopped"] is None
    np.testing.assert_array_equal(fc.forecast(collection([values[10]], QUARTERLY))[0]["mean"],
                                  [8, 8, 8, 8])


def test_fallback_forecast_by_hand():
    f = fallback_forecast(np.array([1.0, 3.0, 2.0]), 2, 1)  # steps 2, -1: RMS sqrt(5/2)
    np.testing.assert_allclose(f["mean"], [2, 2])
    np.testing.assert_allclose(f["sd"], np.sqrt(2.5) * np.sqrt([1, 2]))


def test_shift_makes_series_positive_and_forecasts_shift_back():
    assert shift_of(np.array([1.0, 2.0])) == 0.0
    assert shift_of(np.array([-1.0, 3.0])) == 5.0   # range 4 - min -1: values in [4, 8]
    assert shift_of(np.array([0.0, 0.0])) == 1.0
    rng = np.random.default_rng(5)
    values = [v - 150 for v in trending(12, rng, 30, 30)]  # crossing zero
    shifts = [shift_of(v) for v in values]
    assert all(sh > 0 for sh in shifts)
    s = ForecastSettings(horizon=3, model="esrnn", es_min_steps=1, es_epochs=3, ensemble=1, hidden=4)
    out = []
    for vals in (values, [v + sh for v, sh in zip(values, shifts)]):  # the same model sees both
        fc = build_forecaster(s, YEARLY, 0)
        fc.fit(collection(vals, YEARLY))
        out.append(fc.forecast(collection(vals, YEARLY)))
    for a, b, sh in zip(out[0], out[1], shifts):
        np.testing.assert_allclose(a["mean"] + sh, b["mean"], rtol=1e-6)
        np.testing.assert_allclose(a["upper_95"] + sh, b["upper_95"], rtol=1e-6)


# ----------------------------------------------------------------------------- persistence, CLI

def seasonal_collection(rng, n_series=8, n=60):
    t = np.arange(n)
    return [50 * (1 + 0.01 * t) * (1 + 0.2 * np.sin(2 * np.pi * t / 12 + k))
            * (1 + 0.02 * rng.standard_normal(n)) for k in range(n_series)]


def test_checkpoint_round_trip_and_unknown_series(tmp_path):
    rng = np.random.default_rng(6)
    data = collection(seasonal_collection(rng), MONTHLY)
    s = ForecastSettings(horizon=6, model="esrnn", es_min_steps=1, es_epochs=3, ensemble=2, hidden=6,
                         es_last_epochs=2)
    fc = build_forecaster(s, MONTHLY, 0)
    fc.fit(data)
    assert len(fc.members) == 4  # 2 seeds x the last 2 epochs
    fc.save(tmp_path / "m", {"target": "y", "time_col": None, "id_col": "id", "covariates": [],
                             "fill": None})
    loaded, options = load_forecaster(tmp_path / "m")
    assert isinstance(loaded, ESRNNForecaster) and options["id_col"] == "id"
    for a, b in zip(fc.forecast(data), loaded.forecast(data)):
        for key in ("mean", "lower_95", "upper_80"):
            np.testing.assert_array_equal(a[key], b[key])
    # a series the model never saw: median coefficients, its own seasonal indices
    new = collection([seasonal_collection(rng, 1)[0] * 3], MONTHLY)
    new.series[0].id = "new"
    f = loaded.forecast(new)[0]
    assert np.all(np.isfinite(f["mean"])) and np.all(f["mean"] > 0)
    (tmp_path / "m" / "member1.npz").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="corrupt checkpoint"):
        load_forecaster(tmp_path / "m")


def test_esrnn_refuses_covariates():
    with pytest.raises(ValueError, match="reads no covariates"):
        build_forecaster(ForecastSettings(horizon=2, model="esrnn"), MONTHLY, 2)


def write_long_csv(path, values):
    lines = ["id,date,y"]
    for k, v in enumerate(values):
        for t, x in enumerate(v):
            lines.append(f"s{k},{2000 + t // 12}-{t % 12 + 1:02d}-01,{x:.6f}")
    path.write_text("\n".join(lines) + "\n")
    return path


def test_cli_esrnn_backtest_train_predict(tmp_path, capsys):
    rng = np.random.default_rng(7)
    path = write_long_csv(tmp_path / "s.csv", seasonal_collection(rng, 4, 60))
    tiny = ["--model", "esrnn", "--es-min-steps", "1", "--es-epochs", "2", "--ensemble", "1",
            "--hidden", "4", "--quiet"]
    assert main(["forecast", "backtest", "--csv", str(path), "--target", "y", "--id-col", "id",
                 "--horizon", "6", "--folds", "2", "--json", "--no-references", *tiny]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["model_kind"] == "esrnn" and out["references"] == []
    assert out["context"] == 24  # two seasons
    assert out["naive2"]["owa"] == pytest.approx(1.0)
    for key in ("owa", "msis", "pinball", "coverage_95"):
        assert out["model"][key] is not None and out["model"][key] >= 0
    model_dir = tmp_path / "model"
    assert main(["forecast", "train", "--csv", str(path), "--target", "y", "--id-col", "id",
                 "--horizon", "6", "--out", str(model_dir), *tiny]) == 0
    assert main(["forecast", "predict", "--model", str(model_dir), "--csv", str(path),
                 "--json"]) == 0
    pred = json.loads(capsys.readouterr().out)
    assert [s["id"] for s in pred["series"]] == ["s0", "s1", "s2", "s3"]
    assert pred["series"][0]["time"][0] == "2005-01-01"  # 60 months from 2000-01


def test_auto_takes_the_esrnn_for_seasonal_collections_only():
    """--model auto (the default): the ES-RNN for a seasonal collection of COLLECTION or more
    series without covariates, the direct model for fewer series, no season, or covariates;
    an explicit model is kept."""
    rng = np.random.default_rng(8)
    many = collection(seasonal_collection(rng, COLLECTION, 40), MONTHLY)
    few = collection(seasonal_collection(rng, COLLECTION - 1, 40), MONTHLY)
    auto = ForecastSettings(horizon=6)
    assert auto.model == "auto"
    assert choose_model(auto, many).model == "esrnn"
    assert choose_model(auto, few).model == "direct"
    assert choose_model(ForecastSettings(horizon=6, season=1), many).model == "direct"
    yearly = collection(seasonal_collection(rng, COLLECTION, 40), YEARLY)
    assert choose_model(auto, yearly).model == "direct"
    with_covariates = collection(seasonal_collection(rng, COLLECTION, 40), MONTHLY)
    with_covariates.covariates = ("x",)
    assert choose_model(auto, with_covariates).model == "direct"
    assert choose_model(ForecastSettings(horizon=6, model="direct"), many).model == "direct"
    assert choose_model(ForecastSettings(horizon=6, model="esrnn"), few).model == "esrnn"
    with pytest.raises(ValueError, match="choose_model"):
        build_forecaster(auto, MONTHLY, 0)


def test_cli_auto_saves_and_reports_the_model_it_chose(tmp_path, capsys):
    rng = np.random.default_rng(9)
    path = write_long_csv(tmp_path / "s.csv", seasonal_collection(rng, COLLECTION, 40))
    tiny = ["--es-min-steps", "1", "--es-epochs", "1", "--es-last-epochs", "1", "--ensemble", "1",
            "--hidden", "3", "--quiet"]
    model_dir = tmp_path / "model"
    assert main(["forecast", "train", "--csv", str(path), "--target", "y", "--id-col", "id",
                 "--horizon", "4", "--out", str(model_dir), *tiny]) == 0
    saved = json.loads((model_dir / "config.json").read_text())
    assert saved["settings"]["model"] == "esrnn"
    assert isinstance(load_forecaster(model_dir)[0], ESRNNForecaster)
    one = write_long_csv(tmp_path / "one.csv", seasonal_collection(rng, 1, 40))
    assert main(["forecast", "backtest", "--csv", str(one), "--target", "y", "--id-col", "id",
                 "--horizon", "4", "--folds", "1", "--json", "--no-references", "--steps", "20",
                 "--eval-every", "10", *tiny]) == 0
    assert json.loads(capsys.readouterr().out)["model_kind"] == "direct"


def test_onnx_export_matches_forecast_and_rnnkit_load(tmp_path, capsys):
    """`rnnkit export onnx` of an ES-RNN run: onnxruntime on `onnx_inputs` gives `forecast`'s
    numbers for series of uneven lengths (several members, two layers); rnnkit.load rebuilds it."""
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    import rnnkit
    rng = np.random.default_rng(8)
    values = seasonal_collection(rng, 4, 60)
    path = write_long_csv(tmp_path / "s.csv", values)
    model_dir = tmp_path / "model"
    assert main(["forecast", "train", "--csv", str(path), "--target", "y", "--id-col", "id",
                 "--horizon", "5", "--out", str(model_dir), "--model", "esrnn", "--es-min-steps",
                 "1", "--es-epochs", "2", "--es-last-epochs", "2", "--ensemble", "2", "--hidden",
                 "5", "--layers", "2", "--quiet"]) == 0
    fc = rnnkit.load(model_dir)
    assert isinstance(fc, ESRNNForecaster) and len(fc.members) == 4
    onnx_path = tmp_path / "es.onnx"
    assert main(["export", "onnx", "--model", str(model_dir), "--out", str(onnx_path)]) == 0
    data = collection([v[:45 + 5 * k] for k, v in enumerate(values)], MONTHLY)
    for k, s in enumerate(data.series):
        s.id = f"s{k}"
    sess = ort.InferenceSession(str(onnx_path))
    outs = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, fc.onnx_inputs(data))))
    for key in ("mean", "sd", "lower_95", "lower_80", "upper_80", "upper_95"):
        want = np.stack([f[key] for f in fc.forecast(data)])
        np.testing.assert_allclose(outs[key], want, rtol=1e-5, atol=1e-6 * np.abs(want).max(),
                                   err_msg=key)
    short = collection([values[0][:10]], MONTHLY)
    with pytest.raises(ValueError, match="at least 25 values"):
        fc.onnx_inputs(short)


def test_runs_checkpoint_and_a_finished_run_is_reused(tmp_path):
    """Each seed is one run of the shared loop in out/runs/seed<k>; fitting again with the same
    folder continues (here: reuses) them, the kept last-epoch parameters included (task state)."""
    rng = np.random.default_rng(9)
    data = collection(seasonal_collection(rng, 5, 40), MONTHLY)
    s = ForecastSettings(horizon=4, model="esrnn", es_min_steps=1, es_epochs=3, ensemble=2, hidden=4,
                         es_last_epochs=2)
    first = build_forecaster(s, MONTHLY, 0)
    first.fit(data, out=tmp_path)
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["seed0", "seed1"]
    again = build_forecaster(s, MONTHLY, 0)
    again.fit(data, out=tmp_path)
    assert len(again.members) == 4
    for a, b in zip(first.forecast(data), again.forecast(data)):
        np.testing.assert_array_equal(a["mean"], b["mean"])
