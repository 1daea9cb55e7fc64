"""Central differences (float64) against every hand-written backward: no reference needed."""
import numpy as np
import pytest

import rnnkit
from rnnkit.nn import gradcheck, GradcheckError
from reference import make_layer


def _state(layer, N, rng):
    D = layer.num_directions
    h = rng.standard_normal((layer.num_layers * D, N, layer.proj_size or layer.hidden_size))
    if isinstance(layer, rnnkit.LSTM):
        return (h, rng.standard_normal((layer.num_layers * D, N, layer.hidden_size)))
    return h


@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("layers,bidirectional,lengths", [
    (1, False, None), (2, True, None), (2, True, [4, 1, 3]), (1, False, [0, 4, 2])])
def test_layer_gradcheck(kind, layers, bidirectional, lengths):
    rng = np.random.default_rng(0)
    layer = make_layer(kind, 3, 4, layers, bidirectional, np.float64, rng)
    x = rng.standard_normal((3, 4, 3))
    kwargs = {} if lengths is None else {"lengths": np.array(lengths)}
    gradcheck(layer, (x, _state(layer, 3, rng)), kwargs)


def test_lstm_projection_gradcheck():
    rng = np.random.default_rng(1)
    layer = make_layer("lstm", 3, 5, 2, True, np.float64, rng, proj_size=2)
    x = rng.standard_normal((2, 3, 3))
    gradcheck(layer, (x, _state(layer, 2, rng)), {"lengths": np.array([3, 2])})


def test_relu_rnn_gradcheck():
    rng = np.random.default_rng(2)
    layer = make_layer("rnn", 3, 4, 2, False, np.float64, rng, nonlinearity="relu")
    gradcheck(layer, (rng.standard_normal((2, 4, 3)), _state(layer, 2, rng)))


@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
def test_dropout_between_layers_gradcheck(kind):
    """In training mode the dropout mask is part of the function: re-seed it for every evaluation."""
    rng = np.random.default_rng(3)
    layer = make_layer(kind, 3, 4, 3, True, np.float64, rng, dropout=0.4)

    def reseed():
        layer.rng = np.random.default_rng(99)

    gradcheck(layer, (rng.standard_normal((2, 4, 3)), _state(layer, 2, rng)),
              {"lengths": np.array([4, 2])}, reset=reseed)


@pytest.mark.parametrize("cls,state", [(rnnkit.RNNCell, 1), (rnnkit.LSTMCell, 2), (rnnkit.GRUCell, 1)])
def test_cell_gradcheck(cls, state):
    rng = np.random.default_rng(4)
    cell = cls(3, 5, dtype=np.float64, rng=rng)
    for p in cell.params.values():
        p[...] = rng.uniform(-0.8, 0.8, p.shape)
    h = tuple(rng.standard_normal((4, 5)) for _ in range(state))
    gradcheck(cell, (rng.standard_normal((4, 3)), h if state == 2 else h[0]))


def test_linear_gradcheck_on_sequences():
    rng = np.random.default_rng(5)
    lin = rnnkit.Linear(4, 3, dtype=np.float64, rng=rng)
    gradcheck(lin, (rng.standard_normal((2, 5, 4)),))


def test_embedding_gradcheck():
    rng = np.random.default_rng(6)
    emb = rnnkit.Embedding(7, 3, padding_idx=2, dtype=np.float64, rng=rng)
    ids = np.array([[1, 4, 6, 1], [0, 5, 3, 3]])  # the padding row is a constant: see test_layers
    errors = gradcheck(emb, (ids,))
    assert set(errors) == {"weight"}


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_losses_gradcheck(reduction):
    rng = np.random.default_rng(7)
    logits = rng.standard_normal((2, 4, 5))
    targets = rng.integers(0, 5, (2, 4))
    targets[0, 1] = -100
    mask = rng.random((2, 4)) > 0.3
    gradcheck(rnnkit.CrossEntropyLoss(reduction=reduction), (logits, targets), {"mask": mask}, wrt=[0])
    pred, target = rng.standard_normal((3, 4, 2)), rng.standard_normal((3, 4, 2))
    gradcheck(rnnkit.MSELoss(reduction), (pred, target), {"mask": rng.random((3, 4)) > 0.3}, wrt=[0])
    var = rng.uniform(0.2, 2.0, (3, 4, 2))
    gradcheck(rnnkit.GaussianNLLLoss(full=True, reduction=reduction), (pred, target, var), wrt=[0, 2])


def test_gradcheck_catches_a_wrong_backward():
    class Wrong(rnnkit.Linear):
        def backward(self, dy):
            return 1.01 * super().backward(dy)

    rng = np.random.default_rng(8)
    with pytest.raises(GradcheckError, match="input0"):
        gradcheck(Wrong(3, 2, dtype=np.float64, rng=rng), (rng.standard_normal((4, 3)),))


def test_gru_reset_before_gradcheck():
    """Keras's reset_after=False form has its own backward: layer and cell."""
    rng = np.random.default_rng(9)
    layer = make_layer("gru", 3, 4, 2, True, np.float64, rng, reset_after=False)
    gradcheck(layer, (rng.standard_normal((3, 4, 3)), _state(layer, 3, rng)),
              {"lengths": np.array([4, 1, 3])})
    cell = rnnkit.GRUCell(3, 4, reset_after=False, dtype=np.float64, rng=rng)
    gradcheck(cell, (rng.standard_normal((2, 3)), rng.standard_normal((2, 4))))
