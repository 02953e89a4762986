"""`forecast run --config job.toml`: the example job file, flags over file, and one-line errors for bad files."""

import json
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from forecast.cli import app
from forecast.jobfile import read_job_file

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "nightly.toml"


@pytest.mark.slow
def test_example_job_file_runs_on_the_sample_with_flags_overriding_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # paths in the file are read from its own folder, not the working directory
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["run", "--config", str(EXAMPLE), "--out", str(out), "--horizon", "7",
                                      "--n-jobs", "2", "--log-format", "text"])
    assert result.exit_code == 0, result.output
    forecasts = pd.read_parquet(out / "forecasts.parquet")
    assert list(forecasts.columns[:2]) == ["store", "item"]  # [input] id_col from the file
    assert forecasts.groupby(["store", "item"]).size().eq(7).all()  # --horizon 7 beat the file's 28
    assert len(forecasts) == 50 * 7 and (forecasts["yhat_lower"] >= 0).all()  # non_negative from the file
    config = json.loads((out / "summary.json").read_text())["config"]
    assert config["fit_timeout"] == 600.0 and config["model"]["seed"] == 1 and config["n_jobs"] == 2
    assert not (tmp_path / "outputs").exists()
    assert "start: 50 series" in result.stderr  # --log-format text beat the file's json


@pytest.mark.parametrize("text,message", [
    ("[model]\nhorizn = 3\n", "unknown key 'horizn' in [model]; did you mean 'horizon'?"),
    ("[model]\nhorizon = \"seven\"\n", "[model] horizon must be an integer; got 'seven' (str)"),
    ("[run]\nresume = 1\n", "[run] resume must be true or false; got 1 (int)"),
    ("[model]\ngrowth = \"exponential\"\n", "[model] growth must be one of linear, flat, logistic; got 'exponential'"),
    ("[inputs]\npath = \"x.csv\"\n", "unknown table or key 'inputs' at the top level"),
    ("horizon = 3\n", "unknown table or key 'horizon' at the top level"),
    ("[model\nhorizon = 3\n", "not a readable TOML job file"),
])
def test_bad_job_file_is_one_line_naming_the_file_and_key(tmp_path, text, message):
    job = tmp_path / "job.toml"
    job.write_text(text)
    result = CliRunner().invoke(app, ["run", str(tmp_path / "in.csv"), "--horizon", "2", "--config", str(job)])
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"Error: {job}: ") and message in lines[0], result.stderr


def test_missing_job_file(tmp_path):
    result = CliRunner().invoke(app, ["run", "--config", str(tmp_path / "nope.toml")])
    assert result.exit_code == 1 and "nope.toml: no such job file" in result.stderr


def test_job_file_settings_map_to_run_parameters(tmp_path):
    job = tmp_path / "jobs" / "job.toml"
    job.parent.mkdir()
    job.write_text('[input]\npath = "data/t.csv"\nid_col = "sku"\n[model]\nchangepoint_prior_scale = 1\n'
                   '[output]\ndir = "/srv/out"\n')
    assert read_job_file(job) == {"input": job.parent / "data" / "t.csv", "id_cols": ["sku"],
                                  "changepoint_prior_scale": 1.0, "out_dir": Path("/srv/out")}


def test_a_job_file_saved_as_utf16_is_one_line_and_a_byte_order_mark_is_read(tmp_path):
    from forecast.errors import ConfigError

    job = tmp_path / "job.toml"
    job.write_text("[model]\nhorizon = 7\n", encoding="utf-16")
    with pytest.raises(ConfigError, match=r"job\.toml: not a readable TOML job file: it is not UTF-8 text .*; save "
                                          r"it as UTF-8$"):
        read_job_file(job)
    job.write_text("[model]\nhorizon = 7\n", encoding="utf-8-sig")  # what some Windows editors save
    assert read_job_file(job) == {"horizon": 7}
