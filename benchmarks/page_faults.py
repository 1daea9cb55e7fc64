#!/usr/bin/env python
"""Page faults and time of rnnkit's training step and inference call, per call.

Fresh memory costs the process a (minor) page fault per page on first touch; a driver that
allocates its per-step caches anew on every call pays them inside its time loop.  This prints,
for each size, the minor faults per call (``getrusage``) and the median time of a call after a
warm-up.  To see what a change did, run it before and after (``git stash``) in turn, several
times: at 2 threads single runs vary by 10-20% on a shared machine.

    python benchmarks/page_faults.py --threads 2
    python benchmarks/page_faults.py --threads 1 --cell gru --sizes 32x100x128x512

A standalone script: never collected by pytest.
"""
from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fair  # noqa: E402  (imports neither NumPy nor torch)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description="Minor page faults and time per call of rnnkit's layers.")
    p.add_argument("--threads", type=int, default=1, help="NumPy's BLAS threads (default 1)")
    p.add_argument("--cell", choices=("rnn", "lstm", "gru"), default="lstm")
    p.add_argument("--sizes", default="32x50x32x64,64x100x64x256,32x100x128x512",
                   help="comma-separated NxTxIxH")
    p.add_argument("--calls", type=int, default=10, help="timed calls per size (default 10)")
    return p.parse_args(argv)


ARGS = parse_args() if __name__ == "__main__" else None
if ARGS is not None:  # the thread count must reach the BLAS before NumPy is imported
    fair.set_thread_env(ARGS.threads)

import resource  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import rnnkit  # noqa: E402


def per_call(fn, calls: int) -> tuple[float, float]:
    """(median seconds, minor faults per call) over ``calls`` calls after three warm-up calls."""
    for _ in range(3):
        fn()
    times = []
    f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(calls):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0
    return statistics.median(times), faults / calls


def main(args) -> int:
    print(f"{args.cell}, {args.threads} thread(s), float32, numpy {np.__version__}; "
          f"medians of {args.calls} calls")
    for key in args.sizes.split(","):
        N, T, I, H = (int(v) for v in key.split("x"))
        rng = np.random.default_rng(0)
        layer = rnnkit.nn.recurrent_layer(args.cell, I, H, dtype=np.float32, rng=rng)
        x = rng.standard_normal((N, T, I)).astype(np.float32)
        dy = rng.standard_normal((N, T, H)).astype(np.float32)

        def train():
            layer(x)
            layer.backward(dy)

        def infer():
            with rnnkit.no_grad():
                layer(x)

        for mode, fn in (("train", train), ("infer", infer)):
            s, faults = per_call(fn, args.calls)
            print(f"  {key:16s} {mode:5s} {s * 1e3:9.2f} ms   {faults:7.0f} minor faults a call",
                  flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(ARGS))
