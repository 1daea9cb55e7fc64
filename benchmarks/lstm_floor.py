#!/usr/bin/env python
"""The floor under rnnkit's LSTM rows: its GEMMs alone against torch's whole fused LSTM.

For each size (N, T, I, H) this times, with NumPy's BLAS and the shapes and layouts rnnkit's
drivers use (``rnnkit/nn/recurrent.py``, ``inference.py``):

* **train GEMMs**: the input projection (T*N, I) @ (I, 4H); T forward steps (N, H) @ (H, 4H);
  T backward steps (N, 4H) @ (4H, H); the weight gradients dW_ih = dG^T X and dW_hh (two
  products, as ``_sum_prev``); dx = dG W_ih.  Everything of a training step but the element-wise
  work and the memory passes around the products;
* **infer GEMMs**: T stacked products [W_ih b W_hh] (4H, I+1+H) @ [x_t; 1; h_{t-1}] (I+1+H, N);

against torch's whole ``nn.LSTM`` step (training: forward + backward incl. dx; inference under
``inference_mode``), each side in blocks of its own (``fair.py``), and against the BLAS's peak on
the same machine and threads (a 2048 x 2048 x 2048 product).  GFLOP/s count 2 flops per
multiply-add; a training step is 24 N T H (I + H) flops, inference 8 N T H (I + 1 + H).

``floor`` = rnnkit's GEMMs alone / torch's whole step.  Where it is near or above 1, no
element-wise work can bring the row to torch's time with this BLAS: the row is GEMM-bound, and
only a faster product (a BLAS that runs these shapes nearer its peak, or oneDNN's fused kernel,
which packs the weights once per sequence) would move it.

    python benchmarks/lstm_floor.py --threads 1
    python benchmarks/lstm_floor.py --threads 2 --sizes 64x100x64x256

A standalone script: never collected by pytest.
"""
from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fair  # noqa: E402  (imports neither NumPy nor torch)

SIZES = ["32x50x32x64", "64x100x64x256", "32x100x128x512", "1x25x65x100", "32x100x256x256"]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description="rnnkit's LSTM GEMMs alone vs torch's whole LSTM step.")
    p.add_argument("--threads", type=int, default=1, help="threads for torch and NumPy's BLAS (default 1)")
    p.add_argument("--sizes", default=",".join(SIZES),
                   help="comma-separated NxTxIxH (default: the table's rows and the lm model's "
                        "second layer, 32x100x256x256)")
    p.add_argument("--blocks", type=int, default=3, help="blocks per side (default 3)")
    p.add_argument("--samples", type=int, default=3, help="samples per block (default 3)")
    return p.parse_args(argv)


ARGS = parse_args() if __name__ == "__main__" else None
if ARGS is not None:  # the thread count must reach the BLAS before NumPy (or torch) is imported
    fair.set_thread_env(ARGS.threads)

import time  # noqa: E402

import numpy as np  # noqa: E402



def train_gemms(N, T, I, H, rng):
    """A callable running every GEMM of rnnkit's LSTM training step with its real shapes."""
    f32, g = np.float32, 4 * H
    X = rng.standard_normal((T * N, I)).astype(f32)
    w_ih_t = rng.standard_normal((I, g)).astype(f32)
    w_ih = np.ascontiguousarray(w_ih_t.T)
    w_hh_t = rng.standard_normal((H, g)).astype(f32)
    w_hh = np.ascontiguousarray(w_hh_t.T)
    Hs = rng.standard_normal((T, N, H)).astype(f32)
    G = rng.standard_normal((T, N, g)).astype(f32)
    dW_ih, dW_hh = np.zeros((g, I), f32), np.zeros((g, H), f32)
    dh = np.empty((N, H), f32)

    def run():
        X @ w_ih_t  # input projection of every step
        for t in range(T):  # forward steps
            np.matmul(Hs[t], w_hh_t, out=G[t])
        for t in range(T - 1, -1, -1):  # backward steps
            np.matmul(G[t], w_hh, out=dh)
        dG = G.reshape(T * N, g)
        dW_ih.__iadd__(dG.T @ X)
        dW_hh.__iadd__(G[0].T @ Hs[0])
        if T > 1:
            dW_hh.__iadd__(G[1:].reshape((T - 1) * N, g).T @ Hs[:-1].reshape((T - 1) * N, H))
        dG @ w_ih  # dx
    return run


def infer_gemms(N, T, I, H, rng):
    """A callable running the T stacked products of rnnkit's LSTM inference."""
    f32, g, K = np.float32, 4 * H, I + 1 + H
    stacked = rng.standard_normal((g, K)).astype(f32)
    xh = rng.standard_normal((T + 1, K, N)).astype(f32)
    out = np.empty((g, N), f32)

    def run():
        for t in range(T):
            np.matmul(stacked, xh[t], out=out)
    return run


def torch_steps(torch, N, T, I, H, rng):
    lstm = torch.nn.LSTM(I, H, batch_first=True)
    x = torch.from_numpy(rng.standard_normal((N, T, I)).astype(np.float32))
    xg = x.clone().requires_grad_(True)
    dy = torch.from_numpy(rng.standard_normal((N, T, H)).astype(np.float32))

    def train():
        xg.grad = None
        y, _ = lstm(xg)
        y.backward(dy)

    def infer():
        with torch.inference_mode():
            lstm(x)
    return train, infer


def peak() -> float:
    """GFLOP/s of NumPy's BLAS on a 2048^3 product, best of 3."""
    a = np.random.default_rng(0).standard_normal((2048, 2048)).astype(np.float32)
    out = np.empty_like(a)
    np.matmul(a, a, out=out)
    best = min(_timed(lambda: np.matmul(a, a, out=out)) for _ in range(3))
    return 2 * 2048 ** 3 / best / 1e9


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main(args) -> int:
    try:
        import torch
    except ImportError:
        print("lstm_floor.py needs torch to compare against", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    print("\n".join(fair.describe(torch, False, f"threads {args.threads}, float32, blocks "
                                                 f"{args.blocks} x {args.samples} samples")))
    top = peak()
    print(f"BLAS peak (2048^3 sgemm, {args.threads} thread(s)): {top:.0f} GFLOP/s\n")
    head = (f"{'N,T,I,H':16s} {'mode':5s} {'GFLOP':>7s} {'rnnkit GEMMs':>22s} "
            f"{'torch whole step':>22s} {'floor':>6s}")
    print(head)
    print("-" * len(head))
    rng = np.random.default_rng(0)
    for key in args.sizes.split(","):
        N, T, I, H = (int(v) for v in key.split("x"))
        t_train, t_infer = torch_steps(torch, N, T, I, H, rng)
        for mode, ours, theirs, flops in (
                ("train", train_gemms(N, T, I, H, rng), t_train, 24 * N * T * H * (I + H)),
                ("infer", infer_gemms(N, T, I, H, rng), t_infer, 8 * N * T * H * (I + 1 + H))):
            res = fair.time_blocks(ours, theirs, blocks=args.blocks, samples=args.samples,
                                   target=0.02)
            a, b = res["ours_s"], res["theirs_s"]
            gf_a, gf_b = flops / a / 1e9, flops / b / 1e9
            print(f"{f'{N},{T},{I},{H}':16s} {mode:5s} {flops / 1e9:7.3f} "
                  f"{a * 1e3:9.2f} ms {gf_a:4.0f} GF/s {100 * gf_a / top:3.0f}% "
                  f"{b * 1e3:9.2f} ms {gf_b:4.0f} GF/s {100 * gf_b / top:3.0f}% "
                  f"{a / b:6.2f}", flush=True)
    print("-" * len(head))
    print("floor = rnnkit's GEMMs alone / torch's whole step; % = of the BLAS peak above")
    print(f"load average {fair.loadavg()}")
    return 0


if __name__ == "__main__":
    sys.exit(main(ARGS))
