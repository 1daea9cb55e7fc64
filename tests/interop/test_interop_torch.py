"""PyTorch <-> rnnkit: layers, the language model and the forecasting network convert both ways
with equal outputs."""
import numpy as np
import pytest

import rnnkit
from rnnkit.apps.forecast.model import ForecastNet, NetConfig
from rnnkit.apps.lm.model import LanguageModel, ModelConfig
from rnnkit.apps.forecast.export import torch_forecast_net_class
from rnnkit.apps.lm.export import torch_language_model_class
from rnnkit.interop.torch import from_torch, to_torch

torch = pytest.importorskip("torch")

# (kind, num_layers, bidirectional, extra options)
CASES = [
    ("rnn", 1, False, {}),
    ("rnn", 2, True, {"nonlinearity": "relu"}),
    ("lstm", 1, False, {}),
    ("lstm", 3, True, {}),
    ("lstm", 2, True, {"proj_size": 3}),
    ("lstm", 2, False, {"bias": False}),
    ("gru", 1, True, {}),
    ("gru", 2, False, {"dropout": 0.3}),
]
TORCH = {"rnn": "RNN", "lstm": "LSTM", "gru": "GRU"}
OURS = {"rnn": rnnkit.RNN, "lstm": rnnkit.LSTM, "gru": rnnkit.GRU}


def randomize_torch(module, rng, scale=0.6):
    """Every parameter, biases included, drawn at random (a bias mapped wrong must show)."""
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.from_numpy(rng.uniform(-scale, scale, tuple(p.shape))))


def randomize(layer, rng, scale=0.6):
    for p in layer.params.values():
        p[...] = rng.uniform(-scale, scale, p.shape)


def run_torch(m, x, state):
    with torch.no_grad():
        y, s = m(torch.from_numpy(x), state if state is None else
                 tuple(torch.from_numpy(a) for a in state) if isinstance(state, tuple)
                 else torch.from_numpy(state))
    return y.numpy(), (tuple(a.numpy() for a in s) if isinstance(s, tuple) else s.numpy())


def random_state(layer, N, rng, dtype):
    LD, P = layer.num_layers * layer.num_directions, layer.proj_size or layer.hidden_size
    h = rng.standard_normal((LD, N, P)).astype(dtype)
    if isinstance(layer, rnnkit.LSTM):
        return h, rng.standard_normal((LD, N, layer.hidden_size)).astype(dtype)
    return h


def assert_same_outputs(layer, m, rng, dtype, rtol, batch_first=True):
    N, T = 3, 6
    x = rng.standard_normal((N, T, layer.input_size)).astype(dtype)
    state = random_state(layer, N, rng, dtype)
    y, s = layer.forward(x, state)
    yt, st = run_torch(m, x if batch_first else np.ascontiguousarray(x.transpose(1, 0, 2)), state)
    if not batch_first:
        yt = yt.transpose(1, 0, 2)
    assert y.dtype == dtype and y.shape == yt.shape
    np.testing.assert_allclose(y, yt, rtol=rtol, atol=rtol)
    for a, b in zip(s if isinstance(s, tuple) else (s,), st if isinstance(st, tuple) else (st,)):
        assert a.shape == b.shape
        np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol)


# torch's own notice when a float32 LSTM with proj_size falls back from oneDNN
@pytest.mark.filterwarnings("ignore:LSTM with projections is not supported with oneDNN:UserWarning")
@pytest.mark.parametrize("kind,layers,bidirectional,extra", CASES)
@pytest.mark.parametrize("dtype,rtol", [(np.float64, 1e-12), (np.float32, 1e-5)])
def test_from_torch_gives_equal_outputs(kind, layers, bidirectional, extra, dtype, rtol):
    rng = np.random.default_rng(len(kind) * 100 + layers * 10 + bidirectional)
    batch_first = layers % 2 == 1  # both layouts: the weights are the same
    m = getattr(torch.nn, TORCH[kind])(4, 5, num_layers=layers, bidirectional=bidirectional,
                                       batch_first=batch_first, dtype=getattr(torch, np.dtype(dtype).name),
                                       **extra)
    randomize_torch(m, rng)
    m.eval()
    layer = from_torch(m)
    assert type(layer) is OURS[kind] and layer.dtype == dtype
    assert (layer.num_layers, layer.bidirectional, layer.hidden_size) == (layers, bidirectional, 5)
    assert layer.proj_size == extra.get("proj_size", 0) and layer.bias == extra.get("bias", True)
    assert layer.dropout == extra.get("dropout", 0.0) and not layer.training
    if kind == "rnn":
        assert layer.nonlinearity == extra.get("nonlinearity", "tanh")
    assert_same_outputs(layer, m, rng, dtype, rtol, batch_first)


@pytest.mark.parametrize("kind,layers,bidirectional,extra", CASES)
def test_to_torch_gives_equal_outputs_and_round_trips(kind, layers, bidirectional, extra):
    rng = np.random.default_rng(7 + layers)
    layer = OURS[kind](4, 5, num_layers=layers, bidirectional=bidirectional, dtype=np.float64,
                       rng=rng, **extra)
    randomize(layer, rng)
    layer.eval()
    m = to_torch(layer)
    assert isinstance(m, getattr(torch.nn, TORCH[kind])) and m.batch_first and not m.training
    assert next(m.parameters()).dtype == torch.float64
    assert_same_outputs(layer, m, rng, np.float64, 1e-12)
    back = from_torch(m)
    assert back.state_dict().keys() == layer.state_dict().keys()
    for name, value in layer.state_dict().items():
        np.testing.assert_array_equal(back.params[name], value, err_msg=name)


def test_one_layer_dropout_is_not_passed_to_torch():
    # torch warns (an error here) when dropout is set on a single-layer RNN, where it does nothing
    layer = rnnkit.LSTM(3, 4, dropout=0.5, rng=np.random.default_rng(0))
    assert to_torch(layer).dropout == 0.0


def test_dtype_conversion_and_errors():
    m = torch.nn.GRU(3, 4)
    assert from_torch(m, dtype=np.float64).dtype == np.float64
    np.testing.assert_array_equal(from_torch(m, dtype=np.float64).params["weight_hh_l0"],
                                  m.weight_hh_l0.detach().numpy().astype(np.float64))
    with pytest.raises(ValueError, match="float16"):
        from_torch(torch.nn.GRU(3, 4, dtype=torch.float16))
    with pytest.raises(ValueError, match="reset_after=False"):
        to_torch(rnnkit.GRU(3, 4, reset_after=False, rng=np.random.default_rng(0)))
    with pytest.raises(ValueError, match="unsupported module Conv1d"):
        from_torch(torch.nn.Conv1d(2, 2, 1))
    with pytest.raises(ValueError, match="no converter for Dropout"):
        to_torch(rnnkit.Dropout(0.1))


def test_embedding_and_linear_round_trip():
    rng = np.random.default_rng(2)
    emb = rnnkit.Embedding(9, 4, padding_idx=0, dtype=np.float64, rng=rng)
    lin = rnnkit.Linear(4, 3, dtype=np.float64, rng=rng)
    te, tl = to_torch(emb), to_torch(lin)
    assert te.padding_idx == 0 and tl.bias is not None
    ids = np.array([[0, 3, 8], [1, 2, 2]])
    x = rng.standard_normal((2, 3, 4))
    with torch.no_grad():
        np.testing.assert_array_equal(te(torch.from_numpy(ids)).numpy(), emb.forward(ids))
        np.testing.assert_allclose(tl(torch.from_numpy(x)).numpy(), lin.forward(x), rtol=1e-13)
    e2, l2 = from_torch(te), from_torch(tl)
    assert e2.padding_idx == 0
    np.testing.assert_array_equal(e2.params["weight"], emb.params["weight"])
    np.testing.assert_array_equal(l2.params["bias"], lin.params["bias"])
    no_bias = from_torch(torch.nn.Linear(3, 2, bias=False))
    assert "bias" not in no_bias.params


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_language_model_to_torch_and_back(cell):
    rng = np.random.default_rng(3)
    cfg = ModelConfig(vocab_size=11, cell=cell, embed=5, hidden=7, layers=2, dropout=0.2,
                      dtype="float64")
    model = LanguageModel(cfg, rng)
    for _, p, _ in model.named_parameters():  # biases and all: nothing left at its init
        p[...] = rng.uniform(-0.5, 0.5, p.shape)
    model.eval()
    tm = to_torch(model)
    assert isinstance(tm, torch_language_model_class()) and not tm.training
    ids = rng.integers(0, 11, (3, 8))
    state = random_state(model.rnn, 3, rng, np.float64)
    logits, s = model.forward(ids, state)
    with torch.no_grad():
        tstate = tuple(map(torch.from_numpy, state)) if cell == "lstm" else torch.from_numpy(state)
        tlogits, ts = tm(torch.from_numpy(ids), tstate)
    np.testing.assert_allclose(tlogits.numpy(), logits, rtol=1e-12, atol=1e-12)
    for a, b in zip(s if cell == "lstm" else (s,), ts if cell == "lstm" else (ts,)):
        np.testing.assert_allclose(b.numpy(), a, rtol=1e-12, atol=1e-12)
    back = from_torch(tm)
    assert isinstance(back, LanguageModel) and back.cfg == cfg
    for name, value in model.state_dict().items():
        np.testing.assert_array_equal(back.state_dict()[name], value, err_msg=name)


@pytest.mark.parametrize("cell,layers", [("lstm", 2), ("gru", 1), ("rnn", 2)])
def test_forecast_net_to_torch_and_back(cell, layers):
    rng = np.random.default_rng(4 + layers)
    cfg = NetConfig(input_size=3, extra_size=7, horizon=4, cell=cell, hidden=5, layers=layers,
                    dropout=0.2, var_floor=0.01, dtype="float64")
    net = ForecastNet(cfg, rng)
    for _, p, _ in net.named_parameters():  # biases and all: the head starts partly at zero
        p[...] = rng.uniform(-0.8, 0.8, p.shape)
    net.eval()
    tm = to_torch(net)
    assert isinstance(tm, torch_forecast_net_class()) and not tm.training
    assert next(tm.parameters()).dtype == torch.float64
    x, extra = rng.standard_normal((3, 6, 3)), rng.standard_normal((3, 7))
    mean, var = net.forward(x, extra)
    with torch.no_grad():
        tmean, tvar = tm(torch.from_numpy(x), torch.from_numpy(extra))
    np.testing.assert_allclose(tmean.numpy(), mean, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(tvar.numpy(), var, rtol=1e-10, atol=1e-12)
    assert var.min() > cfg.var_floor and np.ptp(mean) > 0.1  # the floor and the head both act
    back = from_torch(tm)
    assert isinstance(back, ForecastNet) and back.cfg == cfg and not back.training
    for name, value in net.state_dict().items():
        np.testing.assert_array_equal(back.state_dict()[name], value, err_msg=name)
    assert from_torch(tm, dtype=np.float32).cfg.dtype == "float32"
