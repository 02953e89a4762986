"""Every option of `run`, `backtest` and `check`, declared once: the CLI, the job file and the docs read them here.

An option's name is the configuration field it sets (ForecastConfig, ModelOptions, TriageRules or
BacktestConfig), so a configuration is built from the options' values by name; its default is that field's.
Options with no field (`input`, `quiet`, `log_format`, `job_file`, `triage`) steer the command itself. The group
is the job file's table. No typer here: the CLI turns these into its parameters.

A new model option is one field in ModelOptions plus one `Option(...)` line below.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal, Mapping

from .backends import backend_help
from .config import (
    BACKEND_NAMES,
    DUPLICATE_POLICIES,
    ENGINES,
    FALLBACKS,
    GROWTHS,
    OUTPUT_FORMATS,
    SEASONALITY_MODES,
    TOGGLES,
    BacktestConfig,
    ForecastConfig,
    ModelOptions,
    TriageRules,
)
from .models import model_names
from .progress import LOG_FORMATS

Command = Literal["run", "backtest", "check"]
Group = Literal["input", "model", "run", "output", "backtest"]
# What a value is, for the CLI's type and the job file's check; a tuple of strings is a choice among them.
# "table" is the input: a file's path, or (for a source registered for them) a URI such as postgresql://..., so it
# is kept as text rather than a Path, which would fold the URI's "//".
Kind = Literal["int", "float", "str", "bool", "path", "table", "names", "numbers"]

COMMANDS: tuple[Command, ...] = ("run", "backtest", "check")
# The job file's tables, in the order its messages name them.
GROUPS: tuple[Group, ...] = ("input", "model", "run", "output", "backtest")
# Where an option's default comes from: the first of these classes that has a field of its name.
_OWNERS = (ModelOptions, TriageRules, ForecastConfig, BacktestConfig)


@dataclass(frozen=True)
class Option:
    """One option of the commands that read a table.

    Args:
        name: the configuration field it sets, and the CLI parameter's name.
        group: the job file table it goes in.
        kind: its value's type, or the tuple of allowed values.
        help: the one-line help of --help.
        commands: the commands that take it.
        flags: the command-line names; empty: --name with dashes (and --no-name for a bool).
        key: the job file key; "": the first flag without dashes; None: not in a job file.
        envvar: an environment variable that sets it.
        default: for an option whose value is not its field's (`triage` switches TriageRules on); the field's
            default otherwise.
        required: needed, from the command line or (where the command takes --config) a job file.
        argument: a positional argument rather than an option.
        min, max: the range the CLI accepts.
        per_command: help or envvar that differ for a command, e.g. {"check": {"envvar": None}}.
    """

    name: str
    group: Group
    kind: Kind | tuple[str, ...]
    help: str
    commands: tuple[Command, ...] = ("run", "backtest")
    flags: tuple[str, ...] = ()
    key: str | None = ""
    envvar: str | None = None
    default: Any = None
    required: bool = False
    argument: bool = False
    min: float | None = None
    max: float | None = None
    per_command: Mapping[Command, Mapping[str, Any]] = field(default_factory=dict)

    @property
    def flag(self) -> str:
        """The name people type: --id-col, --out, INPUT."""
        if self.argument:
            return self.name.upper()
        return self.flags[0] if self.flags else "--" + self.name.replace("_", "-")

    @property
    def job_key(self) -> str | None:
        """The key in the job file's table, or None."""
        if self.key == "":
            return self.flag.lstrip("-").replace("-", "_").lower()
        return self.key

    @property
    def owner(self) -> type | None:
        """The configuration class whose field this option sets, or None."""
        return next((cls for cls in _OWNERS if self.name in _field_names(cls)), None)

    @property
    def field_default(self) -> Any:
        """The default: the declared one, else the configuration field's (None for a tuple of names, which leaves
        the field's own)."""
        owner = self.owner
        if owner is None or self.default is not None:
            return self.default
        value = {f.name: f.default for f in dataclasses.fields(owner)}[self.name]
        return None if isinstance(value, tuple) else value

    def for_command(self, command: Command) -> "Option":
        """The option as `command` shows it (its own help or envvar where they differ)."""
        return dataclasses.replace(self, **self.per_command[command]) if command in self.per_command else self


def _field_names(cls: type) -> set[str]:
    return {f.name for f in dataclasses.fields(cls)}


OPTIONS: tuple[Option, ...] = (
    # [input]
    Option("input", "input", "table", "Long table: .csv, .csv.gz or .parquet, one row per series and time; or a "
           "database URI with --query or --table.",
           commands=COMMANDS, key="path", required=True, argument=True),
    Option("id_cols", "input", "names", "Series key column; repeat for a composite key (--id-col store --id-col "
           "item).", commands=COMMANDS, flags=("--id-col",)),
    Option("time_col", "input", "str", "Timestamp column.", commands=COMMANDS),
    Option("target_col", "input", "str", "Value column to forecast.", commands=COMMANDS),
    Option("duplicates", "input", DUPLICATE_POLICIES, "Repeated (key, time) rows: error, or combine by sum, mean "
           "or last.", commands=COMMANDS),
    Option("query", "input", "str", "SQL query whose rows are the table, when INPUT is a database "
           "(postgresql://USER@HOST:PORT/DB, sqlite:///file.db or duckdb:///file.duckdb).", commands=COMMANDS),
    Option("db_table", "input", "str", "Database table read whole, when INPUT is a database (instead of --query).",
           commands=COMMANDS, flags=("--table",)),
    Option("future_path", "input", "path", "Table of future values of the --regressor, --cap-col and --floor-col "
           "columns (same key and time columns as INPUT).", commands=("run",), flags=("--future",)),
    # [model]
    Option("horizon", "model", "int", "Steps to forecast past each series' last timestamp.", required=True, min=1,
           per_command={"backtest": {"help": "Steps forecast from each origin."}}),
    Option("freq", "model", "str", "pandas frequency (D, W-SUN, MS, h); default: the table's, inferred once (a "
           "series off its grid: its own).", commands=COMMANDS),
    Option("growth", "model", GROWTHS, "Trend: linear, flat, or logistic (needs --cap-col)."),
    Option("seasonality_mode", "model", SEASONALITY_MODES, "Seasonalities added to the trend, or multiplying it."),
    Option("yearly_seasonality", "model", TOGGLES, "Yearly seasonality: auto (Prophet decides from the history), "
           "on or off."),
    Option("weekly_seasonality", "model", TOGGLES, "Weekly seasonality: auto, on or off."),
    Option("daily_seasonality", "model", TOGGLES, "Daily seasonality: auto, on or off."),
    Option("changepoint_prior_scale", "model", "float", "Trend flexibility: larger lets the trend bend more.",
           min=0.0),
    Option("seasonality_prior_scale", "model", "float", "Seasonality strength: smaller damps the seasonal terms.",
           min=0.0),
    Option("holidays", "model", "str", "Country code for Prophet's built-in holidays, e.g. US."),
    Option("holidays_file", "model", "path", "Table of holidays: holiday, ds, and optionally lower_window, "
           "upper_window."),
    Option("holidays_keys", "model", "names", "Key column of --holidays-file (a region, a state, an --id-col): each "
           "series gets the rows of its own value; an --id-col or an INPUT column constant per series. Repeatable.",
           flags=("--holidays-key",)),
    Option("holidays_col", "model", "str", "INPUT column of each series' country code for Prophet's built-in "
           "holidays (constant per series; blank: none)."),
    Option("regressors", "model", "names", "Input column to use as an extra regressor; repeatable. Run needs its "
           "future values in --future.", flags=("--regressor",),
           per_command={"backtest": {"help": "Input column to use as an extra regressor; repeatable (the test "
                                             "windows' values come from INPUT)."}}),
    Option("cap_col", "model", "str", "Column of the capacity for --growth logistic."),
    Option("floor_col", "model", "str", "Column of the floor for --growth logistic."),
    Option("interval_width", "model", "float", "Width of the yhat_lower..yhat_upper interval."),
    Option("levels", "model", "numbers", "Another interval level in percent, from the same draws; repeatable "
           "(--level 80 --level 95 adds yhat_lower_80, yhat_upper_80, yhat_lower_95, yhat_upper_95).",
           flags=("--level",),
           per_command={"backtest": {"help": "Another interval level in percent, from the same draws; repeatable. "
                                             "Each level's coverage is scored (coverage_80 in metrics.csv)."}}),
    Option("quantiles", "model", "numbers", "A quantile to forecast, from the same draws; repeatable (--quantile "
           "0.5 --quantile 0.9 adds yhat_q50, yhat_q90).", flags=("--quantile",),
           per_command={"backtest": {"help": "A quantile to forecast, from the same draws; repeatable. The share of "
                                             "actuals at or below each is scored (below_q90 in metrics.csv)."}}),
    Option("uncertainty_samples", "model", "int", "Draws for the interval; 0 turns intervals off.", min=0),
    Option("non_negative", "model", "bool", "Clip forecasts and bounds at 0 (demand)."),
    Option("seed", "model", "int", "Make intervals reproducible (per series, whatever --n-jobs)."),
    Option("include_history", "model", "bool", "Also write the fitted values for the history.", commands=("run",)),
    Option("engine", "model", ENGINES, "fast (Prophet's model solved to its exact optimum in-process), stan "
           "(Prophet's own optimizer, direct: stock Prophet's parameters) or prophet (stock Prophet, exactly).",
           envvar="FORECAST_ENGINE"),
    # [backtest]
    Option("windows", "backtest", "int", "Forecast origins per series, the last `horizon` before its end.",
           commands=("backtest",), min=1),
    Option("step", "backtest", "int", "Steps between origins [default: the horizon].", commands=("backtest",),
           min=1),
    Option("models", "backtest", "names", f"Model to score ({', '.join(model_names())}), repeatable; the first "
           "is the one under test, its interval scored too [default: prophet, then seasonal-naive].",
           commands=("backtest",), flags=("--model",)),
    Option("season_length", "backtest", "int", "Seasonal-naive period in steps [default: 7 daily, 24 hourly, 52 "
           "weekly, 12 monthly].", commands=("backtest",), min=1),
    # [run]
    Option("n_jobs", "run", "int", "Worker processes: -1 all usable cores, 1 in-process.", envvar="FORECAST_N_JOBS"),
    Option("backend", "run", BACKEND_NAMES, backend_help()),
    Option("scheduler", "run", "str", "Dask scheduler address, e.g. tcp://host:8786; needs --backend dask.  [env "
           "var: FORECAST_SCHEDULER]"),
    Option("master", "run", "str", "Spark master URL, e.g. spark://host:7077, yarn or k8s://https://host:443; "
           "needs --backend spark.", commands=("run",)),
    Option("connect_timeout", "run", "float", "Seconds to wait for the Dask scheduler and a first worker.",
           min=0.1),
    Option("block_rows", "run", "int", "Rows read at a time: the table is read, checked and forecast in blocks of "
           "whole series, so memory does not grow with it; 0 reads it whole.", commands=("run",), min=0),
    Option("workers_read", "run", "bool", "Workers read their own series from INPUT (Parquet, at the same path on "
           "every worker) instead of receiving them from this process.", commands=("run",)),
    Option("warm_start", "run", "path", "Output directory of an earlier --engine stan/fast run: start each series "
           "from its parameters.", commands=("run",)),
    Option("fit_timeout", "run", "float", "Seconds one series may take; past it, it fails with reason timeout "
           "(runs in worker processes, even with --n-jobs 1; --backend local only).", commands=("run",)),
    Option("fallback", "run", FALLBACKS, "Simple forecast for a series that fails (and for triaged ones, but "
           f"intermittent ones: --intermittent-model): {', '.join(FALLBACKS)}.", commands=("run",)),
    Option("triage", "run", "bool", "Apply the rules of `forecast check`: fit, fallback (intermittent series "
           "--intermittent-model, others seasonal-naive unless --fallback) or skip.", commands=("run",), default=False),
    Option("intermittent_model", "run", FALLBACKS[1:], "Model for a series --triage calls intermittent "
           f"(whatever --fallback is): {', '.join(FALLBACKS[1:])}.", commands=("run",)),
    Option("min_obs", "run", "int", "Fewer values than this: a new series, sent to fallback (by run too, without "
           "--triage; 2 fits every series).", commands=("run", "check"), min=1),
    Option("max_zero_share", "run", "float", "A larger share of zeros: intermittent, sent to --intermittent-model "
           "(with run --triage).",
           commands=("run", "check"), min=0.0, max=1.0),
    Option("max_gap_share", "run", "float", "A larger share of missing periods inside its range: gappy, sent to "
           "fallback.", commands=("run", "check"), min=0.0, max=1.0),
    Option("stale_after", "run", "float", "Last value more periods than this before the table's end: stale, "
           "skipped.", commands=("run", "check"), min=0.0),
    Option("allow_negative", "run", "bool", "Fit series with negative values, whatever their share.",
           commands=("run", "check")),
    Option("max_negative_share", "run", "float", "A larger share of negative values: sent to fallback (a few "
           "returns are fitted).", commands=("run", "check"), min=0.0, max=1.0),
    Option("max_failed_frac", "run", "float", "Share of failed series still accepted with exit code 0.", min=0.0,
           max=1.0),
    Option("resume", "run", "bool", "Finish the unfinished run in --out (same input and settings): fit only the "
           "series it lacks.", flags=("--resume",)),
    Option("log_format", "run", LOG_FORMATS, "stderr: text (a bar on a terminal, plain lines otherwise) or json "
           "(one object per line).", envvar="FORECAST_LOG_FORMAT", default="text"),
    Option("quiet", "run", "bool", "No progress or notes; only the final table.", flags=("--quiet", "-q"),
           default=False),
    Option("job_file", "run", "path", "TOML job file with [input], [model], [run], [output] (and [backtest]) "
           "tables; flags given here override it.", flags=("--config",), key=None),
    # [output]
    Option("out_dir", "output", "path", "Output directory [default: outputs/<UTC timestamp>].", commands=COMMANDS,
           flags=("--out",), key="dir", envvar="FORECAST_OUT",
           per_command={"check": {"help": "Directory for profile.csv [default: outputs/<UTC timestamp>-check].",
                                  "envvar": None}}),
    Option("output_format", "output", OUTPUT_FORMATS, "Forecasts file format.", commands=("run",),
           flags=("--format",)),
    Option("overwrite", "output", "bool", "Replace a finished or unfinished run in --out."),
    Option("run_id", "output", "str", "Value of the forecasts' run_id column [default: the output directory's "
           "name].", commands=("run",)),
    Option("to_db", "output", "str", "Database that also receives the forecasts and each series' record, in one "
           "transaction (postgresql://USER@HOST:PORT/DB, sqlite:///file.db or duckdb:///file.duckdb).",
           commands=("run",)),
    Option("to_table", "output", "str", "Table of the forecasts in --to-db (the series' records go to "
           "<table>_runs); a rerun of a run id replaces its rows.", commands=("run",)),
)

BY_NAME: dict[str, Option] = {option.name: option for option in OPTIONS}


def options_of(command: Command) -> list[Option]:
    """The options `command` takes, as it shows them, in declaration order."""
    return [option.for_command(command) for option in OPTIONS if command in option.commands]


def _fields_of(cls: type, values: Mapping[str, Any], leave: tuple[str, ...] = ()) -> dict[str, Any]:
    """The values of `cls`'s fields found in `values`, as the configuration holds them: a choice as its text, names
    as a tuple; None or no names (not given) leaves the field's default."""
    picked = {}
    for name in _field_names(cls) - set(leave):
        value = values.get(name)
        if value is None or value == [] or value == ():
            continue
        value = getattr(value, "value", value)  # a CLI Enum member
        picked[name] = tuple(value) if isinstance(value, list) else value
    return picked


def triage_rules(values: Mapping[str, Any]) -> TriageRules:
    """The triage thresholds among the options' values."""
    return TriageRules(**_fields_of(TriageRules, values))


def forecast_config(values: Mapping[str, Any]) -> ForecastConfig:
    """The ForecastConfig of the options' values, by name; the `triage` switch turns the rules on."""
    return ForecastConfig(model=ModelOptions(**_fields_of(ModelOptions, values)),
                          triage=triage_rules(values) if values.get("triage") else None,
                          **_fields_of(ForecastConfig, values, leave=("model", "triage")))


def backtest_config(values: Mapping[str, Any]) -> BacktestConfig:
    """The BacktestConfig of the options' values, by name."""
    return BacktestConfig(run=forecast_config(values), **_fields_of(BacktestConfig, values, leave=("run",)))
