"""Losses with their gradients: softmax cross-entropy, mean squared error, Gaussian NLL.

Each loss is a module: ``forward(...)`` returns the loss (a scalar of the input's dtype for
reductions 'mean' and 'sum', an array for 'none') and ``backward(dloss=1)`` returns the gradient
for the predictions.  A mask (1 = counts, 0 = ignored) selects positions; 'mean' divides by the
number of positions that count, as torch does with ``ignore_index``.  When nothing counts the
loss is 0 and so is its gradient (torch returns nan there).
"""
from __future__ import annotations

import numpy as np

from .module import Module

REDUCTIONS = ("mean", "sum", "none")


def _check_reduction(reduction: str) -> str:
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
    return reduction


def _weights(mask, shape, dtype, name="mask"):
    """Mask as float weights of ``shape`` (the positions a loss sums over), or None."""
    if mask is None:
        return None
    mask = np.asarray(mask)
    if mask.shape != shape:
        raise ValueError(f"{name} has shape {mask.shape}, expected {shape}")
    return mask.astype(dtype)


def _reduce(per, w, reduction, dtype):
    """Reduce per-position losses; returns (loss, scale of each position's gradient)."""
    if w is not None:
        per = per * w
    if reduction == "none":
        return per, (np.ones_like(per) if w is None else w)
    scale = np.ones_like(per) if w is None else w
    if reduction == "mean":
        count = per.size if w is None else w.sum()
        if count == 0:
            return dtype.type(0), np.zeros_like(per)
        scale = scale / dtype.type(count)
        return dtype.type(per.sum() / dtype.type(count)), scale
    return dtype.type(per.sum()), scale


def log_softmax(z: np.ndarray, axis: int = -1) -> np.ndarray:
    """log softmax(z) = z - max - log sum exp(z - max): stable for any magnitude."""
    shifted = z - z.max(axis=axis, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=axis, keepdims=True))


class CrossEntropyLoss(Module):
    """Softmax cross-entropy over the last axis: logits (..., C), integer targets (...).

    loss_n = -log softmax(z_n)[y_n] = logsumexp(z_n) - z_n[y_n];  dloss_n/dz_n = softmax(z_n) - onehot(y_n).
    Positions whose target equals ``ignore_index`` or whose mask is 0 do not count.
    """

    def __init__(self, ignore_index: int = -100, reduction: str = "mean") -> None:
        super().__init__()
        self.ignore_index, self.reduction = ignore_index, _check_reduction(reduction)

    def forward(self, logits, targets, mask=None):
        logits, targets = np.asarray(logits), np.asarray(targets)
        if not np.issubdtype(targets.dtype, np.integer):
            raise ValueError(f"targets must be integers, got dtype {targets.dtype}")
        if logits.shape[:-1] != targets.shape:
            raise ValueError(f"logits {logits.shape} and targets {targets.shape} disagree: "
                             "logits must be targets.shape + (classes,)")
        C = logits.shape[-1]
        valid = targets != self.ignore_index
        if np.any((targets[valid] < 0) | (targets[valid] >= C)):
            raise ValueError(f"targets must lie in [0, {C}) or equal ignore_index {self.ignore_index}")
        w = valid.astype(logits.dtype)
        mw = _weights(mask, targets.shape, logits.dtype)
        if mw is not None:
            w = w * mw
        safe = np.where(valid, targets, 0)
        logp = log_softmax(logits)
        per = -np.take_along_axis(logp, safe[..., None], axis=-1)[..., 0]
        loss, scale = _reduce(per, w, self.reduction, logits.dtype)
        self._push((logp, safe, scale))
        return loss

    def backward(self, dloss=1.0):
        logp, safe, scale = self._pop()
        grad = np.exp(logp)
        np.put_along_axis(grad, safe[..., None],
                          np.take_along_axis(grad, safe[..., None], axis=-1) - 1, axis=-1)
        return grad * (np.asarray(dloss, grad.dtype) * scale)[..., None]


class MSELoss(Module):
    """Mean squared error: loss = mean (pred - target)^2 over the positions that count.

    A mask of shape ``pred.shape[:k]`` weights whole positions (e.g. (N, T) for (N, T, F) predictions).
    """

    def __init__(self, reduction: str = "mean") -> None:
        super().__init__()
        self.reduction = _check_reduction(reduction)

    def forward(self, pred, target, mask=None):
        pred, target = np.asarray(pred), np.asarray(target)
        if pred.shape != target.shape:
            raise ValueError(f"pred {pred.shape} and target {target.shape} must have the same shape")
        w = _expand_mask(mask, pred)
        diff = pred - target
        loss, scale = _reduce(diff * diff, w, self.reduction, pred.dtype)
        self._push((diff, scale))
        return loss

    def backward(self, dloss=1.0):
        diff, scale = self._pop()
        return 2 * diff * scale * np.asarray(dloss, diff.dtype)


class GaussianNLLLoss(Module):
    """Gaussian negative log-likelihood with predicted mean and variance (torch's GaussianNLLLoss)::

        loss = 0.5 (log v + (mean - target)^2 / v) [+ 0.5 log 2 pi],   v = max(var, eps)
        dloss/dmean = (mean - target) / v,   dloss/dvar = 0.5 (1 / v - (mean - target)^2 / v^2)

    As in torch, the clamp to eps changes the value but the gradient still flows to var.
    ``backward`` returns (dmean, dvar).
    """

    def __init__(self, full: bool = False, eps: float = 1e-6, reduction: str = "mean") -> None:
        super().__init__()
        self.full, self.eps, self.reduction = full, eps, _check_reduction(reduction)

    def forward(self, mean, target, var, mask=None):
        mean, target, var = np.asarray(mean), np.asarray(target), np.asarray(var)
        if not mean.shape == target.shape == var.shape:
            raise ValueError(f"mean {mean.shape}, target {target.shape} and var {var.shape} "
                             "must have the same shape")
        if np.any(var < 0):
            raise ValueError("var has negative entries")
        v = np.maximum(var, mean.dtype.type(self.eps))
        diff = mean - target
        per = 0.5 * (np.log(v) + diff * diff / v)
        if self.full:
            per = per + mean.dtype.type(0.5 * np.log(2 * np.pi))
        loss, scale = _reduce(per, _expand_mask(mask, mean), self.reduction, mean.dtype)
        self._push((diff, v, scale))
        return loss

    def backward(self, dloss=1.0):
        diff, v, scale = self._pop()
        s = scale * np.asarray(dloss, diff.dtype)
        return diff / v * s, 0.5 * (1 / v - diff * diff / (v * v)) * s


def _expand_mask(mask, x):
    """A mask over the leading axes of x, broadcast to x's shape."""
    if mask is None:
        return None
    mask = np.asarray(mask)
    if mask.shape != x.shape[: mask.ndim]:
        raise ValueError(f"mask has shape {mask.shape}, expected the leading axes of {x.shape}")
    return np.broadcast_to(mask.reshape(mask.shape + (1,) * (x.ndim - mask.ndim)), x.shape).astype(x.dtype)
