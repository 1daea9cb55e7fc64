"""Speech-recognition quality: spoken digit strings from espeak-ng voices held out from training.

    nice -n 5 python benchmarks/asr_quality.py --work /tmp/rnnkit_asr_bench --max-time 1800 [--clock cpu]

1. ``make-data`` (train voices): --n-train utterances of 1-7 digits; (held-out voices): --n-test.
2. ``train`` for --max-time seconds (or --steps) with the default model.
3. ``eval`` greedy and beam-search CER/WER on the held-out voices (and on training voices).
4. Real human recordings: Debian's klettres-data ships OGG Vorbis, which neither NumPy nor the
   standard library decodes; with ``oggdec`` (apt vorbis-tools) on PATH and klettres-data
   installed, the English recordings are converted and scored - letters spoken by people, a
   vocabulary the digit model never heard, so the number only shows how far it does *not*
   generalise.  Otherwise that row says why it was skipped.

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
import time  # noqa: E402
from pathlib import Path  # noqa: E402

from rnnkit.apps.asr.data import make_data  # noqa: E402
from rnnkit.apps.asr.train import ASRSettings, ASRTask, load_model  # noqa: E402
from rnnkit.train.engine import fit  # noqa: E402


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.1f}/{five:.1f}/{fifteen:.1f} on {os.cpu_count()} cores"


KLETTRES_SOUNDS = {"aw", "ch", "th"}  # phonics sounds, not words: left out


def klettres_manifest(work: Path) -> tuple[Path | None, str]:
    """A manifest of klettres-data's English recordings (converted by oggdec), or why not.

    en/ and en_GB/ each hold alpha/ (26 letters, text = the letter) and syllab/ (short words
    such as "car", "dog", "key"; the sounds "aw", "ch", "th" are left out): recordings of people.
    """
    roots = [Path("/usr/share/klettres") / lang for lang in ("en", "en_GB")]
    roots = [r for r in roots if r.is_dir()]
    if not roots:
        return None, "klettres-data not installed (apt-get install klettres-data)"
    if shutil.which("oggdec") is None:
        return None, "OGG Vorbis needs a decoder: apt-get install vorbis-tools (oggdec)"
    out = work / "klettres"
    (out / "wav").mkdir(parents=True, exist_ok=True)
    lines = []
    for root in roots:
        for ogg in sorted(root.glob("*/*.ogg")):
            name = ogg.stem.lower()
            if not name.isalpha() or name in KLETTRES_SOUNDS:
                continue
            wav = out / "wav" / f"{root.name}_{ogg.parent.name}_{name}.wav"
            if not wav.exists():
                subprocess.run(["oggdec", "-Q", "-b", "16", "-o", str(wav), str(ogg)], check=True)
            lines.append(json.dumps({"audio": str(wav), "text": name}))
    if not lines:
        return None, f"no recordings found under {roots}"
    (out / "manifest.jsonl").write_text("\n".join(lines) + "\n")
    return out / "manifest.jsonl", f"{len(lines)} recordings"


def klettres_run(work: Path, args) -> list:
    """Train on espeak-ng speaking klettres' own vocabulary (letters, words), test on the people."""
    manifest, why = klettres_manifest(work)
    if manifest is None:
        return [("klettres-data (human)", "-", {"skipped": why})]
    vocab = sorted({json.loads(line)["text"] for line in manifest.read_text().splitlines()})
    data = work / "klettres-synth"
    if not (data / "manifest.jsonl").exists():
        make_data(data, args.klettres_n, vocab, 4, "all", words_per_utterance=(1, 1))
    s = ASRSettings(steps=args.steps, eval_every=args.eval_every)
    t = ASRTask(s, data / "manifest.jsonl")
    shutil.rmtree(work / "model-klettres", ignore_errors=True)
    summary = fit(t, s, work / "model-klettres", max_time=args.klettres_time, progress=False,
                  clock=time.process_time if args.clock == "cpu" else time.monotonic)
    print(f"klettres vocabulary ({len(vocab)} items): trained {summary['step']} steps on "
          f"{len(t.train_feats)} espeak-ng utterances, best val CER {summary['best']:.4f}",
          flush=True)
    rows = []
    for beam in (1, args.beam):
        r = load_model(work / "model-klettres").evaluate(manifest, beam)
        rows.append((f"klettres-data letters + words, human ({why})",
                     "greedy" if beam == 1 else f"beam {beam}", r))
    return rows


def digits_run(work: Path, args) -> list:
    """Spoken digit strings: train on the training voices, test on held-out and training voices."""
    t0 = time.monotonic()
    sets = {"train": (args.n_train, 1), "heldout": (args.n_test, 2), "train-voices-test": (args.n_test, 3)}
    for name, (n, seed) in sets.items():
        if not (work / name / "manifest.jsonl").exists():
            make_data(work / name, n, "digits", seed, "heldout" if name == "heldout" else "train")
    print(f"data: {time.monotonic() - t0:.0f} s; load {load()}", flush=True)

    kw = {k: v for k, v in dict(hidden=args.hidden, layers=args.layers).items() if v is not None}
    s = ASRSettings(cell=args.cell, steps=args.steps, eval_every=args.eval_every, **kw)
    t = ASRTask(s, work / "train" / "manifest.jsonl")
    shutil.rmtree(work / "model", ignore_errors=True)
    wall0, cpu0 = time.monotonic(), time.process_time()
    print(f"training {s.cell} {s.layers}x{s.hidden}, {t.model.num_parameters():,} parameters, "
          f"{len(t.train_feats)} utterances; load {load()}", flush=True)
    # shared cores: --clock cpu counts the CPU time this process got, not wall time
    summary = fit(t, s, work / "model", max_time=args.max_time, progress=False,
                  clock=time.process_time if args.clock == "cpu" else time.monotonic)
    print(f"trained {summary['step']} steps in {time.monotonic() - wall0:.0f} s wall, "
          f"{time.process_time() - cpu0:.0f} s CPU, best val CER "
          f"{summary['best']:.4f}; load {load()}", flush=True)
    h = summary["run"].history
    for k in range(0, len(h["eval_step"]), max(len(h["eval_step"]) // 12, 1)):
        print(f"  step {h['eval_step'][k]:6d}  val CER {h['eval']['cer'][k]:.4f}")

    rows = []
    for name in ("heldout", "train-voices-test"):
        for beam in (1, args.beam):
            r = load_model(work / "model").evaluate(work / name / "manifest.jsonl", beam)
            rows.append((f"digits, {name} voices", "greedy" if beam == 1 else f"beam {beam}", r))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", default="/tmp/rnnkit_asr_bench")
    ap.add_argument("--n-train", type=int, default=6000)
    ap.add_argument("--n-test", type=int, default=500)
    ap.add_argument("--max-time", type=float, default=1800.0)
    ap.add_argument("--steps", type=int, default=100_000)
    ap.add_argument("--beam", type=int, default=8)
    ap.add_argument("--cell", default="gru")
    ap.add_argument("--hidden", type=int, default=None)
    ap.add_argument("--layers", type=int, default=None)
    ap.add_argument("--eval-every", type=int, default=200)
    ap.add_argument("--klettres-time", type=float, default=300.0,
                    help="seconds to train the klettres-vocabulary model (0 = skip that part)")
    ap.add_argument("--klettres-n", type=int, default=3000)
    ap.add_argument("--skip-digits", action="store_true", help="only the klettres part")
    ap.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                    help="what --max-time counts: wall time, or this process's CPU time (shared cores)")
    args = ap.parse_args()
    work = Path(args.work)
    t0 = time.monotonic()
    rows = [] if args.skip_digits else digits_run(work, args)
    if args.klettres_time > 0:
        rows += klettres_run(work, args)
    print("\n| test set | decoding | utterances | CER | WER |\n|---|---|---|---|---|")
    for name, how, r in rows:
        if "skipped" in r:
            print(f"| {name} | - | - | skipped: {r['skipped']} | |")
        else:
            print(f"| {name} | {how} | {r['utterances']} | {r['cer']:.4f} | {r['wer']:.4f} |")
    print(f"\ntotal {time.monotonic() - t0:.0f} s; load {load()}")


if __name__ == "__main__":
    main()
