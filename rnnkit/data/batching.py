"""Batches shared by the applications: padding with lengths, and length-bucketed epochs.

`pad` turns a list of sequences of different lengths into one zero-padded array and the lengths
that the recurrent layers take.  `EpochBatches` gives the batch of every training step as a
function of the step alone: epoch e is a permutation drawn from the generator seeded by
``[seed, e]``, cut into batches of similar lengths (padding wastes little), so a resumed run - or
a run on another number of processes - sees exactly the same batches in the same order.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np


def pad(seqs: Sequence[np.ndarray], value=0, dtype=None, min_length: int = 1):
    """-> (x (N, T, ...) padded with ``value``, lengths (N,) int64); T = the longest (at least
    ``min_length``).  Every sequence is an array whose first axis is time."""
    seqs = [np.asarray(s) for s in seqs]
    lengths = np.array([len(s) for s in seqs], np.int64)
    if not seqs:
        raise ValueError("cannot pad an empty list of sequences")
    tail = seqs[0].shape[1:]
    dtype = seqs[0].dtype if dtype is None else dtype
    x = np.full((len(seqs), max(int(lengths.max()), min_length), *tail), value, dtype)
    for row, s in enumerate(seqs):  # building a batch, not computing on it
        x[row, : len(s)] = s
    return x, lengths


def length_buckets(lengths: np.ndarray, batch: int, rng: np.random.Generator,
                   chunk_batches: int = 50) -> list[np.ndarray]:
    """One epoch of index batches of similar lengths: shuffle, sort within chunks of
    ``chunk_batches`` batches, shuffle the batches.

    Sorting keeps padding (wasted recurrent steps) small; sorting only within chunks keeps the
    batches different from epoch to epoch.  The number of batches depends on len(lengths) and
    ``batch`` only.
    """
    lengths = np.asarray(lengths)
    order = rng.permutation(len(lengths))
    chunk = batch * chunk_batches
    out = []
    for c in range(0, len(order), chunk):
        part = order[c : c + chunk]
        part = part[np.argsort(lengths[part], kind="stable")]
        out += [part[i : i + batch] for i in range(0, len(part), batch)]
    return [out[k] for k in rng.permutation(len(out))]


class EpochBatches:
    """The index batch of any training step: ``batches[step]``.

    ``lengths`` None shuffles plainly (batches of ``batch`` in a random order); else batches are
    bucketed by length (`length_buckets`).  Epoch e uses ``np.random.default_rng([seed, e])``.
    """

    def __init__(self, n: int, batch: int, seed, lengths: np.ndarray | None = None) -> None:
        if n < 1:
            raise ValueError("no training examples")
        self.n, self.batch, self.seed = n, batch, seed
        self.lengths = np.zeros(n, np.int64) if lengths is None else np.asarray(lengths)
        self.per_epoch = -(-n // batch)
        self._epoch, self._plan = -1, []

    def plan(self, epoch: int) -> list[np.ndarray]:
        seed = self.seed if isinstance(self.seed, (list, tuple)) else [self.seed]
        rng = np.random.default_rng([*seed, epoch])
        return length_buckets(self.lengths, self.batch, rng)

    def __getitem__(self, step: int) -> np.ndarray:
        epoch, k = divmod(int(step), self.per_epoch)
        if epoch != self._epoch:
            self._epoch, self._plan = epoch, self.plan(epoch)
        return self._plan[k]
