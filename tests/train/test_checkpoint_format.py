"""Checkpoint format versions: version 2 checks a digest of meta.json's meta; run folders written
by rnnkit before the shared engine (format 1: no digest, a ``max_time`` setting) still load
for inference, refuse --resume with one clear line, and a forecaster of format 1 says to retrain."""
import hashlib
import json

import numpy as np
import pytest

import rnnkit
from rnnkit.cli import main
from rnnkit.train.checkpoint import checkpoint_format, load_checkpoint


def _train_lm(tmp_path):
    text = tmp_path / "t.txt"
    text.write_text("the quick brown fox jumps over the lazy dog. " * 40)
    out = tmp_path / "run"
    assert main(["lm", "train", "--text", str(text), "--out", str(out), "--steps", "4",
                 "--eval-every", "2", "--hidden", "8", "--embed", "4", "--seq-len", "16",
                 "--batch", "4", "--quiet"]) == 0
    return out


def _as_format_1(out, settings_edit):
    """Rewrite a run folder as rnnkit before the engine wrote it: version 1, no meta digest, the
    settings as they were then (``settings_edit``), config.json's file checksum updated."""
    config = json.loads((out / "config.json").read_text())
    settings_edit(config["settings"])
    raw = json.dumps(config).encode()
    (out / "config.json").write_bytes(raw)
    marker = json.loads((out / "meta.json").read_text())
    marker["version"] = 1
    del marker["meta_sha256"]
    marker["files"]["config.json"] = hashlib.sha256(raw).hexdigest()
    (out / "meta.json").write_text(json.dumps(marker))


def test_format_1_lm_loads_for_inference_and_refuses_resume(tmp_path, capsys):
    out = _train_lm(tmp_path)
    assert checkpoint_format(out) == 2
    _, arrays, _ = load_checkpoint(out)
    best = arrays["best"]

    def then(s):
        s["max_time"] = None  # a setting then, a flag now
        del s["seq_len"]  # stands for a setting added since: today's default fills it
    _as_format_1(out, then)
    assert checkpoint_format(out) == 1
    model = rnnkit.load(out)
    state = model.model.state_dict() if hasattr(model, "model") else model.state_dict()
    for name, value in best.items():
        np.testing.assert_array_equal(state[name], value, err_msg=name)
    capsys.readouterr()
    assert main(["lm", "train", "--text", str(tmp_path / "t.txt"), "--out", str(out), "--resume",
                 "--steps", "6", "--quiet"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "older rnnkit (checkpoint format 1)" in err[0]


def test_format_1_keeps_refusing_unknown_settings(tmp_path):
    out = _train_lm(tmp_path)
    _as_format_1(out, lambda s: s.update(colour="red"))
    with pytest.raises(ValueError, match=r"unknown \['colour'\]"):
        rnnkit.load(out)


def test_format_2_needs_its_meta_digest_and_newer_formats_are_named(tmp_path):
    out = _train_lm(tmp_path)
    marker = json.loads((out / "meta.json").read_text())
    (out / "meta.json").write_text(json.dumps({k: v for k, v in marker.items()
                                               if k != "meta_sha256"}))
    with pytest.raises(ValueError, match="checksum mismatch of its meta"):
        load_checkpoint(out)
    (out / "meta.json").write_text(json.dumps({**marker, "version": 3}))
    with pytest.raises(ValueError, match="unsupported format version 3"):
        load_checkpoint(out)


def test_format_1_forecaster_says_to_retrain(tmp_path, capsys):
    csv = tmp_path / "s.csv"
    csv.write_text("t,y\n" + "".join(f"{t},{10 + np.sin(t / 3):.4f}\n" for t in range(60)))
    out = tmp_path / "fc"
    assert main(["forecast", "train", "--csv", str(csv), "--target", "y", "--horizon", "3",
                 "--out", str(out), "--steps", "4", "--eval-every", "2", "--ensemble", "1",
                 "--hidden", "4", "--quiet"]) == 0
    _as_format_1(out, lambda s: s.update(max_time=None))
    capsys.readouterr()
    assert main(["forecast", "predict", "--model", str(out), "--csv", str(csv)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "older rnnkit (checkpoint format 1)" in err[0] and "train it again" in err[0]
