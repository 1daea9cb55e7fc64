"""The classify app: gradients, padding invariance, masked attention, learning, metrics, resume,
ONNX, and the command line's outputs and errors."""
import json
import warnings

import numpy as np
import pytest

import rnnkit
from rnnkit.apps.classify.metrics import scores
from rnnkit.apps.classify.model import POOLS, Ensemble, NetConfig, Pool, SequenceNet
from rnnkit.apps.classify.train import ClassifySettings, ClassifyTask, class_weights, load_model
from rnnkit.apps.classify.tsfile import format_ts
from rnnkit.cli import main
from rnnkit.nn import no_grad
from rnnkit.train.engine import fit

TINY = dict(hidden=8, batch=8, steps=40, warmup=5, eval_every=20, ensemble=2, dropout=0.1)


def net(rng, pool="attention", cell="gru", tokens=False, bidirectional=True, layers=2,
        dtype="float64", embed=3):
    cfg = NetConfig(input_size=9 if tokens else 4, classes=3, tokens=tokens, embed=embed,
                    cell=cell, hidden=5, layers=layers, bidirectional=bidirectional, pool=pool,
                    attn=6, dropout=0.0, dtype=dtype)
    return SequenceNet(cfg, rng)


@pytest.mark.parametrize("pool", POOLS)
@pytest.mark.parametrize("directions", [1, 2])
def test_pooling_gradients(rng, pool, directions):
    p = Pool(pool, 6, directions, 5, dtype=np.float64, rng=rng)
    y = rng.standard_normal((4, 7, 6))
    rnnkit.gradcheck(p, (y,), {"lengths": np.array([7, 3, 1, 5])})


@pytest.mark.parametrize("pool", POOLS)
@pytest.mark.parametrize("cell, tokens, bidirectional", [
    ("gru", False, True), ("lstm", True, True), ("rnn", False, False), ("lstm", False, False)])
def test_whole_network_gradients(rng, pool, cell, tokens, bidirectional):
    m = net(rng, pool, cell, tokens, bidirectional)
    x = rng.integers(0, 9, (3, 6)) if tokens else rng.standard_normal((3, 6, 4))
    rnnkit.gradcheck(m, (x,), {"lengths": np.array([6, 2, 4])}, wrt=[] if tokens else None)


@pytest.mark.parametrize("pool", POOLS)
@pytest.mark.parametrize("tokens", [False, True])
def test_a_padded_batch_gives_each_sequence_what_it_gets_alone(rng, pool, tokens):
    m = net(rng, pool, "lstm", tokens).eval()
    lengths = np.array([9, 1, 5, 9, 3])
    x = rng.integers(1, 9, (5, 9)) if tokens else rng.standard_normal((5, 9, 4))
    x[np.arange(9)[None, :] >= lengths[:, None]] = 0
    with no_grad():
        batch = m.forward(x, lengths)
        for n, L in enumerate(lengths):
            alone = m.forward(x[n : n + 1, :L], np.array([L]))
            np.testing.assert_allclose(batch[n], alone[0], rtol=1e-12, atol=1e-14)
        # whatever sits in the padding changes nothing
        noisy = x.copy()
        pad = np.arange(9)[None, :] >= lengths[:, None]
        noisy[pad] = rng.integers(1, 9, pad.sum()) if tokens else 1e3
        np.testing.assert_array_equal(m.forward(noisy, lengths), batch)


def test_masked_attention_puts_exactly_zero_weight_on_padding(rng):
    p = Pool("attention", 4, 2, 3, dtype=np.float32, rng=rng)
    lengths = np.array([6, 1, 3])
    y = rng.standard_normal((3, 6, 4)).astype(np.float32) * 30  # large scores, large exps
    p.forward(y, lengths)
    pad = np.arange(6)[None, :] >= lengths[:, None]
    assert np.all(p.weights[pad] == 0.0) and np.all(p.weights[~pad] > 0)
    np.testing.assert_allclose(p.weights.sum(axis=1), 1, rtol=1e-6)
    assert p.weights[1, 0] == 1.0
    dy = p.backward(np.ones((3, 4), np.float32))
    assert np.all(dy[pad] == 0.0)  # and no gradient reaches the padding


def test_last_pooling_reads_each_direction_after_the_whole_sequence(rng):
    y = rng.standard_normal((2, 5, 6))
    got = Pool("last", 6, 2).forward(y, np.array([5, 2]))
    np.testing.assert_array_equal(got[1, :3], y[1, 1, :3])  # forward half at L-1
    np.testing.assert_array_equal(got[1, 3:], y[1, 0, 3:])  # reverse half at t = 0
    mean = Pool("mean", 6).forward(y, np.array([5, 2]))
    np.testing.assert_allclose(mean[1], y[1, :2].mean(axis=0), rtol=1e-14)
    mx = Pool("max", 6).forward(y, np.array([5, 2]))
    np.testing.assert_array_equal(mx[1], y[1, :2].max(axis=0))


def separable(rng, n, lengths=(5, 30)):
    """Two classes told apart by the sign of channel 0's mean (a linear rule), + noise channel."""
    series, labels = [], []
    for k in range(n):
        T = int(rng.integers(*lengths))
        sign = 1 if k % 2 else -1
        x = np.stack([sign * rng.uniform(0.5, 1.5) + 0.3 * rng.standard_normal(T),
                      rng.standard_normal(T)], axis=1)
        series.append(np.round(x, 5))
        labels.append("pos" if sign > 0 else "neg")
    return series, labels


def test_a_linearly_separable_set_reaches_100_percent(tmp_path, rng):
    train = tmp_path / "train.ts"
    train.write_text(format_ts(*separable(rng, 60), "sep"))
    test = tmp_path / "test.ts"
    test.write_text(format_ts(*separable(rng, 100), "sep"))
    s = ClassifySettings(**{**TINY, "steps": 150, "pool": "mean"})
    task = ClassifyTask(s, train)
    fit(task, s, tmp_path / "run", progress=False)
    clf = load_model(tmp_path / "run")
    assert clf.evaluate(train)["accuracy"] == 1.0
    r = clf.evaluate(test)
    assert r["accuracy"] == 1.0 and r["confusion"] == [[50, 0], [0, 50]]
    assert r["log_loss"] < 0.1


def test_metrics_by_hand():
    probs = np.array([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.6, 0.3, 0.1], [0.2, 0.2, 0.6],
                      [0.5, 0.4, 0.1]])
    y = np.array([0, 1, 1, 2, 0])
    r = scores(y, probs, ["a", "b", "c"])
    assert r["confusion"] == [[2, 0, 0], [1, 1, 0], [0, 0, 1]] and r["n"] == 5
    assert r["accuracy"] == pytest.approx(4 / 5)
    assert r["balanced_accuracy"] == pytest.approx((1 + 0.5 + 1) / 3)
    f1_a = 2 * (2 / 3) * 1 / (2 / 3 + 1)
    f1_b = 2 * 1 * 0.5 / 1.5
    assert r["macro_f1"] == pytest.approx((f1_a + f1_b + 1) / 3)
    assert r["log_loss"] == pytest.approx(-np.log([0.7, 0.8, 0.3, 0.6, 0.5]).mean())
    assert r["per_class"]["b"] == {"precision": 1.0, "recall": 0.5, "f1": pytest.approx(f1_b),
                                   "support": 2}


def test_balance_weights_the_loss_by_inverse_class_frequency():
    w = class_weights(np.array([0, 0, 0, 1]), 2)
    np.testing.assert_allclose(w, [4 / 6, 4 / 2])
    # the weighted mean is torch's: sum w_y loss / sum w_y
    ce = rnnkit.CrossEntropyLoss()
    logits = np.array([[2.0, 0.0], [0.0, 1.0], [1.0, 1.0], [0.5, 0.0]])
    y = np.array([0, 0, 0, 1])
    per = -np.log(np.exp(logits[np.arange(4), y]) / np.exp(logits).sum(axis=1))
    got = ce.forward(logits, y, w[y])
    assert got == pytest.approx((w[y] * per).sum() / w[y].sum())


def test_balanced_task_weights_its_loss_and_picks_by_balanced_accuracy(tmp_path, rng):
    series, labels = separable(rng, 40)
    labels = ["pos" if k < 8 else "neg" for k in range(40)]  # 8 against 32
    path = tmp_path / "imb.ts"
    path.write_text(format_ts(series, labels, "imb"))
    task = ClassifyTask(ClassifySettings(**{**TINY, "balance": True, "val_fraction": 0.25}), path)
    assert task.metric == "balanced_accuracy" and task.higher_is_better
    assert np.bincount(task.val_y).tolist() == [8, 2]  # stratified: 25% of each class
    np.testing.assert_allclose(task.weights, [30 / (2 * 24), 30 / (2 * 6)], rtol=1e-6)
    members, totals = task.batch(0)
    x, lengths, y = members[0]
    assert totals[0] == pytest.approx(task.weights[y].sum())
    task.model.eval()  # no dropout: the same logits twice
    logits = task.model.members[0].forward(x, lengths).astype(np.float64)
    task.model.zero_grad()
    per = np.log(np.exp(logits).sum(axis=1)) - logits[np.arange(len(y)), y]
    w = task.weights[y]
    want = (w * per).sum() / w.sum()
    one = ClassifyTask(ClassifySettings(**{**TINY, "balance": True, "val_fraction": 0.25,
                                           "ensemble": 1}), path)
    one.model.eval()
    assert one.loss(one.batch(0)) == pytest.approx(want, rel=1e-5)


@pytest.mark.parametrize("balance", [False, True])
def test_shards_add_up_to_the_whole_batch(tmp_path, rng, balance):
    """Data parallelism: the shards' losses and gradients sum to the whole batch's."""
    series, labels = separable(rng, 37)
    path = tmp_path / "d.ts"
    path.write_text(format_ts(series, labels, "sh"))
    s = ClassifySettings(**{**TINY, "dtype": "float64", "dropout": 0.0, "balance": balance,
                            "batch": 16})
    task = ClassifyTask(s, path)
    batch = task.batch(2)  # an epoch's last, smaller batch for some member
    whole = task.loss(batch)
    want = {n: g.copy() for n, _, g in task.model.named_parameters()}
    task.model.zero_grad()
    K = 3
    parts = [task.shard(batch, r, K) for r in range(K)]
    assert all(task.weight(p) == 1.0 for p in parts) and task.weight(batch) == 1.0
    total = sum(task.loss(p) for p in parts)
    assert total == pytest.approx(whole, rel=1e-12)
    for n, _, g in task.model.named_parameters():
        np.testing.assert_allclose(g, want[n], rtol=1e-10, atol=1e-14, err_msg=n)


def run_cli(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def charts(tmp_path, capsys):
    code, _, _ = run_cli(capsys, "classify", "make-data", "--out", str(tmp_path / "data"),
                         "--per-class", "8", "--seed", "5")
    assert code == 0
    return tmp_path / "data"


def test_resume_after_max_time_is_exact(tmp_path, charts, capsys):
    args = ["classify", "train", "--data", str(charts / "train.ts"), "--hidden", "6",
            "--batch", "8", "--warmup", "3", "--eval-every", "7", "--ensemble", "2",
            "--dropout", "0.2", "--quiet", "--steps", "30", "--crop", "0.7", "--stretch", "0.2",
            "--jitter", "0.05", "--magnitude", "0.1"]
    assert run_cli(capsys, *args, "--out", str(tmp_path / "whole"))[0] == 0
    code, _, err = run_cli(capsys, *args, "--out", str(tmp_path / "cut"), "--max-time", "1e-6")
    assert code == 0 and "--max-time reached" in err and "step 1 of 30" in err
    assert run_cli(capsys, *args, "--out", str(tmp_path / "cut"), "--resume")[0] == 0
    from rnnkit.train.checkpoint import load_checkpoint
    _, whole, meta_w = load_checkpoint(tmp_path / "whole")
    _, cut, meta_c = load_checkpoint(tmp_path / "cut")
    for group in ("params", "best", "optim"):
        assert whole[group].keys() == cut[group].keys()
        for name in whole[group]:
            np.testing.assert_array_equal(whole[group][name], cut[group][name], err_msg=name)
    assert meta_w["step"] == meta_c["step"] == 30 and meta_w["rngs"] == meta_c["rngs"]


@pytest.mark.parametrize("pool", POOLS)
def test_onnx_equals_rnnkit(tmp_path, rng, pool):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    from rnnkit.interop.onnx import export
    series, labels = separable(rng, 30, (3, 40))
    path = tmp_path / "d.ts"
    path.write_text(format_ts(series, labels, "o"))
    s = ClassifySettings(**{**TINY, "steps": 5, "pool": pool, "stack": 3, "embed": 4,
                            "cell": "lstm" if pool == "max" else "gru", "layers": 2})
    fit(ClassifyTask(s, path), s, tmp_path / "run", progress=False)
    clf = rnnkit.load(tmp_path / "run")
    export(clf, tmp_path / "m.onnx")
    feeds = clf.onnx_inputs(path)
    got = ort.InferenceSession(str(tmp_path / "m.onnx")).run(None, feeds)[0]
    _, want = clf.predict(path)
    assert got.shape == want.shape == (30, 2)
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_onnx_text_classifier(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    path = tmp_path / "t.jsonl"
    path.write_text("".join(json.dumps({"text": t, "label": lab}) + "\n" for t, lab in [
        ("hello there", "en"), ("guten tag", "de"), ("good day", "en"), ("hallo du", "de")] * 3))
    s = ClassifySettings(**{**TINY, "steps": 5, "val_fraction": 0.0, "embed": 5})
    fit(ClassifyTask(s, path), s, tmp_path / "run", progress=False)
    clf = rnnkit.load(tmp_path / "run")
    rnnkit.interop.onnx.export(clf, tmp_path / "t.onnx")
    new = tmp_path / "new.jsonl"
    new.write_text('{"text": "hi zebra"}\n{"text": "x"}\n')
    got = ort.InferenceSession(str(tmp_path / "t.onnx")).run(None, clf.onnx_inputs(new))[0]
    np.testing.assert_allclose(got, clf.predict(new)[1], atol=1e-5)


def test_cli_train_eval_predict(tmp_path, charts, capsys):
    out = tmp_path / "run"
    code, _, err = run_cli(capsys, "classify", "train", "--data", str(charts / "train.ts"),
                           "--test", str(charts / "test.ts"), "--out", str(out), "--hidden", "8",
                           "--steps", "30", "--ensemble", "2", "--quiet")
    assert code == 0 and "test test.ts: accuracy" in err
    code, out_json, _ = run_cli(capsys, "classify", "eval", "--model", str(out), "--data",
                                str(charts / "test.ts"), "--json")
    r = json.loads(out_json)
    assert set(r) == {"accuracy", "balanced_accuracy", "macro_f1", "log_loss", "per_class",
                      "confusion", "n"}
    assert r["n"] == 48 and np.sum(r["confusion"]) == 48
    assert f"accuracy {r['accuracy']:.4f}" in err
    clf = rnnkit.load(out)
    assert type(clf).__name__ == "Classifier"
    labels, probs = clf.predict(charts / "test.ts")
    assert r["accuracy"] == pytest.approx(np.mean(np.array(labels) == np.array(
        clf.read(charts / "test.ts").labels)))
    code, csv_out, _ = run_cli(capsys, "classify", "predict", "--model", str(out), "--data",
                               str(charts / "test.ts"))
    rows = csv_out.strip().split("\n")
    assert rows[0] == "id,label," + ",".join(f"p_{c}" for c in clf.classes)
    assert len(rows) == 49 and rows[1].split(",")[1] == labels[0]
    np.testing.assert_allclose([float(v) for v in rows[1].split(",")[2:]], probs[0], rtol=1e-5)
    code, _, _ = run_cli(capsys, "classify", "predict", "--model", str(out), "--data",
                         str(charts / "test.ts"), "--out", str(tmp_path / "p.jsonl"))
    first = json.loads((tmp_path / "p.jsonl").read_text().split("\n")[0])
    assert first["label"] == labels[0] and sum(first["probabilities"].values()) == pytest.approx(1)


def test_cli_bad_input_is_one_line_and_writes_nothing(tmp_path, charts, capsys):
    bad = tmp_path / "bad.ts"
    bad.write_text("@problemName p\n@classLabel true a b\n@data\n1,2:a\n1,2:c\n")
    code, out, err = run_cli(capsys, "classify", "train", "--data", str(bad), "--out",
                             str(tmp_path / "run"), "--steps", "5")
    assert code == 1 and err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("rnnkit: error: ") and "bad.ts, line 5: class label 'c'" in err
    assert not (tmp_path / "run").exists()
    # a bad --test file is refused before anything trains
    code, _, err = run_cli(capsys, "classify", "train", "--data", str(charts / "train.ts"),
                           "--test", str(bad), "--out", str(tmp_path / "run"), "--steps", "5")
    assert code == 1 and "line 5" in err and not (tmp_path / "run").exists()
    unseen = tmp_path / "unseen.ts"
    unseen.write_text(format_ts([np.ones((5, 1))], ["square"], "u"))
    code, _, err = run_cli(capsys, "classify", "train", "--data", str(charts / "train.ts"),
                           "--test", str(unseen), "--out", str(tmp_path / "run"), "--steps", "5")
    assert code == 1 and "label 'square' is not one of the model's classes" in err
    assert not (tmp_path / "run").exists()
    run_cli(capsys, "classify", "train", "--data", str(charts / "train.ts"), "--out",
            str(tmp_path / "ok"), "--steps", "3", "--hidden", "4", "--ensemble", "1", "--quiet")
    for argv, match in [
        (["predict", "--data", str(bad), "--out", str(tmp_path / "p.csv")], "line 5"),
        (["predict", "--data", str(charts / "test.ts"), "--out", str(tmp_path / "p.txt")],
         "give a .csv or .jsonl"),
        (["eval", "--data", str(tmp_path / "none.ts")], "no such file"),
        (["eval", "--data", str(charts / "test.ts"), "--plot", str(tmp_path / "no" / "x.png")],
         "does not exist"),
    ]:
        code, out, err = run_cli(capsys, "classify", argv[0], "--model", str(tmp_path / "ok"),
                                 *argv[1:])
        assert code == 1 and err.count("\n") == 1 and match in err and out == ""
    assert not (tmp_path / "p.csv").exists() and not (tmp_path / "p.txt").exists()
    other = tmp_path / "three.ts"
    other.write_text(format_ts([np.ones((4, 3))], ["cyclic"], "x"))
    code, _, err = run_cli(capsys, "classify", "eval", "--model", str(tmp_path / "ok"),
                           "--data", str(other))
    assert code == 1 and "3 channels, the model takes 1" in err


def test_ensemble_probabilities_are_the_members_mean(rng):
    cfg = NetConfig(input_size=2, classes=3, tokens=False, embed=0, cell="gru", hidden=4,
                    layers=1, bidirectional=True, pool="mean", attn=4, dropout=0.0,
                    dtype="float64")
    ens = Ensemble(cfg, 3, seed=7).eval()
    x, lengths = rng.standard_normal((2, 5, 2)), np.array([5, 3])
    with no_grad():
        want = np.mean([np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
                        for z in (m.forward(x, lengths) for m in ens.members)], axis=0)
        np.testing.assert_allclose(ens.probs(x, lengths), want, rtol=1e-12)
    assert len({m.head.params["weight"].tobytes() for m in ens.members}) == 3


def test_text_vocabulary_from_training_and_unknown_symbols_counted(tmp_path):
    train = tmp_path / "train.jsonl"
    train.write_text("".join(json.dumps({"text": t, "label": lab}) + "\n" for t, lab in [
        ("aab", "x"), ("bba", "y"), ("cab", "x"), ("abc", "y")]))
    s = ClassifySettings(**{**TINY, "steps": 3})
    task = ClassifyTask(s, train)
    assert task.inputs.vocab.tokens == ["<unk>", "a", "b", "c"]
    fit(task, s, tmp_path / "run", progress=False)
    test = tmp_path / "test.jsonl"
    test.write_text('{"text": "abz", "label": "x"}\n{"text": "zzé", "label": "y"}\n')
    r = load_model(tmp_path / "run").evaluate(test)
    assert r["unknown_symbols"] == 4 and r["symbols"] == 6 and r["n"] == 2
    words = ClassifyTask(ClassifySettings(**{**TINY, "tokens": "word"}), train)
    assert words.inputs.token_ids("aab  cab zz").tolist() == [
        words.inputs.vocab.index("aab"), words.inputs.vocab.index("cab"), 0]


def test_csv_reading_flags_are_saved_with_the_model(tmp_path, rng, capsys):
    lines = ["seq,step,label,a,b"]
    for k in range(24):
        sign = 1 if k % 2 else -1
        for t in rng.permutation(6):  # rows out of order: --time-col sorts them
            lines.append(f"s{k},{t},{'up' if sign > 0 else 'down'},{sign + 0.1 * rng.standard_normal():.4f},"
                         f"{rng.standard_normal():.4f}")
    path = tmp_path / "d.csv"
    path.write_text("\n".join(lines) + "\n")
    code, _, err = run_cli(capsys, "classify", "train", "--data", str(path), "--out",
                           str(tmp_path / "run"), "--id-col", "seq", "--time-col", "step",
                           "--label-col", "label", "--steps", "60", "--hidden", "8",
                           "--ensemble", "1", "--quiet")
    assert code == 0 and "2 channels" in err
    code, out, _ = run_cli(capsys, "classify", "eval", "--model", str(tmp_path / "run"),
                           "--data", str(path), "--json", "--plot", str(tmp_path / "e.png"))
    r = json.loads(out)
    assert code == 0 and r["n"] == 24 and r["accuracy"] == 1.0
    assert (tmp_path / "e.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_audio_sequences_through_log_mel_features(tmp_path):
    from rnnkit.data.audio import write_wav
    rng = np.random.default_rng(3)
    records = []
    for k in range(16):
        f = 300 if k % 2 else 2000
        t = np.arange(int(16000 * rng.uniform(0.2, 0.4))) / 16000
        write_wav(tmp_path / f"{k}.wav", 0.4 * np.sin(2 * np.pi * f * t)
                  + 0.01 * rng.standard_normal(len(t)), 16000)
        records.append({"audio": f"{k}.wav", "label": "low" if f < 1000 else "high"})
    path = tmp_path / "a.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    s = ClassifySettings(**{**TINY, "steps": 40, "ensemble": 1})
    task = ClassifyTask(s, path)
    assert task.inputs.kind == "audio" and task.inputs.channels == 120
    fit(task, s, tmp_path / "run", progress=False)
    clf = rnnkit.load(tmp_path / "run")
    labels, probs = clf.predict(path)
    assert labels == [r["label"] for r in records] and probs.shape == (16, 2)
