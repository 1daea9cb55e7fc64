"""Manifests, synthetic speech from espeak-ng, and length-bucketed batches of features.

A manifest is JSON lines, one utterance each: ``{"audio": "wav/00001.wav", "text": "three one"}``
with the audio path relative to the manifest's folder (or absolute); other keys are ignored.
"""
from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import wave
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from ...data.audio import FeatureConfig, resample, wav_features, write_wav
from .model import normalize_text

DIGITS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
WORDS = ["yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go", "forward",
         "backward", "follow", "learn", "visual", "bed", "bird", "cat", "dog", "happy", "house",
         "tree", "wow", "marvin", "sheila", "don't", "it's", "can't", "we'll", "open", "close"]
VOCABS = {"digits": (DIGITS, 1, 7), "words": (WORDS, 1, 4)}
# accents of espeak-ng's own English voices (the mbrola voices need extra packages)
ACCENTS = ["en-gb", "en-us", "en-gb-scotland", "en-gb-x-gbclan", "en-gb-x-rp", "en-gb-x-gbcwmd",
           "en-029", "en-us-nyc"]
EXCLUDED_VARIANTS = {"whisper", "whisperf"}  # no voicing: a different task


def read_manifest(path: str | Path) -> list[tuple[Path, str]]:
    """[(audio path, normalised text)] from a JSON-lines manifest; errors name the line."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path}: not UTF-8 ({exc.reason})") from None
    base, items = path.parent, []
    for no, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}:{no}: not JSON ({exc.msg})") from None
        if not isinstance(rec, dict) or not isinstance(rec.get("audio"), str) \
                or not isinstance(rec.get("text"), str):
            raise ValueError(f"{path}:{no}: expected an object with string keys 'audio' and 'text'")
        audio = Path(rec["audio"])
        audio = audio if audio.is_absolute() else base / audio
        if not audio.is_file():
            raise ValueError(f"{path}:{no}: audio file {audio} not found")
        items.append((audio, normalize_text(rec["text"])))
    if not items:
        raise ValueError(f"{path}: the manifest lists no utterances")
    return items


def load_features(items, cfg: FeatureConfig, workers: int = 1) -> list[np.ndarray]:
    """Features of every manifest item (threads: NumPy's FFTs release the GIL)."""
    paths = [p for p, _ in items]
    if workers <= 1:
        return [wav_features(p, cfg) for p in paths]
    with ThreadPoolExecutor(workers) as ex:
        return list(ex.map(lambda p: wav_features(p, cfg), paths))


# ------------------------------------------------------------------------------ espeak-ng
def espeak_path() -> str:
    exe = shutil.which("espeak-ng")
    if exe is None:
        raise ValueError("espeak-ng is not installed (Debian/Ubuntu: apt-get install espeak-ng)")
    return exe


def _listing(exe: str, what: str, column: int) -> list[str]:
    out = subprocess.run([exe, f"--voices={what}"], capture_output=True, text=True, check=True).stdout
    rows = [line.split() for line in out.splitlines()[1:]]
    return [r[column] for r in rows if len(r) > column]


def available_voices(exe: str | None = None) -> tuple[list[str], list[str]]:
    """(English accents, voice variants) that this espeak-ng really has.

    espeak-ng silently falls back to its default voice for an unknown name, so every name used
    is checked against its own listings first.
    """
    exe = exe or espeak_path()
    langs = set(_listing(exe, "en", 1))
    accents = [a for a in ACCENTS if a in langs]
    files = _listing(exe, "variant", 4)  # File column: !v/NAME
    variants = sorted({f.split("/", 1)[1] for f in files if f.startswith("!v/")} - EXCLUDED_VARIANTS)
    variant_dir = _variant_dir(exe)
    if variant_dir is not None:  # names whose file really exists (a listing can truncate names)
        variants = [v for v in variants if (variant_dir / v).is_file()]
    if not accents or not variants:
        raise ValueError("espeak-ng lists no English accents or no voice variants")
    return accents, variants


def _variant_dir(exe: str) -> Path | None:
    out = subprocess.run([exe, "--version"], capture_output=True, text=True).stdout
    # "eSpeak NG text-to-speech: 1.51  Data at: /usr/lib/x86_64-linux-gnu/espeak-ng-data"
    if "Data at:" in out:
        d = Path(out.split("Data at:", 1)[1].strip()) / "voices" / "!v"
        return d if d.is_dir() else None
    return None


def heldout_variant(name: str) -> bool:
    """About one variant in five is never used for training (stable across machines)."""
    return zlib.crc32(name.encode()) % 5 == 0


def split_variants(variants: list[str], split: str) -> list[str]:
    if split == "all":
        return list(variants)
    keep = [v for v in variants if heldout_variant(v) == (split == "heldout")]
    if not keep:
        raise ValueError(f"no voice variants in split {split!r}")
    return keep


def synthesize(exe: str, text: str, voice: str, speed: int, pitch: int) -> tuple[np.ndarray, int]:
    """espeak-ng speaking ``text``: (float samples, rate)."""
    res = subprocess.run([exe, "-v", voice, "-s", str(speed), "-p", str(pitch), "--stdout", text],
                         capture_output=True, check=False)
    if res.returncode != 0 or len(res.stdout) < 44:
        raise ValueError(f"espeak-ng failed for voice {voice}: {res.stderr.decode(errors='replace').strip()}")
    with wave.open(io.BytesIO(res.stdout), "rb") as w:  # streamed: the header's length is bogus
        rate = w.getframerate()
        raw = w.readframes(w.getnframes())
    return np.frombuffer(raw[: len(raw) // 2 * 2], "<i2").astype(np.float32) / 32768, rate


def make_data(out: str | Path, n: int, vocab: str | list[str] = "digits", seed: int = 0,
              split: str = "train", rate: int = 16000, overwrite: bool = False, workers: int = 2,
              progress=None, words_per_utterance: tuple[int, int] | None = None) -> Path:
    """Synthesise ``n`` utterances into out/wav/*.wav and out/manifest.jsonl (written last, atomically).

    Each utterance: random words of the vocabulary (a name in VOCABS, or a list of lower-case
    words; 1-7 digits, 1-4 command words, or ``words_per_utterance`` (lo, hi)), a random English
    accent and voice variant (from ``split``: train, heldout or all), speed 130-210 words/min,
    pitch 20-80, white noise at a random 15-40 dB SNR, resampled to ``rate``.
    """
    if n < 1:
        raise ValueError(f"--n must be >= 1, got {n}")
    if isinstance(vocab, str):
        if vocab not in VOCABS:
            raise ValueError(f"--vocab must be one of {sorted(VOCABS)}, got {vocab!r}")
        words, lo, hi = VOCABS[vocab]
    else:
        words, (lo, hi) = [normalize_text(w) for w in vocab], (1, 4)
        if not words or not all(words):
            raise ValueError("the vocabulary is empty or has empty words")
    if words_per_utterance is not None:
        lo, hi = words_per_utterance
    out = Path(out)
    manifest = out / "manifest.jsonl"
    if manifest.exists() and not overwrite:
        raise ValueError(f"{manifest} exists: pass --overwrite to replace it, or choose another --out")
    exe = espeak_path()
    accents, variants = available_voices(exe)
    variants = split_variants(variants, split)
    rng = np.random.default_rng(seed)
    plan = []
    for k in range(n):
        text = " ".join(rng.choice(words, rng.integers(lo, hi + 1)))
        voice = f"{rng.choice(accents)}+{rng.choice(variants)}"
        plan.append((k, text, voice, int(rng.integers(130, 211)), int(rng.integers(20, 81)),
                     float(rng.uniform(15, 40)), int(rng.integers(2**31))))
    (out / "wav").mkdir(parents=True, exist_ok=True)

    def one(item):
        k, text, voice, speed, pitch, snr, noise_seed = item
        x, r = synthesize(exe, text, voice, speed, pitch)
        x = resample(x, r, rate)
        power = float(np.mean(x.astype(np.float64) ** 2)) or 1e-8
        noise = np.random.default_rng(noise_seed).standard_normal(len(x)) * np.sqrt(power / 10 ** (snr / 10))
        path = out / "wav" / f"{k:06d}.wav"
        write_wav(path, x + noise, rate)
        return {"audio": f"wav/{k:06d}.wav", "text": text, "voice": voice, "speed": speed,
                "pitch": pitch, "snr_db": round(snr, 1)}

    with ThreadPoolExecutor(max(workers, 1)) as ex:
        records = []
        for rec in ex.map(one, plan):
            records.append(rec)
            if progress is not None:
                progress(len(records))
    tmp = manifest.with_name(f".manifest.jsonl.tmp-{os.getpid()}")
    tmp.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    os.replace(tmp, manifest)
    return manifest


def transcribe_features(paths, cfg: FeatureConfig) -> list[np.ndarray]:
    out = []
    for p in paths:
        p = Path(p)
        if not p.is_file():
            raise ValueError(f"{p}: no such file")
        out.append(wav_features(p, cfg))
    return out


__all__ = ["read_manifest", "load_features", "make_data",
           "available_voices", "split_variants", "heldout_variant", "transcribe_features"]
