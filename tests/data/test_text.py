"""Text reading, vocabularies, train/val split and stream batching (rnnkit.data.text)."""
import json

import numpy as np
import pytest

from rnnkit.data.text import (
    UNK,
    StreamBatcher,
    Vocab,
    default_corpus_path,
    eval_windows,
    read_text,
    split_train_val,
)

# Accents (precomposed and combining), CJK, emoji outside the BMP, tabs, newlines.
MIXED = "Café naïve e\u0301 — 日本語の文章 😀🎉\tx\n¡Olé! Ωμέγα\n"


# ----------------------------------------------------------------------------- char vocab

def test_char_vocab_round_trip_mixed_unicode():
    v = Vocab.from_text(MIXED, "char")
    assert v.kind == "char"
    assert v.tokens[0] == UNK
    assert v.tokens[1:] == sorted(set(MIXED))  # code-point order, deterministic
    ids = v.encode(MIXED)
    assert ids.dtype == np.int64 and ids.shape == (len(MIXED),)
    # The vectorised encoder must agree with the obvious dictionary lookup, id by id.
    np.testing.assert_array_equal(ids, [v.tokens.index(c) for c in MIXED])
    assert 0 not in ids
    assert v.decode(ids) == MIXED
    assert v.decode(ids.tolist()) == MIXED
    assert len(v) == len(set(MIXED)) + 1


def test_char_unseen_symbols_become_unk_never_dropped():
    v = Vocab.from_text("abc", "char")
    ids = v.encode("ab😀xc\u0301")
    np.testing.assert_array_equal(ids, [1, 2, 0, 0, 3, 0])
    assert len(ids) == len("ab😀xc\u0301")
    assert int((ids == 0).sum()) == 3
    assert v.decode(ids) == "ab\ufffd\ufffdc\ufffd"
    assert v.encode("").shape == (0,)


def test_decode_rejects_out_of_range_ids():
    v = Vocab.from_text("abc", "char")
    with pytest.raises(ValueError, match="out of range"):
        v.decode([1, 4])
    with pytest.raises(ValueError, match="out of range"):
        v.decode(np.array([-1]))


# ----------------------------------------------------------------------------- word vocab

def test_word_tokenizer_exact_tokens_and_round_trip():
    v = Vocab.from_text("x", "word")
    assert v.tokenize("Let's go,  now!\n\tO'er  \n\nend") == [
        "Let's", " ", "go", ",", "  ", "now", "!", "\n", "\t", "O'er", "  ", "\n", "\n", "end"]
    for text in (MIXED, "  lead and trail  ", "a--b''c'\r\n", "日本 語"):
        assert v.join(v.tokenize(text)) == text


def test_word_vocab_round_trip_and_unk():
    text = "the cat sat on the mat.\nThe cat, the end!\n"
    v = Vocab.from_text(text, "word")
    ids = v.encode(text)
    assert ids.dtype == np.int64
    assert len(ids) == len(v.tokenize(text))
    assert v.decode(ids) == text
    # frequency order: " " (8) then "the" (3), then "\n" and "cat" (2, alphabetical)
    assert v.tokens[:5] == [UNK, " ", "the", "\n", "cat"]
    unseen = v.encode("the dog sat")
    np.testing.assert_array_equal(unseen, [v.index("the"), v.index(" "), 0, v.index(" "),
                                           v.index("sat")])
    assert v.decode(unseen) == "the <unk> sat"


def test_word_vocab_min_count_and_max_size():
    text = "a a a b b c"
    v = Vocab.from_text(text, "word", min_count=2)
    assert v.tokens == [UNK, " ", "a", "b"]
    np.testing.assert_array_equal(v.encode("a c"), [2, 1, 0])
    v3 = Vocab.from_text(text, "word", max_size=3)  # <unk> + the two most frequent
    assert v3.tokens == [UNK, " ", "a"]
    with pytest.raises(ValueError, match="min_count"):
        Vocab.from_text(text, "word", min_count=10)


def test_vocab_json_round_trip():
    for kind in ("char", "word"):
        v = Vocab.from_text(MIXED, kind)
        d = json.loads(json.dumps(v.to_json()))
        w = Vocab.from_json(d)
        assert w == v and w.kind == kind
        np.testing.assert_array_equal(w.encode(MIXED), v.encode(MIXED))
    with pytest.raises(ValueError, match="kind"):
        Vocab.from_json({"kind": "byte", "tokens": [UNK, "a"]})
    with pytest.raises(ValueError, match="<unk>"):
        Vocab.from_json({"kind": "char", "tokens": ["a", "b"]})
    with pytest.raises(ValueError, match="more than once"):
        Vocab.from_json({"kind": "char", "tokens": [UNK, "a", "a"]})


# ----------------------------------------------------------------------------- read_text

def test_read_text_invalid_utf8_names_file_and_offset(tmp_path):
    p = tmp_path / "bad.txt"
    p.write_bytes("héllo".encode() + b"\xff rest")
    with pytest.raises(ValueError, match=r"bad\.txt.*not valid UTF-8.*offset 6"):
        read_text(p)


def test_read_text_empty_and_missing(tmp_path):
    p = tmp_path / "empty.txt"
    p.write_bytes(b"")
    with pytest.raises(ValueError, match=r"empty\.txt is empty"):
        read_text(p)
    with pytest.raises(ValueError, match=r"not found: .*nope\.txt"):
        read_text(tmp_path / "nope.txt")
    with pytest.raises(ValueError, match="directory"):
        read_text(tmp_path)
    (tmp_path / "ws.txt").write_bytes(b" \n")
    assert read_text(tmp_path / "ws.txt") == " \n"  # whitespace is text, not "empty"


def test_read_text_normalises_crlf_and_bom(tmp_path):
    p = tmp_path / "win.txt"
    p.write_bytes(b"\xef\xbb\xbfone\r\ntwo\r\n\xe6\x97\xa5")
    assert read_text(p) == "one\ntwo\n日"


def test_default_corpus_is_bundled():
    path = default_corpus_path()
    text = read_text(path)
    assert path.stat().st_size == 1_036_482  # 1,036,467 source bytes + 15 play separators
    assert text.startswith("HAMLET, PRINCE OF DENMARK\n")
    for title in ("MACBETH", "ROMEO AND JULIET", "THE TRAGEDY OF KING LEAR",
                  "OTHELLO, THE MOOR OF VENICE", "JULIUS CAESAR", "THE TEMPEST",
                  "A MIDSUMMER NIGHT'S DREAM"):
        assert f"\n\n{title}" in text
    assert "\r" not in text and "Gutenberg" not in text
    assert (path.parent / "ATTRIBUTION.md").is_file()


# ----------------------------------------------------------------------------- split

def test_split_train_val_exact_parts():
    ids = np.arange(100)
    train, val = split_train_val(ids, 0.1)
    np.testing.assert_array_equal(train, np.arange(90))
    np.testing.assert_array_equal(val, np.arange(90, 100))
    assert train.dtype == np.int64 and val.dtype == np.int64
    train, val = split_train_val(ids, 0.25)
    assert (len(train), len(val)) == (75, 25)
    train, val = split_train_val(ids, 0.0)
    assert len(train) == 100 and val.shape == (0,)


def test_split_train_val_rejects_bad_fractions_and_short_text():
    for f in (-0.1, 1.0, 1.5, float("nan")):
        with pytest.raises(ValueError, match=r"\[0, 1\)"):
            split_train_val(np.arange(100), f)
    with pytest.raises(ValueError, match="too short.*validation part would have 0"):
        split_train_val(np.arange(4), 0.1)
    with pytest.raises(ValueError, match="too short.*training part would have 1"):
        split_train_val(np.arange(10), 0.9)
    with pytest.raises(ValueError, match="integers"):
        split_train_val(np.linspace(0, 1, 10), 0.2)


# ----------------------------------------------------------------------------- batching

def test_stream_batcher_windows_match_raw_ids(rng):
    ids = rng.integers(0, 50, size=1003)
    batch, seq_len = 4, 7
    sb = StreamBatcher(ids, batch, seq_len)
    L = 1003 // batch  # 250 ids per stream; the last 3 ids are unused
    assert len(sb) == (L - 1) // seq_len == 35
    for k in range(len(sb)):
        x, y = sb.window(k)
        assert x.shape == y.shape == (batch, seq_len)
        assert x.dtype == np.int64 and y.dtype == np.int64
        for b in range(batch):
            start = b * L + k * seq_len
            np.testing.assert_array_equal(x[b], ids[start: start + seq_len])
            np.testing.assert_array_equal(y[b], ids[start + 1: start + seq_len + 1])


def test_stream_batcher_consecutive_windows_continue_each_stream():
    ids = np.arange(2 * 40)  # distinct values: any misplaced id shows
    sb = StreamBatcher(ids, batch=2, seq_len=6)
    windows = list(sb)
    assert len(windows) == 39 // 6 == 6
    for (x0, y0), (x1, _) in zip(windows, windows[1:]):
        # x of window k+1 starts right after x of window k ended, stream by stream
        np.testing.assert_array_equal(x1[:, 0], x0[:, -1] + 1)
        np.testing.assert_array_equal(x1[:, 0], y0[:, -1])
    xs = np.concatenate([x for x, _ in windows], axis=1)  # (2, 36)
    np.testing.assert_array_equal(xs, [np.arange(36), np.arange(40, 76)])
    # random access (resume) gives the same windows as iteration
    x3, y3 = sb.window(3)
    np.testing.assert_array_equal(x3, windows[3][0])
    np.testing.assert_array_equal(y3, windows[3][1])
    x3[:] = -1  # a caller writing into a window must not corrupt the batcher
    np.testing.assert_array_equal(sb.window(3)[0], windows[3][0])


def test_stream_batcher_too_short_and_bad_arguments():
    with pytest.raises(ValueError, match=r"15 tokens.*batch=2.*seq_len=7.*at least 16"):
        StreamBatcher(np.arange(15), 2, 7)
    sb = StreamBatcher(np.arange(16), 2, 7)  # exactly one window
    assert len(sb) == 1
    np.testing.assert_array_equal(sb.window(0)[1], [np.arange(1, 8), np.arange(9, 16)])
    with pytest.raises(ValueError, match="out of range"):
        sb.window(1)
    for batch, seq_len in ((0, 5), (2, 0), (True, 5), (2.0, 5)):
        with pytest.raises(ValueError):
            StreamBatcher(np.arange(100), batch, seq_len)


def test_eval_windows_cover_every_target_once():
    ids = np.arange(23) * 3
    wins = list(eval_windows(ids, 5))
    assert [x.shape for x, _ in wins] == [(1, 5)] * 4 + [(1, 2)]
    np.testing.assert_array_equal(np.concatenate([x for x, _ in wins], axis=1)[0], ids[:-1])
    np.testing.assert_array_equal(np.concatenate([y for _, y in wins], axis=1)[0], ids[1:])
    with pytest.raises(ValueError, match="at least 2"):
        eval_windows(np.arange(1), 5)  # raised eagerly, before iteration
