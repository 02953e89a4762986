"""Job files: the settings of `forecast run` or `backtest` in a TOML file, for schedulers. No typer here; the CLI
merges.

The tables ([input], [model], [run], [output], [backtest]) and their keys are the options' declarations
(forecast/options.py); docs/cli.md lists them. Keys are the command-line flags without the dashes (underscores for
inner dashes). A key that another command takes is left for it, so one job file serves a nightly run and its
backtest. Relative paths are taken from the job file's folder, so the job runs the same from any working
directory.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

from .errors import ConfigError
from .options import GROUPS, OPTIONS, Command

# table -> key -> (the option it sets, its kind: a type name or the allowed values, the commands that take it)
SPEC: dict[str, dict[str, tuple[str, Any, tuple[Command, ...]]]] = {
    group: {option.job_key: (option.name, option.kind, option.commands)
            for option in OPTIONS if option.group == group and option.job_key is not None}
    for group in GROUPS
}

_KIND_WORDS = {"int": "an integer", "float": "a number", "str": "a string", "bool": "true or false",
               "path": "a path (string)", "table": "a path or a URI (string)", "names": "a column name or a list of names",
               "numbers": "a number or a list of numbers"}


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check(file: Path, table: str, key: str, kind: Any, value: Any) -> Any:
    """The value converted for the CLI parameter, or a ConfigError naming the file, table and key."""
    ok = {
        "int": lambda v: isinstance(v, int) and not isinstance(v, bool),
        "float": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
        "bool": lambda v: isinstance(v, bool),
        "str": lambda v: isinstance(v, str),
        "path": lambda v: isinstance(v, str),
        "table": lambda v: isinstance(v, str),
        "names": lambda v: isinstance(v, str) or (isinstance(v, list) and v and all(isinstance(x, str) for x in v)),
        "numbers": lambda v: _number(v) or (isinstance(v, list) and v and all(_number(x) for x in v)),
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
    if kind == "table" and "://" in value:  # a URI names a database, not a file beside the job file
        return value
    if kind in ("path", "table"):
        path = Path(value).expanduser()
        return path if path.is_absolute() else file.parent / path
    if kind == "names":
        return [value] if isinstance(value, str) else list(value)
    if kind == "numbers":
        return [float(value)] if _number(value) else [float(x) for x in value]
    return value


def read_job_file(file: Path | str, command: Command = "run") -> dict[str, Any]:
    """The settings of a job file that `command` takes, by option name (forecast/options.py).

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
            name, kind, commands = SPEC[table][key]
            value = _check(file, table, key, kind, value)
            if command in commands:
                values[name] = value
    return values


def apply_job_file(file: Path | str, params: dict[str, Any], from_command_line: set[str],
                   command: Command = "run") -> dict[str, Any]:
    """`params` with every setting of the job file for `command` applied, except those given on the command line."""
    merged = dict(params)
    for name, value in read_job_file(file, command).items():
        if name not in from_command_line:
            merged[name] = value
    return merged
