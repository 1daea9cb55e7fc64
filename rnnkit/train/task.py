"""The task interface: what an application tells the training loop.

The loop (`rnnkit.train.engine.fit`) knows nothing of text, audio or series; a task knows
nothing of schedules, checkpoints or time limits.  A task says::

    batch(step)        the batch of optimizer step ``step``: a function of the step alone
                       (and the seed), so a resumed run - or a run on another number of
                       processes - sees exactly the same data in the same order
    loss(batch)        forward and backward on that batch: the gradients accumulate in
                       ``task.model.grads``; returns the mean loss
    evaluate()         metrics of the current parameters on the validation data, e.g.
                       {"loss": 1.43, "cer": 0.05}; ``metric`` names the one that picks the
                       best parameters (``higher_is_better`` says which way)
    config()           JSON that rebuilds the model for inference (vocabulary, sizes, ...)
    state() / load_state(arrays)    arrays that must survive a resume besides the parameters,
                       the optimizer and ``rngs()`` (the hidden state a language model carries
                       from one window to the next)
    rngs()             the generators the task draws from during training (dropout masks);
                       their states go into every checkpoint

A task may also set ``explode``: a loss above which training has diverged even though it is
finite (a language model far worse than uniform guessing), checked after the warm-up.

Data parallelism (``mpiexec -n K``, `rnnkit.train.mpi`) needs five more things, all with
defaults that fit a task whose batch is an index array, or a tuple of arrays with one row per
sequence, and whose loss is a mean over rows::

    shard(batch, rank, K)    rank's part of the global batch: every K-th row from ``rank``
    weight(batch)            what ``batch`` counts for in the mean that ``loss`` returns: its
                             rows; a loss averaged over real tokens returns its token count, so
                             that sum_r weight(shard_r) / weight(batch) * loss(shard_r) is the
                             mean of the whole batch (and so are the gradients)
    evaluate_shard(rank, K)  {metric: (sum, count)} over rank's share of the validation data,
                             summed over the ranks and divided; ``evaluate()`` is the same with
                             K = 1.  None (the default): rank 0 runs ``evaluate()`` alone
    state_rows               the axis of the ``state()`` arrays that holds the batch rows (the
                             language model's carried (L, N, H) state: 1), so that checkpoints
                             gather them and a resume re-shards them; None: not per row
    data_digest()            a digest of the data trained and validated on, compared across
                             ranks at the start (default: the config and the first batch)

`TaskSpec` is how an application lets tools (``rnnkit compare``) build its task from its data
flags and settings without running its command body.
"""
from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import math
from typing import Any, Callable

import numpy as np

from ..nn.module import Module


class Task:
    """Base class of a training task; see the module docstring."""

    app: str = ""                  # the application's name, saved in config.json
    model: Module                  # the parameters being trained
    metric: str = "loss"           # the evaluate() key that picks the best parameters
    higher_is_better: bool = False
    loss_name: str = "loss"        # what loss() returns, for plots and messages
    explode: float | None = None   # a finite loss above this (after warm-up) stops training
    state_rows: int | None = None  # the axis of the state() arrays that holds the batch rows

    def batch(self, step: int) -> Any:
        raise NotImplementedError

    def loss(self, batch: Any) -> float:
        raise NotImplementedError

    def evaluate(self) -> dict[str, float]:
        sums = self.evaluate_shard(0, 1)
        if sums is None:
            raise NotImplementedError
        return {k: s / c if c else math.nan for k, (s, c) in sums.items()}

    def evaluate_shard(self, rank: int, size: int) -> dict[str, tuple[float, float]] | None:
        """{metric: (sum, count)} over the share ``rank`` of ``size`` of the validation data."""
        return None

    def shard(self, batch: Any, rank: int, size: int) -> Any:
        """The rows ``rank``, ``rank + size``, ... of the global ``batch`` (see `take_rows`)."""
        n = batch_rows(batch)
        return take_rows(batch, np.arange(rank, n, size), n)

    def weight(self, batch: Any) -> float:
        """How much ``batch`` counts in the mean loss: its rows (sequences, windows)."""
        return float(batch_rows(batch))

    def data_digest(self) -> str:
        """A digest of the data, equal on every rank that reads the same data."""
        h = hashlib.sha256(json.dumps(self.config(), sort_keys=True, default=str).encode())
        _hash_arrays(h, self.batch(0))
        return h.hexdigest()

    def close(self) -> None:
        """Release what the task holds open (worker processes); called when `fit` returns."""

    def describe(self) -> str:
        """One line on the data and the model, printed when training starts."""
        return ""

    def show(self, name: str, value: float) -> str:
        """A validation metric as the progress lines and the final report print it."""
        return f"{value:.4f}"

    def config(self) -> dict:
        return {}

    def state(self) -> dict[str, np.ndarray]:
        return {}

    def load_state(self, arrays: dict[str, np.ndarray]) -> None:
        if arrays:
            raise ValueError(f"unexpected task state {sorted(arrays)}")

    def rngs(self) -> dict[str, np.random.Generator]:
        return {}

    def better(self, metrics: dict[str, float], best: dict[str, float] | None) -> bool:
        """Whether validation ``metrics`` beat ``best`` (None: nothing yet).

        By ``metric`` (NaN never beats a number; with nothing to judge by, the latest wins); on
        a tie, a lower validation loss wins.
        """
        if best is None:
            return True
        new, old = metrics.get(self.metric, math.nan), best.get(self.metric, math.nan)
        if new != new:
            return old != old
        if old != old:
            return True
        if new != old:
            return new > old if self.higher_is_better else new < old
        return metrics.get("loss", math.inf) < best.get("loss", math.inf) and self.metric != "loss"


def batch_rows(batch: Any) -> int:
    """The rows of a batch: an array's length, or that of a tuple's first array."""
    if isinstance(batch, np.ndarray):
        return len(batch)
    if isinstance(batch, (tuple, list)):
        for item in batch:
            if isinstance(item, np.ndarray) and item.ndim:
                return len(item)
    raise TypeError(f"cannot tell the rows of a batch of type {type(batch).__name__}; the task "
                    "must define shard() and weight()")


def take_rows(batch: Any, rows: np.ndarray, n: int) -> Any:
    """``batch`` at ``rows``: an array, or every array of a tuple whose first axis has the ``n``
    rows of the batch (anything else in the tuple - a step number, None - is kept as it is)."""
    if isinstance(batch, np.ndarray):
        return batch[rows]
    return type(batch)(item[rows] if isinstance(item, np.ndarray) and item.ndim and len(item) == n
                       else item for item in batch)


def _hash_arrays(h, value: Any) -> None:
    if isinstance(value, np.ndarray):
        h.update(f"{value.dtype}{value.shape}".encode())
        h.update(np.ascontiguousarray(value).tobytes())
    elif isinstance(value, (tuple, list)):
        for item in value:
            _hash_arrays(h, item)
    else:
        h.update(repr(value).encode())


@dataclasses.dataclass(frozen=True)
class TaskSpec:
    """How a tool builds an application's training task: ``TASK`` in each app's commands.py.

    ``data_options(parser)`` adds the flags that name the data (``--text``; ``--csv --target
    --horizon``; ...), ``make_task(settings, args)`` builds the task from the app's settings and
    those parsed flags.  ``skip``: settings that get no flag from the tool (``data_options``
    adds it, or the task ignores the setting).  When the task's checkpoint folder is not already
    the app's run folder (a forecaster is an ensemble around such networks),
    ``save_run(task, settings, args, directory)`` writes one from the trained task, so that
    ``rnnkit.load`` works on it.  ``about``: what the task trains and measures, for reports.
    """

    app: str
    settings: type
    data_options: Callable[[argparse.ArgumentParser], None]
    make_task: Callable[[Any, argparse.Namespace], Task]
    skip: tuple[str, ...] = ()
    save_run: Callable[[Task, Any, argparse.Namespace, Any], None] | None = None
    about: str = ""
