"""Feed-forward building blocks: Linear, Embedding, Dropout, and the Sequential container."""
from __future__ import annotations

import numpy as np

from .init import torch_default
from .module import Module, as_input, check_dtype
from .recurrent import _Recurrent


class Linear(Module):
    """y = x W^T + b on the last axis of x (any leading shape, e.g. (N, T, F)).  W: (out, in)."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, *,
                 dtype=np.float32, rng: np.random.Generator | None = None) -> None:
        super().__init__()
        if in_features < 1 or out_features < 1:
            raise ValueError(f"Linear sizes must be >= 1, got {in_features}, {out_features}")
        self.in_features, self.out_features, self.dtype = in_features, out_features, check_dtype(dtype)
        rng = rng if rng is not None else np.random.default_rng()
        # torch's default: U(-1/sqrt(in), 1/sqrt(in)) for both weight and bias
        self._add_param("weight", torch_default((out_features, in_features), in_features, rng, self.dtype))
        if bias:
            self._add_param("bias", torch_default((out_features,), in_features, rng, self.dtype))

    def forward(self, x):
        x = as_input(x, self.dtype)
        if x.ndim < 1 or x.shape[-1] != self.in_features:
            raise ValueError(f"Linear expects input with last axis {self.in_features}, got {x.shape}")
        y = x @ self.params["weight"].T  # (..., out)
        if "bias" in self.params:
            y += self.params["bias"]
        self._push(x)
        return y

    def backward(self, dy):
        x = self._pop()
        x2 = x.reshape(-1, self.in_features)
        dy2 = np.asarray(dy).reshape(-1, self.out_features)
        self.grads["weight"] += dy2.T @ x2  # one GEMM over every leading position
        if "bias" in self.params:
            self.grads["bias"] += dy2.sum(axis=0)
        return (dy2 @ self.params["weight"]).reshape(x.shape)


class Embedding(Module):
    """Row lookup: ids (...) int -> (..., dim).  The ``padding_idx`` row is zero and gets no gradient."""

    def __init__(self, num_embeddings: int, embedding_dim: int, padding_idx: int | None = None, *,
                 dtype=np.float32, rng: np.random.Generator | None = None) -> None:
        super().__init__()
        if num_embeddings < 1 or embedding_dim < 1:
            raise ValueError(f"Embedding sizes must be >= 1, got {num_embeddings}, {embedding_dim}")
        if padding_idx is not None:
            if not -num_embeddings <= padding_idx < num_embeddings:
                raise ValueError(f"padding_idx {padding_idx} outside [0, {num_embeddings})")
            padding_idx %= num_embeddings
        self.num_embeddings, self.embedding_dim = num_embeddings, embedding_dim
        self.padding_idx, self.dtype = padding_idx, check_dtype(dtype)
        rng = rng if rng is not None else np.random.default_rng()
        weight = rng.standard_normal((num_embeddings, embedding_dim)).astype(self.dtype)  # torch: N(0, 1)
        if padding_idx is not None:
            weight[padding_idx] = 0
        self._add_param("weight", weight)

    def forward(self, ids):
        ids = np.asarray(ids)
        if not np.issubdtype(ids.dtype, np.integer):
            raise ValueError(f"Embedding expects integer ids, got dtype {ids.dtype}")
        if ids.size and (ids.min() < 0 or ids.max() >= self.num_embeddings):
            raise ValueError(f"ids must lie in [0, {self.num_embeddings}), got min {ids.min()} "
                             f"max {ids.max()}")
        self._push(ids)
        return self.params["weight"][ids]

    def backward(self, dy):
        ids = self._pop()
        g = self.grads["weight"]
        kept = None if self.padding_idx is None else g[self.padding_idx].copy()
        np.add.at(g, ids.reshape(-1), np.asarray(dy).reshape(-1, self.embedding_dim))
        if kept is not None:
            g[self.padding_idx] = kept  # the padding row is a constant: it gets no gradient
        return None


class Dropout(Module):
    """Inverted dropout: in training, zero each element with probability p and scale the rest by 1/(1-p)."""

    def __init__(self, p: float = 0.5, *, rng: np.random.Generator | None = None) -> None:
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout probability must be in [0, 1), got {p}")
        self.p = p
        self.rng = rng if rng is not None else np.random.default_rng()

    def forward(self, x):
        x = np.asarray(x)
        if not self.training or self.p == 0:
            self._push(None)
            return x
        mask = (self.rng.random(x.shape) >= self.p).astype(x.dtype) / x.dtype.type(1 - self.p)
        self._push(mask)
        return x * mask

    def backward(self, dy):
        mask = self._pop()
        return dy if mask is None else dy * mask


class Sequential(Module):
    """Chain modules: forward runs them in order, backward in reverse.

    A recurrent layer inside acts as a sequence-to-sequence map: its outputs y go on, its final
    state is dropped (zero initial state, zero gradient for the final state).  Call the layers
    yourself when you need the state (stateful language models, encoder-decoders)::

        model = Sequential(Embedding(V, 32), LSTM(32, 64), Linear(64, V))
        logits = model(ids)                       # (N, T, V)
        loss = loss_fn(logits, targets)
        model.backward(loss_fn.backward())
    """

    def __init__(self, *modules: Module) -> None:
        super().__init__()
        self.layers = list(modules)

    def forward(self, x, lengths=None):
        for m in self.layers:
            if isinstance(m, _Recurrent):  # keep y, drop the final state
                x, _ = m(x, lengths=lengths)
            else:
                x = m(x)
        return x

    def backward(self, dy):
        for m in reversed(self.layers):
            dy = m.backward(dy)
            if isinstance(dy, tuple):
                dy = dy[0]
        return dy
