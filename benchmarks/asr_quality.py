"""Speech-recognition quality: does a digit recogniser trained on synthetic speech transfer?

    nice -n 5 python benchmarks/asr_quality.py --work /tmp/rnnkit_asr_bench [--max-time 900]
    python benchmarks/asr_quality.py --work /tmp/rnnkit_asr_bench --model DIR   # score a model

1. ``asr make-data --vocab digits`` (training voices of espeak-ng and, where installed, DECtalk):
   --n-train utterances; then ``asr train --max-time`` with the default settings (or --model: score that).
2. Test sets, every one spoken digit strings of 1-7 digits:
   (a) held-out voices of the training synthesisers: ``make-data --voices heldout`` with
       espeak-ng (held-out variants) and with DECtalk (held-out speakers Frank and Ursula);
   (b) a synthesiser family never used in training: flite (voices kal, kal16, awb, rms, slt) and
       festival (kal_diphone, ked_diphone, cmu_us_slt_arctic_hts), Debian packages flite,
       festival, festvox-kallpc16k, festvox-kdlpc16k, festvox-us-slt-hts - clean, and through
       the telephone channel;
   (c) real people: the recordings of the digits zero..nine by Allison Smith in Debian's
       asterisk-core-sounds-en-wav (/usr/share/asterisk/sounds/en_US_f_Allison/digits/0.wav ..
       9.wav, 8 kHz 16-bit PCM) joined into random digit strings (50-300 ms of line noise
       between digits, the way an IVR speaks digits) and written as 8 kHz mu-law WAV, and the
       ten recordings one at a time (every string is made of them); and
       pocketsphinx-testdata's TIDIGITS recording tidigits/dhd.2934z.raw ("two nine three four
       zero", 16 kHz raw PCM, another speaker) sent through the telephone channel to 8 kHz mu-law.
   Missing packages make their row say "skipped" and why.
3. CER/WER of greedy decoding, plain prefix beam search (8) and the word-constrained beam search
   (``asr eval``'s default: beam 8, --lm auto).

BLAS threads are pinned to 1 (set before NumPy loads): the recurrent steps are small GEMMs for
which OpenBLAS threads cost far more than they give, above all on shared cores.
"""
from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from dataclasses import asdict  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
from fair import cpu_info  # noqa: E402  (benchmarks/ is on sys.path: the script's folder)

from rnnkit.apps.asr.data import (DIGITS, load_features, make_data, read_manifest,  # noqa: E402
                                  resolve_synths)
from rnnkit.apps.asr.decode import error_rates  # noqa: E402
from rnnkit.apps.asr.train import ASRSettings, ASRTask, load_model  # noqa: E402
from rnnkit.train.engine import fit  # noqa: E402
from rnnkit.data.audio import read_wav, resample, write_wav  # noqa: E402
from rnnkit.data.augment import mulaw_encode, telephone  # noqa: E402

FLITE_VOICES = ["kal", "kal16", "awb", "rms", "slt"]
FESTIVAL_VOICES = ["kal_diphone", "ked_diphone", "cmu_us_slt_arctic_hts"]
ALLISON = Path("/usr/share/asterisk/sounds/en_US_f_Allison/digits")
TIDIGITS = Path("/usr/share/pocketsphinx/test/data/tidigits/dhd.2934z.raw")


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load {one:.1f}/{five:.1f}/{fifteen:.1f} on {os.cpu_count()} cores"




def digit_strings(n: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(DIGITS, rng.integers(1, 8))) for _ in range(n)]


def write_mulaw_wav(path: Path, x: np.ndarray, rate: int) -> None:
    """8-bit G.711 mu-law WAV (format 7), as telephone recordings often are."""
    codes = mulaw_encode(x).tobytes()
    fmt = (7).to_bytes(2, "little") + (1).to_bytes(2, "little") + rate.to_bytes(4, "little") \
        + rate.to_bytes(4, "little") + (1).to_bytes(2, "little") + (8).to_bytes(2, "little") + b"\0\0"
    body = b"WAVE" + b"fmt " + len(fmt).to_bytes(4, "little") + fmt + b"data" \
        + len(codes).to_bytes(4, "little") + codes + b"\0" * (len(codes) & 1)
    path.write_bytes(b"RIFF" + len(body).to_bytes(4, "little") + body)


def write_manifest(folder: Path, records: list[dict]) -> Path:
    (folder / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return folder / "manifest.jsonl"


# ------------------------------------------------------------------------------ (b) flite, festival
def reserved_synth_set(folder: Path, n: int, seed: int, line: bool) -> tuple[Path | None, str]:
    """Digit strings from flite and festival voices (never used for training)."""
    voices = []
    if shutil.which("flite"):
        listed = subprocess.run(["flite", "-lv"], capture_output=True, text=True).stdout.split()
        voices += [("flite", v) for v in FLITE_VOICES if v in listed]
    if shutil.which("text2wave"):
        for v in FESTIVAL_VOICES:
            found = list(Path("/usr/share/festival/voices").glob(f"*/{v}"))
            if found:
                voices.append(("festival", v))
    if not voices:
        return None, "neither flite nor festival is installed (apt-get install flite festival ...)"
    manifest = folder / "manifest.jsonl"
    if manifest.exists():
        return manifest, ", ".join(f"{e}:{v}" for e, v in voices)
    (folder / "wav").mkdir(parents=True, exist_ok=True)
    records = []
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "raw.wav"
        for k, text in enumerate(digit_strings(n, seed)):
            engine, voice = voices[k % len(voices)]
            if engine == "flite":
                subprocess.run(["flite", "-voice", voice, "-t", text, "-o", str(raw)], check=True)
            else:
                subprocess.run(["text2wave", "-eval", f"(voice_{voice})", "-o", str(raw)],
                               input=text.encode(), check=True, capture_output=True)
            x, rate = read_wav(raw)
            wav = folder / "wav" / f"{k:05d}.wav"
            if line:
                y = telephone(resample(x, rate, 16000), 16000)
                write_mulaw_wav(wav, resample(y, 16000, 8000), 8000)
            else:
                write_wav(wav, x, rate)
            records.append({"audio": f"wav/{k:05d}.wav", "text": text, "voice": f"{engine}:{voice}"})
    return write_manifest(folder, records), ", ".join(f"{e}:{v}" for e, v in voices)


# ------------------------------------------------------------------------------ (c) real people
def allison_set(folder: Path, n: int, seed: int) -> tuple[Path | None, str]:
    """Allison's recorded digits joined into digit strings, 8 kHz mu-law."""
    files = [ALLISON / f"{d}.wav" for d in range(10)]
    if not all(f.is_file() for f in files):
        return None, "asterisk-core-sounds-en-wav not installed (apt-get install asterisk-core-sounds-en-wav)"
    manifest = folder / "manifest.jsonl"
    what = f"{ALLISON}/0.wav..9.wav"
    if manifest.exists():
        return manifest, what
    (folder / "wav").mkdir(parents=True, exist_ok=True)
    clips = []
    for f in files:
        x, rate = read_wav(f)
        clips.append(resample(x, rate, 8000))
    rng = np.random.default_rng(seed)
    records = []
    for k in range(n):
        digits = rng.integers(0, 10, rng.integers(1, 8))
        parts = [np.zeros(int(8000 * rng.uniform(0.1, 0.3)), np.float32)]
        for d in digits:
            parts += [clips[d], np.zeros(int(8000 * rng.uniform(0.05, 0.3)), np.float32)]
        x = np.concatenate(parts)
        x = x + rng.standard_normal(len(x)).astype(np.float32) * 10 ** (-55 / 20)  # the line's hiss
        write_mulaw_wav(folder / "wav" / f"{k:05d}.wav", x, 8000)
        records.append({"audio": f"wav/{k:05d}.wav", "text": " ".join(DIGITS[d] for d in digits)})
    return write_manifest(folder, records), what


def allison_digits_set(folder: Path) -> tuple[Path | None, str]:
    """Allison's ten recordings one at a time: which digits does the model hear?"""
    files = [ALLISON / f"{d}.wav" for d in range(10)]
    if not all(f.is_file() for f in files):
        return None, "asterisk-core-sounds-en-wav not installed (apt-get install asterisk-core-sounds-en-wav)"
    records = [{"audio": str(f), "text": DIGITS[d]} for d, f in enumerate(files)]
    folder.mkdir(parents=True, exist_ok=True)
    return write_manifest(folder, records), f"{ALLISON}/0.wav..9.wav as they are (8 kHz PCM)"


def tidigits_set(folder: Path) -> tuple[Path | None, str]:
    if not TIDIGITS.is_file():
        return None, "pocketsphinx-testdata not installed (apt-get install pocketsphinx-testdata)"
    (folder / "wav").mkdir(parents=True, exist_ok=True)
    x = np.fromfile(TIDIGITS, "<i2").astype(np.float32) / 32768  # 16 kHz, 16-bit, headerless
    y = telephone(x, 16000)
    write_mulaw_wav(folder / "wav" / "dhd.2934z.wav", resample(y, 16000, 8000), 8000)
    return write_manifest(folder, [{"audio": "wav/dhd.2934z.wav", "text": "two nine three four zero"}]), \
        str(TIDIGITS)


# ------------------------------------------------------------------------------ the run
def default_decoding(recognizer, manifest: Path) -> tuple[dict, dict[str, dict]]:
    """``asr eval``'s default decoding (beam 8 + words): the rates over the whole set and per
    voice (the manifest's "voice" key, where it has one)."""
    items = read_manifest(manifest)
    hyps = recognizer.decode(load_features(items, recognizer.features, 2), 8, "auto")
    voices = [json.loads(line).get("voice", "") for line in manifest.read_text().splitlines() if line.strip()]
    refs = [t for _, t in items]
    by_voice = {}
    for v in sorted(set(voices)):
        keep = [i for i, u in enumerate(voices) if u == v]
        by_voice[v] = error_rates([refs[i] for i in keep], [hyps[i] for i in keep])
    return error_rates(refs, hyps), by_voice


def heldout_set(folder: Path, n: int, seed: int, synth: str, name: str, note: str = ""):
    """(name, manifest or None, how it was made) of ``synth``'s held-out voices."""
    try:
        if not (folder / "manifest.jsonl").exists():
            make_data(folder, n, "digits", seed, "heldout", synth=synth)
    except ValueError as exc:
        return name, None, str(exc)
    return (name, folder / "manifest.jsonl",
            f"asr make-data --voices heldout --seed {seed} --synth {synth}{note}")


def test_sets(work: Path, args) -> list[tuple[str, Path | None, str]]:
    sets = [heldout_set(work / "heldout", args.n_test, 2, "espeak-ng",
                        "(a) espeak-ng, held-out voice variants"),
            heldout_set(work / "heldout-dectalk", args.n_test, 6, "dectalk",
                        "(a) DECtalk, held-out speakers", " (Frank, Ursula)")]
    m, what = reserved_synth_set(work / "flite-festival", args.n_test, 3, line=False)
    sets.append(("(b) flite + festival, never trained on", m, what))
    m, what = reserved_synth_set(work / "flite-festival-8k", args.n_test, 4, line=True)
    sets.append(("(b) flite + festival, 8 kHz mu-law line", m, what))
    m, what = allison_set(work / "allison-8k", args.n_test, 5)
    sets.append(("(c) human (Allison, asterisk prompts), 8 kHz mu-law", m, what))
    m, what = allison_digits_set(work / "allison-digits")
    sets.append(("(c) human (Allison), each digit alone", m, what))
    m, what = tidigits_set(work / "tidigits-8k")
    sets.append(("(c) human (TIDIGITS dhd.2934z), 8 kHz mu-law", m, what))
    return sets


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", default="/tmp/rnnkit_asr_bench")
    ap.add_argument("--n-train", type=int, default=4000)
    ap.add_argument("--n-test", type=int, default=200)
    ap.add_argument("--max-time", type=float, default=900.0, help="asr train --max-time (seconds)")
    ap.add_argument("--model", default=None, help="score this checkpoint instead of training one")
    ap.add_argument("--augment", default="full", choices=("full", "none"))
    ap.add_argument("--synth", default="auto",
                    help="asr make-data --synth for the training set: auto, all or a comma-separated "
                         "list of espeak-ng, dectalk, piper (default: auto)")
    ap.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                    help="what --max-time counts: wall time, or this process's CPU time")
    args = ap.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    print(f"CPU: {cpu_info()['model']}; {load()}; BLAS threads {os.environ['OPENBLAS_NUM_THREADS']}", flush=True)
    sets = test_sets(work, args)
    print(f"test sets ready in {time.monotonic() - t0:.0f} s", flush=True)

    if args.model is None:
        train = work / "train" / "manifest.jsonl"
        synths, note = resolve_synths(args.synth.split(",") if args.synth not in ("auto", "all") else args.synth)
        print(f"training speech: {' and '.join(synths)}" + (f" ({note})" if note else ""), flush=True)
        if not train.exists():
            make_data(train.parent, args.n_train, "digits", 1, "train", synth=synths)
        model = work / "model"
        s = ASRSettings(augment=args.augment)
        print(f"asr train settings: {json.dumps(asdict(s))}, --max-time {args.max_time}", flush=True)
        shutil.rmtree(model, ignore_errors=True)
        w0, c0 = time.monotonic(), time.process_time()
        # `rnnkit asr train --max-time` with its default settings; --clock cpu counts this
        # process's CPU time instead of wall time (shared cores)
        summary = fit(ASRTask(s, train), s, model, max_time=args.max_time, progress=False,
                      clock=time.process_time if args.clock == "cpu" else time.monotonic)
        print(f"trained {summary['step']} steps in {time.monotonic() - w0:.0f} s wall, "
              f"{time.process_time() - c0:.0f} s CPU (this process), best val CER "
              f"{summary['best']:.4f}; {load()}", flush=True)
        h = summary["run"].history
        for step, cer in zip(h["eval_step"], h["eval"]["cer"]):
            print(f"  step {step:6d}  val CER {cer:.4f}")
    else:
        model = Path(args.model)
    print(f"model: {model}", flush=True)

    voices = []
    print("\n| test set | utterances | greedy CER | beam 8 CER | beam 8 + words CER | WER (words) |")
    print("|---|---|---|---|---|---|")
    for name, manifest, what in sets:
        if manifest is None:
            print(f"| {name} | skipped: {what} | | | | |", flush=True)
            continue
        recognizer = load_model(model)
        g = recognizer.evaluate(manifest, beam=1, lm="none")
        b = recognizer.evaluate(manifest, beam=8, lm="none")
        w, by_voice = default_decoding(recognizer, manifest)
        print(f"| {name} | {g['utterances']} | {g['cer']:.4f} | {b['cer']:.4f} | {w['cer']:.4f} | "
              f"{w['wer']:.4f} |", flush=True)
        if 1 < len(by_voice) <= 12:  # the synthesiser sets; not the many espeak-ng voices
            voices.append(f"{name}: " + ", ".join(f"{v} {r['cer']:.3f}" for v, r in by_voice.items()))
    if voices:
        print("\nCER per voice (beam 8 + words):\n" + "\n".join(voices))
    print("\nsources: " + "; ".join(f"{name}: {what}" for name, _, what in sets))
    print(f"total {time.monotonic() - t0:.0f} s; {load()}")


if __name__ == "__main__":
    main()
