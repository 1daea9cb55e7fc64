"""``rnnkit translate make-data | train | run | eval``: argument definitions and thin command bodies."""
from __future__ import annotations

import argparse
import json
import sys

from ...train.cli import add_train_options, train_command
from ...data.files import check_file_output
from ...train.task import TaskSpec
from .train import TranslateSettings


def register(sub: argparse._SubParsersAction) -> None:
    tr = sub.add_parser("translate", help="sequence-to-sequence translation with attention")
    verbs = tr.add_subparsers(dest="verb", required=True, metavar="{make-data,train,run,eval}")

    p = verbs.add_parser("make-data", help="write a TSV of source<TAB>target pairs",
                         description="numbers: integers -> words (num2words, any language it "
                                     "supports); dates: human-written dates -> ISO (babel); "
                                     "de-en: German -> English sentences of Debian's trans-de-en.")
    p.add_argument("kind", choices=("numbers", "dates", "de-en"), help="which data set")
    p.add_argument("--out", required=True, help="TSV file to write")
    p.add_argument("--n", type=int, default=None,
                   help="number of pairs (required for numbers and dates; de-en: at most N)")
    p.add_argument("--lang", default=None,
                   help="numbers: num2words language code (default fr); dates: one babel locale "
                        "such as de_DE (default: eight locales mixed)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    p.add_argument("--high", type=int, default=1_000_000,
                   help="numbers: draw below this (default: 1000000)")
    p.add_argument("--exclude", default=None,
                   help="numbers: a TSV whose sources must not reappear (a held-out test set)")
    p.set_defaults(run=cmd_make_data)

    p = verbs.add_parser("train", help="train an attention encoder-decoder on a pairs TSV",
                         description="Train on source<TAB>target pairs; checkpoints, a loss curve "
                                     "and the best model (validation exact match) go to --out.")
    data_options(p)
    add_train_options(p, TranslateSettings)
    p.set_defaults(run=cmd_train)

    p = verbs.add_parser("run", help="translate TEXT arguments (or lines from stdin)")
    p.add_argument("--model", required=True, help="checkpoint directory")
    p.add_argument("--beam", type=int, default=1, help="beam width; 1 = greedy (default: 1)")
    p.add_argument("--alpha", type=float, default=1.0,
                   help="length normalisation exponent of beam scores (default: 1.0)")
    p.add_argument("--max-len", type=int, default=None, help="longest output in tokens")
    p.add_argument("--plot", default=None, metavar="PNG",
                   help="draw the attention weights of the first text as a heat-map")
    p.add_argument("text", nargs="*", metavar="TEXT", help="sources (default: lines of stdin)")
    p.set_defaults(run=cmd_run)

    p = verbs.add_parser("eval", help="BLEU, exact match and token accuracy on a pairs TSV")
    p.add_argument("--model", required=True, help="checkpoint directory")
    p.add_argument("--pairs", required=True, help="TSV of source<TAB>target pairs")
    p.add_argument("--beam", type=int, default=1, help="beam width; 1 = greedy (default: 1)")
    p.add_argument("--alpha", type=float, default=1.0,
                   help="length normalisation exponent of beam scores (default: 1.0)")
    p.add_argument("--max-len", type=int, default=None, help="longest output in tokens")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--show", type=int, default=0, metavar="K", help="also print K wrong outputs")
    p.set_defaults(run=cmd_eval)


def cmd_make_data(args: argparse.Namespace) -> int:
    from .data import make_dates, make_numbers, read_pairs, read_trans_de_en, write_pairs
    if args.kind in ("numbers", "dates") and args.n is None:
        raise ValueError(f"make-data {args.kind} needs --n")
    if args.n is not None and args.n < 1:
        raise ValueError(f"--n must be >= 1, got {args.n}")
    if args.kind == "numbers":
        exclude = []
        if args.exclude:
            try:
                exclude = [int(s) for s, _ in read_pairs(args.exclude)]
            except ValueError as exc:
                raise ValueError(f"--exclude: {exc}") from None
        pairs = make_numbers(args.n, args.lang or "fr", args.seed, args.high, exclude)
    elif args.kind == "dates":
        pairs = make_dates(args.n, args.seed, lang=args.lang)
    else:
        pairs = read_trans_de_en()
        if args.n is not None:
            pairs = pairs[: args.n]
    n = write_pairs(args.out, pairs)
    print(f"wrote {n} pairs to {args.out}", file=sys.stderr)
    return 0


def data_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--pairs", required=True, help="TSV of source<TAB>target pairs")


def make_task(settings: TranslateSettings, args: argparse.Namespace):
    from .data import read_pairs
    from .train import TranslateTask
    return TranslateTask(settings, read_pairs(args.pairs), args.pairs)


# how tools (rnnkit compare) build this app's task
TASK = TaskSpec("translate", TranslateSettings, data_options, make_task,
                about="teacher-forced translation of the pairs; validation greedy exact match")


def cmd_train(args: argparse.Namespace) -> int:
    from .data import read_pairs
    from .train import TranslateTask

    def make(settings, ckpt):
        pairs_path = args.pairs
        return TranslateTask(settings, read_pairs(pairs_path), pairs_path, ckpt)
    return train_command(args, TranslateSettings, "translate", make)


def _warn_unknown(translator, texts) -> None:
    unknown = sorted({t for text in texts for t in translator.unknown(text)})
    if unknown:
        print(f"rnnkit: warning: the input has {len(unknown)} symbol(s) outside the model's "
              f"source vocabulary, read as <unk>: {' '.join(map(repr, unknown[:10]))}",
              file=sys.stderr)


def cmd_run(args: argparse.Namespace) -> int:
    from . import load
    from .decode import plot_attention
    if args.plot:
        check_file_output(args.plot, "--plot")
    translator = load(args.model)
    texts = args.text if args.text else [line.rstrip("\n") for line in sys.stdin]
    if not texts:
        return 0
    _warn_unknown(translator, texts)
    outs, atts = translator.translate(texts, args.beam, args.max_len, args.alpha,
                                      return_attention=True)
    if args.plot:
        plot_attention(args.plot, texts[0], outs[0], atts[0], translator.src_vocab.kind,
                       translator.tgt_vocab.kind)
    for out in outs:
        print(out)
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from . import load
    from .data import read_pairs
    translator = load(args.model)
    pairs = read_pairs(args.pairs)
    result, outs = translator.evaluate(pairs, args.beam, args.max_len, args.alpha)
    if args.json:
        print(json.dumps(result))
    else:
        print(f"BLEU {result['bleu']:.2f}  exact match {result['exact_match']:.4f}  token accuracy "
              f"{result['token_accuracy']:.4f}  over {result['pairs']} pairs (beam {args.beam})")
    shown = 0
    for (src, ref), out in zip(pairs, outs):
        if shown >= args.show:
            break
        if out.strip() != ref.strip():
            print(f"  {src}\n    want {ref}\n    got  {out}", file=sys.stderr)
            shown += 1
    return 0
