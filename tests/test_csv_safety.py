"""CSV outputs cannot start a cell with a formula taken from a series key or an error text."""

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from forecast.cli import app
from forecast.outputs import csv_safe, csv_unsafe, write_table


@pytest.mark.parametrize("value,expected", [
    ("=HYPERLINK(\"http://x\")", "'=HYPERLINK(\"http://x\")"),
    ("+cmd|' /C calc'!A0", "'+cmd|' /C calc'!A0"),
    ("-2+3", "'-2+3"),
    ("@SUM(A1:A9)", "'@SUM(A1:A9)"),
    ("\t=1", "'\t=1"),
    ("\r=1", "'\r=1"),
    ("-5", "-5"),  # a negative number is a number
    ("-1.5e3", "-1.5e3"),
    ("store-1", "store-1"),
    ("", ""),
])
def test_csv_safe(value, expected):
    assert csv_safe(value) == expected


def test_csv_unsafe_gives_back_the_exact_value():
    for value in ["=a", "'=a", "''=a", "-5", "'-5", "'x", "x", "", "'", 42]:
        assert csv_unsafe(csv_safe(value)) == value


def test_write_table_escapes_text_cells_and_keeps_numbers(tmp_path):
    frame = pd.DataFrame({"unique_id": pd.array(["=1+1", "-7", "ok"], dtype="string"),
                          "reason": ["@evil", "-", np.nan], "value": [-1.5, 2.0, -3.0]})
    path = write_table(frame, tmp_path / "out.csv")
    back = pd.read_csv(path, dtype={"unique_id": str})
    assert back["unique_id"].tolist() == ["'=1+1", "-7", "ok"]
    assert back["reason"].tolist()[:2] == ["'@evil", "'-"]
    assert back["value"].tolist() == [-1.5, 2.0, -3.0] and back["value"].dtype == float
    parquet = pd.read_parquet(write_table(frame, tmp_path / "out.parquet"))
    assert parquet["unique_id"].tolist() == ["=1+1", "-7", "ok"]  # Parquet is not a spreadsheet: unchanged


def test_run_outputs_escape_hostile_keys(tmp_path, write_csv):
    ds = pd.date_range("2024-01-01", periods=40)
    frame = pd.concat([
        pd.DataFrame({"unique_id": "=cmd|' /C calc'!A0", "ds": ds, "y": np.sin(np.arange(40)) + 10}),
        pd.DataFrame({"unique_id": "@SUM(1+1)", "ds": ds, "y": np.nan}),
        pd.DataFrame({"unique_id": "-12", "ds": ds, "y": np.nan}),
    ])
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["run", str(write_csv(frame)), "--horizon", "3", "--n-jobs", "1",
                                      "--format", "csv", "--out", str(out), "-q", "--uncertainty-samples", "0"])
    assert result.exit_code == 3, result.output
    for name in ("forecasts.csv", "timings.csv", "errors.csv"):
        text = (out / name).read_text()
        cells = [cell for line in text.splitlines()[1:] for cell in line.split(",")]
        assert not any(c[:1] in ("=", "+", "@", "\t", "\r") for c in cells), (name, text)
    forecasts = pd.read_csv(out / "forecasts.csv")
    assert set(forecasts["unique_id"]) == {"'=cmd|' /C calc'!A0"}
    errors = pd.read_csv(out / "errors.csv", dtype={"unique_id": str})
    assert sorted(errors["unique_id"]) == ["'@SUM(1+1)", "-12"]
