"""A database as the input: a query (--query "SELECT ...") or a whole table (--table sales) of PostgreSQL
(postgresql://USER@HOST:PORT/DB), SQLite (sqlite:///path/file.db) or DuckDB (duckdb:///path/file.duckdb; both
embedded, no server), read through Arrow.

The result is fetched once, as Arrow columns (ADBC: the server's binary COPY format for PostgreSQL, not row by
row), and kept for the run's reads, so the header, the table and the fingerprint all come from one snapshot. Its
columns then go through the same checks as a file's; messages name the (masked) URI and the query or table.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import pandas as pd

from .. import db
from ..errors import ConfigError, InputError
from .base import Source, unique_columns

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa

# How much of a query a message quotes.
_QUOTED = 80


class DatabaseSource(Source):
    """The rows a query (or a table) of a PostgreSQL or SQLite database returns.

    Args:
        uri: postgresql://USER[:PASSWORD]@HOST:PORT/DB (the password better in PGPASSWORD or ~/.pgpass) or
            sqlite:///path/file.db or duckdb:///path/file.duckdb.
        query: the SELECT to run; or
        table: a table's name (optionally schema.table), read whole.
    """

    kind = "database"
    path: Path | None = None  # nothing a worker can read again itself: --workers-read is refused
    keys_as_text = False  # the database's types: integer keys stay integers, text stays text
    takes_query = True

    def __init__(self, uri: str, query: str | None = None, table: str | None = None) -> None:
        self.uri, self.query, self.table = str(uri), query, table
        where = db.masked(self.uri)
        if query is None and table is None:
            raise ConfigError(f"{where}: say what to read: --query \"SELECT ...\" or --table NAME")
        if query is not None and table is not None:
            raise ConfigError(f"{where}: give --query or --table, not both")
        if table is not None:
            db.table_name(table, "--table")
            self.label = f"{where} table {table}"
        else:
            text = " ".join(query.split())
            self.label = f"{where} query \"{text if len(text) <= _QUOTED else text[:_QUOTED - 3] + '...'}\""
        self._arrow: pa.Table | None = None
        self._digest: tuple[int, str] | None = None

    @classmethod
    def accepts(cls, obj: Any) -> bool:
        return isinstance(obj, str) and db.dialect(obj) is not None

    @classmethod
    def reopen(cls, record: dict) -> DatabaseSource:
        """The query a run read, run again (its password from PGPASSWORD or ~/.pgpass: records keep none)."""
        return cls(record["uri"], query=record.get("query"), table=record.get("table"))

    def _sql(self) -> str:
        return self.query if self.query is not None else f"SELECT * FROM {self.table}"

    def _fetch(self) -> pa.Table:
        """The query's result, run once: every later read of this run uses it."""
        if self._arrow is not None:
            return self._arrow
        where = db.masked(self.uri)
        if db.dialect(self.uri) in db.EMBEDDED and not db.file_path(self.uri).is_file():  # not made empty by reading
            raise InputError(f"{where}: no such database file ({db.file_path(self.uri)})")
        try:
            conn = db.connect(self.uri)
        except ConfigError:
            raise
        except Exception as e:
            raise InputError(f"{where}: cannot connect: {db.message(e, self.uri)}; check the host, port, user and "
                             "password (in the URI, the PG* variables or ~/.pgpass)") from None
        try:
            cur = conn.cursor()
            try:
                cur.execute(self._sql())
                table = cur.fetch_arrow_table()
            finally:
                cur.close()
        except Exception as e:
            if db.lost_connection(e):
                raise InputError(f"{self.label}: the connection to the database was lost while reading: "
                                 f"{db.message(e, self.uri)}; nothing was written: run again once the database "
                                 "is back") from None
            fix = "fix the query" if self.query is not None else "check the table's name (or give --query)"
            raise InputError(f"{self.label}: {db.message(e, self.uri)}; {fix}") from None
        finally:
            try:
                conn.close()
            except Exception:  # a connection already lost has nothing left to close
                pass
        self._arrow = _plain_types(table)
        return self._arrow

    def columns(self) -> list[str]:
        names = [str(n) for n in self._fetch().column_names]
        if not names:
            raise InputError(f"{self.label}: the query returns no columns")
        return unique_columns(self.label, names)

    def read(self, columns: Sequence[str], id_cols: Sequence[str], time_col: str,
             filters: list | None = None) -> pd.DataFrame:
        import pyarrow as pa

        from .files import _arrow_frame

        table = self._fetch().select(list(columns))
        for f in table.schema:
            if pa.types.is_binary(f.type) or pa.types.is_large_binary(f.type) or pa.types.is_fixed_size_binary(f.type):
                raise InputError(f"{self.label}: column {f.name!r} holds binary data, not text, numbers or times; "
                                 f"convert it in the query (encode({f.name}, 'hex') for a key)")
        text_cols = list(id_cols) + [time_col]
        # keys and a time given as text, as categories (each distinct text held once), the keys' sorted: as a
        # Parquet file's are read (files._read_parquet)
        as_dict = [c for c in text_cols if c in columns and pa.types.is_string(table.schema.field(c).type)]
        for c in as_dict:
            table = table.set_column(table.schema.get_field_index(c), c, table.column(c).dictionary_encode())
        frame = _arrow_frame(table, [c for c in as_dict if c != time_col])
        self._digest = _content_hash(frame)
        return frame

    def read_as_text(self, columns: Sequence[str]) -> pd.DataFrame | None:
        return self._fetch().select(list(columns)).to_pandas()

    def identity(self) -> dict:
        """The query (or table) and a hash of what it returned: the rows of the columns the run read, in any
        order (a query without ORDER BY may return them in another), so --resume knows the same data."""
        if self._digest is None:
            self._digest = _content_hash(self._fetch().to_pandas())
        size, digest = self._digest
        return {"path": self.label, "size": size, "sha256": digest}

    def record(self) -> dict:
        return {"kind": self.kind, "uri": db.without_password(self.uri), "query": self.query, "table": self.table}


def _plain_types(table: pa.Table) -> pa.Table:
    """The result with types pandas and the checks know: PostgreSQL's numeric (text in an extension type) and
    decimals as float64, dates as timestamps."""
    import pyarrow as pa

    for i, f in enumerate(table.schema):
        column = table.column(i)
        if isinstance(f.type, pa.BaseExtensionType):  # a type Arrow does not know (numeric, jsonb): its storage
            column = pa.chunked_array([c.storage for c in column.chunks], f.type.storage_type)
            if (f.metadata or {}).get(b"POSTGRESQL:type") == b"numeric":
                column = column.cast(pa.float64())
            elif pa.types.is_fixed_size_binary(column.type) and column.type.byte_width == 16:  # a uuid: its text
                column = _uuid_text(column)
        elif pa.types.is_decimal(f.type):
            column = column.cast(pa.float64())
        elif pa.types.is_date(f.type):
            column = column.cast(pa.timestamp("s"))
        else:
            continue
        table = table.set_column(i, pa.field(f.name, column.type), column)
    return table.replace_schema_metadata(None)


def _uuid_text(column: pa.ChunkedArray) -> pa.Array:
    """16-byte UUIDs as their usual text (8-4-4-4-12 lowercase hex digits), vectorised: a key of ten million rows
    in a second, not a Python loop."""
    import numpy as np
    import pyarrow as pa

    valid = column.is_valid().to_numpy(zero_copy_only=False)
    raw = np.frombuffer(b"".join(c.buffers()[1].to_pybytes()[c.offset * 16:(c.offset + len(c)) * 16]
                                 for c in column.chunks), dtype=np.uint8).reshape(-1, 16)
    nibbles = np.stack([raw >> 4, raw & 15], axis=2).reshape(-1, 32)
    digits = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)[nibbles]
    dash = np.full((len(raw), 1), ord("-"), dtype=np.uint8)
    text = np.hstack([digits[:, :8], dash, digits[:, 8:12], dash, digits[:, 12:16], dash, digits[:, 16:20], dash,
                      digits[:, 20:]])
    values = pa.array(np.ascontiguousarray(text).view("S36").ravel()).cast(pa.string())
    return pa.compute.if_else(pa.array(valid), values, pa.nulls(len(values), pa.string()))


def _content_hash(frame: pd.DataFrame) -> tuple[int, str]:
    """(rows, sha256) of a frame's rows taken as a multiset: the sum and the xor of each row's 64-bit hash, with
    the columns' names and types, so the same rows in another order hash the same. Vectorised per column (a
    category's text hashed once, numbers by their bits): 10 million rows in a few tenths of a second."""
    import numpy as np

    h = hashlib.sha256(repr([(str(c), str(t)) for c, t in frame.dtypes.items()]).encode())
    rows = np.zeros(len(frame), dtype=np.uint64)
    for _, column in frame.items():  # FNV's xor-and-multiply over the row's values, then one finaliser
        rows ^= _column_hash(column)
        rows *= np.uint64(0x100000001B3)
    rows = _mix(rows)
    h.update(np.array([len(rows), rows.sum(dtype=np.uint64), np.bitwise_xor.reduce(rows) if len(rows) else 0],
                      dtype=np.uint64).tobytes())
    return len(rows), h.hexdigest()


def _column_hash(column: pd.Series) -> np.ndarray:
    """A 64-bit hash of each value of a column."""
    import numpy as np

    if isinstance(column.dtype, pd.CategoricalDtype):
        codes = column.cat.codes.to_numpy()
        # the categories' hashes, then one for a missing value (code -1)
        texts = np.append(pd.util.hash_array(column.cat.categories.to_numpy(dtype=object)),
                          np.uint64(0x9E3779B97F4A7C15))
        return texts[codes]
    values = column.to_numpy()
    if values.dtype.kind == "f":
        return np.where(np.isnan(values), np.nan, values).astype(np.float64).view(np.uint64)
    if values.dtype.kind in "iumM":
        return values.view(np.int64).astype(np.uint64) if values.dtype.itemsize == 8 else values.astype(np.uint64)
    try:
        return pd.util.hash_array(values.astype(object))
    except TypeError:  # unhashable cells (a PostgreSQL array): their text
        return pd.util.hash_array(column.astype(str).to_numpy(dtype=object))


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: every bit of a 64-bit value spread over all bits of the result."""
    import numpy as np

    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))
