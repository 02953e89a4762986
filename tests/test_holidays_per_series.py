"""Holidays per series: a holidays file keyed by region (--holidays-key), each series' country from a column of
the input (--holidays-col). Real fits; every series' model must be the one a run of it alone with its own
holidays fits."""

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

import forecast
from forecast.cli import app

runner = CliRunner()
DAYS = 120
HORIZON = 28
# Each region's event days: four in the history, one in the horizon (after 2024-04-29, the history's last day).
EVENTS = {"north": ["2024-01-12", "2024-02-12", "2024-03-12", "2024-04-12", "2024-05-12"],
          "south": ["2024-01-20", "2024-02-20", "2024-03-20", "2024-04-20", "2024-05-05"]}
EFFECT = 15.0


def stores() -> pd.DataFrame:
    """Three stores: s1 in the north, s2 in the south (each up EFFECT on its region's event days), s3 in the west,
    which has no events."""
    rng = np.random.default_rng(3)
    ds = pd.date_range("2024-01-01", periods=DAYS)
    frames = []
    for store, region in (("s1", "north"), ("s2", "south"), ("s3", "west")):
        y = 30 + 2 * np.sin(2 * np.pi * np.arange(DAYS) / 7) + rng.normal(0, 0.5, DAYS)
        y += EFFECT * ds.isin(pd.to_datetime(EVENTS.get(region, [])))
        frames.append(pd.DataFrame({"store": store, "region": region, "ds": ds, "y": y}))
    return pd.concat(frames, ignore_index=True)


def holidays_frame(regions=("north", "south")) -> pd.DataFrame:
    return pd.DataFrame([{"region": r, "holiday": f"event_{r}", "ds": d, "lower_window": 0, "upper_window": 0}
                         for r in regions for d in EVENTS[r]])


def run(*args):
    return runner.invoke(app, ["run", *map(str, args), "--n-jobs", "1", "-q", "--uncertainty-samples", "0"])


def jump(fc: pd.DataFrame, store: str, day: str, special: list[str]) -> float:
    """How far a store's forecast on `day` stands above its mean on the days of the same weekday that are not
    `special` (any store's holidays)."""
    one = fc[fc["store"] == store].set_index("ds")["yhat"]
    day = pd.Timestamp(day)
    plain = one[(one.index.day_of_week == day.day_of_week) & ~one.index.isin(pd.to_datetime(special))]
    return float(one[day] - plain.mean())


def test_a_store_moves_on_its_regions_holiday_and_not_on_anothers(tmp_path, write_csv):
    out = tmp_path / "out"
    result = run(write_csv(stores()), "--id-col", "store", "--horizon", HORIZON, "--holidays-file",
                 write_csv(holidays_frame(), "holidays.csv"), "--holidays-key", "region", "--out", out)
    assert result.exit_code == 0, result.output
    fc = pd.read_parquet(out / "forecasts.parquet")
    north, south = EVENTS["north"][-1], EVENTS["south"][-1]
    days = [north, south]
    assert jump(fc, "s1", north, days) > EFFECT * 0.8 and abs(jump(fc, "s1", south, days)) < 1
    assert jump(fc, "s2", south, days) > EFFECT * 0.8 and abs(jump(fc, "s2", north, days)) < 1
    # the west has no rows: no holidays
    assert abs(jump(fc, "s3", north, days)) < 1 and abs(jump(fc, "s3", south, days)) < 1


@pytest.mark.parametrize("engine", ["fast", "stan",
                                    pytest.param("prophet", marks=pytest.mark.slow)])
def test_each_series_gets_the_model_of_a_run_of_it_alone_with_its_own_holidays(tmp_path, engine):
    table = stores()
    keyed = tmp_path / "keyed.csv"
    holidays_frame().to_csv(keyed, index=False)
    options = dict(id_cols="store", engine=engine, seed=7, uncertainty_samples=200, n_jobs=1)
    together = forecast.forecast(table, HORIZON,
                                 holidays_file=keyed, holidays_keys=("region",), **options)
    for store, region in (("s1", "north"), ("s2", "south"), ("s3", "west")):
        alone_table = table[table["store"] == store]
        if region in EVENTS:  # a plain holidays file of that region's rows, no key column
            plain = tmp_path / f"{region}.csv"
            holidays_frame((region,)).drop(columns="region").to_csv(plain, index=False)
            alone = forecast.forecast(alone_table, HORIZON, holidays_file=plain, **options)
        else:  # no rows for its region: the model of a run without holidays
            alone = forecast.forecast(alone_table, HORIZON, **options)
        mine = together[together["store"] == store].reset_index(drop=True)
        assert (mine["model"] == "prophet").all()
        for col in ("yhat", "yhat_lower", "yhat_upper"):
            np.testing.assert_array_equal(mine[col].to_numpy(), alone[col].to_numpy(), err_msg=f"{store} {col}")


def countries() -> pd.DataFrame:
    """A US and a GB store, each up 20 on its own country's holidays, from 2023 to the end of April 2025."""
    import holidays

    rng = np.random.default_rng(4)
    ds = pd.date_range("2023-01-01", "2025-04-30")
    frames = []
    for store, country in (("us1", "US"), ("gb1", "GB")):
        days = pd.to_datetime(list(holidays.country_holidays(country, years=[2023, 2024, 2025])))
        y = 50 + rng.normal(0, 0.5, len(ds)) + 20 * ds.isin(days)
        frames.append(pd.DataFrame({"store": store, "country": country, "ds": ds, "y": y}))
    return pd.concat(frames, ignore_index=True)


def test_holidays_col_gives_each_series_its_own_countrys_holidays(tmp_path, write_csv):
    table = countries()
    out = tmp_path / "out"
    result = run(write_csv(table), "--id-col", "store", "--horizon", 50, "--holidays-col", "country",
                 "--out", out)
    assert result.exit_code == 0, result.output
    fc = pd.read_parquet(out / "forecasts.parquet")
    juneteenth, may_day = "2025-06-19", "2025-05-05"  # a US holiday only; a GB one only
    days = [juneteenth, may_day, "2025-05-26"]  # and Memorial Day and the Spring Bank Holiday, on one day
    assert jump(fc, "us1", juneteenth, days) > 15 and abs(jump(fc, "us1", may_day, days)) < 2
    assert jump(fc, "gb1", may_day, days) > 15 and abs(jump(fc, "gb1", juneteenth, days)) < 2
    alone = forecast.forecast(table[table["store"] == "gb1"], 50, id_cols="store", holidays="GB", n_jobs=1,
                              uncertainty_samples=0)
    np.testing.assert_array_equal(fc[fc["store"] == "gb1"]["yhat"].to_numpy(), alone["yhat"].to_numpy())


def test_backtest_uses_each_series_holidays(tmp_path, write_csv):
    table, keyed = write_csv(stores()), write_csv(holidays_frame(), "holidays.csv")
    args = ["backtest", str(table), "--id-col", "store", "--horizon", "14", "--windows", "1", "--step", "14",
            "--n-jobs", "1", "-q", "--uncertainty-samples", "0"]
    with_holidays = runner.invoke(app, args + ["--out", str(tmp_path / "h"), "--holidays-file", str(keyed),
                                               "--holidays-key", "region"])
    assert with_holidays.exit_code == 0, with_holidays.output
    without = runner.invoke(app, args + ["--out", str(tmp_path / "n")])
    assert without.exit_code == 0, without.output
    mae = {name: pd.read_csv(tmp_path / name / "metrics.csv").query("model == 'prophet'").set_index("store")["mae"]
           for name in ("h", "n")}
    assert mae["h"]["s2"] < mae["n"]["s2"] / 2  # s2's event on 2024-04-20 lies in the window
    assert mae["h"]["s3"] == mae["n"]["s3"]  # the west has no rows: the same model as without holidays


def one_line_error(result, *parts: str) -> None:
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.output, result.stderr
    for part in parts:
        assert part in lines[0], lines[0]


def test_bad_holidays_files_and_columns_are_one_line_each(tmp_path, write_csv):
    table = stores()
    path = write_csv(table)
    common = ("--id-col", "store", "--horizon", 7, "--out", tmp_path / "o")

    no_key = write_csv(holidays_frame().rename(columns={"region": "area"}), "no_key.csv")
    one_line_error(run(path, *common, "--holidays-file", no_key, "--holidays-key", "region"),
                   f"{no_key}: key column 'region' (--holidays-key) not found; columns are: area, holiday")

    typo = holidays_frame().replace({"region": {"south": "Sout"}})
    typo = pd.concat([typo, typo.head(1).assign(region="west ")])  # "west " for the west, which has no rows
    typo_path = write_csv(typo, "typo.csv")
    one_line_error(run(path, *common, "--holidays-file", typo_path, "--holidays-key", "region"),
                   f"{typo_path}: region='Sout' is no series' value of region (--holidays-key); did you mean "
                   "region='south'")

    unknown = write_csv(holidays_frame().replace({"region": {"north": "east", "south": "centre"}}), "unknown.csv")
    one_line_error(run(path, *common, "--holidays-file", unknown, "--holidays-key", "region"),
                   f"{unknown}: no value of its key column(s) region (--holidays-key) is a series'")

    empty = write_csv(holidays_frame().assign(region=lambda f: f["region"].where(f.index != 2, "")), "empty.csv")
    one_line_error(run(path, *common, "--holidays-file", empty, "--holidays-key", "region"),
                   f"{empty}: column 'region' is empty at row 3")

    moved = table.copy()
    moved.loc[(moved["store"] == "s2") & (moved["ds"] >= "2024-03-01"), "region"] = "north"
    one_line_error(run(write_csv(moved, "moved.csv"), *common, "--holidays-file",
                       write_csv(holidays_frame(), "h.csv"), "--holidays-key", "region"),
                   "column 'region' (--holidays-key) has more than one value in series store=s2: 'south' and "
                   "'north'; it needs one value per series")

    one_line_error(run(path, *common, "--holidays-file", write_csv(holidays_frame(), "h.csv"), "--holidays-key",
                       "regio"),
                   f"{path}: holidays key column 'regio' not found", "did you mean 'region'?")

    one_line_error(run(path, *common, "--holidays-key", "region"),
                   "--holidays-key names the key column of a holidays file: pass --holidays-file too")

    countries_table = countries()
    countries_table.loc[countries_table["store"] == "gb1", "country"] = "England"
    one_line_error(run(write_csv(countries_table, "countries.csv"), *common, "--holidays-col", "country"),
                   "column 'country' (--holidays-col) holds 'England' for series store=gb1, not a country the holidays "
                   "package knows")


def test_series_of_one_region_share_its_rows_and_a_key_column_can_be_an_id_col(tmp_path, write_csv):
    from forecast.config import ForecastConfig
    from forecast.sources import load_series

    table = pd.concat([stores(), stores().query("store == 's1'").assign(store="s4")])  # s4: north too
    keyed = write_csv(holidays_frame(), "holidays.csv")
    _, series, notes, model = load_series(table, ForecastConfig(id_cols=("store",), holidays_file=keyed,
                                                                holidays_keys=("region",)))
    by_store = {s.key[0]: s.holiday_table for s in series}
    assert model.holiday_table == ()  # nothing for every series: each its own
    assert by_store["s1"] is by_store["s4"] and len(by_store["s1"]) == len(EVENTS["north"])  # one tuple, shared
    assert {h for h, _, _, _ in by_store["s2"]} == {"event_south"} and by_store["s3"] == ()
    assert notes == [f"1 series have no rows in {keyed} (e.g. region='west'): they get no holidays from it"]

    by_id = write_csv(pd.DataFrame({"store": ["s2"], "holiday": ["refit"], "ds": ["2024-02-01"]}), "by_store.csv")
    _, series, notes, _ = load_series(table, ForecastConfig(id_cols=("store",), holidays_file=by_id,
                                                            holidays_keys=("store",)))
    assert {s.key[0]: s.holiday_table for s in series}["s2"] == (("refit", "2024-02-01", 0, 0),)
    assert sum(s.holiday_table == () for s in series) == 3


@pytest.mark.slow
def test_workers_that_read_their_own_series_get_their_holidays_too(tmp_path, write_csv):
    path = tmp_path / "stores.parquet"
    stores().to_parquet(path)
    keyed = write_csv(holidays_frame(), "holidays.csv")
    args = ("--id-col", "store", "--horizon", HORIZON, "--holidays-file", keyed, "--holidays-key", "region")
    result = runner.invoke(app, ["run", str(path), *map(str, args), "--n-jobs", "2", "-q", "--workers-read",
                                 "--uncertainty-samples", "0", "--out", str(tmp_path / "wr")])
    assert result.exit_code == 0, result.output
    assert run(path, *args, "--out", tmp_path / "local").exit_code == 0
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "wr" / "forecasts.parquet").drop(columns="run_id"),
                                  pd.read_parquet(tmp_path / "local" / "forecasts.parquet").drop(columns="run_id"))


def test_a_country_column_that_changes_within_a_series_is_one_line(tmp_path, write_csv):
    table = countries()
    table.loc[(table["store"] == "us1") & (table["ds"] >= "2024-01-01"), "country"] = "CA"
    one_line_error(run(write_csv(table), "--id-col", "store", "--horizon", 7, "--holidays-col", "country", "--out",
                       tmp_path / "o"),
                   "column 'country' (--holidays-col) has more than one value in series store=us1: 'US' and 'CA'")
    one_line_error(run(write_csv(table), "--id-col", "store", "--horizon", 7, "--holidays-col", "country",
                       "--holidays", "US", "--out", tmp_path / "o"),
                   "--holidays and --holidays-col both give the country")
