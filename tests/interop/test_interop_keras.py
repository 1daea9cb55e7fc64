"""Keras 3 files (built here with keras, random weights and biases) read with h5py alone."""
import os
import zipfile

import numpy as np
import pytest

import rnnkit
from rnnkit.interop import keras as rk

os.environ.setdefault("KERAS_BACKEND", "torch")  # torch is installed; no TensorFlow needed
h5py = pytest.importorskip("h5py")
keras = pytest.importorskip("keras")

# keras (torch backend) calls np.array(variable) with a __array__ that lacks copy= when saving
pytestmark = pytest.mark.filterwarnings(
    "ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning")

L = keras.layers
N, T, I = 3, 6, 4


def randomize(model, rng):
    """Every weight, biases included, at random (Keras initialises biases to 0 or 1)."""
    for layer in model.layers:
        layer.set_weights([rng.uniform(-0.6, 0.6, w.shape).astype(np.float32)
                           for w in layer.get_weights()])


def predict(model, x):
    out = model(x, training=False)
    outs = out if isinstance(out, (list, tuple)) else [out]
    return [keras.ops.convert_to_numpy(o) for o in outs]


def save_both(model, tmp_path, name):
    model.save(tmp_path / f"{name}.keras")
    model.save_weights(tmp_path / f"{name}.weights.h5")
    return tmp_path / f"{name}.keras", tmp_path / f"{name}.weights.h5"


def assert_close(ours, theirs, tol=1e-5):
    assert ours.shape == theirs.shape, (ours.shape, theirs.shape)
    np.testing.assert_allclose(ours, theirs, rtol=tol, atol=tol)


@pytest.fixture(scope="module")
def branches(tmp_path_factory):
    """One input feeding side-by-side recurrent layers: every kind and option in one model."""
    tmp = tmp_path_factory.mktemp("keras")
    rng = np.random.default_rng(0)
    inp = keras.Input((T, I))
    seq = dict(return_sequences=True)
    layers = [  # (keras layer name, layer, weight-group name in a .weights.h5 file)
        ("srnn", L.SimpleRNN(5, activation="relu", name="srnn", **seq), "simple_rnn"),
        ("lstm_a", L.LSTM(5, name="lstm_a", **seq), "lstm"),
        ("lstm_nb", L.LSTM(3, use_bias=False, name="lstm_nb", **seq), "lstm_1"),
        ("gru_ra", L.GRU(5, reset_after=True, name="gru_ra", **seq), "gru"),
        ("gru_rb", L.GRU(4, reset_after=False, name="gru_rb", **seq), "gru_1"),
        ("bi_lstm", L.Bidirectional(L.LSTM(3, **seq), name="bi_lstm"), "bidirectional"),
        ("bi_gru", L.Bidirectional(L.GRU(4, reset_after=False, **seq), name="bi_gru"),
         "bidirectional_1"),
    ]
    model = keras.Model(inp, [layer(inp) for _, layer, _ in layers])
    randomize(model, rng)
    x = rng.standard_normal((N, T, I)).astype(np.float32)
    expected = dict(zip([n for n, _, _ in layers], predict(model, x)))
    keras_file, weights_file = save_both(model, tmp, "branches")
    groups = {name: group for name, _, group in layers}
    return keras_file, weights_file, x, expected, groups


def test_keras_file_layers_match_keras(branches):
    keras_file, _, x, expected, _ = branches
    layers = rk.load_layers(keras_file)
    assert list(layers) == list(expected)  # model order, Keras names
    kinds = {"srnn": rnnkit.RNN, "lstm_a": rnnkit.LSTM, "lstm_nb": rnnkit.LSTM, "gru_ra": rnnkit.GRU,
             "gru_rb": rnnkit.GRU, "bi_lstm": rnnkit.LSTM, "bi_gru": rnnkit.GRU}
    for name, layer in layers.items():
        assert type(layer) is kinds[name], name
        assert layer.dtype == np.float32
        y, _ = layer.forward(x)
        assert_close(y, expected[name])
    assert layers["srnn"].nonlinearity == "relu"
    assert layers["gru_ra"].reset_after and not layers["gru_rb"].reset_after
    assert not layers["bi_gru"].reset_after and layers["bi_gru"].bidirectional
    assert not layers["lstm_nb"].bias


def test_weights_file_layers_match_keras(branches):
    _, weights_file, x, expected, groups = branches
    layers = rk.load_layers(weights_file, nonlinearity="relu")  # the file does not say relu
    assert set(layers) == set(groups.values())
    for name, group in groups.items():
        y, _ = layers[group].forward(x)
        assert_close(y, expected[name])
    # tanh by default, which is not what this SimpleRNN computes
    tanh = rk.load_layers(weights_file)["simple_rnn"]
    assert tanh.nonlinearity == "tanh"
    assert np.abs(tanh.forward(x)[0] - expected["srnn"]).max() > 1e-2


def test_float64_and_final_state(branches):
    keras_file, _, x, expected, _ = branches
    layer = rk.load_layers(keras_file, dtype=np.float64)["gru_rb"]
    assert layer.dtype == np.float64 and layer.params["weight_ih_l0"].dtype == np.float64
    y, h = layer.forward(x.astype(np.float64))
    assert_close(y, expected["gru_rb"].astype(np.float64))
    assert_close(h[0], expected["gru_rb"][:, -1].astype(np.float64))  # the state after the last step
    # the bias_hh of Keras's single-bias forms is zero: all of the bias went to bias_ih
    assert not layer.params["bias_hh_l0"].any() and layer.params["bias_ih_l0"].any()


@pytest.mark.parametrize("which", ["keras", "weights"])
def test_stacked_layers_load_as_one_multilayer_layer(tmp_path, which):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((N, T, I)).astype(np.float32)
    models = {
        "rnn": keras.Sequential([keras.Input((T, I)), L.SimpleRNN(5, return_sequences=True),
                                 L.Dropout(0.3), L.SimpleRNN(5, return_sequences=True)]),
        "bigru": keras.Sequential([keras.Input((T, I)),
                                   L.Bidirectional(L.GRU(4, return_sequences=True)),
                                   L.Bidirectional(L.GRU(4, return_sequences=True))]),
        "lstm": keras.Sequential([keras.Input((T, I)), L.LSTM(6, return_sequences=True),
                                  L.LSTM(6, return_sequences=True)]),
    }
    for name, model in models.items():
        randomize(model, rng)
        (expected,) = predict(model, x)
        keras_file, weights_file = save_both(model, tmp_path, name)
        layer = rk.load(keras_file if which == "keras" else weights_file)
        assert layer.num_layers == 2, name
        y, _ = layer.forward(x)
        assert_close(y, expected)


def test_keras_options_rnnkit_cannot_express_are_refused(tmp_path):
    cases = {
        "merge_sum": L.Bidirectional(L.LSTM(3, return_sequences=True), merge_mode="sum"),
        "backwards": L.GRU(3, go_backwards=True),
        "sigmoid": L.SimpleRNN(3, activation="sigmoid"),
        "hard_sigmoid": L.LSTM(3, recurrent_activation="hard_sigmoid"),
    }
    messages = {"merge_sum": "merge_mode", "backwards": "go_backwards", "sigmoid": "activation",
                "hard_sigmoid": "recurrent_activation"}
    for name, layer in cases.items():
        model = keras.Sequential([keras.Input((T, I)), layer])
        model.save(tmp_path / f"{name}.keras")
        with pytest.raises(ValueError, match=messages[name]):
            rk.load_layers(tmp_path / f"{name}.keras")


def test_what_load_cannot_stack_or_read(tmp_path):
    rng = np.random.default_rng(2)
    # a GRU without bias: its weights alone do not say which GRU form it is
    model = keras.Sequential([keras.Input((T, I)), L.GRU(3, use_bias=False, reset_after=False,
                                                         return_sequences=True)])
    randomize(model, rng)
    x = rng.standard_normal((N, T, I)).astype(np.float32)
    (expected,) = predict(model, x)
    keras_file, weights_file = save_both(model, tmp_path, "nobias")
    with pytest.raises(ValueError, match="pass reset_after"):
        rk.load(weights_file)
    assert_close(rk.load(weights_file, reset_after=False).forward(x)[0], expected)
    assert_close(rk.load(keras_file).forward(x)[0], expected)
    with pytest.raises(ValueError, match="for .weights.h5 files"):
        rk.load(keras_file, reset_after=False)
    # two layers that do not feed each other (a Dense between) or differ in kind
    mixed = keras.Sequential([keras.Input((T, I)), L.LSTM(4, return_sequences=True), L.Dense(4),
                              L.LSTM(4, return_sequences=True)])
    mixed.save(tmp_path / "dense.keras")
    with pytest.raises(ValueError, match="follows"):
        rk.load(tmp_path / "dense.keras")
    assert len(rk.load_layers(tmp_path / "dense.keras")) == 2
    kinds = keras.Sequential([keras.Input((T, I)), L.LSTM(4, return_sequences=True),
                              L.GRU(4, return_sequences=True)])
    kinds.save(tmp_path / "kinds.keras")
    with pytest.raises(ValueError, match="cannot stack LSTM and GRU"):
        rk.load(tmp_path / "kinds.keras")
    last = keras.Sequential([keras.Input((T, I)), L.LSTM(4), L.RepeatVector(T), L.LSTM(4)])
    last.save(tmp_path / "last.keras")
    with pytest.raises(ValueError, match="RepeatVector"):
        rk.load(tmp_path / "last.keras")
    # not Keras files at all
    (tmp_path / "junk.weights.h5").write_bytes(b"not hdf5")
    with pytest.raises(ValueError, match="neither a .keras zip nor an HDF5"):
        rk.load(tmp_path / "junk.weights.h5")
    with zipfile.ZipFile(tmp_path / "other.keras", "w") as z:
        z.writestr("hello.txt", "hi")
    with pytest.raises(ValueError, match="not a Keras 3 .keras file"):
        rk.load(tmp_path / "other.keras")
    with pytest.raises(ValueError, match="no such file"):
        rk.load(tmp_path / "missing.keras")


def test_stack_checks_sizes():
    rng = np.random.default_rng(3)
    a, b = rnnkit.GRU(3, 4, rng=rng), rnnkit.GRU(5, 4, rng=rng)
    with pytest.raises(ValueError, match="reads 5 features but layer 0 outputs 4"):
        rk.stack([a, b])
    c = rnnkit.GRU(4, 4, num_layers=2, rng=rng)
    s = rk.stack([a, c])
    assert s.num_layers == 3
    np.testing.assert_array_equal(s.params["weight_hh_l2"], c.params["weight_hh_l1"])
    x = rng.standard_normal((2, 5, 3)).astype(np.float32)
    np.testing.assert_allclose(s.forward(x)[0], c.forward(a.forward(x)[0])[0], rtol=1e-6, atol=1e-6)
