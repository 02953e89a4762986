"""`forecast backtest` end to end: real Prophet fits on generated seasonal series, through the process pool."""

import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from forecast.cli import app

runner = CliRunner()


def seasonal_table(n_series: int = 3, days: int = 150, seed: int = 0) -> pd.DataFrame:
    """Daily series with a trend and a strong weekly cycle: a seasonal-naive forecast lags the trend."""
    rng = np.random.default_rng(seed)
    t = np.arange(days)
    frames = []
    for i in range(n_series):
        y = 50 + 10 * i + 0.2 * t + 10 * np.sin(2 * np.pi * t / 7) + rng.normal(0, 1.5, days)
        frames.append(pd.DataFrame({"unique_id": f"S{i}", "ds": pd.date_range("2024-01-01", periods=days), "y": y}))
    return pd.concat(frames, ignore_index=True)


def test_prophet_beats_seasonal_naive_on_seasonal_series_and_files_are_written(tmp_path, write_csv):
    short = pd.DataFrame({"unique_id": "short", "ds": pd.date_range("2024-01-01", periods=20), "y": np.arange(20.0)})
    path = write_csv(pd.concat([seasonal_table(), short]))
    out = tmp_path / "bt"
    result = runner.invoke(app, ["backtest", str(path), "--horizon", "14", "--windows", "2", "--n-jobs", "2",
                                 "--uncertainty-samples", "200", "--out", str(out), "--quiet",
                                 "--max-failed-frac", "0.5"])
    assert result.exit_code == 0, result.output
    assert {"metrics.csv", "backtest.parquet", "summary.json", "timings.csv", "errors.csv"} <= {
        p.name for p in out.iterdir()}

    rows = pd.read_parquet(out / "backtest.parquet")
    assert list(rows.columns) == ["unique_id", "window", "cutoff", "ds", "y", "yhat", "yhat_lower", "yhat_upper",
                                  "yhat_naive"]
    assert sorted(rows["unique_id"].unique()) == ["S0", "S1", "S2"]
    assert rows.groupby("unique_id").size().tolist() == [28] * 3  # 2 windows x 14
    first = rows[rows["unique_id"] == "S0"]
    assert (first["ds"] > first["cutoff"]).all()
    assert first.groupby("window")["cutoff"].first().tolist() == [pd.Timestamp("2024-05-01"),
                                                                   pd.Timestamp("2024-05-15")]

    scores = pd.read_csv(out / "metrics.csv")
    assert set(scores["model"]) == {"prophet", "seasonal_naive"}
    by_model = scores.set_index(["unique_id", "model"])
    for key in ("S0", "S1", "S2"):
        assert by_model.loc[(key, "prophet"), "mase"] < by_model.loc[(key, "seasonal_naive"), "mase"]
        assert by_model.loc[(key, "prophet"), "season_length"] == 7

    summary = json.loads((out / "summary.json").read_text())
    overall = summary["overall"]
    assert overall["prophet"]["wape"] < overall["seasonal_naive"]["wape"]
    assert overall["prophet"]["mase"] < overall["seasonal_naive"]["mase"] < 2
    assert 0 < overall["prophet"]["coverage"] <= 1 and overall["seasonal_naive"]["coverage"] is None
    assert (summary["series_ok"], summary["series_failed"]) == (3, 1)
    errors = pd.read_csv(out / "errors.csv")
    assert errors["unique_id"].tolist() == ["short"] and "20 rows are too few" in errors["reason"].iloc[0]
    # timings name the model and engine of the series that were scored, and none for the one never fitted
    timings = pd.read_csv(out / "timings.csv", keep_default_na=False).set_index("unique_id")
    assert (timings.loc["short", "model"], timings.loc["short", "engine"]) == ("", "")
    scored = timings.drop(index="short")
    assert (scored["model"] == "prophet").all() and (scored["engine"] == "fast").all()

    # the printed table: one line per model, with the same figures
    lines = result.stdout.splitlines()
    assert lines[0].split()[:4] == ["model", "n", "wape", "mase"]  # led by the metrics that stay meaningful
    assert lines[1].startswith("prophet (fast) ") and lines[2].startswith("seasonal_naive")  # the engine named
    assert f"{overall['prophet']['mae']:.4g}" in lines[1]


def test_backtest_help_has_an_example_and_shares_the_input_options():
    result = runner.invoke(app, ["backtest", "--help"])
    assert result.exit_code == 0
    text = " ".join(result.output.split())
    assert "Example: forecast backtest" in text
    for option in ("--id-col", "--time-col", "--target-col", "--duplicates", "--freq", "--windows", "--step"):
        assert option in text


def test_backtest_input_error_is_one_line(tmp_path):
    path = tmp_path / "in.csv"
    path.write_text("unique_id,date,y\nA,2024-01-01,1\n")
    result = runner.invoke(app, ["backtest", str(path), "--horizon", "3", "--out", str(tmp_path / "o")])
    assert result.exit_code == 1
    assert result.stderr.strip().startswith("Error: ") and "time column 'ds' not found" in result.stderr
    assert not (tmp_path / "o").exists()


@pytest.mark.slow
def test_backtest_with_an_engine_scores_its_windows_and_says_which_engine_fitted_them(tmp_path, write_csv):
    path = write_csv(seasonal_table(n_series=2, days=120, seed=1))
    outs = {}
    for engine in ("prophet", "stan", "fast"):
        outs[engine] = tmp_path / engine
        result = runner.invoke(app, ["backtest", str(path), "--horizon", "7", "--windows", "2", "--n-jobs", "1",
                                     "--seed", "1", "--uncertainty-samples", "100", "--engine", engine,
                                     "--out", str(outs[engine]), "--quiet"])
        assert result.exit_code == 0, result.output
        assert pd.read_csv(outs[engine] / "timings.csv")["engine"].tolist() == [engine] * 2
    rows = {e: pd.read_parquet(o / "backtest.parquet") for e, o in outs.items()}
    # stan is stock Prophet's fit, draws included; fast is the exact optimum of the same model: close to it
    for name in ("yhat", "yhat_lower", "yhat_upper"):
        np.testing.assert_allclose(rows["stan"][name], rows["prophet"][name], rtol=1e-6)
    scale = rows["prophet"]["y"].abs().max()
    assert (rows["fast"]["yhat"] - rows["prophet"]["yhat"]).abs().max() <= 0.05 * scale
    overall = {e: json.loads((o / "summary.json").read_text())["overall"] for e, o in outs.items()}
    assert overall["fast"]["prophet"]["wape"] < overall["fast"]["seasonal_naive"]["wape"]
