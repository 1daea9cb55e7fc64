"""Timing two libraries against each other without flattering either: the shared part of
``bench_layers.py`` and ``bench_lm.py``.

Why blocks.  OpenBLAS's worker threads keep spinning for a while after a call returns, and so do
the OpenMP threads torch runs on.  Alternating single calls (rnnkit, torch, rnnkit, ...) hands
each call a machine whose cores are still held by the *other* library's spinning threads: on a
2-core machine at 2 threads, torch's LSTM step measured 151-160 ms in a block of its own and
244 ms alternated with rnnkit (issue 20).  So each library is timed here in blocks of its own:

* before a block, a pause (``IDLE_S``) so the other side's threads park;
* in a block, a warm-up, then ``samples`` timed samples of ``k`` back-to-back calls each; the
  block's time is the median of its samples;
* blocks alternate in order (rnnkit first, then torch first, ...), so neither side always runs
  after the other;
* a row's time is the median of its block times; its ratio is rnnkit's median over torch's, and
  its spread is half the range of the per-block ratios (block b of one side against block b of
  the other, which ran next to each other).

``time_alternating`` is the old method, kept to show the difference (``--compare-methods``).
``exceeds`` is the decision of ``--check``.  Standalone helpers: never collected by pytest
(``tests/test_bench_fair.py`` tests the decision on synthetic numbers).
"""
from __future__ import annotations

import gc
import math
import os
import platform
import statistics
import time

IDLE_S = 0.3  # OpenBLAS parks its threads after ~0.1 s (THREAD_TIMEOUT 2^28 cycles); GOMP sooner
THREAD_VARS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


def set_thread_env(n: int) -> None:
    """The BLAS / OpenMP thread variables, for a script to call before NumPy or torch is
    imported (the pools read them once, when they start; this module imports neither)."""
    for var in THREAD_VARS:
        os.environ[var] = str(n)


def _sample(fn, k: int) -> float:
    """Seconds per call of fn, over k back-to-back calls."""
    t0 = time.perf_counter()
    for _ in range(k):
        fn()
    return (time.perf_counter() - t0) / k


def calls_per_sample(fns, target: float) -> int:
    """Calls per timed sample so that a sample of the slowest side lasts about ``target`` s."""
    est = 1e-7
    for fn in fns:
        fn()
        est = max(est, _sample(fn, 1))
    return max(1, int(math.ceil(target / est)))


def time_block(fn, k: int, samples: int, warmup: int) -> float:
    """One block of one side: pause, warm up, median seconds per call over ``samples`` samples."""
    time.sleep(IDLE_S)  # the other side's spinning threads go to sleep
    for _ in range(warmup):
        fn()
    gc.collect()
    gc_was = gc.isenabled()
    gc.disable()
    try:
        return statistics.median(_sample(fn, k) for _ in range(samples))
    finally:
        if gc_was:
            gc.enable()


def time_blocks(ours, theirs, *, blocks: int, samples: int, target: float, warmup: int = 2,
                budget: float = float("inf")) -> dict:
    """The fair method: both callables timed in alternating blocks of their own (module doc).

    Stops after ``blocks`` blocks per side, or once ``budget`` seconds are spent (at least 3).
    Returns the row's numbers: medians in seconds, ratio, spread, the block times.
    """
    k = calls_per_sample((ours, theirs), target)
    a, b = [], []
    start = time.perf_counter()
    for blk in range(blocks):
        order = ((ours, a), (theirs, b)) if blk % 2 == 0 else ((theirs, b), (ours, a))
        for fn, out in order:
            out.append(time_block(fn, k, samples, warmup))
        if blk + 1 >= 3 and time.perf_counter() - start > budget:
            break
    return summarize(a, b, k)


def summarize(a: list, b: list, k: int = 1) -> dict:
    """Row numbers from the block times of both sides (seconds per call)."""
    ma, mb = statistics.median(a), statistics.median(b)
    block_ratios = [x / y for x, y in zip(a, b)]
    return {"ours_s": ma, "theirs_s": mb, "ratio": ma / mb,
            "spread": (max(block_ratios) - min(block_ratios)) / 2,
            "ours_range_s": (min(a), max(a)), "theirs_range_s": (min(b), max(b)),
            "blocks": len(a), "calls_per_sample": k, "block_ratios": block_ratios}


def time_alternating(ours, theirs, *, repeats: int, target: float, pause: float = 0.0) -> dict:
    """The old method: samples alternate ours, theirs, ours, ... after a common warm-up (with
    ``pause`` > 0, a pause and one untimed call before every sample: the same order, but the
    other side's threads idle)."""
    for fn in (ours, theirs, ours, theirs):
        fn()
    k = calls_per_sample((ours, theirs), target)
    a, b = [], []
    for _ in range(repeats):
        for fn, out in ((ours, a), (theirs, b)):
            if pause:
                time.sleep(pause)
                fn()
            out.append(_sample(fn, k))
    return summarize(a, b, k)


def exceeds(rows, limit: float = 1.0) -> list:
    """The rows whose ratio is above ``limit`` plus their measured spread (``--check``)."""
    return [r for r in rows if r["ratio"] > limit + r["spread"]]


# ------------------------------------------------------------------------------------------
# What the numbers came from
# ------------------------------------------------------------------------------------------
def cpu_info() -> dict:
    """CPU model, the SIMD flags that pick BLAS kernels, and the cores this process may use."""
    model, flags = platform.processor() or platform.machine(), set()
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name") and model in ("", platform.machine()):
                    model = line.split(":", 1)[1].strip()
                elif line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    break
    except OSError:
        pass
    isa = [f for f in ("avx2", "fma", "avx512f", "avx512_bf16", "amx_tile") if f in flags]
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count()
    return {"model": model, "isa": isa, "cores": cores}


def thread_pools() -> list:
    """threadpoolctl's view of every thread pool loaded (BLAS of NumPy, torch's OpenMP, ...)."""
    try:
        import threadpoolctl
    except ImportError:
        return [{"note": "threadpoolctl not installed: pools unknown"}]
    keys = ("internal_api", "version", "architecture", "threading_layer", "num_threads", "filepath")
    return [{k: p.get(k) for k in keys if p.get(k) is not None} for p in threadpoolctl.threadpool_info()]


def set_blas_threads(n: int):
    """Limit every BLAS pool to n threads (threadpoolctl); returns the limiter to keep alive."""
    try:
        import threadpoolctl
    except ImportError:
        return None
    return threadpoolctl.threadpool_limits(limits=n, user_api="blas")


def torch_info(torch) -> str:
    mkl = "MKL" if torch.backends.mkl.is_available() else "no MKL"
    dnn = ", oneDNN" if torch.backends.mkldnn.is_available() else ""
    cap = getattr(torch.backends.cpu, "get_cpu_capability", lambda: "?")()
    par = [ln.strip() for ln in torch.__config__.parallel_info().splitlines()
           if "backend" in ln or "get_num_threads" in ln]
    return f"torch {torch.__version__} ({mkl}{dnn}, CPU capability {cap}); " + "; ".join(par)


def loadavg() -> str:
    try:
        return " ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        return "n/a"


def _version(module: str) -> str:
    try:
        return __import__(module).__version__
    except ImportError:
        return "not installed"


def describe(torch, accel_on: bool, settings: str) -> list:
    """The lines printed above every table: machine, ISA, BLAS, torch, numba, settings."""
    cpu = cpu_info()
    import numpy as np
    lines = [f"  cpu          {cpu['model']}, {cpu['cores']} cores available; "
             f"ISA {' '.join(cpu['isa']) or 'no AVX2'}; load average {loadavg()}",
             f"  versions     python {platform.python_version()}, numpy {np.__version__}",
             f"  torch        {torch_info(torch)}",
             f"  numba        {'on' if accel_on else 'off'} (rnnkit's compiled element-wise kernels"
             f"{', numba ' + _version('numba') if accel_on else ''})"]
    for p in thread_pools():
        lines.append("  pool         " + ", ".join(f"{k}={v}" for k, v in p.items()
                                                   if k != "filepath")
                     + (f" ({os.path.basename(p['filepath'])})" if "filepath" in p else ""))
    lines.append(f"  settings     {settings}")
    lines.append(f"  method       blocks of one library at a time, {IDLE_S:g} s pause before each, "
                 "warm-up per block, block order alternated; medians of block medians")
    return lines


class ForeignLoad:
    """CPU used by *other* processes at normal priority while a row runs, in cores (/proc/stat
    minus os.times()).  Niced processes are reported apart: they yield the cores to us."""

    def __init__(self):
        self.ok = os.path.exists("/proc/stat")
        self.tick = os.sysconf("SC_CLK_TCK") if self.ok else 100
        self.cores = self.niced = None

    def _read(self):
        with open("/proc/stat") as fh:
            f = [int(v) for v in fh.readline().split()[1:]]
        # user nice system idle iowait irq softirq steal ...
        return (f[0] + f[2] + f[5] + f[6] + (f[7] if len(f) > 7 else 0)) / self.tick, f[1] / self.tick

    def __enter__(self):
        if self.ok:
            t = os.times()
            self._b0, self._n0 = self._read()
            self._o0, self._w0 = t.user + t.system, time.perf_counter()
        return self

    def __exit__(self, *exc):
        if self.ok:
            t = os.times()
            wall = max(time.perf_counter() - self._w0, 1e-9)
            busy, nice = self._read()
            self.cores = max(0.0, (busy - self._b0) - (t.user + t.system - self._o0)) / wall
            self.niced = (nice - self._n0) / wall
        return False
