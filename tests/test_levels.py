"""--level and --quantile: several interval levels and quantile columns in one run, from the same simulated paths
(or, for the simple models, the same in-sample errors) as the one --interval-width interval."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import make_table
from fakes import StopAfter

import forecast
from forecast.backtest import run_backtest
from forecast.config import BacktestConfig, ForecastConfig, ModelOptions
from forecast.errors import ConfigError
from forecast.jobfile import read_job_file
from forecast.report import build_report
from forecast.runner import run_forecast

ROOT = Path(__file__).resolve().parent.parent
BANDS = ["yhat_lower_80", "yhat_upper_80", "yhat_lower_95", "yhat_upper_95"]
QUANTILES = ["yhat_q10", "yhat_q50", "yhat_q90"]
KEY = ["unique_id", "ds"]


@pytest.fixture(scope="module")
def table() -> pd.DataFrame:
    return make_table(n_series=3, days=100)


def _run(table: pd.DataFrame, **options) -> pd.DataFrame:
    defaults = dict(horizon=10, seed=7, n_jobs=1, uncertainty_samples=200)
    return forecast.forecast(table, **{**defaults, **options}).sort_values(KEY).reset_index(drop=True)


def _assert_nested(fc: pd.DataFrame) -> None:
    """95 contains 80 on every row, each band holds its lower bound below its upper, quantiles rise with q."""
    assert fc[BANDS].notna().all().all()
    assert (fc["yhat_lower_95"] <= fc["yhat_lower_80"]).all()
    assert (fc["yhat_lower_80"] <= fc["yhat_upper_80"]).all()
    assert (fc["yhat_upper_80"] <= fc["yhat_upper_95"]).all()
    assert (fc["yhat_lower_95"] < fc["yhat_upper_95"]).all()  # a band of real width, not a degenerate one


def _assert_monotone(fc: pd.DataFrame) -> None:
    assert fc[QUANTILES].notna().all().all()
    assert (fc["yhat_q10"] <= fc["yhat_q50"]).all() and (fc["yhat_q50"] <= fc["yhat_q90"]).all()
    assert (fc["yhat_q10"] < fc["yhat_q90"]).all()


@pytest.mark.parametrize("engine", ["fast", "stan"])
def test_levels_are_nested_and_the_80_band_is_the_interval_width_0_8_run(table, engine):
    # the run's own interval at 0.5, so the 80 band cannot be the main interval under another name
    both = _run(table, engine=engine, interval_width=0.5, levels=[80, 95], quantiles=[0.1, 0.5, 0.9])
    at_80 = _run(table, engine=engine, interval_width=0.8)
    at_50 = _run(table, engine=engine, interval_width=0.5)
    assert list(both.columns[:12]) == KEY + ["yhat", "yhat_lower", "yhat_upper"] + BANDS + QUANTILES
    _assert_nested(both)
    _assert_monotone(both)
    np.testing.assert_array_equal(both["yhat_lower_80"], at_80["yhat_lower"])
    np.testing.assert_array_equal(both["yhat_upper_80"], at_80["yhat_upper"])
    # the same draws: the main interval is the run without bands, to the last bit (no second simulation)
    for column in ("yhat", "yhat_lower", "yhat_upper"):
        np.testing.assert_array_equal(both[column], at_50[column])
    # the quantiles are percentiles of those same paths: q10 and q90 are the 80 band's bounds
    np.testing.assert_allclose(both["yhat_q10"], both["yhat_lower_80"], rtol=1e-12)
    np.testing.assert_allclose(both["yhat_q90"], both["yhat_upper_80"], rtol=1e-12)
    assert not {"yhat_lower_80", "yhat_q50"} & set(at_80.columns)  # no bands asked for: today's columns exactly


@pytest.mark.slow
def test_stock_prophet_takes_its_levels_from_the_paths_of_its_one_prediction(table):
    small = table[table["unique_id"] == "S0"]
    both = _run(small, engine="prophet", interval_width=0.5, levels=[80, 95], quantiles=[0.1, 0.5, 0.9])
    at_80 = _run(small, engine="prophet", interval_width=0.8)
    at_50 = _run(small, engine="prophet", interval_width=0.5)
    _assert_nested(both)
    _assert_monotone(both)
    np.testing.assert_array_equal(both["yhat_lower_80"], at_80["yhat_lower"])
    np.testing.assert_array_equal(both["yhat_upper_80"], at_80["yhat_upper"])
    for column in ("yhat_lower", "yhat_upper"):
        np.testing.assert_array_equal(both[column], at_50[column])


def test_a_simple_model_gives_a_band_per_level_from_the_same_errors(table):
    # series shorter than --min-obs are served by the fallback (seasonal-naive here): its bands, not Prophet's
    short = table.groupby("unique_id").head(40)
    both = _run(short, interval_width=0.5, levels=[80, 95], quantiles=[0.1, 0.5, 0.9], min_obs=50,
                fallback="seasonal-naive")
    at_80 = _run(short, interval_width=0.8, min_obs=50, fallback="seasonal-naive")
    assert set(both["model"]) == {"fallback:seasonal-naive"}
    _assert_nested(both)
    _assert_monotone(both)
    np.testing.assert_array_equal(both["yhat_lower_80"], at_80["yhat_lower"])
    np.testing.assert_array_equal(both["yhat_upper_80"], at_80["yhat_upper"])
    # every band holds the forecast, as the simple models' one interval does
    assert (both["yhat_lower_95"] <= both["yhat"]).all() and (both["yhat"] <= both["yhat_upper_95"]).all()


def test_non_negative_clips_every_band_at_zero():
    # a series near 0: its lower bounds would go below it
    rng = np.random.default_rng(3)
    ds = pd.date_range("2024-01-01", periods=60, freq="D")
    frame = pd.DataFrame({"unique_id": "low", "ds": ds, "y": np.abs(rng.normal(0.5, 1.0, 60))})
    raw = _run(frame, levels=[95], quantiles=[0.1])
    clipped = _run(frame, levels=[95], quantiles=[0.1], non_negative=True)
    assert (raw["yhat_lower_95"] < 0).any()
    assert (clipped[["yhat_lower_95", "yhat_upper_95", "yhat_q10"]] >= 0).all().all()
    np.testing.assert_array_equal(clipped["yhat_lower_95"], raw["yhat_lower_95"].clip(lower=0))


@pytest.mark.slow
def test_plot_shades_each_level(tmp_path, table):
    from forecast.outputs import read_run_dir
    from forecast.plot import _levels, plot_run

    path = tmp_path / "table.csv"
    table[table["unique_id"] == "S0"].to_csv(path, index=False)
    model = ModelOptions(horizon=5, seed=2, uncertainty_samples=100, levels=(95, 80))
    assert run_forecast(path, ForecastConfig(model=model, n_jobs=1, out_dir=tmp_path / "out")).exit_code == 0
    assert _levels(read_run_dir(tmp_path / "out").forecasts) == ["95", "80"]  # the bands it shades, as given
    (png,) = plot_run(tmp_path / "out")
    assert png.read_bytes().startswith(b"\x89PNG")


def test_without_uncertainty_samples_the_band_columns_are_there_and_empty(table):
    fc = _run(table, levels=[80], quantiles=[0.9], uncertainty_samples=0)
    assert fc[["yhat_lower", "yhat_lower_80", "yhat_upper_80", "yhat_q90"]].isna().all().all()
    assert fc["yhat"].notna().all()


def test_resume_keeps_the_bands_of_the_series_finished_before_the_interrupt(tmp_path, table):
    path = tmp_path / "table.csv"
    table.to_csv(path, index=False)
    model = ModelOptions(horizon=5, seed=2, uncertainty_samples=100, levels=(80, 95), quantiles=(0.5,))

    def config(out, **run):
        return ForecastConfig(model=model, n_jobs=1, chunks_per_job=3, out_dir=out, output_format="csv", **run)

    whole = run_forecast(path, config(tmp_path / "whole"))
    stopped = run_forecast(path, config(tmp_path / "out"), reporter=StopAfter(1))
    assert whole.exit_code == 0 and stopped.summary["status"] == "interrupted"
    resumed = run_forecast(path, config(tmp_path / "out", resume=True))
    assert resumed.summary["series_resumed"] >= 1
    first, again = (pd.read_csv(d / "forecasts.csv").drop(columns="run_id") for d in (tmp_path / "whole",
                                                                                       tmp_path / "out"))
    assert {*BANDS, "yhat_q50"} <= set(again.columns)
    pd.testing.assert_frame_equal(first, again)

    with pytest.raises(ConfigError, match="setting model.levels differs"):  # another level is another run
        other = ModelOptions(horizon=5, seed=2, uncertainty_samples=100, levels=(90,), quantiles=(0.5,))
        stopped = run_forecast(path, ForecastConfig(model=other, n_jobs=1, out_dir=tmp_path / "part"),
                               reporter=StopAfter(1))
        run_forecast(path, ForecastConfig(model=model, n_jobs=1, out_dir=tmp_path / "part", resume=True))


def test_backtest_scores_each_levels_coverage_and_each_quantiles_share_below(tmp_path, table):
    model = ModelOptions(horizon=7, seed=1, uncertainty_samples=100, levels=(50, 95), quantiles=(0.9,))
    result = run_backtest(table, BacktestConfig(run=ForecastConfig(model=model, n_jobs=1, out_dir=tmp_path),
                                                windows=2))
    assert result.exit_code == 0
    rows = pd.read_parquet(tmp_path / "backtest.parquet")
    scores = pd.read_csv(tmp_path / "metrics.csv")
    assert {"yhat_lower_50", "yhat_upper_95", "yhat_q90"} <= set(rows.columns)
    tested = scores[scores["model"] == "prophet"].set_index("unique_id")
    for key, part in rows.groupby("unique_id"):
        for level in (50, 95):
            inside = (part["y"] >= part[f"yhat_lower_{level}"]) & (part["y"] <= part[f"yhat_upper_{level}"])
            assert tested.loc[key, f"coverage_{level}"] == pytest.approx(inside.mean())
    assert scores[scores["model"] == "seasonal_naive"][["coverage_50", "coverage_95"]].isna().all().all()
    for key, part in rows.groupby("unique_id"):  # the 0.9 quantile's calibration: the share at or below it
        assert tested.loc[key, "below_q90"] == pytest.approx((part["y"] <= part["yhat_q90"]).mean())
    overall = result.summary["overall"]["prophet"]
    inside_95 = (rows["y"] >= rows["yhat_lower_95"]) & (rows["y"] <= rows["yhat_upper_95"])
    assert overall["coverage_95"] == pytest.approx(inside_95.mean())
    assert overall["coverage_50"] <= overall["coverage_95"]
    page = build_report(tmp_path, plots=0).read_text()  # the report's accuracy table has them too
    assert all(f"<th>{title}</th>" in page for title in ("coverage 50", "coverage 95", "below q90"))


def test_level_and_quantile_options_from_the_command_line_and_a_job_file(tmp_path, table):
    path = tmp_path / "table.csv"
    table[table["unique_id"] == "S0"].to_csv(path, index=False)
    proc = subprocess.run([sys.executable, "-m", "forecast", "run", str(path), "--horizon", "3", "--level", "80",
                           "--level", "95", "--quantile", "0.5", "--out", str(tmp_path / "out"), "--format", "csv",
                           "-q", "--n-jobs", "1"], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stderr
    columns = pd.read_csv(tmp_path / "out" / "forecasts.csv").columns
    assert list(columns[columns.str.startswith("yhat_")]) == ["yhat_lower", "yhat_upper", *BANDS, "yhat_q50"]

    job = tmp_path / "job.toml"
    job.write_text('[model]\nlevel = [80, 95]\nquantile = 0.9\n')
    assert read_job_file(job) == {"levels": [80.0, 95.0], "quantiles": [0.9]}
    job.write_text('[model]\nlevel = ["80"]\n')
    with pytest.raises(ConfigError, match=r"\[model\] level must be a number or a list of numbers"):
        read_job_file(job)


@pytest.mark.parametrize("options, message", [
    (dict(levels=(100,)), "--level is a percentage between 0 and 100"),
    (dict(levels=(0,)), "--level is a percentage between 0 and 100"),
    (dict(quantiles=(1.5,)), "--quantile must be between 0 and 1"),
    (dict(levels=(80, 95, 80)), "--level names a value more than once: 80, 95, 80"),
])
def test_a_level_or_quantile_out_of_range_or_given_twice_is_one_clear_error(options, message):
    with pytest.raises(ConfigError, match=message):
        ModelOptions(**options)


def test_empirical_bands_follow_the_interval_of_the_same_errors_and_keep_to_a_floor():
    from forecast.levels import empirical_bands
    from forecast.models.simple import in_sample_errors, simple_forecast

    y = np.array([0.0, 3, 0, 0, 5, 1, 0, 2, 0, 4, 0, 0, 1])
    yhat, lower, upper = simple_forecast("naive", y, 4, interval_width=0.9)
    bands = empirical_bands(yhat, in_sample_errors("naive", y), ModelOptions(levels=(90,), quantiles=(0.05,)))
    np.testing.assert_array_equal(bands["yhat_lower_90"], lower)
    np.testing.assert_array_equal(bands["yhat_upper_90"], upper)
    np.testing.assert_array_equal(bands["yhat_q5"], lower)
    assert (lower < 0).all()  # the last value plus its one-step changes' 5 % quantile: below 0 for this demand
    floored = empirical_bands(yhat, in_sample_errors("naive", y), ModelOptions(levels=(90,)), floor=0.0)
    np.testing.assert_array_equal(floored["yhat_lower_90"], 0.0)
    np.testing.assert_array_equal(floored["yhat_upper_90"], upper)
