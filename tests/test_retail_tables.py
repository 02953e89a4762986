"""Real retail tables (issue 14): sparse and brand-new series on the table's weekly grid, keys that keep their
type, and outputs that pyarrow reads alone. Every run fits real Prophet models on real files."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from forecast.cli import app
from forecast.freq import season_length
from forecast.outputs import read_history, read_run_dir
from forecast.plot import select_series
from forecast.profile import profile_table, table_grid

runner = CliRunner()
FRIDAYS = pd.date_range("2023-01-06", periods=80, freq="W-FRI")
LAST_FRIDAY = FRIDAYS[-1]


def _sparse(steps_in_weeks, n):
    """n Fridays whose steps cycle through `steps_in_weeks`, ending on the table's last Friday."""
    steps = np.resize(steps_in_weeks, n - 1)
    weeks = np.r_[0, np.cumsum(steps)]
    return LAST_FRIDAY - pd.to_timedelta(7 * (weeks[-1] - weeks), unit="D")


def retail_table() -> pd.DataFrame:
    """Weekly sales (weeks ending on a Friday) by store (integers) and item (codes with leading zeros)."""
    rng = np.random.default_rng(14)
    parts = {
        (1, "00123"): FRIDAYS[-60:],  # regular
        (1, "00456"): _sparse([1, 2, 4], 36),  # sold only in some weeks: steps of 7, 14, 28 days
        (2, "00123"): _sparse([2, 4], 32),  # steps of 14 and 28 days only: still the weekly table's grid
        (2, "00456"): FRIDAYS[-1:],  # a single row: opened last week
        (2, "00789"): FRIDAYS[-3:],  # three rows: too short for Prophet to mean anything
        (3, "00123"): pd.date_range(LAST_FRIDAY - pd.Timedelta(days=88), periods=90, freq="D"),  # a daily series
    }
    frames = []
    for (store, item), ds in parts.items():
        t = np.arange(len(ds))
        y = 100 + 10 * store + 5 * np.sin(2 * np.pi * t / 13) + rng.normal(0, 2, len(ds))
        frames.append(pd.DataFrame({"store": store, "item": item, "week": ds, "sales": y.round(2)}))
    return pd.concat(frames, ignore_index=True)


KEY = ["--id-col", "store", "--id-col", "item", "--time-col", "week", "--target-col", "sales"]
FAST = ["--n-jobs", "1", "--uncertainty-samples", "100", "--seed", "1", "-q"]


@pytest.fixture(scope="module")
def retail(tmp_path_factory):
    """The table as CSV, and a run over it with --fallback naive (Parquet outputs) and its summary."""
    tmp = tmp_path_factory.mktemp("retail")
    path = tmp / "sales.csv"
    retail_table().to_csv(path, index=False)
    out = tmp / "nightly-2025-01-03"
    result = runner.invoke(app, ["run", str(path), "--horizon", "4", *KEY, *FAST, "--fallback", "naive",
                                 "--out", str(out)])
    assert result.exit_code == 0, result.output
    return path, out, json.loads((out / "summary.json").read_text())


def test_every_series_on_the_weekly_grid_is_forecast_on_the_fridays_after_its_last_week(retail):
    path, out, summary = retail
    table = retail_table()
    forecasts = pd.read_parquet(out / "forecasts.parquet")
    assert summary["table_freq"] == "W-FRI" and summary["series_own_freq"] == 1  # the daily series
    assert summary["series_failed"] == 0 and summary["series_done"] == 6
    for (store, item), fc in forecasts.groupby(["store", "item"]):
        last = table.loc[(table.store == store) & (table.item == item), "week"].max()
        step = pd.Timedelta(days=1 if store == 3 else 7)
        expected = pd.date_range(last + step, periods=4, freq=step)
        assert list(fc["ds"]) == list(expected), (store, item)
        assert (fc["cutoff"] == last).all()
    weekly = forecasts[forecasts.store != 3]
    assert (weekly["ds"].dt.day_of_week == 4).all()  # Fridays
    models = forecasts.groupby(["store", "item"])["model"].first().to_dict()
    # the sparse series are fitted by Prophet on the table's grid; the short and one-row series get the fallback
    assert models == {(1, "00123"): "prophet", (1, "00456"): "prophet", (2, "00123"): "prophet",
                      (2, "00456"): "fallback:naive", (2, "00789"): "fallback:naive", (3, "00123"): "prophet"}
    single = forecasts[(forecasts.store == 2) & (forecasts.item == "00456")]
    value = table.loc[(table.store == 2) & (table.item == "00456"), "sales"].iloc[0]
    assert (single["yhat"] == value).all()
    assert (forecasts["run_id"] == "nightly-2025-01-03").all()


def test_too_short_series_get_a_simple_model_with_the_reason_and_min_obs_2_fits_them(retail, tmp_path):
    path, out, summary = retail
    timings = pd.read_csv(out / "timings.csv", dtype={"item": str}).set_index(["store", "item"])
    assert timings.loc[(2, "00789"), "error"] == "new: 3 value(s) (--min-obs 30)"
    assert timings.loc[(2, "00789"), "status"] == "fallback"
    errors = pd.read_csv(out / "errors.csv")
    assert errors.empty  # sent to the fallback on purpose: not failures
    assert summary["series_below_min_obs"] == 2

    again = tmp_path / "again"
    result = runner.invoke(app, ["run", str(path), "--horizon", "4", *KEY, *FAST, "--min-obs", "2",
                                 "--out", str(again), "--run-id", "manual"])
    assert result.exit_code == 0, result.output
    forecasts = pd.read_parquet(again / "forecasts.parquet")
    models = forecasts.groupby(["store", "item"])["model"].first().to_dict()
    # three values are fitted again, as before --min-obs applied: with Prophet's model reduced to what three
    # points can tell (no changepoint)
    assert models[(2, "00789")] == "prophet:reduced"
    assert models[(2, "00456")] == "fallback:naive"  # one value is still below 2: seasonal-naive, which is naive
    assert set(forecasts["run_id"]) == {"manual"}
    timings = pd.read_csv(again / "timings.csv", dtype={"item": str}).set_index(["store", "item"])
    assert "seasonal-naive needs one season (52 periods of W-FRI)" in timings.loc[(2, "00456"), "error"]


def test_check_labels_are_freq_values_that_backtest_takes(retail, tmp_path):
    path, _, _ = retail
    result = runner.invoke(app, ["check", str(path), *KEY, "--out", str(tmp_path / "chk")])
    assert result.exit_code == 0, result.output
    profile = pd.read_csv(tmp_path / "chk" / "profile.csv", dtype={"item": str}).set_index(["store", "item"])
    assert profile.loc[(3, "00123"), "freq"] == "D"
    assert (profile.drop(index=(3, "00123"))["freq"] == "W-FRI").all()
    # gaps are counted on the weekly grid: the sparse series misses periods, the single row none
    assert profile.loc[(1, "00456"), "missing_periods"] == profile.loc[(1, "00456"), "expected_periods"] - 36
    assert profile.loc[(2, "00456"), "verdict"] == "fallback"  # new, not skipped for want of a frequency
    assert any(line.split()[:3] == ["table", "frequency", "W-FRI"] for line in result.stdout.splitlines())

    weekly = retail_table()
    weekly = weekly[(weekly.store == 1) & (weekly.item == "00123")]
    weekly_csv = tmp_path / "weekly.csv"
    weekly.to_csv(weekly_csv, index=False)
    bt = tmp_path / "bt"
    result = runner.invoke(app, ["backtest", str(weekly_csv), "--horizon", "4", "--windows", "1", *KEY,
                                 "--freq", "W-FRI", *FAST, "--out", str(bt)])
    assert result.exit_code == 0, result.output
    scores = pd.read_csv(bt / "metrics.csv")
    assert (scores["season_length"] == 52).all()


def test_integer_keys_round_trip_through_run_backtest_plot_and_report(retail, tmp_path):
    path, out, _ = retail
    source = pd.read_csv(path, dtype={"item": str})
    forecasts = pd.read_parquet(out / "forecasts.parquet")
    assert forecasts["store"].dtype == "int64" and set(forecasts["item"]) >= {"00123", "00456"}
    assert not forecasts[forecasts.store == 1].empty
    joined = forecasts.merge(source[["store", "item"]].drop_duplicates(), on=["store", "item"], how="inner")
    assert len(joined) == len(forecasts)  # a join back to the source matches every row
    for name in ("timings.csv", "errors.csv"):
        assert pd.read_csv(out / name)["store"].dtype == "int64" or pd.read_csv(out / name).empty

    csv_out = tmp_path / "csv"
    result = runner.invoke(app, ["run", str(path), "--horizon", "2", *KEY, *FAST, "--format", "csv",
                                 "--out", str(csv_out)])
    assert result.exit_code == 0, result.output
    text = pd.read_csv(csv_out / "forecasts.csv", dtype=str)
    assert set(text["store"]) == {"1", "2", "3"} and "00123" in set(text["item"])
    run = read_run_dir(csv_out)
    assert run.forecasts["store"].dtype == "int64" and run.timings["store"].dtype == "int64"
    assert "00456" in set(run.forecasts["item"])

    bt = tmp_path / "bt"
    result = runner.invoke(app, ["backtest", str(path), "--horizon", "2", "--windows", "1", *KEY, *FAST,
                                 "--max-failed-frac", "1", "--out", str(bt)])
    assert result.exit_code == 0, result.output
    assert pd.read_parquet(bt / "backtest.parquet")["store"].dtype == "int64"
    scores = pd.read_csv(bt / "metrics.csv", dtype={"item": str})
    assert scores["store"].dtype == "int64" and "00123" in set(scores["item"])
    assert pd.read_csv(bt / "errors.csv")["store"].dtype == "int64"  # the one-row and three-row series

    result = runner.invoke(app, ["plot", str(bt), "--series", "1 / 00123", "--worst", "1"])
    assert result.exit_code == 0, result.output
    assert len(list((bt / "plots").glob("*.png"))) >= 1
    result = runner.invoke(app, ["report", str(csv_out), "--plots", "2"])
    assert result.exit_code == 0, result.output
    assert "1 / 00123" in (csv_out / "report.html").read_text()
    history = read_history(run)  # what plot and report look the forecasts up by
    for key in select_series(run, history):
        match = np.logical_and.reduce([run.forecasts[c] == v for c, v in zip(run.id_cols, key)])
        assert match.any(), key


@pytest.mark.parametrize("values,kind", [
    (["1", "2", "10"], "int64"),
    (["-7", "0", "42"], "int64"),
    (["00123", "7"], "text"),  # a code with leading zeros keeps them
    (["1", "A"], "text"),  # mixed
    (["1.0", "2"], "text"),
])
def test_a_key_column_is_an_integer_only_when_every_value_is_one(tmp_path, values, kind):
    rows = [f"{v},2024-01-{d:02d},{d}" for v in values for d in range(1, 4)]
    path = tmp_path / "in.csv"
    path.write_text("unique_id,ds,y\n" + "\n".join(rows) + "\n")
    out = tmp_path / "run"
    result = runner.invoke(app, ["run", str(path), "--horizon", "1", "--min-obs", "5", "--out", str(out), "-q",
                                 "--n-jobs", "1"])
    assert result.exit_code == 0, result.output
    keys = pq.read_table(out / "forecasts.parquet").column("unique_id").to_pylist()
    expected = [int(v) for v in values] if kind == "int64" else values
    assert sorted(keys, key=str) == sorted(expected, key=str)


def test_parquet_input_keeps_its_key_types(tmp_path):
    table = retail_table()
    table = table[table.store == 1].assign(item=table["item"].str.lstrip("0"))  # "123": text in Parquet
    path = tmp_path / "in.parquet"
    table.to_parquet(path)
    out = tmp_path / "run"
    result = runner.invoke(app, ["run", str(path), "--horizon", "2", *KEY, *FAST, "--out", str(out)])
    assert result.exit_code == 0, result.output
    schema = pq.read_schema(out / "forecasts.parquet")
    assert str(schema.field("store").type) == "int64" and str(schema.field("item").type) == "string"


def test_parquet_outputs_have_microsecond_times_and_no_pandas_metadata(retail, tmp_path):
    _, out, _ = retail
    table = pq.read_table(out / "forecasts.parquet")
    assert not table.schema.metadata or b"pandas" not in table.schema.metadata
    for name in ("ds", "cutoff"):
        assert str(table.schema.field(name).type) == "timestamp[us]"
    assert [str(table.schema.field(n).type) for n in ("model", "run_id")] == ["string", "string"]
    first = table.slice(0, 1).to_pylist()[0]  # plain Python values, no pandas involved
    assert first["ds"] > first["cutoff"] and first["run_id"] == "nightly-2025-01-03"

    weekly = retail_table()
    weekly_csv = tmp_path / "weekly.csv"
    weekly[weekly.store == 1].to_csv(weekly_csv, index=False)
    bt = tmp_path / "bt"
    assert runner.invoke(app, ["backtest", str(weekly_csv), "--horizon", "2", "--windows", "1", *KEY, *FAST,
                               "--out", str(bt)]).exit_code == 0
    schema = pq.read_schema(bt / "backtest.parquet")
    assert str(schema.field("ds").type) == "timestamp[us]" and str(schema.field("cutoff").type) == "timestamp[us]"
    assert not schema.metadata or b"pandas" not in schema.metadata


@pytest.mark.slow
def test_the_sample_with_a_one_row_series_forecasts_every_series_with_fallback_naive(tmp_path):
    sample = pd.read_csv(Path(__file__).parents[1] / "data" / "sample.csv", dtype={"store": str, "item": str})
    new = pd.DataFrame({"store": ["S01"], "item": ["I999"], "date": ["2025-12-31"], "sales": [12.0]})
    path = tmp_path / "sample_plus_new.csv"
    pd.concat([sample, new]).to_csv(path, index=False)
    out = tmp_path / "run"
    result = runner.invoke(app, ["run", str(path), "--id-col", "store", "--id-col", "item", "--time-col", "date",
                                 "--target-col", "sales", "--horizon", "7", "--fallback", "naive", "--engine",
                                 "stan", "--uncertainty-samples", "0", "--out", str(out), "-q"])
    assert result.exit_code == 0, result.output
    forecasts = pd.read_parquet(out / "forecasts.parquet")
    assert forecasts.groupby(["store", "item"]).ngroups == 51
    new_rows = forecasts[forecasts.item == "I999"]
    assert list(new_rows["ds"]) == list(pd.date_range("2026-01-01", periods=7, freq="D"))
    assert (new_rows["yhat"] == 12.0).all() and (new_rows["model"] == "fallback:naive").all()


def test_triage_fits_series_with_a_few_returns_and_serves_new_series(tmp_path):
    rng = np.random.default_rng(3)
    ds = pd.date_range("2024-01-01", periods=120, freq="D")
    y = 50 + 5 * np.sin(2 * np.pi * np.arange(120) / 7) + rng.normal(0, 1, 120)
    returns = y.copy()
    returns[[10, 50, 90]] = -4.0  # three returns in 120 days
    rising = np.arange(120) % 4 != 0  # a quarter of the days absent: gappy, sent to the fallback
    trend = 10.0 + np.arange(120.0)  # rising every day: seasonal-naive's errors are all positive
    frame = pd.concat([pd.DataFrame({"unique_id": "returns", "ds": ds, "y": returns}),
                       pd.DataFrame({"unique_id": "rising", "ds": ds[rising], "y": trend[rising]}),
                       pd.DataFrame({"unique_id": "new", "ds": ds[-1:], "y": [7.0]})])
    path = tmp_path / "in.csv"
    frame.to_csv(path, index=False)
    out = tmp_path / "run"
    result = runner.invoke(app, ["run", str(path), "--horizon", "5", "--triage", *FAST, "--out", str(out)])
    assert result.exit_code == 0, result.output
    forecasts = pd.read_parquet(out / "forecasts.parquet")
    models = forecasts.groupby("unique_id")["model"].first().to_dict()
    assert models["returns"] == "prophet"
    assert models["new"] == "fallback:naive"  # seasonal-naive with less than a season
    assert models["rising"] == "fallback:seasonal-naive"
    timings = pd.read_csv(out / "timings.csv").set_index("unique_id")
    assert "naive used" in timings.loc["new", "error"]
    served = forecasts[forecasts["model"].str.startswith("fallback")].dropna(subset=["yhat_lower"])
    assert len(served) and ((served.yhat_lower <= served.yhat) & (served.yhat <= served.yhat_upper)).all()


def test_one_season_length_for_fallbacks_baselines_and_mase():
    # one rule (freq.season_length) for the seasonal-naive model, which serves as fallback and as baseline, and
    # for MASE's scale; a weekly series with a missing week is inferred as 7D and is still weekly
    assert season_length("7D") == season_length("W-FRI") == 52


def test_a_series_off_the_tables_grid_without_a_frequency_of_its_own_fails_alone_with_the_reason(tmp_path):
    table = retail_table()
    table = table[table.store == 1]  # two weekly series: the table is weekly
    odd = pd.DataFrame({"store": 9, "item": "00999", "sales": [5.0, 6.0, 7.0, 8.0],
                        "week": pd.to_datetime(["2024-03-07", "2024-03-08", "2024-03-11", "2024-03-19"])})
    path = tmp_path / "in.csv"
    pd.concat([table, odd]).to_csv(path, index=False)
    out = tmp_path / "run"
    result = runner.invoke(app, ["run", str(path), "--horizon", "2", *KEY, *FAST, "--min-obs", "2",
                                 "--out", str(out)])
    assert result.exit_code == 3, result.output
    errors = pd.read_csv(out / "errors.csv", dtype={"item": str})
    assert errors[["store", "item", "stage"]].values.tolist() == [[9, "00999", "frequency"]]
    assert errors["reason"].iloc[0].startswith("its timestamps are off the table's W-FRI grid, and cannot infer "
                                               "the frequency")
    assert pd.read_parquet(out / "forecasts.parquet")["item"].unique().tolist() == ["00123", "00456"]


@pytest.mark.parametrize("freq", ["W-FRI", "W-SUN", "D", "h", "MS", "ME", "QE-MAR", "QS-JAN", "YS-JAN", "14D"])
def test_the_table_frequency_is_a_freq_value_with_its_anchor(freq):
    ds = pd.date_range("2021-01-01", periods=30, freq=freq)
    sparse = ds[[0, 1, 3, 4, 8, 9, 15, 22, 29]]  # missing periods, steps of 1 to 7 periods
    table = pd.concat([pd.DataFrame({"unique_id": "full", "ds": ds}),
                       pd.DataFrame({"unique_id": "full2", "ds": ds}),
                       pd.DataFrame({"unique_id": "sparse", "ds": sparse}),
                       pd.DataFrame({"unique_id": "single", "ds": ds[-2:-1]})]).assign(y=1.0)
    grid = table_grid(table, ["unique_id"])
    assert grid.freq == freq or pd.tseries.frequencies.to_offset(grid.freq) == pd.tseries.frequencies.to_offset(freq)
    assert grid.on_grid.all()
    profile = profile_table(table, ["unique_id"])
    assert (profile["freq"] == grid.freq).all()
    assert profile.set_index("unique_id").loc["sparse", "missing_periods"] == 30 - 9


def test_a_weekly_series_in_a_daily_table_stays_weekly():
    days = pd.date_range("2024-01-01", periods=120, freq="D")
    table = pd.concat([pd.DataFrame({"unique_id": u, "ds": days}) for u in ("a", "b")]
                      + [pd.DataFrame({"unique_id": "weekly", "ds": days[::7]})]).assign(y=1.0)
    grid = table_grid(table, ["unique_id"])
    assert grid.freq == "D" and grid.on_grid.tolist() == [True, True, False]
    assert profile_table(table, ["unique_id"], grid=grid)["freq"].tolist() == ["D", "D", "W-MON"]


@pytest.mark.slow
@pytest.mark.parametrize("command", ["run", "backtest", "check"])
def test_a_freq_whose_grid_misses_the_tables_dates_is_refused_naming_the_tables(tmp_path, command):
    # --freq W is pandas' W-SUN: on a table of Fridays it put every forecast on a Sunday, two days after the cutoff,
    # and the backtest refused every series as "off the series' W grid"
    ds = pd.date_range("2023-01-06", periods=30, freq="W-FRI")
    table = pd.concat([pd.DataFrame({"store": s, "week": ds, "sales": 10.0 + s + np.arange(30) % 4})
                       for s in (1, 2)])
    path = tmp_path / "weeks.csv"
    table.to_csv(path, index=False)
    args = [command, str(path), "--id-col", "store", "--time-col", "week", "--target-col", "sales",
            "--out", str(tmp_path / "out")]
    result = runner.invoke(app, args + ["--freq", "W"] + ([] if command == "check" else ["--horizon", "2"]))
    assert result.exit_code == 1
    assert ("--freq W (W-SUN): the table's dates do not lie on its grid (the first is Fri 2023-01-06); the "
            "table's dates lie on W-FRI: use --freq W-FRI") in result.output
    assert not (tmp_path / "out").exists()
    if command == "run":
        ok = runner.invoke(app, args + ["--freq", "W-FRI", "--horizon", "2", "--overwrite"])
        assert ok.exit_code == 0, ok.output
        forecasts = pd.read_parquet(tmp_path / "out" / "forecasts.parquet")
        assert (forecasts["ds"].dt.day_name() == "Friday").all()
