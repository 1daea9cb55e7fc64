"""Bad input reaches the user as one line on stderr, a non-zero exit, no traceback, and leaves an
existing checkpoint loadable - in every application's ``train`` and the commands that read runs."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import rnnkit
from rnnkit.cli import main
from rnnkit.train.checkpoint import load_checkpoint, save_checkpoint

from test_resume_apps import asr_data, forecast_data, lm_data, translate_data  # noqa: E402

MAKERS = {"lm": lm_data, "translate": translate_data, "asr": asr_data, "forecast": forecast_data}


@pytest.fixture(scope="module", params=sorted(MAKERS))
def trained(request, tmp_path_factory):
    folder = tmp_path_factory.mktemp(f"bad-{request.param}")
    base = MAKERS[request.param](folder)
    out = folder / "run"
    assert main(base + ["--steps", "10", "--eval-every", "5", "--out", str(out), "--quiet"]) == 0
    return request.param, base, out


def one_line_error(capsys, status, expect: str, code: int = 1) -> str:
    err = capsys.readouterr().err
    assert status == code, err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert expect in err, err
    return err


def params_of(out):
    arrays = load_checkpoint(out)[1]
    return {k: v for group in arrays.values() for k, v in group.items()}


@pytest.mark.parametrize("flags,expect", [
    (["--steps", "0"], "--steps must be >= 1, got 0"),
    (["--steps", "-5"], "--steps must be >= 1, got -5"),
    (["--eval-every", "0"], "--eval-every must be >= 1, got 0"),
    (["--max-time", "0"], "--max-time must be a number of seconds > 0"),
    (["--max-time", "nan"], "--max-time must be a number of seconds > 0, got nan"),
    (["--batch", "0"], "--batch must be >= 1, got 0"),
    (["--hidden", "0"], "--hidden must be >= 1, got 0"),
    (["--layers", "-1"], "--layers must be >= 1, got -1"),
    (["--dropout", "1.5"], "--dropout must be in [0, 1), got 1.5"),
    (["--val-fraction", "0.0"], "validation"),
])
def test_bad_flags_are_one_line_and_touch_no_checkpoint(trained, capsys, flags, expect):
    app, base, out = trained
    before = params_of(out)
    status = main(base + ["--steps", "10", "--eval-every", "5"] + flags + ["--out", str(out),
                                                                           "--overwrite"])
    one_line_error(capsys, status, expect)
    after = params_of(out)
    for k in before:
        np.testing.assert_array_equal(before[k], after[k])


def test_seq_len_below_one_and_unknown_flags(tmp_path, capsys):
    base = lm_data(tmp_path)
    one_line_error(capsys, main(base + ["--seq-len", "0", "--out", str(tmp_path / "m")]),
                   "--seq-len must be >= 1, got 0")
    with pytest.raises(SystemExit) as exc:
        main(base + ["--out", str(tmp_path / "m"), "--colour", "red"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unrecognized arguments: --colour red" in err
    assert not (tmp_path / "m").exists()


def test_resume_of_a_folder_that_never_trained(trained, capsys, tmp_path):
    app, base, out = trained
    (tmp_path / "empty").mkdir()
    status = main(base + ["--out", str(tmp_path / "empty"), "--resume"])
    one_line_error(capsys, status, "holds no checkpoint (no run has trained there)")


def test_a_changed_model_setting_on_resume_is_refused(trained, capsys):
    app, base, out = trained
    status = main(base + ["--out", str(out), "--resume", "--hidden", "7"])
    one_line_error(capsys, status, "--resume: --hidden 7 differs from the checkpoint's")


@pytest.mark.parametrize("edit", ["unknown", "missing"])
def test_a_config_with_unknown_or_missing_settings(trained, capsys, tmp_path, edit):
    app, base, out = trained
    config, arrays, meta = load_checkpoint(out)
    if edit == "unknown":
        config["settings"]["colour"] = "red"
    else:
        del config["settings"]["lr"]
    save_checkpoint(tmp_path / "edited", config=config, arrays=arrays, meta=meta)
    for args in (base + ["--out", str(tmp_path / "edited"), "--resume"],
                 ["export", "onnx", "--model", str(tmp_path / "edited"), "--out",
                  str(tmp_path / "x.onnx")]):
        status = main(args)
        what = "unknown ['colour']" if edit == "unknown" else "missing ['lr']"
        one_line_error(capsys, status, what)
    with pytest.raises(ValueError, match="settings do not match this version"):
        rnnkit.load(tmp_path / "edited")


def test_an_edited_meta_json_is_refused(trained, capsys, tmp_path):
    app, base, out = trained
    config, arrays, meta = load_checkpoint(out)
    save_checkpoint(tmp_path / "c", config=config, arrays=arrays, meta=meta)
    marker = json.loads((tmp_path / "c" / "meta.json").read_text())
    marker["meta"]["step"] = 3
    (tmp_path / "c" / "meta.json").write_text(json.dumps(marker))
    status = main(base + ["--out", str(tmp_path / "c"), "--resume"])
    one_line_error(capsys, status, "checksum mismatch of its meta")


def test_output_files_in_missing_folders_are_refused_before_any_work(trained, capsys, tmp_path):
    app, base, out = trained
    missing = tmp_path / "no" / "such"
    status = main(["export", "onnx", "--model", str(out), "--out", str(missing / "m.onnx")])
    err = one_line_error(capsys, status, "does not exist")
    assert ".tmp" not in err
    if app in ("asr", "translate"):  # a model no ONNX exporter knows: said in one line too
        status = main(["export", "onnx", "--model", str(out), "--out", str(tmp_path / "m.onnx")])
        one_line_error(capsys, status, "ONNX export does not support")
        assert not (tmp_path / "m.onnx").exists()
    if app == "forecast":
        csv = base[base.index("--csv") + 1]
        status = main(["forecast", "predict", "--model", str(out), "--csv", csv, "--plot",
                       str(missing / "p.png")])
        one_line_error(capsys, status, "does not exist")
    if app == "translate":
        status = main(["translate", "run", "--model", str(out), "--plot", str(missing / "a.png"),
                       "abc"])
        one_line_error(capsys, status, "does not exist")
    assert not missing.parent.exists()


def test_translate_input_outside_the_vocabulary_is_reported(tmp_path, capsys):
    base = translate_data(tmp_path)
    assert main(base + ["--steps", "3", "--out", str(tmp_path / "m"), "--quiet"]) == 0
    capsys.readouterr()
    assert main(["translate", "run", "--model", str(tmp_path / "m"), "abxyz"]) == 0
    err = capsys.readouterr().err
    assert "3 symbol(s) outside the model's source vocabulary, read as <unk>: 'x' 'y' 'z'" in err


def test_rnnkit_threads_that_is_not_a_number():
    env = {**os.environ, "RNNKIT_THREADS": "two"}
    for args in (["--help"], ["lm", "sample", "--model", "nowhere"]):
        out = subprocess.run([sys.executable, "-m", "rnnkit.cli", *args], env=env,
                             capture_output=True, text=True, timeout=120)
        if args == ["--help"]:
            assert out.returncode == 0 and "usage: rnnkit" in out.stdout
        else:
            assert out.returncode == 1 and out.stderr == (
                "rnnkit: error: RNNKIT_THREADS must be a whole number >= 1, got 'two'\n")
