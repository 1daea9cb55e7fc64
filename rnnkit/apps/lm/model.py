"""The language model: Embedding -> multi-layer LSTM / GRU / RNN -> Dropout -> Linear (logits)."""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from ...nn import Dropout, Embedding, Linear, Module, log_softmax, recurrent_layer



@dataclass
class ModelConfig:
    """Sizes of a `LanguageModel` (saved in checkpoints; the defaults live in `LMSettings`)."""

    vocab_size: int
    cell: str
    embed: int
    hidden: int
    layers: int
    dropout: float
    dtype: str

    def to_json(self) -> dict:
        return asdict(self)


class LanguageModel(Module):
    """logits (N, T, V) = Linear(Dropout(RNN(Embedding(ids))));  the state is carried by the caller.

    Every dropout mask (between recurrent layers and before the output layer) comes from one
    generator, ``self.rng``, whose state a checkpoint saves so that a resumed run is exact.
    """

    def __init__(self, cfg: ModelConfig, rng: np.random.Generator,
                 dropout_rng: np.random.Generator | None = None) -> None:
        super().__init__()
        self.cfg = cfg
        dtype = np.dtype(cfg.dtype)
        self.rng = dropout_rng if dropout_rng is not None else np.random.default_rng()
        self.embed = Embedding(cfg.vocab_size, cfg.embed, dtype=dtype, rng=rng)
        self.rnn = recurrent_layer(cfg.cell, cfg.embed, cfg.hidden, num_layers=cfg.layers,
                                   dropout=cfg.dropout, dtype=dtype, rng=rng)
        self.drop = Dropout(cfg.dropout)
        self.head = Linear(cfg.hidden, cfg.vocab_size, dtype=dtype, rng=rng)
        self.set_rng(self.rng)

    def set_rng(self, rng: np.random.Generator) -> None:
        """Share one dropout generator between the recurrent layers and the output dropout."""
        self.rng = self.rnn.rng = self.drop.rng = rng

    def forward(self, ids: np.ndarray, state=None):
        """ids (N, T) int -> (logits (N, T, V), final state)."""
        h, state = self.rnn.forward(self.embed.forward(ids), state)  # (N, T, H)
        return self.head.forward(self.drop.forward(h)), state

    def backward(self, dlogits: np.ndarray) -> None:
        """Backpropagate dL/dlogits; the carried state gets no gradient (truncated BPTT)."""
        dh = self.drop.backward(self.head.backward(dlogits))
        dx, _ = self.rnn.backward(dh)
        self.embed.backward(dx)

    def zero_state(self, batch: int):
        L, H = self.cfg.layers, self.cfg.hidden
        h = np.zeros((L, batch, H), self.rnn.dtype)
        return (h, h.copy()) if self.cfg.cell == "lstm" else h


def state_arrays(state) -> dict[str, np.ndarray]:
    """The carried state as named arrays (for a checkpoint)."""
    if state is None:
        return {}
    return {"h": state[0], "c": state[1]} if isinstance(state, tuple) else {"h": state}


def state_from_arrays(arrays: dict[str, np.ndarray]):
    if not arrays:
        return None
    return (arrays["h"], arrays["c"]) if "c" in arrays else arrays["h"]


def stream_nll(model: LanguageModel, ids: np.ndarray, seq_len: int, streams: int,
               rank: int = 0, size: int = 1) -> tuple[float, int]:
    """Total negative log-likelihood (nats) of predicting ids[1:] from what precedes them.

    The text is cut into ``streams`` contiguous parts run side by side, each with its state
    carried from window to window (``streams=1``: one state carried through the whole text).
    Returns (total nats, number of predicted tokens).  Run under ``no_grad()`` in eval mode.
    ``rank`` of ``size``: only the streams rank, rank + size, ... (the totals of every rank's
    share add up to the whole; the last stream's rank also scores the tail).
    """
    ids = np.asarray(ids, np.int64)
    streams = max(1, min(streams, (len(ids) - 1) // max(seq_len, 1) or 1))
    L = (len(ids) - 1) // streams  # predictions per stream
    total, count, state = 0.0, 0, None
    starts = np.arange(streams)[rank::size] * L
    if not len(starts):
        return total, count
    for t0 in range(0, L, seq_len):
        t1 = min(t0 + seq_len, L)
        rows = starts[:, None] + np.arange(t0, t1)[None, :]  # (B, t) positions, no loop over streams
        x, y = ids[rows], ids[rows + 1]
        logits, state = model.forward(x, state)
        logp = log_softmax(logits.astype(np.float64))
        total -= float(np.take_along_axis(logp, y[..., None], -1).sum())
        count += y.size
    # the tail that does not divide evenly: one more short stream carried from the last one
    tail_start = streams * L
    if tail_start < len(ids) - 1 and (streams - 1) % size == rank:
        last_state = _row(state, len(starts) - 1) if len(starts) > 1 else state
        tail = ids[tail_start:]
        x, y = tail[None, :-1], tail[None, 1:]
        # the last stream ended at tail_start, so its state is the right context for the tail
        logits, _ = model.forward(x, last_state)
        logp = log_softmax(logits.astype(np.float64))
        total -= float(np.take_along_axis(logp, y[..., None], -1).sum())
        count += y.size
    return total, count


def _row(state, n):
    """Row n of a state (h or (h, c), each (L, B, H)) as a batch of one."""
    if isinstance(state, tuple):
        return tuple(s[:, n : n + 1] for s in state)
    return state[:, n : n + 1]
