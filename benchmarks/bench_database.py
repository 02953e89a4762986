"""Reading a long table from PostgreSQL against reading the same rows from Parquet: rows/s of each.

The table (--rows rows: --series series of daily values, a text key, a timestamp and a double) is loaded into the
server once (table bench_sales; kept for the next run when it holds the same rows) and written as Parquet. Each
read is timed twice, the faster kept, at two levels: the source's raw read (the columns as pandas columns: for
PostgreSQL the query, its binary COPY result as Arrow, and the conversion) and `read_table` (the same plus the
table checks a run does). One CSV row per source and level to outputs/benchmarks/database.csv.

Needs a PostgreSQL server and the forecast[postgres] extra. A throwaway server, as the tests start one:

    D=$(mktemp -d); chown postgres $D; echo pw > $D/pw; chown postgres $D/pw
    runuser -u postgres -- initdb -D $D/data -U postgres -A scram-sha-256 --pwfile=$D/pw
    runuser -u postgres -- pg_ctl -D $D/data -l $D/log -o "-c listen_addresses=127.0.0.1 -p 55432 -k $D" -w start
    python benchmarks/bench_database.py --uri postgresql://postgres:pw@127.0.0.1:55432/postgres
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from forecast.sources import FileSource, open_source, read_table

from common import write_rows

TABLE = "bench_sales"


def make_table(rows: int, series: int) -> pa.Table:
    days = rows // series
    t = np.tile(np.arange(days), series)
    rng = np.random.default_rng(0)
    keys = np.repeat(np.array([f"S{i:06d}" for i in range(series)], dtype=object), days)
    return pa.table({
        "series_id": pa.array(keys, pa.string()),
        "date": pa.array((np.datetime64("2020-01-01") + t.astype("timedelta64[D]")).astype("datetime64[us]")),
        "sales": 20 + 3 * np.sin(2 * np.pi * t / 7) + rng.normal(0, 1, len(t)),
    })


def load(uri: str, table: pa.Table) -> None:
    import adbc_driver_postgresql.dbapi as pg

    with pg.connect(uri) as conn, conn.cursor() as cur:
        cur.execute(f"SELECT to_regclass('{TABLE}') IS NOT NULL AS there")
        if cur.fetch_arrow_table()["there"][0].as_py():
            cur.execute(f"SELECT count(*) AS n FROM {TABLE}")
            if cur.fetch_arrow_table()["n"][0].as_py() == table.num_rows:
                return
            cur.execute(f"DROP TABLE {TABLE}")
        start = time.perf_counter()
        cur.adbc_ingest(TABLE, table, mode="create")
        conn.commit()
        print(f"loaded {table.num_rows:,} rows into {TABLE} in {time.perf_counter() - start:.1f} s")


def best_of(n: int, read) -> float:
    times = []
    for _ in range(n):
        start = time.perf_counter()
        frame = read()
        times.append(time.perf_counter() - start)
        del frame
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--uri", required=True, help="postgresql://USER:PASSWORD@HOST:PORT/DB")
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--series", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()

    table = make_table(args.rows, args.series)
    rows = table.num_rows
    load(args.uri, table)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "sales.parquet"
        pq.write_table(table, path)
        del table
        cols, ids, time_col = ["series_id", "date", "sales"], ["series_id"], "date"
        sources = {
            "postgresql": lambda: open_source(args.uri, table=TABLE),
            "parquet": lambda: FileSource(path),
        }
        results = []
        for name, make in sources.items():
            for level, read in (("read", lambda: make().read(cols, ids, time_col)),
                                ("read_table", lambda: read_table(make(), ids, time_col, "sales")[0])):
                seconds = best_of(args.repeat, read)
                results.append({"source": name, "level": level, "rows": rows, "seconds": round(seconds, 3),
                                "rows_per_s": round(rows / seconds), "cores": len(os.sched_getaffinity(0))})
                print(f"{name:10s} {level:10s} {rows:,} rows in {seconds:6.2f} s: {rows / seconds:12,.0f} rows/s")
    by = {(r["source"], r["level"]): r["seconds"] for r in results}
    for level in ("read", "read_table"):
        print(f"{level}: PostgreSQL takes {by['postgresql', level] / by['parquet', level]:.1f}x Parquet's time")
    print(write_rows("database", results))


if __name__ == "__main__":
    main()
