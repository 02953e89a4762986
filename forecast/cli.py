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


class BackendName(str, Enum):
    local = "local"
    dask = "dask"


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
    if s["backend"]["name"] == "dask":
        b = s["backend"]
        lines.insert(3, ("dask workers", f"{b['workers']} ({b['threads']} threads) at {b['scheduler']}"))
    width = max(len(k) for k, _ in lines)
    for key, value in lines:
        typer.echo(f"{key.ljust(width)}  {value}")


@app.command(epilog=EXIT_CODES)
def run(
    input: Annotated[Path, typer.Argument(help="Long table: .csv, .csv.gz or .parquet, one row per series and time.")],
    horizon: Annotated[int, typer.Option(min=1, help="Steps to forecast past each series' last timestamp.")],
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
    overwrite: Annotated[bool, typer.Option(help="Replace a finished run in --out.")] = False,
    format: Annotated[OutputFormat, typer.Option(help="Forecasts file format.")] = OutputFormat.parquet,
    max_failed_frac: Annotated[float, typer.Option(
        min=0.0, max=1.0, help="Share of failed series still accepted with exit code 0.")] = 0.0,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress or notes; only the final table.")] = False,
    backend: Annotated[BackendName, typer.Option(
        help="local: this machine's cores; dask: a Dask cluster (--scheduler, or a local one).")] = BackendName.local,
    scheduler: Annotated[Optional[str], typer.Option(
        help="Dask scheduler address, e.g. tcp://host:8786 [env: FORECAST_SCHEDULER]; needs --backend dask.")] = None,
    connect_timeout: Annotated[float, typer.Option(
        min=0.1, help="Seconds to wait for the Dask scheduler and a first worker.")] = 10.0,
) -> None:
    """Fit one Prophet model per series and write forecasts, timings, errors and a summary.

    Example: forecast run data/sample.csv --id-col store --id-col item --time-col date --target-col sales --horizon 28
    """
    import os

    from .progress import make_progress
    from .runner import run_forecast

    if scheduler is not None and backend is not BackendName.dask:
        typer.echo("Error: --scheduler can only be used with --backend dask", err=True)
        raise typer.Exit(code=2)
    if backend is BackendName.dask and scheduler is None:
        scheduler = os.environ.get("FORECAST_SCHEDULER") or None
    try:
        config = ForecastConfig(
            id_cols=tuple(id_col or ["unique_id"]), time_col=time_col, target_col=target_col,
            duplicates=duplicates.value, n_jobs=n_jobs, out_dir=out, overwrite=overwrite,
            output_format=format.value, max_failed_frac=max_failed_frac, backend=backend.value,
            scheduler=scheduler, connect_timeout=connect_timeout,
            model=ModelOptions(
                horizon=horizon, freq=freq, growth=growth.value, seasonality_mode=seasonality_mode.value,
                yearly_seasonality=yearly_seasonality.value, weekly_seasonality=weekly_seasonality.value,
                daily_seasonality=daily_seasonality.value, changepoint_prior_scale=changepoint_prior_scale,
                seasonality_prior_scale=seasonality_prior_scale, holidays=holidays, interval_width=interval_width,
                uncertainty_samples=uncertainty_samples, non_negative=non_negative,
                include_history=include_history, seed=seed,
            ),
        )
        with make_progress(quiet) as progress:
            result = run_forecast(input, config, progress=progress, notify=progress.note)
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
