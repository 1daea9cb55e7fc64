"""The gate table (rnnkit/interop/gates.py) against the frameworks themselves.

Each framework runs a one-layer RNN / LSTM / GRU with random weights in its own layout; of all the
ways to reorder the gate blocks into rnnkit's (= torch's) layout, exactly one must make rnnkit
give the framework's outputs, and it must be the table's ``permutation(kind, framework, "torch")``.
Nothing here restates the table.
"""
import itertools
import os

import numpy as np
import pytest

import rnnkit
from rnnkit.interop.gates import permutation, permute_blocks

N, T, I, H = 2, 5, 3, 4
GATES = {"rnn": 1, "lstm": 4, "gru": 3}
CLASSES = {"rnn": rnnkit.RNN, "lstm": rnnkit.LSTM, "gru": rnnkit.GRU}


def matching_orders(kind, w_ih, w_hh, b_ih, b_hh, x, y, reset_after=True):
    """Every block permutation p for which rnnkit, given the framework's blocks reordered by
    ``permute_blocks(., p)``, reproduces the framework's outputs y (N, T, H) (float32 rounding)."""
    found = []
    for p in itertools.permutations(range(GATES[kind])):
        p = list(p)
        layer = CLASSES[kind](I, H, dtype=np.float64,
                              **({"reset_after": reset_after} if kind == "gru" else {}))
        layer.load_state_dict({f"{name}_l0": permute_blocks(w, p).astype(np.float64) for name, w in
                               (("weight_ih", w_ih), ("weight_hh", w_hh), ("bias_ih", b_ih),
                                ("bias_hh", b_hh))})
        with rnnkit.no_grad():
            ours, _ = layer(x.astype(np.float64))
        if np.abs(ours - y).max() < 1e-5:
            found.append(p)
    return found


def random(rng, *shape):
    return rng.uniform(-0.8, 0.8, shape).astype(np.float32)


@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
def test_torch_order(kind):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    module = getattr(torch.nn, kind.upper())(I, H, batch_first=True)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.from_numpy(random(rng, *p.shape)))
    x = rng.standard_normal((N, T, I)).astype(np.float32)
    y = module(torch.from_numpy(x))[0].detach().numpy()
    w = {k: v.numpy() for k, v in module.state_dict().items()}
    assert matching_orders(kind, w["weight_ih_l0"], w["weight_hh_l0"], w["bias_ih_l0"],
                           w["bias_hh_l0"], x, y) == [permutation(kind, "torch", "torch")]


# keras (torch backend) calls np.array(variable) with a __array__ that lacks copy=
@pytest.mark.filterwarnings(
    "ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning")
@pytest.mark.parametrize("kind,reset_after", [("rnn", True), ("lstm", True), ("gru", True),
                                              ("gru", False)])
def test_keras_order(kind, reset_after):
    os.environ.setdefault("KERAS_BACKEND", "torch")  # torch is installed; no TensorFlow needed
    keras = pytest.importorskip("keras")
    cls = {"rnn": keras.layers.SimpleRNN, "lstm": keras.layers.LSTM, "gru": keras.layers.GRU}[kind]
    layer = cls(H, return_sequences=True, **({"reset_after": reset_after} if kind == "gru" else {}))
    layer.build((None, T, I))
    rng = np.random.default_rng(1)
    weights = [random(rng, *w.shape) for w in layer.weights]
    layer.set_weights(weights)
    x = rng.standard_normal((N, T, I)).astype(np.float32)
    y = keras.ops.convert_to_numpy(layer(x))
    kernel, recurrent, bias = weights  # (I, gH), (H, gH), (gH,) or GRU's (2, gH): input, recurrent
    b_ih, b_hh = (bias[0], bias[1]) if bias.ndim == 2 else (bias, np.zeros_like(bias))
    assert matching_orders(kind, kernel.T, recurrent.T, b_ih, b_hh, x, y,
                           reset_after) == [permutation(kind, "keras", "torch")]


@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
def test_onnx_order(kind):
    pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    from onnx import TensorProto, helper, numpy_helper
    rng = np.random.default_rng(2)
    gH = GATES[kind] * H
    W, R, B = random(rng, 1, gH, I), random(rng, 1, gH, H), random(rng, 1, 2 * gH)
    attrs = {"hidden_size": H, **({"linear_before_reset": 1} if kind == "gru" else {})}
    node = helper.make_node(kind.upper(), ["X", "W", "R", "B"], ["Y"], **attrs)
    graph = helper.make_graph(
        [node], "gates", [helper.make_tensor_value_info("X", TensorProto.FLOAT, [T, N, I])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, None)],
        initializer=[numpy_helper.from_array(a, name) for a, name in ((W, "W"), (R, "R"), (B, "B"))])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)])
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    x = rng.standard_normal((N, T, I)).astype(np.float32)
    y = sess.run(None, {"X": np.ascontiguousarray(x.transpose(1, 0, 2))})[0]  # (T, 1, N, H)
    assert matching_orders(kind, W[0], R[0], B[0, :gH], B[0, gH:], x,
                           y[:, 0].transpose(1, 0, 2)) == [permutation(kind, "onnx", "torch")]


def test_permute_blocks_moves_whole_blocks_and_inverts():
    H2 = 2
    w = np.arange(4 * H2 * 3).reshape(4 * H2, 3)  # (gH, I): block j = rows [j*H, (j+1)*H)
    p = [0, 3, 1, 2]
    out = permute_blocks(w, p)
    np.testing.assert_array_equal(out[H2 : 2 * H2], w[3 * H2 : 4 * H2])  # block 1 is w's block 3
    for kind in GATES:  # there and back again, for every pair of frameworks
        for src, dst in itertools.permutations(["torch", "keras", "onnx"], 2):
            w = np.arange(GATES[kind] * H2 * 3).reshape(-1, 3)
            back = permute_blocks(permute_blocks(w, permutation(kind, src, dst)),
                                  permutation(kind, dst, src))
            np.testing.assert_array_equal(back, w)
    np.testing.assert_array_equal(permute_blocks(np.arange(6), [1, 0, 2]), [2, 3, 0, 1, 4, 5])
