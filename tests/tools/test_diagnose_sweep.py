"""``rnnkit diagnose sweep`` (rnnkit/tools/diagnose.py, synthetic.py): the problems and their
baselines worked out by hand, equal parameter counts, the initialisations, a small sweep end to
end (the same with one process or two) and bad input."""
import json
import math

import numpy as np
import pytest

from rnnkit.cli import main
from rnnkit.nn import CrossEntropyLoss
from rnnkit.tools.synthetic import (Net, baseline, make_batch, matched_hidden, parameters, sizes,
                                    steps_of)


def test_adding_problem_and_its_baseline():
    x, y = make_batch("adding", 20, 4000, np.random.default_rng(0))
    assert x.shape == (4000, 20, 2) and y.shape == (4000, 1)
    marks = x[:, :, 1]
    assert np.all(marks.sum(axis=1) == 2)
    assert np.all(marks[:, :10].sum(axis=1) == 1) and np.all(marks[:, 10:].sum(axis=1) == 1)
    np.testing.assert_allclose(y[:, 0], (x[:, :, 0] * marks).sum(axis=1))
    # always predicting 1: MSE = Var(u1 + u2) = 2 / 12
    assert np.mean((y - 1.0) ** 2) == pytest.approx(1 / 6, abs=0.01)
    assert baseline("adding", 20) == pytest.approx(1 / 6)


def test_copy_task_and_its_baseline():
    T = 15
    x, y = make_batch("copy", T, 50, np.random.default_rng(1))
    S = steps_of("copy", T)
    assert S == T + 20 and x.shape == (50, S, 10) and y.shape == (50, S)
    ids = x.argmax(axis=2)
    assert np.all(x.sum(axis=2) == 1)
    np.testing.assert_array_equal(y[:, -10:], ids[:, :10])  # the 10 symbols come back at the end
    assert np.all((ids[:, :10] >= 1) & (ids[:, :10] <= 8))
    assert np.all(ids[:, 10 + T - 1] == 9) and np.all(y[:, :-10] == 0)
    assert np.all(ids[:, 10 : 10 + T - 1] == 0) and np.all(ids[:, -10:] == 0)
    # blanks until the delimiter, then a uniform guess over the 8 symbols
    logits = np.full((50, S, 9), -1e9)
    logits[:, :-10, 0] = 0
    logits[:, -10:, 1:] = 0
    ce = float(CrossEntropyLoss().forward(logits, y))
    assert ce == pytest.approx(10 * math.log(8) / (T + 20), rel=1e-9)
    assert baseline("copy", T) == pytest.approx(ce, rel=1e-9)


def test_temporal_order_problem():
    T = 50
    x, y = make_batch("temporal-order", T, 2000, np.random.default_rng(2))
    ids = x.argmax(axis=2)
    assert np.all(ids[:, 0] == 6) and np.all(ids[:, -1] == 7)  # B ... E
    for n in range(2000):
        where = np.flatnonzero(ids[n] >= 4)[1:-1]  # X or Y, between B and E
        assert len(where) == 2 and 5 <= where[0] < 10 and 25 <= where[1] < 30
        a, b = ids[n, where] - 4
        assert y[n] == 2 * a + b
    assert np.bincount(y, minlength=4).min() > 400  # the four classes equally likely
    assert baseline("temporal-order", T) == pytest.approx(math.log(4))


@pytest.mark.parametrize("problem", ["adding", "copy", "temporal-order"])
def test_equal_parameter_counts(problem):
    inputs, outputs = sizes(problem)
    target = parameters("lstm", 24, problem)
    for cell in ("rnn", "gru", "lstm"):
        h = matched_hidden(cell, target, problem)
        net = Net(cell, inputs, h, outputs, problem == "copy", ("default",),
                  np.random.default_rng(0))
        assert net.num_parameters() == parameters(cell, h, problem)
        assert abs(net.num_parameters() - target) / target < 0.03, (cell, h)


def test_initialisations():
    rng = np.random.default_rng(0)
    init = ("orthogonal", "irnn", "forget-bias")
    rnn = Net("rnn", 2, 8, 1, False, init, rng).rnn
    assert rnn.nonlinearity == "relu"
    np.testing.assert_array_equal(rnn.params["weight_hh_l0"], np.eye(8))
    assert not rnn.params["bias_ih_l0"].any() and not rnn.params["bias_hh_l0"].any()
    lstm = Net("lstm", 2, 8, 1, False, init, rng).rnn
    p = lstm.params
    np.testing.assert_array_equal(p["bias_ih_l0"][8:16] + p["bias_hh_l0"][8:16], 1)
    for k in range(4):  # every gate's block orthogonal
        W = p["weight_hh_l0"][8 * k : 8 * k + 8].astype(np.float64)
        np.testing.assert_allclose(W @ W.T, np.eye(8), atol=1e-6)
    gru = Net("gru", 2, 8, 1, False, ("default",), rng).rnn
    assert np.linalg.norm(gru.params["weight_hh_l0"][:8].astype(np.float64), 2) < 1.5


def sweep(tmp_path, capsys, *extra):
    args = ["diagnose", "sweep", "--lengths", "6,12", "--steps", "25", "--seeds", "2",
            "--hidden", "6", "--json", "--quiet", "--plot", str(tmp_path / "s.png"), *extra]
    assert main(args) == 0
    return json.loads(capsys.readouterr().out)


def test_a_small_sweep_end_to_end(tmp_path, capsys):
    one = sweep(tmp_path, capsys, "--jobs", "1", "--cells", "rnn,lstm")
    assert (tmp_path / "s.png").stat().st_size > 0
    runs = one["runs"]
    assert [(r["cell"], r["length"], r["seed"]) for r in runs] == [
        (c, T, s) for c in ("rnn", "lstm") for T in (6, 12) for s in (0, 1)]
    for r in runs:
        assert r["ratio"] == pytest.approx(r["loss"] / r["baseline"])
        assert r["solved"] == (r["ratio"] < 0.1)
        assert r["horizon"] is None or 0 <= r["horizon"] <= r["length"]
    for cell, info in one["cells"].items():
        solved = [int(T) for T, row in info["lengths"].items() if 2 * row["solved"] >= row["seeds"]]
        assert info["longest_solved"] == (max(solved) if solved else None)
        assert info["params"] == parameters(cell, info["hidden"], "adding")
    # two processes: the same numbers
    two = sweep(tmp_path, capsys, "--jobs", "2", "--cells", "rnn,lstm")
    for a, b in zip(one["runs"], two["runs"]):
        assert {k: v for k, v in a.items() if k != "seconds"} == \
            {k: v for k, v in b.items() if k != "seconds"}


def test_the_table_states_budget_and_initialisation(tmp_path, capsys):
    assert main(["diagnose", "sweep", "--task", "temporal-order", "--lengths", "10", "--steps", "5",
                 "--seeds", "1", "--hidden", "4", "--jobs", "1", "--plot", "", "--init",
                 "orthogonal,forget-bias", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "budget: 5 steps of 32 sequences per run" in out
    assert "init: orthogonal W_hh per gate; LSTM forget-gate bias 1" in out
    assert "longest length solved: rnn " in out and "guessing scores log 4" in out


@pytest.mark.parametrize("args, message", [
    (["--cells", "rnn,foo"], "--cells: unknown cell 'foo'"),
    (["--lengths", "10,x"], "--lengths must be comma-separated whole numbers"),
    (["--task", "temporal-order", "--lengths", "5"], "needs lengths >= 10"),
    (["--seeds", "0"], "--seeds must be >= 1"),
    (["--init", "xavier"], "--init: unknown option 'xavier'"),
    (["--lr", "nan"], "--lr must be > 0"),
    (["--plot", "no/such/folder/s.png"], "folder no/such/folder does not exist"),
])
def test_bad_input_is_one_line(args, message, capsys):
    assert main(["diagnose", "sweep", *args]) == 1
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
