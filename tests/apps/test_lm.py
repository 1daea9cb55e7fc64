"""The language-model app: training learns, resume is exact, sampling and evaluation are right."""
import json
import math

import numpy as np
import pytest

from rnnkit.apps.lm.generate import evaluate_text, next_token_distribution, sample
from rnnkit.apps.lm.model import LanguageModel, ModelConfig, stream_nll
from rnnkit.apps.lm.train import Trainer, TrainSettings, load_model
from rnnkit.cli import main
from rnnkit.nn import log_softmax, no_grad

TINY = dict(hidden=24, layers=2, embed=8, batch=4, seq_len=12, warmup=5, eval_every=10,
            val_fraction=0.1, dropout=0.2)


@pytest.fixture
def text_file(tmp_path):
    rng = np.random.default_rng(0)
    words = ["the ", "cat ", "sat ", "on ", "a ", "mat. ", "dog ", "ran!\n", "é ", "日本 "]
    path = tmp_path / "corpus.txt"
    path.write_text("".join(rng.choice(words, 1500)), encoding="utf-8")
    return path


def train(out, text_file, **kw):
    s = TrainSettings(**{**TINY, **kw})
    t = Trainer(s, out, texts=[str(text_file)], progress=False, explicit=set(kw))
    return t, t.run()


def test_training_learns_a_simple_text(tmp_path, text_file):
    t, summary = train(tmp_path / "m", text_file, steps=150, lr=1e-2, dropout=0.0)
    uniform = math.log(len(t.vocab))
    assert summary["best_val"] < 0.6 * uniform  # far better than guessing
    assert t.history["val"][-1] < t.history["val"][0]


def test_resume_ends_with_the_parameters_of_an_uninterrupted_run(tmp_path, text_file):
    # stop after 37 of 60 steps (not a multiple of eval_every, inside an epoch), then resume
    big = dict(batch=8, seq_len=20)
    full, _ = train(tmp_path / "full", text_file, steps=60, **big)
    part = Trainer(TrainSettings(**{**TINY, "steps": 60, **big}), tmp_path / "part",
                   texts=[str(text_file)], progress=False)
    assert part.run(until=37)["stopped"] == "until" and part.step == 37
    assert len(part.batcher) < 37  # the run crossed an epoch boundary (state reset) before stopping
    resumed = Trainer(TrainSettings(**TINY), tmp_path / "part", resume=True, progress=False)
    assert resumed.s.batch == 8  # settings come from the checkpoint
    assert resumed.step == 37
    resumed.run()
    a, b = full.model.state_dict(), resumed.model.state_dict()
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)
    # ...and the optimizer moments, so that training on would stay identical too
    sa, sb = full.opt.state_dict(), resumed.opt.state_dict()
    for key in sa:
        np.testing.assert_array_equal(sa[key], sb[key], err_msg=key)


def test_resume_refuses_changed_model_settings(tmp_path, text_file):
    train(tmp_path / "m", text_file, steps=5)
    with pytest.raises(ValueError, match="--hidden 32 differs from the checkpoint's 24"):
        Trainer(TrainSettings(**{**TINY, "hidden": 32}), tmp_path / "m", resume=True,
                explicit={"hidden"}, progress=False)
    with pytest.raises(ValueError, match="already holds a checkpoint"):
        train(tmp_path / "m", text_file, steps=5)
    again = Trainer(TrainSettings(**{**TINY, "steps": 3}), tmp_path / "m", texts=[str(text_file)],
                    progress=False, overwrite=True)
    again.run()
    assert load_model(tmp_path / "m", "latest")[2].steps == 3


def test_max_time_stops_cleanly_with_a_checkpoint(tmp_path, text_file):
    t, summary = train(tmp_path / "m", text_file, steps=10_000, max_time=0.5)
    assert summary["stopped"] == "max-time" and 0 < t.step < 10_000
    model, vocab, s = load_model(tmp_path / "m", "latest")
    for name, value in model.state_dict().items():
        np.testing.assert_array_equal(value, t.model.state_dict()[name])


def test_stream_nll_equals_one_forward_over_the_whole_text(rng):
    model = LanguageModel(ModelConfig(vocab_size=9, hidden=7, layers=2, embed=5, dropout=0.0,
                                      dtype="float64"), rng)
    ids = rng.integers(1, 9, 57)
    model.eval()
    with no_grad():
        logits, _ = model.forward(ids[None, :-1])
        ref = -np.take_along_axis(log_softmax(logits[0]), ids[1:, None], -1).sum()
        for seq_len in (5, 13, 100):
            total, count = stream_nll(model, ids, seq_len, streams=1)
            assert count == 56
            np.testing.assert_allclose(total, ref, rtol=1e-12)
        # several streams: each starts from a zero state, the tail continues the last stream
        total, count = stream_nll(model, ids, 4, streams=3)
        assert count == 56
        L = 56 // 3
        parts = 0.0
        for s in range(3):
            lg, st = model.forward(ids[None, s * L : s * L + L])
            parts -= np.take_along_axis(log_softmax(lg[0]), ids[s * L + 1 : s * L + L + 1, None], -1).sum()
        lg, _ = model.forward(ids[None, 3 * L : -1], st)
        parts -= np.take_along_axis(log_softmax(lg[0]), ids[3 * L + 1 :, None], -1).sum()
        np.testing.assert_allclose(total, parts, rtol=1e-12)


def test_unknown_symbols_are_counted_not_dropped(tmp_path, text_file):
    t, _ = train(tmp_path / "m", text_file, steps=5)
    model, vocab, _ = load_model(tmp_path / "m")
    known = evaluate_text(model, vocab, "the cat sat", streams=1)
    unknown = evaluate_text(model, vocab, "the c@t sat", streams=1)
    assert known["chars"] == unknown["chars"] == 10
    assert unknown["unknown"] == 1 and known["unknown"] == 0
    assert unknown["nats_per_char"] > known["nats_per_char"]


def test_next_token_distribution_filters():
    logits = np.log(np.array([0.05, 0.5, 0.2, 0.15, 0.1]))  # index 0 is <unk>: never sampled
    p = next_token_distribution(logits, 1.0, None, None)
    np.testing.assert_allclose(p, [0, 0.5 / 0.95, 0.2 / 0.95, 0.15 / 0.95, 0.1 / 0.95])
    np.testing.assert_allclose(next_token_distribution(logits, 1.0, 2, None), [0, 0.5 / 0.7, 0.2 / 0.7, 0, 0])
    # nucleus 0.7 of the renormalised mass: 0.526 + 0.211 = 0.737 >= 0.7 keeps two tokens
    np.testing.assert_allclose(next_token_distribution(logits, 1.0, None, 0.7), [0, 0.5 / 0.7, 0.2 / 0.7, 0, 0])
    np.testing.assert_array_equal(next_token_distribution(logits, 0.0, None, None), [0, 1, 0, 0, 0])
    sharp = next_token_distribution(logits, 0.5, None, None)
    np.testing.assert_allclose(sharp[1:], np.array([0.5, 0.2, 0.15, 0.1]) ** 2 / np.sum(np.array([0.5, 0.2, 0.15, 0.1]) ** 2))


def test_sampling_is_reproducible_and_greedy_is_deterministic(tmp_path, text_file):
    train(tmp_path / "m", text_file, steps=20)
    model, vocab, _ = load_model(tmp_path / "m")
    a = "".join(sample(model, vocab, "the ", 40, 1.0, seed=3))
    b = "".join(sample(model, vocab, "the ", 40, 1.0, seed=3))
    c = "".join(sample(model, vocab, "the ", 40, 1.0, seed=4))
    assert a == b and a != c and len(a) == 40
    g1 = "".join(sample(model, vocab, "the ", 30, 0.0, seed=1))
    g2 = "".join(sample(model, vocab, "the ", 30, 1.0, top_k=1, seed=2))
    assert g1 == g2


def test_cli_train_sample_eval(tmp_path, text_file, capsys):
    out = tmp_path / "cli"
    args = ["lm", "train", "--out", str(out), "--text", str(text_file), "--steps", "12",
            "--hidden", "16", "--layers", "1", "--batch", "4", "--seq-len", "10", "--eval-every", "6", "--quiet"]
    assert main(args) == 0
    assert main(["lm", "sample", "--model", str(out), "--length", "25", "--seed", "1"]) == 0
    first = capsys.readouterr().out
    assert main(["lm", "sample", "--model", str(out), "--length", "25", "--seed", "1"]) == 0
    assert capsys.readouterr().out == first and len(first) == 26
    assert main(["lm", "eval", "--model", str(out), "--text", str(text_file), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert set(result) >= {"nats_per_char", "bits_per_char", "perplexity", "chars"}
    np.testing.assert_allclose(result["bits_per_char"], result["nats_per_char"] / math.log(2))
    np.testing.assert_allclose(result["perplexity"], math.exp(result["nats_per_char"]))
    assert result["chars"] == len(text_file.read_text(encoding="utf-8")) - 1


@pytest.mark.parametrize("content,match", [(b"", "empty"), (b"abc\xff\xfedef", "UTF-8")])
def test_cli_bad_text_is_one_line_and_writes_nothing(tmp_path, capsys, content, match):
    bad = tmp_path / "bad.txt"
    bad.write_bytes(content)
    out = tmp_path / "never"
    assert main(["lm", "train", "--out", str(out), "--text", str(bad), "--steps", "2"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("rnnkit: error:") and match in err and "\n" not in err
    assert not out.exists()


def test_cli_corrupt_checkpoint_and_unknown_flag(tmp_path, text_file, capsys):
    out = tmp_path / "m"
    train(out, text_file, steps=3)
    (out / "params.npz").write_bytes(b"not a zip")
    assert main(["lm", "sample", "--model", str(out)]) == 1
    err = capsys.readouterr().err.strip()
    assert "corrupt checkpoint" in err and "\n" not in err
    with pytest.raises(SystemExit) as exc:
        main(["lm", "train", "--out", str(out), "--bogus"])
    assert exc.value.code == 2
    assert main(["lm", "sample", "--model", str(tmp_path / "missing")]) == 1


def test_max_time_without_steps_fits_the_schedule_to_the_budget(tmp_path, text_file):
    s = TrainSettings(**{**TINY, "max_time": 3.0, "steps": 20, "eval_every": 1000})
    t = Trainer(s, tmp_path / "m", texts=[str(text_file)], progress=False, explicit={"max_time"})
    t.fit_horizon(seconds_per_step=0.01, seconds_left=2.0)  # as run() does after 40 steps
    assert t.horizon == t.s.steps == 190  # 0.95 * 2.0 / 0.01 steps from step 0
    assert t.lr_at(189) < t.lr_at(100) < t.s.lr  # the cosine now ends inside the budget
    assert abs(t.lr_at(190) - t.s.min_lr) < 1e-12
    summary = t.run()  # refits from the measured speed: far more steps than --steps 20
    assert t.horizon > 40 and t.lr_at(t.horizon) == t.s.min_lr
    # it ends at the fitted horizon, or (on a machine slower than measured) at the budget
    assert summary["step"] == t.horizon or summary["stopped"] == "max-time"
    assert load_model(tmp_path / "m")[2].steps == t.horizon  # the fitted total is saved


def test_cli_threads_option_limits_blas(capsys):
    threadpoolctl = pytest.importorskip("threadpoolctl")
    from rnnkit.cli import blas_threads

    with blas_threads(1):
        assert all(p["num_threads"] == 1 for p in threadpoolctl.threadpool_info()
                   if p["user_api"] == "blas")
    assert main(["--threads", "0", "lm", "eval", "--model", "x", "--text", "y"]) == 1
    assert "--threads must be >= 1" in capsys.readouterr().err
