"""Accuracy metrics and the seasonal-naive baseline (models.simple) against values worked out by hand on tiny series."""

import numpy as np
import pytest

from forecast import metrics
from forecast.freq import season_length
from forecast.models.simple import seasonal_naive

Y = np.array([1.0, 2.0, 0.0, 4.0])
YHAT = np.array([2.0, 2.0, 1.0, 2.0])  # absolute errors 1, 0, 1, 2


def test_point_metrics_by_hand():
    assert metrics.mae(Y, YHAT) == pytest.approx(1.0)
    assert metrics.rmse(Y, YHAT) == pytest.approx(np.sqrt(6 / 4))
    assert metrics.wape(Y, YHAT) == pytest.approx(4 / 7)
    # 2|e| / (|y| + |yhat|): 2/3, 0, 2, 4/6
    assert metrics.smape(Y, YHAT) == pytest.approx((2 / 3 + 0 + 2 + 2 / 3) / 4)


def test_mape_skips_zero_actuals_and_says_how_many():
    value, skipped = metrics.mape(Y, YHAT)
    assert skipped == 1
    assert value == pytest.approx((1 / 1 + 0 / 2 + 2 / 4) / 3)
    assert metrics.mape([0.0, 0.0], [1.0, 2.0]) == (pytest.approx(np.nan, nan_ok=True), 2)


def test_coverage_counts_actuals_inside_the_interval():
    lower, upper = np.array([0, 2.5, 0, 3]), np.array([3, 3, 2, 5])
    assert metrics.coverage(Y, lower, upper) == pytest.approx(0.75)  # 2.0 is below 2.5
    assert np.isnan(metrics.coverage(Y, np.full(4, np.nan), np.full(4, np.nan)))


def test_missing_actuals_are_left_out():
    y = np.array([1.0, np.nan, 0.0, 4.0])
    assert metrics.mae(y, YHAT) == pytest.approx((1 + 1 + 2) / 3)
    assert metrics.score(y, YHAT)["n"] == 3


def test_naive_scale_is_the_in_sample_seasonal_naive_error():
    train = np.array([1.0, 3.0, 2.0, 4.0, 3.0, 5.0])
    assert metrics.naive_scale(train, 2) == pytest.approx(1.0)  # |2-1|, |4-3|, |3-2|, |5-4|
    assert metrics.naive_scale(train, 1) == pytest.approx(8 / 5)  # 2, 1, 2, 1, 2
    assert np.isnan(metrics.naive_scale(np.ones(10), 1))  # a flat history cannot scale errors
    assert np.isnan(metrics.naive_scale(train, 6))  # shorter than one season plus one


def test_mase_scales_absolute_errors_by_the_window_scale():
    out = metrics.score(Y, YHAT, scale=np.full(4, 2.0))
    assert out["mase"] == pytest.approx(0.5)  # mean(1, 0, 1, 2) / 2
    assert metrics.overall(Y, YHAT, None, None, [0.5, 1.5, np.nan])["mase"] == pytest.approx(1.0)


def test_seasonal_naive_repeats_the_last_season_and_fills_gaps():
    history = np.array([1.0, 3.0, 2.0, 4.0, 3.0, 5.0])
    np.testing.assert_array_equal(seasonal_naive(history, [1, 2, 3, 4], 2), [3, 5, 3, 5])
    np.testing.assert_array_equal(seasonal_naive(history, [1, 2], 1), [5, 5])
    np.testing.assert_array_equal(seasonal_naive(np.array([1.0, 7.0, np.nan]), [1, 3], 2), [7, 7])


@pytest.mark.parametrize("freq,m", [("D", 7), ("h", 24), ("W-SUN", 52), ("MS", 12), ("QS-JAN", 4), ("2D", 1),
                                    ("min", 1)])
def test_season_length_from_the_frequency(freq, m):
    assert season_length(freq) == m
