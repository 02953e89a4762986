"""Fallback forecasts: each kind against hand-computed values, and a failing series served by --fallback."""

import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from forecast.cli import app
from forecast.config import ModelOptions
from forecast.freq import season_length
from forecast.model import serve_fallback
from forecast.models.simple import FallbackImpossible, simple_forecast
from forecast.types import SeriesData, SeriesResult

Y = np.arange(1.0, 11.0)  # 1, 2, ..., 10


@pytest.mark.parametrize("kind,season,expected", [
    ("naive", 1, [10, 10, 10, 10, 10, 10]),
    ("mean", 1, [5.5] * 6),
    ("zero", 1, [0] * 6),
    # the last full season is 7, 8, 9, 10 and repeats
    ("seasonal-naive", 4, [7, 8, 9, 10, 7, 8]),
    # history (10) shorter than one season (12): naive
    ("seasonal-naive", 12, [10] * 6),
])
def test_each_kind_gives_the_hand_computed_forecast(kind, season, expected):
    yhat, _, _ = simple_forecast(kind, Y, horizon=6, season=season)
    np.testing.assert_allclose(yhat, expected)


def test_interval_is_the_band_of_the_methods_own_errors():
    y = np.array([1.0, 2.0, 4.0, 7.0])  # one-step changes 1, 2, 3: quartiles 1.5 and 2.5
    yhat, lower, upper = simple_forecast("naive", y, horizon=2, interval_width=0.5)
    np.testing.assert_allclose(yhat, [7, 7])
    # every change was upward: the band's lower end is stretched down to the forecast itself, not 7 + 1.5
    np.testing.assert_allclose(lower, [7, 7])
    np.testing.assert_allclose(upper, [9.5, 9.5])
    _, lower, upper = simple_forecast("mean", y, horizon=1, interval_width=0.5)  # deviations -2.5 -1.5 .5 3.5
    np.testing.assert_allclose([lower[0], upper[0]], [3.5 - 1.75, 3.5 + 1.25])
    _, lower, upper = simple_forecast("naive", np.array([4.0]), horizon=2)  # no error to learn from
    assert np.isnan(lower).all() and np.isnan(upper).all()


def test_missing_values_are_skipped_and_all_missing_allows_only_zero():
    # seasons of 3: (1, 2, 3) then (nan, 5, nan); a gap in the last season takes the season before's value
    y = np.array([1.0, 2.0, 3.0, np.nan, 5.0, np.nan])
    yhat, _, _ = simple_forecast("seasonal-naive", y, horizon=4, season=3)
    np.testing.assert_allclose(yhat, [1, 5, 3, 1])
    np.testing.assert_allclose(simple_forecast("naive", y, horizon=1)[0], [5])
    np.testing.assert_allclose(simple_forecast("mean", np.array([1.0, np.inf, 3.0]), horizon=1)[0], [2])
    empty = np.full(4, np.nan)
    for kind in ("naive", "seasonal-naive", "mean"):
        with pytest.raises(FallbackImpossible, match="all values are missing"):
            simple_forecast(kind, empty, horizon=2, season=2)
    np.testing.assert_allclose(simple_forecast("zero", empty, horizon=2)[0], [0, 0])


@pytest.mark.parametrize("freq,season", [("D", 7), ("W-SUN", 52), ("W", 52), ("MS", 12), ("ME", 12), ("h", 24),
                                         ("QS-JAN", 4), ("2D", 1), ("min", 1), (None, 1),
                                         ("7D", 52)])  # a weekly series with a missing week is inferred as 7D
def test_season_length_follows_the_frequency(freq, season):
    assert season_length(freq) == season


def test_seasonal_naive_counts_seasons_in_calendar_time_across_a_gap():
    ds = pd.date_range("2024-01-01", periods=21, freq="D")  # three weeks; Monday..Sunday = 1..7 each week
    y = np.tile(np.arange(1.0, 8.0), 3)
    keep = np.ones(21, bool)
    keep[[9, 10]] = False  # two days missing in week two: positions alone would shift the weekdays
    series = SeriesData(key=("A",), ds=ds[keep].to_numpy(), y=y[keep])
    failed = SeriesResult(key=("A",), status="failed", n_obs=19, stage="fit", error="RuntimeError: boom")
    result = serve_fallback(series, ModelOptions(horizon=7), "seasonal-naive", failed)
    assert result.status == "fallback" and result.model == "fallback:seasonal-naive"
    assert (result.stage, result.error) == ("fit", "RuntimeError: boom")  # why Prophet did not serve it
    np.testing.assert_allclose(result.yhat, np.arange(1.0, 8.0))
    assert pd.Timestamp(result.ds[0]) == pd.Timestamp("2024-01-22")


def test_failing_series_get_the_fallback_and_stay_in_errors_csv(tmp_path):
    ds = pd.date_range("2024-01-01", periods=60, freq="D")
    frame = pd.concat([
        pd.DataFrame({"unique_id": "ok", "ds": ds, "y": np.sin(np.arange(60.0)) + 10}),
        pd.DataFrame({"unique_id": "one", "ds": ds[-1:], "y": [4.0]}),  # Prophet needs 2 values
        pd.DataFrame({"unique_id": "blank", "ds": ds[:5], "y": np.nan}),  # nothing for a naive forecast
    ])
    path = tmp_path / "in.csv"
    frame.to_csv(path, index=False)
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["run", str(path), "--horizon", "3", "--n-jobs", "1", "--freq", "D",
                                      "--fallback", "naive", "--out", str(out), "--format", "csv", "-q"])
    assert result.exit_code == 3, result.output  # "blank" has no forecast at all
    forecasts = pd.read_csv(out / "forecasts.csv")
    assert forecasts.groupby("unique_id")["model"].first().to_dict() == {"ok": "prophet", "one": "fallback:naive"}
    assert forecasts.loc[forecasts["unique_id"] == "one", "yhat"].tolist() == [4.0, 4.0, 4.0]
    # "one" is below --min-obs (30): sent to the fallback before any fit, so it did not fail; timings.csv says why
    errors = pd.read_csv(out / "errors.csv").set_index("unique_id")
    assert list(errors.index) == ["blank"]
    assert errors.loc["blank", "reason"] == ("all 5 values are missing; fallback naive impossible: "
                                             "all values are missing")
    timings = pd.read_csv(out / "timings.csv").set_index("unique_id")
    assert timings["status"].to_dict() == {"blank": "failed", "ok": "ok", "one": "fallback"}
    assert timings.loc["one", "model"] == "fallback:naive"
    assert timings.loc["one", "error"] == "new: 1 value(s) (--min-obs 30)"
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["series_ok"], summary["series_fallback"], summary["series_failed"]) == (1, 1, 1)
    assert (summary["series_fallback_after_failure"], summary["series_below_min_obs"]) == (0, 1)
    assert "series fallback      1" in result.stdout
