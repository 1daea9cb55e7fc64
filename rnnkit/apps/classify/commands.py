"""``rnnkit classify make-data | train | eval | predict``: argument definitions and thin bodies."""
from __future__ import annotations

import argparse
import csv
import dataclasses
import io
import json
import sys
from pathlib import Path

from ...train.cli import add_train_options, train_command
from ...data.files import check_file_output, write_atomic
from ...train.task import TaskSpec
from . import load
from .charts import bundled_path, charts_text
from .data import encode_labels
from .train import Classifier, ClassifySettings, ClassifyTask

FORMATS = "a .ts (UCR/UEA), .csv (long format: --id-col, --label-col) or .jsonl (text or audio) file"


def register(sub: argparse._SubParsersAction) -> None:
    cl = sub.add_parser("classify", help="sequence classification (sensor series, text, audio)")
    verbs = cl.add_subparsers(dest="verb", required=True, metavar="{make-data,train,eval,predict}")

    p = verbs.add_parser("make-data", help="write the synthetic control charts as .ts files",
                         description="Write DIR/train.ts and DIR/test.ts: synthetic control "
                                     "charts (6 classes, lengths 40-80). The defaults give "
                                     "the files bundled with rnnkit, which train uses when "
                                     "no --data is given.")
    p.add_argument("--out", required=True, help="output folder (created if missing)")
    p.add_argument("--per-class", type=int, default=None,
                   help="sequences of each class in each file (default: 50, as bundled)")
    p.add_argument("--seed", type=int, default=None,
                   help="seed of the training file; the test file uses seed + 1 (default: "
                        "the bundled files' 1)")
    p.add_argument("--overwrite", action="store_true", help="replace existing files")
    p.set_defaults(run=cmd_make_data)

    p = verbs.add_parser("train", help="train a classifier",
                         description="Train an ensemble of (bidirectional) recurrent networks "
                                     "on labelled sequences; the best parameters (validation "
                                     "accuracy) go to --out.  Without --data: the bundled "
                                     "control charts (and their test file).")
    data_options(p)
    p.add_argument("--test", default=None,
                   help="a test file scored once by the best parameters after training (never "
                        "used to choose them)")
    add_train_options(p, ClassifySettings)
    p.set_defaults(run=cmd_train)

    p = verbs.add_parser("eval", help="accuracy, balanced accuracy, macro F1, log loss, "
                                      "per-class scores and confusion matrix on a labelled file")
    p.add_argument("--model", required=True, help="run folder (rnnkit classify train --out)")
    p.add_argument("--data", required=True, help=f"labelled sequences: {FORMATS}")
    p.add_argument("--json", action="store_true",
                   help='print {"accuracy", "balanced_accuracy", "macro_f1", "log_loss", '
                        '"per_class", "confusion", "n"}')
    p.add_argument("--plot", default=None, metavar="PNG",
                   help="draw the confusion matrix and the training curves to this PNG")
    p.add_argument("--latest", action="store_true", help="the last parameters, not the best")
    p.set_defaults(run=cmd_eval)

    p = verbs.add_parser("predict", help="the label and class probabilities of each sequence")
    p.add_argument("--model", required=True, help="run folder (rnnkit classify train --out)")
    p.add_argument("--data", required=True, help=f"sequences (labels ignored): {FORMATS}")
    p.add_argument("--out", default=None,
                   help="write .csv or .jsonl here (atomically) instead of CSV to stdout")
    p.add_argument("--latest", action="store_true", help="the last parameters, not the best")
    p.set_defaults(run=cmd_predict)


def cmd_make_data(args: argparse.Namespace) -> int:
    if args.per_class is not None and args.per_class < 1:
        raise ValueError(f"--per-class must be >= 1, got {args.per_class}")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} exists and is not a folder")
    paths = {split: out / f"{split.lower()}.ts" for split in ("TRAIN", "TEST")}
    there = [str(p) for p in paths.values() if p.exists()]
    if there and not args.overwrite:
        raise ValueError(f"{', '.join(there)} already exist(s); pass --overwrite to replace")
    texts = {split: charts_text(split, args.per_class,
                                None if args.seed is None else args.seed + (split == "TEST"))
             for split in paths}
    out.mkdir(parents=True, exist_ok=True)
    for split, path in paths.items():
        write_atomic(path, texts[split])
    print(f"rnnkit classify make-data: {paths['TRAIN']} and {paths['TEST']}", file=sys.stderr)
    return 0


def data_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", default=None,
                   help=f"training sequences: {FORMATS} (default: the bundled control charts)")


def make_task(settings: ClassifySettings, args: argparse.Namespace) -> ClassifyTask:
    """The task tools race: the validation accuracy decides, so a --val-fraction of 0 (train's
    default: every sequence trains) becomes 0.2 here."""
    if settings.val_fraction == 0:
        settings = dataclasses.replace(settings, val_fraction=0.2)
    return ClassifyTask(settings, args.data or str(bundled_path("TRAIN")))


# how tools (rnnkit compare) build this app's task
TASK = TaskSpec("classify", ClassifySettings, data_options, make_task,
                about="sequence classification; validation accuracy of a stratified 20% (or "
                      "--val-fraction) of the training file")


def cmd_train(args: argparse.Namespace) -> int:
    data, test = args.data, args.test
    if data is None and not args.resume:
        data = str(bundled_path("TRAIN"))
        test = test or str(bundled_path("TEST"))
    made = {}

    def make_task(settings, ckpt):
        task = ClassifyTask(settings, data, ckpt)
        if test is not None:  # read and check the test file before anything trains
            clf = Classifier(task.model, task.inputs, task.classes, settings)
            ds = made["test"] = clf.read(test, labelled=True)
            clf.inputs.check(ds)
            encode_labels(ds.labels, task.classes, ds.source, ds.names)
        return task

    status = train_command(args, ClassifySettings, "classify", make_task)
    if test is not None and status == 0:
        r = load(args.out).evaluate(made["test"])
        print(f"test {Path(test).name}: accuracy {r['accuracy']:.4f}  balanced accuracy "
              f"{r['balanced_accuracy']:.4f}  macro F1 {r['macro_f1']:.4f}  log loss "
              f"{r['log_loss']:.4f}  ({r['n']} sequences)", file=sys.stderr)
    return status


def cmd_eval(args: argparse.Namespace) -> int:
    plot = check_file_output(args.plot, "--plot") if args.plot else None
    clf = load(args.model, "latest" if args.latest else "best")
    r = clf.evaluate(args.data)
    if plot is not None:
        from .plot import plot_evaluation
        if not plot_evaluation(plot, r, clf.history, clf.best_step):
            print("rnnkit: --plot needs matplotlib (pip install 'rnnkit[plot]'); no plot drawn",
                  file=sys.stderr)
    if args.json:
        print(json.dumps(r))
        return 0
    print(f"accuracy {r['accuracy']:.4f}  balanced accuracy {r['balanced_accuracy']:.4f}  "
          f"macro F1 {r['macro_f1']:.4f}  log loss {r['log_loss']:.4f}  over {r['n']} sequences")
    if "unknown_symbols" in r:
        print(f"unknown symbols: {r['unknown_symbols']} of {r['symbols']}")
    width = max(len(c) for c in clf.classes)
    print(f"{'class':<{width}}  precision  recall     f1  support")
    for name, c in r["per_class"].items():
        print(f"{name:<{width}}  {c['precision']:9.4f}  {c['recall']:6.4f}  {c['f1']:5.4f}  "
              f"{c['support']:7d}")
    print("confusion (rows: true class, columns: predicted):")
    for name, row in zip(clf.classes, r["confusion"]):
        print(f"{name:<{width}}  " + " ".join(f"{v:5d}" for v in row))
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    out = None
    if args.out is not None:
        out = check_file_output(args.out, "--out")
        if out.suffix.lower() not in (".csv", ".jsonl"):
            raise ValueError(f"--out {out}: give a .csv or .jsonl file name")
    clf = load(args.model, "latest" if args.latest else "best")
    ds = clf.read(args.data, labelled=False)
    labels, probs = clf.predict(ds)
    if clf.inputs.kind == "text" and clf.inputs.unknown:
        print(f"rnnkit classify predict: {clf.inputs.unknown} of {clf.inputs.symbols} symbols "
              "were not in the training vocabulary (read as unknown)", file=sys.stderr)
    if out is not None and out.suffix.lower() == ".jsonl":
        text = "".join(json.dumps({"id": name, "label": label,
                                   "probabilities": dict(zip(clf.classes, map(float, p)))}) + "\n"
                       for name, label, p in zip(ds.names, labels, probs))
    else:
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(["id", "label", *(f"p_{c}" for c in clf.classes)])
        for name, label, p in zip(ds.names, labels, probs):
            w.writerow([name, label, *(f"{v:.6g}" for v in p)])
        text = buf.getvalue()
    if out is None:
        sys.stdout.write(text)
    else:
        write_atomic(out, text)
        print(f"rnnkit classify predict: {len(labels)} sequences to {out}", file=sys.stderr)
    return 0
