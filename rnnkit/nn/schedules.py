"""Learning-rate schedules: pure functions of the 0-based step, nanoGPT's ``lr_at(step)``.

``lr_at(k)`` is the learning rate of the k-th update (k = 0, 1, ...), i.e. torch's
``optimizer.param_groups[0]["lr"]`` after k calls of ``scheduler.step()``; each schedule names the
torch scheduler it equals.  Also importable from ``rnnkit.nn.optim``.
"""
from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from ._checks import _count, _nonneg

__all__ = ["constant", "step_lr", "exponential_lr", "cosine_lr", "warmup"]

Schedule = Callable[[int], float]


def _check_step(step: int) -> int:
    if isinstance(step, (bool, np.bool_)) or not isinstance(step, (int, np.integer)) or step < 0:
        raise ValueError(f"step must be a non-negative integer, got {step!r}")
    return int(step)


def constant(base_lr: float) -> Schedule:
    """lr_at(k) = base_lr."""
    base_lr = _nonneg("base_lr", base_lr)

    def lr_at(step: int) -> float:
        _check_step(step)
        return base_lr
    return lr_at


def step_lr(base_lr: float, step_size: int, gamma: float = 0.1) -> Schedule:
    """lr_at(k) = base_lr * gamma ** (k // step_size)   (torch StepLR)."""
    base_lr, gamma = _nonneg("base_lr", base_lr), _nonneg("gamma", gamma)
    step_size = _count("step_size", step_size, 1)

    def lr_at(step: int) -> float:
        return base_lr * gamma ** (_check_step(step) // step_size)
    return lr_at


def exponential_lr(base_lr: float, gamma: float) -> Schedule:
    """lr_at(k) = base_lr * gamma ** k   (torch ExponentialLR)."""
    base_lr, gamma = _nonneg("base_lr", base_lr), _nonneg("gamma", gamma)

    def lr_at(step: int) -> float:
        return base_lr * gamma ** _check_step(step)
    return lr_at


def cosine_lr(base_lr: float, total_steps: int, min_lr: float = 0.0) -> Schedule:
    """lr_at(k) = min_lr + (base_lr - min_lr) * (1 + cos(pi * k / total_steps)) / 2 for
    k <= total_steps, and min_lr after (torch CosineAnnealingLR with T_max = total_steps and
    eta_min = min_lr, in closed form; torch's would rise again after T_max, nanoGPT's holds).
    """
    base_lr, min_lr = _nonneg("base_lr", base_lr), _nonneg("min_lr", min_lr)
    total_steps = _count("total_steps", total_steps, 1)

    def lr_at(step: int) -> float:
        step = _check_step(step)
        if step >= total_steps:
            return min_lr
        return min_lr + (base_lr - min_lr) * (1.0 + math.cos(math.pi * step / total_steps)) / 2.0
    return lr_at


def warmup(schedule: Schedule, warmup_steps: int) -> Schedule:
    """Linear warm-up of W = warmup_steps steps, then ``schedule`` from its own step 0:

    lr_at(k) = schedule(0) * (1/W + (1 - 1/W) * k / W)   for k < W   (starts at schedule(0) / W)
    lr_at(k) = schedule(k - W)                             for k >= W

    This is torch's SequentialLR([LinearLR(start_factor=1/W, total_iters=W), main],
    milestones=[W]); for a run of T steps give the wrapped schedule T - W steps. W = 0 returns
    ``schedule`` unchanged.
    """
    warmup_steps = _count("warmup_steps", warmup_steps, 0)
    if warmup_steps == 0:
        return schedule
    base_lr = schedule(0)
    start = 1.0 / warmup_steps

    def lr_at(step: int) -> float:
        step = _check_step(step)
        if step >= warmup_steps:
            return schedule(step - warmup_steps)
        return base_lr * (start + (1.0 - start) * step / warmup_steps)
    return lr_at
