"""The shared training loop on a toy task: schedule, clipping, evaluation, best parameters,
stops (time, patience, divergence, interrupts), callbacks and exact resume."""
import math
import os
import shutil
import signal

import numpy as np
import pytest

from rnnkit.nn import Dropout, Linear, Module, MSELoss
from rnnkit.train.checkpoint import load_checkpoint
from rnnkit.train.engine import Callback, TrainingDiverged, fit, resume_settings, schedule
from rnnkit.train.settings import TrainSettings
from rnnkit.train.task import Task


class Net(Module):
    def __init__(self, rng, p=0.2):
        super().__init__()
        self.lin = Linear(4, 1, dtype=np.float64, rng=rng)
        self.drop = Dropout(p, rng=np.random.default_rng(7))

    def forward(self, x):
        return self.lin.forward(self.drop.forward(x))

    def backward(self, dy):
        return self.drop.backward(self.lin.backward(dy))


class Regression(Task):
    """y = x w* + noise; batches are rows drawn from a generator seeded by the step."""

    app = "toy"

    def __init__(self, seed=0, p=0.2, bad_at=None):
        rng = np.random.default_rng(123)
        self.w = rng.standard_normal((4, 1))
        self.x_val = rng.standard_normal((64, 4))
        self.y_val = self.x_val @ self.w
        self.model = Net(np.random.default_rng(seed), p)
        self.loss_fn = MSELoss()
        self.bad_at = bad_at
        self.seen = []

    def batch(self, step):
        rng = np.random.default_rng([5, step])
        x = rng.standard_normal((8, 4))
        return x, x @ self.w + 0.01 * rng.standard_normal((8, 1))

    def loss(self, batch):
        x, y = batch
        self.seen.append(float(x[0, 0]))
        pred = self.model.forward(x)
        if self.bad_at is not None and len(self.seen) == self.bad_at:
            pred = pred * np.nan
        loss = float(self.loss_fn.forward(pred, y))
        self.model.backward(self.loss_fn.backward())
        return loss

    def evaluate(self):
        self.model.eval()
        err = float(np.mean((self.model.forward(self.x_val) - self.y_val) ** 2))
        self.model.clear_caches()
        return {"loss": err}

    def rngs(self):
        return {"dropout": self.model.drop.rng}


def settings(**kw):
    base = dict(steps=60, eval_every=10, warmup=5, lr=0.05, min_lr=0.005, clip=1.0, batch=8,
                dtype="float64")
    return TrainSettings(**{**base, **kw})


def params(run_or_task):
    model = run_or_task.model if hasattr(run_or_task, "model") else run_or_task.task.model
    return model.state_dict()


def assert_same_run(a, b):
    """Parameters and optimizer moments bit for bit."""
    for name, value in a.task.model.state_dict().items():
        np.testing.assert_array_equal(value, b.task.model.state_dict()[name], err_msg=name)
    sa, sb = a.opt.state_dict(), b.opt.state_dict()
    assert sa.keys() == sb.keys()
    for key in sa:
        np.testing.assert_array_equal(sa[key], sb[key], err_msg=key)


def test_training_learns_and_keeps_the_best_parameters(tmp_path):
    task = Regression(p=0.0)
    summary = fit(task, settings(), tmp_path / "run", progress=False)
    run = summary["run"]
    losses = run.history["eval"]["loss"]
    assert summary["stopped"] == "finished" and summary["step"] == 60
    assert losses[-1] < 0.05 * losses[0]
    best = int(np.argmin(losses))
    assert run.best_step == run.history["eval_step"][best] and summary["best"] == losses[best]
    config, arrays, meta = load_checkpoint(tmp_path / "run")
    assert config["app"] == "toy" and config["settings"]["steps"] == 60
    assert meta["step"] == 60 and meta["best"]["loss"] == losses[best]
    for name, value in run.best_params.items():
        np.testing.assert_array_equal(arrays["best"][name], value)
    # the training curve is logged at every interval, not only at evaluations
    assert run.history["train_step"] == list(range(1, 61))


def test_the_learning_rate_follows_warm_up_then_cosine():
    lrs = []

    class Record(Callback):
        def on_step_end(self, run):
            lrs.append(run.lr)

    s = settings(steps=40, warmup=10)
    fit(Regression(), s, callbacks=[Record()], progress=False)
    expect = schedule(s.lr, s.min_lr, s.warmup, s.steps)
    assert lrs == [expect(k) for k in range(40)]
    assert lrs[0] == pytest.approx(s.lr / 10) and lrs[10] == pytest.approx(s.lr)
    assert lrs[-1] < 0.01 * s.lr + s.min_lr


def test_gradients_are_clipped_by_their_global_norm():
    norms = []

    class Record(Callback):
        def on_backward(self, run):
            g = np.sqrt(sum(float(np.sum(gr * gr)) for _, _, gr in run.task.model.named_parameters()))
            norms.append(g)

        def on_step_end(self, run):
            assert run.grad_norm == pytest.approx(norms[-1], rel=1e-12)
            assert run.clipped == (norms[-1] > run.settings.clip)

    fit(Regression(), settings(steps=20, clip=0.05), callbacks=[Record()], progress=False)
    assert max(norms) > 0.05  # the check above saw clipped steps


@pytest.mark.parametrize("stop", ["max-time", "keyboard-in-step", "signal", "until-kill"])
def test_a_stopped_run_resumes_bit_identical(tmp_path, stop):
    full = fit(Regression(), settings(), tmp_path / "full", progress=False)["run"]
    s, task = settings(), Regression()
    clock = iter(range(10_000))  # one "second" per reading: --max-time 25 stops mid-run

    class Stop(Callback):
        def on_backward(self, run):
            if stop == "keyboard-in-step" and run.step == 33:
                raise KeyboardInterrupt  # in the middle of step 34: it must not count

        def on_step_end(self, run):
            if stop == "signal" and run.step == 37:
                os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C: the loop stops after this step

        def on_evaluate(self, run, metrics):
            if stop == "until-kill" and run.step == 30:  # what a kill -9 after step 35 leaves
                shutil.copytree(tmp_path / "part", tmp_path / "killed")

    kwargs = dict(callbacks=[Stop()], progress=False)
    if stop == "max-time":
        kwargs.update(max_time=25, clock=lambda: next(clock))
    folder = tmp_path / "part"
    if stop == "until-kill":  # the checkpoint of step 30 is on disk, the rest is lost
        fit(task, s, folder, **kwargs)
        folder = tmp_path / "killed"
        assert load_checkpoint(folder)[2]["step"] == 30
    else:
        part = fit(task, s, tmp_path / "part", **kwargs)
        assert part["stopped"] == ("max-time" if stop == "max-time" else "interrupted")
        assert 0 < part["step"] < 60
        if stop == "keyboard-in-step":
            assert part["step"] == 33
        ckpt = load_checkpoint(tmp_path / "part")
        assert ckpt[2]["step"] == part["step"]
    resumed_settings, ckpt = resume_settings(folder, "toy", settings(), set(), True, False)
    resumed = fit(Regression(), resumed_settings, folder, checkpoint=ckpt, progress=False)
    assert resumed["stopped"] == "finished" and resumed["step"] == 60
    assert_same_run(full, resumed["run"])


def test_patience_stops_after_evaluations_without_improvement():
    class Worse(Regression):
        def evaluate(self):  # gets better twice, then never again
            k = len(self.seen) // 5
            return {"loss": [3.0, 2.0, 1.0][k - 1] if k <= 3 else 1.5}

    summary = fit(Worse(), settings(steps=500, eval_every=5), patience=4, progress=False)
    assert summary["stopped"] == "early-stopped"
    assert summary["best_step"] == 15 and summary["step"] == 15 + 4 * 5


def test_eval_at_start_can_keep_the_initial_parameters():
    class Initial(Regression):
        def evaluate(self):
            return {"loss": 0.0 if not self.seen else 1.0}

    task = Initial()
    before = task.model.state_dict()
    summary = fit(task, settings(steps=20), eval_at_start=True, progress=False)
    assert summary["best_step"] == 0
    for name, value in before.items():
        np.testing.assert_array_equal(summary["run"].best_params[name], value)


def test_a_higher_is_better_metric_and_its_tie_break():
    class Accuracy(Regression):
        metric, higher_is_better = "accuracy", True
        values = [(0.5, 2.0), (0.9, 1.0), (0.9, 0.5), (0.9, 0.7), (0.8, 0.1)]

        def evaluate(self):
            acc, loss = self.values[len(self.seen) // 10 - 1]
            return {"accuracy": acc, "loss": loss}

    summary = fit(Accuracy(), settings(steps=50, eval_every=10), progress=False)
    assert summary["best_step"] == 30 and summary["best"] == 0.9  # equal accuracy, lower loss


@pytest.mark.parametrize("bad_at", [1, 17])
def test_a_diverged_step_stops_with_a_clear_error_and_keeps_the_checkpoint(tmp_path, bad_at):
    fit(Regression(), settings(steps=10), tmp_path / "run", progress=False)
    before = load_checkpoint(tmp_path / "run")
    with pytest.raises(TrainingDiverged, match=rf"training diverged at step {bad_at}: loss nan"):
        fit(Regression(bad_at=bad_at), settings(steps=30), tmp_path / "run", progress=False)
    after = load_checkpoint(tmp_path / "run")  # complete and readable
    assert after[2]["step"] == 10  # the last good checkpoint: of the first run, or step 10 of this
    if bad_at == 1:
        for name in before[1]["params"]:
            np.testing.assert_array_equal(before[1]["params"][name], after[1]["params"][name])
    else:
        assert after[0]["settings"]["steps"] == 30


def test_an_exploding_loss_stops_after_the_warm_up():
    class Explodes(Regression):
        explode = 1e-6  # every loss is above this

    with pytest.raises(TrainingDiverged, match="training exploded at step 6"):
        fit(Explodes(), settings(warmup=5), progress=False)


class Ticks(Callback):
    """A clock that advances 1/64 s (exact in binary) at the end of every step."""

    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now

    def on_step_end(self, run):
        self.now += 1 / 64


def test_fit_to_time_sets_the_schedule_from_the_measured_speed(tmp_path):
    clock = Ticks()
    summary = fit(Regression(), settings(steps=1000), tmp_path / "run", max_time=4.0,
                  fit_to_time=True, clock=clock, callbacks=[clock], progress=False)
    # step 40 reads the clock before its tick: 1/64 s per step, 4 - 39/64 s left,
    # 40 + int(0.95 * (4 - 39/64) * 64) = 246 steps
    assert summary["steps"] == 246 and summary["stopped"] == "finished"
    assert load_checkpoint(tmp_path / "run")[0]["settings"]["steps"] == 246  # saved: resume keeps it
    clock = Ticks()
    capped = fit(Regression(), settings(steps=1000), max_time=4.0, fit_to_time=True, max_steps=100,
                 clock=clock, callbacks=[clock], progress=False)
    assert capped["steps"] == 100


def test_callbacks_see_every_step_and_evaluation_in_order():
    events = []

    class Log(Callback):
        def on_fit_start(self, run):
            events.append(("start", run.step))

        def on_backward(self, run):
            events.append(("backward", run.step))

        def on_step_end(self, run):
            events.append(("step", run.step))

        def on_evaluate(self, run, metrics):
            events.append(("eval", run.step))

        def on_fit_end(self, run):
            events.append(("end", run.step))

    fit(Regression(), settings(steps=4, eval_every=2), callbacks=[Log()], progress=False)
    assert events == [("start", 0), ("backward", 0), ("step", 1), ("backward", 1), ("step", 2),
                      ("eval", 2), ("backward", 2), ("step", 3), ("backward", 3), ("step", 4),
                      ("eval", 4), ("end", 4)]


def test_resume_refuses_changed_settings_and_missing_checkpoints(tmp_path):
    fit(Regression(), settings(steps=5), tmp_path / "run", progress=False)
    with pytest.raises(ValueError, match=r"--resume: --lr 0.1 differs from the checkpoint's 0.05"):
        resume_settings(tmp_path / "run", "toy", settings(lr=0.1), {"lr"}, True, False)
    s, _ = resume_settings(tmp_path / "run", "toy", settings(steps=99, eval_every=3),
                           {"steps", "eval_every"}, True, False)
    assert (s.steps, s.eval_every, s.lr) == (99, 3, 0.05)
    with pytest.raises(ValueError, match="holds no checkpoint"):
        resume_settings(tmp_path / "empty", "toy", settings(), set(), True, False)
    with pytest.raises(ValueError, match="already holds a checkpoint"):
        resume_settings(tmp_path / "run", "toy", settings(), set(), False, False)
    with pytest.raises(ValueError, match="checkpoint of 'toy', not of 'lm'"):
        resume_settings(tmp_path / "run", "lm", settings(), set(), True, False)
