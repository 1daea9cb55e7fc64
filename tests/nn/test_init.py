"""Initialisers: bounds, moments, orthogonality, dtype, in-place bias, determinism."""
import math

import numpy as np
import pytest

from rnnkit.nn import init

# A uniform on (-a, a) has variance a^2 / 3; the sample variance of n draws has standard error
# sqrt(Var(w^2) / n) = a^2 * sqrt(4/45 / n). Fixed seed, so 5 standard errors never flakes.


def check_uniform_moments(w, bound):
    n = w.size
    w = w.astype(np.float64)
    assert np.max(np.abs(w)) <= bound
    assert np.max(np.abs(w)) > 0.99 * bound  # fills the interval, not a narrower one
    assert abs(np.mean(w)) < 5 * bound / math.sqrt(3 * n)
    se = bound ** 2 * math.sqrt(4 / 45 / n)
    assert abs(np.mean(w ** 2) - bound ** 2 / 3) < 5 * se, (np.mean(w ** 2), bound ** 2 / 3)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_uniform_bounds_variance_dtype(dtype, rng):
    w = init.uniform((300, 400), 0.37, rng, dtype)
    assert w.shape == (300, 400) and w.dtype == dtype
    check_uniform_moments(w, 0.37)


def test_torch_default_is_uniform_one_over_sqrt_h():
    h = 25
    w = init.torch_default((4 * h, 2000), h, np.random.default_rng(0), np.float32)
    assert w.dtype == np.float32
    check_uniform_moments(w, 1 / math.sqrt(h))
    # same draws as uniform with that bound
    ref = init.uniform((4 * h, 2000), 1 / math.sqrt(h), np.random.default_rng(0), np.float32)
    assert np.array_equal(w, ref)


# bound = gain * sqrt(6 / (fan_in + fan_out)) with torch's fans, worked out by hand:
#   (300, 500), gain 1:   fan_in 500, fan_out 300            -> sqrt(6 / 800)       = 0.0866025
#   (800, 50), gain 2:    fan_in 50, fan_out 800             -> 2 sqrt(6 / 850)     = 0.1680336
#   (40, 30, 5), gain .5: fan_in 30*5 = 150, fan_out 40*5 = 200 -> 0.5 sqrt(6 / 350) = 0.0654654
@pytest.mark.parametrize("shape, gain, bound", [((300, 500), 1.0, 0.0866025),
                                                ((800, 50), 2.0, 0.1680336),
                                                ((40, 30, 5), 0.5, 0.0654654)])
def test_xavier_uniform_bound_and_variance(shape, gain, bound, rng):
    w = init.xavier_uniform(shape, rng, np.float64, gain=gain)
    assert w.shape == shape
    check_uniform_moments(w, bound * (1 + 1e-6))  # the literal is rounded to 7 digits
    assert np.max(np.abs(w)) > 0.99 * bound


@pytest.mark.parametrize("shape", [(300, 200), (200, 100, 5)], ids=["2d", "3d"])
def test_xavier_bound_matches_torch(shape):
    # torch draws from its own generator, so compare the support: both samples are large
    # enough to reach within 0.1% of the bound, and the fan convention (receptive field
    # included) decides that bound
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    t = torch.nn.init.xavier_uniform_(torch.empty(shape, dtype=torch.float64), gain=1.5).numpy()
    w = init.xavier_uniform(shape, np.random.default_rng(0), gain=1.5)
    assert math.isclose(np.max(np.abs(w)), np.max(np.abs(t)), rel_tol=1e-3)
    assert np.max(np.abs(w)) <= 1.5 * math.sqrt(6 / sum(torch.nn.init._calculate_fan_in_and_fan_out(
        torch.empty(shape))))


@pytest.mark.parametrize("shape", [(50, 50), (80, 30), (30, 80), (12, 4, 5), (1, 9), (9, 1)],
                         ids=["square", "tall", "wide", "3d", "row", "column"])
def test_orthogonal(shape):
    rng = np.random.default_rng(7)
    q = init.orthogonal(shape, rng, np.float64)
    assert q.shape == shape and q.dtype == np.float64
    m = q.reshape(shape[0], -1)
    rows, cols = m.shape
    gram = m.T @ m if rows >= cols else m @ m.T
    np.testing.assert_allclose(gram, np.eye(min(rows, cols)), rtol=0, atol=1e-12)
    # sign correction: Q equals the QR factor of the same Gaussian whose R has a positive
    # diagonal, i.e. Q^T A is upper triangular with positive diagonal
    a = np.random.default_rng(7).standard_normal((rows, cols))
    if rows < cols:
        a, m = a.T, m.T
    r = m.T @ a
    assert np.all(np.diag(r) > 0)
    np.testing.assert_allclose(np.tril(r, -1), 0.0, atol=1e-12)


def test_orthogonal_gain_and_dtype():
    q = init.orthogonal((20, 20), np.random.default_rng(1), np.float32, gain=3.0)
    ref = init.orthogonal((20, 20), np.random.default_rng(1), np.float64)
    assert q.dtype == np.float32
    np.testing.assert_allclose(q.T.astype(np.float64) @ q, 9.0 * np.eye(20), atol=1e-5)
    np.testing.assert_allclose(q, 3.0 * ref, rtol=1e-6)


def test_orthogonal_signs_are_not_biased():
    # without the sign correction LAPACK's QR gives a fixed sign pattern on the diagonal
    diag = np.array([np.diag(init.orthogonal((6, 6), np.random.default_rng(s))) for s in range(400)])
    frac_pos = np.mean(diag > 0, axis=0)
    assert np.all(np.abs(frac_pos - 0.5) < 0.12), frac_pos


@pytest.mark.parametrize("gates", [1, 3, 4])
def test_recurrent_orthogonal_blocks(gates, rng):
    h = 16
    w = init.recurrent_orthogonal((gates * h, h), gates, rng, np.float64)
    assert w.shape == (gates * h, h)
    for k in range(gates):
        block = w[k * h:(k + 1) * h]
        np.testing.assert_allclose(block.T @ block, np.eye(h), atol=1e-12)
        np.testing.assert_allclose(block @ block.T, np.eye(h), atol=1e-12)
    if gates > 1:  # independent blocks, not copies
        assert not np.allclose(w[:h], w[h:2 * h])


def test_recurrent_orthogonal_rejects_bad_shape(rng):
    with pytest.raises(ValueError, match="gates"):
        init.recurrent_orthogonal((12, 4), 4, rng)
    with pytest.raises(ValueError, match="gates"):
        init.recurrent_orthogonal((16, 4), 0, rng)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_lstm_forget_bias(dtype, rng):
    h = 5
    bias = rng.standard_normal(4 * h).astype(dtype)
    before = bias.copy()
    out = init.lstm_forget_bias(bias, 2.5)
    assert out is bias and bias.dtype == dtype
    assert np.all(bias[h:2 * h] == 2.5)
    np.testing.assert_array_equal(bias[:h], before[:h])          # i
    np.testing.assert_array_equal(bias[2 * h:], before[2 * h:])  # g, o
    assert np.all(init.lstm_forget_bias(np.zeros(8))[2:4] == 1.0)
    with pytest.raises(ValueError, match="4H"):
        init.lstm_forget_bias(np.zeros(7))


@pytest.mark.parametrize("make", [
    lambda rng: init.uniform((6, 7), 0.3, rng),
    lambda rng: init.torch_default((6, 7), 7, rng),
    lambda rng: init.xavier_uniform((6, 7), rng),
    lambda rng: init.orthogonal((6, 7), rng),
    lambda rng: init.recurrent_orthogonal((12, 4), 3, rng),
], ids=["uniform", "torch_default", "xavier", "orthogonal", "recurrent_orthogonal"])
def test_determinism(make):
    a = make(np.random.default_rng(42))
    b = make(np.random.default_rng(42))
    c = make(np.random.default_rng(43))
    assert np.array_equal(a, b)
    assert not np.allclose(a, c)


def test_float32_is_float64_draw_rounded():
    a = init.xavier_uniform((10, 20), np.random.default_rng(3), np.float32)
    b = init.xavier_uniform((10, 20), np.random.default_rng(3), np.float64)
    assert a.dtype == np.float32 and np.array_equal(a, b.astype(np.float32))


@pytest.mark.parametrize("make, match", [
    (lambda rng: init.uniform((2, 2), -1.0, rng), "bound"),
    (lambda rng: init.uniform((2, 2), 1.0, rng, np.int32), "dtype"),
    (lambda rng: init.uniform((2, -2), 1.0, rng), "shape"),
    (lambda rng: init.torch_default((2, 2), 0, rng), "hidden_size"),
    (lambda rng: init.xavier_uniform((5,), rng), "2 dimensions"),
    (lambda rng: init.orthogonal((5,), rng), "2 dimensions"),
])
def test_bad_arguments_raise(make, match, rng):
    with pytest.raises(ValueError, match=match):
        make(rng)
