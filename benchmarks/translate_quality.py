"""Quality of ``rnnkit translate`` on three tasks; prints a table (not collected by pytest).

    numbers  num2words French (numbers-char: the same with character targets): train on 20,000 random numbers below one million, test on 1,000
             unseen ones (exact match, greedy and beam); target >= 0.95 within 15 minutes
    dates    human-written dates (8 locales, 9 patterns) -> ISO; train 20,000, test 1,000 unseen
    de-en    Debian trans-de-en German -> English sentences: BLEU on 500 held-out pairs,
             greedy beside beam search

Usage::

    nice -n 5 python benchmarks/translate_quality.py [--tasks numbers dates de-en]
        [--minutes 14] [--workdir DIR]

BLAS is pinned to one thread (set before NumPy loads): the decoder's matrices are small, and
on a shared 2-core machine OpenBLAS threads spinning against other processes made a training
step ten times slower.
"""
import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse  # noqa: E402
import json  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from rnnkit.apps.seq2seq.data import make_dates, make_numbers, read_trans_de_en  # noqa: E402
from rnnkit.apps.seq2seq.train import TranslateSettings, TranslateTask, load_model  # noqa: E402
from rnnkit.train.engine import fit  # noqa: E402

TASKS = {
    # settings of `rnnkit translate train` per task (the CLI flags are the field names)
    "numbers": dict(tokens="word", src_tokens="char", hidden=128, batch=64, steps=6000,
                    eval_every=500, lr=3e-3),
    # the defaults: characters on both sides (about 4x more decoder steps than words)
    "numbers-char": dict(tokens="char", hidden=128, batch=64, steps=6000, eval_every=500, lr=3e-3),
    "dates": dict(tokens="char", hidden=128, batch=64, steps=4000, eval_every=500, lr=3e-3),
    "de-en": dict(tokens="word", hidden=192, embed=96, batch=64, steps=2500, eval_every=500,
                  lr=2e-3, vocab_size=6000),
}


def data(task: str):
    if task.startswith("numbers"):
        both = make_numbers(21_000, "fr", seed=1)
        return both[:20_000], both[20_000:]
    if task == "dates":
        pairs = make_dates(21_000, seed=1)
        train, test = pairs[:20_000], pairs[20_000:]
        seen = {s for s, _ in train}
        return train, [p for p in test if p[0] not in seen]
    pairs = read_trans_de_en()
    order = np.random.default_rng(0).permutation(len(pairs))
    return [pairs[i] for i in order[500:]], [pairs[i] for i in order[:500]]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", nargs="+", default=["numbers", "dates", "de-en"], choices=list(TASKS))
    ap.add_argument("--minutes", type=float, default=14.0, help="training time limit per task")
    ap.add_argument("--workdir", default=None, help="keep the checkpoints here")
    ap.add_argument("--beam", type=int, default=5)
    args = ap.parse_args()
    work = Path(args.workdir or tempfile.mkdtemp(prefix="translate-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    rows = []
    for task in args.tasks:
        train, test = data(task)
        settings = TranslateSettings(**TASKS[task])
        t0 = time.monotonic()
        summary = fit(TranslateTask(settings, train), settings, work / task,
                      max_time=args.minutes * 60)
        minutes = (time.monotonic() - t0) / 60
        translator = load_model(work / task)
        greedy, _ = translator.evaluate(test, 1)
        beam, _ = translator.evaluate(test, args.beam)
        row = {"task": task, "train_pairs": len(train), "test_pairs": len(test),
               "steps": summary["step"], "train_minutes": round(minutes, 1),
               "greedy": greedy, f"beam{args.beam}": beam, "settings": TASKS[task]}
        rows.append(row)
        print(json.dumps(row), flush=True)
    print(f"\n{'task':8} {'pairs':>11} {'steps':>6} {'min':>5} | {'exact':>6} {'tok acc':>7} "
          f"{'BLEU':>6} | beam {args.beam}: {'exact':>6} {'BLEU':>6}")
    for r in rows:
        g, b = r["greedy"], r[f"beam{args.beam}"]
        print(f"{r['task']:8} {r['train_pairs']:>5}/{r['test_pairs']:<5} {r['steps']:>6} "
              f"{r['train_minutes']:>5} | {g['exact_match']:6.4f} {g['token_accuracy']:7.4f} "
              f"{g['bleu']:6.2f} |        {b['exact_match']:6.4f} {b['bleu']:6.2f}")
    print(f"(uptime load: {os.getloadavg()[0]:.1f}; checkpoints in {work})")


if __name__ == "__main__":
    main()
