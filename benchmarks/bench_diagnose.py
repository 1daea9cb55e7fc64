#!/usr/bin/env python
"""What ``--diagnose`` costs: the gradient-flow measurement against the training step it rides on.

``--diagnose`` (rnnkit/train/diagnose.py) measures at the start and at every evaluation: two
forward + backward passes of the task's loss on a saved batch inside ``record_gradients()`` (the
last-step probe and the whole loss), the singular values of every W_hh gate block, the summary
numbers and one JSON line; gradient_flow.png is redrawn at most once a minute and at the end.
Between evaluations it only counts clipped steps.  So its cost per training step is

    overhead(E) = (measurement + plot / steps per minute) / (E x step)

for an evaluation every E steps.  This script times, on an application's default model (``lm``:
``rnnkit lm train``'s 2-layer LSTM 256 on 32 x 100 characters; ``translate``, ``asr`` on small
generated data at their default sizes), in one process, alternating, medians of ``--rounds``:

* a training step as `fit` runs it (forward + backward, clip, Adam, zero_grad),
* the same step with ``record_gradients()`` around the backward (what recording *every* step
  would cost; --diagnose does not do that),
* one measurement (``measure`` + the JSON line) and one gradient_flow.png,

and prints the overhead at ``--eval-every`` (the application's default) and at 10, and the
evaluation interval at which it would reach 10%.

    python benchmarks/bench_diagnose.py                      # lm, wall clock
    python benchmarks/bench_diagnose.py --clock cpu          # CPU time of this process (shared machines)
    python benchmarks/bench_diagnose.py --app translate

A standalone script: never collected by pytest.
"""
from __future__ import annotations

import argparse
import os
import sys


def parse_args(argv=None):
    p = argparse.ArgumentParser(description="The cost of --diagnose against a training step.")
    p.add_argument("--app", choices=("lm", "translate"), default="lm")
    p.add_argument("--threads", type=int, default=1, help="BLAS threads (default 1, as the CLI)")
    p.add_argument("--rounds", type=int, default=7, help="alternating rounds (default 7)")
    p.add_argument("--steps", type=int, default=3, help="training steps per round (default 3)")
    p.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                   help="wall time, or this process's CPU time (for a busy shared machine)")
    return p.parse_args(argv)


ARGS = parse_args() if __name__ == "__main__" else None
if ARGS is not None:  # the thread count must reach the BLAS before NumPy is imported
    for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[_var] = str(ARGS.threads)

import json  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from rnnkit.nn import record_gradients  # noqa: E402
from rnnkit.nn.optim import Adam, clip_grad_norm  # noqa: E402
from rnnkit.train.diagnose import _clean, measure, plot_flow, warnings_of  # noqa: E402


def lm_task():
    from rnnkit.apps.lm.train import LMSettings, LMTask

    s = LMSettings()
    return LMTask(s), s


def translate_task(folder: Path):
    from rnnkit.apps.seq2seq.train import TranslateSettings, TranslateTask

    rng = np.random.default_rng(0)
    digits = "zero one two three four five six seven eight nine".split()
    nums = rng.integers(0, 10**6, 4000)
    pairs = [(str(n), " ".join(digits[int(c)] for c in str(n))) for n in nums]
    s = TranslateSettings()
    return TranslateTask(s, pairs), s


def main(args) -> None:
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    with tempfile.TemporaryDirectory() as tmp:
        task, s = lm_task() if args.app == "lm" else translate_task(Path(tmp))
        model = task.model
        params = list(model.named_parameters())
        opt = Adam(lr=s.lr)
        step_no = [1]

        def step(recording=False):
            batch = task.batch(step_no[0])
            step_no[0] += 1
            if recording:
                with record_gradients():
                    task.loss(batch)
            else:
                task.loss(batch)
            clip_grad_norm(params, s.clip)
            opt.step(params)
            model.zero_grad()

        def one_measurement():
            record = _clean({"step": 0, **measure(task, task.batch(0))})
            record["warnings"] = warnings_of(record, s.clip)
            with open(Path(tmp) / "diagnostics.jsonl", "a") as f:
                f.write(json.dumps(record) + "\n")
            return record

        records = [one_measurement()]  # and warm-up
        for _ in range(2):
            step()
        times = {"step": [], "recorded step": [], "measurement": [], "plot": []}
        for _ in range(args.rounds):
            for name, fn in (("step", step), ("recorded step", lambda: step(True))):
                t = clock()
                for _ in range(args.steps):
                    fn()
                times[name].append((clock() - t) / args.steps)
            t = clock()
            records.append(one_measurement())
            times["measurement"].append(clock() - t)
            t = clock()
            plot_flow(Path(tmp) / "gradient_flow.png", records[-8:])
            times["plot"].append(clock() - t)
    med = {k: statistics.median(v) for k, v in times.items()}
    st, me, pl = med["step"], med["measurement"], med["plot"]
    every = s.eval_every
    print(f"# rnnkit --diagnose overhead: {args.app} (default model, {model.num_parameters():,} "
          f"parameters), {args.threads} BLAS thread(s), {args.clock} clock, medians of "
          f"{args.rounds} rounds")
    print("| what | time | in training steps |")
    print("|---|---|---|")
    print(f"| training step (forward + backward, clip, Adam) | {1e3 * st:.1f} ms | 1 |")
    print(f"| the same step recorded (record_gradients around it) | {1e3 * med['recorded step']:.1f} "
          f"ms | {med['recorded step'] / st:.3f} |")
    print(f"| one measurement (2 probe passes, SVDs, summary, JSON line) | {1e3 * me:.1f} ms | "
          f"{me / st:.2f} |")
    print(f"| one gradient_flow.png (at most once a minute) | {1e3 * pl:.1f} ms | {pl / st:.2f} |")
    print()
    for e in sorted({every, 10}, reverse=True):
        interval = e * st  # seconds between measurements; a plot at most every 60 s
        cost = me + pl * min(1.0, interval / 60.0)
        print(f"--diagnose with an evaluation every {e} steps: {100 * cost / interval:.2f}% of the "
              f"training time ({100 * (me + pl) / interval:.2f}% with a plot at every evaluation)"
              + ("  <- the application's default" if e == every else ""))
    print(f"10% is reached with an evaluation every {max(1, int((me + pl) / (0.1 * st)))} steps "
          "(a plot at each)")


if __name__ == "__main__":
    sys.exit(main(ARGS))
