"""Bad input raises one ValueError that names the problem."""
import numpy as np
import pytest

import rnnkit


@pytest.fixture
def lstm():
    return rnnkit.LSTM(3, 4, num_layers=2, bidirectional=True, dtype=np.float64,
                       rng=np.random.default_rng(0))


def x(*shape):
    return np.zeros(shape)


@pytest.mark.parametrize("call,match", [
    (lambda m: m.forward(x(2, 5, 4)), r"\(N, T, 3\).*\(2, 5, 4\)"),
    (lambda m: m.forward(x(5, 3)), r"\(N, T, 3\)"),
    (lambda m: m.forward(x(2, 5, 3), lengths=[5, 6]), r"lengths.*\[0, T=5\]"),
    (lambda m: m.forward(x(2, 5, 3), lengths=[-1, 2]), r"lengths.*\[0, T=5\]"),
    (lambda m: m.forward(x(2, 5, 3), lengths=[5]), r"lengths.*\(2,\)"),
    (lambda m: m.forward(x(2, 5, 3), lengths=[2.5, 1.0]), r"lengths.*integer"),
    (lambda m: m.forward(x(2, 5, 3), state=(x(4, 2, 4), x(2, 2, 4))), r"c has shape \(2, 2, 4\).*\(4, 2, 4\)"),
    (lambda m: m.forward(x(2, 5, 3), state=x(4, 2, 4)), r"state must be a pair"),
    (lambda m: m.forward(x(2, 5, 3).astype(np.float32)), r"dtype float32.*float64"),
])
def test_layer_forward_rejects(lstm, call, match):
    with pytest.raises(ValueError, match=match):
        call(lstm)


def test_gru_state_shape_and_cell_inputs():
    gru = rnnkit.GRU(3, 4, dtype=np.float64)
    with pytest.raises(ValueError, match=r"h has shape \(2, 2, 4\).*\(1, 2, 4\)"):
        gru.forward(x(2, 5, 3), state=x(2, 2, 4))
    cell = rnnkit.LSTMCell(3, 4, dtype=np.float64)
    with pytest.raises(ValueError, match=r"\(N, 3\)"):
        cell.forward(x(2, 4))
    with pytest.raises(ValueError, match=r"c has shape"):
        cell.forward(x(2, 3), (x(2, 4), x(3, 4)))


@pytest.mark.parametrize("kwargs,match", [
    (dict(dropout=1.0), "dropout"), (dict(num_layers=0), "num_layers"),
    (dict(proj_size=4), "proj_size"), (dict(dtype=np.int32), "dtype"),
])
def test_constructor_rejects(kwargs, match):
    with pytest.raises(ValueError, match=match):
        rnnkit.LSTM(3, 4, **kwargs)


def test_rnn_nonlinearity_and_losses():
    with pytest.raises(ValueError, match="nonlinearity"):
        rnnkit.RNN(3, 4, nonlinearity="sigmoid")
    with pytest.raises(ValueError, match="targets"):
        rnnkit.CrossEntropyLoss().forward(x(2, 3, 4), np.zeros((2, 4), int))
    with pytest.raises(ValueError, match=r"\[0, 4\)"):
        rnnkit.CrossEntropyLoss().forward(x(2, 3, 4), np.full((2, 3), 4))
    with pytest.raises(ValueError, match="reduction"):
        rnnkit.MSELoss("avg")
    with pytest.raises(ValueError, match="ids"):
        rnnkit.Embedding(5, 2).forward(np.array([0, 5]))


def test_options_of_another_cell_are_refused():
    with pytest.raises(ValueError, match="reset_after applies to GRU only"):
        rnnkit.LSTM(3, 4, reset_after=False)
    with pytest.raises(ValueError, match="nonlinearity applies to RNN only"):
        rnnkit.GRU(3, 4, nonlinearity="relu")
