"""Checkpoint directories: exact round trips, corruption detection, atomic replacement."""
import hashlib
import io
import json
import os

import numpy as np
import pytest

from rnnkit.train import checkpoint as ck
from rnnkit.train.checkpoint import load_checkpoint, rng_from_state, rng_state, save_checkpoint


def _example(seed=0, step=7):
    """A checkpoint's worth of data with awkward values: NaN, -0.0, inf, 0-d, empty.

    Seeded here, not from the `rng` fixture, so a test can rebuild what a fixture saved.
    """
    rng = np.random.default_rng(seed)
    w64 = rng.standard_normal((3, 5))
    w64[0, 0], w64[0, 1], w64[0, 2] = np.nan, -0.0, np.inf
    arrays = {
        "params": {
            "weight_ih_l0": rng.standard_normal((8, 4)).astype(np.float32),
            "weight_hh_l0": w64,
            "encoder.embedding": rng.standard_normal((6, 2)).astype(np.float32).T,  # F-order view
            "file": np.arange(5, dtype=np.int32),  # names np.savez would choke on
            "allow_pickle": np.array(step, dtype=np.int64),
        },
        "optim": {"m": np.zeros((0, 3)), "flags": np.array([True, False]),
                  "t": np.array([step], dtype=np.uint16)},
    }
    config = {"model": {"kind": "lstm", "sizes": [4, 8]}, "vocab": {"kind": "char",
                                                                    "tokens": ["<unk>", "é", "😀"]}}
    meta = {"step": step, "best_val_loss": float("inf"), "note": "héllo"}
    return config, arrays, meta


def _assert_same_arrays(got, want):
    assert set(got) == set(want)
    for group in want:
        assert set(got[group]) == set(want[group])
        for key, w in want[group].items():
            g = got[group][key]
            assert g.dtype == np.asarray(w).dtype, (group, key)
            assert g.shape == np.shape(w), (group, key)
            # bit-for-bit (NaN payloads and the sign of zero included)
            assert g.tobytes() == np.ascontiguousarray(w).tobytes(), (group, key)


def _retamper(directory, fname, data):
    """Replace a file *and* fix its checksum, to reach the checks behind the checksum."""
    (directory / fname).write_bytes(data)
    marker = json.loads((directory / "meta.json").read_text())
    marker["files"][fname] = hashlib.sha256(data).hexdigest()
    (directory / "meta.json").write_text(json.dumps(marker))


def _snapshot(directory):
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir()) if p.is_file()}


# ----------------------------------------------------------------------------- round trip

def test_round_trip_is_exact(tmp_path):
    config, arrays, meta = _example()
    out = save_checkpoint(tmp_path / "ck", config=config, arrays=arrays, meta=meta)
    assert out == tmp_path / "ck"
    assert sorted(os.listdir(out)) == ["config.json", "meta.json", "optim.npz", "params.npz"]
    got_config, got_arrays, got_meta = load_checkpoint(out)
    assert got_config == config
    assert got_meta == meta
    _assert_same_arrays(got_arrays, arrays)
    # the files are plain formats other tools can read, without pickle
    with np.load(out / "params.npz", allow_pickle=False) as z:
        assert z["weight_ih_l0"].dtype == np.float32
    assert json.loads((out / "config.json").read_text()) == config
    assert sorted(os.listdir(tmp_path)) == ["ck"]  # no temporary leftovers


def test_numpy_scalars_in_json_are_stored_as_numbers(tmp_path):
    save_checkpoint(tmp_path / "ck", config={"lr": np.float32(0.5), "n": np.int64(3)},
                    arrays={}, meta={"ok": np.bool_(True)})
    config, arrays, meta = load_checkpoint(tmp_path / "ck")
    assert config == {"lr": 0.5, "n": 3} and type(config["n"]) is int
    assert meta == {"ok": True} and arrays == {}


def test_resave_replaces_checkpoint_and_keeps_user_files(tmp_path):
    d = tmp_path / "ck"
    config, arrays, meta = _example(step=1)
    save_checkpoint(d, config=config, arrays=arrays, meta=meta)
    (d / "loss.png").write_bytes(b"\x89PNG fake")
    (d / "notes").mkdir()
    (d / "notes" / "a.txt").write_text("keep me")
    new = {"params": {"w": np.full(3, 2.5)}}  # no optim group this time
    save_checkpoint(d, config={"v": 2}, arrays=new, meta={"step": 2})
    assert sorted(os.listdir(d)) == ["config.json", "loss.png", "meta.json", "notes",
                                     "params.npz"]
    assert (d / "loss.png").read_bytes() == b"\x89PNG fake"
    assert (d / "notes" / "a.txt").read_text() == "keep me"
    config2, arrays2, meta2 = load_checkpoint(d)
    assert (config2, meta2) == ({"v": 2}, {"step": 2})
    _assert_same_arrays(arrays2, new)
    assert sorted(os.listdir(tmp_path)) == ["ck"]


# ----------------------------------------------------------------------------- bad input

def test_object_arrays_are_refused_on_save(tmp_path):
    with pytest.raises(ValueError, match="'params'.*'w'.*object dtype"):
        save_checkpoint(tmp_path / "ck", config={}, meta={},
                        arrays={"params": {"w": np.array([{"a": 1}], dtype=object)}})
    assert not (tmp_path / "ck").exists()  # validated before anything touched the disk
    assert os.listdir(tmp_path) == []


def test_bad_arguments_are_refused(tmp_path):
    with pytest.raises(ValueError, match="group name"):
        save_checkpoint(tmp_path / "a", config={}, meta={}, arrays={"../x": {}})
    with pytest.raises(ValueError, match="JSON-serialisable"):
        save_checkpoint(tmp_path / "a", config={"f": object()}, meta={}, arrays={})
    with pytest.raises(ValueError, match="config must be a dict"):
        save_checkpoint(tmp_path / "a", config=[1], meta={}, arrays={})
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="not a directory"):
        save_checkpoint(tmp_path / "file", config={}, meta={}, arrays={})
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    with pytest.raises(ValueError, match="symlink"):
        save_checkpoint(tmp_path / "link", config={}, meta={}, arrays={})
    assert sorted(os.listdir(tmp_path)) == ["file", "link", "real"]
    assert os.listdir(tmp_path / "real") == []


# ----------------------------------------------------------------------------- corruption

@pytest.fixture
def saved(tmp_path):
    d = tmp_path / "ck"
    config, arrays, meta = _example()
    save_checkpoint(d, config=config, arrays=arrays, meta=meta)
    return d


def test_truncated_params_detected(saved):
    data = (saved / "params.npz").read_bytes()
    (saved / "params.npz").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=r"corrupt checkpoint: .*params\.npz: checksum mismatch"):
        load_checkpoint(saved)
    # the same truncation with a matching checksum is still caught by the npz reader
    _retamper(saved, "params.npz", data[: len(data) // 2])
    with pytest.raises(ValueError, match=r"corrupt checkpoint: .*params\.npz"):
        load_checkpoint(saved)


def test_tampered_byte_detected(saved):
    data = bytearray((saved / "optim.npz").read_bytes())
    data[-40] ^= 0x01  # one bit inside the archive
    (saved / "optim.npz").write_bytes(bytes(data))
    with pytest.raises(ValueError, match=r"optim\.npz: checksum mismatch"):
        load_checkpoint(saved)


def test_tampered_config_detected(saved):
    text = (saved / "config.json").read_text().replace("lstm", "gru ")
    (saved / "config.json").write_text(text)
    with pytest.raises(ValueError, match=r"config\.json: checksum mismatch"):
        load_checkpoint(saved)
    _retamper(saved, "config.json", b"{not json")
    with pytest.raises(ValueError, match=r"config\.json: invalid JSON"):
        load_checkpoint(saved)


def test_missing_files_detected(saved, tmp_path):
    (saved / "optim.npz").unlink()
    with pytest.raises(ValueError, match=r"optim\.npz: missing"):
        load_checkpoint(saved)
    (saved / "meta.json").unlink()
    with pytest.raises(ValueError, match=r"corrupt checkpoint: .*meta\.json: missing"):
        load_checkpoint(saved)
    with pytest.raises(ValueError, match="no checkpoint at"):
        load_checkpoint(tmp_path / "elsewhere")


def test_bad_meta_detected(saved):
    (saved / "meta.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match=r"meta\.json: not an rnnkit-checkpoint"):
        load_checkpoint(saved)
    (saved / "meta.json").write_bytes(b"\xff\xfe")
    with pytest.raises(ValueError, match=r"meta\.json: invalid JSON"):
        load_checkpoint(saved)


def test_pickled_object_array_refused_on_load(saved):
    buf = io.BytesIO()
    np.savez(buf, w=np.array([{"evil": 1}], dtype=object))  # numpy pickles this one
    _retamper(saved, "params.npz", buf.getvalue())
    with pytest.raises(ValueError, match=r"params\.npz: array 'w' is an object array"):
        load_checkpoint(saved)


def test_non_npz_file_refused(saved):
    buf = io.BytesIO()
    np.save(buf, np.arange(3))  # a bare .npy, not an archive
    _retamper(saved, "params.npz", buf.getvalue())
    with pytest.raises(ValueError, match=r"params\.npz: not an \.npz archive"):
        load_checkpoint(saved)
    _retamper(saved, "params.npz", b"plain text, not zip")
    with pytest.raises(ValueError, match=r"params\.npz: not an \.npz archive"):
        load_checkpoint(saved)


# ----------------------------------------------------------------------------- crashes

def test_crash_while_writing_leaves_previous_checkpoint(saved, tmp_path, monkeypatch):
    before = _snapshot(saved)
    real_write = ck._write_file
    calls = []

    def failing_write(path, data):
        calls.append(path.name)
        if len(calls) == 2:  # config.json written, then the disk "fills up"
            raise OSError(28, "No space left on device")
        real_write(path, data)

    monkeypatch.setattr(ck, "_write_file", failing_write)
    _, arrays, _ = _example(step=99)
    with pytest.raises(ValueError, match="cannot write checkpoint .*No space left"):
        save_checkpoint(saved, config={"new": True}, arrays=arrays, meta={"step": 99})
    assert calls == ["config.json", "params.npz"]
    assert _snapshot(saved) == before
    assert load_checkpoint(saved)[2]["step"] == 7
    assert sorted(os.listdir(tmp_path)) == ["ck"]  # temp directory cleaned up


def test_crash_between_renames_rolls_back(saved, tmp_path, monkeypatch):
    before = _snapshot(saved)
    real_rename = os.rename
    calls = []

    def failing_rename(src, dst):
        calls.append((os.path.basename(src), os.path.basename(dst)))
        if len(calls) == 2:  # old moved to the backup, new not yet in place
            raise OSError(5, "Input/output error")
        real_rename(src, dst)

    monkeypatch.setattr(os, "rename", failing_rename)
    with pytest.raises(ValueError, match="cannot write checkpoint"):
        save_checkpoint(saved, config={"new": True}, arrays={}, meta={"step": 99})
    assert calls[0][0] == "ck" and calls[0][1].startswith(".ck.old-")
    assert calls[1][0].startswith(".ck.tmp-") and calls[1][1] == "ck"
    assert calls[2] == (calls[0][1], "ck")  # the rollback
    assert _snapshot(saved) == before
    assert load_checkpoint(saved)[2]["step"] == 7
    assert sorted(os.listdir(tmp_path)) == ["ck"]


def test_hard_crash_between_renames_loads_backup(saved, tmp_path):
    # What kill -9 between the two renames leaves: no ck, a complete backup, a complete tmp.
    config, arrays, meta = _example()
    os.rename(saved, tmp_path / ".ck.old-123-abcd")
    (tmp_path / ".ck.tmp-123-abcd").mkdir()
    got_config, got_arrays, got_meta = load_checkpoint(saved)
    assert (got_config, got_meta) == (config, meta)
    _assert_same_arrays(got_arrays, arrays)
    # the next successful save puts ck back and removes the stale backup
    save_checkpoint(saved, config={"v": 2}, arrays={}, meta={"step": 8})
    assert load_checkpoint(saved)[2] == {"step": 8}
    assert not (tmp_path / ".ck.old-123-abcd").exists()


# ----------------------------------------------------------------------------- rng state

@pytest.mark.parametrize("bit_generator", ["PCG64", "MT19937", "Philox", "SFC64"])
def test_rng_state_round_trip_gives_identical_draws(bit_generator):
    gen = np.random.Generator(getattr(np.random, bit_generator)(2024))
    gen.standard_normal(3)
    gen.integers(0, 10, size=1, dtype=np.uint32)  # leaves a buffered 32-bit half behind
    state = json.loads(json.dumps(rng_state(gen)))  # must survive real JSON
    clone = rng_from_state(state)
    assert type(clone.bit_generator).__name__ == bit_generator
    np.testing.assert_array_equal(clone.integers(0, 2**31, size=4, dtype=np.uint32),
                                  gen.integers(0, 2**31, size=4, dtype=np.uint32))
    np.testing.assert_array_equal(clone.standard_normal(5), gen.standard_normal(5))
    np.testing.assert_array_equal(clone.permutation(20), gen.permutation(20))


def test_rng_state_through_a_checkpoint(tmp_path):
    gen = np.random.default_rng(5)
    gen.random(7)
    save_checkpoint(tmp_path / "ck", config={}, arrays={}, meta={"rng": rng_state(gen)})
    resumed = rng_from_state(load_checkpoint(tmp_path / "ck")[2]["rng"])
    np.testing.assert_array_equal(resumed.random(6), gen.random(6))


def test_rng_from_state_rejects_garbage():
    with pytest.raises(ValueError, match="unknown bit generator"):
        rng_from_state({"bit_generator": "os.system"})
    with pytest.raises(ValueError, match="invalid PCG64 rng state"):
        rng_from_state({"bit_generator": "PCG64", "state": "nope"})
    with pytest.raises(ValueError, match="Generator"):
        rng_state(np.random.RandomState(0))
