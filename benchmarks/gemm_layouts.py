#!/usr/bin/env python
"""Why LSTM inference is GEMM-bound: the per-step products of both rnnkit drivers against torch's
whole fused LSTM layer, in one process, same threads.

For each size (N, T, I, H) it times, with NumPy's BLAS:

* ``batch-major``: the training driver's recurrent product, (N, H) @ (H, 4H) into a (N, 4H) buffer;
* ``hidden-major``: the inference driver's, (4H, H) @ (H, N) into (4H, N);
* ``stacked x T``: the inference driver's whole GEMM work for the sequence, T products
  [W_ih b W_hh] (4H, I+1+H) @ [x_t; 1; h_{t-1}] (I+1+H, N);

and ``torch.nn.LSTM`` inference of the same sequence (oneDNN's fused kernel, everything included).
GFLOP/s counts 2 flops per multiply-add.  When the stacked GEMMs alone take longer than torch's
layer, no element-wise work can bring rnnkit's LSTM inference to torch's time.

    python benchmarks/gemm_layouts.py                  # 1 thread
    python benchmarks/gemm_layouts.py --threads 2

A standalone script: never collected by pytest.
"""
from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fair  # noqa: E402  (imports neither NumPy nor torch)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description="Per-step GEMMs of rnnkit's drivers vs torch's LSTM.")
    p.add_argument("--threads", type=int, default=1, help="threads for torch and NumPy's BLAS (default 1)")
    p.add_argument("--repeats", type=int, default=7, help="timed samples, median reported (default 7)")
    return p.parse_args(argv)


ARGS = parse_args() if __name__ == "__main__" else None
if ARGS is not None:  # the thread count must reach the BLAS before NumPy (or torch) is imported
    fair.set_thread_env(ARGS.threads)

import statistics  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

SIZES = [(32, 50, 32, 64), (64, 100, 64, 256), (32, 100, 128, 512), (1, 25, 65, 100),
         (32, 100, 256, 256)]  # the last: layer 2 of `rnnkit lm train`'s default model


def median_time(fn, repeats: int) -> float:
    fn()
    samples = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
    return statistics.median(samples)


def main(args) -> int:
    try:
        import torch
    except ImportError:
        print("gemm_layouts.py needs torch to compare against", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    f32 = np.float32
    print(f"threads {args.threads}; numpy {np.__version__}, torch {torch.__version__}; float32; "
          f"medians of {args.repeats}")
    print(f"{'N,T,I,H':16s} {'batch-major step':>18s} {'hidden-major step':>18s} "
          f"{'stacked x T':>14s} {'torch LSTM':>11s}  stacked / torch")
    for N, T, I, H in SIZES:
        g, K = 4 * H, I + 1 + H
        h = rng.standard_normal((N, H)).astype(f32)
        w_t = rng.standard_normal((H, g)).astype(f32)    # W_hh^T, contiguous (training driver)
        w = np.ascontiguousarray(w_t.T)                  # W_hh (inference driver)
        h_t = np.ascontiguousarray(h.T)
        out_bm, out_hm = np.empty((N, g), f32), np.empty((g, N), f32)
        stacked = rng.standard_normal((g, K)).astype(f32)
        xh = rng.standard_normal((T + 1, K, N)).astype(f32)

        reps = max(1, 2000 // T)  # time many single steps: one is only microseconds
        bm = median_time(lambda: [np.matmul(h, w_t, out=out_bm) for _ in range(reps)], args.repeats) / reps
        hm = median_time(lambda: [np.matmul(w, h_t, out=out_hm) for _ in range(reps)], args.repeats) / reps

        def run_stacked():
            for t in range(T):
                np.matmul(stacked, xh[t], out=out_hm)

        st = median_time(run_stacked, args.repeats)
        lstm = torch.nn.LSTM(I, H, batch_first=True)
        x = torch.from_numpy(rng.standard_normal((N, T, I)).astype(f32))

        def run_torch():
            with torch.inference_mode():
                lstm(x)

        time.sleep(0.3)  # OpenBLAS's threads park before torch's run (benchmarks/fair.py)
        tt = median_time(run_torch, args.repeats)
        time.sleep(0.3)
        step_flops = 2 * N * H * g
        gf = lambda flops, s: flops / s / 1e9  # noqa: E731
        print(f"{f'{N},{T},{I},{H}':16s} {bm * 1e6:7.1f} us {gf(step_flops, bm):4.0f} GF/s "
              f"{hm * 1e6:7.1f} us {gf(step_flops, hm):4.0f} GF/s "
              f"{st * 1e3:7.2f} ms {gf(2 * N * K * g * T, st):3.0f} "
              f"{tt * 1e3:8.2f} ms  {st / tt:5.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(ARGS))
