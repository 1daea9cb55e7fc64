"""Dropout, Sequential and calling modules: torch-free layer tests (test_layers_losses.py compares
with torch)."""
import numpy as np
import pytest

import rnnkit
from reference import flat_arrays
from rnnkit.nn.attention import Attention


def test_dropout_scales_and_backpropagates_through_the_mask():
    drop = rnnkit.Dropout(0.25, rng=np.random.default_rng(2))
    x = np.ones((200, 50))
    y = drop.forward(x)
    kept = y != 0
    np.testing.assert_allclose(y[kept], 1 / 0.75)
    assert abs(kept.mean() - 0.75) < 0.01
    np.testing.assert_array_equal(drop.backward(np.full_like(x, 2.0)), 2.0 * y)
    drop.eval()
    assert drop.forward(x) is x


def test_sequential_chain_matches_manual_composition():
    rng = np.random.default_rng(3)
    emb = rnnkit.Embedding(7, 4, dtype=np.float64, rng=rng)
    lstm = rnnkit.LSTM(4, 5, dtype=np.float64, rng=rng)
    lin = rnnkit.Linear(5, 7, dtype=np.float64, rng=rng)
    model = rnnkit.Sequential(emb, lstm, lin)
    names = [n for n, _, _ in model.named_parameters()]
    assert names[0] == "layers.0.weight" and "layers.1.weight_ih_l0" in names
    ids = rng.integers(0, 7, (2, 6))
    targets = rng.integers(0, 7, (2, 6))
    loss_fn = rnnkit.CrossEntropyLoss()
    loss = loss_fn.forward(model.forward(ids), targets)
    model.backward(loss_fn.backward())
    grads = {n: g.copy() for n, _, g in model.named_parameters()}
    model.zero_grad()
    # the same thing by hand
    y, _ = lstm.forward(emb.forward(ids))
    logits = lin.forward(y)
    assert loss_fn.forward(logits, targets) == loss
    dy = lin.backward(loss_fn.backward())
    dx, _ = lstm.backward(dy)
    emb.backward(dx)
    for n, _, g in model.named_parameters():
        np.testing.assert_array_equal(g, grads[n], err_msg=n)


def _call_cases(rng):
    """(module, args, kwargs) for every Module of rnnkit.nn, float64 and random."""
    x = rng.standard_normal((2, 4, 3))
    lengths = np.array([4, 2])
    ids = rng.integers(0, 5, (2, 4))
    logits, targets = rng.standard_normal((2, 4, 5)), rng.integers(0, 5, (2, 4))
    f64 = dict(dtype=np.float64, rng=rng)
    return [
        (rnnkit.RNN(3, 4, nonlinearity="relu", **f64), (x,), {"lengths": lengths}),
        (rnnkit.LSTM(3, 4, num_layers=2, bidirectional=True, **f64), (x,), {"lengths": lengths}),
        (rnnkit.GRU(3, 4, **f64), (x, rng.standard_normal((1, 2, 4))), {}),
        (rnnkit.RNNCell(3, 4, **f64), (x[:, 0],), {}),
        (rnnkit.LSTMCell(3, 4, **f64), (x[:, 0],), {}),
        (rnnkit.GRUCell(3, 4, reset_after=False, **f64), (x[:, 0], rng.standard_normal((2, 4))), {}),
        (rnnkit.Linear(3, 2, **f64), (x,), {}),
        (rnnkit.Embedding(5, 3, **f64), (ids,), {}),
        (rnnkit.Dropout(0.5, rng=rng).eval(), (x,), {}),
        (rnnkit.Sequential(rnnkit.Embedding(5, 3, **f64), rnnkit.GRU(3, 4, **f64)), (ids,),
         {"lengths": lengths}),
        (Attention(3, 3, score="general", **f64), (x[:, 0], x), {"mask": x[..., 0] > 0}),
        (rnnkit.CrossEntropyLoss(), (logits, targets), {}),
        (rnnkit.MSELoss(), (logits, logits[::-1]), {}),
        (rnnkit.GaussianNLLLoss(), (logits, logits[::-1], np.exp(logits)), {}),
        (rnnkit.CTCLoss(), (logits, np.array([[1, 2], [3, 3]]), np.array([4, 4]), np.array([2, 1])), {}),
    ]


def test_calling_a_module_is_calling_forward():
    for module, args, kwargs in _call_cases(np.random.default_rng(5)):
        got, want = flat_arrays(module(*args, **kwargs)), flat_arrays(module.forward(*args, **kwargs))
        assert len(got) == len(want)
        for u, v in zip(got, want):
            np.testing.assert_array_equal(u, v, err_msg=type(module).__name__)
    lstm = rnnkit.LSTM(3, 4, dtype=np.float64, rng=np.random.default_rng(6))
    x = np.random.default_rng(7).standard_normal((2, 5, 3))
    y, _ = lstm(x)  # the call keeps forward's cache: backward follows it
    dx, _ = lstm.backward(np.ones_like(y))
    assert dx.shape == x.shape and np.abs(dx).min() > 0
    with pytest.raises(TypeError):
        rnnkit.Linear(3, 2)(np.zeros((1, 3)), np.zeros(1))  # forward's own signature applies


def test_recurrent_layers_and_cells_by_name():
    from rnnkit.nn import GRU, LSTM, RNN, GRUCell, LSTMCell, RNNCell, recurrent_cell, recurrent_layer

    for name, layer, cell in (("rnn", RNN, RNNCell), ("lstm", LSTM, LSTMCell), ("gru", GRU, GRUCell)):
        made = recurrent_layer(name, 3, 5, num_layers=2, dtype=np.float64)
        assert type(made) is layer and made.num_layers == 2 and made.hidden_size == 5
        assert type(recurrent_cell(name, 3, 5)) is cell
    for make in (recurrent_layer, recurrent_cell):
        with pytest.raises(ValueError, match=r"cell must be one of \['gru', 'lstm', 'rnn'\], got 'tcn'"):
            make("tcn", 3, 5)
