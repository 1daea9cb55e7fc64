"""RNN / LSTM / GRU against torch.nn: outputs, final state, dx, dstate and every parameter gradient."""
import itertools

import numpy as np
import pytest

from reference import compare_with_torch, make_layer

pytest.importorskip("torch")

def _random_cases():
    """Every (kind, layers, bidirectional, lengths) with shapes drawn from one fixed seed: the same
    cases in every process, each named by its shapes and its own seed."""
    draw = np.random.default_rng(20240613)
    cases = []
    for k, (kind, layers, bi, variable) in enumerate(
            itertools.product(["rnn", "lstm", "gru"], [1, 2, 3], [False, True], [False, True])):
        N, T, I, H = (int(draw.integers(1, hi)) for hi in (5, 7, 6, 7))
        case = dict(kind=kind, layers=layers, bidirectional=bi, variable=variable, N=N, T=T, I=I,
                    H=H, seed=1000 + k)
        cases.append(pytest.param(case, id=f"{kind}-L{layers}-{'bi' if bi else 'uni'}-"
                                           f"{'lengths' if variable else 'full'}-N{N}T{T}I{I}H{H}"))
    return cases


@pytest.mark.parametrize("case", _random_cases())
def test_float64_matches_torch(case):
    print("case:", case)  # shown with a failure: the case reruns as is
    rng = np.random.default_rng(case["seed"])
    N, T = case["N"], case["T"]
    layer = make_layer(case["kind"], case["I"], case["H"], case["layers"], case["bidirectional"],
                       np.float64, rng)
    lengths = None
    if case["variable"]:
        lengths = rng.integers(1, T + 1, N)
        lengths[rng.integers(N)] = T  # torch's packed output needs one full-length sequence
    compare_with_torch(layer, N, T, rng, lengths, rtol=1e-10)


@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("variable", [False, True])
def test_float32_matches_torch(kind, variable):
    rng = np.random.default_rng(7)
    N, T = 4, 9
    layer = make_layer(kind, 5, 8, 2, True, np.float32, rng)
    lengths = np.array([9, 3, 7, 1]) if variable else None
    compare_with_torch(layer, N, T, rng, lengths, rtol=1e-5)


def test_relu_rnn_matches_torch():
    rng = np.random.default_rng(3)
    layer = make_layer("rnn", 4, 6, 2, True, np.float64, rng, nonlinearity="relu")
    compare_with_torch(layer, 3, 6, rng, np.array([6, 2, 4]), rtol=1e-10)


@pytest.mark.parametrize("bidirectional", [False, True])
def test_lstm_projection_matches_torch(bidirectional):
    rng = np.random.default_rng(11)
    layer = make_layer("lstm", 4, 7, 2, bidirectional, np.float64, rng, proj_size=3)
    compare_with_torch(layer, 3, 5, rng, np.array([5, 1, 3]), rtol=1e-10)


@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
def test_without_bias_and_state_matches_torch(kind):
    rng = np.random.default_rng(5)
    layer = make_layer(kind, 3, 4, 2, True, np.float64, rng, bias=False)
    assert not any(name.startswith("bias") for name in layer.params)
    compare_with_torch(layer, 2, 4, rng, None, with_state=False, rtol=1e-10)
