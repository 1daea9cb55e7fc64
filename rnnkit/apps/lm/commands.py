"""``rnnkit lm train | sample | eval``: argument definitions and the thin command bodies."""
from __future__ import annotations

import argparse
import json
import sys

from ...data.text import read_text
from ...train.cli import add_train_options, train_command
from ...train.task import TaskSpec
from . import load
from .generate import stream_to
from .train import LMSettings, LMTask


def register(sub: argparse._SubParsersAction) -> None:
    lm = sub.add_parser("lm", help="language modelling and text generation")
    verbs = lm.add_subparsers(dest="verb", required=True, metavar="{train,sample,eval}")

    p = verbs.add_parser("train", help="train a language model on UTF-8 text",
                         description="Train a character (or word) language model with truncated "
                                     "BPTT; checkpoints, a loss curve and the best model go to --out.")
    data_options(p)
    add_train_options(p, LMSettings)
    p.set_defaults(run=cmd_train)

    p = verbs.add_parser("sample", help="generate text from a trained model")
    p.add_argument("--model", required=True, help="run folder of lm train")
    p.add_argument("--prime", default="", help="text the model reads before writing")
    p.add_argument("--length", type=int, default=500, help="tokens to generate (default: 500)")
    p.add_argument("--temperature", type=float, default=0.8, help="0 = greedy (default: 0.8)")
    p.add_argument("--top-k", type=int, default=None, help="sample among the k most likely tokens")
    p.add_argument("--top-p", type=float, default=None, help="nucleus sampling mass in (0, 1]")
    p.add_argument("--seed", type=int, default=None, help="same seed, same text")
    p.add_argument("--latest", action="store_true", help="use the last parameters, not the best")
    p.set_defaults(run=cmd_sample)

    p = verbs.add_parser("eval", help="nats/bits per character and perplexity of a text")
    p.add_argument("--model", required=True, help="run folder of lm train")
    p.add_argument("--text", required=True, help="UTF-8 text file")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--streams", type=int, default=None,
                   help="parallel streams, each carrying its state (default: one per 20k tokens; 1 = exact single stream)")
    p.add_argument("--latest", action="store_true", help="use the last parameters, not the best")
    p.set_defaults(run=cmd_eval)


def data_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--text", nargs="+", metavar="PATH",
                   help="UTF-8 text file(s) (default: the bundled Shakespeare)")


def make_task(settings: LMSettings, args: argparse.Namespace) -> LMTask:
    return LMTask(settings, args.text)


# how tools (rnnkit compare) build this app's task
TASK = TaskSpec("lm", LMSettings, data_options, make_task,
                about="next-character prediction; validation nats per character of the held-out "
                      "end of the text")


def cmd_train(args: argparse.Namespace) -> int:
    return train_command(args, LMSettings, "lm",
                         lambda settings, ckpt: LMTask(settings, args.text, ckpt))


def cmd_sample(args: argparse.Namespace) -> int:
    lm = load(args.model, "latest" if args.latest else "best")
    unknown = lm.unknown(args.prime)
    if unknown:
        print(f"rnnkit: warning: --prime has {len(unknown)} symbol(s) outside the model's "
              f"vocabulary, read as <unk>: {' '.join(map(repr, unknown[:10]))}", file=sys.stderr)
    tokens = lm.stream(args.prime, args.length, args.temperature, args.top_k, args.top_p, args.seed)
    out = sys.stdout
    out.write(args.prime)  # the text continues the prime
    stream_to(out.write, out.flush, tokens)
    out.write("\n")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    lm = load(args.model, "latest" if args.latest else "best")
    result = lm.evaluate(read_text(args.text), args.streams)
    if args.json:
        print(json.dumps(result))
    else:
        print(f"{result['nats_per_char']:.4f} nats/{result['unit']}  {result['bits_per_char']:.4f} "
              f"bits/{result['unit']}  perplexity {result['perplexity']:.3f}  over {result['chars']:,} "
              f"{result['unit']}s ({result['unknown']} unknown)")
    return 0
