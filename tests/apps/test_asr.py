"""Speech recognition: decoding, error rates, manifests, and training on synthetic tone 'speech'.

The audio here is made in NumPy - each symbol a tone of its own pitch - so these tests run
anywhere; tests that need espeak-ng are in test_asr_espeak.py.
"""
import itertools
import json
import math

import numpy as np
import pytest

import rnnkit
from rnnkit.apps.asr.data import AugmentedBatches, PrefetchedBatches, load_features, read_manifest
from rnnkit.apps.asr.decode import (WordLM, constrained_beam_search, edit_distance, error_rates,
                                    greedy_decode, prefix_beam_search)
from rnnkit.apps.asr.model import Alphabet, normalize_text
from rnnkit.apps.asr.train import ASRSettings, ASRTask, load_model
from rnnkit.cli import main
from rnnkit.data.audio import FeatureConfig, write_wav
from rnnkit.data.batching import length_buckets
from rnnkit.nn import log_softmax
from rnnkit.train.engine import fit

TONES = {"a": 400.0, "b": 900.0, "c": 1700.0, " ": 2900.0}  # even the space has its own tone


def synth(text, rate, rng):
    """Each letter a 120-200 ms tone (random pitch shift), 40-80 ms silence between symbols."""
    shift = rng.uniform(0.95, 1.05)
    parts = [np.zeros(int(rate * 0.05))]
    for ch in text:
        n = int(rate * rng.uniform(0.12, 0.2))
        t = np.arange(n) / rate
        parts.append(0.4 * np.sin(2 * np.pi * TONES[ch] * shift * t) * np.hanning(n))
        parts.append(np.zeros(int(rate * rng.uniform(0.04, 0.08))))
    x = np.concatenate(parts)
    return x + 0.01 * rng.standard_normal(len(x))


def make_manifest(folder, n, seed, rate=8000):
    rng = np.random.default_rng(seed)
    (folder / "wav").mkdir(parents=True, exist_ok=True)
    lines = []
    for k in range(n):
        words = ["".join(rng.choice(list("abc"), rng.integers(1, 4))) for _ in range(rng.integers(1, 3))]
        text = " ".join(words)
        write_wav(folder / "wav" / f"{k}.wav", synth(text, rate, rng), rate)
        lines.append(json.dumps({"audio": f"wav/{k}.wav", "text": text.upper() if k % 7 == 0 else text}))
    (folder / "manifest.jsonl").write_text("\n".join(lines) + "\n")
    return folder / "manifest.jsonl"


# ------------------------------------------------------------------------------ decoding
def test_greedy_collapses_repeats_and_drops_blanks():
    path = [0, 1, 1, 0, 1, 2, 2, 2, 0, 0, 3, 1]
    logp = np.log(np.full((len(path), 4), 0.1))
    logp[np.arange(len(path)), path] = np.log(0.7)
    assert greedy_decode(logp) == [1, 1, 2, 3, 1]
    assert greedy_decode(np.log(np.full((3, 4), 0.25))) == []  # ties go to class 0, the blank


def brute_force_best(logp):
    """The labelling with the largest total probability over all paths, and its log-probability."""
    T, C = logp.shape
    totals = {}
    for path in itertools.product(range(C), repeat=T):
        lab = tuple(k for j, k in enumerate(path) if k != 0 and (j == 0 or path[j - 1] != k))
        totals[lab] = totals.get(lab, 0.0) + math.exp(sum(logp[t, k] for t, k in enumerate(path)))
    best = max(totals, key=totals.get)
    return list(best), math.log(totals[best]), totals


@pytest.mark.parametrize("seed", range(6))
def test_prefix_beam_search_finds_the_most_probable_labelling(seed):
    rng = np.random.default_rng(seed)
    T, C = (4, 3) if seed % 2 else (5, 3)
    logp = log_softmax(rng.standard_normal((T, C)) * (1 + seed % 3))
    want, want_lp, totals = brute_force_best(logp)
    got, got_lp = prefix_beam_search(logp, beam=64, prune=None)
    assert got == want
    assert got_lp == pytest.approx(want_lp, rel=1e-12)
    # a narrow beam still returns a real labelling with its exact total probability
    small, small_lp = prefix_beam_search(logp, beam=2, prune=None)
    assert small_lp <= want_lp + 1e-12


def test_beam_search_beats_greedy_where_paths_add_up():
    # the best path is "blank blank" (0.6 * 0.6) but label 1 has 0.4^2 + 2 * 0.6 * 0.4 = 0.64 in total
    logp = np.log(np.array([[0.6, 0.4, 0.0001], [0.6, 0.4, 0.0001]]))
    logp = logp - np.log(np.exp(logp).sum(1, keepdims=True))
    assert greedy_decode(logp) == []
    assert prefix_beam_search(logp, beam=4, prune=None)[0] == [1]


# ------------------------------------------------------------------------------ error rates
@pytest.mark.parametrize("ref,hyp,d", [("kitten", "sitting", 3), ("", "abc", 3), ("abc", "", 3),
                                       ("flaw", "lawn", 2), ("same", "same", 0), ("ab", "ba", 2)])
def test_edit_distance_by_hand(ref, hyp, d):
    assert edit_distance(ref, hyp) == d == edit_distance(hyp, ref)


def test_cer_and_wer_by_hand():
    refs = ["three one four", "two", "five  nine"]
    hyps = ["three one for", "too", "five nine six"]
    r = error_rates(refs, hyps)
    # chars: 1 deletion + 1 substitution + 4 insertions (" six") over 14 + 3 + 9 characters
    assert r["cer"] == pytest.approx(6 / 26)
    # words: 1 + 1 + 1 over 3 + 1 + 2 words
    assert r["wer"] == pytest.approx(3 / 6)
    assert r["utterances"] == 3
    with pytest.raises(ValueError, match="2 references but 1 hypotheses"):
        error_rates(["a", "b"], ["a"])


def test_alphabet_and_text_normalisation():
    assert normalize_text("  Three\tONE  four\n") == "three one four"
    a = Alphabet.for_texts(["don't stop", "café"])
    assert a.chars.endswith("é") and len(a) == 28 + 1 + 1
    ids = a.encode("don't café")
    assert ids.min() >= 1 and a.decode(ids) == "don't café"
    assert a.decode([0, 0]) == ""
    with pytest.raises(ValueError, match=r"outside the model's alphabet: \['!'\]"):
        Alphabet().encode("stop!")


def test_buckets_cover_everything_once_with_similar_lengths():
    rng = np.random.default_rng(0)
    lengths = rng.integers(10, 200, 1000)
    batches = length_buckets(lengths, 16, rng)
    assert sorted(np.concatenate(batches).tolist()) == list(range(1000))
    spread = np.mean([lengths[b].max() - lengths[b].min() for b in batches])
    assert spread < 15  # random batches would spread ~ 170


def test_manifest_errors_name_the_line(tmp_path):
    m = tmp_path / "m.jsonl"
    (tmp_path / "a.wav").write_bytes(b"")
    m.write_text('{"audio": "a.wav", "text": "One"}\n\n{"audio": "b.wav", "text": "two"}\n')
    with pytest.raises(ValueError, match=r"m.jsonl:3: audio file .*b.wav not found"):
        read_manifest(m)
    m.write_text('{"audio": "a.wav", "text": "One"}\nnope\n')
    with pytest.raises(ValueError, match=r"m.jsonl:2: not JSON"):
        read_manifest(m)
    m.write_text('{"audio": "a.wav"}\n')
    with pytest.raises(ValueError, match="string keys 'audio' and 'text'"):
        read_manifest(m)
    m.write_text('{"audio": "%s", "text": " One  TWO "}\n' % (tmp_path / "a.wav"))
    assert read_manifest(m) == [(tmp_path / "a.wav", "one two")]


# ------------------------------------------------------------------------------ training
TINY = dict(hidden=32, layers=1, batch=16, lr=1e-2, warmup=10, eval_every=50, dropout=0.0,
            stack=2, skip=2, val_fraction=0.1, augment="none")  # tones: pitch is the label


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("asr")
    train = make_manifest(root / "train", 160, seed=0)
    test = make_manifest(root / "test", 40, seed=1)
    s = ASRSettings(steps=150, **TINY)
    t = ASRTask(s, train)
    summary = fit(t, s, root / "model", progress=False)
    return root, t, summary, test


def test_training_learns_synthetic_speech(trained):
    root, t, summary, test = trained
    assert summary["step"] == 150
    history = summary["run"].history["train"]
    assert history[-1] < 0.3 * history[0]
    r = rnnkit.load(root / "model").evaluate(test)
    assert r["utterances"] == 40 and r["cer"] < 0.1, r
    assert t.alphabet == Alphabet()  # the manifest's texts use only default characters


def test_checkpoint_rebuilds_the_model(trained):
    root, t, summary, _ = trained
    recognizer = load_model(root / "model")
    assert recognizer.settings.hidden == 32 and recognizer.features.skip == 2
    assert recognizer.alphabet == t.alphabet
    for name, value in recognizer.model.state_dict().items():
        np.testing.assert_array_equal(value, summary["run"].best_params[name])


def _levenshtein(a, b):
    """Insertions, deletions and substitutions turning a into b (one row of the table at a time)."""
    row = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        prev, row[0] = row[0], i
        for j, y in enumerate(b, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (x != y))
    return row[-1]


def test_cli_eval_json_transcribe_and_errors(trained, capsys, tmp_path):
    root, _, _, test = trained
    assert main(["asr", "eval", "--model", str(root / "model"), "--manifest", str(test), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out) == {"cer", "wer", "utterances"} and out["utterances"] == 40
    assert out["cer"] < 0.1
    # the same rates from `asr transcribe`'s outputs, counted here with a plain edit distance
    items = read_manifest(test)
    assert main(["asr", "transcribe", "--model", str(root / "model")] + [str(p) for p, _ in items]) == 0
    hyps = [line.split("\t")[1] for line in capsys.readouterr().out.splitlines()]
    refs = [" ".join(text.split()) for _, text in items]
    hyps = [" ".join(h.split()) for h in hyps]
    cer = sum(_levenshtein(r, h) for r, h in zip(refs, hyps)) / sum(len(r) for r in refs)
    wer = (sum(_levenshtein(r.split(), h.split()) for r, h in zip(refs, hyps))
           / sum(len(r.split()) for r in refs))
    assert out["cer"] == pytest.approx(cer, rel=1e-12) and out["wer"] == pytest.approx(wer, rel=1e-12)
    assert main(["asr", "eval", "--model", str(root / "model"), "--manifest", str(test),
                 "--json", "--beam", "4"]) == 0
    assert json.loads(capsys.readouterr().out)["cer"] < 0.1
    items = read_manifest(test)[:3]
    assert main(["asr", "transcribe", "--model", str(root / "model"), str(items[0][0])]) == 0
    assert capsys.readouterr().out.strip() == rnnkit.load(root / "model").transcribe([items[0][0]])[0]
    assert main(["asr", "transcribe", "--model", str(root / "model"), "--beam", "3"]
                + [str(p) for p, _ in items]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split("\t")[0] for line in lines] == [str(p) for p, _ in items]
    assert sum(line.split("\t")[1] == text for line, (_, text) in zip(lines, items)) >= 2
    # errors: one line, exit 1, nothing written
    assert main(["asr", "transcribe", "--model", str(root / "model"), str(tmp_path / "no.wav")]) == 1
    assert "no.wav: no such file" in capsys.readouterr().err
    assert main(["asr", "eval", "--model", str(tmp_path / "none"), "--manifest", str(test)]) == 1
    assert capsys.readouterr().err.startswith("rnnkit: error:")
    assert main(["asr", "train", "--manifest", str(test), "--out", str(root / "model"),
                 "--steps", "1", "--quiet"]) == 1
    assert "already holds a checkpoint" in capsys.readouterr().err


def test_cli_train_max_time_with_lstm(tmp_path, capsys):
    m = make_manifest(tmp_path / "d", 30, seed=3)
    assert main(["asr", "train", "--manifest", str(m), "--out", str(tmp_path / "m"), "--cell", "lstm",
                 "--hidden", "16", "--layers", "2", "--steps", "10000", "--max-time", "1",
                 "--seed", "3", "--quiet", "--stack", "2", "--skip", "2"]) == 0
    err = capsys.readouterr().err
    assert "--max-time reached" in err and "lstm 2x16" in err
    model = load_model(tmp_path / "m").model
    assert model.cfg.cell == "lstm" and model.cfg.layers == 2


# ------------------------------------------------------------------------------ word constraint
def test_word_lm_counts_and_probabilities_by_hand():
    lm = WordLM.from_texts(["one two", "one one", "two"])
    assert lm.unigrams == {"one": 3, "two": 2} and lm.total == 5
    assert lm.bigrams == {"<s> one": 2, "one two": 1, "one one": 1, "<s> two": 1}
    assert lm.logp("<s>", "one", order=1) == pytest.approx(math.log(3 / 5))
    # interpolated bigram: 0.7 * P(two | one) + 0.3 * P(two) = 0.7 * 1/2 + 0.3 * 2/5
    assert lm.logp("one", "two") == pytest.approx(math.log(0.35 + 0.12))
    assert lm.logp("one", "three") == -math.inf and lm.logp("x", "two", order=0) == pytest.approx(math.log(1 / 2))
    assert lm.entropy() == pytest.approx(-(0.6 * math.log(0.6) + 0.4 * math.log(0.4)))
    assert not lm.closed(3) and lm.closed(2)
    assert WordLM.from_json(json.loads(json.dumps(lm.to_json()))).bigrams == lm.bigrams


def spell(chars, text, frames_per_char=2):
    """Log-probabilities (T, C) that spell ``text`` with a blank after each character."""
    ids = [chars.index(c) + 1 for c in text]
    T = len(ids) * (frames_per_char + 1)
    logp = np.full((T, len(chars) + 1), np.log(0.01))
    for j, k in enumerate(ids):
        logp[j * (frames_per_char + 1) : j * (frames_per_char + 1) + frames_per_char, k] = np.log(0.9)
        logp[j * (frames_per_char + 1) + frames_per_char, 0] = np.log(0.9)
    return logp - np.logaddexp.reduce(logp, axis=1, keepdims=True)


def test_constrained_search_only_spells_words_of_the_vocabulary():
    chars = " efinorw"
    lm = WordLM.from_texts(["one nine", "nine one", "one", "nine"])
    # the acoustics say "nie one": "nie" is no word; the nearest spelling in the vocabulary wins
    logp = spell(chars, "nie one")
    greedy = "".join(chars[k - 1] for k in greedy_decode(logp))
    assert greedy == "nie one"
    ids, score = constrained_beam_search(logp, chars, lm, beam=16)
    text = "".join(chars[k - 1] for k in ids)
    assert all(w in lm for w in text.split()) and text == "nine one"
    # where the acoustics spell vocabulary words the constraint changes nothing
    ids, _ = constrained_beam_search(spell(chars, "one nine one"), chars, lm, beam=8)
    assert "".join(chars[k - 1] for k in ids) == "one nine one"
    # acoustics that stop inside a word: only whole words come out, never "ni"
    for spoken in ("one ni", "nin", "o"):
        ids, _ = constrained_beam_search(spell(chars, spoken, 1), chars, lm, beam=2, prune=-3.0)
        assert all(w in lm for w in "".join(chars[k - 1] for k in ids).split()), spoken
    with pytest.raises(ValueError, match="characters for"):
        constrained_beam_search(logp, chars[:-1], lm)


def test_constrained_search_equals_exhaustive_search_over_the_vocabulary(rng):
    """With a wide beam: the best of all word sequences, total CTC probability + word scores."""
    from rnnkit.nn.ctc import CTCLoss
    chars = "ab "
    lm = WordLM({"a": 1, "ab": 1, "b": 1})
    logp = log_softmax(rng.standard_normal((7, 4)) * 2)
    ctc = CTCLoss(reduction="none")
    best, best_score = None, -math.inf
    for n in (1, 2, 3):
        for words in itertools.product(sorted(lm.unigrams), repeat=n):
            text = " ".join(words)
            y = np.array([[chars.index(c) + 1 for c in text]])
            nll = ctc.forward(logp[None], y, np.array([7]), np.array([len(text)]))[0]
            score = -nll + n * (0.5 * math.log(1 / 3) + 0.5 * math.log(3))  # alpha log P + beta: 0
            if score > best_score:
                best, best_score = text, score
    ids, score = constrained_beam_search(logp, chars, lm, beam=256, order=0, prune=None)
    assert "".join(chars[k - 1] for k in ids) == best
    assert score == pytest.approx(best_score, rel=1e-9)


# ------------------------------------------------------------------------------ augmented batches
def test_augmented_batches_are_a_function_of_seed_and_step(tmp_path):
    m = make_manifest(tmp_path / "d", 40, seed=5)
    items = read_manifest(m)
    alphabet = Alphabet.for_texts([t for _, t in items])
    targets = [alphabet.encode(t) for _, t in items]
    cfg = FeatureConfig(stack=2, skip=2)
    a = AugmentedBatches(items, targets, cfg, batch=8, seed=3, workers=1)
    b = AugmentedBatches(items, targets, cfg, batch=8, seed=3, waveforms=a.waves)
    for step in (7, 0, 3):  # any order: nothing carries over from one call to the next
        xa, la, ya, yla = a.batch(step)
        xb, lb, yb, ylb = b.batch(step)
        for u, v in zip((xa, la, ya, yla), (xb, lb, yb, ylb)):
            np.testing.assert_array_equal(u, v)
    x1, *_ = a.batch(1)
    assert not np.array_equal(a.batch(2)[0][:1], x1[:1])
    c = AugmentedBatches(items, targets, cfg, batch=8, seed=4, waveforms=a.waves)
    assert not np.array_equal(c.batch(7)[0], a.batch(7)[0])
    # an epoch visits every utterance once
    seen = np.concatenate([a.indices(s) for s in range(a.order.per_epoch)])
    assert sorted(seen.tolist()) == list(range(40))
    # the input lengths are the augmented frame counts: rows are exactly zero past them
    x, lengths, y, ylen = a.batch(5)
    idx = a.indices(5)
    for row, i in enumerate(idx):
        utt = a.utterance(5, i)
        assert lengths[row] == len(utt)
        np.testing.assert_array_equal(x[row, : lengths[row]], utt)
        assert not x[row, lengths[row]:].any()
        assert ylen[row] == len(targets[i]) and list(y[row, : ylen[row]]) == list(targets[i])
    # speed perturbation really changes the frame counts relative to the clean features
    clean = [len(f) for f in load_features([items[i] for i in idx], cfg)]
    assert np.any(lengths != np.array(clean))
    # prefetched in a worker process: the same batches
    pf = PrefetchedBatches(a, workers=1, ahead=2)
    try:
        for step in (0, 1, 2, 5):
            for u, v in zip(pf.batch(step), a.batch(step)):
                np.testing.assert_array_equal(u, v)
    finally:
        pf.close()


def test_transcribe_reports_each_bad_file_and_still_transcribes_the_rest(trained, capsys, tmp_path):
    root, _, _, test = trained
    items = read_manifest(test)[:2]
    (tmp_path / "empty.wav").write_bytes(b"")
    (tmp_path / "song.ogg").write_bytes(b"OggS" + bytes(60))
    write_wav(tmp_path / "quiet.wav", np.zeros(8000), 8000)
    paths = [str(items[0][0]), str(tmp_path / "empty.wav"), str(tmp_path / "song.ogg"),
             str(tmp_path / "quiet.wav"), str(items[1][0])]
    assert main(["asr", "transcribe", "--model", str(root / "model"), "--lm", "none"] + paths) == 1
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert len(lines) == 3 and all(line.startswith("rnnkit: error: ") for line in lines)
    assert "empty.wav: empty file" in lines[0] and "song.ogg: an Ogg" in lines[1]
    assert "quiet.wav: silence only" in lines[2] and "Traceback" not in err
    assert [line.split("\t")[0] for line in out.splitlines()] == [paths[0], paths[4]]
