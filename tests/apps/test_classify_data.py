"""Classification data: the .ts reader (against aeon's writer where installed), long CSV, JSON
lines (text and audio), the stratified split, the scaling, the bundled control charts."""
import json
import warnings

import numpy as np
import pytest

from rnnkit.apps.classify.charts import bundled_path, charts_text
from rnnkit.apps.classify.data import (ReadOptions, Scaler, augment, read_data,
                                       stratified_split)
from rnnkit.apps.classify.train import ClassifySettings, ClassifyTask
from rnnkit.apps.classify.tsfile import format_ts, read_ts
from rnnkit.data.audio import write_wav

HEADER = """# a comment
@problemName toy
@timeStamps false
@missing false
@univariate false
@dimensions 2
@equalLength false
@classLabel true a b
@data
"""


def write(tmp_path, text, name="x.ts"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_ts_reader_values_labels_and_lengths(tmp_path):
    path = write(tmp_path, HEADER + "1,2,3:4,5,6:a\n\n-1.5,2e-1:0,7:b\n")
    ts = read_ts(path)
    assert ts.labels == ["a", "b"] and ts.lines == [10, 12] and ts.problem == "toy"
    np.testing.assert_array_equal(ts.series[0], [[1, 4], [2, 5], [3, 6]])
    np.testing.assert_array_equal(ts.series[1], [[-1.5, 0], [0.2, 7]])


def test_ts_round_trip_through_our_writer(tmp_path, rng):
    series = [np.round(rng.standard_normal((n, 3)), 4) for n in (5, 9, 1)]
    path = write(tmp_path, format_ts(series, ["2", "10", "2"], "rt"))
    ts = read_ts(path)
    assert ts.labels == ["2", "10", "2"] and ts.class_labels == ["2", "10"]
    for a, b in zip(ts.series, series):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("equal", [True, False])
def test_ts_round_trip_through_aeons_writer(tmp_path, rng, equal):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        datasets = pytest.importorskip("aeon.datasets")
    if equal:
        X = rng.standard_normal((4, 3, 7))
        X[1, 2, 3] = np.nan
    else:
        X = [rng.standard_normal((2, n)) for n in (5, 8, 2)]
    y = np.array(["up", "down", "up", "left"][: len(X)])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        datasets.save_to_ts_file(X, y, label_type="classification", path=str(tmp_path),
                                 problem_name="aeon")
    path = tmp_path / "aeon.ts"
    if equal:
        with pytest.raises(ValueError, match=r"aeon\.ts, line \d+: missing value at position 4 "
                                             r"of channel 3 \(pass --fill"):
            read_ts(path)
        ts = read_ts(path, fill="ffill")
        assert ts.filled == 1
        X[1, 2, 3] = X[1, 2, 2]  # forward fill
    else:
        ts = read_ts(path)
    assert ts.labels == list(y)
    for got, want in zip(ts.series, X):
        np.testing.assert_array_equal(got, np.asarray(want).T)  # (channels, T) -> (T, channels)


@pytest.mark.parametrize("text, match", [
    ("@problemName p\n@colour blue\n@data\n1:a\n", r"line 2: unknown header '@colour'"),
    ("@univariate maybe\n@data\n1:a\n", r"line 1: @univariate needs one value, true or false"),
    ("@problemName p\n@classLabel true a\n1,2:a\n", r"line 3: data before the @data line"),
    ("@problemName p\n@classLabel true a\n", r"no @data line"),
    ("@dimensions two\n@data\n", r"line 1: @dimensions needs one whole number"),
    ("@classLabel true\n@data\n1:a\n", r"line 1: @classLabel true must list the class labels"),
    ("@data now\n1:a\n", r"line 1: @data takes no value"),
    ("@timeStamps true\n@classLabel true 1\n@data\n(1,2):1\n", r"@timeStamps true is not supported"),
    ("@dimensions 2\n@classLabel true a\n@data\n1,2:3,4:a\n1,2:a\n", r"line 5: 1 channels"),
    ("@classLabel true a b\n@data\n1,2:c\n", r"line 3: class label 'c' is not among"),
    ("@dimensions 2\n@classLabel true a\n@data\n1,2:3:a\n", r"line 4: channel 2 has 1 values"),
    ("@equalLength true\n@seriesLength 3\n@classLabel true a\n@data\n1,2:a\n",
     r"line 5: 2 values per channel, but the header says @equalLength true"),
    ("@classLabel true a\n@data\n1,x,3:a\n", r"line 3: value 2 of channel 1 is 'x', not a number"),
    ("@classLabel true a\n@data\n1,inf:a\n", r"line 3: value 2 of channel 1 is 'inf'"),
    ("@classLabel true a\n@data\n", r"no cases after @data"),
])
def test_ts_reader_names_the_line_of_malformed_input(tmp_path, text, match):
    with pytest.raises(ValueError, match=match):
        read_ts(write(tmp_path, text))


def test_ts_fill_interpolates_and_refuses_an_empty_channel(tmp_path):
    path = write(tmp_path, "@classLabel true a\n@data\n1,?,NaN,4:a\n")
    np.testing.assert_array_equal(read_ts(path, fill="interpolate").series[0][:, 0], [1, 2, 3, 4])
    with pytest.raises(ValueError, match="line 3: channel 1 has no values at all"):
        read_ts(write(tmp_path, "@classLabel true a\n@data\n?,?:a\n"), fill="ffill")


def test_long_csv_sorts_by_time_and_names_bad_rows(tmp_path):
    path = write(tmp_path, "id,t,x,y,cls\ns1,2,3,30,up\ns2,1,5,50,down\ns1,1,1,10,up\n"
                           "s1,3,2,20,up\n", "d.csv")
    opts = ReadOptions(id_col="id", time_col="t", label_col="cls")
    ds = read_data(path, opts)
    assert ds.names == ["s1", "s2"] and ds.labels == ["up", "down"]
    np.testing.assert_array_equal(ds.items[0], [[1, 10], [3, 30], [2, 20]])
    only_y = read_data(path, ReadOptions(id_col="id", time_col="t", label_col="cls", features="y"))
    np.testing.assert_array_equal(only_y.items[1], [[50]])
    bad = {
        "id,t,x,cls\na,1,1,u\na,2,1,v\n": r"line 3: sequence 'a' has label 'v' here but 'u' on line 2",
        "id,t,x,cls\na,1,1,u\na,1,2,u\n": r"line 3: sequence 'a' has the same 't' as on line 2",
        "id,t,x,cls\na,1,,u\n": r"line 2: column 'x' is missing a value \(pass --fill",
        "id,t,x,cls\na,1,abc,u\n": r"line 2: column 'x' holds 'abc', which is not a number",
        "id,t,x,cls\na,1,1\n": r"line 2: 3 fields, the header has 4",
        "id,t,x\na,1,1\n": r"line 1: no column 'cls' for --label-col",
    }
    for text, match in bad.items():
        with pytest.raises(ValueError, match=match):
            read_data(write(tmp_path, text, "bad.csv"), opts)
    with pytest.raises(ValueError, match="needs --id-col"):
        read_data(path, ReadOptions(label_col="cls"))


def test_jsonl_text_and_errors(tmp_path):
    path = write(tmp_path, '{"text": "abc", "label": "x"}\n{"text": "ba", "label": 2}\n',
                 "t.jsonl")
    ds = read_data(path, ReadOptions())
    assert ds.kind == "text" and ds.items == ["abc", "ba"] and ds.labels == ["x", "2"]
    bad = {
        '{"text": "a", "label": "x"}\nnot json\n': r"line 2: not JSON",
        '{"text": "", "label": "x"}\n': r"line 1: 'text' must be a non-empty string",
        '{"text": "a"}\n': r"line 1: no 'label'",
        '{"text": "a", "label": "x"}\n{"audio": "a.wav", "label": "x"}\n':
            r"line 2: a 'audio' record in a file of 'text' records",
        '{"audio": "missing.wav", "label": "x"}\n': r"line 1: audio file .*missing.wav not found",
        '[1, 2]\n': r"line 1: expected a JSON object",
    }
    for text, match in bad.items():
        with pytest.raises(ValueError, match=match):
            read_data(write(tmp_path, text, "bad.jsonl"), ReadOptions())
    with pytest.raises(ValueError, match=r"unknown extension '\.txt'"):
        read_data(write(tmp_path, "x", "a.txt"), ReadOptions())


def test_jsonl_audio_gives_log_mel_frames(tmp_path):
    t = np.arange(8000) / 16000
    write_wav(tmp_path / "tone.wav", 0.5 * np.sin(2 * np.pi * 440 * t), 16000)
    path = write(tmp_path, '{"audio": "tone.wav", "label": "a4", "id": "u1"}\n', "a.jsonl")
    ds = read_data(path, ReadOptions())
    assert ds.kind == "audio" and ds.names == ["u1"]
    # 0.5 s: 49 frames of 25 ms every 10 ms, 3 stacked (every 3rd kept) x 40 mel filters
    assert ds.items[0].shape == (17, 120)


@pytest.mark.parametrize("seed", range(20))
def test_stratified_split_keeps_every_class_in_training(seed):
    rng = np.random.default_rng(seed)
    C = int(rng.integers(2, 8))
    y = rng.integers(0, C, int(rng.integers(C, 60)))
    y[:C] = np.arange(C)  # every class present
    fraction = float(rng.uniform(0.05, 0.6))
    tr, va = stratified_split(y, fraction, seed)
    assert sorted(np.concatenate([tr, va]).tolist()) == list(range(len(y)))
    assert set(y[tr]) == set(range(C))  # every class keeps a training sequence
    counts = np.bincount(y, minlength=C)
    share = counts * fraction
    held = np.bincount(y[va], minlength=C)
    # each class gives its share rounded down or up (less where it has too few members)
    assert np.all((held >= np.minimum(np.floor(share), counts - 1)) & (held <= np.ceil(share)))
    assert len(va) <= round(len(y) * fraction)
    if np.all(np.ceil(share) <= counts - 1):  # no class too small: exactly the rounded total
        assert len(va) == round(len(y) * fraction)
    np.testing.assert_array_equal(stratified_split(y, fraction, seed)[1], va)  # same seed


def test_scaling_is_fitted_on_the_training_part_only(tmp_path, rng):
    series = [rng.standard_normal((6, 2)) * [1, 10] + [5, -3] for _ in range(20)]
    labels = ["a", "b"] * 10
    series[0] = series[0] + 1000  # an outlier, whichever side of the split it falls on
    path = write(tmp_path, format_ts([np.round(s, 6) for s in series], labels, "sc"))
    task = ClassifyTask(ClassifySettings(val_fraction=0.3, ensemble=1, hidden=4), path)
    ds = read_data(path, ReadOptions())
    tr, va = stratified_split(np.array([0, 1] * 10), 0.3, [0, 3])
    want = Scaler.fit([ds.items[i] for i in tr])
    np.testing.assert_allclose(task.inputs.scaler.mean, want.mean, rtol=1e-12)
    np.testing.assert_allclose(task.inputs.scaler.sd, want.sd, rtol=1e-12)
    everything = Scaler.fit(ds.items)
    assert not np.allclose(task.inputs.scaler.mean, everything.mean)
    z = np.concatenate(task.train_x)  # the training steps come out standardised
    np.testing.assert_allclose(z.mean(axis=0), 0, atol=1e-5)
    np.testing.assert_allclose(z.std(axis=0), 1, rtol=1e-4)


def test_bundled_charts_are_what_the_generator_writes():
    for split in ("TRAIN", "TEST"):
        assert bundled_path(split).read_text(encoding="utf-8") == charts_text(split)
    ts = read_ts(bundled_path("TRAIN"))
    assert len(ts.series) == 300 and sorted(set(ts.labels)) == sorted(ts.class_labels)
    assert {len(s) for s in ts.series} <= set(range(40, 81)) and len({len(s) for s in ts.series}) > 20
    assert json.dumps(ts.labels).count("cyclic") == 50


def test_augment_is_a_seeded_window_scaled_and_jittered():
    z = np.random.default_rng(1).standard_normal((50, 2))
    before = z.copy()
    views = [augment(z, np.random.default_rng(7), crop=0.8) for _ in range(2)]
    np.testing.assert_array_equal(views[0], views[1])              # the same seed, the same view
    lengths, starts = set(), set()
    rng = np.random.default_rng(3)
    for _ in range(200):
        v = augment(z, rng, crop=0.8)
        L = len(v)
        assert 40 <= L <= 50                                          # ceil(0.8 * 50) = 40
        start = [s for s in range(50 - L + 1) if np.array_equal(z[s : s + L], v)]
        assert len(start) == 1                                        # a contiguous window
        lengths.add(L)
        starts.add(start[0])
    assert lengths == set(range(40, 51)) and starts == set(range(11))  # every window drawn
    np.testing.assert_array_equal(z, before)                          # the input is untouched
    rng = np.random.default_rng(5)
    state = rng.bit_generator.state
    assert augment(z, rng) is z and rng.bit_generator.state == state  # nothing asked: nothing drawn
    v = augment(z, np.random.default_rng(5), magnitude=0.1)
    ratio = v / z                                                     # one factor per channel
    np.testing.assert_allclose(ratio, np.broadcast_to(ratio[:1], ratio.shape), rtol=1e-12)
    assert np.all(np.abs(ratio[0] - 1) < 0.5) and not np.allclose(ratio[0], 1)
    noise = augment(z, np.random.default_rng(5), jitter=0.05) - z
    assert noise.shape == z.shape and 0.04 < noise.std() < 0.06
    assert len(augment(z[:1], np.random.default_rng(0), crop=0.01)) == 1  # never empty
    ramp = np.linspace(0, 1, 50)[:, None] * [1, -2]
    seen = set()
    for k in range(100):
        v = augment(ramp, np.random.default_rng(k), stretch=0.25)
        seen.add(len(v))
        assert 40 <= len(v) <= 63                                     # 50 / 1.25 .. 50 * 1.25
        np.testing.assert_allclose(v[[0, -1]], ramp[[0, -1]], atol=1e-12)  # ends kept
        np.testing.assert_allclose(np.diff(v, axis=0), np.diff(v, axis=0)[:1].repeat(len(v) - 1, 0),
                                   atol=1e-12)                        # a ramp stays a ramp
    assert min(seen) <= 42 and max(seen) >= 60
    assert augment(np.ones((1, 2)), np.random.default_rng(0), stretch=3).shape[1] == 2


def test_augmented_batches_are_fresh_views_drawn_from_the_step(tmp_path, rng):
    series = [np.round(rng.standard_normal((int(rng.integers(20, 41)), 2)), 6)
              for _ in range(12)]
    path = write(tmp_path, format_ts(series, ["a", "b"] * 6, "au"))
    kw = dict(ensemble=2, hidden=4, batch=4, stack=3, dtype="float64")
    plain = ClassifyTask(ClassifySettings(**kw, stretch=0.0), path)
    aug = dict(crop=0.5, stretch=0.0, jitter=0.1, magnitude=0.1)
    task, again = (ClassifyTask(ClassifySettings(**kw, **aug), path) for _ in range(2))
    assert task.augment and not plain.augment and ClassifySettings().augments  # default: stretch
    (members, _), (same, _) = task.batch(3), again.batch(3)
    for (x, lengths, y), (x2, lengths2, y2), b, (_, plain_lengths, _) in zip(
            members, same, task.batches, plain.batch(3)[0]):
        np.testing.assert_array_equal(x, x2)                          # drawn from the step alone
        np.testing.assert_array_equal(lengths, lengths2)
        full = np.array([len(series[i]) for i in b[3]])
        assert np.all(lengths >= np.ceil(np.ceil(0.5 * full) / 3))    # glued windows
        assert np.all(lengths <= plain_lengths)
        for n, L in enumerate(lengths):
            assert np.all(x[n, L:] == 0) and np.any(x[n, L - 1] != 0)  # zero beyond its length
    assert not np.array_equal(task.batch(3)[0][0][0], task.batch(4)[0][0][0])
    text = write(tmp_path, '{"text": "ab", "label": "x"}\n{"text": "ba", "label": "y"}\n',
                 "t.jsonl")
    assert not ClassifyTask(ClassifySettings(ensemble=1, hidden=4, crop=0.5), text).augment
    with pytest.raises(ValueError, match="--crop"):
        ClassifySettings(crop=0).check()
