"""Parameter initialisers (NumPy only).

Each initialiser draws from an explicit ``rng: np.random.Generator`` and returns a *new* array
of the requested shape and floating dtype (``lstm_forget_bias`` is the exception: it edits a
bias in place). Draws are made in float64 and then cast, so the float32 array of a seed is the
float64 array of the same seed rounded: changing the dtype never changes which numbers are
drawn.

Fan convention (torch): a weight is ``(out, in, *receptive)``;
fan_in = in * prod(receptive), fan_out = out * prod(receptive).
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

__all__ = ["uniform", "torch_default", "xavier_uniform", "orthogonal", "recurrent_orthogonal",
           "lstm_forget_bias"]

Shape = int | Sequence[int]


def _shape(shape: Shape) -> tuple[int, ...]:
    shape = (shape,) if isinstance(shape, (int, np.integer)) else tuple(shape)
    if any(isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0 for n in shape):
        raise ValueError(f"shape must be non-negative integers, got {shape!r}")
    return tuple(int(n) for n in shape)


def _dtype(dtype: np.dtype | type) -> np.dtype:
    dtype = np.dtype(dtype)
    if not np.issubdtype(dtype, np.floating):
        raise ValueError(f"dtype must be floating point, got {dtype}")
    return dtype


def _fans(shape: tuple[int, ...]) -> tuple[int, int]:
    """(fan_in, fan_out) of an (out, in, *receptive) weight, torch's convention."""
    if len(shape) < 2:
        raise ValueError(f"fan in and fan out need a weight of at least 2 dimensions, got shape {shape}")
    receptive = math.prod(shape[2:])
    return shape[1] * receptive, shape[0] * receptive


def uniform(shape: Shape, bound: float, rng: np.random.Generator,
            dtype: np.dtype | type = np.float64) -> np.ndarray:
    """w ~ U(-bound, bound), elementwise."""
    if not (math.isfinite(bound) and bound >= 0):
        raise ValueError(f"bound must be finite and >= 0, got {bound}")
    return rng.uniform(-bound, bound, size=_shape(shape)).astype(_dtype(dtype))


def torch_default(shape: Shape, hidden_size: int, rng: np.random.Generator,
                  dtype: np.dtype | type = np.float64) -> np.ndarray:
    """w ~ U(-1/sqrt(H), 1/sqrt(H)) with H = hidden_size: torch's default for every RNN / LSTM /
    GRU weight and bias (and, with H = in_features, for Linear)."""
    if isinstance(hidden_size, bool) or not isinstance(hidden_size, (int, np.integer)) or hidden_size < 1:
        raise ValueError(f"hidden_size must be a positive integer, got {hidden_size!r}")
    return uniform(shape, 1.0 / math.sqrt(hidden_size), rng, dtype)


def xavier_uniform(shape: Shape, rng: np.random.Generator, dtype: np.dtype | type = np.float64,
                   gain: float = 1.0) -> np.ndarray:
    """Glorot: w ~ U(-a, a), a = gain * sqrt(6 / (fan_in + fan_out)), so
    Var(w) = gain^2 * 2 / (fan_in + fan_out)   (torch.nn.init.xavier_uniform_)."""
    shape = _shape(shape)
    fan_in, fan_out = _fans(shape)
    if fan_in + fan_out == 0:
        raise ValueError(f"xavier_uniform of an empty weight {shape}")
    return uniform(shape, gain * math.sqrt(6.0 / (fan_in + fan_out)), rng, dtype)


def orthogonal(shape: Shape, rng: np.random.Generator, dtype: np.dtype | type = np.float64,
               gain: float = 1.0) -> np.ndarray:
    """gain * Q, Q (semi-)orthogonal: torch.nn.init.orthogonal_.

    The weight is viewed as rows x cols, rows = shape[0], cols = prod(shape[1:]). Draw
    A ~ N(0, 1) of (rows, cols) (transposed when rows < cols), A = Q R (reduced QR), then
    Q <- Q * sign(diag(R)): the sign correction makes Q unique (R gets a positive diagonal),
    so Q is Haar-distributed rather than biased by the QR routine's sign choices.
    Tall or square: Q^T Q = I; wide: Q Q^T = I.
    """
    shape = _shape(shape)
    if len(shape) < 2:
        raise ValueError(f"orthogonal needs at least 2 dimensions, got shape {shape}")
    rows = shape[0]
    cols = math.prod(shape[1:])
    if rows == 0 or cols == 0:
        return np.zeros(shape, dtype=_dtype(dtype))
    a = rng.standard_normal((rows, cols))
    if rows < cols:
        a = a.T  # (cols, rows): QR needs the long side first
    q, r = np.linalg.qr(a)
    q *= np.sign(np.diag(r))  # scales column j by the sign of R[j, j]
    if rows < cols:
        q = q.T
    return (gain * q).reshape(shape).astype(_dtype(dtype))


def recurrent_orthogonal(shape: Shape, gates: int, rng: np.random.Generator,
                         dtype: np.dtype | type = np.float64, gain: float = 1.0) -> np.ndarray:
    """A (gates * H, H) recurrent weight whose every (H, H) gate block is an independent
    orthogonal matrix (blocks in gate order, drawn one after another): each gate's recurrent
    map preserves norms, where one orthogonal (gH, H) matrix would not give square blocks
    that are orthogonal."""
    shape = _shape(shape)
    if isinstance(gates, bool) or not isinstance(gates, (int, np.integer)) or gates < 1:
        raise ValueError(f"gates must be a positive integer, got {gates!r}")
    if len(shape) != 2 or shape[0] != gates * shape[1]:
        raise ValueError(f"recurrent weight must have shape (gates * H, H) = ({gates} * H, H), got {shape}")
    hidden = shape[1]
    return np.concatenate([orthogonal((hidden, hidden), rng, dtype, gain) for _ in range(gates)],
                          axis=0)


def lstm_forget_bias(bias: np.ndarray, value: float = 1.0) -> np.ndarray:
    """Set the forget-gate block of an LSTM bias (4H,) to ``value`` in place and return it.

    Gate order i, f, g, o (torch), so f is bias[H:2H]. A positive forget bias keeps the cell
    state flowing early in training. torch adds bias_ih and bias_hh, so set it on one of them.
    """
    if getattr(bias, "ndim", None) != 1 or bias.shape[0] % 4 != 0:
        raise ValueError(f"an LSTM bias has shape (4H,), got {getattr(bias, 'shape', type(bias))}")
    if not math.isfinite(value):
        raise ValueError(f"forget bias value must be finite, got {value}")
    hidden = bias.shape[0] // 4
    bias[hidden:2 * hidden] = value
    return bias
