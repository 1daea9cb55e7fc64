"""``rnnkit asr make-data | train | transcribe | eval``: argument definitions and thin bodies."""
from __future__ import annotations

import argparse
import json
import sys

from ...data.audio import wav_features
from ...train.cli import add_train_options, train_command
from ...train.task import TaskSpec
from . import load
from .data import make_data, resolve_synths
from .train import ASRSettings, ASRTask


def register(sub: argparse._SubParsersAction) -> None:
    asr = sub.add_parser("asr", help="speech recognition with CTC")
    verbs = asr.add_subparsers(dest="verb", required=True, metavar="{make-data,train,transcribe,eval}")

    p = verbs.add_parser("make-data", help="synthesise spoken digits or words (espeak-ng, DECtalk, Piper)",
                         description="Write N utterances as 16 kHz WAVs plus DIR/manifest.jsonl, "
                                     "spoken by espeak-ng (random English accent, voice variant, "
                                     "speed, pitch, pitch range, amplitude, word gap) and, where "
                                     "installed (pip install 'rnnkit[dectalk]'), DECtalk (random "
                                     "speaker, pitch, head size, voice quality, rate, pauses) and "
                                     "Piper (pip install 'rnnkit[piper]': phoneme length, noise, "
                                     "pauses), with a little noise.  Needs one of them.")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--n", type=int, required=True, help="number of utterances")
    p.add_argument("--vocab", choices=("digits", "words"), default="digits",
                   help="digits: 1-7 digit words (zero..nine, oh); words: 1-4 command words "
                        "(default: digits)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    p.add_argument("--voices", choices=("train", "heldout", "all"), default="train",
                   help="voice variants: the training ones, the ~1 in 5 held out from them, or "
                        "all (default: train)")
    p.add_argument("--synth", default="auto", metavar="auto|all|NAME[,NAME...]",
                   help="synthesisers among espeak-ng, dectalk, piper: auto = every installed one "
                        "(and a note naming what is missing), all = all three (an error if one "
                        "is missing), or a comma-separated list (default: auto)")
    p.add_argument("--mix", default="", metavar="NAME=W[,NAME=W...]",
                   help="relative shares of the synthesisers' utterances, e.g. espeak-ng=2,piper=1 "
                        "(default: equal)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing manifest")
    p.set_defaults(run=cmd_make_data)

    p = verbs.add_parser("train", help="train a CTC recogniser on a manifest",
                         description="Train a bidirectional GRU/LSTM with CTC on the utterances "
                                     "of a JSON-lines manifest; the best model (validation "
                                     "CER) goes to --out.")
    data_options(p)
    add_train_options(p, ASRSettings)
    p.set_defaults(run=cmd_train)

    p = verbs.add_parser("transcribe", help="print the transcript of WAV files")
    p.add_argument("--model", required=True, help="checkpoint directory")
    p.add_argument("wavs", nargs="+", metavar="WAV",
                   help="WAV files: 8/16/24/32-bit PCM, float, mu-law or A-law, mono or stereo, "
                        "any sample rate")
    _decoding_options(p)
    p.set_defaults(run=cmd_transcribe)

    p = verbs.add_parser("eval", help="character and word error rates on a manifest")
    p.add_argument("--model", required=True, help="checkpoint directory")
    p.add_argument("--manifest", required=True, help="JSON lines {\"audio\": WAV, \"text\": ...}")
    _decoding_options(p)
    p.add_argument("--json", action="store_true", help='print {"cer": .., "wer": .., "utterances": ..}')
    p.set_defaults(run=cmd_eval)


def _decoding_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--beam", type=int, default=8, help="prefix beam width; 1 with --lm none = greedy "
                   "(default: 8)")
    p.add_argument("--lm", choices=("auto", "none", "vocab", "bigram"), default="auto",
                   help="word constraint from the training transcripts: vocab (only its words), "
                        "bigram (and their word-pair statistics), none, or auto = bigram when the "
                        "training vocabulary is closed (every word seen 3+ times) (default: auto)")


def parse_mix(text: str) -> dict[str, float]:
    """'espeak-ng=2,piper=1' -> {"espeak-ng": 2.0, "piper": 1.0}; a clear error otherwise."""
    mix = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, eq, value = part.partition("=")
        try:
            mix[name.strip()] = float(value)
        except ValueError:
            eq = ""
        if not eq:
            raise ValueError(f"--mix takes NAME=WEIGHT pairs separated by commas, got {part!r}")
    return mix


def cmd_make_data(args: argparse.Namespace) -> int:
    mix = parse_mix(args.mix)
    synths, note = resolve_synths(args.synth, args.voices)
    if note is not None:
        print(f"rnnkit asr make-data: note: {note}", file=sys.stderr)
    path = make_data(args.out, args.n, args.vocab, args.seed, args.voices, overwrite=args.overwrite,
                     synth=synths, weights=mix)
    print(f"rnnkit asr make-data: {args.n} utterances by {' and '.join(synths)} in {path}",
          file=sys.stderr)
    return 0


def data_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--manifest", required=True, help="JSON lines {\"audio\": WAV, \"text\": ...}")
    p.add_argument("--val-manifest", default=None,
                   help="validation manifest (default: --val-fraction of --manifest)")


def make_task(settings: ASRSettings, args: argparse.Namespace) -> ASRTask:
    return ASRTask(settings, args.manifest, args.val_manifest)


# how tools (rnnkit compare) build this app's task
TASK = TaskSpec("asr", ASRSettings, data_options, make_task,
                about="CTC on the manifest's utterances; validation greedy character error rate")


def cmd_train(args: argparse.Namespace) -> int:
    return train_command(args, ASRSettings, "asr", lambda settings, ckpt: ASRTask(
        settings, args.manifest, args.val_manifest, ckpt))


def cmd_transcribe(args: argparse.Namespace) -> int:
    recognizer = load(args.model)
    recognizer.decode([], args.beam, args.lm)  # a bad --beam or --lm is said before any audio
    feats, good, failed = [], [], 0
    for path in args.wavs:  # every unreadable file gets its own line; the others are transcribed
        try:
            feats.append(wav_features(path, recognizer.features))
            good.append(path)
        except ValueError as exc:
            print(f"rnnkit: error: {exc}", file=sys.stderr)
            failed += 1
    texts = recognizer.decode(feats, args.beam, args.lm) if feats else []
    for path, text in zip(good, texts):
        print(text if len(args.wavs) == 1 else f"{path}\t{text}")
    return 1 if failed else 0


def cmd_eval(args: argparse.Namespace) -> int:
    result = load(args.model).evaluate(args.manifest, args.beam, args.lm)
    if args.json:
        print(json.dumps(result))
    else:
        print(f"CER {result['cer']:.4f}  WER {result['wer']:.4f}  over {result['utterances']} utterances")
    return 0
