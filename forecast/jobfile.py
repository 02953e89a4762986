"""Job files: the settings of `forecast run` in a TOML file, for schedulers. No typer here; the CLI merges.

    [input]   path, id_col, time_col, target_col, duplicates, future
    [model]   horizon, freq, growth, seasonality_mode, yearly/weekly/daily_seasonality, changepoint_prior_scale,
              seasonality_prior_scale, holidays, holidays_file, regressor, cap_col, floor_col, interval_width,
              uncertainty_samples, non_negative, seed, include_history, engine
    [run]     n_jobs, max_failed_frac, fit_timeout, resume, log_format, quiet, backend, scheduler,
              connect_timeout, fallback, triage, min_obs, max_zero_share, max_gap_share, stale_after,
              allow_negative, max_negative_share, workers_read, warm_start
    [output]  dir, format, overwrite, run_id

Keys are the command-line flags without the dashes (underscores for inner dashes). Relative paths are taken
from the job file's folder, so the job runs the same from any working directory.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

from .config import BACKEND_NAMES, DUPLICATE_POLICIES, ENGINES, FALLBACKS, GROWTHS, OUTPUT_FORMATS, SEASONALITY_MODES, TOGGLES
from .errors import ConfigError
from .progress import LOG_FORMATS

# table -> key -> (the `forecast run` parameter it sets, its kind: a type name or the allowed values)
SPEC: dict[str, dict[str, tuple[str, Any]]] = {
    "input": {
        "path": ("input", "path"), "id_col": ("id_col", "names"), "time_col": ("time_col", "str"),
        "target_col": ("target_col", "str"), "duplicates": ("duplicates", DUPLICATE_POLICIES),
        "future": ("future", "path"),
    },
    "model": {
        "horizon": ("horizon", "int"), "freq": ("freq", "str"), "growth": ("growth", GROWTHS),
        "seasonality_mode": ("seasonality_mode", SEASONALITY_MODES),
        "yearly_seasonality": ("yearly_seasonality", TOGGLES), "weekly_seasonality": ("weekly_seasonality", TOGGLES),
        "daily_seasonality": ("daily_seasonality", TOGGLES),
        "changepoint_prior_scale": ("changepoint_prior_scale", "float"),
        "seasonality_prior_scale": ("seasonality_prior_scale", "float"), "holidays": ("holidays", "str"),
        "interval_width": ("interval_width", "float"), "uncertainty_samples": ("uncertainty_samples", "int"),
        "non_negative": ("non_negative", "bool"), "seed": ("seed", "int"),
        "include_history": ("include_history", "bool"), "holidays_file": ("holidays_file", "path"),
        "regressor": ("regressor", "names"), "cap_col": ("cap_col", "str"), "floor_col": ("floor_col", "str"),
        "engine": ("engine", ENGINES),
    },
    "run": {
        "n_jobs": ("n_jobs", "int"), "max_failed_frac": ("max_failed_frac", "float"),
        "fit_timeout": ("fit_timeout", "float"), "resume": ("resume", "bool"),
        "log_format": ("log_format", LOG_FORMATS), "quiet": ("quiet", "bool"),
        "backend": ("backend", BACKEND_NAMES), "scheduler": ("scheduler", "str"),
        "connect_timeout": ("connect_timeout", "float"), "fallback": ("fallback", FALLBACKS),
        "triage": ("triage", "bool"), "min_obs": ("min_obs", "int"), "max_zero_share": ("max_zero_share", "float"),
        "max_gap_share": ("max_gap_share", "float"), "stale_after": ("stale_after", "float"),
        "allow_negative": ("allow_negative", "bool"), "max_negative_share": ("max_negative_share", "float"),
        "workers_read": ("workers_read", "bool"),
        "warm_start": ("warm_start", "path"),
    },
    "output": {"dir": ("out", "path"), "format": ("format", OUTPUT_FORMATS), "overwrite": ("overwrite", "bool"),
               "run_id": ("run_id", "str")},
}

_KIND_WORDS = {"int": "an integer", "float": "a number", "str": "a string", "bool": "true or false",
               "path": "a path (string)", "names": "a column name or a list of names"}


def _check(file: Path, table: str, key: str, kind: Any, value: Any) -> Any:
    """The value converted for the CLI parameter, or a ConfigError naming the file, table and key."""
    ok = {
        "int": lambda v: isinstance(v, int) and not isinstance(v, bool),
        "float": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
        "bool": lambda v: isinstance(v, bool),
        "str": lambda v: isinstance(v, str),
        "path": lambda v: isinstance(v, str),
        "names": lambda v: isinstance(v, str) or (isinstance(v, list) and v and all(isinstance(x, str) for x in v)),
    }
    if isinstance(kind, tuple):
        if value not in kind:
            raise ConfigError(f"{file}: [{table}] {key} must be one of {', '.join(kind)}; got {value!r}")
        return value
    if not ok[kind](value):
        raise ConfigError(f"{file}: [{table}] {key} must be {_KIND_WORDS[kind]}; got {value!r} "
                          f"({type(value).__name__})")
    if kind == "float":
        return float(value)
    if kind == "path":
        path = Path(value).expanduser()
        return path if path.is_absolute() else file.parent / path
    if kind == "names":
        return [value] if isinstance(value, str) else list(value)
    return value


def read_job_file(file: Path | str) -> dict[str, Any]:
    """The settings of a job file, by `forecast run` parameter name.

    Raises:
        ConfigError: one line naming the file and, for an unknown key or a wrong type, the table and key.
    """
    file = Path(file)
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        raise ConfigError(f"{file}: job files need Python 3.11 or newer (tomllib)") from None
    try:
        raw = file.read_bytes()
        if raw.startswith(b"\xef\xbb\xbf"):  # a UTF-8 byte-order mark, as some Windows editors write
            raw = raw[3:]
        data = tomllib.loads(raw.decode("utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{file}: no such job file") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{file}: not a readable TOML job file: it is not UTF-8 text (UTF-16, as Notepad may "
                          "save, is not TOML); save it as UTF-8") from None
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise ConfigError(f"{file}: not a readable TOML job file: {e}") from e
    values: dict[str, Any] = {}
    for table, entries in data.items():
        if table not in SPEC:
            close = difflib.get_close_matches(table, list(SPEC), n=1)
            hint = f"; did you mean [{close[0]}]?" if close else ""
            raise ConfigError(f"{file}: unknown table or key {table!r} at the top level; settings go in the tables "
                              f"{', '.join(f'[{t}]' for t in SPEC)}{hint}")
        if not isinstance(entries, dict):
            raise ConfigError(f"{file}: {table!r} must be a table ([{table}]); got {entries!r}")
        for key, value in entries.items():
            if key not in SPEC[table]:
                close = difflib.get_close_matches(key, list(SPEC[table]), n=1)
                hint = f"; did you mean {close[0]!r}?" if close else f"; known keys: {', '.join(SPEC[table])}"
                raise ConfigError(f"{file}: unknown key {key!r} in [{table}]{hint}")
            param, kind = SPEC[table][key]
            values[param] = _check(file, table, key, kind, value)
    return values


def apply_job_file(file: Path | str, params: dict[str, Any], from_command_line: set[str]) -> dict[str, Any]:
    """`params` with every setting of the job file applied, except those given on the command line."""
    merged = dict(params)
    for name, value in read_job_file(file).items():
        if name not in from_command_line:
            merged[name] = value
    return merged
