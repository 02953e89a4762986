"""The intermittent-demand models (croston-sba, tsb, adida) against hand-computed values, and --triage serving the
series it calls intermittent with --intermittent-model."""

import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from forecast.cli import app
from forecast.config import FALLBACKS, ForecastConfig, ModelOptions
from forecast.errors import ConfigError
from forecast.model import fit_series
from forecast.models import get_model
from forecast.models.intermittent import intermittent_forecast, ses_levels
from forecast.models.simple import FallbackImpossible
from forecast.types import SeriesData

runner = CliRunner()
SIZE, INTERVAL, CYCLES = 6.0, 3, 20
# a demand of 6 every third period: 0, 0, 6, 0, 0, 6, ... (60 periods, 20 demands, the last period a demand)
REGULAR = np.tile([0.0] * (INTERVAL - 1) + [SIZE], CYCLES)


def tsb_by_hand(size: float, interval: int, cycles: int, alpha: float = 0.1) -> float:
    """TSB's forecast for REGULAR-like series: the sizes are constant (size); the probability's SES starts at the
    first period's 0 and takes alpha of each demand, decayed by (1 - alpha) per period since, a geometric sum."""
    decay = (1 - alpha) ** interval
    return size * alpha * (1 - decay ** cycles) / (1 - decay)


def test_constant_size_and_interval_give_the_textbook_forecasts():
    # Croston: SES of constant sizes is 6, of constant intervals 3; SBA takes 0.95 of 6 / 3
    assert intermittent_forecast("croston-sba", REGULAR, 2)[0] == pytest.approx([0.95 * SIZE / INTERVAL] * 2)
    assert intermittent_forecast("tsb", REGULAR, 2)[0] == pytest.approx([tsb_by_hand(SIZE, INTERVAL, CYCLES)] * 2)
    # ADIDA: buckets of the mean interval (3) each hold one demand of 6, whatever alpha: 6 / 3 per period
    assert intermittent_forecast("adida", REGULAR, 2)[0] == pytest.approx([SIZE / INTERVAL] * 2)


def test_varying_sizes_and_intervals_follow_the_smoothing_step_by_step():
    y = np.array([0.0, 4.0, 0.0, 0.0, 8.0])  # sizes 4, 8; intervals 2 (from the start), 3
    size, gap = 0.1 * 8 + 0.9 * 4, 0.1 * 3 + 0.9 * 2  # SES starts at the first value
    assert intermittent_forecast("croston-sba", y, 1)[0][0] == pytest.approx(0.95 * size / gap)
    p = 0.0  # the probability's SES over 0, 1, 0, 0, 1 starts at 0
    for occurred in (1, 0, 0, 1):
        p = 0.1 * occurred + 0.9 * p
    assert intermittent_forecast("tsb", y, 1)[0][0] == pytest.approx(p * size)
    # mean interval 2.5 rounds (half to even) to buckets of 2; the oldest period is dropped: totals 4, 8; with
    # two totals the squared error does not depend on alpha, which is the middle of [0.1, 0.3]
    assert intermittent_forecast("adida", y, 1)[0][0] == pytest.approx((0.2 * 8 + 0.8 * 4) / 2)


def test_ses_levels_are_the_recursion_over_long_series():
    rng = np.random.default_rng(3)
    x = rng.poisson(2, 5000).astype(float)  # longer than one closed-form block at alpha 0.9
    for alpha in (0.1, 0.3, 0.9, 1.0):
        level, expected = x[0], [np.nan, x[0]]
        for value in x[1:]:
            level = alpha * value + (1 - alpha) * level
            expected.append(level)
        np.testing.assert_allclose(ses_levels(x, alpha), expected, rtol=1e-10)


def test_band_comes_from_the_models_own_errors_and_never_goes_below_zero():
    yhat, lower, upper = intermittent_forecast("croston-sba", REGULAR, 3, interval_width=0.8)
    # after the first demand Croston forecasts 1.9 every period: errors -1.9 (no sale) and 4.1 (a sale of 6);
    # two in three are -1.9, so the 10 % and 90 % quantiles are -1.9 and 4.1
    np.testing.assert_allclose(yhat, 1.9)
    np.testing.assert_allclose(upper, 1.9 + 4.1)
    np.testing.assert_allclose(lower, 0.0, atol=1e-12)
    for kind in ("tsb", "adida"):
        yhat, lower, upper = intermittent_forecast(kind, REGULAR, 3)
        assert (lower >= 0).all() and (lower <= yhat).all() and (upper >= yhat).all()
        assert (upper > yhat).all()  # the sales above the rate widen the band upwards
    # with returns in the history, the band may go below zero
    _, lower, _ = intermittent_forecast("tsb", np.tile([0.0, -5.0, 0.0, 6.0], 10), 1)
    assert lower[0] < 0


def test_missing_values_are_left_out_and_no_demand_forecasts_zero():
    gappy = REGULAR.copy()
    gappy[[10, 20]] = np.nan  # zeros that went missing: neither a demand nor a zero
    for kind in ("croston-sba", "tsb", "adida"):
        without = intermittent_forecast(kind, REGULAR[np.isfinite(gappy)], 1)[0]
        assert intermittent_forecast(kind, gappy, 1)[0] == pytest.approx(without)
        yhat, lower, upper = intermittent_forecast(kind, np.zeros(40), 2)
        assert yhat.tolist() == lower.tolist() == upper.tolist() == [0.0, 0.0]
        with pytest.raises(FallbackImpossible, match="all values are missing"):
            intermittent_forecast(kind, np.full(5, np.nan), 2)


def test_the_models_are_registered_fallbacks_and_serve_through_fit_series():
    assert {"croston-sba", "tsb", "adida"} <= set(FALLBACKS)
    series = SeriesData(key=("a",), ds=pd.date_range("2024-01-01", periods=60).to_numpy(), y=REGULAR.copy())
    result = fit_series(series, ModelOptions(horizon=4), model="croston-sba")
    assert (result.status, result.model) == ("ok", "croston-sba")
    np.testing.assert_allclose(result.yhat, 1.9)
    assert result.ds[0] == np.datetime64("2024-03-01")
    blank = SeriesData(key=("b",), ds=series.ds[:5], y=np.full(5, np.nan))
    failed = fit_series(blank, ModelOptions(horizon=2, freq="D"), model="tsb")
    assert (failed.status, failed.stage, failed.error) == ("failed", "fit", "all values are missing")
    assert get_model("adida").name == "adida"


@pytest.mark.parametrize("kind", ["croston-sba", "tsb", "adida"])
def test_levels_of_an_intermittent_model_are_its_band_at_each_width(kind):
    # --level 80 --level 95 from the model's own errors: the 80 band is the --interval-width 0.8 interval, the 95
    # band holds it, and neither goes below zero for demand that never did
    series = SeriesData(key=("a",), ds=pd.date_range("2024-01-01", periods=60).to_numpy(), y=REGULAR.copy())
    banded = get_model(kind).forecast(series, series.ds[-4:] + np.timedelta64(4, "D"),
                                      ModelOptions(horizon=4, levels=(80, 95)))
    plain = get_model(kind).forecast(series, series.ds[-4:] + np.timedelta64(4, "D"), ModelOptions(horizon=4))
    np.testing.assert_array_equal(banded.bands["yhat_lower_80"], plain.yhat_lower)
    np.testing.assert_array_equal(banded.bands["yhat_upper_80"], plain.yhat_upper)
    assert (banded.bands["yhat_lower_95"] <= banded.bands["yhat_lower_80"]).all()
    assert (banded.bands["yhat_upper_95"] >= banded.bands["yhat_upper_80"]).all()
    assert (banded.bands["yhat_lower_95"] >= 0).all()


def test_intermittent_model_must_be_a_fallback_model():
    with pytest.raises(ConfigError, match="--intermittent-model must be one of naive, .*adida; got 'prophet'"):
        ForecastConfig(intermittent_model="prophet")
    with pytest.raises(ConfigError, match="got 'none'"):
        ForecastConfig(intermittent_model="none")


def _mixed_table(tmp_path):
    ds = pd.date_range("2024-01-01", periods=60, freq="D")
    rng = np.random.default_rng(0)
    frame = pd.concat([
        pd.DataFrame({"unique_id": "smooth", "ds": ds, "y": 10 + np.sin(np.arange(60.0)) + rng.normal(0, .1, 60)}),
        pd.DataFrame({"unique_id": "sparse", "ds": ds, "y": REGULAR}),  # 67 % zeros: intermittent
        pd.DataFrame({"unique_id": "new", "ds": ds[-10:], "y": np.arange(10.0) + 1}),  # 10 values: new
    ])
    path = tmp_path / "mixed.csv"
    frame.to_csv(path, index=False)
    return path


@pytest.mark.parametrize("flags,model,yhat", [
    ([], "tsb", tsb_by_hand(SIZE, INTERVAL, CYCLES)),  # the default
    (["--intermittent-model", "croston-sba"], "croston-sba", 0.95 * SIZE / INTERVAL),
])
def test_triage_serves_intermittent_series_with_the_intermittent_model(tmp_path, flags, model, yhat):
    out = tmp_path / "out"
    result = runner.invoke(app, ["run", str(_mixed_table(tmp_path)), "--horizon", "3", "--n-jobs", "1", "--triage",
                                 "--fallback", "naive", *flags, "--out", str(out), "--format", "csv", "-q"])
    assert result.exit_code == 0, result.output
    forecasts = pd.read_csv(out / "forecasts.csv")
    models = forecasts.groupby("unique_id")["model"].first().to_dict()
    # the intermittent series gets the intermittent model; the new one --fallback's; the smooth one Prophet
    assert models == {"smooth": "prophet", "sparse": f"fallback:{model}", "new": "fallback:naive"}
    sparse = forecasts[forecasts["unique_id"] == "sparse"]
    np.testing.assert_allclose(sparse["yhat"], yhat)
    assert (sparse["yhat_lower"] >= 0).all()
    timings = pd.read_csv(out / "timings.csv").set_index("unique_id")
    assert timings.loc["sparse", "error"] == (f"intermittent: 67% zeros (--max-zero-share 0.5); "
                                              f"--intermittent-model {model}")
    assert timings.loc["sparse", "verdict"] == "fallback"
    assert json.loads((out / "summary.json").read_text())["series_fallback"] == 2


def test_backtest_scores_an_intermittent_model_with_its_coverage(tmp_path):
    out = tmp_path / "bt"
    path = _mixed_table(tmp_path)
    result = runner.invoke(app, ["backtest", str(path), "--horizon", "6", "--windows", "2", "--n-jobs", "1",
                                 "--model", "adida", "--model", "seasonal-naive", "--model", "croston-sba",
                                 "--out", str(out), "-q"])
    assert result.exit_code == 3, result.output  # "new" is too short for two windows
    overall = json.loads((out / "summary.json").read_text())["overall"]
    assert set(overall) == {"adida", "seasonal_naive", "croston_sba"}
    assert 0 <= overall["adida"]["coverage"] <= 1 and overall["croston_sba"]["coverage"] is None
    rows = pd.read_parquet(out / "backtest.parquet")
    sparse = rows[rows["unique_id"] == "sparse"]
    # every window's history ends on a demand (54 and 48 periods): buckets of 3 each hold one 6
    np.testing.assert_allclose(sparse["yhat"], SIZE / INTERVAL)
    np.testing.assert_allclose(sparse["yhat_croston_sba"], 0.95 * SIZE / INTERVAL)
