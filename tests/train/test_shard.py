"""The task interface of data parallelism, without MPI: what K ranks would compute, in one process.

For every application, the shards of a global batch (``task.shard(batch, r, K)``) weighted by
their shares (``task.weight``) give the loss and every gradient of the whole batch, within
1e-12 in float64; the shares of the validation metrics (``task.evaluate_shard``) add up to
``task.evaluate()``; the carried state survives a gather and a re-shard.  `test_mpi.py` runs the
same through real MPI processes.
"""
import json

import numpy as np
import pytest

from rnnkit.apps.asr.train import ASRSettings, ASRTask
from rnnkit.apps.forecast.model import NetConfig
from rnnkit.apps.forecast.train import ForecastSettings, NetTask, schedule_for
from rnnkit.apps.forecast.windows import training_windows
from rnnkit.apps.lm.train import LMSettings, LMTask
from rnnkit.apps.seq2seq.train import TranslateSettings, TranslateTask
from rnnkit.data.audio import write_wav
from rnnkit.data.series import Frequency, Series, SeriesSet
from rnnkit.train.mpi import Group, MPIGroup
from rnnkit.train.task import Task, take_rows


def test_the_default_shard_deals_every_row_to_exactly_one_rank():
    task = Task()
    idx = np.arange(11) * 7
    for size in (1, 2, 3, 4):
        parts = [task.shard(idx, r, size) for r in range(size)]
        assert sorted(np.concatenate(parts)) == sorted(idx)
        assert sum(task.weight(p) for p in parts) == task.weight(idx) == 11
    x, y = np.arange(20).reshape(5, 4), np.arange(5) * 10
    k, xs, ys, none = task.shard((3, x, y, None), 1, 2)
    assert k == 3 and none is None
    np.testing.assert_array_equal(xs, x[[1, 3]])
    np.testing.assert_array_equal(ys, y[[1, 3]])
    # an array of another length than the rows (not per row) is kept whole
    assert take_rows((x, np.arange(3)), np.array([0]), 5)[1].shape == (3,)


# ------------------------------------------------------------------------------ tasks
def lm_task(tmp_path):
    rng = np.random.default_rng(0)
    (tmp_path / "t.txt").write_text(" ".join(rng.choice("a cat sat on the mat".split(), 800)))
    s = LMSettings(dtype="float64", dropout=0.0, batch=6, seq_len=7, hidden=8, layers=2, embed=4)
    return LMTask(s, [str(tmp_path / "t.txt")])


def translate_task(tmp_path):
    rng = np.random.default_rng(1)
    digits = "zero one two three four five six seven eight nine".split()
    pairs = [(str(n), " ".join(digits[int(c)] for c in str(n))) for n in rng.integers(0, 9999, 60)]
    s = TranslateSettings(dtype="float64", batch=8, hidden=6, embed=4, teacher_forcing=0.7)
    return TranslateTask(s, pairs)


def asr_task(tmp_path):
    rng = np.random.default_rng(2)
    lines = []
    for k in range(12):
        n = int(rng.integers(1200, 4000))  # utterances of different lengths: padding to cut
        write_wav(tmp_path / f"{k}.wav", 0.3 * np.sin(np.arange(n) * (0.2 + 0.05 * k)), 8000)
        lines.append(json.dumps({"audio": f"{k}.wav", "text": "ab a"[: 1 + k % 4]}))
    (tmp_path / "m.jsonl").write_text("\n".join(lines) + "\n")
    s = ASRSettings(dtype="float64", dropout=0.0, batch=6, hidden=5, layers=1, val_fraction=0.3)
    return ASRTask(s, tmp_path / "m.jsonl", workers=1)


def forecast_task(tmp_path):
    t = np.arange(80.0)
    data = SeriesSet([Series("", 0, 10 + np.sin(t / 3) + 0.1 * t, np.zeros((80, 0)))],
                     Frequency("month", 1), "y")
    train, val, _ = training_windows(data, context=12, horizon=3, dtype=np.float64)
    cfg = NetConfig(input_size=train.x.shape[2], extra_size=train.extra.shape[1], horizon=3,
                    cell="gru", hidden=5, layers=1, dropout=0.0, dtype="float64")
    s = schedule_for(ForecastSettings(horizon=3, batch=10, dtype="float64"), len(train))
    return NetTask(cfg, s, train, val, 0)


TASKS = {"lm": lm_task, "translate": translate_task, "asr": asr_task, "forecast": forecast_task}


def grads(task):
    g = {name: grad.copy() for name, _, grad in task.model.named_parameters()}
    task.model.zero_grad()
    return g


@pytest.mark.parametrize("app", sorted(TASKS))
@pytest.mark.parametrize("size", [2, 3])
def test_weighted_shards_give_the_loss_and_gradients_of_the_whole_batch(tmp_path, app, size):
    task = TASKS[app](tmp_path)
    for step in (0, 1, 5):  # the lm's carried state: shards carry their own streams' rows
        batch = task.batch(step)
        state = task.state()
        whole, expected = task.loss(batch), grads(task)
        after = task.state()
        total, summed, parts = 0.0, {}, []
        for r in range(size):
            task.load_state(Group().shard_state(task, state) if task.state_rows is None
                            else _rows(state, task.state_rows, r, size))
            part = task.shard(batch, r, size)
            share = task.weight(part) / task.weight(batch)
            total += share * task.loss(part) if share else 0.0
            for name, g in grads(task).items():
                summed[name] = summed.get(name, 0.0) + share * g
            parts.append(task.state())
        assert total == pytest.approx(whole, rel=1e-12, abs=0)
        for name, g in expected.items():
            err = np.abs(summed[name] - g).max() / max(np.abs(g).max(), 1e-300)
            assert err < 1e-12, f"{app} {name}: {err:.3g}"
        if task.state_rows is not None:  # the shards' states are the whole batch's rows
            for k, v in after.items():
                for r, p in enumerate(parts):
                    np.testing.assert_allclose(p[k], _rows(after, 1, r, size)[k], rtol=1e-12)
        task.load_state(after)


def _rows(arrays, axis, rank, size):
    return {k: np.take(v, np.arange(rank, v.shape[axis], size), axis=axis)
            for k, v in arrays.items()}


@pytest.mark.parametrize("app", sorted(TASKS))
def test_the_shares_of_the_validation_add_up_to_the_whole(tmp_path, app):
    task = TASKS[app](tmp_path)
    whole = task.evaluate()
    for size in (2, 3):
        parts = [task.evaluate_shard(r, size) for r in range(size)]
        for name, value in whole.items():
            s, c = (sum(p[name][i] for p in parts) for i in (0, 1))
            assert s / c == pytest.approx(value, rel=1e-12), (name, size)


class FakeComm:
    """rank 0 of a world whose ranks' task states are ``parts`` (gather only)."""

    def __init__(self, parts):
        self.parts = parts

    def gather(self, value, root=0):
        return self.parts


def test_the_carried_state_is_gathered_and_re_sharded_for_any_number_of_ranks():
    h = np.arange(2 * 6 * 3, dtype=np.float64).reshape(2, 6, 3)  # (layers, streams, hidden)
    task = Task()
    task.state_rows = 1
    for size in (1, 2, 3):
        ranks = []
        for r in range(size):
            g = MPIGroup.__new__(MPIGroup)
            g.rank, g.size = r, size
            ranks.append(g)
        parts = [g.shard_state(task, {"h": h, "c": -h}) for g in ranks]
        assert sum(p["h"].shape[1] for p in parts) == 6
        root = ranks[0]
        root.comm = FakeComm(parts)
        task.state = lambda: parts[0]
        whole = root.gather_state(task)
        np.testing.assert_array_equal(whole["h"], h)
        np.testing.assert_array_equal(whole["c"], -h)
