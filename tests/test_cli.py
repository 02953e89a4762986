"""`forecast run` end to end through typer's CliRunner, with real Prophet fits and real files."""

import json
import shlex
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from conftest import make_table
from typer.testing import CliRunner

from forecast.cli import app

runner = CliRunner()


def run(*args):
    return runner.invoke(app, ["run", *map(str, args)])


def test_run_writes_the_four_files_with_composite_keys(tmp_path, write_csv):
    path = write_csv(make_table(n_series=4, days=90, id_cols=("store", "item")).rename(columns={"ds": "date"}))
    out = tmp_path / "out"
    result = run(path, "--id-col", "store", "--id-col", "item", "--time-col", "date", "--horizon", 7,
                 "--n-jobs", 2, "--out", out, "--quiet")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == ["errors.csv", "forecasts.parquet", "params.parquet", "summary.json",
                                                   "timings.csv"]
    forecasts = pd.read_parquet(out / "forecasts.parquet")
    assert list(forecasts.columns) == ["store", "item", "ds", "yhat", "yhat_lower", "yhat_upper", "model", "cutoff",
                                       "run_id"]
    assert (forecasts["model"] == "prophet").all()
    assert (forecasts["cutoff"] == pd.Timestamp("2024-01-01") + pd.Timedelta(days=89)).all()
    assert (forecasts["run_id"] == "out").all()  # the output directory's name
    assert len(forecasts) == 4 * 7
    assert forecasts.groupby(["store", "item"]).size().tolist() == [7] * 4
    assert forecasts["ds"].min() == pd.Timestamp("2024-01-01") + pd.Timedelta(days=90)
    timings = pd.read_csv(out / "timings.csv")
    assert list(timings.columns) == ["store", "item", "n_obs", "status", "fit_seconds", "predict_seconds",
                                     "cpu_seconds", "worker", "error", "model", "verdict", "engine"]
    assert (timings["status"] == "ok").all() and (timings["fit_seconds"] > 0).all()
    # worker processes of this run (host:pid), at most the two asked for; four series of a few milliseconds each
    # may all be done before the second worker has started (test_core checks how work spreads over workers)
    assert timings["worker"].str.fullmatch(r".+:\d+").all() and 1 <= timings["worker"].nunique() <= 2
    assert list(pd.read_csv(out / "errors.csv").columns) == ["store", "item", "stage", "reason"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "ok"
    assert (summary["series_total"], summary["series_ok"], summary["series_failed"]) == (4, 4, 0)
    assert summary["n_jobs"] == 2 and summary["rows"] == 360
    for key in ("wall_seconds", "cpu_seconds", "series_per_second", "task_cpu_seconds", "task_wall_seconds",
                "speedup", "parallel_efficiency", "speedup_wall", "parallel_efficiency_wall"):
        assert summary[key] > 0
    assert set(summary["stage_seconds"]) == {"read", "fit_predict", "write"}
    assert summary["config"]["model"]["horizon"] == 7
    assert "series/s" in result.stdout and str(out) in result.stdout


def test_one_broken_series_does_not_sink_the_run(tmp_path, write_csv):
    frame = make_table(n_series=3, days=60)
    frame.loc[frame["unique_id"] == "S1", "y"] = np.nan
    out = tmp_path / "out"
    result = run(write_csv(frame), "--horizon", 5, "--n-jobs", 1, "--out", out, "--format", "csv")
    assert result.exit_code == 3, result.output
    forecasts = pd.read_csv(out / "forecasts.csv")
    assert sorted(forecasts["unique_id"].unique()) == ["S0", "S2"]
    errors = pd.read_csv(out / "errors.csv")
    assert errors.to_dict("records") == [{"unique_id": "S1", "stage": "validate", "reason": "all 60 values are missing"}]
    assert json.loads((out / "summary.json").read_text())["status"] == "failed"
    again = run(write_csv(frame), "--horizon", 5, "--n-jobs", 1, "--out", tmp_path / "o2", "--max-failed-frac", 0.5)
    assert again.exit_code == 0


def test_same_seed_gives_identical_forecasts_with_one_and_two_jobs(tmp_path, table_csv):
    outs = []
    for n_jobs in (1, 2):
        out = tmp_path / f"jobs{n_jobs}"
        result = run(table_csv, "--horizon", 5, "--seed", 11, "--n-jobs", n_jobs, "--out", out, "-q",
                     "--uncertainty-samples", 200)
        assert result.exit_code == 0, result.output
        outs.append(pd.read_parquet(out / "forecasts.parquet").drop(columns="run_id"))  # run_id: jobs1, jobs2
    pd.testing.assert_frame_equal(outs[0], outs[1])


@pytest.mark.parametrize("content,args,message", [
    (None, [], "no such file"),
    ("unique_id,date,y\nA,2024-01-01,1\n", [], "time column 'ds' not found; columns are: unique_id, date, y"),
    ("unique_id,ds,y\nA,2024-01-01,abc\n", [], "column 'y' has a value that is not a number: 'abc' at row 1"),
    ("unique_id,ds,y\nA,2024-13-45,1\n", [], "column 'ds' has a value that is not a time: '2024-13-45' at row 1"),
    ("unique_id,ds,y\nA,2024-01-01,1\nA,2024-01-01,2\n", [], "1 duplicate (unique_id, ds) row(s)"),
    ("unique_id,ds,y\n", [], "the table has no data rows"),
    ("unique_id,ds,y\nA,2024-01-01,1\n", ["--holidays", "XX"], "--holidays 'XX' is not a country"),
    ("unique_id,ds,y\nA,2024-01-01,1\n", ["--freq", "fortnightly"], "--freq 'fortnightly' is not a pandas frequency"),
    ("unique_id,ds,y\nA,2024-01-01,1\n", ["--freq=-1D"], "--freq '-1D' does not step forward in time"),
    ("unique_id,ds,y\nA,2024-01-01,1\n", ["--freq", "0D"], "--freq '0D' does not step forward in time"),
    ("unique_id,ds,y\nA,2300-01-01,1\n", [], "column 'ds' has a time outside the range pandas holds"),
    ("unique_id,ds,y\nA,2024-01-01,1\n", ["--horizon", "1000000"], "--horizon 1000000 with 1000 uncertainty "
                                                                    "samples simulates 1,000,000,000 values"),
    ("unique_id,ds,y\nA,2024-01-01,1\n", ["--fit-timeout", "inf"], "--fit-timeout must be a positive number of "
                                                                    "seconds up to 1,000,000"),
    ("unique_id,ds,y\nA,2024-01-01,1,234\n", [], "a row has 4 fields where the header has 3: 'A,2024-01-01,1,234'"),
])
def test_bad_input_is_one_line_exit_1_and_nothing_written(tmp_path, content, args, message):
    path = tmp_path / "in.csv"
    if content is not None:
        path.write_text(content)
    out = tmp_path / "out"
    result = run(path, "--horizon", 3, "--out", out, *args)
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and message in lines[0], result.stderr
    assert "Traceback" not in result.output
    assert not out.exists()


def test_finished_run_is_not_overwritten_without_overwrite(tmp_path, table_csv):
    out = tmp_path / "out"
    assert run(table_csv, "--horizon", 2, "--n-jobs", 1, "--out", out, "-q").exit_code == 0
    before = (out / "summary.json").read_text()
    result = run(table_csv, "--horizon", 2, "--n-jobs", 1, "--out", out, "-q")
    assert result.exit_code == 1
    assert "holds a finished run (summary.json); pass --overwrite" in result.stderr
    assert (out / "summary.json").read_text() == before
    assert run(table_csv, "--horizon", 2, "--n-jobs", 1, "--out", out, "-q", "--overwrite").exit_code == 0


def test_usage_errors_exit_2(table_csv):
    assert run(table_csv).exit_code == 2  # --horizon missing
    assert run(table_csv, "--horizon", 0).exit_code == 2
    assert run(table_csv, "--horizon", 3, "--growth", "exponential").exit_code == 2


def test_every_command_has_help_with_an_example():
    for name in ("run", "check", "version"):
        result = runner.invoke(app, [name, "--help"])
        assert result.exit_code == 0
        assert "Example: forecast " + name in " ".join(result.output.split())
    assert "Exit codes" in runner.invoke(app, ["run", "--help"]).output


@pytest.mark.slow
def test_python_dash_m_forecast_runs_and_is_quiet_under_cron(tmp_path, table_csv):
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "forecast", "run", str(table_csv), "--horizon", "3", "--out",
                           str(out), "--n-jobs", "2"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    # not a terminal: a few plain progress lines, nothing from cmdstanpy or Prophet
    assert all(line.startswith(("start: ", "progress: ", "end: ")) for line in proc.stderr.splitlines()), proc.stderr
    assert "series ok" in proc.stdout


def test_the_forecast_script_imports_no_cli_until_called_so_spawned_workers_do_not():
    # spawn runs the main script again in every worker: the installed `forecast` script's import line must not
    # pull in typer or rich (about 0.1 s of each worker's start)
    from importlib.metadata import entry_points

    (script,) = entry_points(group="console_scripts", name="forecast")
    code = f"import sys; import {script.module}; print(sorted(m for m in ('typer', 'rich') if m in sys.modules))"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"
    assert callable(script.load())


def test_fit_timeout_with_dask_is_refused_up_front(tmp_path, table_csv):
    result = run(table_csv, "--horizon", 3, "--backend", "dask", "--fit-timeout", 5, "--out", tmp_path / "out")
    assert result.exit_code == 1
    assert result.stderr.strip() == ("Error: --fit-timeout works with --backend local only: a Dask worker cannot "
                                     "be stopped mid-task from here")
    assert not (tmp_path / "out").exists()


def test_plain_log_keeps_one_record_per_line_when_a_key_holds_a_line_break():
    import io

    from forecast.progress import PlainProgress

    stream = io.StringIO()
    PlainProgress(stream).event("failed", {"series": {"unique_id": "A\nB"}, "stage": "validate", "reason": "why"})
    assert stream.getvalue() == "failed: unique_id=A\\nB: validate: why\n"


def test_resume_of_a_finished_run_is_done_if_it_is_the_same_job(tmp_path, table_csv):
    # a scheduler retrying a job that had finished (killed just after writing) passes --resume again
    out = tmp_path / "out"
    args = (table_csv, "--horizon", 3, "--engine", "fast", "--out", out, "--resume")
    assert run(*args).exit_code == 0
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    again = run(*args)
    assert again.exit_code == 0, again.output
    assert "holds this run, finished: nothing to resume" in again.stderr
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before
    other = run(table_csv, "--horizon", 4, "--engine", "fast", "--out", out, "--resume")
    assert other.exit_code == 1
    assert "holds a finished run, and the setting model.horizon differs (3 then, 4 now); pass --overwrite" in other.stderr


def test_a_new_run_leaves_no_outputs_of_the_run_it_replaced(tmp_path, table_csv):
    out = tmp_path / "out"
    assert run(table_csv, "--horizon", 3, "--engine", "fast", "--out", out, "-q").exit_code == 0
    assert {"forecasts.parquet", "params.parquet"} <= {p.name for p in out.iterdir()}
    assert run(table_csv, "--horizon", 3, "--engine", "prophet", "--format", "csv", "--out", out, "-q",
               "--overwrite", "--n-jobs", 1).exit_code == 0
    names = {p.name for p in out.iterdir()}
    assert "forecasts.csv" in names and not names & {"forecasts.parquet", "params.parquet"}


def test_an_out_dir_that_cannot_be_made_is_one_line(tmp_path, table_csv):
    (tmp_path / "afile").write_text("")
    result = run(table_csv, "--horizon", 3, "--engine", "fast", "--out", tmp_path / "afile" / "sub")
    assert result.exit_code == 1
    assert result.stderr.strip() == f"Error: {tmp_path / 'afile' / 'sub'}: Not a directory"


def test_a_lock_file_that_is_not_a_lock_is_taken_over_once_old(tmp_path, table_csv):
    import os

    out = tmp_path / "out"
    out.mkdir()
    (out / ".lock").write_text("[1, 2]")  # valid JSON, but no run's record
    os.utime(out / ".lock", (0, 0))
    result = run(table_csv, "--horizon", 3, "--engine", "fast", "--out", out, "-q")
    assert result.exit_code == 0, result.output
    assert not (out / ".lock").exists()


def test_version_names_forecast_prophet_and_python():
    from importlib.metadata import version

    result = runner.invoke(app, ["version"])
    assert result.exit_code == 0
    assert f"prophet {version('prophet')}" in result.output and "python 3." in result.output


def test_a_run_whose_stdout_reader_goes_away_keeps_its_exit_code(tmp_path, table_csv):
    # `forecast run ... | head -1` under a scheduler with pipefail (here `| true`, a reader gone before the table is
    # printed): the run is written, so its code is 0, not 1
    script = (f"{shlex.quote(sys.executable)} -m forecast run {shlex.quote(str(table_csv))} --horizon 3 --n-jobs 1 "
              f"--out {shlex.quote(str(tmp_path / 'out'))} 2>/dev/null | true; "
              "echo ${PIPESTATUS[0]}")
    proc = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.stdout.strip() == "0"
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["status"] == "ok"
