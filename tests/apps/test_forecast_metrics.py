"""Forecast metrics and baselines against values worked out by hand."""
import math

import numpy as np
import pytest

from rnnkit.apps.forecast.metrics import (coverage, drift, mae, mase, mase_scale, mean_of, naive,
                                          point_metrics, rmse, seasonal_naive, smape)


def test_point_metrics_by_hand():
    actual, forecast = [1.0, 2.0, 3.0], [2.0, 2.0, 5.0]
    assert mae(actual, forecast) == pytest.approx(1.0)                       # (1 + 0 + 2) / 3
    assert rmse(actual, forecast) == pytest.approx(math.sqrt(5 / 3))         # sqrt((1 + 0 + 4) / 3)
    # 200/3 * (1/3 + 0/4 + 2/8)
    assert smape(actual, forecast) == pytest.approx(200 / 3 * (1 / 3 + 0.25))
    history = [1.0, 3.0, 2.0, 4.0]
    # m = 1: mean |diff| = (2 + 1 + 2) / 3 = 5/3 -> MASE = 1 / (5/3)
    assert mase(actual, forecast, history, 1) == pytest.approx(0.6)
    # m = 2: |2 - 1|, |4 - 3| -> scale 1 -> MASE = MAE
    assert mase(actual, forecast, history, 2) == pytest.approx(1.0)
    m = point_metrics(actual, forecast, history, 2)
    assert m == pytest.approx({"mae": 1.0, "rmse": math.sqrt(5 / 3),
                               "smape": 200 / 3 * (1 / 3 + 0.25), "mase": 1.0})


def test_smape_counts_zero_over_zero_as_zero_and_is_bounded():
    assert smape([0.0, 0.0], [0.0, 0.0]) == 0.0
    assert smape([0.0, 1.0], [0.0, 1.0]) == 0.0
    assert smape([1.0], [-1.0]) == pytest.approx(200.0)  # the largest possible term
    assert smape([0.0, 2.0], [1.0, 2.0]) == pytest.approx(100.0)  # (200 + 0) / 2


def test_mase_scale_falls_back_and_is_undefined_for_constant_history():
    assert mase_scale([1.0, 2.0, 4.0], 12) == pytest.approx(1.5)  # shorter than m: m = 1
    assert mase_scale([5.0, 5.0, 5.0, 5.0], 1) is None
    assert mase([1.0], [2.0], [5.0, 5.0, 5.0], 1) is None
    assert mean_of([1.0, None, 3.0, float("nan")]) == pytest.approx(2.0)
    assert mean_of([None]) is None


def test_coverage_includes_the_bounds():
    assert coverage([1.0, 2.0, 3.0], [0.0, 2.5, 2.0], [1.0, 3.0, 4.0]) == pytest.approx(2 / 3)


def test_baselines_on_a_tiny_series():
    y = np.arange(1.0, 9.0)  # 1..8
    np.testing.assert_array_equal(naive(y, 5), [8, 8, 8, 8, 8])
    np.testing.assert_array_equal(seasonal_naive(y, 5, 4), [5, 6, 7, 8, 5])
    np.testing.assert_array_equal(seasonal_naive(y, 3, 1), [8, 8, 8])  # m = 1 is naive
    np.testing.assert_array_equal(seasonal_naive(y[:3], 2, 4), [3, 3])  # shorter than a season
    np.testing.assert_allclose(drift(y, 5), [9, 10, 11, 12, 13])      # slope (8 - 1) / 7 = 1
    np.testing.assert_allclose(drift([2.0, 1.0, 6.0], 2), [8.0, 10.0])  # slope (6 - 2) / 2 = 2
    np.testing.assert_array_equal(drift([4.0], 2), [4.0, 4.0])


# ----------------------------------------------------------------------------- M4's definitions
# A worked example, every number derived by hand from the M4 competition's published formulas
# (Makridakis, Spiliotis, Assimakopoulos 2020, "The M4 Competition: 100,000 time series and 61
# forecasting methods", section 2.3, and the benchmark code's SeasonalityTest / decompose /
# naive), not from the implementation.

Y = np.array([2.0, 6, 3, 7, 4, 8, 5, 9, 6, 10])  # m = 2: low / high, rising by 1 per season


def test_seasonality_test_by_hand():
    from rnnkit.apps.forecast.metrics import acf, seasonality_test
    # mean 6, deviations d = [-4, 0, -3, 1, -2, 2, -1, 3, 0, 4], sum d^2 = 60
    # r_1 = sum d_t d_{t-1} / 60 = -14 / 60,  r_2 = sum d_t d_{t-2} / 60 = 40 / 60
    assert acf(Y, 1) == pytest.approx(-14 / 60) and acf(Y, 2) == pytest.approx(40 / 60)
    # limit = 1.645 sqrt((1 + 2 r_1^2) / n) = 0.5478 < |r_2| = 0.667: seasonal
    limit = 1.645 * math.sqrt((1 + 2 * (14 / 60) ** 2) / 10)
    assert limit == pytest.approx(0.5478, abs=1e-4)
    assert seasonality_test(Y, 2)
    assert not seasonality_test(Y[:5], 2)        # shorter than 3m: never seasonal
    assert not seasonality_test(Y, 1)
    # r_4 of a random walk is below its limit: not seasonal
    walk = np.cumsum(np.random.default_rng(0).standard_normal(40))
    assert not seasonality_test(walk, 4)


def test_classical_decomposition_and_naive2_by_hand():
    from rnnkit.apps.forecast.metrics import naive2, seasonal_indices
    # centred MA of order 2 x 2: .25 y_{t-1} + .5 y_t + .25 y_{t+1} = 3.75 + t / 2 for t = 1..8
    ma = 3.75 + np.arange(1, 9) / 2
    ratio = Y[1:9] / ma
    fig = np.array([ratio[1::2].mean(), ratio[0::2].mean()])  # t = 2, 4, ... are position 0
    fig /= fig.mean()
    np.testing.assert_allclose(seasonal_indices(Y, 2), np.tile(fig, 5), rtol=1e-12)
    # the last value (t = 9, position 1) deseasonalised, carried forward, reseasonalised
    level = 10 / fig[1]
    np.testing.assert_allclose(naive2(Y, 3, 2), [level * fig[0], 10.0, level * fig[0]], rtol=1e-12)
    np.testing.assert_array_equal(naive2(Y, 3, 1), [10, 10, 10])         # m = 1: naive
    np.testing.assert_array_equal(naive2(Y - 5, 2, 2), [5, 5])            # a value <= 0: naive


def test_msis_and_scaled_pinball_by_hand():
    from rnnkit.apps.forecast.metrics import msis, pinball
    history = [1.0, 3.0, 2.0, 4.0]                  # m = 1: scale (2 + 1 + 2) / 3 = 5/3
    actual, lower, upper = [1.0, 5.0, 3.0], [0.0, 2.0, 3.5], [2.0, 4.0, 4.5]
    # widths 2, 2, 1; a_2 = 5 above U = 4 by 1: + 40 * 1; a_3 = 3 below L = 3.5 by .5: + 40 * .5
    expect = (2 + (2 + 40) + (1 + 20)) / 3 / (5 / 3)
    assert msis(actual, lower, upper, history, 1) == pytest.approx(expect)
    # q = 0.1, Q = lower: d = a - Q = 1, 3, -0.5 -> 0.1, 0.3, 0.45; q = 0.9, Q = upper:
    # d = -1, 1, -1.5 -> 0.1, 0.9, 0.15
    lo, up = (0.1 + 0.3 + 0.45) / 3, (0.1 + 0.9 + 0.15) / 3
    got = pinball(actual, {0.1: lower, 0.9: upper}, history, 1)
    assert got == pytest.approx((lo + up) / 2 / (5 / 3))


def test_owa_over_a_collection_by_hand():
    from rnnkit.apps.forecast.metrics import naive2, owa
    # two series; per-series sMAPE and MASE, then collection means, then OWA (M4 section 2.3)
    h1, a1, f1 = [10.0, 12.0, 11.0, 13.0], [14.0, 15.0], [13.0, 15.0]
    h2, a2, f2 = list(Y), [7.0, 11.0], [6.0, 12.0]
    n1, n2 = naive2(h1, 2, 1), naive2(h2, 2, 2)  # series 1: m = 1, naive [13, 13]
    np.testing.assert_array_equal(n1, [13, 13])
    scale1 = (2 + 1 + 2) / 3                      # m = 1
    scale2 = np.mean(np.abs(Y[2:] - Y[:-2]))      # m = 2: every seasonal difference is 1
    assert scale2 == 1.0
    s_f = [200 / 2 * (1 / 27 + 0), 200 / 2 * (1 / 13 + 1 / 23)]
    m_f = [(0.5) / scale1, 1.0 / scale2]
    s_n = [200 / 2 * (1 / 27 + 2 / 28), smape(a2, n2)]
    m_n = [(1 + 2) / 2 / scale1, mae(a2, n2) / scale2]
    assert smape(a1, f1) == pytest.approx(s_f[0]) and smape(a2, f2) == pytest.approx(s_f[1])
    assert mase(a1, f1, h1, 1) == pytest.approx(m_f[0]) and mase(a2, f2, h2, 2) == pytest.approx(m_f[1])
    assert mase(a1, n1, h1, 1) == pytest.approx(m_n[0])
    expect = 0.5 * (np.mean(s_f) / np.mean(s_n) + np.mean(m_f) / np.mean(m_n))
    assert owa(np.mean(s_f), np.mean(m_f), np.mean(s_n), np.mean(m_n)) == pytest.approx(expect)
    assert owa(np.mean(s_n), np.mean(m_n), np.mean(s_n), np.mean(m_n)) == pytest.approx(1.0)
    assert owa(None, 1.0, 1.0, 1.0) is None


def test_classical_references_forecast_or_fall_back():
    from rnnkit.apps.forecast import classical
    if not classical.available():
        pytest.skip("neither statsforecast nor statsmodels is installed")
    t = np.arange(48.0)
    y = 100 + 2 * t + 10 * np.sin(2 * np.pi * t / 12)
    for method in classical.REFERENCES:
        f = classical.forecast(method, y, 6, 12)
        assert f.shape == (6,) and np.all(np.isfinite(f))
        assert np.mean(np.abs(f - (100 + 2 * np.arange(48, 54)))) < 15  # follows the trend
    np.testing.assert_array_equal(classical.forecast("ets", np.array([5.0]), 3, 1), [5, 5, 5])
