"""Checks of hyper-parameters and counts shared by the optimizers, schedules and clipping: one clear
``ValueError`` naming the argument."""
from __future__ import annotations

import math
from typing import Any

import numpy as np


def _real(name: str, value: Any) -> float:
    """A finite real number as a Python float (bools are rejected: they are flags)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"{name} must be a real number, got {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    return value


def _nonneg(name: str, value: Any) -> float:
    value = _real(name, value)
    if value < 0.0:
        raise ValueError(f"invalid {name}: {value} (must be >= 0)")
    return value


def _unit(name: str, value: Any, *, closed: bool = False) -> float:
    """A number in [0, 1) (or [0, 1] when ``closed``)."""
    value = _real(name, value)
    if not (0.0 <= value <= 1.0 if closed else 0.0 <= value < 1.0):
        raise ValueError(f"invalid {name}: {value} (must be in [0, 1{']' if closed else ')'})")
    return value


def _flag(name: str, value: Any) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name} must be a bool, got {value!r}")
    return bool(value)


def _count(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)
