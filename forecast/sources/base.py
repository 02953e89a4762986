"""What an input source is (`Source`), and the registry that picks one for what the user gave.

A source is where a long table comes from: a file, a table in memory, next a database query. It only gives the
table's columns as they are; the checks that make them a forecast's input (forecast/sources/table.py) are the
same for every source, and name the source by its label.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import pandas as pd

from ..errors import ConfigError, InputError
from ..registry import resolve

# What a run's input may be given as: a path (str or Path; "-" for standard input), a pandas DataFrame, a pyarrow
# Table, or a Source; whatever a registered source accepts (see `open_source`).
TableInput = Any


@dataclass
class RawBlock:
    """Rows of a table as read, unchecked: `frame` holds rows `start` to `start + len(frame)` of the table (0-based,
    in the table's order), and `read` is the share of the whole input read so far (0 to 1, for an estimate of how
    many series there are)."""

    frame: pd.DataFrame
    start: int
    read: float


class Source(ABC):
    """A long table to forecast, before its checks. A new source subclasses it, and registers (`register_source`).

    Attributes:
        kind: the name it is registered under ("file", "frame"); a record's "kind".
        label: how messages name it: the path as the user gave it, or "DataFrame".
        path: the file on disk a worker can read again itself (--workers-read); None when there is none.
        keys_as_text: whether key columns arrive as text that may hold integers (CSV): such keys are read as
            integers, as a typed source (Parquet, a DataFrame) would have stored them.
        takes_query: whether it reads a --query or a --table (a database): its constructor then takes them as
            the keyword arguments `query` and `table`.
    """

    kind: str
    label: str
    path: Path | None
    keys_as_text: bool
    takes_query: bool = False

    @classmethod
    @abstractmethod
    def accepts(cls, obj: Any) -> bool:
        """Whether this source reads `obj`, what the user passed (`open_source` then calls cls(obj))."""

    @classmethod
    @abstractmethod
    def reopen(cls, record: dict) -> Source:
        """The source `record()` describes, opened again.

        Raises:
            InputError: it cannot be read again; one line saying why, and what to do instead.
        """

    @abstractmethod
    def columns(self) -> list[str]:
        """The table's column names, in order.

        Raises:
            InputError: the table cannot be read, is empty, or names a column twice.
        """

    @abstractmethod
    def read(self, columns: Sequence[str], id_cols: Sequence[str], time_col: str,
             filters: list | None = None) -> pd.DataFrame:
        """These columns (all present), unchecked; `filters` (pyarrow's form) may select rows, else all rows."""

    def blocks(self, columns: Sequence[str], id_cols: Sequence[str], time_col: str, rows: int
               ) -> Iterator[RawBlock]:
        """The table's rows in its own order, as consecutive blocks of about `rows` rows each, cut anywhere (the
        checks cut them again at series boundaries: sources/table.py). A source that can read a part at a time
        (a file) holds one block at a time; this default reads the whole table as one block.
        """
        frame = self.read(columns, id_cols, time_col)
        yield RawBlock(frame.reset_index(drop=True), 0, 1.0)

    @abstractmethod
    def read_as_text(self, columns: Sequence[str]) -> pd.DataFrame | None:
        """These columns as they are written, for a hint beside an error; None when the table cannot be read a
        second time (standard input)."""

    @abstractmethod
    def identity(self) -> dict:
        """What `--resume` compares: {"path", "size", "sha256"} (a file's path, bytes and their hash; a table in
        memory: its label, size and a hash of its content)."""

    @abstractmethod
    def record(self) -> dict:
        """A JSON-ready record of the source for summary.json, with its "kind", from which `reopen_source` opens
        it again (or says why it cannot)."""


# kind -> the source class, or "module:Class" imported on first use, so that an optional source (a database
# driver) costs nothing until a run uses it. Newer registrations are asked first (see `open_source`).
_REGISTRY: dict[str, Any] = {}
_SCHEMES: dict[str, tuple[str, ...]] = {}


def register_source(kind: str, source: type | str, schemes: Sequence[str] = ()) -> None:
    """Register a `Source` subclass under `kind`: the class, or "package.module:Class" to import when first
    needed. Its constructor takes what `accepts` accepted.

    A source that reads URIs names their schemes ("postgresql", "sqlite"): it is then asked (and imported, with
    its driver) only for an input that is such a URI, so opening a CSV never imports a database driver.
    """
    _REGISTRY[kind] = source
    _SCHEMES[kind] = tuple(s.lower() for s in schemes)


def _scheme(obj: Any) -> str | None:
    """The scheme of a URI given as text ("postgresql" of "postgresql://host/db"), None for anything else."""
    if isinstance(obj, str) and "://" in obj:
        return obj.split("://", 1)[0].lower()
    return None


def _class(kind: str) -> type:
    target = _REGISTRY[kind] = resolve(_REGISTRY[kind])
    return target


def open_source(obj: TableInput, query: str | None = None, table: str | None = None) -> Source:
    """The source that reads `obj`: a path (str or Path), a pandas DataFrame, a pyarrow Table, a URI a registered
    source reads (postgresql://...), or a Source as it is; `query` or `table` say what a database source reads.

    The most recently registered source that accepts `obj` reads it, so a new source can claim some strings
    (a URL) from the file source, which accepts any.

    Raises:
        InputError: no source reads this kind of object.
        ConfigError: --query or --table given for a source that reads neither (a file).
    """
    if isinstance(obj, Source):
        return obj
    scheme = _scheme(obj)
    if scheme is not None and not any(scheme in schemes for schemes in _SCHEMES.values()):
        from ..db import masked

        if masked(obj) != obj:  # a password in a URI no source reads: never echoed as a file's name
            known = sorted({s for schemes in _SCHEMES.values() for s in schemes})
            raise InputError(f"{masked(obj)}: forecast reads no {scheme}:// URIs; give a file or one of "
                             f"{', '.join(s + '://' for s in known)}")
    for kind in reversed(list(_REGISTRY)):
        if _SCHEMES[kind] and scheme not in _SCHEMES[kind]:
            continue
        cls = _class(kind)
        if cls.accepts(obj):
            if cls.takes_query:
                return cls(obj, query=query, table=table)
            if query is not None or table is not None:
                flag = "--query" if query is not None else "--table"
                raise ConfigError(f"{flag} reads from a database: give its URI as INPUT (postgresql://USER@HOST:"
                                  f"PORT/DB or sqlite:///file.db), not {obj if isinstance(obj, str) else 'a table'}")
            return cls(obj)
    raise InputError(f"{type(obj).__name__}: not an input forecast can read; give a file path, a pandas DataFrame "
                     "or a pyarrow Table")


def reopen_source(record: dict) -> Source:
    """The source a run recorded (`Source.record()`, summary.json's "source"), opened again.

    Raises:
        InputError: the source cannot be read again (standard input, a table that was in memory, a file gone).
    """
    kind = record.get("kind") if isinstance(record, dict) else None
    if kind not in _REGISTRY:
        raise InputError(f"the run's input source {kind!r} is not one this version of forecast reads")
    return _class(kind).reopen(record)


def unique_columns(label: str, names: list[str]) -> list[str]:
    """The column names, or one line naming a name given twice: which column is meant would be a guess."""
    for i, name in enumerate(names):
        if name in names[:i]:
            where = ", ".join(str(j + 1) for j, n in enumerate(names) if n == name)
            raise InputError(f"{label}: the header names column {name!r} more than once (columns {where}); give "
                             "each column its own name")
    return names


def one_line(e: Exception) -> str:
    """An exception's text on one line of at most 200 characters, for an error message that quotes it."""
    text = " ".join(str(e).split())
    return text if len(text) <= 200 else text[:197] + "..."
