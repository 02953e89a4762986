"""The `forecast` command line: parse options, call the library, report. The only module that imports typer."""

from __future__ import annotations

import inspect
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Callable, Optional

import typer

from .config import REPORT_PLOTS
from .errors import EXIT_ERROR, EXIT_INTERRUPTED, EXIT_USAGE, ForecastError, exit_codes_text
from .options import OPTIONS, Command, Option, backtest_config, forecast_config, options_of, triage_rules

if TYPE_CHECKING:
    from .job import RunResult

EXIT_CODES_HELP = exit_codes_text()
# Every environment variable an option reads, named once in the app's help
_ENVVARS = ", ".join(option.envvar for option in OPTIONS if option.envvar)


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

            def __init__(self, *args: Any, **kwargs: Any) -> None:
                kwargs.setdefault("break_on_hyphens", False)
                super().__init__(*args, **kwargs)

        module.TextWrapper = _Wrapper


_unbroken_option_names()

# Plain click help (rich_markup_mode=None): wrapped to the terminal, or to 80 columns when piped, with option
# names whole in their own column; rich's panels cut them (--seasonality-mo…) and read [default: ...] as markup.
app = typer.Typer(
    help="Forecast thousands of time series with Prophet, on every core.\n\nOptions can also come from "
         f"environment variables ({_ENVVARS}; each command's --help names them); an option on the command line "
         "wins over its variable, and the variable over a --config job file. Shell completion: forecast "
         "--install-completion.",
    epilog=EXIT_CODES_HELP,
    no_args_is_help=True,
    add_completion=True,  # --install-completion / --show-completion for bash, zsh, fish, PowerShell
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


# The CLI's choices are Enums of config's tuples (typer shows and checks them): one Enum per tuple.
_ENUMS: dict[tuple[str, ...], type[Enum]] = {}


def _enum(option: Option) -> type[Enum]:
    choices = option.kind
    if choices not in _ENUMS:
        title = "".join(part.title() for part in option.name.split("_"))
        _ENUMS[choices] = Enum(title, {value: value for value in choices}, type=str)
    return _ENUMS[choices]


# What --help shows after an option's name: words for what to type, not Python's types ("<list[str]>"); a choice
# shows its values and a bool no value.
_METAVARS = {"int": "<n>", "float": "<number>", "str": "<text>", "path": "<path>", "names": "<name>",
             "numbers": "<number>"}


def _parameter(option: Option, with_job_file: bool) -> inspect.Parameter:
    """The typer parameter of one declared option: its type, default, flags, help and range."""
    kind = option.kind
    if isinstance(kind, tuple):
        python_type: Any = _enum(option)
    else:
        python_type = {"int": int, "float": float, "str": str, "bool": bool, "path": Path, "table": str,
                       "names": list[str], "numbers": list[float]}[kind]
    default = option.field_default
    if isinstance(kind, tuple) and default is not None:
        default = python_type(default)
    if option.required:  # given on the command line, or later from the job file (checked in _parameters)
        default = None if with_job_file else inspect.Parameter.empty
    if default is None:
        python_type = Optional[python_type]
    if option.argument:
        info = typer.Argument(metavar=option.flag, help=option.help)
    else:
        info = typer.Option(*option.flags, help=option.help, envvar=option.envvar, show_envvar=bool(option.envvar),
                            min=option.min, max=option.max, metavar=_METAVARS.get(kind) if isinstance(kind, str) else None)
    return inspect.Parameter(option.name, inspect.Parameter.KEYWORD_ONLY, default=default,
                             annotation=Annotated[python_type, info])


def _declared(command: Command) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """Give a command the parameters of its declared options (forecast/options.py): typer reads a command's
    parameters from its signature, so the signature is made from the declarations."""
    def decorate(func: Callable[..., None]) -> Callable[..., None]:
        options = options_of(command)
        with_job_file = any(option.name == "job_file" for option in options)
        parameters = [inspect.Parameter("ctx", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=typer.Context)]
        parameters += [_parameter(option, with_job_file) for option in options if option.argument]
        parameters += [_parameter(option, with_job_file) for option in options if not option.argument]
        func.__signature__ = inspect.Signature(parameters)
        func.__annotations__ = {p.name: p.annotation for p in parameters}
        return func
    return decorate


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
    return _say_error(f"{where}{e.strerror or e}", EXIT_ERROR, json_log)


def _report(result: RunResult) -> None:
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
    b = s["backend"]
    if b.get("scheduler"):  # a cluster's backend: whose workers, and where
        # a Spark cluster's are executors with cores (a local master's one executor is the driver)
        unit, each = ("executors", "cores") if "executors" in b else ("workers", "threads")
        lines.insert(3, (f"{b['name']} {unit}", f"{b['workers']} ({b['threads']} {each}) at {b['scheduler']}"))
    width = max(len(k) for k, _ in lines)
    for key, value in lines:
        _echo(f"{key.ljust(width)}  {value}")


def _parameters(ctx: typer.Context, command: Command) -> dict:
    """The command's parameters, with a --config job file applied under the flags given on the command line, and
    FORECAST_SCHEDULER for --backend dask."""
    import os

    from .jobfile import apply_job_file

    params = dict(ctx.params)
    if params.get("job_file") is not None:
        # the command line, then the environment (FORECAST_N_JOBS, ...), then the job file
        given = {name for name in params if ctx.get_parameter_source(name).name in ("COMMANDLINE", "ENVIRONMENT")}
        params = apply_job_file(params["job_file"], params, given, command)
    for option in options_of(command):
        if option.required and params[option.name] is None:
            raise typer.BadParameter("missing; give it on the command line or in a --config job file",
                                     param_hint=option.flag)
    if "backend" in params:
        backend = getattr(params["backend"], "value", params["backend"])
        if params["scheduler"] is not None and backend != "dask":
            typer.echo("Error: --scheduler can only be used with --backend dask", err=True)
            raise typer.Exit(code=EXIT_USAGE)
        if backend == "dask" and params["scheduler"] is None:
            params["scheduler"] = os.environ.get("FORECAST_SCHEDULER") or None
    return params


def _log_format(params: dict) -> str:
    return getattr(params["log_format"], "value", params["log_format"])


@app.command(epilog=EXIT_CODES_HELP, short_help="Fit one Prophet model per series; write forecasts and timings.")
@_declared("run")
def run(ctx: typer.Context, **_: Any) -> None:
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

    json_log = _log_format(ctx.params) == "json"
    try:
        params = _parameters(ctx, "run")
        json_log = _log_format(params) == "json"
        config = forecast_config(params)
        with make_progress(params["quiet"], _log_format(params)) as progress:
            result = run_forecast(params["input"], config, reporter=progress)
    except (ForecastError, OSError) as e:
        raise _fail(e, json_log) from None
    except KeyboardInterrupt:
        typer.echo("Interrupted.", err=True)
        raise typer.Exit(code=EXIT_INTERRUPTED) from None
    try:
        _report(result)
    except BrokenPipeError:
        # the reader of stdout went away (`| head -1`): the run is written and its exit code is what a scheduler
        # must see, not 1; stdout is pointed at /dev/null so that Python's own flush at exit does not fail again
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    raise typer.Exit(code=result.exit_code)


@app.command(epilog=EXIT_CODES_HELP, short_help="Score models over past windows (Prophet against seasonal-naive).")
@_declared("backtest")
def backtest(ctx: typer.Context, **_: Any) -> None:
    """Backtest models over rolling origins (Prophet against a seasonal-naive baseline unless --model says
    otherwise) and write accuracy metrics.

    \b
    Example:
      forecast backtest data/sample.csv --id-col store --id-col item \\
        --time-col date --target-col sales --horizon 28 --windows 3
    """
    from .backtest import run_backtest
    from .progress import make_progress

    json_log = _log_format(ctx.params) == "json"
    try:
        params = _parameters(ctx, "backtest")
        json_log = _log_format(params) == "json"
        config = backtest_config(params)
        with make_progress(params["quiet"], _log_format(params)) as progress:
            result = run_backtest(params["input"], config, reporter=progress)
    except (ForecastError, OSError) as e:
        raise _fail(e, json_log) from None
    except KeyboardInterrupt:
        typer.echo("Interrupted before any series was backtested; nothing written.", err=True)
        raise typer.Exit(code=EXIT_INTERRUPTED) from None
    _echo(_accuracy_table(result.summary, result.out_dir))
    raise typer.Exit(code=result.exit_code)


def _accuracy_table(s: dict, out_dir: Path) -> str:
    """The overall metrics, one row per model (Prophet's named with its engine), led by WAPE and MASE, then the
    run's counts and a warning when zero actuals make sMAPE and MAPE mislead."""
    from .outputs import model_label

    names = ["n", "wape", "mase", "mae", "rmse", "smape", "mape", "coverage"]
    # each --level's coverage (coverage_80, ...) and each --quantile's share below it (below_q90), in order given
    names += [n for n in next(iter(s["overall"].values()), {}) if n.startswith(("coverage_", "below_q"))]
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
    skipped = next(iter(s["overall"].values()))["mape_skipped"]  # the model under test's
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
@_declared("check")
def check(ctx: typer.Context, **_: Any) -> None:
    """Check a table and profile and triage every series without fitting; write profile.csv.

    Exit 0 when the table is usable, 1 with the table-level error otherwise.

    \b
    Example:
      forecast check data/sample.csv --id-col store --id-col item \\
        --time-col date --target-col sales
    """
    from .profile import format_check, run_check

    try:
        params = _parameters(ctx, "check")
        result = run_check(params["input"], forecast_config(params), triage_rules(params))
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
