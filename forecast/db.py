"""What the database source (sources/database.py) and the database sink (sinks/database.py) share: a database URI
with its password masked, the ADBC driver of its scheme, connecting, and a driver's error as one line.

Databases are reached through ADBC (Arrow Database Connectivity), so tables travel as Arrow columns, not row by
row: PostgreSQL (`postgresql://USER@HOST:PORT/DB`, the `forecast[postgres]` extra) and SQLite, embedded, without
a server (`sqlite:///path/to/file.db`, `sqlite://relative.db`; the `forecast[sqlite]` extra). PostgreSQL's
credentials come from the URI, the standard PG* environment variables or ~/.pgpass (libpq reads them); the
password is never shown: every message and record names the URI with it masked.
"""

from __future__ import annotations

import re
from importlib import import_module
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

from .errors import ConfigError

Dialect = Literal["postgresql", "sqlite", "duckdb"]
# The URI schemes a database source or sink reads, and the dialect each means.
SCHEMES: dict[str, Dialect] = {"postgresql": "postgresql", "postgres": "postgresql", "sqlite": "sqlite",
                               "duckdb": "duckdb"}
# The dialects that are a file, opened in this process (no server, no credentials).
EMBEDDED: tuple[Dialect, ...] = ("sqlite", "duckdb")
# What to install for each dialect's driver.
_EXTRAS: dict[Dialect, tuple[str, str]] = {"postgresql": ("adbc_driver_postgresql", "postgres"),
                                           "sqlite": ("adbc_driver_sqlite", "sqlite"),
                                           "duckdb": ("adbc_driver_duckdb", "duckdb")}
# A table name as --table and --to-table take it: a plain SQL name, optionally schema-qualified; it goes into the
# SQL unquoted (so the database folds its case as it would in a query), which is safe only for such names.
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_$]*(\.[A-Za-z_][A-Za-z0-9_$]*)?")


def dialect(uri: str) -> Dialect | None:
    """The database a URI names ("postgresql", "sqlite" or "duckdb"), None when it is not a database URI."""
    return SCHEMES.get(uri.split("://", 1)[0].lower()) if "://" in uri else None


def masked(uri: str) -> str:
    """The URI with its password replaced by ***: what messages, logs and summary.json show."""
    parts = urlsplit(uri)
    if parts.password is None:
        return uri
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=f"{parts.username or ''}:***@{host}"))


def without_password(uri: str) -> str:
    """The URI without its password, what a record keeps: opened again, libpq takes the password from the PG*
    variables or ~/.pgpass."""
    parts = urlsplit(uri)
    if parts.password is None:
        return uri
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=f"{parts.username or ''}@{host}"))


def table_name(name: str, option: str) -> str:
    """`name` if it is a plain (optionally schema-qualified) table name, else one line saying what is accepted."""
    if not _NAME.fullmatch(name):
        raise ConfigError(f"{option} {name!r}: not a plain table name (letters, digits, _ and $, optionally "
                          "schema.table); for anything else give --query")
    return name


def file_path(uri: str) -> Path:
    """The file of an embedded database's URI: sqlite:///abs/file.db or sqlite://relative/file.db (duckdb:// alike)."""
    return Path(uri.split("://", 1)[1])


def connect(uri: str) -> Any:
    """A DB-API connection (ADBC's, autocommit off) to the database the URI names.

    Raises:
        ConfigError: the dialect's driver is not installed (one line naming the extra to install).
        adbc_driver_manager.Error: the database refused the connection (see `message`).
    """
    kind = dialect(uri)
    if kind is None:
        raise ConfigError(f"{masked(uri)}: not a database URI; give postgresql://USER@HOST:PORT/DB or "
                          "sqlite:///path/to/file.db (or duckdb:///path/to/file.duckdb)")
    module, extra = _EXTRAS[kind]
    try:
        driver = import_module(f"{module}.dbapi")
    except ImportError:
        raise ConfigError(f"{masked(uri)}: reading and writing {kind} needs its driver: pip install "
                          f"'forecast[{extra}]' ({module.replace('_', '-')})") from None
    if kind in EMBEDDED:
        return driver.connect(str(file_path(uri)))
    return driver.connect(uri)


def placeholder(uri: str) -> str:
    """The dialect's placeholder for a query's first parameter."""
    return "$1" if dialect(uri) == "postgresql" else "?"


# The driver's frame around the database's own words: "NOT_FOUND: Failed to prepare query: ERROR:  ...",
# "IO: [libpq] Failed to connect: ...", "[SQLite] Failed to prepare query: ..."
_SERVER_WORDS = re.compile(r"(?:ERROR|FATAL):\s+(.*)")
_DRIVER_PREFIX = re.compile(r"^(?:[A-Z_]+: )?(?:\[\w+\] )?")
# where a driver starts echoing the statement back ("Query was: ...", SQLite's "query: ..." and "query was: ...",
# DuckDB's "LINE 1: ...")
_ECHO = re.compile(r"\n\s*(?:query(?: was)?:|LINE \d+:)", re.I)


def message(e: BaseException, uri: str) -> str:
    """A driver's error as the database's own words on one line, without the query echoed back and with the
    URI's password masked wherever it appears."""
    text = str(e)
    server = _SERVER_WORDS.search(text)
    if server is not None:
        text = server.group(1)
    else:
        text = _DRIVER_PREFIX.sub("", _ECHO.split(text)[0])
    text = " ".join(text.split())
    password = urlsplit(uri).password
    if password:
        text = text.replace(password, "***")
    return text if len(text) <= 200 else text[:197] + "..."


def lost_connection(e: BaseException) -> bool:
    """Whether a driver's error says the connection to the server went away (rather than the query was bad)."""
    text = str(e).lower()
    return any(words in text for words in ("server closed the connection", "connection refused", "terminating "
                                           "connection", "no connection to the server", "connection to server",
                                           "could not receive data", "could not send data", "broken pipe",
                                           "eof detected", "ssl syscall"))
