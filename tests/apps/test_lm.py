"""The language-model app: training learns, resume is exact, sampling and evaluation are right."""
import json
import math

import numpy as np
import pytest

from rnnkit.apps.lm.generate import evaluate_text, next_token_distribution, sample
from rnnkit.apps.lm.model import LanguageModel, ModelConfig, stream_nll
from rnnkit.apps.lm.train import LMSettings, LMTask, load_model
from rnnkit.cli import main
from rnnkit.nn import grad_enabled, log_softmax, no_grad
from rnnkit.train.engine import fit

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
    s = LMSettings(**{**TINY, **kw})
    task = LMTask(s, [str(text_file)])
    return task, fit(task, s, out, progress=False)


def test_training_learns_a_simple_text(tmp_path, text_file):
    t, summary = train(tmp_path / "m", text_file, steps=150, lr=1e-2, dropout=0.0)
    uniform = math.log(len(t.vocab))
    assert summary["best"] < 0.6 * uniform  # far better than guessing
    val = summary["run"].history["eval"]["loss"]
    assert val[-1] < val[0]


def test_the_carried_state_resets_at_every_epoch(tmp_path, text_file):
    s = LMSettings(**{**TINY, "batch": 8, "seq_len": 20})
    task = LMTask(s, [str(text_file)])
    n = len(task.batcher)
    task.loss(task.batch(0))
    carried = task.carried
    task.loss(task.batch(1))
    assert task.carried is not carried  # carried from window to window...
    x0 = task.batch(n)
    assert x0[0] == 0 and np.array_equal(x0[1], task.batch(0)[1])  # ...an epoch replays the text
    task.model.eval()
    task.loss(x0)  # ...from a zero state: the same as the very first window
    fresh = LMTask(s, [str(text_file)])
    fresh.model.eval()
    fresh.loss(fresh.batch(0))
    for a, b in zip(task.carried, fresh.carried):
        np.testing.assert_allclose(a, b, rtol=1e-6)


def test_stream_nll_equals_one_forward_over_the_whole_text(rng):
    model = LanguageModel(ModelConfig(vocab_size=9, cell="lstm", hidden=7, layers=2, embed=5, dropout=0.0,
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


def test_sampling_reuses_weights_without_holding_no_grad(tmp_path, text_file):
    """``sample`` runs each step inside one persistent ``frozen()`` scope: the same text as plain
    ``no_grad`` steps, gradients on between tokens, parameters writeable once the stream ends or
    is closed half way."""
    train(tmp_path / "m", text_file, steps=20)
    model, vocab, _ = load_model(tmp_path / "m")
    ids = list(vocab.encode("the "))
    with no_grad():  # greedy by hand, a fresh weight copy each call
        logits, state = model.forward(np.array([ids]))
        expected = []
        for _ in range(25):
            token = int(np.argmax(next_token_distribution(logits[0, -1], 0.0, None, None)))
            expected.append(token)
            logits, state = model.forward(np.array([[token]]), state)
    stream = sample(model, vocab, "the ", 25, 0.0, seed=0)
    first = next(stream)
    assert grad_enabled()  # the scope is not held while the caller has the token
    params = [p for _, p, _ in model.named_parameters()]
    assert not all(p.flags.writeable for p in params)  # the cached copies' parameters
    assert first + "".join(stream) == vocab.decode(expected)
    assert all(p.flags.writeable for p in params)
    stream = sample(model, vocab, "the ", 25, 0.0, seed=0)
    next(stream)
    stream.close()  # abandoned half way
    assert all(p.flags.writeable for p in params)


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


def test_cli_threads_option_limits_blas(capsys):
    threadpoolctl = pytest.importorskip("threadpoolctl")
    from rnnkit.cli import blas_threads

    with blas_threads(1):
        assert all(p["num_threads"] == 1 for p in threadpoolctl.threadpool_info()
                   if p["user_api"] == "blas")
    assert main(["--threads", "0", "lm", "eval", "--model", "x", "--text", "y"]) == 1
    assert "--threads must be >= 1" in capsys.readouterr().err


def test_prime_outside_the_vocabulary_is_reported(tmp_path, text_file, capsys):
    train(tmp_path / "m", text_file, steps=3)
    assert main(["lm", "sample", "--model", str(tmp_path / "m"), "--prime", "the €§", "--length",
                 "3", "--seed", "1"]) == 0
    captured = capsys.readouterr()
    assert "2 symbol(s) outside the model's vocabulary" in captured.err
    assert "'€'" in captured.err and "'§'" in captured.err
    assert captured.out.startswith("the €§")


def test_rnnkit_load_gives_a_text_model(tmp_path, text_file):
    import rnnkit
    train(tmp_path / "m", text_file, steps=8)
    lm = rnnkit.load(tmp_path / "m")
    model, vocab, _ = load_model(tmp_path / "m")
    assert lm.generate("the ", 30, temperature=1.0, seed=5) == "".join(
        sample(model, vocab, "the ", 30, 1.0, seed=5))
    assert lm.evaluate("the cat sat", streams=1) == evaluate_text(model, vocab, "the cat sat", 12, 1)
