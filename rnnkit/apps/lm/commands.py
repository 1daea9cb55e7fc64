"""``rnnkit lm train | sample | eval``: argument definitions and the thin command bodies."""
from __future__ import annotations

import argparse
import json
import math
import sys

from ...train.settings import add_options, from_options
from .generate import evaluate_text, sample, stream_to
from .train import Trainer, TrainSettings, load_model
from ...data.text import read_text


def register(sub: argparse._SubParsersAction) -> None:
    lm = sub.add_parser("lm", help="language modelling and text generation")
    verbs = lm.add_subparsers(dest="verb", required=True, metavar="{train,sample,eval}")

    p = verbs.add_parser("train", help="train a language model on UTF-8 text",
                         description="Train a character (or word) language model with truncated "
                                     "BPTT; checkpoints, a loss curve and the best model go to --out.")
    p.add_argument("--out", required=True, help="checkpoint directory")
    p.add_argument("--text", nargs="+", metavar="PATH",
                   help="UTF-8 text file(s) (default: the bundled Shakespeare)")
    p.add_argument("--resume", action="store_true", help="continue the checkpoint in --out up to --steps")
    p.add_argument("--overwrite", action="store_true", help="replace a checkpoint already in --out")
    p.add_argument("--quiet", action="store_true", help="no progress display")
    add_options(p, TrainSettings)
    p.set_defaults(run=cmd_train)

    p = verbs.add_parser("sample", help="generate text from a trained model")
    p.add_argument("--model", required=True, help="checkpoint directory")
    p.add_argument("--prime", default="", help="text the model reads before writing")
    p.add_argument("--length", type=int, default=500, help="tokens to generate (default: 500)")
    p.add_argument("--temperature", type=float, default=0.8, help="0 = greedy (default: 0.8)")
    p.add_argument("--top-k", type=int, default=None, help="sample among the k most likely tokens")
    p.add_argument("--top-p", type=float, default=None, help="nucleus sampling mass in (0, 1]")
    p.add_argument("--seed", type=int, default=None, help="same seed, same text")
    p.add_argument("--latest", action="store_true", help="use the last parameters, not the best")
    p.set_defaults(run=cmd_sample)

    p = verbs.add_parser("eval", help="nats/bits per character and perplexity of a text")
    p.add_argument("--model", required=True, help="checkpoint directory")
    p.add_argument("--text", required=True, help="UTF-8 text file")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--streams", type=int, default=None,
                   help="parallel streams, each carrying its state (default: one per 20k tokens; 1 = exact single stream)")
    p.add_argument("--latest", action="store_true", help="use the last parameters, not the best")
    p.set_defaults(run=cmd_eval)


def cmd_train(args: argparse.Namespace) -> int:
    settings = from_options(TrainSettings, args)
    explicit = {name for name in vars(args) if getattr(args, name) is not None and hasattr(settings, name)}
    trainer = Trainer(settings, args.out, texts=args.text, resume=args.resume, explicit=explicit,
                      progress=not args.quiet, overwrite=args.overwrite)
    s = trainer.s
    print(f"rnnkit lm train: {len(trainer.train_ids):,} training and {len(trainer.val_ids):,} validation "
          f"{s.tokens}s, vocabulary {len(trainer.vocab)}, {s.cell} {s.layers}x{s.hidden}, "
          f"{trainer.model.num_parameters():,} parameters", file=sys.stderr)
    summary = trainer.run()
    how = {"max-time": " (--max-time reached)", "interrupted": " (interrupted)"}.get(summary["stopped"], "")
    print(f"step {summary['step']}{how}: best validation {summary['best_val']:.4f} nats/{s.tokens} "
          f"({summary['best_val'] / math.log(2):.3f} bits), {summary['tokens_per_second']:,.0f} "
          f"{s.tokens}s/s; checkpoint in {args.out}", file=sys.stderr)
    return 130 if summary["stopped"] == "interrupted" else 0


def cmd_sample(args: argparse.Namespace) -> int:
    model, vocab, _ = load_model(args.model, "latest" if args.latest else "best")
    out = sys.stdout
    out.write(args.prime)  # the text continues the prime
    stream_to(out.write, out.flush, sample(model, vocab, args.prime, args.length, args.temperature,
                                           args.top_k, args.top_p, args.seed))
    out.write("\n")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    model, vocab, settings = load_model(args.model, "latest" if args.latest else "best")
    if args.streams is not None and args.streams < 1:
        raise ValueError(f"--streams must be >= 1, got {args.streams}")
    result = evaluate_text(model, vocab, read_text(args.text), settings.seq_len, args.streams)
    if args.json:
        print(json.dumps(result))
    else:
        print(f"{result['nats_per_char']:.4f} nats/{result['unit']}  {result['bits_per_char']:.4f} "
              f"bits/{result['unit']}  perplexity {result['perplexity']:.3f}  over {result['chars']:,} "
              f"{result['unit']}s ({result['unknown']} unknown)")
    return 0
