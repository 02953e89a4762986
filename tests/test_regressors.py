"""Extra regressors with future values from --future, a holidays file, and logistic growth: real Prophet fits."""

import numpy as np
import pandas as pd
from typer.testing import CliRunner

from forecast.cli import app

runner = CliRunner()
DAYS = 90


def driven_table() -> tuple[pd.DataFrame, pd.DataFrame]:
    """Two series whose demand rises 4 per unit of price_cut; the future has a cut for A and none for B."""
    rng = np.random.default_rng(5)
    ds = pd.date_range("2024-01-01", periods=DAYS)
    frames, future = [], []
    for key in ("A", "B"):
        cut = rng.integers(0, 3, DAYS).astype(float)
        y = 20 + 4 * cut + rng.normal(0, 0.5, DAYS)
        frames.append(pd.DataFrame({"unique_id": key, "ds": ds, "y": y, "price_cut": cut, "cap": 40.0}))
        fds = pd.date_range(ds[-1], periods=8)[1:]
        future.append(pd.DataFrame({"unique_id": key, "ds": fds, "price_cut": 2.0 if key == "A" else 0.0,
                                    "cap": 40.0}))
    return pd.concat(frames), pd.concat(future)


def run(*args):
    return runner.invoke(app, ["run", *map(str, args), "--n-jobs", "1", "-q", "--uncertainty-samples", "0"])


def test_regressor_moves_the_forecast_the_expected_way(tmp_path, write_csv):
    history, future = driven_table()
    out = tmp_path / "out"
    result = run(write_csv(history), "--horizon", 7, "--regressor", "price_cut",
                 "--future", write_csv(future, "future.csv"), "--out", out)
    assert result.exit_code == 0, result.output
    fc = pd.read_parquet(out / "forecasts.parquet").groupby("unique_id")["yhat"].mean()
    assert fc["A"] - fc["B"] > 6  # a cut of 2 adds about 8
    assert abs(fc["A"] - 28) < 2 and abs(fc["B"] - 20) < 2


def test_missing_future_values_fail_that_series_only(tmp_path, write_csv):
    history, future = driven_table()
    future = future[~((future["unique_id"] == "B") & (future["ds"] >= "2024-04-03"))]  # B lacks 4 of 7 days
    out = tmp_path / "out"
    result = run(write_csv(history), "--horizon", 7, "--regressor", "price_cut",
                 "--future", write_csv(future, "future.csv"), "--out", out)
    assert result.exit_code == 3, result.output
    assert pd.read_parquet(out / "forecasts.parquet")["unique_id"].unique().tolist() == ["A"]
    errors = pd.read_csv(out / "errors.csv")
    assert errors["unique_id"].tolist() == ["B"] and errors["stage"].tolist() == ["future"]
    assert ("future values of 'price_cut' are missing for 4 of 7 forecast time(s) (2024-04-03, 2024-04-04, "
            "2024-04-05); add them to --future") in errors["reason"].iloc[0]


def test_regressor_without_future_file_is_a_one_line_error(tmp_path, write_csv):
    history, _ = driven_table()
    result = run(write_csv(history), "--horizon", 7, "--regressor", "price_cut", "--out", tmp_path / "o")
    assert result.exit_code == 1
    assert "Error: column 'price_cut' (--regressor/--cap-col/--floor-col) needs its values past the history: " \
           "pass --future FILE" in result.stderr


def test_logistic_growth_stays_under_the_cap_from_future(tmp_path, write_csv):
    ds = pd.date_range("2024-01-01", periods=DAYS)
    y = 30 / (1 + np.exp(-(np.arange(DAYS) - 40) / 8)) + np.random.default_rng(1).normal(0, 0.3, DAYS)
    history = pd.DataFrame({"unique_id": "A", "ds": ds, "y": y, "cap": 30.0})
    future = pd.DataFrame({"unique_id": "A", "ds": pd.date_range(ds[-1], periods=61)[1:], "cap": 30.0})
    out = tmp_path / "out"
    result = run(write_csv(history), "--horizon", 60, "--growth", "logistic", "--cap-col", "cap",
                 "--future", write_csv(future, "future.csv"), "--out", out)
    assert result.exit_code == 0, result.output
    yhat = pd.read_parquet(out / "forecasts.parquet")["yhat"]
    assert yhat.max() <= 30.5 and yhat.iloc[-1] > 28
    assert "--growth logistic needs --cap-col" in run(write_csv(history), "--horizon", 3, "--growth", "logistic",
                                                      "--out", tmp_path / "o").stderr


def test_holidays_file_adds_the_holiday_effect(tmp_path, write_csv):
    ds = pd.date_range("2024-01-01", periods=DAYS)
    promo = pd.to_datetime(["2024-01-10", "2024-02-10", "2024-03-10", "2024-04-10"])
    y = 10 + np.random.default_rng(2).normal(0, 0.3, DAYS) + 15 * ds.isin(promo)
    holidays = write_csv(pd.DataFrame({"holiday": "promo", "ds": promo, "lower_window": 0, "upper_window": 0}),
                         "holidays.csv")
    out = tmp_path / "out"
    result = run(write_csv(pd.DataFrame({"unique_id": "A", "ds": ds, "y": y})), "--horizon", 14,
                 "--holidays-file", holidays, "--out", out)
    assert result.exit_code == 0, result.output
    fc = pd.read_parquet(out / "forecasts.parquet").set_index("ds")["yhat"]
    assert fc[pd.Timestamp("2024-04-10")] - fc.drop(pd.Timestamp("2024-04-10")).mean() > 10
    bad = write_csv("holiday,date\npromo,2024-01-10\n", "bad.csv")
    result = run(write_csv(pd.DataFrame({"unique_id": "A", "ds": ds, "y": y})), "--horizon", 3,
                 "--holidays-file", bad, "--out", tmp_path / "o")
    assert result.exit_code == 1 and "holidays column 'ds' not found" in result.stderr


def test_backtest_takes_regressor_values_of_the_test_windows_from_the_input(tmp_path, write_csv):
    history, _ = driven_table()
    out = tmp_path / "bt"
    args = ["backtest", str(write_csv(history)), "--horizon", "7", "--windows", "1", "--n-jobs", "1", "-q",
            "--uncertainty-samples", "0", "--out"]
    with_cut = runner.invoke(app, args + [str(out), "--regressor", "price_cut"])
    assert with_cut.exit_code == 0, with_cut.output  # no --future needed: the windows lie inside the history
    without = runner.invoke(app, args + [str(tmp_path / "bt0")])
    assert without.exit_code == 0, without.output
    mae = {name: pd.read_csv(d / "metrics.csv").query("model == 'prophet'")["mae"].mean()
           for name, d in (("with", out), ("without", tmp_path / "bt0"))}
    assert mae["with"] < mae["without"] / 2  # the regressor explains most of the variation


def test_resume_refuses_a_future_file_changed_since_the_unfinished_run(tmp_path, write_csv):
    import json

    from forecast.checkpoint import make_manifest

    history, future = driven_table()
    table, future_csv = write_csv(history), write_csv(future, "future.csv")
    out = tmp_path / "out"
    (out / "parts").mkdir(parents=True)  # an unfinished run's manifest, as a killed run leaves it
    manifest = make_manifest(table, {}, 2, {"--future": future_csv, "--holidays-file": None})
    (out / "parts" / "manifest.json").write_text(json.dumps(manifest))
    future.assign(price_cut=future["price_cut"] + 1).to_csv(future_csv, index=False)  # tonight's promotions changed
    result = run(table, "--horizon", 7, "--regressor", "price_cut", "--future", future_csv, "--out", out, "--resume")
    assert result.exit_code == 1
    assert f"cannot resume: the --future file's content differs ({future_csv.resolve()})" in result.stderr
