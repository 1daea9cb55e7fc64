"""CTC loss without a reference library: a float64 gradcheck, the sum over all paths, float32,
impossible pairs and bad input (test_ctc_torch.py compares with torch)."""
import itertools
import math

import numpy as np
import pytest

from reference import ctc_case
from rnnkit.nn import gradcheck, log_softmax
from rnnkit.nn.ctc import CTCLoss


def test_impossible_pair_is_infinite_with_nan_gradient():
    logits = np.random.default_rng(0).standard_normal((2, 3, 4))
    targets = np.array([[1, 1, 2], [1, 2, 3]])  # 1,1,2 needs 4 frames; 1,2,3 fits in 3
    il, tl = np.array([3, 3]), np.array([3, 3])
    ctc = CTCLoss(reduction="none")
    got = ctc.forward(logits, targets, il, tl)
    grad = ctc.backward(np.ones(2))
    assert got[0] == np.inf and np.isfinite(got[1])
    assert np.all(np.isnan(grad[0])) and np.all(np.isfinite(grad[1]))
    one_path = -log_softmax(logits[1])[[0, 1, 2], [1, 2, 3]].sum()  # 3 labels in 3 frames
    assert got[1] == pytest.approx(one_path, rel=1e-12)
    zi = CTCLoss(reduction="sum", zero_infinity=True)
    assert zi.forward(logits, targets, il, tl) == pytest.approx(got[1], rel=1e-12)
    assert np.all(zi.backward()[0] == 0)


def test_float32_keeps_dtype_and_agrees():
    rng = np.random.default_rng(3)
    logits, targets, il, tl = ctc_case(rng, 4, 15, 6, 4, 0)
    ctc64, ctc32 = CTCLoss(), CTCLoss()
    l64 = ctc64.forward(logits, targets, il, tl)
    l32 = ctc32.forward(logits.astype(np.float32), targets, il, tl)
    g32 = ctc32.backward()
    assert l32.dtype == np.float32 and g32.dtype == np.float32
    np.testing.assert_allclose(l32, l64, rtol=1e-5)
    np.testing.assert_allclose(g32, ctc64.backward(), atol=1e-6)


def test_gradcheck():
    rng = np.random.default_rng(7)
    logits, targets, il, tl = ctc_case(rng, 3, 7, 4, 3, 0, repeats=True)
    gradcheck(CTCLoss(reduction="none"), (logits,), {"targets": targets, "input_lengths": il,
                                                      "target_lengths": tl})


def brute_force_nll(logp, target, blank):
    """-log sum over every path of length T that collapses to ``target``."""
    T, C = logp.shape
    total = 0.0
    for path in itertools.product(range(C), repeat=T):
        collapsed = [k for j, k in enumerate(path) if k != blank and (j == 0 or path[j - 1] != k)]
        if collapsed == list(target):
            total += math.exp(sum(logp[t, k] for t, k in enumerate(path)))
    return -math.log(total) if total > 0 else math.inf


@pytest.mark.parametrize("target", [[], [1], [1, 1], [2, 1], [1, 2, 1], [2, 2, 2], [1, 1, 1, 1]])
def test_equals_the_sum_over_all_paths(target):
    rng = np.random.default_rng(len(target))
    logits = rng.standard_normal((1, 5, 3))
    want = brute_force_nll(log_softmax(logits[0]), target, blank=0)
    got = CTCLoss(reduction="none").forward(logits, np.array([target + [1]]), np.array([5]),
                                            np.array([len(target)]))[0]
    assert got == pytest.approx(want, rel=1e-12) if math.isfinite(want) else got == np.inf


def test_bad_input_is_named():
    ctc, z = CTCLoss(), np.zeros((2, 4, 3))
    with pytest.raises(ValueError, match="blank index 0"):
        ctc.forward(z, np.array([[0, 1], [1, 2]]), np.array([4, 4]), np.array([2, 2]))
    with pytest.raises(ValueError, match="input_lengths must lie in"):
        ctc.forward(z, np.array([[1], [2]]), np.array([5, 4]), np.array([1, 1]))
    with pytest.raises(ValueError, match="lie in \\[0, 3\\)"):
        ctc.forward(z, np.array([[3], [2]]), np.array([4, 4]), np.array([1, 1]))
    with pytest.raises(ValueError, match="sum to 3"):
        ctc.forward(z, np.array([1, 2]), np.array([4, 4]), np.array([1, 2]))
