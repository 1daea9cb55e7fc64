"""Data generators and readers, vocabularies, and ``rnnkit translate`` end to end."""
import datetime
import importlib.util
import json

import numpy as np
import pytest

from rnnkit.apps.seq2seq.data import (TokenVocab, make_dates, make_numbers, pad_batch, read_pairs,
                                      read_trans_de_en, tokenize, write_pairs)
from rnnkit.apps.seq2seq.metrics import corpus_bleu
from rnnkit.apps.seq2seq.model import BOS, EOS, PAD
from rnnkit.cli import main


def test_numbers_generator():
    pytest.importorskip("num2words")
    pairs = make_numbers(300, "fr", seed=3)
    assert len({s for s, _ in pairs}) == 300
    assert all(0 <= int(s) < 1_000_000 for s, _ in pairs)
    assert make_numbers(300, "fr", seed=3) == pairs
    d = dict(make_numbers(1, "fr", seed=0, high=4022, exclude=range(4021)))
    assert d == {"4021": "quatre mille vingt et un"}
    assert dict(make_numbers(1, "de", seed=0, high=22, exclude=range(21))) == {"21": "einundzwanzig"}
    with pytest.raises(ValueError, match="no language"):
        make_numbers(3, "xx")
    with pytest.raises(ValueError, match="distinct"):
        make_numbers(5, "fr", high=4)


def test_dates_generator():
    pytest.importorskip("babel")
    pairs = make_dates(400, seed=2)
    assert make_dates(400, seed=2) == pairs
    for src, iso in pairs:
        d = datetime.date.fromisoformat(iso)
        assert datetime.date(1950, 1, 1) <= d <= datetime.date(2049, 12, 31)
        assert str(d.year) in src or f"{d.year % 100:02d}" in src
    assert len({s for s, _ in pairs}) > 350  # many surface forms
    german = make_dates(20, seed=1, lang="de_DE")
    assert any("." in s for s, _ in german)
    with pytest.raises(ValueError, match="locale"):
        make_dates(3, lang="zz_ZZ")


def test_trans_de_en_reader(tmp_path):
    f = tmp_path / "de-en"
    f.write_text("# Version :: test\n"
                 "Aal {m} | Aale {pl} :: eel | eels\n"
                 "Wie alt bist du?; Wie alt sind Sie? | Er kommt. :: How old are you? | He is coming.\n"
                 "Das ist [ugs.] gut. :: That is good.\n"
                 "Eins. | Zwei drei. :: One. :: broken\n", encoding="utf-8")
    assert read_trans_de_en(f) == [("Wie alt bist du?", "How old are you?"), ("Er kommt.", "He is coming."),
                                   ("Das ist gut.", "That is good.")]
    with pytest.raises(ValueError, match="trans-de-en"):
        read_trans_de_en(tmp_path / "missing")


def test_vocab_tokens_and_batches():
    text = "quatre-vingt-dix  et un"
    assert "".join(tokenize(text, "word")) == text
    assert tokenize("vingt et-un", "word") == ["vingt", " et", "-", "un"]
    v = TokenVocab.build(["abc", "cab"], "char")
    assert v.tokens[:4] == ["<pad>", "<bos>", "<eos>", "<unk>"]
    ids = v.encode("abz")
    assert ids[2] == 3 and v.decode(ids + [EOS, 4]) == "ab\ufffd"
    assert TokenVocab.from_json(v.to_json()) == v
    x, lengths = pad_batch([[5, 6], [7]], bos=True, eos=True)
    np.testing.assert_array_equal(x, [[BOS, 5, 6, EOS], [BOS, 7, EOS, PAD]])
    np.testing.assert_array_equal(lengths, [4, 3])


def test_pairs_files(tmp_path):
    f = tmp_path / "p.tsv"
    assert write_pairs(f, [("a b", "c"), ("1", "un")]) == 2
    assert read_pairs(f) == [("a b", "c"), ("1", "un")]
    f.write_text("a\tb\nno tab here\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"p.tsv:2: expected"):
        read_pairs(f)
    f.write_bytes(b"a\t\xff\n")
    with pytest.raises(ValueError, match="not UTF-8"):
        read_pairs(f)


@pytest.mark.slow
def test_cli_end_to_end(tmp_path, capsys):
    pytest.importorskip("num2words")
    data, model = tmp_path / "n.tsv", tmp_path / "m"
    assert main(["translate", "make-data", "numbers", "--out", str(data), "--n", "200",
                 "--lang", "en", "--high", "1000", "--seed", "1"]) == 0
    assert len(read_pairs(data)) == 200
    assert main(["translate", "train", "--pairs", str(data), "--out", str(model), "--steps", "30",
                 "--hidden", "16", "--embed", "8", "--batch", "32", "--eval-every", "15",
                 "--quiet", "--tokens", "word", "--src-tokens", "char"]) == 0
    capsys.readouterr()
    png = tmp_path / "att.png"
    plot = ["--plot", str(png)] if importlib.util.find_spec("matplotlib") else []
    assert main(["translate", "run", "--model", str(model), "--beam", "3", *plot, "12", "345"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and (not plot or png.stat().st_size > 0)
    assert main(["translate", "eval", "--model", str(model), "--pairs", str(data), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert set(result) == {"bleu", "exact_match", "token_accuracy", "pairs"}
    # the same scores from `translate run`'s outputs, counted here (BLEU by the function that the
    # BLEU paper's examples check in test_seq2seq.py)
    pairs = read_pairs(data)
    assert main(["translate", "run", "--model", str(model), *[src for src, _ in pairs]]) == 0
    outs = capsys.readouterr().out.splitlines()
    assert len(outs) == 200
    refs = [ref for _, ref in pairs]
    hits = sum(sum(a == b for a, b in zip(tokenize(o, "word"), tokenize(r, "word"))) for o, r in zip(outs, refs))
    total = sum(max(len(tokenize(o, "word")), len(tokenize(r, "word"))) for o, r in zip(outs, refs))
    assert result["pairs"] == 200
    assert result["exact_match"] == sum(o.strip() == r.strip() for o, r in zip(outs, refs)) / 200
    assert result["token_accuracy"] == pytest.approx(hits / total, rel=1e-12) and hits > 0
    assert result["bleu"] == pytest.approx(corpus_bleu(outs, refs)["bleu"], rel=1e-12)
    # a second train into the same directory refuses; a bad file is one error line, exit 1
    assert main(["translate", "train", "--pairs", str(data), "--out", str(model), "--steps", "1"]) == 1
    bad = tmp_path / "bad.tsv"
    bad.write_text("only one column\n", encoding="utf-8")
    assert main(["translate", "eval", "--model", str(model), "--pairs", str(bad)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("rnnkit: error:") and "bad.tsv:1" in err[-1]
    assert main(["translate", "eval", "--model", str(tmp_path), "--pairs", str(data)]) == 1
