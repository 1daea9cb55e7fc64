"""``rnnkit asr make-data | train | transcribe | eval``: argument definitions and thin bodies."""
from __future__ import annotations

import argparse
import json
import math
import sys

from ...data.audio import wav_features
from ...train.checkpoint import load_checkpoint
from ...train.settings import add_options, from_options
from .data import load_features, make_data, read_manifest
from .decode import decode_features, error_rates, lm_for
from .train import Trainer, TrainSettings, load_model


def register(sub: argparse._SubParsersAction) -> None:
    asr = sub.add_parser("asr", help="speech recognition with CTC")
    verbs = asr.add_subparsers(dest="verb", required=True, metavar="{make-data,train,transcribe,eval}")

    p = verbs.add_parser("make-data", help="synthesise spoken digits or words with espeak-ng",
                         description="Write N utterances (random English accent, voice variant, "
                                     "speed, pitch, pitch range, amplitude, word gap, a little "
                                     "noise) as 16 kHz WAVs plus DIR/manifest.jsonl.  Needs "
                                     "espeak-ng on PATH.")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--n", type=int, required=True, help="number of utterances")
    p.add_argument("--vocab", choices=("digits", "words"), default="digits",
                   help="digits: 1-7 digit words (zero..nine, oh); words: 1-4 command words "
                        "(default: digits)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    p.add_argument("--voices", choices=("train", "heldout", "all"), default="train",
                   help="voice variants: the training ones, the ~1 in 5 held out from them, or "
                        "all (default: train)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing manifest")
    p.set_defaults(run=cmd_make_data)

    p = verbs.add_parser("train", help="train a CTC recogniser on a manifest",
                         description="Train a bidirectional GRU/LSTM with CTC on the utterances "
                                     "of a JSON-lines manifest; the best model (validation "
                                     "CER) goes to --out.")
    p.add_argument("--manifest", required=True, help="JSON lines {\"audio\": WAV, \"text\": ...}")
    p.add_argument("--out", required=True, help="checkpoint directory")
    p.add_argument("--val-manifest", default=None,
                   help="validation manifest (default: --val-fraction of --manifest)")
    p.add_argument("--overwrite", action="store_true", help="replace a checkpoint already in --out")
    p.add_argument("--quiet", action="store_true", help="no progress display")
    add_options(p, TrainSettings)
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


def _check_beam(beam: int) -> None:
    if beam < 1:
        raise ValueError(f"--beam must be >= 1, got {beam}")


def cmd_make_data(args: argparse.Namespace) -> int:
    path = make_data(args.out, args.n, args.vocab, args.seed, args.voices, overwrite=args.overwrite)
    print(f"rnnkit asr make-data: {args.n} utterances in {path}", file=sys.stderr)
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    settings = from_options(TrainSettings, args)
    t = Trainer(settings, args.manifest, args.out, val_manifest=args.val_manifest,
                progress=not args.quiet, overwrite=args.overwrite)
    s = t.s
    print(f"rnnkit asr train: {len(t.train_feats):,} training and {len(t.val_feats):,} validation "
          f"utterances, {len(t.alphabet) - 1} characters + blank, {s.cell} {s.layers}x{s.hidden} "
          f"bidirectional, {t.model.num_parameters():,} parameters", file=sys.stderr)
    if t.too_short:
        print(f"warning: {t.too_short} utterances have fewer frames than characters and cannot be "
              "learnt (lower --skip)", file=sys.stderr)
    summary = t.run()
    how = {"max-time": " (--max-time reached)", "interrupted": " (interrupted)"}.get(summary["stopped"], "")
    best = summary["best_val_cer"]
    print(f"step {summary['step']}{how}: best validation CER "
          f"{'n/a' if not math.isfinite(best) else f'{best:.4f}'} after {summary['seconds']:.0f} s; "
          f"checkpoint in {args.out}", file=sys.stderr)
    return 130 if summary["stopped"] == "interrupted" else 0


def _decoder(model_dir: str, args: argparse.Namespace):
    _check_beam(args.beam)
    model, alphabet, fcfg, _ = load_model(model_dir)
    config = load_checkpoint(model_dir)[0]
    lm = lm_for(config, args.lm)
    order = 0 if args.lm == "vocab" else 2
    return model, alphabet, fcfg, lambda feats: decode_features(model, alphabet, feats, args.beam, lm, order)


def cmd_transcribe(args: argparse.Namespace) -> int:
    _, _, fcfg, decode = _decoder(args.model, args)
    feats, good, failed = [], [], 0
    for path in args.wavs:  # every unreadable file gets its own line; the others are transcribed
        try:
            feats.append(wav_features(path, fcfg))
            good.append(path)
        except ValueError as exc:
            print(f"rnnkit: error: {exc}", file=sys.stderr)
            failed += 1
    texts = decode(feats) if feats else []
    for path, text in zip(good, texts):
        print(text if len(args.wavs) == 1 else f"{path}\t{text}")
    return 1 if failed else 0


def evaluate(model_dir: str, manifest: str, beam: int = 8, lm: str = "auto", workers: int = 2) -> dict:
    """{"cer", "wer", "utterances"} of a trained model on a manifest, decoded as ``asr eval`` does."""
    args = argparse.Namespace(beam=beam, lm=lm)
    _, _, fcfg, decode = _decoder(model_dir, args)
    items = read_manifest(manifest)
    hyps = decode(load_features(items, fcfg, workers))
    return error_rates([t for _, t in items], hyps)


def cmd_eval(args: argparse.Namespace) -> int:
    result = evaluate(args.model, args.manifest, args.beam, args.lm)
    if args.json:
        print(json.dumps(result))
    else:
        print(f"CER {result['cer']:.4f}  WER {result['wer']:.4f}  over {result['utterances']} utterances")
    return 0
