"""One Prophet fit per series, with real Prophet: parity with stock Prophet, series problems, seeds."""

import os
import warnings

import numpy as np
import pandas as pd
import pytest
from conftest import make_table

from forecast.config import ModelOptions
from forecast.freq import horizon_dates, infer_freq
from forecast.model import fit_series
from forecast.models.prophet import quiet_logs, series_seed
from forecast.types import SeriesData

quiet_logs()


def series_of(frame: pd.DataFrame, key=("S0",)) -> SeriesData:
    return SeriesData(key=key, ds=frame["ds"].to_numpy(dtype="datetime64[ns]"), y=frame["y"].to_numpy(dtype=float))


@pytest.mark.parametrize("opts", [
    ModelOptions(horizon=14, engine="prophet"),
    ModelOptions(horizon=7, seasonality_mode="multiplicative", changepoint_prior_scale=0.3, engine="prophet"),
    ModelOptions(horizon=10, growth="flat", weekly_seasonality="on", yearly_seasonality="off", holidays="US",
                 engine="prophet"),
])
def test_engine_prophet_yhat_equals_stock_prophet(opts):
    from prophet import Prophet

    frame = make_table(n_series=1, days=150, seed=3)[["ds", "y"]]
    result = fit_series(series_of(frame), opts)
    assert result.status == "ok", result.error
    toggle = {"auto": "auto", "on": True, "off": False}
    m = Prophet(growth=opts.growth, seasonality_mode=opts.seasonality_mode,
                changepoint_prior_scale=opts.changepoint_prior_scale,
                yearly_seasonality=toggle[opts.yearly_seasonality], weekly_seasonality=toggle[opts.weekly_seasonality])
    if opts.holidays:
        m.add_country_holidays(country_name=opts.holidays)
    m.fit(frame)
    stock = m.predict(m.make_future_dataframe(periods=opts.horizon, include_history=False))
    assert (result.ds == stock["ds"].to_numpy()).all()
    np.testing.assert_allclose(result.yhat, stock["yhat"].to_numpy(), rtol=1e-6)


def test_forecast_starts_after_last_timestamp_at_the_series_frequency():
    ds = pd.date_range("2020-01-06", periods=60, freq="W-MON")
    frame = pd.DataFrame({"ds": ds, "y": np.arange(60.0) + np.sin(np.arange(60))})
    result = fit_series(series_of(frame), ModelOptions(horizon=4))
    assert result.status == "ok", result.error
    assert list(pd.DatetimeIndex(result.ds)) == list(pd.date_range(ds[-1], periods=5, freq="W-MON")[1:])
    assert np.isfinite(result.yhat).all() and (result.yhat_lower <= result.yhat_upper).all()


@pytest.mark.parametrize("y,stage,reason", [
    ([np.nan] * 5, "validate", "all 5 values are missing"),
    ([1.0] + [np.nan] * 4, "validate", "fewer than 2 non-missing values"),
    ([1.0, 2.0, np.inf, 3.0, 4.0], "validate", "1 infinite value"),
])
def test_series_problems_are_results_not_exceptions(y, stage, reason):
    frame = pd.DataFrame({"ds": pd.date_range("2024-01-01", periods=5), "y": y})
    result = fit_series(series_of(frame), ModelOptions(horizon=3))
    assert result.status == "failed"
    assert result.stage == stage
    assert reason in result.error


def test_irregular_timestamps_fail_with_a_hint_to_pass_freq():
    ds = pd.to_datetime(["2024-01-01", "2024-01-03", "2024-01-10", "2024-02-01", "2024-02-02", "2024-03-15"])
    frame = pd.DataFrame({"ds": ds, "y": np.arange(6.0)})
    result = fit_series(series_of(frame), ModelOptions(horizon=3))
    assert (result.status, result.stage) == ("failed", "frequency")
    assert "pass --freq" in result.error
    assert fit_series(series_of(frame), ModelOptions(horizon=3, freq="D")).status == "ok"


def test_infer_freq_tolerates_gaps():
    ds = pd.date_range("2024-01-01", periods=40, freq="D").delete([5, 6, 20]).to_numpy()
    assert infer_freq(ds) == "D"
    assert infer_freq(pd.date_range("2024-01-01", periods=12, freq="MS").to_numpy()) == "MS"


@pytest.mark.parametrize("freq", ["D", "h", "W-SUN", "7D", "2D", "MS", "QS-OCT", "15min"])
def test_infer_freq_of_a_regular_index_is_pandas_own(freq):
    ds = pd.date_range("2023-10-01", periods=30, freq=freq)
    with warnings.catch_warnings():  # pandas announces an offset instead of a string; both are compared
        warnings.simplefilter("ignore")
        theirs = pd.infer_freq(ds)
    assert infer_freq(ds.to_numpy()) == getattr(theirs, "freqstr", theirs)


@pytest.mark.parametrize("freq", ["D", "3D", "h", "2h", "15min", "s", "W-SUN", "MS", "QS-OCT", "B"])
@pytest.mark.parametrize("last", ["2024-02-27 13:17:05", "2023-12-31"])
def test_forecast_dates_are_prophets_future_dates(freq, last):
    # Prophet's make_future_dataframe: date_range from the last date, the points after it, the first H of them;
    # fixed steps are added in numpy (so workers need no pandas) and must give the same dates
    grid = pd.date_range(pd.Timestamp(last), periods=41, freq=freq)
    theirs = grid[grid > pd.Timestamp(last)][:40].to_numpy(dtype="datetime64[ns]")
    np.testing.assert_array_equal(horizon_dates(np.datetime64(last, "ns"), freq, 40), theirs)


@pytest.mark.parametrize("freq,first", [("W-SUN", "2024-03-03"), ("MS", "2024-03-01"), ("D", "2024-03-01")])
def test_first_forecast_is_the_grid_point_right_after_the_last_date(freq, first):
    # daily data ending on Thursday 29 February: the next Sunday and the next month start come first
    dates = horizon_dates(np.datetime64("2024-02-29", "ns"), freq, 3)
    assert dates[0] == np.datetime64(first, "ns") and len(dates) == 3


@pytest.mark.parametrize("freq,expected", [("MS", ["2023-10-01", "2023-11-01", "2023-12-01"]),
                                            ("ME", ["2023-10-31", "2023-11-30", "2023-12-31"]),
                                            ("QS-JAN", ["2023-10-01", "2024-01-01", "2024-04-01"])])
def test_a_monthly_or_quarterly_series_with_a_gap_forecasts_on_its_calendar_grid(freq, expected):
    # a missing month makes 31 days the most common step; the next dates are still the next months, not +31 days
    ds = pd.date_range(end="2023-09-30", periods=40, freq=freq).delete(10)
    frame = pd.DataFrame({"ds": ds, "y": 50 + np.sin(np.arange(len(ds)))})
    result = fit_series(series_of(frame), ModelOptions(horizon=3, engine="fast"))
    assert result.status == "ok", result.error
    assert [str(d)[:10] for d in result.ds.astype("datetime64[D]")] == expected


@pytest.mark.parametrize("freq", ["D", "MS"])
def test_a_forecast_past_2262_fails_that_series_with_the_reason(freq):
    ds = pd.date_range("2262-01-01", periods=60, freq=freq if freq == "D" else "D")
    frame = pd.DataFrame({"ds": ds, "y": np.arange(60.0)})
    result = fit_series(series_of(frame), ModelOptions(horizon=400, freq=freq, engine="fast"))
    assert (result.status, result.stage) == ("failed", "future")
    assert "pass 2262-04-11, the last date pandas can hold; use a shorter --horizon" in result.error


def test_seed_makes_intervals_reproducible_and_depends_on_the_key():
    frame = make_table(n_series=1, days=100, seed=1)[["ds", "y"]]
    opts = ModelOptions(horizon=5, seed=42, uncertainty_samples=200)
    a = fit_series(series_of(frame, ("A",)), opts)
    b = fit_series(series_of(frame, ("A",)), opts)
    c = fit_series(series_of(frame, ("B",)), opts)
    np.testing.assert_array_equal(a.yhat_lower, b.yhat_lower)
    assert not np.array_equal(a.yhat_lower, c.yhat_lower)
    assert series_seed(42, ("A",)) != series_seed(43, ("A",))


def test_no_intervals_when_uncertainty_samples_is_zero_and_clipping_at_zero():
    ds = pd.date_range("2024-01-01", periods=60)
    noise = np.random.default_rng(0).normal(0, 0.5, 60)
    frame = pd.DataFrame({"ds": ds, "y": np.linspace(30, 0.5, 60) + noise})  # falling toward zero
    opts = ModelOptions(horizon=30, uncertainty_samples=0, non_negative=True)
    result = fit_series(series_of(frame), opts)
    assert result.status == "ok"
    assert np.isnan(result.yhat_lower).all()
    assert (result.yhat >= 0).all() and (result.yhat == 0).any()


@pytest.mark.slow
def test_worker_temp_dir_is_emptied_after_every_fit(tmp_path, monkeypatch):
    import subprocess
    import sys

    # a fresh interpreter, as a worker is: cmdstanpy must make its temp dir inside the worker's own
    code = f"""
import os, sys
sys.path.insert(0, {os.path.dirname(__file__)!r})
from conftest import make_table
from test_model import series_of
from forecast.config import ModelOptions
from forecast.model import fit_series
from forecast.models.prophet import init_worker, _cmdstan_tmp
init_worker({str(tmp_path)!r})
assert _cmdstan_tmp().startswith({str(tmp_path)!r}), _cmdstan_tmp()
for seed in range(3):
    r = fit_series(series_of(make_table(n_series=1, days=60, seed=seed)), ModelOptions(horizon=3))
    assert r.status == "ok", r.error
    assert os.listdir(_cmdstan_tmp()) == [], os.listdir(_cmdstan_tmp())
print("clean")
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "clean", out.stderr
    assert out.stderr == ""  # nothing from cmdstanpy or Prophet leaks


def test_an_engine_worker_fits_without_importing_pandas():
    import subprocess
    import sys

    # a worker imports forecast.backends and forecast.model; for the engines it must not need pandas (or pyarrow):
    # importing them was most of a worker's start-up, which every run with --n-jobs > 1 waits for
    code = """
import sys
import numpy as np
import forecast.backends
from forecast.config import ModelOptions
from forecast.model import fit_series
from forecast.models.prophet import init_worker
from forecast.types import SeriesData
init_worker(None, False)
ds = np.arange(np.datetime64("2023-01-01"), np.datetime64("2024-07-01")).astype("datetime64[ns]")
y = 50 + 5 * np.sin(np.arange(len(ds)) * 2 * np.pi / 7) + np.random.default_rng(0).normal(0, 1, len(ds))
for engine in ("fast", "stan"):
    r = fit_series(SeriesData(key=("a",), ds=ds, y=y), ModelOptions(horizon=14, engine=engine))
    assert r.status == "ok" and r.engine == engine and len(r.yhat) == 14, (r.error, r.engine)
print(sorted(m for m in ("pandas", "pyarrow") if m in sys.modules))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
