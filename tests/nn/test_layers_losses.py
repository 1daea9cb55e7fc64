"""Linear, Embedding and the losses against torch, values and gradients (the torch-free layer
tests are in test_layers.py)."""
import numpy as np
import pytest

import rnnkit
from reference import assert_close

torch = pytest.importorskip("torch")


def test_linear_matches_torch_on_sequences():
    rng = np.random.default_rng(0)
    lin = rnnkit.Linear(5, 3, dtype=np.float64, rng=rng)
    lin.params["bias"][...] = rng.standard_normal(3)
    x = rng.standard_normal((2, 4, 5))
    dy = rng.standard_normal((2, 4, 3))
    y = lin.forward(x)
    dx = lin.backward(dy)
    tl = torch.nn.Linear(5, 3, dtype=torch.float64)
    with torch.no_grad():
        tl.weight.copy_(torch.from_numpy(lin.params["weight"]))
        tl.bias.copy_(torch.from_numpy(lin.params["bias"]))
    xt = torch.tensor(x, requires_grad=True)
    yt = tl(xt)
    yt.backward(torch.tensor(dy))
    assert_close("y", y, yt.detach().numpy(), 1e-13)
    assert_close("dx", dx, xt.grad.numpy(), 1e-13)
    assert_close("dW", lin.grads["weight"], tl.weight.grad.numpy(), 1e-13)
    assert_close("db", lin.grads["bias"], tl.bias.grad.numpy(), 1e-13)


def test_embedding_padding_row_matches_torch():
    rng = np.random.default_rng(1)
    emb = rnnkit.Embedding(6, 4, padding_idx=0, dtype=np.float64, rng=rng)
    assert not emb.params["weight"][0].any()
    emb.params["weight"][0] = rng.standard_normal(4)  # a nonzero padding row must stay gradient-free
    ids = np.array([[0, 1, 1, 5], [2, 0, 0, 3]])
    dy = rng.standard_normal((2, 4, 4))
    y = emb.forward(ids)
    emb.backward(dy)
    te = torch.nn.Embedding(6, 4, padding_idx=0, dtype=torch.float64)
    with torch.no_grad():
        te.weight.copy_(torch.from_numpy(emb.params["weight"]))
    te(torch.tensor(ids)).backward(torch.tensor(dy))
    assert_close("y", y, emb.params["weight"][ids], 0)
    assert_close("dW", emb.grads["weight"], te.weight.grad.numpy(), 1e-14)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_cross_entropy_matches_torch(reduction):
    rng = np.random.default_rng(4)
    logits = rng.standard_normal((3, 5, 7)) * 30  # large logits: log-sum-exp must stay stable
    targets = rng.integers(0, 7, (3, 5))
    targets[1, 2] = targets[2, 4] = -100
    ours = rnnkit.CrossEntropyLoss(ignore_index=-100, reduction=reduction)
    loss = ours.forward(logits, targets)
    dloss = rng.standard_normal((3, 5)) if reduction == "none" else 1.0
    grad = ours.backward(dloss)
    lt = torch.tensor(logits, requires_grad=True)
    ref = torch.nn.functional.cross_entropy(lt.reshape(-1, 7), torch.tensor(targets).reshape(-1),
                                            ignore_index=-100, reduction=reduction)
    if reduction == "none":
        ref = ref.reshape(3, 5)
        ref.backward(torch.tensor(dloss))
    else:
        ref.backward()
    assert_close("loss", loss, ref.detach().numpy(), 1e-13)
    assert_close("grad", grad, lt.grad.numpy(), 1e-13)


def test_cross_entropy_mask_equals_ignore_index_and_float32():
    rng = np.random.default_rng(5)
    logits = rng.standard_normal((2, 6, 4)).astype(np.float32)
    targets = rng.integers(0, 4, (2, 6))
    mask = rng.random((2, 6)) > 0.4
    a = rnnkit.CrossEntropyLoss()
    la = a.forward(logits, targets, mask=mask)
    ga = a.backward()
    b = rnnkit.CrossEntropyLoss()
    lb = b.forward(logits, np.where(mask, targets, -100))
    gb = b.backward()
    assert la.dtype == np.float32 and ga.dtype == np.float32
    assert la == lb
    np.testing.assert_array_equal(ga, gb)
    lt = torch.tensor(logits)
    ref = torch.nn.functional.cross_entropy(lt.reshape(-1, 4), torch.tensor(np.where(mask, targets, -100)).reshape(-1))
    assert abs(float(la) - float(ref)) < 1e-6


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_mse_matches_torch(reduction):
    rng = np.random.default_rng(6)
    pred, target = rng.standard_normal((2, 3, 4)), rng.standard_normal((2, 3, 4))
    ours = rnnkit.MSELoss(reduction)
    loss, grad = ours.forward(pred, target), None
    grad = ours.backward()
    pt = torch.tensor(pred, requires_grad=True)
    ref = torch.nn.functional.mse_loss(pt, torch.tensor(target), reduction=reduction)
    ref.backward()
    assert_close("loss", loss, ref.detach().numpy(), 1e-13)
    assert_close("grad", grad, pt.grad.numpy(), 1e-13)


def test_mse_mask_averages_over_counted_positions():
    rng = np.random.default_rng(7)
    pred, target = rng.standard_normal((2, 3, 4)), rng.standard_normal((2, 3, 4))
    mask = np.array([[1, 0, 1], [0, 0, 1]])
    loss = rnnkit.MSELoss().forward(pred, target, mask=mask)
    sel = mask.astype(bool)
    ref = torch.nn.functional.mse_loss(torch.tensor(pred[sel]), torch.tensor(target[sel]))
    assert_close("masked mse", loss, ref.numpy(), 1e-13)


@pytest.mark.parametrize("full", [False, True])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_gaussian_nll_matches_torch(full, reduction):
    rng = np.random.default_rng(8)
    mean, target = rng.standard_normal((4, 3)), rng.standard_normal((4, 3))
    var = rng.uniform(0.1, 2.0, (4, 3))
    var[0, 0] = 1e-9  # below eps: clamped value, gradient still flows as in torch
    ours = rnnkit.GaussianNLLLoss(full=full, reduction=reduction)
    loss = ours.forward(mean, target, var)
    dloss = rng.standard_normal((4, 3)) if reduction == "none" else 1.0
    dmean, dvar = ours.backward(dloss)
    mt, vt = torch.tensor(mean, requires_grad=True), torch.tensor(var, requires_grad=True)
    ref = torch.nn.functional.gaussian_nll_loss(mt, torch.tensor(target), vt, full=full, reduction=reduction)
    ref.backward(torch.tensor(dloss) if reduction == "none" else None)
    assert_close("loss", loss, ref.detach().numpy(), 1e-13)
    assert_close("dmean", dmean, mt.grad.numpy(), 1e-13)
    assert_close("dvar", dvar, vt.grad.numpy(), 1e-12)
