"""Gate orders of PyTorch (= rnnkit), Keras and ONNX, and the block permutations between them.

A recurrent weight stacks one (H, .) block per gate along its first axis.  Each framework stacks
the same gates in its own order (verified by running each one; see shared INTEROP.md)::

    gate letters   LSTM: i input, f forget, g cell candidate, o output      RNN: h
                   GRU:  r reset, z update, n new (candidate) state

    framework      RNN   LSTM      GRU
    torch/rnnkit   h     i f g o   r z n
    keras          h     i f g o   z r n      (Keras calls g "c" and n "h")
    onnx           h     i o f g   z r n      (ONNX calls g "c" and n "h")

``permutation(kind, src, dst)`` is the list ``p`` with ``dst block j = src block p[j]``, e.g.
torch -> ONNX: LSTM [0, 3, 1, 2], GRU [1, 0, 2]; ``permute_blocks`` applies it to a weight or
bias.  Everything in ``rnnkit.interop`` that reorders gates goes through these two functions.
"""
from __future__ import annotations

import numpy as np

ORDERS = {
    "torch": {"rnn": "h", "lstm": "ifgo", "gru": "rzn"},
    "keras": {"rnn": "h", "lstm": "ifgo", "gru": "zrn"},
    "onnx": {"rnn": "h", "lstm": "iofg", "gru": "zrn"},
}


def permutation(kind: str, src: str, dst: str) -> list[int]:
    """Block permutation p taking ``src``'s gate order to ``dst``'s: dst[j] = src[p[j]]."""
    s, d = ORDERS[src][kind], ORDERS[dst][kind]
    return [s.index(gate) for gate in d]


def permute_blocks(w: np.ndarray, p: list[int]) -> np.ndarray:
    """Reorder the len(p) equal blocks of w's first axis: block j of the result is block p[j]."""
    blocks = np.split(np.asarray(w), len(p), axis=0)
    return np.concatenate([blocks[k] for k in p], axis=0)
