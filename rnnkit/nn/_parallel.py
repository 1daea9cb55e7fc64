"""The two directions of a bidirectional layer side by side, one core each.

The forward and the reverse pass of a bidirectional layer share nothing until their outputs are
joined: each has its own weights, states and caches.  With two or more BLAS threads, the layers
run them on two threads at once, the BLAS held at one thread meanwhile, so each direction's
per-step products and element-wise kernels run on a core of their own (NumPy's BLAS and ufuncs
and the compiled kernels release the GIL; only a few microseconds of Python per step take
turns).  Threading each small per-step product inside the BLAS instead wakes and waits for the
second thread at every step (figures in docs/performance.md).

The BLAS's thread count is read and set through ``threadpoolctl`` (an optional extra, installed
with the ``cli`` and ``accel`` extras); without it, or with ``RNNKIT_THREADS=1``, or for loops
under ``MIN_FLOPS``, the directions run one after the other as before.  The arithmetic of each
direction is the same either way.
"""
from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor, wait

import numpy as np

MIN_FLOPS = 5e6  # below this (about 50 us of products on one core) the hand-over costs more

_lock = threading.Lock()  # the BLAS thread count is the process's: one side-by-side run at a time
_pool: ThreadPoolExecutor | None = None
_blas: list | None = None  # threadpoolctl controllers of NumPy's BLAS ([] without threadpoolctl)


def _after_fork_in_child() -> None:
    """A forked child has none of the parent's threads: start a new pool and lock on demand."""
    global _pool, _lock
    _pool, _lock = None, threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _numpy_blas() -> list:
    """The threadpoolctl controllers of the BLAS NumPy uses (found once), or [] without
    threadpoolctl.  A BLAS bundled with NumPy is recognised by its path; otherwise every BLAS
    loaded at the first call counts."""
    global _blas
    if _blas is None:
        try:
            from threadpoolctl import ThreadpoolController
        except ImportError:
            _blas = []
        else:
            libs = [lc for lc in ThreadpoolController().lib_controllers if lc.user_api == "blas"]
            here = os.path.dirname(os.path.dirname(os.path.abspath(np.__file__)))
            bundled = [lc for lc in libs
                       if os.path.abspath(lc.filepath).startswith(os.path.join(here, "numpy"))]
            _blas = bundled or libs
    return _blas


def threads() -> int:
    """``RNNKIT_THREADS`` if set, else the BLAS's thread count (1 when it cannot be read)."""
    env = os.environ.get("RNNKIT_THREADS", "").strip()  # also the CLI's default --threads
    if env:
        if not env.isdigit() or int(env) < 1:
            raise ValueError(f"RNNKIT_THREADS must be a whole number >= 1, got {env!r}")
        return int(env)
    return max((lc.get_num_threads() or 1 for lc in _numpy_blas()), default=1)


def side_by_side(fns, flops: float) -> list:
    """[fn() for fn in fns], run on threads of their own when there are at least two threads, a
    BLAS to hold at one thread and ``flops`` (each) of at least MIN_FLOPS; re-raises the first
    error once all have finished."""
    libs = _numpy_blas() if len(fns) > 1 and flops >= MIN_FLOPS else []
    if not libs or threads() < 2:
        return [fn() for fn in fns]
    global _pool
    with _lock:
        saved = [lc.get_num_threads() for lc in libs]
        for lc in libs:
            lc.set_num_threads(1)
        try:
            if _pool is None:
                _pool = ThreadPoolExecutor(1, thread_name_prefix="rnnkit")
            futures = [_pool.submit(fn) for fn in fns[1:]]
            try:
                first = fns[0]()
            finally:
                wait(futures)  # never return (or raise) while a direction still runs
            return [first] + [f.result() for f in futures]
        finally:
            for lc, n in zip(libs, saved):
                lc.set_num_threads(n)
