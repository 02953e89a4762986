"""Each option declared once (forecast/options.py): the CLI, the configuration and the job file all follow it."""

import dataclasses
import json

import pytest
from conftest import make_table
from typer.testing import CliRunner

from forecast.cli import app
from forecast.config import BacktestConfig, ForecastConfig, ModelOptions, TriageRules
from forecast.jobfile import SPEC, read_job_file
from forecast.options import BY_NAME, OPTIONS, backtest_config, forecast_config, options_of

runner = CliRunner()

# Configuration fields that are not options: set by the library itself, or nested configurations.
NOT_OPTIONS = {"holiday_table", "model", "triage", "run", "chunks_per_job", "chunk_rows"}


def test_every_configuration_field_is_an_option_or_known_not_to_be():
    # a new model option is one field in ModelOptions plus one declaration: this is what notices a missing one
    for cls in (ModelOptions, TriageRules, ForecastConfig, BacktestConfig):
        for f in dataclasses.fields(cls):
            assert f.name in BY_NAME or f.name in NOT_OPTIONS, f"{cls.__name__}.{f.name} has no declaration"


def test_the_defaults_of_the_options_are_the_configurations():
    for command, build, expected in (("run", forecast_config, ForecastConfig()),
                                     ("backtest", backtest_config, BacktestConfig())):
        values = {option.name: None if option.required else option.field_default for option in options_of(command)}
        assert build(values) == expected, command


def test_the_job_file_keeps_its_tables_and_keys():
    # existing job files keep working: these are the keys job files had before the options were declared once
    before = {
        "input": {"path", "id_col", "time_col", "target_col", "duplicates", "future"},
        "model": {"horizon", "freq", "growth", "seasonality_mode", "yearly_seasonality", "weekly_seasonality",
                  "daily_seasonality", "changepoint_prior_scale", "seasonality_prior_scale", "holidays",
                  "interval_width", "uncertainty_samples", "non_negative", "seed", "include_history",
                  "holidays_file", "regressor", "cap_col", "floor_col", "engine"},
        "run": {"n_jobs", "max_failed_frac", "fit_timeout", "resume", "log_format", "quiet", "backend", "scheduler", "master",
                "connect_timeout", "fallback", "triage", "min_obs", "max_zero_share", "max_gap_share",
                "stale_after", "allow_negative", "max_negative_share", "workers_read", "warm_start",
                "intermittent_model"},
        "output": {"dir", "format", "overwrite", "run_id"},
    }
    before["model"] |= {"holidays_key", "holidays_col"}  # added since: holidays per series
    before["model"] |= {"level", "quantile"}  # since: --level, --quantile
    before["input"] |= {"query", "table"}  # since: a database as the input
    before["output"] |= {"to_db", "to_table"}  # since: tables as the output
    before["run"] |= {"block_rows"}  # since: reading by blocks
    for table, keys in before.items():
        assert {key for key, (_, _, commands) in SPEC[table].items() if "run" in commands} == keys, table
    assert set(SPEC["backtest"]) == {"windows", "step", "model", "season_length"}


def test_choices_are_configs_tuples_on_the_command_line():
    assert BY_NAME["growth"].kind == ("linear", "flat", "logistic")
    result = runner.invoke(app, ["run", "in.csv", "--horizon", "3", "--fallback", "seasonal_naive"])
    assert result.exit_code == 2 and "seasonal-naive" in result.output


def test_a_job_file_serves_run_and_backtest_each_taking_its_own_keys(tmp_path):
    job = tmp_path / "job.toml"
    job.write_text('[model]\nhorizon = 7\n[run]\nfallback = "naive"\n[backtest]\nwindows = 2\n[output]\n'
                   'format = "csv"\n')
    assert read_job_file(job, "run") == {"horizon": 7, "fallback": "naive", "output_format": "csv"}
    assert read_job_file(job, "backtest") == {"horizon": 7, "windows": 2}
    job.write_text("[backtest]\nwindows = 0.5\n")
    with pytest.raises(Exception, match=r"\[backtest\] windows must be an integer"):
        read_job_file(job, "run")  # checked even where it is not used


def test_backtest_takes_a_job_file_and_the_command_line_wins(tmp_path):
    path = tmp_path / "in.csv"
    make_table(n_series=2, days=60).to_csv(path, index=False)
    job = tmp_path / "job.toml"
    job.write_text(f'[input]\npath = "{path.name}"\n[model]\nhorizon = 7\nuncertainty_samples = 0\n'
                   '[backtest]\nwindows = 3\n[run]\nn_jobs = 1\nlog_format = "json"\n')
    out = tmp_path / "bt"
    result = runner.invoke(app, ["backtest", "--config", str(job), "--windows", "2", "--out", str(out), "-q"])
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["windows"], summary["horizon"], summary["config"]["n_jobs"]) == (2, 7, 1)
    missing = runner.invoke(app, ["backtest", str(path), "--out", str(tmp_path / "none")])
    assert missing.exit_code == 2 and "--horizon" in missing.output


def test_scheduler_without_dask_is_a_usage_error_for_backtest_too(table_csv):
    result = runner.invoke(app, ["backtest", str(table_csv), "--horizon", "3", "--scheduler", "tcp://h:8786"])
    assert result.exit_code == 2
    assert result.stderr.strip() == "Error: --scheduler can only be used with --backend dask"


def test_every_declared_option_has_a_flag_on_its_commands():
    import typer

    group = typer.main.get_command(app)
    for option in OPTIONS:
        for command in option.commands:
            params = {p.name: p for p in group.commands[command].params}
            assert option.name in params, (command, option.name)
            if not option.argument:
                assert option.flag in params[option.name].opts, (command, option.flag)
