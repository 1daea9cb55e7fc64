"""The pieces every training loop shares: one optimizer update and the learning-rate schedule."""
from __future__ import annotations

import math

from ..nn.module import Module
from ..nn.optim import Optimizer, clip_grad_norm, cosine_lr, warmup


def schedule(lr: float, min_lr: float, warmup_steps: int, total: int):
    """lr_at(step): linear warm-up to ``lr``, then cosine decay to ``min_lr`` at step ``total``."""
    return warmup(cosine_lr(lr, max(total - warmup_steps, 1), min_lr), min(warmup_steps, total))


def apply_gradients(model: Module, opt: Optimizer, lr: float, clip: float, loss: float,
                    step: int) -> float:
    """Clip by global norm, refuse a diverged step, update with ``lr``, zero the gradients.

    Raises ValueError (the last checkpoint stays as it was) when the loss or the gradient norm is
    not finite.  Returns the gradient norm before clipping.
    """
    params = list(model.named_parameters())
    norm = clip_grad_norm(params, clip)
    if not (math.isfinite(loss) and math.isfinite(norm)):
        raise ValueError(f"training diverged at step {step + 1}: loss {loss}, gradient norm {norm}; "
                         "try a lower --lr (the last checkpoint is kept)")
    opt.lr = lr
    opt.step(params)
    model.zero_grad()
    return norm
