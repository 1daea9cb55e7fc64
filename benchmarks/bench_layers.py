#!/usr/bin/env python
"""Benchmark rnnkit's RNN / LSTM / GRU layers against PyTorch on the CPU, fairly.

For each cell (rnn, lstm, gru) and each size (N, T, I, H) it times

* ``train``: one training step = forward + backward, including dx
  (rnnkit: ``forward`` + ``backward(dy)``; torch: forward with ``x.requires_grad=True`` and
  ``y.backward(dy)``), and
* ``infer``: a forward pass without caching (rnnkit under ``rnnkit.no_grad()``, torch under
  ``torch.inference_mode()``),
* ``frozen``: the same forward pass with rnnkit inside one ``rnnkit.frozen()`` scope held over
  the whole block, as ``lm sample`` and the apps' evaluation and decoding run (the per-call weight
  copies made once); torch as for ``infer`` (the layers only, not the cell step),

plus a 2-layer bidirectional configuration with variable lengths (torch packs with
``pack_padded_sequence(..., enforce_sorted=False)`` / ``pad_packed_sequence``) and one LSTM cell
step at N=1 against ``torch.nn.LSTMCell``.

Both sides run the same weights (copied by name) on the same data; before timing each
configuration the outputs, dx, final state and parameter gradients are compared once.  Each
library is then timed in blocks of its own with the other's threads idle (``fair.py`` says why
and how); a row reports the medians, ratio = rnnkit / torch (< 1: rnnkit is faster) and the
ratio's spread over blocks.  Every table is printed with the CPU, its ISA, the BLAS and its
threads, torch's backend and threads and whether numba is on.

    python benchmarks/bench_layers.py               # full run, 2 threads (several minutes)
    python benchmarks/bench_layers.py --threads 1 --quick
    python benchmarks/bench_layers.py --check       # exit 1 if a row is slower than torch
    python benchmarks/bench_layers.py --compare-methods --cells lstm --sizes 64x100x64x256
    python benchmarks/bench_layers.py --json results.json --threads 4 --dtype float64

``--check`` exits non-zero when a row's ratio is above 1.0 plus its spread, and lists those rows.
``--compare-methods`` times the first selected row three ways: the old alternating method (single
samples alternate rnnkit, torch, ...), the same with a pause before each sample, and blocks.

A standalone script: never collected by pytest (it has no test_ names and lives outside tests/).
"""
from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fair  # noqa: E402  (imports neither NumPy nor torch)

# ---- the thread count must reach the BLAS before NumPy (or torch) is imported ---------------
SIZES = {  # key -> (N, T, I, H, num_layers, bidirectional, variable lengths)
    "32x50x32x64": (32, 50, 32, 64, 1, False, False),
    "64x100x64x256": (64, 100, 64, 256, 1, False, False),
    "32x100x128x512": (32, 100, 128, 512, 1, False, False),
    "1x25x65x100": (1, 25, 65, 100, 1, False, False),
    "bidir": (32, 100, 64, 128, 2, True, True),
}
STEP = (1, 128, 128)  # the LSTM cell step: N, I, H
CELLS = ("rnn", "lstm", "gru")
MODES = ("train", "infer", "frozen")
STEP_LIMIT = 0.5  # the LSTM cell step's target ratio against torch's LSTMCell (issue 20)


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description="Time rnnkit's RNN/LSTM/GRU layers against PyTorch (same weights, fair blocks).")
    p.add_argument("--threads", type=int, default=2,
                   help="threads for torch and for NumPy's BLAS (default 2)")
    p.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    p.add_argument("--quick", action="store_true", help="fewer blocks and samples")
    p.add_argument("--blocks", type=int, default=None, help="blocks per side (default 5, --quick 3)")
    p.add_argument("--samples", type=int, default=None,
                   help="timed samples per block, median taken (default 5, --quick 3)")
    p.add_argument("--max-seconds", type=float, default=None,
                   help="time budget per row; blocks stop early (at least 3) once it is spent "
                        "(default 20, --quick 6)")
    p.add_argument("--cells", default=",".join(CELLS),
                   help=f"comma-separated subset of {','.join(CELLS)} (default: all)")
    p.add_argument("--sizes", default=",".join(list(SIZES) + ["step"]),
                   help="comma-separated size keys: " + ", ".join(SIZES) + ", step (the LSTM cell "
                        "step, run when lstm is selected) or any NxTxIxH (default: all)")
    p.add_argument("--modes", default=",".join(MODES), help="train,infer,frozen (default: all three)")
    p.add_argument("--check", action="store_true",
                   help="exit 1 when a row's ratio exceeds 1.0 (the cell step: 0.5) plus its spread")
    p.add_argument("--compare-methods", action="store_true",
                   help="time only the first selected row, by the old alternating method and by "
                        "blocks, and print both")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", metavar="PATH", help="also write the results as JSON to PATH")
    args = p.parse_args(argv)
    if args.threads < 1:
        p.error("--threads must be >= 1")
    args.cells = [c.strip().lower() for c in args.cells.split(",") if c.strip()]
    bad = [c for c in args.cells if c not in CELLS]
    if bad:
        p.error(f"unknown cell(s) {bad}; choose from {list(CELLS)}")
    args.modes = [m.strip().lower() for m in args.modes.split(",") if m.strip()]
    bad = [m for m in args.modes if m not in MODES]
    if bad:
        p.error(f"unknown mode(s) {bad}; choose from {list(MODES)}")
    sizes = []
    for key in (s.strip() for s in args.sizes.split(",") if s.strip()):
        if key in SIZES or key == "step":
            sizes.append(key)
            continue
        parts = key.lower().split("x")
        if len(parts) != 4 or not all(q.isdigit() and int(q) > 0 for q in parts):
            p.error(f"unknown size {key!r}: use one of {list(SIZES) + ['step']} or NxTxIxH")
        SIZES[key] = tuple(int(q) for q in parts) + (1, False, False)
        sizes.append(key)
    args.sizes = sizes
    args.blocks = max(1, args.blocks or (3 if args.quick else 5))
    args.samples = max(1, args.samples or (3 if args.quick else 5))
    if args.max_seconds is None:
        args.max_seconds = 6.0 if args.quick else 20.0
    return args


ARGS = parse_args() if __name__ == "__main__" else None
if ARGS is not None:
    fair.set_thread_env(ARGS.threads)

import gc  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

try:
    import torch  # noqa: E402
    from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence  # noqa: E402
except ImportError:  # pragma: no cover - the benchmark needs torch
    torch = None

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import rnnkit  # noqa: E402
from rnnkit.nn import _accel  # noqa: E402


# ------------------------------------------------------------------------------------------
# Building both sides with the same weights
# ------------------------------------------------------------------------------------------
def torch_dtype(dtype):
    return torch.float32 if dtype == np.float32 else torch.float64


def copy_weights(ours, theirs) -> None:
    """Copy rnnkit's parameters into the torch module by name (strict: every name must match)."""
    state = {name: torch.from_numpy(np.ascontiguousarray(p).copy())
             for name, p in ours.params.items()}
    theirs.load_state_dict(state, strict=True)


def max_rel(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """(max |a - b|, max |a - b| / max(1, max |b|))."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape:
        raise ValueError(f"shape mismatch {a.shape} vs {b.shape}")
    if a.size == 0:
        return 0.0, 0.0
    d = float(np.max(np.abs(a - b)))
    return d, d / max(1.0, float(np.max(np.abs(b))))


def to_np(t) -> np.ndarray:
    return t.detach().cpu().numpy()


class LayerCase:
    """One (cell, size) configuration: an rnnkit layer, the torch twin, data and step functions."""

    def __init__(self, cell: str, size_key: str, dtype, seed: int):
        N, T, I, H, L, bi, var = SIZES[size_key]
        self.cell, self.size_key, self.dims = cell, size_key, (N, T, I, H, L, bi, var)
        rng = np.random.default_rng(seed)
        cls = {"rnn": rnnkit.RNN, "lstm": rnnkit.LSTM, "gru": rnnkit.GRU}[cell]
        tcls = {"rnn": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[cell]
        self.ours = cls(I, H, num_layers=L, bidirectional=bi, dtype=dtype, rng=rng)
        self.theirs = tcls(I, H, num_layers=L, bidirectional=bi, batch_first=True).to(torch_dtype(dtype))
        copy_weights(self.ours, self.theirs)
        self.scope = None  # the frozen() scope of the ``frozen`` mode
        D = 2 if bi else 1
        self.x = rng.standard_normal((N, T, I)).astype(dtype)
        self.dy = rng.standard_normal((N, T, D * H)).astype(dtype)
        self.lengths = None
        if var:
            self.lengths = rng.integers(T // 2, T + 1, size=N).astype(np.int64)
            self.lengths[rng.integers(N)] = T  # the padded length is reached, as after padding
            mask = np.arange(T)[None, :, None] < self.lengths[:, None, None]
            self.dy *= mask  # gradients at padded steps mean nothing to torch's packed output
            self.t_lengths = torch.from_numpy(self.lengths)
        self.tx = torch.from_numpy(self.x)
        self.tx_grad = torch.from_numpy(self.x.copy()).requires_grad_(True)
        self.tdy = torch.from_numpy(self.dy)
        self.T = T

    def label(self) -> str:
        N, T, I, H, L, bi, var = self.dims
        extra = f" L{L}" + (" bi" if bi else "") + (" var" if var else "") if self.size_key == "bidir" else ""
        return f"{N}x{T}x{I}x{H}{extra}"

    # -- torch side --------------------------------------------------------------------------
    def _torch_forward(self, x):
        if self.lengths is None:
            return self.theirs(x)
        packed = pack_padded_sequence(x, self.t_lengths, batch_first=True, enforce_sorted=False)
        out, state = self.theirs(packed)
        y, _ = pad_packed_sequence(out, batch_first=True, total_length=self.T)
        return y, state

    def torch_train(self):
        self.tx_grad.grad = None
        y, _ = self._torch_forward(self.tx_grad)
        y.backward(self.tdy)

    def torch_infer(self):
        with torch.inference_mode():
            return self._torch_forward(self.tx)

    # -- rnnkit side -------------------------------------------------------------------------
    def ours_train(self):
        self.ours.forward(self.x, lengths=self.lengths)
        return self.ours.backward(self.dy)

    def ours_infer(self):
        with rnnkit.no_grad():
            return self.ours.forward(self.x, lengths=self.lengths)

    def ours_frozen(self):
        if self.scope is None:  # released by release_frozen() after the row
            self.scope = rnnkit.frozen(persist=True)
        with self.scope:
            return self.ours.forward(self.x, lengths=self.lengths)

    def release_frozen(self):
        if self.scope is not None:
            self.scope.release()
            self.scope = None

    # -- agreement ---------------------------------------------------------------------------
    def check(self) -> dict:
        """Run both sides once; return the max abs (and relative) differences per quantity."""
        self.ours.zero_grad()
        self.theirs.zero_grad(set_to_none=True)
        self.tx_grad.grad = None
        y, state = self.ours.forward(self.x, lengths=self.lengths)
        dx, _ = self.ours.backward(self.dy)
        ty, tstate = self._torch_forward(self.tx_grad)
        ty.backward(self.tdy)
        out = {"y": max_rel(y, to_np(ty)), "dx": max_rel(dx, to_np(self.tx_grad.grad))}
        if self.cell == "lstm":
            out["h_n"] = max_rel(state[0], to_np(tstate[0]))
            out["c_n"] = max_rel(state[1], to_np(tstate[1]))
        else:
            out["h_n"] = max_rel(state, to_np(tstate))
        tgrads = {n: p.grad for n, p in self.theirs.named_parameters()}
        worst = (0.0, 0.0)
        for name, g in self.ours.grads.items():
            d = max_rel(g, to_np(tgrads[name]))
            worst = max(worst, d, key=lambda v: v[1])
        out["param grads"] = worst
        with rnnkit.no_grad():
            yi, _ = self.ours.forward(self.x, lengths=self.lengths)
        with torch.inference_mode():
            tyi, _ = self._torch_forward(self.tx)
        out["y (infer)"] = max_rel(yi, to_np(tyi))
        self.ours.zero_grad()
        self.theirs.zero_grad(set_to_none=True)
        return out


class StepCase:
    """One LSTM cell step at N=1 against torch.nn.LSTMCell."""

    cell, size_key = "lstm", "step"

    def __init__(self, dtype, seed: int):
        N, I, H = STEP
        rng = np.random.default_rng(seed)
        self.ours = rnnkit.LSTMCell(I, H, dtype=dtype, rng=rng)
        self.theirs = torch.nn.LSTMCell(I, H).to(torch_dtype(dtype))
        copy_weights(self.ours, self.theirs)
        self.x = rng.standard_normal((N, I)).astype(dtype)
        self.h = rng.standard_normal((N, H)).astype(dtype)
        self.c = rng.standard_normal((N, H)).astype(dtype)
        self.dh = rng.standard_normal((N, H)).astype(dtype)
        self.dc = rng.standard_normal((N, H)).astype(dtype)
        self.tx = torch.from_numpy(self.x)
        self.tx_grad = torch.from_numpy(self.x.copy()).requires_grad_(True)
        self.th, self.tc = torch.from_numpy(self.h), torch.from_numpy(self.c)
        self.tdh, self.tdc = torch.from_numpy(self.dh), torch.from_numpy(self.dc)

    def label(self) -> str:
        N, I, H = STEP
        return f"cell step N{N} I{I} H{H}"

    def torch_train(self):
        self.tx_grad.grad = None
        h, c = self.theirs(self.tx_grad, (self.th, self.tc))
        torch.autograd.backward((h, c), (self.tdh, self.tdc))

    def torch_infer(self):
        with torch.inference_mode():
            return self.theirs(self.tx, (self.th, self.tc))

    def ours_train(self):
        self.ours.forward(self.x, (self.h, self.c))
        return self.ours.backward(self.dh, self.dc)

    def ours_infer(self):
        with rnnkit.no_grad():
            return self.ours.forward(self.x, (self.h, self.c))

    def check(self) -> dict:
        self.ours.zero_grad()
        self.theirs.zero_grad(set_to_none=True)
        self.tx_grad.grad = None
        h, c = self.ours.forward(self.x, (self.h, self.c))
        dx, _ = self.ours.backward(self.dh, self.dc)
        th, tc = self.theirs(self.tx_grad, (self.th, self.tc))
        torch.autograd.backward((th, tc), (self.tdh, self.tdc))
        out = {"h": max_rel(h, to_np(th)), "c": max_rel(c, to_np(tc)),
               "dx": max_rel(dx, to_np(self.tx_grad.grad))}
        tgrads = {n: p.grad for n, p in self.theirs.named_parameters()}
        out["param grads"] = max((max_rel(g, to_np(tgrads[n])) for n, g in self.ours.grads.items()),
                                 key=lambda v: v[1])
        self.ours.zero_grad()
        self.theirs.zero_grad(set_to_none=True)
        return out


# ------------------------------------------------------------------------------------------
# Main
# ------------------------------------------------------------------------------------------
def limit_of(row) -> float:
    return STEP_LIMIT if row["size_key"] == "step" else 1.0


def pair(case, mode):
    """(rnnkit's function, torch's function) of a mode; None when the case has no such mode (the
    cell step has no ``frozen``: a cell makes no weight copies)."""
    if mode == "train":
        return case.ours_train, case.torch_train
    if mode == "frozen":
        return (case.ours_frozen, case.torch_infer) if hasattr(case, "ours_frozen") else None
    return case.ours_infer, case.torch_infer


def compare_methods(case, mode, args) -> dict:
    """One row three ways: alternating samples (the old method), the same with a pause before
    every sample, and blocks (the fair method)."""
    ours, theirs = pair(case, mode)
    target = 0.01 if args.quick else 0.03
    n = args.blocks * args.samples
    print(f"\n{case.cell} {case.label()} {mode}: the same row by three methods "
          f"({args.threads} threads)")
    print(f"  {'method':22s} {'rnnkit ms':>10s} {'torch ms':>10s} {'ratio':>7s}", flush=True)
    out = {}
    for name, run in (
            ("alternating", lambda: fair.time_alternating(ours, theirs, repeats=n, target=target)),
            ("alternating + pause", lambda: fair.time_alternating(
                ours, theirs, repeats=n, target=target, pause=fair.IDLE_S)),
            ("blocks", lambda: fair.time_blocks(ours, theirs, blocks=args.blocks,
                                                samples=args.samples, target=target))):
        r = out[name] = run()
        print(f"  {name:22s} {r['ours_s'] * 1e3:10.2f} {r['theirs_s'] * 1e3:10.2f} "
              f"{r['ratio']:7.2f} +- {r['spread']:.2f}", flush=True)
    print("  alternating: each sample starts while the other library's threads still spin on the "
          "cores;\n  a pause before each sample (same order) or blocks of one library let them "
          "park first.")
    return out


def main(args) -> int:
    if torch is None:
        print("bench_layers.py needs torch (pip install torch) to compare against", file=sys.stderr)
        return 2
    dtype = np.dtype(args.dtype).type
    torch.set_num_threads(args.threads)
    limiter = fair.set_blas_threads(args.threads)  # noqa: F841 - kept alive for the run
    blas = [p.get("num_threads") for p in fair.thread_pools() if p.get("internal_api") == "openblas"]
    same = torch.get_num_threads() == args.threads and all(b == args.threads for b in blas)
    print("rnnkit layer benchmark vs PyTorch (CPU, same weights, each library in blocks of its own)")
    for line in fair.describe(torch, _accel.enabled(), (
            f"--threads {args.threads} (torch {torch.get_num_threads()}, BLAS {blas or '?'}: "
            f"{'OK' if same else 'MISMATCH'}), --dtype {args.dtype}, {args.blocks} blocks x "
            f"{args.samples} samples{', --quick' if args.quick else ''}, budget "
            f"{args.max_seconds:g} s per row, RNNKIT_ACCEL={os.environ.get('RNNKIT_ACCEL', '(unset)')}, "
            f"OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', '(unset)')}")):
        print(line)
    print(flush=True)

    cases = []
    for cell in args.cells:
        for key in args.sizes:
            if key != "step":
                cases.append(lambda c=cell, k=key: LayerCase(c, k, dtype, args.seed))
    if "lstm" in args.cells and "step" in args.sizes:
        cases.append(lambda: StepCase(dtype, args.seed))
    if args.compare_methods:
        compare_methods(cases[0](), args.modes[0], args)
        return 0

    # float32 accumulates rounding over T steps and N*T-term gradient sums; relative to the
    # quantity's largest magnitude (or 1) these stay far below the tolerance when the math agrees
    tol = 2e-3 if dtype == np.float32 else 1e-9
    target = 0.01 if args.quick else 0.03
    rows, failures = [], 0
    t_start = time.perf_counter()
    for make in cases:
        case = make()
        diffs = case.check()
        worst_abs = max(d[0] for d in diffs.values())
        worst_rel = max(d[1] for d in diffs.values())
        ok = worst_rel <= tol
        failures += not ok
        print(f"[{case.cell} {case.label()}] check vs torch: max|diff| "
              + ", ".join(f"{k} {d[0]:.2e}" for k, d in diffs.items())
              + f" -> {'OK' if ok else 'MISMATCH (rel %.2e > %.0e)' % (worst_rel, tol)}", flush=True)
        for mode in args.modes:
            if pair(case, mode) is None:
                continue
            ours, theirs = pair(case, mode)
            with fair.ForeignLoad() as load:
                res = fair.time_blocks(ours, theirs, blocks=args.blocks, samples=args.samples,
                                       target=target, budget=args.max_seconds)
            if mode == "train":
                case.ours.zero_grad()
            if mode == "frozen":
                case.release_frozen()
            row = {"cell": case.cell, "size": case.label(), "size_key": case.size_key, "mode": mode,
                   "rnnkit_ms": res["ours_s"] * 1e3, "torch_ms": res["theirs_s"] * 1e3,
                   "ratio": res["ratio"], "spread": res["spread"],
                   "block_ratios": res["block_ratios"], "blocks": res["blocks"],
                   "calls_per_sample": res["calls_per_sample"],
                   "other_load_cores": load.cores or 0.0, "niced_load_cores": load.niced or 0.0,
                   "max_abs_diff": worst_abs, "max_rel_diff": worst_rel, "agree": ok,
                   "diffs": {name: d[0] for name, d in diffs.items()}}
            rows.append(row)
            print(f"    {mode:5s}  rnnkit {row['rnnkit_ms']:10.3f} ms   torch {row['torch_ms']:10.3f} ms"
                  f"   ratio {row['ratio']:5.2f} +- {row['spread']:.2f}   ({res['blocks']} blocks, "
                  f"{res['calls_per_sample']} calls a sample; other {row['other_load_cores']:.2f}, "
                  f"niced {row['niced_load_cores']:.2f} cores)", flush=True)
        del case
        gc.collect()
    elapsed = time.perf_counter() - t_start

    print()
    head = (f"{'cell':5s} {'size (NxTxIxH)':24s} {'mode':5s} {'rnnkit ms':>11s} {'torch ms':>11s} "
            f"{'ratio':>6s} {'spread':>7s} {'max|diff|':>10s} {'other':>6s}")
    print(head)
    print("-" * len(head))
    for r in rows:
        flag = ("" if r["agree"] else "  MISMATCH") + ("  >" if fair.exceeds([r], limit_of(r)) else "")
        print(f"{r['cell']:5s} {r['size']:24s} {r['mode']:5s} {r['rnnkit_ms']:11.3f} "
              f"{r['torch_ms']:11.3f} {r['ratio']:6.2f} {r['spread']:7.2f} {r['max_abs_diff']:10.2e} "
              f"{r['other_load_cores']:6.2f}{flag}")
    print("-" * len(head))
    for mode in args.modes:
        ratios = [r["ratio"] for r in rows if r["mode"] == mode]
        if ratios:
            gm = math.exp(sum(math.log(x) for x in ratios) / len(ratios))
            print(f"geometric mean ratio ({mode}): {gm:.2f} over {len(ratios)} rows "
                  f"(ratio = rnnkit / torch; < 1 means rnnkit is faster)")
    print("spread = half the range of the per-block ratios; other = cores used by other processes "
          "at normal priority during the row; > = above the limit (1.0, cell step 0.5) + spread")
    print(f"total benchmark time {elapsed:.0f} s; load average {fair.loadavg()}; "
          f"{'all outputs agree' if not failures else f'{failures} configuration(s) DISAGREE'}")
    slow = [r for r in rows if fair.exceeds([r], limit_of(r))]
    if args.check:
        print(f"--check: {len(slow)} of {len(rows)} rows above the limit plus spread"
              + "".join(f"\n  {r['cell']} {r['size']} {r['mode']}: {r['ratio']:.2f} +- "
                        f"{r['spread']:.2f} (limit {limit_of(r)})" for r in slow))
    if args.json:
        info = {"cpu": fair.cpu_info(), "pools": fair.thread_pools(), "torch": fair.torch_info(torch),
                "numba": _accel.enabled(), "threads": args.threads, "dtype": args.dtype,
                "blocks": args.blocks, "samples": args.samples, "quick": args.quick}
        with open(args.json, "w") as fh:
            json.dump({"settings": info, "elapsed_s": elapsed, "results": rows}, fh, indent=2)
        print(f"wrote {args.json}")
    return 1 if failures or not same or (args.check and slow) else 0


if __name__ == "__main__":
    sys.exit(main(ARGS))
