"""The `forecast` command line: parse options, call the library, report. The only module that imports typer."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from .config import ForecastConfig, ModelOptions, TriageRules
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


class Engine(str, Enum):
    prophet = "prophet"
    stan = "stan"
    fast = "fast"


class Fallback(str, Enum):
    none = "none"
    naive = "naive"
    seasonal_naive = "seasonal-naive"
    mean = "mean"
    zero = "zero"


# Options shared by `run` and `check`, declared once so both read a table the same way.
InputArg = Annotated[Path, typer.Argument(help="Long table: .csv, .csv.gz or .parquet, one row per series and time.")]
IdColOpt = Annotated[Optional[list[str]], typer.Option(
    help="Series key column; repeat for a composite key (--id-col store --id-col item).")]
TimeColOpt = Annotated[str, typer.Option(help="Timestamp column.")]
TargetColOpt = Annotated[str, typer.Option(help="Value column to forecast.")]
DuplicatesOpt = Annotated[Duplicates, typer.Option(
    help="Repeated (key, time) rows: error, or combine by sum, mean or last.")]
FreqOpt = Annotated[Optional[str], typer.Option(help="pandas frequency (D, W-SUN, MS, h); default: inferred per series.")]
# Triage thresholds; their defaults live in TriageRules.
MinObsOpt = Annotated[int, typer.Option(min=1, help="Fewer values than this: a new series, sent to fallback.")]
MaxZeroShareOpt = Annotated[float, typer.Option(
    min=0.0, max=1.0, help="A larger share of zeros: intermittent, sent to fallback.")]
MaxGapShareOpt = Annotated[float, typer.Option(
    min=0.0, max=1.0, help="A larger share of missing periods inside its range: gappy, sent to fallback.")]
StaleAfterOpt = Annotated[float, typer.Option(
    min=0.0, help="Last value more periods than this before the table's end: stale, skipped.")]
AllowNegativeOpt = Annotated[bool, typer.Option(help="Fit series with negative values (else sent to fallback).")]


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
        *([("series fallback", s["series_fallback"])] if s.get("series_fallback") else []),
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
    width = max(len(k) for k, _ in lines)
    for key, value in lines:
        typer.echo(f"{key.ljust(width)}  {value}")


@app.command(epilog=EXIT_CODES)
def run(
    input: InputArg,
    horizon: Annotated[int, typer.Option(min=1, help="Steps to forecast past each series' last timestamp.")],
    id_col: IdColOpt = None,
    time_col: TimeColOpt = "ds",
    target_col: TargetColOpt = "y",
    duplicates: DuplicatesOpt = Duplicates.error,
    freq: FreqOpt = None,
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
    fallback: Annotated[Fallback, typer.Option(
        help="Simple forecast for a series that fails (and for triaged ones): none, naive, seasonal-naive, "
             "mean or zero.")] = Fallback.none,
    triage: Annotated[bool, typer.Option(
        help="Apply the rules of `forecast check`: fit, fallback (seasonal-naive unless --fallback) or skip.")] = False,
    min_obs: MinObsOpt = TriageRules.min_obs,
    max_zero_share: MaxZeroShareOpt = TriageRules.max_zero_share,
    max_gap_share: MaxGapShareOpt = TriageRules.max_gap_share,
    stale_after: StaleAfterOpt = TriageRules.stale_after,
    allow_negative: AllowNegativeOpt = TriageRules.allow_negative,
    engine: Annotated[Engine, typer.Option(
        help="prophet (stock), stan (Prophet's Stan optimizer without the Python around it: same parameters), "
             "fast (in-process MAP solver, opt-in; what it does not cover goes to stan).")] = Engine.prophet,
    warm_start: Annotated[Optional[Path], typer.Option(
        help="Output directory of an earlier --engine stan/fast run: start each series from its parameters.")] = None,
) -> None:
    """Fit one Prophet model per series and write forecasts, timings, errors and a summary.

    Example: forecast run data/sample.csv --id-col store --id-col item --time-col date --target-col sales --horizon 28
    """
    from .progress import make_progress
    from .runner import run_forecast

    try:
        config = ForecastConfig(
            id_cols=tuple(id_col or ["unique_id"]), time_col=time_col, target_col=target_col,
            duplicates=duplicates.value, n_jobs=n_jobs, out_dir=out, overwrite=overwrite,
            output_format=format.value, max_failed_frac=max_failed_frac, fallback=fallback.value,
            warm_start=warm_start,
            triage=TriageRules(min_obs, max_zero_share, max_gap_share, stale_after, allow_negative) if triage else None,
            model=ModelOptions(
                horizon=horizon, freq=freq, growth=growth.value, seasonality_mode=seasonality_mode.value,
                yearly_seasonality=yearly_seasonality.value, weekly_seasonality=weekly_seasonality.value,
                daily_seasonality=daily_seasonality.value, changepoint_prior_scale=changepoint_prior_scale,
                seasonality_prior_scale=seasonality_prior_scale, holidays=holidays, interval_width=interval_width,
                uncertainty_samples=uncertainty_samples, non_negative=non_negative,
                include_history=include_history, seed=seed, engine=engine.value,
            ),
        )
        with make_progress(quiet) as progress:
            result = run_forecast(input, config, progress=progress, notify=progress.note)
    except ForecastError as e:
        raise _fail(e) from None
    except KeyboardInterrupt:
        typer.echo("Interrupted.", err=True)
        raise typer.Exit(code=130) from None
    _report(result)
    raise typer.Exit(code=result.exit_code)


@app.command()
def check(
    input: InputArg,
    id_col: IdColOpt = None,
    time_col: TimeColOpt = "ds",
    target_col: TargetColOpt = "y",
    duplicates: DuplicatesOpt = Duplicates.error,
    freq: FreqOpt = None,
    min_obs: MinObsOpt = TriageRules.min_obs,
    max_zero_share: MaxZeroShareOpt = TriageRules.max_zero_share,
    max_gap_share: MaxGapShareOpt = TriageRules.max_gap_share,
    stale_after: StaleAfterOpt = TriageRules.stale_after,
    allow_negative: AllowNegativeOpt = TriageRules.allow_negative,
    out: Annotated[Optional[Path], typer.Option(
        help="Directory for profile.csv [default: outputs/<UTC timestamp>-check].")] = None,
) -> None:
    """Check a table and profile and triage every series without fitting; write profile.csv.

    Exit 0 when the table is usable, 1 with the table-level error otherwise.

    Example: forecast check data/sample.csv --id-col store --id-col item --time-col date --target-col sales
    """
    from .profile import format_check, run_check

    try:
        config = ForecastConfig(id_cols=tuple(id_col or ["unique_id"]), time_col=time_col, target_col=target_col,
                                duplicates=duplicates.value, out_dir=out, model=ModelOptions(freq=freq))
        rules = TriageRules(min_obs, max_zero_share, max_gap_share, stale_after, allow_negative)
        result = run_check(input, config, rules)
    except ForecastError as e:
        raise _fail(e) from None
    for note in result.notes:
        typer.echo(f"note: {note}", err=True)
    typer.echo(format_check(result))


@app.command()
def version() -> None:
    """Print the versions of forecast, Prophet and Python.

    Example: forecast version
    """
    import platform

    from . import __version__

    typer.echo(f"forecast {__version__}, python {platform.python_version()}")
