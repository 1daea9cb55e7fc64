"""Gradient clipping by global norm or by value, in place, on arrays or (name, param, grad) triples.
Also importable from ``rnnkit.nn.optim``.
"""
from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np

from ._checks import _real

__all__ = ["clip_grad_norm", "clip_grad_value"]

Triple = tuple[str, np.ndarray, np.ndarray]


def _grads(grads: Iterable[np.ndarray] | Iterable[Triple]) -> list[np.ndarray]:
    """Gradient arrays from arrays or (name, param, grad) triples."""
    out = []
    for item in grads:
        if isinstance(item, tuple):
            if len(item) != 3:
                raise ValueError(f"expected arrays or (name, param, grad) triples, got a tuple of {len(item)}")
            item = item[2]
        if not hasattr(item, "dtype") or not np.issubdtype(item.dtype, np.floating):
            raise ValueError(f"gradients must be floating-point arrays, got {type(item).__name__}")
        out.append(item)
    return out


def _global_norm(grads: list[np.ndarray]) -> float:
    """sqrt(sum of squares) over all gradients, as the norm of the per-array norms (torch)."""
    # Accumulate in float64 so float32 gradients cannot overflow the sum; a norm that is
    # really infinite (or NaN) is returned for the caller to act on.
    with np.errstate(over="ignore", invalid="ignore"):
        norms = [np.linalg.norm(np.ravel(g).astype(np.float64, copy=False)) for g in grads]
        return float(np.linalg.norm(np.array(norms, dtype=np.float64))) if norms else 0.0


def clip_grad_norm(grads: Iterable[np.ndarray] | Iterable[Triple], max_norm: float) -> float:
    """Scale all gradients in place so their global L2 norm is at most ``max_norm``.

    total_norm = sqrt(sum_k ||grad_k||^2)
    grad_k = grad_k * min(max_norm / (total_norm + 1e-6), 1)   (torch clip_grad_norm_)

    Returns ``total_norm`` before clipping. If it is not finite the gradients are left as
    they are (torch would turn them into NaN) and the caller decides, e.g. skips the step.
    """
    max_norm = _real("max_norm", max_norm)
    if max_norm <= 0.0:
        raise ValueError(f"max_norm must be > 0, got {max_norm}")
    arrays = _grads(grads)
    total_norm = _global_norm(arrays)
    if math.isfinite(total_norm):
        clip_coef = min(max_norm / (total_norm + 1e-6), 1.0)
        for g in arrays:
            g *= clip_coef
    return total_norm


def clip_grad_value(grads: Iterable[np.ndarray] | Iterable[Triple], clip_value: float) -> float:
    """Clamp every gradient element in place to [-clip_value, clip_value]
    (torch clip_grad_value_). Returns the global L2 norm before clipping; if it is not
    finite the gradients are left as they are and the caller decides."""
    clip_value = _real("clip_value", clip_value)
    if clip_value <= 0.0:
        raise ValueError(f"clip_value must be > 0, got {clip_value}")
    arrays = _grads(grads)
    total_norm = _global_norm(arrays)
    if math.isfinite(total_norm):
        for g in arrays:
            np.clip(g, -clip_value, clip_value, out=g)
    return total_norm
