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
