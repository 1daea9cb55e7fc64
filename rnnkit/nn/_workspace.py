"""Reused buffers for the training driver's per-step caches (gates, cell states, their gradients).

A training step of an LSTM(256) over 64 x 100 steps allocates about 100 MB of such arrays and
frees them again when backward is done.  Fresh memory costs a page fault per page on first touch
(the allocator hands large blocks back to the system when they are freed), and those faults land
in the time loop, inside the step GEMMs that first write the buffers: about 2,000 faults a step
there, none with this pool, and with two BLAS threads the faulting threads also wait on each
other in the kernel (figures in docs/performance.md).

``take`` returns a view of a flat buffer at least as large as asked and at most twice as large,
so batches of varying length reuse the same memory; ``give`` takes back only what ``take`` lent,
each view once, and ignores anything else.  Only the drivers' internal arrays are taken: nothing
a caller receives is a view of a buffer that could be reused.  The pool keeps at most
``MAX_BYTES`` of free buffers, dropping the least recently returned first.
"""
from __future__ import annotations

import math
import os
import threading
import weakref

import numpy as np

MAX_BYTES = 256 << 20  # free buffers kept, over all dtypes

_lock = threading.RLock()  # reentrant: a collected view's callback may run inside take
_free: list[np.ndarray] = []  # flat free buffers, the most recently returned last
_lent: dict[int, tuple] = {}  # id(view) -> (weak reference to the view, its flat buffer)


def _after_fork_in_child() -> None:
    """A forked child starts with a fresh lock (the parent's may have been held by a thread)."""
    global _lock
    _lock = threading.RLock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _forget(key: int):
    def drop(_ref):  # the view was collected without being given back: let its buffer go
        with _lock:
            _lent.pop(key, None)
    return drop


def take(shape, dtype) -> np.ndarray:
    """An uninitialised C-contiguous array like ``np.empty(shape, dtype)``, reusing free memory."""
    dtype = np.dtype(dtype)
    n = math.prod(shape)
    with _lock:
        best = None
        for k, flat in enumerate(_free):  # the smallest free buffer that fits, within 2x
            if flat.dtype == dtype and n <= flat.size <= 2 * n + 64 and (
                    best is None or flat.size < _free[best].size):
                best = k
        flat = _free.pop(best) if best is not None else np.empty(n, dtype)
        view = flat[:n].reshape(shape)
        _lent[id(view)] = (weakref.ref(view, _forget(id(view))), flat)
    return view


def give(*arrays) -> None:
    """Return arrays ``take`` lent that nothing will read again (None and others ignored)."""
    with _lock:
        for a in arrays:
            entry = None if a is None else _lent.get(id(a))
            if entry is None or entry[0]() is not a:
                continue
            del _lent[id(a)]
            _free.append(entry[1])
        while kept_bytes() > MAX_BYTES:
            _free.pop(0)


def clear() -> None:
    """Drop every free buffer (tests; or to hand the memory back)."""
    with _lock:
        _free.clear()


def kept_bytes() -> int:
    """Bytes held in free buffers."""
    with _lock:
        return sum(f.nbytes for f in _free)
