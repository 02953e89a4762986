"""The `forecast` command line: parse options, call the library, report. The only module that imports typer."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from .config import ForecastConfig, ModelOptions
from .errors import ForecastError

EXIT_CODES = """Exit codes: 0 every series forecast (or failures within --max-failed-frac); 3 some series failed,
outputs written; 1 input or configuration error, nothing written; 2 usage error; 130 interrupted (finished
series are written)."""

app = typer.Typer(
    help="Forecast thousands of time series with Prophet, on every core.",
    epilog=EXIT_CODES,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


class Growth(str, Enum):
    linear = "linear"
    flat = "flat"


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


class LogFormat(str, Enum):
    text = "text"
    json = "json"


def _fail(e: ForecastError) -> typer.Exit:
    typer.echo(f"Error: {e}", err=True)
    return typer.Exit(code=e.exit_code)


def _report(result) -> None:
    s = result.summary
    lines = [
        ("status", s["status"]),
        ("cores", s["cores"]),
        ("n_jobs", s["n_jobs"]),
        ("series ok", s["series_ok"]),
        ("series failed", s["series_failed"]),
        ("wall seconds", f"{s['wall_seconds']:.1f}"),
        ("series/s", f"{s['series_per_second']:.2f}"),
        ("speed-up", f"{s['speedup']:.2f}"),
        ("parallel efficiency", f"{s['parallel_efficiency']:.2f}"),
        ("output", str(result.out_dir)),
    ]
    if s["series_done"] < s["series_total"]:
        lines.insert(5, ("series not done", s["series_total"] - s["series_done"]))
    width = max(len(k) for k, _ in lines)
    for key, value in lines:
        typer.echo(f"{key.ljust(width)}  {value}")


def _value(x):
    return getattr(x, "value", x)


def _build_config(p: dict) -> ForecastConfig:
    """A ForecastConfig from the command's parameters (after a job file, if any, was applied)."""
    model = ModelOptions(
        horizon=p["horizon"], freq=p["freq"], growth=_value(p["growth"]),
        seasonality_mode=_value(p["seasonality_mode"]), yearly_seasonality=_value(p["yearly_seasonality"]),
        weekly_seasonality=_value(p["weekly_seasonality"]), daily_seasonality=_value(p["daily_seasonality"]),
        changepoint_prior_scale=p["changepoint_prior_scale"], seasonality_prior_scale=p["seasonality_prior_scale"],
        holidays=p["holidays"], interval_width=p["interval_width"], uncertainty_samples=p["uncertainty_samples"],
        non_negative=p["non_negative"], include_history=p["include_history"], seed=p["seed"],
    )
    return ForecastConfig(
        id_cols=tuple(p["id_col"] or ["unique_id"]), time_col=p["time_col"], target_col=p["target_col"],
        duplicates=_value(p["duplicates"]), n_jobs=p["n_jobs"], out_dir=p["out"], overwrite=p["overwrite"],
        output_format=_value(p["format"]), max_failed_frac=p["max_failed_frac"], resume=p["resume"],
        fit_timeout=p["fit_timeout"], model=model,
    )


def _parameters(ctx: typer.Context) -> dict:
    """The command's parameters, with a --config job file applied under the flags given on the command line."""
    from .jobfile import apply_job_file

    params = dict(ctx.params)
    if params["job_file"] is not None:
        given = {name for name in params if ctx.get_parameter_source(name).name == "COMMANDLINE"}
        params = apply_job_file(params["job_file"], params, given)
    for name, flag in (("input", "INPUT"), ("horizon", "--horizon")):
        if params[name] is None:
            raise typer.BadParameter("missing; give it on the command line or in a --config job file", param_hint=flag)
    return params


@app.command(epilog=EXIT_CODES)
def run(
    ctx: typer.Context,
    input: Annotated[Optional[Path], typer.Argument(
        help="Long table: .csv, .csv.gz or .parquet, one row per series and time.")] = None,
    horizon: Annotated[Optional[int], typer.Option(min=1, help="Steps to forecast past each series' last timestamp.")] = None,
    id_col: Annotated[Optional[list[str]], typer.Option(
        help="Series key column; repeat for a composite key (--id-col store --id-col item).")] = None,
    time_col: Annotated[str, typer.Option(help="Timestamp column.")] = "ds",
    target_col: Annotated[str, typer.Option(help="Value column to forecast.")] = "y",
    duplicates: Annotated[Duplicates, typer.Option(
        help="Repeated (key, time) rows: error, or combine by sum, mean or last.")] = Duplicates.error,
    freq: Annotated[Optional[str], typer.Option(help="pandas frequency (D, W-SUN, MS, h); default: inferred per series.")] = None,
    growth: Annotated[Growth, typer.Option(help="Trend: linear or flat.")] = Growth.linear,
    seasonality_mode: Annotated[SeasonalityMode, typer.Option()] = SeasonalityMode.additive,
    yearly_seasonality: Annotated[Toggle, typer.Option()] = Toggle.auto,
    weekly_seasonality: Annotated[Toggle, typer.Option()] = Toggle.auto,
    daily_seasonality: Annotated[Toggle, typer.Option()] = Toggle.auto,
    changepoint_prior_scale: Annotated[float, typer.Option(min=0.0)] = 0.05,
    seasonality_prior_scale: Annotated[float, typer.Option(min=0.0)] = 10.0,
    holidays: Annotated[Optional[str], typer.Option(help="Country code for Prophet's built-in holidays, e.g. US.")] = None,
    interval_width: Annotated[float, typer.Option(help="Width of the yhat_lower..yhat_upper interval.")] = 0.8,
    uncertainty_samples: Annotated[int, typer.Option(min=0, help="Draws for the interval; 0 turns intervals off.")] = 1000,
    non_negative: Annotated[bool, typer.Option(help="Clip forecasts and bounds at 0 (demand).")] = False,
    seed: Annotated[Optional[int], typer.Option(help="Make intervals reproducible (per series, whatever --n-jobs).")] = None,
    include_history: Annotated[bool, typer.Option(help="Also write the fitted values for the history.")] = False,
    n_jobs: Annotated[int, typer.Option(help="Worker processes: -1 all usable cores, 1 in-process.")] = -1,
    out: Annotated[Optional[Path], typer.Option(help="Output directory [default: outputs/<UTC timestamp>].")] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace a finished or unfinished run in --out.")] = False,
    resume: Annotated[bool, typer.Option(
        "--resume", help="Finish the unfinished run in --out (same input and settings): fit only the series it lacks.")] = False,
    fit_timeout: Annotated[Optional[float], typer.Option(
        help="Seconds one series may take; past it, it fails with reason timeout (runs in worker processes, "
             "even with --n-jobs 1).")] = None,
    format: Annotated[OutputFormat, typer.Option(help="Forecasts file format.")] = OutputFormat.parquet,
    max_failed_frac: Annotated[float, typer.Option(
        min=0.0, max=1.0, help="Share of failed series still accepted with exit code 0.")] = 0.0,
    job_file: Annotated[Optional[Path], typer.Option(
        "--config", help="TOML job file with [input], [model], [run], [output] tables; flags given here override it.")] = None,
    log_format: Annotated[LogFormat, typer.Option(
        help="stderr: text (a bar on a terminal, plain lines otherwise) or json (one object per line).")] = LogFormat.text,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress or notes; only the final table.")] = False,
) -> None:
    """Fit one Prophet model per series and write forecasts, timings, errors and a summary.

    Example: forecast run data/sample.csv --id-col store --id-col item --time-col date --target-col sales --horizon 28
    """
    from .progress import make_progress
    from .runner import run_forecast

    try:
        params = _parameters(ctx)
        config = _build_config(params)
        with make_progress(params["quiet"], _value(params["log_format"])) as progress:
            result = run_forecast(params["input"], config, progress=progress, notify=progress.note,
                                  events=progress.event)
    except ForecastError as e:
        raise _fail(e) from None
    except KeyboardInterrupt:
        typer.echo("Interrupted before any series was fitted; nothing written.", err=True)
        raise typer.Exit(code=130) from None
    _report(result)
    raise typer.Exit(code=result.exit_code)


@app.command()
def version() -> None:
    """Print the versions of forecast, Prophet and Python.

    Example: forecast version
    """
    import platform

    from . import __version__

    typer.echo(f"forecast {__version__}, python {platform.python_version()}")
