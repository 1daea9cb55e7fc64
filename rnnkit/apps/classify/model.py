"""The sequence classifier: input layer -> (bidirectional) RNN with lengths -> masked pooling ->
Dropout -> Linear -> logits (N, C).

The recurrent outputs y (N, T, D) are exactly 0 at padded steps; every pooling also reads only
the valid steps t < L_n, so a padded batch gives each sequence what it gets alone::

    last       p = y[L-1]  (bidirectional: the forward half at L-1, the reverse half at 0:
               each direction's output after it has read the whole sequence)
    mean       p = (1/L) sum_{t<L} y_t
    max        p_k = max_{t<L} y_tk;  the gradient goes to the first arg max
    attention  e_t = tanh(W y_t + b) (A),  s_t = v . e_t,  a = softmax over t<L of s
               (exactly 0 for t >= L),  p = sum_t a_t y_t
    concat     p = [last, mean, max] (3D wide; ULMFiT's "concat pooling"), the gradient the sum
               of the three parts'

Backward of attention, with dp the pooled gradient::

    dy_t = a_t dp + W^T de_t,   da_t = y_t . dp,   ds_t = a_t (da_t - sum_u a_u da_u),
    dv = sum_t ds_t e_t,   de_t = ds_t v (1 - e_t^2)  (the Linear's input is y_t)
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from ...nn import Dropout, Embedding, Linear, Module, recurrent_layer
from ...nn.attention import masked_softmax
from ...nn.init import torch_default

POOLS = ("last", "mean", "max", "attention", "concat")


def valid_mask(lengths: np.ndarray, T: int) -> np.ndarray:
    """(N, T) bool: t < lengths[n]."""
    return np.arange(T)[None, :] < np.asarray(lengths)[:, None]


def check_lengths(lengths, N: int, T: int) -> np.ndarray:
    lengths = np.asarray(lengths)
    if lengths.shape != (N,) or not np.issubdtype(lengths.dtype, np.integer):
        raise ValueError(f"lengths must be ({N},) integers, got {lengths.shape} {lengths.dtype}")
    if N and (lengths.min() < 1 or lengths.max() > T):
        raise ValueError(f"lengths must lie in [1, {T}] (a sequence needs at least one step), "
                         f"got min {lengths.min()} max {lengths.max()}")
    return lengths


class Pool(Module):
    """Masked pooling over time: y (N, T, D), lengths (N,) -> (N, D); see the module docstring.

    ``directions`` 2 makes ``last`` take the reverse half at t = 0.  ``attention`` has the
    parameters ``attn.weight (A, D)``, ``attn.bias (A,)`` and ``v (A,)``; the weights of the last
    forward are kept in ``self.weights`` (N, T).  ``out_size``: D, or 3 D for ``concat``.
    """

    def __init__(self, kind: str, size: int, directions: int = 1, attn_size: int = 64, *,
                 dtype=np.float32, rng: np.random.Generator | None = None) -> None:
        super().__init__()
        if kind not in POOLS:
            raise ValueError(f"pool must be one of {POOLS}, got {kind!r}")
        self.kind, self.size, self.directions = kind, size, directions
        self.weights = None
        self.out_size = 3 * size if kind == "concat" else size
        if kind == "concat":
            self.parts = [Pool(k, size, directions) for k in ("last", "mean", "max")]
        if kind == "attention":
            rng = rng if rng is not None else np.random.default_rng()
            self.attn = Linear(size, attn_size, dtype=dtype, rng=rng)
            self._add_param("v", torch_default((attn_size,), attn_size, rng, np.dtype(dtype)))

    def forward(self, y: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        N, T, D = y.shape
        lengths = check_lengths(lengths, N, T)
        if self.kind == "concat":
            return np.concatenate([part.forward(y, lengths) for part in self.parts], axis=1)
        mask = valid_mask(lengths, T)                               # (N, T)
        rows = np.arange(N)
        if self.kind == "last":
            p = y[rows, lengths - 1].copy()                         # (N, D)
            if self.directions == 2:
                half = D // 2
                p[:, half:] = y[:, 0, half:]
            self._push((y.shape, lengths))
            return p
        if self.kind == "mean":
            scale = (1.0 / lengths).astype(y.dtype)[:, None]       # (N, 1)
            p = np.einsum("ntd,nt->nd", y, mask.astype(y.dtype)) * scale
            self._push((mask, scale))
            return p
        if self.kind == "max":
            masked = np.where(mask[:, :, None], y, -np.inf)
            arg = masked.argmax(axis=1)                             # (N, D)
            p = np.take_along_axis(y, arg[:, None, :], axis=1)[:, 0]
            self._push((y.shape, arg))
            return p
        e = np.tanh(self.attn.forward(y))                           # (N, T, A)
        s = e @ self.params["v"]                                    # (N, T)
        a = masked_softmax(s, mask)                                 # (N, T), 0 where padded
        self.weights = a
        p = np.einsum("nt,ntd->nd", a, y)
        self._push((y, e, a))
        return p

    def backward(self, dp: np.ndarray) -> np.ndarray:
        if self.kind == "concat":
            D = self.size
            return sum(part.backward(dp[:, k * D : (k + 1) * D])
                       for k, part in reversed(list(enumerate(self.parts))))
        if self.kind == "last":
            shape, lengths = self._pop()
            dy = np.zeros(shape, dp.dtype)
            rows = np.arange(shape[0])
            if self.directions == 2:
                half = shape[2] // 2
                dy[rows, lengths - 1, :half] = dp[:, :half]
                dy[:, 0, half:] += dp[:, half:]
            else:
                dy[rows, lengths - 1] = dp
            return dy
        if self.kind == "mean":
            mask, scale = self._pop()
            return mask[:, :, None].astype(dp.dtype) * (dp * scale)[:, None, :]
        if self.kind == "max":
            shape, arg = self._pop()
            dy = np.zeros(shape, dp.dtype)
            np.put_along_axis(dy, arg[:, None, :], dp[:, None, :], axis=1)
            return dy
        y, e, a = self._pop()
        dy = a[:, :, None] * dp[:, None, :]                         # through p = sum a_t y_t
        da = np.einsum("ntd,nd->nt", y, dp)
        ds = a * (da - (a * da).sum(axis=1, keepdims=True))        # 0 where a = 0
        self.grads["v"] += np.einsum("nt,nta->a", ds, e)
        de = ds[:, :, None] * self.params["v"] * (1 - e * e)       # (N, T, A)
        dy += self.attn.backward(de)
        return dy


@dataclass
class NetConfig:
    """Sizes of a `SequenceNet` (saved in checkpoints; the defaults live in the settings)."""

    input_size: int      # features per step (after stacking), or the vocabulary size for tokens
    classes: int
    tokens: bool         # ids through an Embedding, else features through a Linear (embed > 0)
    embed: int           # Embedding / input Linear width; 0 = features straight into the RNN
    cell: str
    hidden: int
    layers: int
    bidirectional: bool
    pool: str
    attn: int            # attention pooling's hidden width
    dropout: float
    dtype: str

    def to_json(self) -> dict:
        return asdict(self)


class SequenceNet(Module):
    """logits (N, C) = Linear(Dropout(Pool(RNN(Input(x), lengths), lengths))).

    x: (N, T) int ids (tokens) or (N, T, F) features; lengths (N,) in [1, T].  Every dropout
    mask comes from one generator, ``self.rng`` (checkpointed, so a resumed run is exact).
    """

    def __init__(self, cfg: NetConfig, rng: np.random.Generator,
                 dropout_rng: np.random.Generator | None = None) -> None:
        super().__init__()
        self.cfg = cfg
        dtype = np.dtype(cfg.dtype)
        width = cfg.input_size
        self.embed = None
        if cfg.tokens:
            self.embed = Embedding(cfg.input_size, cfg.embed, dtype=dtype, rng=rng)
            width = cfg.embed
        elif cfg.embed > 0:
            self.embed = Linear(cfg.input_size, cfg.embed, dtype=dtype, rng=rng)
            width = cfg.embed
        D = 2 if cfg.bidirectional else 1
        self.rnn = recurrent_layer(cfg.cell, width, cfg.hidden, num_layers=cfg.layers,
                                   bidirectional=cfg.bidirectional, dropout=cfg.dropout,
                                   dtype=dtype, rng=rng)
        self.pool = Pool(cfg.pool, D * cfg.hidden, D, cfg.attn, dtype=dtype, rng=rng)
        self.drop = Dropout(cfg.dropout)
        self.head = Linear(self.pool.out_size, cfg.classes, dtype=dtype, rng=rng)
        self.set_rng(dropout_rng if dropout_rng is not None else np.random.default_rng())

    def set_rng(self, rng: np.random.Generator) -> None:
        self.rng = self.rnn.rng = self.drop.rng = rng

    def forward(self, x: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        """-> logits (N, C)."""
        N, T = np.shape(x)[:2]
        lengths = check_lengths(lengths, N, T)
        h = self.embed.forward(x) if self.embed is not None else x      # (N, T, E)
        y, _ = self.rnn.forward(h, lengths=lengths)                     # (N, T, D*H)
        return self.head.forward(self.drop.forward(self.pool.forward(y, lengths)))

    def backward(self, dlogits: np.ndarray) -> np.ndarray | None:
        """Backpropagate dL/dlogits; returns dL/dx for features (None for tokens)."""
        dy = self.pool.backward(self.drop.backward(self.head.backward(dlogits)))
        dx, _ = self.rnn.backward(dy)
        if self.embed is None:
            return dx
        return self.embed.backward(dx)


class Ensemble(Module):
    """``members`` SequenceNets of one configuration from different seeds, trained side by side
    (each on its own batch order); their class probabilities are averaged.  Parameters are
    named ``members.k.<name>``; one dropout generator serves them all."""

    def __init__(self, cfg: NetConfig, members: int, seed: int,
                 dropout_rng: np.random.Generator | None = None) -> None:
        super().__init__()
        if members < 1:
            raise ValueError(f"an ensemble needs at least one member, got {members}")
        self.cfg = cfg
        self.members = [SequenceNet(cfg, np.random.default_rng([seed, 0, k])) for k in range(members)]
        self.set_rng(dropout_rng if dropout_rng is not None else np.random.default_rng())

    def set_rng(self, rng: np.random.Generator) -> None:
        self.rng = rng
        for m in self.members:
            m.set_rng(rng)

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self.cfg.dtype)

    def probs(self, x: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        """(N, C) float64: the members' softmax probabilities averaged (call under no_grad)."""
        total = 0.0
        for m in self.members:
            z = m.forward(x, lengths).astype(np.float64)
            z = np.exp(z - z.max(axis=1, keepdims=True))
            total = total + z / z.sum(axis=1, keepdims=True)
        return total / len(self.members)
