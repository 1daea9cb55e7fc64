"""``--diagnose`` (rnnkit/train/diagnose.py): every application trains bit-identically with and
without it; it writes one measurement at the start and one per evaluation; a resumed run
measures what the run never stopped measures; warnings name the layer; under MPI rank 0 alone
writes."""
import json
import time
from pathlib import Path

import numpy as np
import pytest

from rnnkit.cli import main
from rnnkit.nn import RNN, Linear, Module, MSELoss, no_grad
from rnnkit.nn.init import orthogonal
from rnnkit.train.diagnose import (Diagnose, HorizonMeasure, gradient_shares, horizons, measure,
                                   module_names)
from rnnkit.train.engine import fit
from rnnkit.train.settings import TrainSettings
from rnnkit.train.task import Task
from test_resume_apps import APPS, assert_identical


def records(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "diagnostics.jsonl").read_text().splitlines()]


def run_folders(out: Path, app: str) -> list[Path]:
    """The folders of a command's runs: the run itself, or a forecaster's networks."""
    return sorted((out / "runs").iterdir()) if app.startswith("forecast") else [out]


def classify_data(folder: Path) -> list[str]:
    assert main(["classify", "make-data", "--out", str(folder / "charts"), "--per-class", "8",
                 "--seed", "5"]) == 0
    return ["classify", "train", "--data", str(folder / "charts" / "train.ts"), "--hidden", "6",
            "--batch", "8", "--warmup", "3", "--ensemble", "2", "--dropout", "0.2"]


def esrnn_data(folder: Path) -> list[str]:
    return APPS["forecast"][0](folder) + ["--model", "esrnn", "--es-min-steps", "1",
                                          "--es-epochs", "3", "--ensemble", "1"]


BUILDERS = {**{app: make for app, (make, _, _) in APPS.items()}, "classify": classify_data,
            "forecast-esrnn": esrnn_data}


@pytest.mark.parametrize("app", sorted(BUILDERS))
def test_diagnose_changes_no_number_of_the_training(app, tmp_path, capsys):
    base = BUILDERS[app](tmp_path) + ["--steps", "30", "--eval-every", "15", "--quiet"]
    assert main(base + ["--out", str(tmp_path / "plain")]) == 0
    assert main(base + ["--out", str(tmp_path / "diagnosed"), "--diagnose"]) == 0
    assert_identical(tmp_path / "plain", tmp_path / "diagnosed")
    for folder in run_folders(tmp_path / "diagnosed", app):
        recs = records(folder)
        steps = json.loads((folder / "meta.json").read_text())["meta"]["history"]["eval_step"]
        assert [r["step"] for r in recs] == [0] + [s for s in steps if s > 0], folder
        assert (folder / "gradient_flow.png").stat().st_size > 0
        for r in recs:
            assert r["modules"], folder
            for m in r["modules"]:
                assert m["T"] >= 2 and 0 < m["length"] <= m["T"]
                for name, d in m["directions"].items():
                    assert len(d["profile"]) == m["T"]
                    if app == "forecast" and r["step"] == 0:  # the recurrent part starts silent:
                        assert d["horizon"] is None           # no gradient reaches it
                        continue
                    assert 0 <= d["horizon"] <= m["T"]
                    assert d["profile"][0] == 1.0  # relative to the norm at the loss
                    assert set(d["sigma"]) == set(d["bound"])
        if app == "asr":  # two bidirectional layers
            assert list(recs[0]["modules"][0]["directions"]) == ["l0", "l0_reverse", "l1",
                                                                 "l1_reverse"]
        assert sum(recs[-1]["grad_share"].values()) == pytest.approx(1.0)
        if len(recs) > 1:
            assert recs[1]["grad_norm"]["steps"] == recs[1]["step"]  # the steps since the start


def test_resumed_run_measures_what_the_unstopped_run_measures(tmp_path, capsys):
    make, _, _ = APPS["lm"]
    base = make(tmp_path) + ["--steps", "400", "--eval-every", "50", "--quiet", "--diagnose"]
    start = time.perf_counter()
    assert main(base + ["--out", str(tmp_path / "full")]) == 0
    seconds = time.perf_counter() - start
    out = tmp_path / "stopped"  # a quarter of the whole run's time, whatever the machine's speed
    assert main(base + ["--out", str(out), "--max-time", f"{seconds / 4:.4f}"]) == 0
    first = records(out)
    assert first and first[-1]["step"] < 400  # it stopped before the end
    assert main(base + ["--out", str(out), "--resume"]) == 0
    full, resumed = records(tmp_path / "full"), records(out)
    assert [r["step"] for r in resumed] == [r["step"] for r in full] == list(range(0, 401, 50))
    for a, b in zip(full, resumed):
        assert a["modules"] == b["modules"] and a["loss"] == b["loss"]
        assert a["grad_share"] == b["grad_share"]
    # --overwrite starts the measurements again
    assert main(base + ["--out", str(out), "--overwrite", "--steps", "50"]) == 0
    assert [r["step"] for r in records(out)] == [0, 50]


class Net(Module):
    """An Elman RNN read at its last step by a Linear head."""

    def __init__(self, scale, rng):
        super().__init__()
        self.rnn = RNN(3, 16, dtype=np.float64, rng=rng)
        self.rnn.params["weight_hh_l0"][...] = scale * orthogonal((16, 16), rng)
        self.rnn.params["bias_ih_l0"][...] = 0
        self.rnn.params["bias_hh_l0"][...] = 0
        self.head = Linear(16, 1, dtype=np.float64, rng=rng)

    def forward(self, x):
        y, _ = self.rnn.forward(x)
        self.shape = y.shape
        return self.head.forward(y[:, -1])

    def backward(self, dout):
        dy = np.zeros(self.shape)
        dy[:, -1] = self.head.backward(dout)
        self.rnn.backward(dy)


class LastStep(Task):
    """Regress the sum of the inputs' first feature from the last step (the adding problem's shape)."""

    app = "toy"

    def __init__(self, scale, x_scale=1.0):
        self.model = Net(scale, np.random.default_rng(0))
        self.loss_fn, self.x_scale = MSELoss(), x_scale

    def batch(self, step):
        x = np.random.default_rng([1, step]).standard_normal((8, 80, 3)) * self.x_scale
        return x, x[:, :, :1].sum(axis=1)

    def loss(self, batch):
        x, y = batch
        loss = float(self.loss_fn.forward(self.model.forward(x), y))
        self.model.backward(self.loss_fn.backward())
        return loss

    def evaluate(self):
        x, y = self.batch(10**6)
        with no_grad():
            pred = self.model.forward(x)
        return {"loss": float(np.mean((pred - y) ** 2))}


def settings(**kw):
    return TrainSettings(**{**dict(steps=4, eval_every=2, warmup=0, lr=1e-3, min_lr=1e-3, clip=1e6,
                                   batch=8, dtype="float64"), **kw})


@pytest.mark.parametrize("scale, x_scale, expected", [
    (0.2, 1.0, "gradients vanish in rnn l0: horizon"),
    (3.0, 1e-6, "gradients explode in rnn l0: the norm grows x"),
])
def test_warnings_name_the_layer(scale, x_scale, expected, tmp_path):
    lines = []
    fit(LastStep(scale, x_scale), settings(), tmp_path, callbacks=[Diagnose(say=lines.append)],
        progress=False)
    recs = records(tmp_path)
    assert [r["step"] for r in recs] == [0, 2, 4]
    for r in recs:  # at every measurement (the explosion also makes clipping fire)
        assert any(w.startswith(expected) for w in r["warnings"]), r["warnings"]
    assert lines == [f"rnnkit diagnose: step {r['step']}: warning: {w}" for r in recs
                     for w in r["warnings"]]


def test_measure_leaves_nothing_behind_and_horizons_summarise_it():
    """measure() on the linear regime (x = 0): decay exactly 0.3 per step, horizon 6; the
    gradients, the parameters and the mode are as before."""
    task = LastStep(0.3, x_scale=0.0)
    grads = {k: np.full_like(g, 0.5) for k, g in task.model.rnn.grads.items()}
    for k, g in task.model.rnn.grads.items():
        g[...] = grads[k]
    params = task.model.state_dict()
    m = measure(task, task.batch(0))
    for k, g in task.model.rnn.grads.items():
        np.testing.assert_array_equal(g, grads[k])
    for k, p in task.model.state_dict().items():
        np.testing.assert_array_equal(p, params[k])
    assert task.model.training
    h = horizons(m)
    assert list(h) == ["rnn l0"]
    assert (h["rnn l0"]["horizon"], h["rnn l0"]["horizon_full"]) == (6, False)
    assert h["rnn l0"]["decay"] == pytest.approx(0.3, rel=1e-9)
    assert h["rnn l0"]["length"] == 80


def test_horizon_measure_for_tools():
    """rnnkit compare's "grad horizon": the first layer's horizon of the trained parameters, and
    the training is the same with it."""
    plain, measured = LastStep(0.3, x_scale=0.0), LastStep(0.3, x_scale=0.0)
    fit(plain, settings(), None, progress=False)
    hm = HorizonMeasure(measured)
    assert hm.result() is None
    fit(measured, settings(), None, callbacks=[hm], progress=False)
    for (name, p, _), (_, q, _) in zip(plain.model.named_parameters(),
                                       measured.model.named_parameters()):
        np.testing.assert_array_equal(p, q, err_msg=name)
    expected = horizons(measure(measured, measured.batch(0)))["rnn l0"]["horizon"]
    assert hm.result() == expected and 1 <= expected < 80


def test_clipping_on_most_steps_warns(tmp_path):
    lines = []
    fit(LastStep(0.9), settings(clip=1e-8), None, callbacks=[Diagnose(say=lines.append)],
        progress=False)
    clipping = [line for line in lines if "clipping" in line]
    assert len(clipping) == 2 and "fired on 100% of steps 1-2" in clipping[0]
    assert "the largest share is " in clipping[0]


def test_module_names_and_gradient_shares():
    net = Net(0.5, np.random.default_rng(1))
    assert list(module_names(net).values()) == ["rnn"]
    for _, _, g in net.named_parameters():
        g[...] = 1.0
    shares = gradient_shares(net)
    sizes = {"rnn l0": 16 * 3 + 16 * 16 + 32, "head": 17}
    total = sum(sizes.values())
    assert shares == pytest.approx({k: v / total for k, v in sizes.items()})


def test_under_mpi_rank_0_alone_writes(tmp_path):
    pytest.importorskip("mpi4py")
    from test_mpi import LM, MPIEXEC, ok, run

    if MPIEXEC is None:
        pytest.skip("needs mpiexec")
    rng = np.random.default_rng(0)
    words = "the cat sat on a mat and a dog ran far away from home".split()
    (tmp_path / "t.txt").write_text(" ".join(rng.choice(words, 2500)) + "\n")
    args = [*LM, "--steps", "8", "--diagnose"]
    ok(run([*args, "--out", "one"], tmp_path))
    two = ok(run([*args, "--out", "two"], tmp_path, n=2))
    a, b = records(tmp_path / "one"), records(tmp_path / "two")
    assert [r["step"] for r in b] == [r["step"] for r in a] == [0, 4, 8]  # once each
    for x, y in zip(a, b):  # the same measurement, on rank 0, of the same parameters
        for m, n in zip(x["modules"], y["modules"]):
            for d in m["directions"]:
                assert m["directions"][d]["horizon"] == n["directions"][d]["horizon"]
                np.testing.assert_allclose(n["directions"][d]["dh_all"], m["directions"][d]["dh_all"],
                                           rtol=1e-9)
    assert two.stderr.count("checkpoint in") == 1
