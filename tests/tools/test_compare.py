"""rnnkit compare: equal sizes, the range test's rate, successive halving within the budget,
crashes reported, the winner a normal run.  The race logic runs on a toy task with a fake clock
(compare_toy), so step counts and budgets are exact; the Ray test is in test_compare_ray.py."""
import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest

import compare_toy as toy
from rnnkit.apps.lm.commands import TASK as LM
from rnnkit.cli import build_parser, main
from rnnkit.nn import LSTM, LSTMCell
from rnnkit.tools import compare
from rnnkit.tools.compare_exec import Serial
from rnnkit.tools.compare_race import best_until, suggest_lr
from rnnkit.tools.compare_trial import forget_bias, run_job
from rnnkit.train.checkpoint import load_checkpoint
from rnnkit.train import engine
from rnnkit.train.engine import fit

SERIES = Path(__file__).resolve().parents[2] / "rnnkit" / "data" / "series"


@pytest.fixture
def text_file(tmp_path):
    rng = np.random.default_rng(0)
    words = ["the ", "cat ", "sat ", "on ", "a ", "mat. ", "dog ", "ran!\n"]
    path = tmp_path / "corpus.txt"
    path.write_text("".join(rng.choice(words, 900)), encoding="utf-8")
    return path


@pytest.fixture
def toy_app(monkeypatch):
    monkeypatch.setitem(compare.APPS, "toy", "compare_toy:TASK")
    # the toy's trials run in this process: drawing each checkpoint's loss.png would take
    # most of their time
    monkeypatch.setattr(engine, "plot_history", lambda *a, **k: False)
    toy.CLOCK.now = 1000.0
    toy.STEPS.clear()


def parse(*argv):
    return build_parser().parse_args(["compare", *map(str, argv)])


# ----------------------------------------------------------------------------- sizes
@pytest.mark.parametrize("layers", [1, 2])
def test_every_cell_is_sized_within_5_percent_of_the_target(tmp_path, text_file, layers):
    for target in (3_000, 12_000, 50_000):
        args = parse("lm", "--text", text_file, "--params", target, "--layers", layers,
                     "--embed", 8, "--out", tmp_path / "c")
        base = compare.from_options(LM.settings, args)
        hidden, got = compare._sizes(LM, base, args, ["rnn", "gru", "lstm"], lambda m: None)
        assert got == target
        for cell, h in hidden.items():
            def built(hh):
                s = compare.dataclasses.replace(base, cell=cell, hidden=hh)
                return LM.make_task(s, args).model.num_parameters()
            n = built(h)
            assert abs(n - target) <= 0.05 * target, (cell, h, n, target)
            # the nearest size: one unit more or less is not closer
            assert abs(n - target) <= min(abs(built(h - 1) - target), abs(built(h + 1) - target))
        # equal parameters, different hidden sizes: the LSTM's four gates make it narrowest
        assert hidden["lstm"] < hidden["gru"] < hidden["rnn"]


def test_forecast_networks_are_sized_too(tmp_path):
    args = parse("forecast", "--csv", SERIES / "sunspots.csv", "--target", "sunspots",
                 "--horizon", 11, "--params", 4000, "--out", tmp_path / "c")
    spec = compare.resolve(compare.APPS["forecast"])
    base = compare.from_options(spec.settings, args)
    hidden, _ = compare._sizes(spec, base, args, ["rnn", "gru", "lstm"], lambda m: None)
    for cell, h in hidden.items():
        s = compare.dataclasses.replace(base, cell=cell, hidden=h)
        assert abs(spec.make_task(s, args).model.num_parameters() - 4000) <= 200


def test_a_target_no_size_can_reach_is_refused(tmp_path, text_file):
    args = parse("lm", "--text", text_file, "--params", 50, "--out", tmp_path / "c")
    base = compare.from_options(LM.settings, args)
    with pytest.raises(ValueError, match="--params 50: the nearest rnn"):
        compare._sizes(LM, base, args, ["rnn"], lambda m: None)


# ----------------------------------------------------------------------------- rates
def _final_loss(lr: float, seed: int) -> float:
    s = toy.ToySettings(lr=lr, min_lr=lr, steps=100, eval_every=100, seed=seed)
    return fit(toy.ToyTask(s), s, None, progress=False)["last"]["loss"]


def test_the_range_test_finds_a_rate_in_the_good_interval(toy_app):
    grid = np.logspace(-4, 0.5, 19)
    final = np.array([np.mean([_final_loss(float(lr), seed) for seed in (0, 1)]) for lr in grid])
    good = grid[final <= 3 * final.min()]  # rates that train about as well as the best
    assert len(good) >= 2 and good.min() > 1e-3 and good.max() < 1.0  # a real interval
    for seed in range(4):
        s = toy.ToySettings(cell="gru", lr=1e-5, min_lr=0.0, steps=100, eval_every=100,
                            seed=seed)
        job = {"kind": "range", "spec": "compare_toy:TASK", "args": {"crash_cell": None},
               "settings": compare.dataclasses.asdict(s), "lo": 1e-5, "hi": 30.0}
        res = run_job(job, toy.CLOCK)
        assert res["status"] == "ok" and len(res["lrs"]) < 100  # stopped once it diverged
        lr = suggest_lr(res["lrs"], res["losses"])["lr"]
        assert good.min() <= lr <= good.max(), (seed, lr, good)


# ----------------------------------------------------------------------------- the race
class Recording(Serial):
    """The serial executor, keeping every job it ran."""

    def __init__(self, clock):
        super().__init__(clock)
        self.jobs = []

    def run(self, jobs, done=None):
        self.jobs += jobs
        return super().run(jobs, done)


def _race(tmp_path, *extra, budget=100_000):
    args = parse("toy", "--cells", "rnn,gru,lstm", "--seeds", 2, "--range-steps", 10, "--hidden", 4,
                 "--budget", budget, "--out", tmp_path / "c", "--quiet", *extra)
    ex = Recording(toy.CLOCK)
    start = toy.CLOCK.now
    return compare.compare(args, executor=ex, clock=toy.CLOCK), ex, start


def test_successive_halving_never_trains_a_stopped_candidate_again(tmp_path, toy_app):
    result, ex, _ = _race(tmp_path, "--rung-steps", 4)
    race = result["race"]
    assert race.plan.rungs == [(9, 4), (4, 8), (2, 16), (1, 32)]
    trials = [j for j in ex.jobs if j["kind"] == "trial"]
    by_rung = {}
    for j in trials:
        s = j["settings"]
        by_rung.setdefault(s["steps"], []).append((s["cell"], s["lr"], s["seed"], j["files"]))
    steps = [st for _, st in race.plan.rungs]
    assert sorted(by_rung) == steps
    previous = None
    for r, st in enumerate(steps):
        configs = {(c, lr) for c, lr, _, _ in by_rung[st]}
        assert len(by_rung[st]) == 2 * len(configs) == 2 * race.plan.rungs[r][0]
        if previous is not None:
            # exactly the best half of the previous rung by mean metric, continued from its
            # checkpoint at the previous rung's last step
            def mean(c, lr):
                return np.mean([best_until(race.trials[f"{c}-h4-lr{lr:.2g}-s{seed}"]["evals"],
                                           steps[r - 1], False) for seed in (0, 1)])
            ranked = sorted(previous, key=lambda k: mean(*k))
            assert configs == set(ranked[: len(configs)])
            for c, lr, seed, files in by_rung[st]:
                folder = tmp_path / "ck" / f"{c}{lr}{seed}{st}"
                folder.mkdir(parents=True)
                for name, data in files.items():
                    (folder / name).write_bytes(data)
                assert load_checkpoint(folder)[2]["step"] == steps[r - 1]
        else:
            assert all(files is None for *_, files in by_rung[st])
        previous = configs
    # a stopped configuration never trains again: every trial took exactly the steps of the
    # last rung it was in, no more (the toy counts its training steps)
    for tid, t in race.trials.items():
        cell, lr, seed = t["config"].split("-")[0], float(t["config"].split("lr")[1]), t["seed"]
        assert toy.STEPS[(cell, lr, seed)] == steps[t["rungs"][-1]] == t["step"], tid
        assert t["rungs"] == list(range(len(t["rungs"])))
    assert result["winner"]["config"] == next(c.name for c in race.configs
                                              if len(c.rungs) == len(steps))


def test_a_continued_rung_ends_exactly_as_a_straight_run(tmp_path, text_file):
    s = compare.dataclasses.replace(LM.settings(), cell="lstm", hidden=12, layers=1, embed=8,
                                    batch=4, seq_len=10, warmup=3, eval_every=4, steps=4,
                                    dropout=0.1, lr=3e-3, min_lr=3e-4)
    job = {"kind": "trial", "spec": "rnnkit.apps.lm.commands:TASK",
           "args": {"text": [str(text_file)]}, "total": 8, "files": None}
    first = run_job({**job, "settings": compare.dataclasses.asdict(s)})
    assert first["status"] == "ok" and first["step"] == 4
    s8 = compare.dataclasses.asdict(compare.dataclasses.replace(s, steps=8))
    continued = run_job({**job, "settings": s8, "files": first["files"]})
    straight = run_job({**job, "settings": s8})
    for res, name in ((continued, "a"), (straight, "b")):
        for f, data in res["files"].items():
            (tmp_path / name).mkdir(exist_ok=True)
            (tmp_path / name / f).write_bytes(data)
    a, b = load_checkpoint(tmp_path / "a")[1], load_checkpoint(tmp_path / "b")[1]
    for group in ("params", "optim"):
        for k in a[group]:
            assert np.array_equal(a[group][k], b[group][k]), (group, k)
    assert [e[2] for e in continued["evals"]] == [e[2] for e in straight["evals"]][1:]


@pytest.mark.parametrize("rung_steps, budget", [(None, 1000), (10, 300)])
def test_the_budget_is_never_exceeded_by_more_than_one_step(tmp_path, toy_app, rung_steps,
                                                            budget):
    extra = () if rung_steps is None else ("--rung-steps", rung_steps)
    result, ex, start = _race(tmp_path, *extra, budget=budget)
    race = result["race"]
    spent = toy.CLOCK.now - start
    assert spent <= budget + toy.STEP + toy.EVAL
    assert spent > 0.5 * budget  # the plan uses the budget
    statuses = {t["status"] for t in race.trials.values()}
    if rung_steps is None:  # fitted: every rung finished
        assert not race.stopped_by_budget and statuses == {"ok"}
        assert race.completed == len(race.plan.rungs) - 1
    else:  # too many steps: the budget cut rung 1, the winner is rung 0's best
        assert race.stopped_by_budget and race.completed == 0
        assert statuses & {"max-time", "not-run"}
        rung0 = sorted((c for c in race.configs if c.rungs), key=lambda c: c.rungs[0])
        assert result["winner"]["config"] == rung0[0].name
        for j, t in race.trials.items():
            if t["status"] == "not-run":
                assert t["step"] == 10  # trained no step past rung 0


def test_a_crash_and_a_divergence_are_reported_not_fatal(tmp_path, toy_app, capsys):
    out = tmp_path / "c"
    code = main(["compare", "toy", "--crash-cell", "rnn", "--lr", "0.05,1e9", "--seeds", "2",
                 "--hidden", "4",
                 "--range-steps", "10", "--rung-steps", "5", "--workers", "1", "--out",
                 str(out), "--quiet"])
    assert code == 0
    table = capsys.readouterr().out
    doc = json.loads((out / "compare.json").read_text())
    rows = {(r["cell"], r["lr"]): r for r in doc["table"]}
    assert rows[("rnn", None)]["status"] == "range test crashed: a bad setting for rnn"
    for cell in ("gru", "lstm"):
        assert rows[(cell, 1e9)]["status"].startswith("diverged (seed 0): training exploded")
    assert doc["winner"]["lr"] == 0.05 and doc["winner"]["cell"] in ("gru", "lstm")
    assert "range test crashed" in table and "diverged" in table


def test_the_forget_gate_bias_starts_at_one():
    rng = np.random.default_rng(0)
    lstm, cell = LSTM(3, 5, num_layers=2, bidirectional=True, rng=rng), LSTMCell(3, 5, rng=rng)
    before = {k: v.copy() for k, v in lstm.params.items()}
    assert forget_bias(lstm) == 1 and forget_bias(cell) == 1
    for m in (lstm, cell):
        for name, p in m.params.items():
            if name.startswith("bias"):
                assert np.all(p[5:10] == (1.0 if "ih" in name else 0.0))
    for name, p in lstm.params.items():
        keep = np.r_[0:5, 10:20] if name.startswith("bias") else slice(None)
        assert np.array_equal(p[keep], before[name][keep])


# ----------------------------------------------------------------------------- the command
@pytest.mark.parametrize("argv, message", [
    (["--cells", "lstm,foo"], "--cells must list distinct cells"),
    (["--cells", "lstm,lstm"], "--cells must list distinct cells"),
    (["--budget", "0"], "--budget must be a number of seconds > 0"),
    (["--seeds", "0"], "--seeds must be >= 1"),
    (["--lr", "0.1,abc"], "--lr must be comma-separated numbers"),
    (["--lr-range", "1,0.1"], "--lr-range must be LO,HI with LO < HI"),
])
def test_bad_options_are_one_line_errors(tmp_path, text_file, capsys, argv, message):
    code = main(["compare", "lm", "--text", str(text_file), "--out", str(tmp_path / "c"), *argv])
    err = capsys.readouterr().err
    assert code == 1 and err.startswith(f"rnnkit: error: {message}") and err.count("\n") == 1
    assert not (tmp_path / "c").exists()


def test_bad_data_is_a_one_line_error_and_writes_nothing(tmp_path, capsys):
    code = main(["compare", "lm", "--text", str(tmp_path / "missing.txt"), "--out",
                 str(tmp_path / "c")])
    err = capsys.readouterr().err
    assert code == 1 and "missing.txt" in err and err.count("\n") == 1
    assert not (tmp_path / "c").exists()


def test_params_and_hidden_exclude_each_other_and_out_is_not_overwritten(tmp_path, toy_app,
                                                                         capsys):
    with pytest.raises(SystemExit) as e:
        main(["compare", "toy", "--params", "9", "--hidden", "4", "--out", str(tmp_path)])
    assert e.value.code == 2
    (tmp_path / "compare.json").write_text("{}")
    assert main(["compare", "toy", "--out", str(tmp_path)]) == 1
    assert "already holds a comparison" in capsys.readouterr().err


def test_compare_forecast_leaves_a_forecaster_that_predicts(tmp_path, capsys):
    out = tmp_path / "c"
    csv = SERIES / "nile.csv"
    code = main(["compare", "forecast", "--csv", str(csv), "--target", "volume", "--horizon", "5",
                 "--cells", "gru,lstm", "--hidden", "6", "--lrs", "1", "--seeds", "1",
                 "--range-steps", "10", "--rung-steps", "4", "--workers", "1", "--out", str(out),
                 "--quiet"])
    assert code == 0
    doc = json.loads((out / "compare.json").read_text())
    assert doc["metric"] == "mae" and doc["winner"]["cell"] in ("gru", "lstm")
    import rnnkit
    fc = rnnkit.load(out / "winner")
    assert fc.s.cell == doc["winner"]["cell"] and len(fc.nets) == 1
    capsys.readouterr()
    assert main(["forecast", "predict", "--model", str(out / "winner"), "--csv", str(csv),
                 "--json"]) == 0
    pred = json.loads(capsys.readouterr().out)
    assert len(pred["series"][0]["mean"]) == 5 and all(map(math.isfinite,
                                                          pred["series"][0]["mean"]))


def test_ray_is_imported_only_with_the_ray_flag():
    import subprocess
    code = ("import sys; from rnnkit.cli import build_parser; "
            "build_parser().parse_args(['compare', 'lm', '--out', 'x']); "
            "import rnnkit.tools.compare_exec; assert 'ray' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_every_app_tells_tools_how_to_build_its_task(tmp_path):
    import argparse
    for app, path in compare.APPS.items():
        try:
            spec = compare.resolve(path)
        except ModuleNotFoundError:
            continue  # an app still being written
        assert spec.app == app and spec.about
        p = argparse.ArgumentParser()
        spec.data_options(p)  # adds only flags, no settings (the tool adds those)
        names = {a.dest for a in p._actions}
        assert not (names - set(spec.skip)) & {f for f in spec.settings.__dataclass_fields__}
    pairs = tmp_path / "pairs.tsv"
    pairs.write_text("".join(f"{n}\t{'x' * (n % 7 + 1)}\n" for n in range(60)), encoding="utf-8")
    spec = compare.resolve(compare.APPS["translate"])
    s = spec.settings(hidden=8, embed=4)
    task = spec.make_task(s, argparse.Namespace(pairs=str(pairs)))
    assert task.app == "translate" and task.model.num_parameters() > 0


def test_why_names_the_rung_that_decided(tmp_path, toy_app):
    result, _, _ = _race(tmp_path, "--rung-steps", 10, budget=300)  # rung 1 is cut short
    assert result["race"].completed == 0
    assert " at rung 0 (10 steps, 2 seeds)" in result["why"]
    assert "the budget ran out during rung 1, so rung 0 decided" in result["why"]
