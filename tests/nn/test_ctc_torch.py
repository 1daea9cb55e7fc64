"""CTC loss against torch.nn.functional.ctc_loss: values and gradients (the torch-free checks are
in test_ctc.py)."""
import numpy as np
import pytest

from reference import ctc_case
from rnnkit.nn.ctc import CTCLoss

torch = pytest.importorskip("torch")


def torch_ctc(logits, targets, il, tl, blank, reduction, zero_infinity, dloss):
    """torch's loss on log_softmax(logits) and its gradient with respect to the logits."""
    z = torch.tensor(logits, dtype=torch.float64, requires_grad=True)
    lp = torch.log_softmax(z, -1).transpose(0, 1)
    loss = torch.nn.functional.ctc_loss(lp, torch.tensor(targets), torch.tensor(il), torch.tensor(tl),
                                        blank=blank, reduction=reduction, zero_infinity=zero_infinity)
    loss.backward(torch.tensor(dloss, dtype=torch.float64))
    return loss.detach().numpy(), z.grad.numpy()


CASES = [  # N, T, C, S, blank, repeats, impossible, zero_infinity
    (1, 1, 2, 1, 0, False, False, False),
    (3, 6, 4, 3, 0, False, False, False),
    (4, 12, 5, 4, 0, True, False, False),
    (5, 20, 7, 6, 3, False, False, False),
    (4, 9, 6, 5, 5, True, False, False),
    (3, 8, 4, 0, 0, False, False, False),  # every target empty
    (4, 7, 5, 5, 0, True, True, True),  # an impossible pair, zeroed
    (2, 5, 3, 2, 0, False, False, True),  # zero_infinity with nothing infinite
]


@pytest.mark.parametrize("case", range(len(CASES)))
@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
@pytest.mark.parametrize("padded", [True, False])
def test_matches_torch(case, reduction, padded):
    N, T, C, S, blank, repeats, impossible, zi = CASES[case]
    rng = np.random.default_rng([case, len(reduction), padded])
    logits, targets, il, tl = ctc_case(rng, N, T, C, S, blank, repeats, impossible)
    targets = targets[:, :S]
    flat = np.concatenate([targets[n, : tl[n]] for n in range(N)]).astype(np.int64)
    dloss = rng.standard_normal(N) if reduction == "none" else np.float64(1.7)
    want, want_grad = torch_ctc(logits, targets if padded else flat, il, tl, blank, reduction, zi, dloss)
    ctc = CTCLoss(blank=blank, reduction=reduction, zero_infinity=zi)
    got = ctc.forward(logits, targets if padded else flat, il, tl)
    grad = ctc.backward(dloss)
    assert np.shape(got) == np.shape(want) and grad.shape == logits.shape and grad.dtype == np.float64
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(grad, want_grad, rtol=1e-8, atol=1e-12)  # NaN where torch has NaN
    assert zi or not np.all(np.isfinite(want)) or np.all(np.isfinite(grad))
    for n in range(N):  # frames past a sequence's end get exactly zero gradient
        assert np.all(grad[n, il[n]:] == 0)


def test_impossible_pair_is_infinite_with_nan_gradient_like_torch():
    logits = np.random.default_rng(0).standard_normal((2, 3, 4))
    targets = np.array([[1, 1, 2], [1, 2, 3]])  # 1,1,2 needs 4 frames; 1,2,3 fits in 3
    il, tl = np.array([3, 3]), np.array([3, 3])
    want, want_grad = torch_ctc(logits, targets, il, tl, 0, "none", False, np.ones(2))
    ctc = CTCLoss(reduction="none")
    got = ctc.forward(logits, targets, il, tl)
    grad = ctc.backward(np.ones(2))
    assert got[0] == np.inf and want[0] == np.inf
    np.testing.assert_allclose(got[1], want[1], rtol=1e-12)
    assert np.all(np.isnan(grad[0])) and np.all(np.isnan(want_grad[0]))
    np.testing.assert_allclose(grad[1], want_grad[1], rtol=1e-9)
    zi = CTCLoss(reduction="sum", zero_infinity=True)
    assert zi.forward(logits, targets, il, tl) == pytest.approx(want[1], rel=1e-12)
    assert np.all(zi.backward()[0] == 0)
