"""The `forecast` command line: parse options, call the library, report. The only module that imports typer."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from .config import ENGINES, REPORT_PLOTS, BacktestConfig, ForecastConfig, ModelOptions, TriageRules
from .errors import ForecastError

EXIT_CODES = """Exit codes: 0 every series forecast (or failures within --max-failed-frac); 3 some series failed,
outputs written; 1 input or configuration error, nothing written; 2 usage error; 75 stopped by the machine or
cluster (a full disk, a lost Dask scheduler), finished series kept: run again with --resume; 130 interrupted
(finished series are written)."""

def _unbroken_option_names() -> None:
    """Help text is wrapped at spaces only, not after hyphens, so an option named in it (--cap-col,
    --install-completion) is never split across lines. Help is wrapped by click's TextWrapper class (typer
    carries its own copy of click), in a private module; where it is not found, help wraps as click does."""
    import importlib

    for name in ("typer._click._textwrap", "click._textwrap"):
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        wrapper = module.TextWrapper
        if getattr(wrapper, "_no_hyphen_breaks", False):
            continue

        class _Wrapper(wrapper):
            _no_hyphen_breaks = True

            def __init__(self, *args, **kwargs):
                kwargs.setdefault("break_on_hyphens", False)
                super().__init__(*args, **kwargs)

        module.TextWrapper = _Wrapper


_unbroken_option_names()

# Plain click help (rich_markup_mode=None): wrapped to the terminal, or to 80 columns when piped, with option
# names whole in their own column; rich's panels cut them (--seasonality-mo…) and read [default: ...] as markup.
app = typer.Typer(
    help="Forecast thousands of time series with Prophet, on every core.\n\nOptions can also come from "
         "environment variables (FORECAST_N_JOBS, FORECAST_OUT, FORECAST_ENGINE, FORECAST_LOG_FORMAT; each "
         "command's --help names them); an option on the command line wins over its variable, and the variable "
         "over a --config job file. Shell completion: forecast --install-completion.",
    epilog=EXIT_CODES,
    no_args_is_help=True,
    add_completion=True,  # --install-completion / --show-completion for bash, zsh, fish, PowerShell
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


class Growth(str, Enum):
    linear = "linear"
    flat = "flat"
    logistic = "logistic"


class SeasonalityMode(str, Enum):
    additive = "additive"
    multiplicative = "multiplicative"


class Toggle(str, Enum):
    auto = "auto"
    on = "on"
    off = "off"


class Duplicates(str, Enum):
    error = "error"
    sum = "sum"
    mean = "mean"
    last = "last"


class OutputFormat(str, Enum):
    parquet = "parquet"
    csv = "csv"


# the choices and the default are config's (ENGINES, ModelOptions.engine)
Engine = Enum("Engine", {name: name for name in ENGINES}, type=str)
DEFAULT_ENGINE = Engine(ModelOptions.engine)


class Fallback(str, Enum):
    none = "none"
    naive = "naive"
    seasonal_naive = "seasonal-naive"
    mean = "mean"
    zero = "zero"


# Triage thresholds; their defaults live in TriageRules.
MinObsOpt = Annotated[int, typer.Option(min=1, help="Fewer values than this: a new series, sent to fallback "
                                                    "(by run too, without --triage; 2 fits every series).")]
MaxZeroShareOpt = Annotated[float, typer.Option(
    min=0.0, max=1.0, help="A larger share of zeros: intermittent, sent to fallback.")]
MaxGapShareOpt = Annotated[float, typer.Option(
    min=0.0, max=1.0, help="A larger share of missing periods inside its range: gappy, sent to fallback.")]
StaleAfterOpt = Annotated[float, typer.Option(
    min=0.0, help="Last value more periods than this before the table's end: stale, skipped.")]
AllowNegativeOpt = Annotated[bool, typer.Option(help="Fit series with negative values, whatever their share.")]
MaxNegativeShareOpt = Annotated[float, typer.Option(
    min=0.0, max=1.0, help="A larger share of negative values: sent to fallback (a few returns are fitted).")]


class BackendName(str, Enum):
    local = "local"
    dask = "dask"


class LogFormat(str, Enum):
    text = "text"
    json = "json"


def _echo(text: str, err: bool = False) -> None:
    """Print lines for a terminal or a log, with every control character of the data escaped (see printable)."""
    from .progress import printable

    typer.echo("\n".join(printable(line) for line in text.split("\n")), err=err)


def _say_error(message: str, code: int, json_log: bool) -> typer.Exit:
    """The one line of an error on stderr: text, or with --log-format json an "error" record like the log's."""
    if json_log:
        from .progress import json_line

        typer.echo(json_line("error", {"message": message, "exit_code": code}), err=True)
    else:
        from .progress import printable

        typer.echo(printable(f"Error: {message}"), err=True)  # one line, whatever the data put in it
    return typer.Exit(code=code)


def _fail(e: ForecastError | OSError, json_log: bool = False) -> typer.Exit:
    """A ForecastError's line and exit code; or for an OSError (a file the command could not write or read:
    permissions, a full disk, a file where a directory belongs) one line naming the file, exit 1. What a run had
    finished is in its part files, for --resume."""
    if isinstance(e, ForecastError):
        return _say_error(str(e), e.exit_code, json_log)
    where = f"{e.filename}: " if e.filename else ""
    return _say_error(f"{where}{e.strerror or e}", 1, json_log)


def _report(result) -> None:
    s = result.summary
    lines = [
        ("status", s["status"]),
        ("cores", s["cores"]),
        ("n_jobs", s["n_jobs"]),
        ("series ok", s["series_ok"]),
        ("series failed", s["series_failed"]),
        *([("series fallback", s["series_fallback"])] if s.get("series_fallback") else []),
        *([("frequency", f"{s['table_freq']}" + (f" ({s['series_own_freq']} series their own)"
                                                  if s.get("series_own_freq") else ""))] if s.get("table_freq") else []),
        *([("series skipped", s["series_skipped"])] if s.get("series_skipped") else []),
        ("wall seconds", f"{s['wall_seconds']:.1f}"),
        ("series/s", f"{s['series_per_second']:.2f}"),
        ("speed-up", f"{s['speedup']:.2f}"),
        ("parallel efficiency", f"{s['parallel_efficiency']:.2f}"),
        ("output", str(result.out_dir)),
    ]
    if s["series_done"] < s["series_total"]:
        lines.insert(lines.index(("series failed", s["series_failed"])) + 1,
                     ("series not done", s["series_total"] - s["series_done"]))
    if s["backend"]["name"] == "dask":
        b = s["backend"]
        lines.insert(3, ("dask workers", f"{b['workers']} ({b['threads']} threads) at {b['scheduler']}"))
    width = max(len(k) for k, _ in lines)
    for key, value in lines:
        _echo(f"{key.ljust(width)}  {value}")


# Options shared by every command that reads a table (run, backtest, check): declared once.
INPUT_HELP = "Long table: .csv, .csv.gz or .parquet, one row per series and time."
InputArg = Annotated[Path, typer.Argument(metavar="INPUT", help=INPUT_HELP)]
IdColOpt = Annotated[Optional[list[str]], typer.Option(
    help="Series key column; repeat for a composite key (--id-col store --id-col item).")]
TimeColOpt = Annotated[str, typer.Option(help="Timestamp column.")]
TargetColOpt = Annotated[str, typer.Option(help="Value column to forecast.")]
DuplicatesOpt = Annotated[Duplicates, typer.Option(
    help="Repeated (key, time) rows: error, or combine by sum, mean or last.")]
FreqOpt = Annotated[Optional[str], typer.Option(
    help="pandas frequency (D, W-SUN, MS, h); default: the table's, inferred once (a series off its grid: its own).")]
GrowthOpt = Annotated[Growth, typer.Option(help="Trend: linear, flat, or logistic (needs --cap-col).")]
SeasonalityModeOpt = Annotated[SeasonalityMode, typer.Option()]
ToggleOpt = Annotated[Toggle, typer.Option()]
PriorOpt = Annotated[float, typer.Option(min=0.0)]
HolidaysOpt = Annotated[Optional[str], typer.Option(help="Country code for Prophet's built-in holidays, e.g. US.")]
HolidaysFileOpt = Annotated[Optional[Path], typer.Option(
    help="Table of holidays: holiday, ds, and optionally lower_window, upper_window.")]
RegressorOpt = Annotated[Optional[list[str]], typer.Option(
    help="Input column to use as an extra regressor; repeatable. Run needs its future values in --future.")]
CapColOpt = Annotated[Optional[str], typer.Option(help="Column of the capacity for --growth logistic.")]
FloorColOpt = Annotated[Optional[str], typer.Option(help="Column of the floor for --growth logistic.")]
IntervalWidthOpt = Annotated[float, typer.Option(help="Width of the yhat_lower..yhat_upper interval.")]
SamplesOpt = Annotated[int, typer.Option(min=0, help="Draws for the interval; 0 turns intervals off.")]
NonNegativeOpt = Annotated[bool, typer.Option(help="Clip forecasts and bounds at 0 (demand).")]
SeedOpt = Annotated[Optional[int], typer.Option(help="Make intervals reproducible (per series, whatever --n-jobs).")]
NJobsOpt = Annotated[int, typer.Option(help="Worker processes: -1 all usable cores, 1 in-process.",
                                       envvar="FORECAST_N_JOBS", show_envvar=True)]
OutOpt = Annotated[Optional[Path], typer.Option(help="Output directory [default: outputs/<UTC timestamp>].",
                                                envvar="FORECAST_OUT", show_envvar=True)]
OverwriteOpt = Annotated[bool, typer.Option(help="Replace a finished run in --out.")]
MaxFailedOpt = Annotated[float, typer.Option(
    min=0.0, max=1.0, help="Share of failed series still accepted with exit code 0.")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress or notes; only the final table.")]


EngineOpt = Annotated[Engine, typer.Option(
    help="fast (Prophet's model solved to its exact optimum in-process), stan (Prophet's own optimizer, direct: "
         "stock Prophet's parameters) or prophet (stock Prophet, exactly).", envvar="FORECAST_ENGINE",
    show_envvar=True)]


def _model_options(horizon: int, freq, growth, seasonality_mode, yearly_seasonality, weekly_seasonality,
                   daily_seasonality, changepoint_prior_scale, seasonality_prior_scale, holidays, interval_width,
                   uncertainty_samples, non_negative, seed, regressor, cap_col, floor_col,
                   include_history: bool = False, engine: str = ModelOptions.engine) -> ModelOptions:
    return ModelOptions(
        horizon=horizon, freq=freq, growth=_value(growth), seasonality_mode=_value(seasonality_mode),
        yearly_seasonality=_value(yearly_seasonality), weekly_seasonality=_value(weekly_seasonality),
        daily_seasonality=_value(daily_seasonality), changepoint_prior_scale=changepoint_prior_scale,
        seasonality_prior_scale=seasonality_prior_scale, holidays=holidays, interval_width=interval_width,
        uncertainty_samples=uncertainty_samples, non_negative=non_negative,
        include_history=include_history, seed=seed, regressors=tuple(regressor or ()), cap_col=cap_col,
        floor_col=floor_col, engine=engine,
    )


def _value(x):
    return getattr(x, "value", x)


def _build_config(p: dict) -> ForecastConfig:
    """A ForecastConfig from `run`'s parameters (after a job file, if any, was applied)."""
    return ForecastConfig(
        id_cols=tuple(p["id_col"] or ["unique_id"]), time_col=p["time_col"], target_col=p["target_col"],
        duplicates=_value(p["duplicates"]), n_jobs=p["n_jobs"], out_dir=p["out"], overwrite=p["overwrite"],
        output_format=_value(p["format"]), max_failed_frac=p["max_failed_frac"], future_path=p["future"],
        fallback=_value(p["fallback"]), holidays_file=p["holidays_file"], backend=_value(p["backend"]),
        scheduler=p["scheduler"], connect_timeout=p["connect_timeout"], resume=p["resume"],
        fit_timeout=p["fit_timeout"], workers_read=p["workers_read"], warm_start=p["warm_start"],
        triage=TriageRules(p["min_obs"], p["max_zero_share"], p["max_gap_share"], p["stale_after"],
                           p["allow_negative"], p["max_negative_share"]) if p["triage"] else None,
        min_obs=p["min_obs"], run_id=p["run_id"],
        model=_model_options(p["horizon"], p["freq"], p["growth"], p["seasonality_mode"], p["yearly_seasonality"],
                             p["weekly_seasonality"], p["daily_seasonality"], p["changepoint_prior_scale"],
                             p["seasonality_prior_scale"], p["holidays"], p["interval_width"],
                             p["uncertainty_samples"], p["non_negative"], p["seed"], p["regressor"], p["cap_col"],
                             p["floor_col"], p["include_history"], _value(p["engine"])),
    )


def _parameters(ctx: typer.Context) -> dict:
    """The command's parameters, with a --config job file applied under the flags given on the command line."""
    from .jobfile import apply_job_file

    params = dict(ctx.params)
    if params["job_file"] is not None:
        # the command line, then the environment (FORECAST_N_JOBS, ...), then the job file
        given = {name for name in params if ctx.get_parameter_source(name).name in ("COMMANDLINE", "ENVIRONMENT")}
        params = apply_job_file(params["job_file"], params, given)
    for name, flag in (("input", "INPUT"), ("horizon", "--horizon")):
        if params[name] is None:
            raise typer.BadParameter("missing; give it on the command line or in a --config job file", param_hint=flag)
    return params


@app.command(epilog=EXIT_CODES, short_help="Fit one Prophet model per series; write forecasts and timings.")
def run(
    ctx: typer.Context,
    input: Annotated[Optional[Path], typer.Argument(metavar="INPUT", help=INPUT_HELP)] = None,
    horizon: Annotated[Optional[int], typer.Option(
        min=1, help="Steps to forecast past each series' last timestamp.")] = None,
    id_col: IdColOpt = None,
    time_col: TimeColOpt = ForecastConfig.time_col,
    target_col: TargetColOpt = ForecastConfig.target_col,
    duplicates: DuplicatesOpt = Duplicates(ForecastConfig.duplicates),
    freq: FreqOpt = None,
    growth: GrowthOpt = Growth(ModelOptions.growth),
    seasonality_mode: SeasonalityModeOpt = SeasonalityMode(ModelOptions.seasonality_mode),
    yearly_seasonality: ToggleOpt = Toggle(ModelOptions.yearly_seasonality),
    weekly_seasonality: ToggleOpt = Toggle(ModelOptions.weekly_seasonality),
    daily_seasonality: ToggleOpt = Toggle(ModelOptions.daily_seasonality),
    changepoint_prior_scale: PriorOpt = ModelOptions.changepoint_prior_scale,
    seasonality_prior_scale: PriorOpt = ModelOptions.seasonality_prior_scale,
    holidays: HolidaysOpt = None,
    holidays_file: HolidaysFileOpt = None,
    regressor: RegressorOpt = None,
    future: Annotated[Optional[Path], typer.Option(
        help="Table of future values of the --regressor, --cap-col and --floor-col columns (same key and time "
             "columns as INPUT).")] = None,
    cap_col: CapColOpt = None,
    floor_col: FloorColOpt = None,
    interval_width: IntervalWidthOpt = ModelOptions.interval_width,
    uncertainty_samples: SamplesOpt = ModelOptions.uncertainty_samples,
    non_negative: NonNegativeOpt = ModelOptions.non_negative,
    seed: SeedOpt = None,
    include_history: Annotated[bool, typer.Option(help="Also write the fitted values for the history.")] = ModelOptions.include_history,
    n_jobs: NJobsOpt = ForecastConfig.n_jobs,
    out: OutOpt = None,
    overwrite: Annotated[bool, typer.Option(
        help="Replace a finished or unfinished run in --out.")] = ForecastConfig.overwrite,
    resume: Annotated[bool, typer.Option(
        "--resume", help="Finish the unfinished run in --out (same input and settings): fit only the series it lacks.")] = ForecastConfig.resume,
    fit_timeout: Annotated[Optional[float], typer.Option(
        help="Seconds one series may take; past it, it fails with reason timeout (runs in worker processes, "
             "even with --n-jobs 1).")] = None,
    format: Annotated[OutputFormat, typer.Option(help="Forecasts file format.")] = OutputFormat(
        ForecastConfig.output_format),
    max_failed_frac: MaxFailedOpt = ForecastConfig.max_failed_frac,
    quiet: QuietOpt = False,
    fallback: Annotated[Fallback, typer.Option(
        help="Simple forecast for a series that fails (and for triaged ones): none, naive, seasonal-naive, "
             "mean or zero.")] = Fallback(ForecastConfig.fallback),
    triage: Annotated[bool, typer.Option(
        help="Apply the rules of `forecast check`: fit, fallback (seasonal-naive unless --fallback) or skip.")] = False,
    min_obs: MinObsOpt = TriageRules.min_obs,
    max_zero_share: MaxZeroShareOpt = TriageRules.max_zero_share,
    max_gap_share: MaxGapShareOpt = TriageRules.max_gap_share,
    stale_after: StaleAfterOpt = TriageRules.stale_after,
    allow_negative: AllowNegativeOpt = TriageRules.allow_negative,
    max_negative_share: MaxNegativeShareOpt = TriageRules.max_negative_share,
    backend: Annotated[BackendName, typer.Option(
        help="local: this machine's cores; dask: a Dask cluster (--scheduler, or a local one).")] = BackendName(
        ForecastConfig.backend),
    scheduler: Annotated[Optional[str], typer.Option(
        help="Dask scheduler address, e.g. tcp://host:8786 [env: FORECAST_SCHEDULER]; needs --backend dask.")] = None,
    connect_timeout: Annotated[float, typer.Option(
        min=0.1, help="Seconds to wait for the Dask scheduler and a first worker.")] = ForecastConfig.connect_timeout,
    workers_read: Annotated[bool, typer.Option(
        help="Workers read their own series from INPUT (Parquet, at the same path on every worker) instead of "
             "receiving them from this process.")] = ForecastConfig.workers_read,
    job_file: Annotated[Optional[Path], typer.Option(
        "--config", help="TOML job file with [input], [model], [run], [output] tables; flags given here override it.")] = None,
    log_format: Annotated[LogFormat, typer.Option(
        help="stderr: text (a bar on a terminal, plain lines otherwise) or json (one object per line).",
        envvar="FORECAST_LOG_FORMAT", show_envvar=True)] = LogFormat.text,
    engine: EngineOpt = DEFAULT_ENGINE,
    warm_start: Annotated[Optional[Path], typer.Option(
        help="Output directory of an earlier --engine stan/fast run: start each series from its parameters.")] = None,
    run_id: Annotated[Optional[str], typer.Option(
        help="Value of the forecasts' run_id column [default: the output directory's name].")] = None,
) -> None:
    """Fit one Prophet model per series and write forecasts, timings, errors and a summary.

    \b
    Example:
      forecast run data/sample.csv --id-col store --id-col item \\
        --time-col date --target-col sales --horizon 28
    """
    import os
    import sys

    from .progress import make_progress
    from .runner import run_forecast

    json_log = _value(log_format) == "json"
    try:
        params = _parameters(ctx)
        json_log = _value(params["log_format"]) == "json"
        if params["scheduler"] is not None and _value(params["backend"]) != "dask":
            typer.echo("Error: --scheduler can only be used with --backend dask", err=True)
            raise typer.Exit(code=2)
        if _value(params["backend"]) == "dask" and params["scheduler"] is None:
            params["scheduler"] = os.environ.get("FORECAST_SCHEDULER") or None
        config = _build_config(params)
        with make_progress(params["quiet"], _value(params["log_format"])) as progress:
            result = run_forecast(params["input"], config, reporter=progress)
    except (ForecastError, OSError) as e:
        raise _fail(e, json_log) from None
    except KeyboardInterrupt:
        typer.echo("Interrupted.", err=True)
        raise typer.Exit(code=130) from None
    try:
        _report(result)
    except BrokenPipeError:
        # the reader of stdout went away (`| head -1`): the run is written and its exit code is what a scheduler
        # must see, not 1; stdout is pointed at /dev/null so that Python's own flush at exit does not fail again
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    raise typer.Exit(code=result.exit_code)


@app.command(epilog=EXIT_CODES, short_help="Score Prophet against a seasonal-naive forecast over past windows.")
def backtest(
    input: InputArg,
    horizon: Annotated[int, typer.Option(min=1, help="Steps forecast from each origin.")],
    windows: Annotated[int, typer.Option(
        min=1, help="Forecast origins per series, the last `horizon` before its end.")] = BacktestConfig.windows,
    step: Annotated[Optional[int], typer.Option(min=1, help="Steps between origins [default: the horizon].")] = None,
    season_length: Annotated[Optional[int], typer.Option(
        min=1, help="Seasonal-naive period in steps [default: 7 daily, 24 hourly, 52 weekly, 12 monthly].")] = None,
    id_col: IdColOpt = None,
    time_col: TimeColOpt = ForecastConfig.time_col,
    target_col: TargetColOpt = ForecastConfig.target_col,
    duplicates: DuplicatesOpt = Duplicates(ForecastConfig.duplicates),
    freq: FreqOpt = None,
    growth: GrowthOpt = Growth(ModelOptions.growth),
    seasonality_mode: SeasonalityModeOpt = SeasonalityMode(ModelOptions.seasonality_mode),
    yearly_seasonality: ToggleOpt = Toggle(ModelOptions.yearly_seasonality),
    weekly_seasonality: ToggleOpt = Toggle(ModelOptions.weekly_seasonality),
    daily_seasonality: ToggleOpt = Toggle(ModelOptions.daily_seasonality),
    changepoint_prior_scale: PriorOpt = ModelOptions.changepoint_prior_scale,
    seasonality_prior_scale: PriorOpt = ModelOptions.seasonality_prior_scale,
    holidays: HolidaysOpt = None,
    holidays_file: HolidaysFileOpt = None,
    regressor: RegressorOpt = None,
    cap_col: CapColOpt = None,
    floor_col: FloorColOpt = None,
    interval_width: IntervalWidthOpt = ModelOptions.interval_width,
    uncertainty_samples: SamplesOpt = ModelOptions.uncertainty_samples,
    non_negative: NonNegativeOpt = ModelOptions.non_negative,
    seed: SeedOpt = None,
    engine: EngineOpt = DEFAULT_ENGINE,
    n_jobs: NJobsOpt = ForecastConfig.n_jobs,
    out: OutOpt = None,
    overwrite: OverwriteOpt = ForecastConfig.overwrite,
    max_failed_frac: MaxFailedOpt = ForecastConfig.max_failed_frac,
    quiet: QuietOpt = False,
) -> None:
    """Backtest Prophet against a seasonal-naive baseline over rolling origins and write accuracy metrics.

    \b
    Example:
      forecast backtest data/sample.csv --id-col store --id-col item \\
        --time-col date --target-col sales --horizon 28 --windows 3
    """
    from .backtest import run_backtest
    from .progress import make_progress

    try:
        config = BacktestConfig(
            run=ForecastConfig(
                id_cols=tuple(id_col or ["unique_id"]), time_col=time_col, target_col=target_col,
                duplicates=duplicates.value, n_jobs=n_jobs, out_dir=out, overwrite=overwrite,
                max_failed_frac=max_failed_frac, holidays_file=holidays_file,
                model=_model_options(horizon, freq, growth, seasonality_mode, yearly_seasonality,
                                     weekly_seasonality, daily_seasonality, changepoint_prior_scale,
                                     seasonality_prior_scale, holidays, interval_width, uncertainty_samples,
                                     non_negative, seed, regressor, cap_col, floor_col,
                                     engine=_value(engine)),
            ),
            windows=windows, step=step, season_length=season_length,
        )
        with make_progress(quiet) as progress:
            result = run_backtest(input, config, reporter=progress)
    except (ForecastError, OSError) as e:
        raise _fail(e) from None
    except KeyboardInterrupt:
        typer.echo("Interrupted before any series was backtested; nothing written.", err=True)
        raise typer.Exit(code=130) from None
    _echo(_accuracy_table(result.summary, result.out_dir))
    raise typer.Exit(code=result.exit_code)


def _accuracy_table(s: dict, out_dir: Path) -> str:
    """The overall metrics, one row per model (Prophet's named with its engine), led by WAPE and MASE, then the
    run's counts and a warning when zero actuals make sMAPE and MAPE mislead."""
    from .outputs import model_label

    names = ["n", "wape", "mase", "mae", "rmse", "smape", "mape", "coverage"]
    engines = s.get("engines") or {}
    engine = "; ".join(f"{e}" if i == 0 else f"{e}: {n} series" for i, (e, n) in
                       enumerate(sorted(engines.items(), key=lambda item: -item[1])))
    rows = [["model"] + names]
    for model, figures in s["overall"].items():
        rows.append([model_label(model, engine) if model == "prophet" else model]
                    + [str(figures[n]) if n == "n" else
                       ("-" if figures[n] is None or figures[n] != figures[n] else f"{figures[n]:.4g}")
                       for n in names])
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip() for r in rows]
    skipped = s["overall"]["prophet"]["mape_skipped"]
    if s["status"] == "interrupted":
        lines.append(f"interrupted: {s['series_done']} of {s['series_total']} series backtested; the scores cover "
                     "those")
    lines += [
        f"windows {s['windows']} x horizon {s['horizon']} (step {s['step']}); "
        f"series ok {s['series_ok']}, failed {s['series_failed']}; wall {s['wall_seconds']:.1f} s",
        f"MAPE skipped {skipped} zero actual(s). {s['aggregation']}.",
    ]
    if skipped:
        lines.append("warning: the actuals hold zeros: sMAPE scores a 0 at its maximum for any other forecast and "
                     "MAPE leaves them out; judge by WAPE and MASE")
    lines.append(f"output  {out_dir}")
    return "\n".join(lines)


RunDirArg = Annotated[Path, typer.Argument(metavar="RUN_DIR",
                                           help="The --out directory of a forecast run or forecast backtest.")]


@app.command(short_help="Draw one PNG per series of a run or backtest.")
def plot(
    run_dir: RunDirArg,
    series: Annotated[Optional[list[str]], typer.Option(
        help="Series to plot, repeatable; a composite key as its values joined by ' / ' (store1 / item3).")] = None,
    worst: Annotated[Optional[int], typer.Option(
        min=1, help="Plot the N series with the largest backtest MASE (RUN_DIR must be a backtest).")] = None,
    out: Annotated[Optional[Path], typer.Option(help="Directory for the PNGs [default: RUN_DIR/plots].")] = None,
) -> None:
    """Draw one PNG per series: history, forecast, interval band and forecast start (every series by default).

    \b
    Example:
      forecast plot outputs/20261126T130501Z --worst 10
    """
    from .plot import plot_run

    try:
        paths = plot_run(run_dir, series or (), worst, out)
    except (ForecastError, OSError) as e:
        raise _fail(e) from None
    _echo(f"{len(paths)} plot(s) in {paths[0].parent if paths else out or run_dir}")


@app.command(short_help="Write one self-contained HTML report of a run or backtest.")
def report(
    run_dir: RunDirArg,
    out: Annotated[Optional[Path], typer.Option(help="The HTML file [default: RUN_DIR/report.html].")] = None,
    plots: Annotated[int, typer.Option(
        min=0, help="Series to plot: the worst by backtest MASE, else the first.")] = REPORT_PLOTS,
) -> None:
    """Write one self-contained HTML report of a run or backtest: summary, fit times, failures, accuracy, plots.

    \b
    Example:
      forecast report outputs/20261126T130501Z
    """
    from .report import build_report

    try:
        path = build_report(run_dir, out, plots)
    except (ForecastError, OSError) as e:
        raise _fail(e) from None
    _echo(f"report  {path}")


@app.command(short_help="Check and profile a table without fitting; write profile.csv.")
def check(
    input: InputArg,
    id_col: IdColOpt = None,
    time_col: TimeColOpt = ForecastConfig.time_col,
    target_col: TargetColOpt = ForecastConfig.target_col,
    duplicates: DuplicatesOpt = Duplicates(ForecastConfig.duplicates),
    freq: FreqOpt = None,
    min_obs: MinObsOpt = TriageRules.min_obs,
    max_zero_share: MaxZeroShareOpt = TriageRules.max_zero_share,
    max_gap_share: MaxGapShareOpt = TriageRules.max_gap_share,
    stale_after: StaleAfterOpt = TriageRules.stale_after,
    allow_negative: AllowNegativeOpt = TriageRules.allow_negative,
    max_negative_share: MaxNegativeShareOpt = TriageRules.max_negative_share,
    out: Annotated[Optional[Path], typer.Option(
        help="Directory for profile.csv [default: outputs/<UTC timestamp>-check].")] = None,
) -> None:
    """Check a table and profile and triage every series without fitting; write profile.csv.

    Exit 0 when the table is usable, 1 with the table-level error otherwise.

    \b
    Example:
      forecast check data/sample.csv --id-col store --id-col item \\
        --time-col date --target-col sales
    """
    from .profile import format_check, run_check

    try:
        config = ForecastConfig(id_cols=tuple(id_col or ["unique_id"]), time_col=time_col, target_col=target_col,
                                duplicates=duplicates.value, out_dir=out, model=ModelOptions(freq=freq))
        rules = TriageRules(min_obs, max_zero_share, max_gap_share, stale_after, allow_negative, max_negative_share)
        result = run_check(input, config, rules)
    except (ForecastError, OSError) as e:
        raise _fail(e) from None
    for note in result.notes:
        _echo(f"note: {note}", err=True)
    _echo(format_check(result))


def _versions_line() -> str:
    import platform
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed

    from . import __version__

    try:
        prophet = installed("prophet")
    except PackageNotFoundError:
        prophet = "not installed"
    return f"forecast {__version__}, prophet {prophet}, python {platform.python_version()}"


def _print_version(value: bool) -> None:
    if value:
        typer.echo(_versions_line())
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[bool, typer.Option(
        "--version", callback=_print_version, is_eager=True,
        help="Print the versions of forecast, Prophet and Python and exit.")] = False,
) -> None:
    """Forecast thousands of time series with Prophet (the app's help says more)."""


@app.command()
def version() -> None:
    """Print the versions of forecast, Prophet and Python.

    \b
    Example:
      forecast version
    """
    typer.echo(_versions_line())
