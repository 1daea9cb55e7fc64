"""The gate table gives the permutations verified by running each framework (shared INTEROP.md)."""
import numpy as np
import pytest

from rnnkit.interop.gates import permutation, permute_blocks


@pytest.mark.parametrize("kind,src,dst,expected", [
    ("lstm", "torch", "onnx", [0, 3, 1, 2]),
    ("gru", "torch", "onnx", [1, 0, 2]),
    ("lstm", "onnx", "torch", [0, 2, 3, 1]),
    ("gru", "onnx", "torch", [1, 0, 2]),
    ("lstm", "torch", "keras", [0, 1, 2, 3]),
    ("gru", "torch", "keras", [1, 0, 2]),
    ("gru", "keras", "torch", [1, 0, 2]),
    ("rnn", "keras", "onnx", [0]),
])
def test_permutations(kind, src, dst, expected):
    assert permutation(kind, src, dst) == expected


def test_permute_blocks_moves_whole_blocks_and_inverts():
    H = 2
    w = np.arange(4 * H * 3).reshape(4 * H, 3)  # (gH, I): block j = rows [j*H, (j+1)*H)
    p = permutation("lstm", "torch", "onnx")
    out = permute_blocks(w, p)
    np.testing.assert_array_equal(out[H : 2 * H], w[3 * H : 4 * H])  # ONNX's 2nd gate is torch's o
    np.testing.assert_array_equal(permute_blocks(out, permutation("lstm", "onnx", "torch")), w)
    np.testing.assert_array_equal(permute_blocks(np.arange(6), [1, 0, 2]), [2, 3, 0, 1, 4, 5])
