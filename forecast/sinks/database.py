"""A run's forecasts and per-series records written into a database's tables (--to-db URI --to-table NAME).

One transaction per run: the tables created when missing (with the types of the columns: timestamp, double
precision, bigint or text keys), this run id's earlier rows deleted, the new rows appended (ADBC's bulk
ingest: PostgreSQL's COPY), then one commit. A reader sees the previous night or this one, never half of one; a
rerun of a run id replaces its rows rather than adding them again; a connection lost before the commit leaves
the tables as they were.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterable

from .. import db
from ..errors import ConfigError, OutputError

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa


def write_run(uri: str, table: str, forecasts: pd.DataFrame, runs: pd.DataFrame, run_id: str) -> dict:
    """Write one run's forecasts into `table` and its per-series records into `table`_runs, replacing the rows
    of an earlier run with this run id, in one transaction.

    Args:
        uri: the database (postgresql://..., sqlite:///... or duckdb:///...).
        table: the forecasts' table (optionally schema.table); the records go to the same name plus "_runs".
        forecasts: the run's forecasts, with their run_id and cutoff columns.
        runs: one record per series, with their run_id and cutoff columns.
        run_id: the run id whose earlier rows are replaced.

    Returns:
        What summary.json says of it: the masked URI, both tables and their rows written.

    Raises:
        OutputError: the database refused or was lost; one line, and nothing of this run is in the tables.
    """
    db.table_name(table, "--to-table")
    runs_table = f"{table}_runs"
    where = db.masked(uri)
    batches = [(table, _arrow(forecasts)), (runs_table, _arrow(runs))]
    try:
        conn = db.connect(uri)
    except ConfigError:
        raise
    except Exception as e:
        raise OutputError(f"--to-db {where}: cannot connect: {db.message(e, uri)}; the files are written, the "
                          "tables were not touched: run again with --resume once the database is reachable"
                          ) from None
    step = "connecting"
    try:
        cur = conn.cursor()
        for name, data in batches:
            step = f"creating {name}"
            cur.execute(f"CREATE TABLE IF NOT EXISTS {name} ({_columns_ddl(data.schema)})")
            # a table made by an earlier version or other options (--include-history, more intervals) gains the
            # columns this run has; the columns only it has are left empty in this run's rows
            cur.execute(f"SELECT * FROM {name} WHERE 1 = 0")
            there = set(cur.fetch_arrow_table().column_names)
            for f in data.schema:
                if f.name not in there:
                    step = f"adding column {f.name!r} to {name}"
                    cur.execute(f"ALTER TABLE {name} ADD COLUMN {_columns_ddl([f])}")
        for name, data in batches:
            step = f"replacing run {run_id!r} in {name}"
            with conn.cursor() as delete:  # a statement of its own: DuckDB's keeps an ingest's bound columns
                delete.execute(f"DELETE FROM {name} WHERE run_id = {db.placeholder(uri)}", (run_id,))
            step = f"writing {name}"
            cur.adbc_ingest(name, data, mode="append")
        step = "committing"
        conn.commit()
        cur.close()
    except Exception as e:
        try:
            conn.rollback()
        except Exception:  # the connection is gone: the server drops the open transaction itself
            pass
        lost = "the connection was lost: " if db.lost_connection(e) else ""
        raise OutputError(f"--to-db {where}: {step} failed: {lost}{db.message(e, uri)}; nothing of this run was "
                          f"committed, the tables keep their previous rows; the files are written: run again with "
                          "--resume to write the tables") from None
    finally:
        try:
            conn.close()
        except Exception:  # already lost
            pass
    return {"uri": where, "table": table, "rows": len(forecasts), "runs_table": runs_table, "runs_rows": len(runs)}


def _arrow(frame: pd.DataFrame) -> pa.Table:
    """A frame as Arrow with the types a database column takes: text as string, times in microseconds (what
    PostgreSQL keeps), categories as their values, an all-empty column as text."""
    import pyarrow as pa

    table = pa.Table.from_pandas(frame, preserve_index=False).replace_schema_metadata(None)
    fields = []
    for f in table.schema:
        kind = f.type.value_type if pa.types.is_dictionary(f.type) else f.type
        if pa.types.is_large_string(kind) or pa.types.is_null(kind):
            kind = pa.string()
        elif pa.types.is_timestamp(kind):
            kind = pa.timestamp("us")
        fields.append(pa.field(f.name, kind))
    return table.cast(pa.schema(fields), safe=False)


def _sql_type(kind: Any) -> str:
    import pyarrow as pa

    if pa.types.is_integer(kind):
        return "BIGINT"
    if pa.types.is_floating(kind):
        return "DOUBLE PRECISION"
    if pa.types.is_timestamp(kind):
        return "TIMESTAMP"
    if pa.types.is_boolean(kind):
        return "BOOLEAN"
    return "TEXT"


def _columns_ddl(fields: Iterable[pa.Field]) -> str:
    """The column list of a CREATE TABLE for these columns (names quoted: a key may be named "order")."""
    return ", ".join(f'"{f.name}" {_sql_type(f.type)}' for f in fields)


def check_reachable(uri: str) -> None:
    """Connect once and close, before a run fits anything: a missing driver, a wrong password or a database
    that is down is one line at the start, not after the night's work.

    Raises:
        ConfigError: one line naming the masked URI and the database's words.
    """
    try:
        db.connect(uri).close()
    except ConfigError:
        raise
    except Exception as e:
        raise ConfigError(f"--to-db {db.masked(uri)}: cannot connect: {db.message(e, uri)}; check the host, port, "
                          "user and password (in the URI, the PG* variables or ~/.pgpass)") from None
