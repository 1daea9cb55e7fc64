"""Language-model quality: the default `rnnkit lm train` on the bundled Shakespeare, beside a
character n-gram model with interpolated Kneser-Ney smoothing on the same split.

    python benchmarks/lm_quality.py --minutes 20 --out runs/lm_quality

Trains with `rnnkit lm train`'s defaults and `--max-time` = the budget (``--clock wall``: the
command itself, BLAS threads as configured), or in-process with the budget counted in CPU time
of one core (``--clock cpu``: BLAS single-threaded, for a machine other jobs share; one core's
20 CPU-minutes are less compute than 20 minutes of 2 cores), then prints the validation
loss (nats and bits per character) of the best checkpoint, the n-gram floors (orders 2-5), the
loss curve's path and a sample.  The goal (issue 3): <= 1.60 nats/char within 20 minutes.
"""
from __future__ import annotations

import argparse
import math
import os
import sys

# --clock cpu runs BLAS single-threaded, which must be set before NumPy loads
if any(a == "--clock" and b == "cpu" for a, b in zip(sys.argv, sys.argv[1:])) or "--clock=cpu" in sys.argv:
    for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[_var] = "1"  # before NumPy loads
import platform
import shutil
import subprocess
import time
from collections import Counter, defaultdict

import numpy as np


def kneser_ney(train: str, order: int):
    """Interpolated Kneser-Ney character model; returns logprob(history, char) in nats.

    P(w | h) = max(c(h w) - D, 0) / c(h) + D * N1+(h .) / c(h) * P(w | h')    (highest order)
    lower orders use continuation counts N1+(. h w) in place of c(h w); the unigram level
    interpolates with a uniform distribution over the vocabulary plus one unknown symbol.
    D per order = n1 / (n1 + 2 n2) (Ney's estimate from the count-of-counts).
    """
    vocab = sorted(set(train))
    V = len(vocab) + 1  # + unknown
    counts = [Counter() for _ in range(order + 1)]  # counts[k][gram] for grams of length k
    for k in range(1, order + 1):
        counts[k] = Counter(train[i : i + k] for i in range(len(train) - k + 1))
    # continuation counts for lower orders: number of distinct left extensions
    cont = [Counter() for _ in range(order + 1)]
    for k in range(2, order + 1):
        for gram in counts[k]:
            cont[k - 1][gram[1:]] += 1
    def level_counts(k):  # what order k uses as counts
        return counts[k] if k == order else cont[k]
    ctx_total, ctx_types, D = [None] * (order + 1), [None] * (order + 1), [0.0] * (order + 1)
    for k in range(1, order + 1):
        c = level_counts(k)
        tot, types = defaultdict(int), defaultdict(int)
        for gram, n in c.items():
            tot[gram[:-1]] += n
            types[gram[:-1]] += 1
        ctx_total[k], ctx_types[k] = tot, types
        cc = Counter(c.values())
        n1, n2 = cc.get(1, 0), cc.get(2, 0)
        D[k] = n1 / (n1 + 2 * n2) if n1 + n2 else 0.75

    def prob(history: str, w: str) -> float:
        p = 1.0 / V
        for k in range(1, order + 1):
            h = history[len(history) - (k - 1) :] if k > 1 else ""
            if k > 1 and len(history) < k - 1:
                break
            c = level_counts(k)
            tot = ctx_total[k].get(h, 0)
            if tot == 0:
                continue  # unseen context: keep the lower-order estimate
            p = (max(c.get(h + w, 0) - D[k], 0.0) + D[k] * ctx_types[k][h] * p) / tot
        return p

    return prob


def ngram_nats(train: str, val: str, order: int) -> float:
    prob = kneser_ney(train, order)
    total = 0.0
    for i in range(1, len(val)):
        history = val[max(0, i - order + 1) : i]
        total -= math.log(prob(history, val[i]))
    return total / (len(val) - 1)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=20.0, help="training budget (wall clock)")
    ap.add_argument("--out", default="runs/lm_quality", help="checkpoint directory (replaced)")
    ap.add_argument("--orders", default="2,3,4,5", help="n-gram orders to report")
    ap.add_argument("--skip-train", action="store_true", help="only evaluate an existing --out")
    ap.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                    help="budget in wall-clock seconds (the CLI) or in one core's CPU seconds")
    ap.add_argument("extra", nargs="*", help="extra options passed to `rnnkit lm train` after --")
    args = ap.parse_args()

    from rnnkit.apps.lm.generate import evaluate_text, sample
    from rnnkit.apps.lm.train import load_corpus, load_model

    print(f"# lm_quality: {platform.processor() or platform.machine()}, {os.cpu_count()} cpus, "
          f"python {platform.python_version()}, numpy {np.__version__}")
    print(f"# budget {args.minutes} min; train options: defaults {args.extra or ''}")
    if not args.skip_train and args.clock == "wall":
        shutil.rmtree(args.out, ignore_errors=True)
        cmd = [sys.executable, "-m", "rnnkit", "lm", "train", "--out", args.out,
               "--max-time", str(args.minutes * 60), *args.extra]
        print("$", " ".join(cmd), flush=True)
        t0 = time.time()
        subprocess.run(cmd, check=True)
        print(f"# trained for {(time.time() - t0) / 60:.1f} min (wall, including validation)")
    elif not args.skip_train:
        from rnnkit.apps.lm.train import LMSettings, LMTask
        from rnnkit.train.engine import fit
        shutil.rmtree(args.out, ignore_errors=True)
        if args.extra:
            ap.error("--clock cpu takes no extra options")
        settings = LMSettings()
        print(f"# in-process `rnnkit lm train --max-time {args.minutes * 60:g}` with CPU-time clock, "
              "1 BLAS thread", flush=True)
        t0, c0 = time.time(), time.process_time()
        summary = fit(LMTask(settings), settings, args.out, max_time=args.minutes * 60,
                      fit_to_time=True, progress=False, clock=time.process_time)
        chars = summary["steps_per_second"] * settings.batch * settings.seq_len
        print(f"# {summary['step']} steps, {(time.process_time() - c0) / 60:.1f} CPU min, "
              f"{(time.time() - t0) / 60:.1f} wall min, {chars:,.0f} chars per "
              f"CPU second; load average {os.getloadavg()[0]:.1f}")
    model, vocab, s = load_model(args.out)
    text, _ = load_corpus(None)
    cut = len(text) - int(round(len(text) * s.val_fraction))
    train_text, val_text = text[:cut], text[cut:]
    result = evaluate_text(model, vocab, val_text, s.seq_len, streams=1)
    print(f"\nrnnkit {s.cell} {s.layers}x{s.hidden}: validation {result['nats_per_char']:.4f} nats/char "
          f"= {result['bits_per_char']:.4f} bits/char over {result['chars']:,} chars (one stream)")
    for order in [int(o) for o in args.orders.split(",")]:
        t0 = time.time()
        nats = ngram_nats(train_text, val_text, order)
        print(f"{order}-gram Kneser-Ney: {nats:.4f} nats/char = {nats / math.log(2):.4f} bits/char "
              f"({time.time() - t0:.0f} s)")
    print(f"\nloss curve: {os.path.join(args.out, 'loss.png')}")
    print("sample (--prime 'ROMEO:' --temperature 0.8 --seed 1):\n")
    print("ROMEO:" + "".join(sample(model, vocab, "ROMEO:", 400, 0.8, seed=1)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
