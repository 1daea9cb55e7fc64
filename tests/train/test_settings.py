"""Settings <-> flags <-> JSON: one definition of the shared flags, strict round trips."""
import argparse
import dataclasses
import json

import numpy as np
import pytest

from rnnkit.apps.asr.train import ASRSettings
from rnnkit.apps.forecast.train import ForecastSettings
from rnnkit.apps.lm.train import LMSettings
from rnnkit.apps.seq2seq.train import TranslateSettings
from rnnkit.train.checkpoint import load_checkpoint, save_checkpoint
from rnnkit.train.cli import add_train_options, parse_settings
from rnnkit.train.settings import TrainSettings, from_dict, merge_resumed

APPS = [LMSettings, ASRSettings, TranslateSettings, ForecastSettings]
SHARED = [f.name for f in dataclasses.fields(TrainSettings)]


def parser_for(cls):
    p = argparse.ArgumentParser()
    add_train_options(p, cls)
    return p


@pytest.mark.parametrize("cls", APPS)
def test_every_app_has_the_shared_flags_with_one_help_text(cls):
    shared = {a.dest: a for a in parser_for(TrainSettings)._actions}
    mine = {a.dest: a for a in parser_for(cls)._actions}
    for name in SHARED + ["out", "overwrite", "resume", "max_time", "quiet"]:
        assert name in mine, name
        base_help = shared[name].help.rsplit(" (default:", 1)[0]
        assert mine[name].help.startswith(base_help), name
        assert mine[name].option_strings == shared[name].option_strings
        assert mine[name].choices == shared[name].choices


@pytest.mark.parametrize("cls", APPS)
def test_settings_round_trip_through_json(cls):
    s = cls(seed=7, lr=0.0123, **({"horizon": 5} if cls is ForecastSettings else {}))
    d = json.loads(json.dumps(dataclasses.asdict(s)))
    assert from_dict(cls, d) == s
    with pytest.raises(ValueError, match=r"unknown \['colour'\]"):
        from_dict(cls, {**d, "colour": "red"})
    del d["lr"]
    with pytest.raises(ValueError, match=r"missing \['lr'\]"):
        from_dict(cls, d)
    with pytest.raises(ValueError, match="must be a JSON object"):
        from_dict(cls, [1, 2])


@pytest.mark.parametrize("flags,message", [
    (["--steps", "0"], "--steps must be >= 1, got 0"),
    (["--steps", "-3"], "--steps must be >= 1, got -3"),
    (["--eval-every", "0"], "--eval-every must be >= 1, got 0"),
    (["--batch", "0"], "--batch must be >= 1, got 0"),
    (["--hidden", "0"], "--hidden must be >= 1, got 0"),
    (["--layers", "0"], "--layers must be >= 1, got 0"),
    (["--dropout", "1"], "--dropout must be in [0, 1), got 1.0"),
    (["--dropout", "-0.1"], "--dropout must be in [0, 1), got -0.1"),
    (["--val-fraction", "1"], "--val-fraction must be in [0, 1), got 1.0"),
    (["--lr", "0"], "--lr must be > 0, got 0.0"),
    (["--lr", "nan"], "--lr must be > 0, got nan"),
    (["--max-time", "0"], "--max-time must be a number of seconds > 0, got 0.0"),
    (["--max-time", "-1"], "--max-time must be a number of seconds > 0, got -1.0"),
    (["--max-time", "nan"], "--max-time must be a number of seconds > 0, got nan"),
])
@pytest.mark.parametrize("cls", APPS)
def test_shared_flags_are_validated_alike(cls, flags, message):
    args = parser_for(cls).parse_args(["--out", "x", *flags]
                                      + (["--horizon", "3"] if cls is ForecastSettings else []))
    with pytest.raises(ValueError) as exc:
        parse_settings(args, cls)
    assert str(exc.value) == message


def test_resumed_settings_keep_the_checkpoint_except_resumable_ones():
    saved = LMSettings(hidden=64, steps=100)
    merged = merge_resumed(saved, LMSettings(steps=300, eval_every=7), {"steps", "eval_every"})
    assert (merged.hidden, merged.steps, merged.eval_every) == (64, 300, 7)
    with pytest.raises(ValueError, match="--seq-len 50 differs from the checkpoint's 100"):
        merge_resumed(saved, LMSettings(seq_len=50), {"seq_len"})


def test_an_edited_meta_json_is_reported(tmp_path):
    save_checkpoint(tmp_path / "c", config={"app": "x"}, arrays={"p": {"w": np.ones(2)}},
                    meta={"step": 10, "history": [1.0, 2.0]})
    load_checkpoint(tmp_path / "c")
    meta = json.loads((tmp_path / "c" / "meta.json").read_text())
    meta["meta"]["step"] = 11
    (tmp_path / "c" / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="checksum mismatch of its meta"):
        load_checkpoint(tmp_path / "c")
