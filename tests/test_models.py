"""Models behind one interface: the registry, the simple models as models, and the backtest scoring any model
against any other, with the seasonal-naive baseline's numbers those of the backtest before models existed."""

import sys
import textwrap

import numpy as np
import pandas as pd
import pytest

from forecast import metrics
from forecast.backtest import backtest_frame, backtest_series, metrics_frame
from forecast.config import BacktestConfig, ModelOptions
from forecast.errors import ConfigError
from forecast.models import fallback_names, get_model, model_names, register_model
from forecast.types import Forecast, SeriesData


def _series(y, start="2024-01-01", freq="D", key=("A",)) -> SeriesData:
    ds = pd.date_range(start, periods=len(y), freq=freq).to_numpy().astype("datetime64[ns]")
    return SeriesData(key=key, ds=ds, y=np.asarray(y, dtype=float))


def _carried_seasonal_naive(y_train, steps_ahead, m: int) -> np.ndarray:
    """The backtest's baseline before models existed (metrics.seasonal_naive), kept here as the reference."""
    y = np.asarray(y_train, dtype=float).copy()
    idx = np.where(~np.isnan(y), np.arange(len(y)), 0)
    np.maximum.accumulate(idx, out=idx)
    y = y[idx]
    if np.isnan(y[0]) and (~np.isnan(y)).any():
        y[np.isnan(y)] = y[~np.isnan(y)][0]
    h = np.asarray(steps_ahead, dtype=int)
    source = len(y) - 1 + h - (-(-h // m)) * m
    return y[np.clip(source, 0, len(y) - 1)]


def test_the_registry_names_every_model_and_the_fallbacks():
    intermittent = ("croston-sba", "tsb", "adida")
    assert model_names() == ("prophet", "naive", "seasonal-naive", "mean", "zero", *intermittent)
    assert fallback_names() == ("naive", "seasonal-naive", "mean", "zero", *intermittent)
    assert all(get_model(name).name == name for name in model_names())
    with pytest.raises(ConfigError, match="unknown model 'croston'; expected one of prophet, naive"):
        get_model("croston")


def test_a_new_model_is_one_file_and_one_registration_line(tmp_path, monkeypatch):
    (tmp_path / "last_week.py").write_text(textwrap.dedent('''
        import numpy as np
        from forecast.types import Forecast

        class LastWeek:
            name = "last-week"

            def check(self, series, opts):
                pass

            def forecast(self, series, future, opts, *, season_length=None, source="--future"):
                yhat = np.full(len(future), float(np.nanmean(series.y[-7:])))
                return Forecast(ds=future, yhat=yhat, yhat_lower=yhat, yhat_upper=yhat, model=self.name)
    '''))
    monkeypatch.syspath_prepend(str(tmp_path))
    from forecast import models

    monkeypatch.setattr(models, "_REGISTRY", dict(models._REGISTRY))
    monkeypatch.setattr(models, "_FALLBACKS", list(models._FALLBACKS))
    register_model("last-week", "last_week:LastWeek", fallback=True)
    try:
        assert "last-week" in model_names() and fallback_names()[-1] == "last-week"
        series = _series(np.arange(28.0))
        result = backtest_series(series, ModelOptions(horizon=7), windows=2, step=7, models=("last-week", "naive"))
        assert result.status == "ok", result.error
        np.testing.assert_allclose(result.yhat, [10.0] * 7 + [17.0] * 7)  # the mean of each history's last week
        BacktestConfig(models=("last-week", "naive"))  # a configuration may name it
    finally:
        sys.modules.pop("last_week", None)


def test_the_simple_models_forecast_at_the_dates_they_are_given():
    series = _series(np.tile(np.arange(1.0, 8.0), 3))  # three weeks, Monday..Sunday = 1..7
    future = pd.to_datetime(["2024-01-22", "2024-01-24", "2024-02-04"]).to_numpy().astype("datetime64[ns]")
    fc = get_model("seasonal-naive").forecast(series, future, ModelOptions())
    assert isinstance(fc, Forecast) and (fc.model, fc.note, fc.engine) == ("seasonal-naive", "", "")
    np.testing.assert_array_equal(fc.ds, future)
    np.testing.assert_allclose(fc.yhat, [1, 3, 7])  # a Monday, a Wednesday, a Sunday
    assert (fc.yhat_lower <= fc.yhat).all() and (fc.yhat <= fc.yhat_upper).all()
    short = get_model("seasonal-naive").forecast(_series([3.0, 4.0]), future[:1], ModelOptions())
    assert short.model == "naive" and "naive used" in short.note


@pytest.mark.parametrize("m", [1, 2, 7, 12])
def test_the_seasonal_naive_model_on_the_series_grid_is_the_backtests_baseline(m):
    rng = np.random.default_rng(m)
    for n in (m + 1, 3 * m + 2, 50):
        y = rng.normal(10, 3, n)
        steps = np.array([1, 2, 3, m, m + 1, 2 * m + 3])  # test rows may skip grid steps
        series = _series(y)
        future = series.ds[-1] + steps * np.timedelta64(1, "D")
        fc = get_model("seasonal-naive").forecast(series, future, ModelOptions(), season_length=m)
        np.testing.assert_array_equal(fc.yhat, _carried_seasonal_naive(y, steps, m))


def test_the_default_backtest_scores_prophet_against_the_baseline_of_before():
    rng = np.random.default_rng(0)
    t = np.arange(70.0)
    series = _series(20 + 0.1 * t + 3 * np.sin(2 * np.pi * t / 7) + rng.normal(0, 1, 70))
    opts = ModelOptions(horizon=7, seed=1, uncertainty_samples=50)
    result = backtest_series(series, opts, windows=2, step=7)
    assert (result.status, result.model, result.engine) == ("ok", "prophet", "fast")
    expected = np.concatenate([_carried_seasonal_naive(series.y[:end], np.arange(1, 8), 7) for end in (56, 63)])
    np.testing.assert_array_equal(result.points["seasonal-naive"], expected)
    rows = backtest_frame([result], ["unique_id"])
    assert list(rows.columns) == ["unique_id", "window", "cutoff", "ds", "y", "yhat", "yhat_lower", "yhat_upper",
                                  "yhat_naive"]
    scores, overall = metrics_frame([result], ["unique_id"])
    assert list(overall) == ["prophet", "seasonal_naive"]
    assert scores["engine"].tolist() == ["fast", ""]
    baseline = scores.set_index("model").loc["seasonal_naive"]
    assert baseline["mae"] == pytest.approx(metrics.mae(result.y, expected))
    # the baseline is compared on its point forecasts: no coverage, as before
    assert np.isnan(baseline["coverage"]) and np.isnan(overall["seasonal_naive"]["coverage"])


def test_the_baseline_takes_a_missing_day_from_the_same_weekday_not_the_day_before():
    # the backtest's baseline used to carry the last value forward over a missing day, so a missing Monday made
    # next Monday's "seasonal" forecast Sunday's value; the seasonal-naive model, which the fallback always was,
    # takes the Monday of the week before
    y = np.tile(np.arange(1.0, 8.0), 4)
    y[21] = np.nan  # the last week's Monday
    series = _series(y)
    future = series.ds[-1] + np.arange(1, 8) * np.timedelta64(1, "D")
    fc = get_model("seasonal-naive").forecast(series, future, ModelOptions(), season_length=7)
    np.testing.assert_allclose(fc.yhat, np.arange(1.0, 8.0))
    assert _carried_seasonal_naive(y, np.arange(1, 8), 7)[0] == 7.0  # what it was


def test_any_model_is_scored_against_any_other_naive_against_mean():
    y = np.array([1.0, 2.0, 4.0, 7.0, 8.0, 6.0, 9.0, 12.0])
    series = _series(y)
    result = backtest_series(series, ModelOptions(horizon=2, interval_width=0.5), windows=2, step=2,
                             models=("naive", "mean"))
    assert (result.status, result.model, result.engine) == ("ok", "naive", "")
    # window 0: history 1 2 4 7, actuals 8 6; window 1: history 1 2 4 7 8 6, actuals 9 12
    np.testing.assert_allclose(result.yhat, [7.0, 7.0, 6.0, 6.0])
    np.testing.assert_allclose(result.points["mean"], [14 / 4] * 2 + [28 / 6] * 2)
    rows = backtest_frame([result], ["unique_id"], ("naive", "mean"))
    assert list(rows.columns)[-4:] == ["yhat", "yhat_lower", "yhat_upper", "yhat_mean"]
    scores, overall = metrics_frame([result], ["unique_id"], ("naive", "mean"))
    by_model = scores.set_index("model")
    assert list(by_model.index) == ["naive", "mean"]
    actual = np.array([8.0, 6.0, 9.0, 12.0])
    assert by_model.loc["naive", "mae"] == pytest.approx(np.mean(np.abs(actual - [7, 7, 6, 6])))
    assert by_model.loc["mean", "mae"] == pytest.approx(np.mean(np.abs(actual - [3.5, 3.5, 28 / 6, 28 / 6])))
    assert 0 <= overall["naive"]["coverage"] <= 1 and np.isnan(overall["mean"]["coverage"])


def test_backtest_models_are_checked_against_the_registry():
    assert BacktestConfig().models == ("prophet", "seasonal-naive")
    assert BacktestConfig(models=("naive", "mean")).to_dict()["models"] == ["naive", "mean"]
    with pytest.raises(ConfigError, match="--model must be one of prophet, naive, seasonal-naive, mean, zero"):
        BacktestConfig(models=("prophet", "croston"))
    with pytest.raises(ConfigError, match="more than once"):
        BacktestConfig(models=("naive", "naive"))
    with pytest.raises(ConfigError, match="at least one"):
        BacktestConfig(models=())
