"""ONNX export: the files run in onnxruntime and agree with rnnkit (float32, <= 1e-5)."""
import os

import numpy as np
import pytest

import rnnkit
from rnnkit.apps.forecast.model import ForecastNet, NetConfig
from rnnkit.apps.forecast.train import Forecaster, ForecastSettings
from rnnkit.apps.lm.model import LanguageModel, ModelConfig
from rnnkit.apps.lm.train import LMSettings, LMTask, load_model
from rnnkit.cli import main
from rnnkit.data.series import (Frequency, Series, SeriesSet, bundled_series_path,
                                read_series_csv)
from rnnkit.interop.onnx import export, to_onnx
from rnnkit.train.checkpoint import save_checkpoint
from rnnkit.train.engine import fit

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

TOL = 1e-5
OURS = {"rnn": rnnkit.RNN, "lstm": rnnkit.LSTM, "gru": rnnkit.GRU}


def session(path):
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.log_severity_level = 3  # the runtime logs rejected inputs as errors; we check them ourselves
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def make(kind, I, H, layers, bidirectional, rng, dtype=np.float32, **kw):
    layer = OURS[kind](I, H, num_layers=layers, bidirectional=bidirectional, dtype=dtype, rng=rng, **kw)
    for p in layer.params.values():  # biases too: a bias in the wrong slot must show
        p[...] = rng.uniform(-0.7, 0.7, p.shape)
    return layer.eval()


def states(s):
    return list(s) if isinstance(s, tuple) else [s]


def assert_close(name, got, want, tol=TOL):
    assert got.shape == want.shape, (name, got.shape, want.shape)
    err = np.abs(got.astype(np.float64) - want).max() if got.size else 0.0
    assert err <= tol, f"{name}: max error {err:.3g} > {tol}"


# (kind, input size, hidden, layers, bidirectional, options)
CASES = [
    ("lstm", 3, 5, 2, True, {}),
    ("lstm", 4, 3, 1, False, {"bias": False}),
    ("gru", 3, 4, 2, True, {}),  # linear_before_reset=1 (torch's form)
    ("gru", 2, 5, 1, True, {"reset_after": False}),  # Keras's other form: linear_before_reset=0
    ("rnn", 3, 4, 3, True, {"nonlinearity": "relu"}),
    ("rnn", 5, 2, 1, False, {}),
]
# (N, T, lengths): full, shorter than T (one of them empty), one row, one step
SHAPES = [(4, 7, None), (4, 7, [7, 3, 1, 5]), (5, 3, [0, 3, 2, 1, 3]), (1, 9, [4]), (2, 1, None)]


@pytest.mark.parametrize("kind,I,H,layers,bidirectional,kw", CASES)
def test_layer_runs_in_onnxruntime_like_rnnkit(tmp_path, kind, I, H, layers, bidirectional, kw):
    rng = np.random.default_rng(sum(map(ord, kind)) + 10 * layers + H)
    layer = make(kind, I, H, layers, bidirectional, rng, **kw)
    path = export(layer, tmp_path / "layer.onnx")
    assert sorted(os.listdir(tmp_path)) == ["layer.onnx"]  # no temporary file left behind
    model = onnx.load(str(path))
    assert [i.name for i in model.graph.input] == ["x", "lengths"]
    assert [o.name for o in model.graph.output] == ["y", "h_n"] + (["c_n"] if kind == "lstm" else [])
    ops = [n for n in model.graph.node if n.op_type == kind.upper()]
    assert len(ops) == layers  # one operator per layer, both directions in it
    if kind == "gru":
        lbr = {a.name: a.i for a in ops[0].attribute}["linear_before_reset"]
        assert lbr == (1 if layer.reset_after else 0)
    sess = session(path)
    for N, T, lengths in SHAPES:
        x = rng.standard_normal((N, T, I)).astype(np.float32)
        lens = np.full(N, T) if lengths is None else np.array(lengths)
        got = sess.run(None, {"x": x, "lengths": lens.astype(np.int32)})
        y, s = layer.forward(x, lengths=None if lengths is None else lens)
        for name, g, w in zip(["y", "h_n", "c_n"], got, [y] + states(s)):
            assert_close(f"{kind} N={N} T={T} {name}", g, w)
        if lengths is not None:
            assert not got[0][np.arange(T)[None, :] >= lens[:, None]].any()  # padded steps are 0


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_initial_state_inputs(tmp_path, kind):
    rng = np.random.default_rng(5)
    layer = make(kind, 3, 4, 2, True, rng)
    sess = session(export(layer, tmp_path / "s.onnx", initial_state=True))
    names = [i.name for i in sess.get_inputs()]
    assert names == ["x", "lengths", "h0"] + (["c0"] if kind == "lstm" else [])
    N, T = 4, 5
    x = rng.standard_normal((N, T, 3)).astype(np.float32)
    lens = np.array([5, 0, 2, 4])  # a sequence of length 0 keeps its initial state
    h0 = rng.standard_normal((4, N, 4)).astype(np.float32)
    c0 = rng.standard_normal((4, N, 4)).astype(np.float32)
    feeds = {"x": x, "lengths": lens.astype(np.int32), "h0": h0}
    if kind == "lstm":
        feeds["c0"] = c0
    got = sess.run(None, feeds)
    y, s = layer.forward(x, (h0, c0) if kind == "lstm" else h0, lengths=lens)
    for name, g, w in zip(["y", "h_n", "c_n"], got, [y] + states(s)):
        assert_close(f"{kind} {name}", g, w)
    np.testing.assert_array_equal(got[1][:, 1], h0[:, 1])


def test_float64_layer_and_opsets(tmp_path):
    rng = np.random.default_rng(6)
    layer = make("gru", 3, 4, 2, False, rng, dtype=np.float64)
    x = rng.standard_normal((2, 5, 3))
    y, h = layer.forward(x, lengths=np.array([5, 2]))
    for opset in (14, 22):
        sess = session(export(layer, tmp_path / f"o{opset}.onnx", opset=opset))
        assert onnx.load(str(tmp_path / f"o{opset}.onnx")).opset_import[0].version == opset
        gy, gh = sess.run(None, {"x": x.astype(np.float32), "lengths": np.array([5, 2], np.int32)})
        assert gy.dtype == np.float32  # onnxruntime's recurrent kernels are float32
        assert_close("y", gy, y)
        assert_close("h_n", gh, h)


def test_what_cannot_be_exported(tmp_path):
    rng = np.random.default_rng(7)
    out = tmp_path / "x.onnx"
    out.write_bytes(b"keep me")
    with pytest.raises(ValueError, match="ONNX LSTM operator has no projection"):
        export(rnnkit.LSTM(3, 5, proj_size=2, rng=rng), out)
    with pytest.raises(ValueError, match=r"opset must be an integer in \[14, "):
        export(rnnkit.GRU(3, 4, rng=rng), out, opset=13)
    with pytest.raises(ValueError, match="does not support Linear"):
        export(rnnkit.Linear(3, 4, rng=rng), out)
    with pytest.raises(ValueError, match="untrained forecaster"):
        export(Forecaster(ForecastSettings(horizon=2), Frequency("step"), 0), out)
    assert out.read_bytes() == b"keep me" and sorted(os.listdir(tmp_path)) == ["x.onnx"]


@pytest.mark.parametrize("cell", ["gru", "rnn"])
def test_language_model_graph(cell):
    rng = np.random.default_rng(8)
    cfg = ModelConfig(vocab_size=13, cell=cell, embed=6, hidden=5, layers=2, dropout=0.1,
                      dtype="float32")
    model = LanguageModel(cfg, rng)
    for _, p, _ in model.named_parameters():
        p[...] = rng.uniform(-0.6, 0.6, p.shape)
    model.eval()
    sess = ort.InferenceSession(to_onnx(model).SerializeToString(), providers=["CPUExecutionProvider"])
    ids = rng.integers(0, 13, (3, 8))
    h0 = rng.standard_normal((2, 3, 5)).astype(np.float32)
    logits, h = model.forward(ids, h0)
    got_logits, got_h = sess.run(None, {"ids": ids, "h0": h0})
    assert_close("logits", got_logits, logits)
    assert_close("h_n", got_h, h)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("lm")
    text = tmp / "text.txt"
    text.write_text("the cat sat on the mat. " * 40 + "a dog ran far away!\n" * 20, encoding="utf-8")
    settings = LMSettings(hidden=16, layers=1, embed=8, batch=4, seq_len=10, steps=5,
                          eval_every=5, warmup=1, val_fraction=0.1)
    fit(LMTask(settings, [str(text)]), settings, tmp / "model", progress=False)
    return tmp / "model"


def test_cli_exports_a_trained_language_model(tmp_path, checkpoint, capsys):
    out = tmp_path / "lm.onnx"
    assert main(["export", "onnx", "--model", str(checkpoint), "--out", str(out)]) == 0
    assert "wrote" in capsys.readouterr().err
    model, vocab, _ = load_model(checkpoint)
    sess = session(out)
    assert [i.name for i in sess.get_inputs()] == ["ids", "h0", "c0"]
    assert [o.name for o in sess.get_outputs()] == ["logits", "h_n", "c_n"]
    rng = np.random.default_rng(9)
    state = model.zero_state(2)
    for T in (7, 1, 12):  # carry the state from call to call, as generation does
        ids = rng.integers(0, len(vocab), (2, T))
        logits, new_state = model.forward(ids, state)
        got = sess.run(None, {"ids": ids, "h0": state[0], "c0": state[1]})
        for name, g, w in zip(["logits", "h_n", "c_n"], got, [logits, *new_state]):
            assert_close(f"T={T} {name}", g, w)
        state = new_state
    assert np.abs(state[0]).max() > 0.01  # the comparison was not over zeros


def test_cli_errors_are_one_line_and_write_nothing(tmp_path, checkpoint, capsys):
    out = tmp_path / "lm.onnx"
    out.write_bytes(b"old")
    assert main(["export", "onnx", "--model", str(checkpoint), "--out", str(out), "--opset", "9"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("rnnkit: error: opset must be") and err.count("\n") == 1
    assert main(["export", "onnx", "--model", str(tmp_path / "none"), "--out", str(out)]) == 1
    assert capsys.readouterr().err.startswith("rnnkit: error:")
    assert main(["export", "onnx", "--model", str(checkpoint), "--out",
                 str(tmp_path / "no" / "x.onnx")]) == 1
    assert "does not exist" in capsys.readouterr().err
    assert out.read_bytes() == b"old" and sorted(os.listdir(tmp_path)) == ["lm.onnx"]


@pytest.mark.parametrize("cell,layers", [("lstm", 2), ("gru", 1)])
def test_forecast_network_graph(cell, layers):
    """The forecaster's network (scaled inputs -> mean, variance) runs in onnxruntime like rnnkit."""
    rng = np.random.default_rng(9)
    cfg = NetConfig(input_size=3, extra_size=7, horizon=4, cell=cell, hidden=6, layers=layers,
                    dropout=0.0, dtype="float32")
    net = ForecastNet(cfg, rng)
    for _, p, _ in net.named_parameters():
        p[...] = rng.uniform(-0.6, 0.6, p.shape)
    net.eval()
    sess = ort.InferenceSession(to_onnx(net).SerializeToString(), providers=["CPUExecutionProvider"])
    for N, T in ((1, 5), (4, 12)):
        x = rng.standard_normal((N, T, 3)).astype(np.float32)
        extra = rng.standard_normal((N, 7)).astype(np.float32)
        with rnnkit.no_grad():
            mean, var = net.forward(x, extra)
        got_mean, got_var = sess.run(None, {"x": x, "extra": extra})
        assert_close("mean", got_mean, mean)
        assert_close("var", got_var, var)


# ----------------------------------------------------------------------------- whole forecasters
FORECASTS = ["mean", "sd", "lower_80", "upper_80", "lower_95", "upper_95"]


def random_forecaster(cell, freq, n_covariates, layers, members, rng, context=6, horizon=3):
    """A forecaster whose every parameter (biases included) and calibration factor is random."""
    settings = ForecastSettings(horizon=horizon, context=context, cell=cell, hidden=5,
                                layers=layers, ensemble=members)
    fc = Forecaster(settings, freq, n_covariates)
    for _ in range(members):
        net = ForecastNet(fc.net_config(), rng)
        for _, p, _ in net.named_parameters():
            p[...] = rng.uniform(-0.6, 0.6, p.shape)
        fc.nets.append(net.eval())
    fc.var_scale = rng.uniform(0.5, 2.0, horizon)
    return fc


def random_series(freq, lengths, n_covariates, rng):
    """Random walks at a level of ~1e4 (float32 would lose their steps: the graph scales in
    float64), starting at random calendar positions."""
    first = {"month": 24_000, "day": 730_000, "step": 0}[freq.unit]
    series = [Series(f"s{i}", first + int(rng.integers(0, 400)),
                     1e4 + rng.uniform(0.1, 10) * np.cumsum(rng.standard_normal(n)),
                     3 + 5 * rng.standard_normal((n, n_covariates))) for i, n in enumerate(lengths)]
    return SeriesSet(series, freq, "y", covariates=tuple(f"c{j}" for j in range(n_covariates)))


def assert_forecasts_close(sess, fc, data):
    """The ONNX file's forecasts are ``fc.forecast``'s, to float32 precision in the units the
    networks see (errors divided by each series' scale; observed ~1e-7)."""
    feeds = fc.onnx_inputs(data)
    got = dict(zip(FORECASTS, sess.run(None, feeds)))
    want = fc.forecast(data)
    scale = feeds["scale"][:, None]
    for name in FORECASTS:
        w = np.stack([f[name] for f in want])
        assert got[name].dtype == np.float64 and got[name].shape == w.shape, (name, got[name].shape)
        err = np.abs(got[name] - w) / scale
        assert err.max() <= TOL, f"{name}: max error {err.max():.3g} (scaled units) > {TOL}\n" \
                                 f"onnx {got[name]}\nrnnkit {w}"
    return feeds, got


# (cell, frequency, covariates, layers, members): calendar features or none, covariates or none
FORECASTERS = [
    ("lstm", Frequency("month"), 0, 2, 2),  # 1 calendar cycle
    ("gru", Frequency("step"), 2, 1, 3),    # no calendar
    ("rnn", Frequency("day"), 1, 1, 2),     # 2 calendar cycles and a covariate
]


@pytest.mark.parametrize("cell,freq,n_cov,layers,members", FORECASTERS)
def test_cli_exports_a_whole_forecaster(tmp_path, capsys, cell, freq, n_cov, layers, members):
    rng = np.random.default_rng(len(cell) + 10 * n_cov + layers)
    random_forecaster(cell, freq, n_cov, layers, members, rng).save(tmp_path / "m", {"target": "y"})
    out = tmp_path / "fc.onnx"
    assert main(["export", "onnx", "--model", str(tmp_path / "m"), "--out", str(out)]) == 0
    assert "(Forecaster, opset" in capsys.readouterr().err
    fc, _ = Forecaster.load(tmp_path / "m")
    sess = session(out)
    want_inputs = (["context", "scale"] + ["calendar"] * (freq.calendar_size > 0)
                   + ["covariates"] * (n_cov > 0))
    assert [i.name for i in sess.get_inputs()] == fc.input_names == want_inputs
    assert [o.name for o in sess.get_outputs()] == FORECASTS
    meta = onnx.load(str(out)).metadata_props
    assert {p.key: p.value for p in meta}["horizon"] == "3"
    # one series; several of different lengths, two shorter than the context (6), one of 1 value
    for lengths in ([40], [3, 25, 9, 60], [1, 7]):
        feeds, got = assert_forecasts_close(sess, fc, random_series(freq, lengths, n_cov, rng))
        change = np.abs(got["mean"] - feeds["context"][:, -1:]) / feeds["scale"][:, None]
        assert change.max() > 0.05  # the networks moved the forecast: not a naive one compared


def test_forecaster_onnx_inputs_are_its_windows():
    """Left-padded context, the history's scale, the calendar of the context and horizon steps."""
    rng = np.random.default_rng(4)
    fc = random_forecaster("gru", Frequency("month"), 1, 1, 2, rng, context=6, horizon=3)
    data = random_series(Frequency("month"), [4, 10], 1, rng)
    feeds = fc.onnx_inputs(data)
    assert {k: (v.shape, v.dtype) for k, v in feeds.items()} == {
        "context": ((2, 6), np.float64), "scale": ((2,), np.float64),
        "calendar": ((2, 9, 2), np.float64), "covariates": ((2, 6, 1), np.float64)}
    short, long_ = data.series
    np.testing.assert_array_equal(feeds["context"][0], np.r_[[short.values[0]] * 2, short.values])
    np.testing.assert_array_equal(feeds["context"][1], long_.values[-6:])
    assert feeds["scale"][1] == np.mean(np.abs(np.diff(long_.values)))
    months = long_.start + np.arange(10 - 6, 10 + 3)  # the 6 context steps, then the 3 forecast
    np.testing.assert_allclose(feeds["calendar"][1], Frequency("month").calendar(months), atol=0)


def test_cli_exports_a_trained_forecaster(tmp_path, capsys):
    """End to end: ``rnnkit forecast train`` on a bundled series, export, onnxruntime."""
    model = tmp_path / "nile"
    assert main(["forecast", "train", "--csv", str(bundled_series_path("nile")), "--target",
                 "volume", "--horizon", "4", "--hidden", "4", "--steps", "6", "--patience", "1",
                 "--ensemble", "2", "--model", "direct", "--out", str(model), "--quiet"]) == 0
    out = tmp_path / "nile.onnx"
    assert main(["export", "onnx", "--model", str(model), "--out", str(out), "--latest"]) == 0
    fc, _ = Forecaster.load(model)
    data = read_series_csv(bundled_series_path("nile"), "volume")
    assert_forecasts_close(session(out), fc, data)
    assert_forecasts_close(session(out), fc, data.truncate(len(data.series[0]) - 5))


def test_cli_refuses_a_checkpoint_of_another_app(tmp_path, capsys):
    save_checkpoint(tmp_path / "m", config={"app": "nonesuch"}, arrays={}, meta={})
    out = tmp_path / "x.onnx"
    assert main(["export", "onnx", "--model", str(tmp_path / "m"), "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("rnnkit: error:") and err.count("\n") == 1
    assert "not a run folder of a known application (app 'nonesuch'" in err
    assert not out.exists()
