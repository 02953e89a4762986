"""A database as the input and as the home of the forecasts: a throwaway PostgreSQL server (initdb in a temporary
directory, listening on 127.0.0.1 only) and SQLite files, no server.

The server tests are slow (the server starts once per session, in about two seconds); SQLite's are not.
"""

import glob
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest
from conftest import make_table
from typer.testing import CliRunner

from forecast.cli import app
from forecast.outputs import read_run_dir
from forecast.sources import open_source, read_table

PASSWORD = "s3cret-Pw"
ROOT = Path(__file__).resolve().parents[1]
RUN = ["--horizon", "5", "--n-jobs", "1", "--engine", "fast", "--seed", "3", "-q"]


def _tool(name):
    found = shutil.which(name) or next(iter(sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))), None)
    if found is None:
        pytest.skip(f"PostgreSQL's {name} is not installed (apt-get install postgresql)")
    return found


class Server:
    """A PostgreSQL server of its own: a data directory in /tmp, 127.0.0.1 and a free port, password auth."""

    def __init__(self):
        self.initdb, self.pg_ctl = _tool("initdb"), _tool("pg_ctl")
        self.dir = Path(tempfile.mkdtemp(prefix="forecast-pg-"))
        self.as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if self.as_postgres:  # initdb refuses to run as root
            shutil.chown(self.dir, "postgres")
        (self.dir / "pw").write_text(PASSWORD)
        if self.as_postgres:
            shutil.chown(self.dir / "pw", "postgres")
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self._run(self.initdb, "-D", str(self.dir / "data"), "-U", "postgres", "-A", "scram-sha-256",
                  f"--pwfile={self.dir / 'pw'}", "--no-sync")
        self.start()
        self.uri = f"postgresql://postgres:{PASSWORD}@127.0.0.1:{self.port}/postgres"

    def _run(self, *args):
        subprocess.run(self.as_postgres + list(args), check=True, capture_output=True, timeout=120)

    def start(self):
        self._run(self.pg_ctl, "-D", str(self.dir / "data"), "-l", str(self.dir / "log"), "-w", "-o",
                  f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.dir} -c fsync=off", "start")

    def kill(self):
        self._run(self.pg_ctl, "-D", str(self.dir / "data"), "-m", "immediate", "stop")

    def remove(self):
        try:
            self.kill()
        except subprocess.CalledProcessError:
            pass  # not running
        shutil.rmtree(self.dir, ignore_errors=True)

    def sql(self, query, params=()):
        import adbc_driver_postgresql.dbapi as pg

        with pg.connect(self.uri) as conn, conn.cursor() as cur:
            cur.execute(query, params)
            result = cur.fetch_arrow_table().to_pandas() if cur.description else None
            conn.commit()
            return result

    def load(self, name, frame):
        import adbc_driver_postgresql.dbapi as pg

        with pg.connect(self.uri) as conn, conn.cursor() as cur:
            cur.execute(f"DROP TABLE IF EXISTS {name}")
            cur.adbc_ingest(name, pa.Table.from_pandas(frame, preserve_index=False), mode="create")
            conn.commit()


@pytest.fixture(scope="session")
def pg():
    pytest.importorskip("adbc_driver_postgresql")
    server = Server()
    try:
        yield server
    finally:
        server.remove()


def sales():
    return make_table(n_series=3, days=60, id_cols=("store", "item")).rename(columns={"ds": "day", "y": "units"})


COLS = ["--id-col", "store", "--id-col", "item", "--time-col", "day", "--target-col", "units"]


def one_error_line(result, *words):
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == 1 and len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    for word in words:
        assert word in lines[0], lines[0]
    assert PASSWORD not in result.stderr
    return lines[0]


def forecasts_of(out):
    return read_run_dir(out).forecasts.drop(columns="run_id")


@pytest.mark.slow
def test_a_query_forecasts_as_the_csv_of_its_rows_and_the_tables_hold_each_run_once(pg, tmp_path):
    frame = sales()
    frame.to_csv(tmp_path / "sales.csv", index=False)
    pg.load("sales", frame.sample(frac=1, random_state=1))  # stored in another order than the CSV's
    runner = CliRunner()
    by_csv = runner.invoke(app, ["run", str(tmp_path / "sales.csv"), *COLS, *RUN, "--out", str(tmp_path / "csv")])
    assert by_csv.exit_code == 0, by_csv.output
    query = "SELECT store, item, day, units FROM sales WHERE day >= '2024-01-01'"
    to_db = ["--to-db", pg.uri, "--to-table", "nightly", "--run-id", "night-1"]
    for attempt in ("first", "again"):
        result = runner.invoke(app, ["run", pg.uri, "--query", query, *COLS, *RUN, *to_db, "--out",
                                     str(tmp_path / "db"), "--overwrite"])
        assert result.exit_code == 0, result.output
        pd.testing.assert_frame_equal(forecasts_of(tmp_path / "db"), forecasts_of(tmp_path / "csv"))
        stored = pg.sql("SELECT * FROM nightly ORDER BY store, item, ds")
        written = read_run_dir(tmp_path / "db").forecasts.sort_values(["store", "item", "ds"])
        assert len(stored) == len(written) == 3 * 5, attempt  # once, also after the rerun of night-1
        assert stored["yhat"].tolist() == pytest.approx(written["yhat"].tolist(), rel=1e-12)
        assert (stored["run_id"] == "night-1").all() and (stored["cutoff"] == pd.Timestamp("2024-02-29")).all()
        runs = pg.sql("SELECT * FROM nightly_runs ORDER BY store, item")
        assert runs[["store", "item"]].values.tolist() == [["store0", "item0"], ["store0", "item1"],
                                                            ["store1", "item0"]]
        assert set(runs["status"]) == {"ok"} and set(runs["run_id"]) == {"night-1"}
    types = pg.sql("SELECT column_name, data_type FROM information_schema.columns WHERE table_name = 'nightly'")
    assert dict(zip(types["column_name"], types["data_type"])) == {
        "store": "text", "item": "text", "ds": "timestamp without time zone", "yhat": "double precision",
        "yhat_lower": "double precision", "yhat_upper": "double precision", "model": "text",
        "cutoff": "timestamp without time zone", "run_id": "text"}
    # another night is added beside it
    other = runner.invoke(app, ["run", pg.uri, "--table", "sales", *COLS, *RUN, "--to-db", pg.uri, "--to-table",
                                "nightly", "--run-id", "night-2", "--out", str(tmp_path / "db2")])
    assert other.exit_code == 0, other.output
    counts = pg.sql("SELECT run_id, count(*) AS n FROM nightly GROUP BY run_id ORDER BY run_id")
    assert counts.values.tolist() == [["night-1", 15], ["night-2", 15]]
    # the password is in none of the run's files; the summary names the masked URI
    for path in (tmp_path / "db").iterdir():
        assert PASSWORD not in path.read_bytes().decode("utf-8", "replace"), path
    summary = json.loads((tmp_path / "db" / "summary.json").read_text())
    masked = pg.uri.replace(PASSWORD, "***")
    assert summary["input"] == f'{masked} query "{query}"' and summary["config"]["to_db"] == masked
    assert summary["to_db"] == {"uri": masked, "table": "nightly", "rows": 15, "runs_table": "nightly_runs",
                                "runs_rows": 3}
    # --resume knows the same query on the same data, and another query's data as another input
    again = runner.invoke(app, ["run", pg.uri, "--query", query, *COLS, *RUN[:-1], *to_db, "--out",
                                str(tmp_path / "db"), "--resume"])
    assert again.exit_code == 0 and "holds this run, finished: nothing to resume" in again.stderr, again.output
    pg.sql("UPDATE sales SET units = units + 1 WHERE day = '2024-02-29' AND store = 'store0' AND item = 'item0'")
    changed = runner.invoke(app, ["run", pg.uri, "--query", query, *COLS, *RUN, *to_db, "--out",
                                  str(tmp_path / "db"), "--resume"])
    assert changed.exit_code == 1, changed.stderr
    assert "holds a finished run, and the input's content differs" in changed.stderr


@pytest.mark.slow
def test_credentials_from_pg_variables_and_pgpass_and_bad_queries_are_one_line_without_the_password(
        pg, tmp_path, monkeypatch):
    pg.load("sales", sales())
    runner = CliRunner()
    no_password = pg.uri.replace(f":{PASSWORD}@", "@")
    monkeypatch.setenv("PGPASSWORD", PASSWORD)
    result = runner.invoke(app, ["run", no_password, "--table", "sales", *COLS, *RUN, "--out", str(tmp_path / "a")])
    assert result.exit_code == 0, result.output
    monkeypatch.delenv("PGPASSWORD")
    pgpass = tmp_path / "pgpass"
    pgpass.write_text(f"127.0.0.1:{pg.port}:postgres:postgres:{PASSWORD}\n")
    pgpass.chmod(0o600)  # libpq ignores a password file others can read
    monkeypatch.setenv("PGPASSFILE", str(pgpass))
    result = runner.invoke(app, ["run", no_password, "--table", "sales", *COLS, *RUN, "--out", str(tmp_path / "b")])
    assert result.exit_code == 0, result.output
    monkeypatch.delenv("PGPASSFILE")
    # PostgreSQL's own types: a uuid key is its text, numeric values are numbers
    typed = runner.invoke(app, ["run", pg.uri, "--query", "SELECT md5(store)::uuid AS store, item, day, "
                                "units::numeric(12, 6) AS units FROM sales", *COLS, *RUN, "--out", str(tmp_path / "c")])
    assert typed.exit_code == 0, typed.output
    keys = sorted(read_run_dir(tmp_path / "c").forecasts["store"].unique())
    assert keys == sorted(pg.sql("SELECT DISTINCT md5(store)::uuid::text AS k FROM sales")["k"])
    wrong = pg.uri.replace(PASSWORD, "not-" + PASSWORD)
    cases = [
        ([wrong, "--table", "sales"], ["127.0.0.1", ":***@", "cannot connect", "password authentication failed"]),
        ([pg.uri, "--table", "no_such_table"], ["table no_such_table", 'relation "no_such_table" does not exist']),
        ([pg.uri, "--query", "SELEC store FROM sales"], ['query "SELEC store FROM sales"', "syntax error"]),
        ([pg.uri, "--query", "SELECT store, item, day FROM sales"], ["target column 'units' not found"]),
        ([pg.uri, "--query", "SELECT NULL::text AS store, item, day, units FROM sales"],
         ["id column 'store' is empty"]),
        ([pg.uri, "--query", "SELECT store, item, day, 'many' AS units FROM sales"], ["'units'"]),
        ([pg.uri, "--query", "SELECT store::bytea AS store, item, day, units FROM sales"],
         ["column 'store' holds binary data"]),
    ]
    for args, words in cases:
        out = tmp_path / "bad"
        result = runner.invoke(app, ["run", *args, *COLS, *RUN, "--out", str(out)])
        one_error_line(result, *words)
        assert not out.exists()  # nothing written


def _wait_for(pg, condition, what, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = pg.sql(f"SELECT pid FROM pg_stat_activity WHERE {condition}")
        if len(found):
            return found["pid"].tolist()
        time.sleep(0.1)
    raise AssertionError(f"no session {what} within {timeout} s")


def _cli(*args):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    return subprocess.Popen([sys.executable, "-m", "forecast", *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


@pytest.mark.slow
def test_a_connection_lost_mid_read_is_one_line_and_nothing_written(pg, tmp_path):
    pg.load("sales", sales())
    out = tmp_path / "out"
    # the query waits on the server (pg_sleep) so that its session can be cut while it reads
    proc = _cli("run", pg.uri, "--query", "SELECT s.* FROM sales s, pg_sleep(60)", *COLS, *RUN, "--out", str(out))
    pids = _wait_for(pg, "query LIKE '%pg_sleep(60)%' AND state = 'active' AND pid <> pg_backend_pid()", "reading")
    pg.sql("SELECT pg_terminate_backend($1::int)", (pids[0],))
    _, stderr = proc.communicate(timeout=60)
    lines = stderr.strip().splitlines()
    assert proc.returncode == 1 and len(lines) == 1, stderr
    assert "the connection to the database was lost while reading" in lines[0] and PASSWORD not in stderr
    assert not out.exists()


@pytest.mark.slow
def test_the_server_killed_mid_write_leaves_the_previous_rows_and_exits_1(pg, tmp_path):
    pg.load("sales", sales())
    to_db = ["--to-db", pg.uri, "--to-table", "kept", "--run-id", "night"]
    first = CliRunner().invoke(app, ["run", pg.uri, "--table", "sales", *COLS, *RUN, *to_db, "--out",
                                     str(tmp_path / "first")])
    assert first.exit_code == 0, first.output
    before = pg.sql("SELECT * FROM kept ORDER BY store, item, ds")
    import adbc_driver_postgresql.dbapi as driver

    # a reader holds the table, so the rerun of the same night stops inside its transaction, mid-write
    holder = driver.connect(pg.uri)
    holder.cursor().execute("LOCK TABLE kept IN ACCESS EXCLUSIVE MODE")
    other = ["--interval-width", "0.9"]  # another night's forecasts
    proc = _cli("run", pg.uri, "--table", "sales", *COLS, *RUN, *other, *to_db, "--out", str(tmp_path / "second"))
    try:
        _wait_for(pg, "wait_event_type = 'Lock'", "writing")
    finally:
        pg.kill()
        try:
            holder.close()
        except Exception:
            pass
        _, stderr = proc.communicate(timeout=60)
        pg.start()
    lines = stderr.strip().splitlines()
    assert proc.returncode == 1, stderr
    assert lines[-1].startswith("Error: --to-db ") and "the connection was lost" in lines[-1], stderr
    assert "the tables keep their previous rows" in lines[-1] and PASSWORD not in stderr
    assert not any(line.startswith("Error") for line in lines[:-1])
    after = pg.sql("SELECT * FROM kept ORDER BY store, item, ds")
    pd.testing.assert_frame_equal(after, before)
    # the files were written; --resume writes the tables once the server is back
    resumed = CliRunner().invoke(app, ["run", pg.uri, "--table", "sales", *COLS, *RUN, *other, *to_db,
                                       "--out", str(tmp_path / "second"), "--resume"])
    assert resumed.exit_code == 0, resumed.output
    now = pg.sql("SELECT * FROM kept ORDER BY store, item, ds")
    assert len(now) == len(before) and not now["yhat_upper"].equals(before["yhat_upper"])


# SQLite: embedded, no server


@pytest.fixture
def sqlite_db(tmp_path):
    driver = pytest.importorskip("adbc_driver_sqlite.dbapi")
    path = tmp_path / "shop.db"
    with driver.connect(str(path)) as conn, conn.cursor() as cur:
        frame = sales()
        frame["day"] = frame["day"].dt.strftime("%Y-%m-%d")  # SQLite keeps dates as text
        cur.adbc_ingest("sales", pa.Table.from_pandas(frame, preserve_index=False), mode="create")
        conn.commit()
    return f"sqlite://{path}"


def test_a_sqlite_file_is_read_as_its_csv_and_receives_the_forecasts(sqlite_db, tmp_path):
    sales().to_csv(tmp_path / "sales.csv", index=False)
    runner = CliRunner()
    by_csv = runner.invoke(app, ["run", str(tmp_path / "sales.csv"), *COLS, *RUN, "--out", str(tmp_path / "csv")])
    assert by_csv.exit_code == 0, by_csv.output
    args = ["run", sqlite_db, "--query", "SELECT * FROM sales ORDER BY units", *COLS, *RUN, "--to-db", sqlite_db,
            "--run-id", "r1", "--out", str(tmp_path / "db"), "--overwrite"]
    for _ in range(2):
        result = runner.invoke(app, args)
        assert result.exit_code == 0, result.output
    pd.testing.assert_frame_equal(forecasts_of(tmp_path / "db"), forecasts_of(tmp_path / "csv"))
    import adbc_driver_sqlite.dbapi as driver

    with driver.connect(sqlite_db.split("://", 1)[1]) as conn, conn.cursor() as cur:
        cur.execute("SELECT run_id, count(*) FROM forecasts GROUP BY run_id")
        assert cur.fetchall() == [("r1", 15)]
        cur.execute("SELECT count(*) FROM forecasts_runs")
        assert cur.fetchall() == [(3,)]
    # a job file says the same: [input] path and table, [output] to_db and to_table
    job = tmp_path / "nightly.toml"
    job.write_text(f'[input]\npath = "{sqlite_db}"\ntable = "sales"\nid_col = ["store", "item"]\n'
                   'time_col = "day"\ntarget_col = "units"\n[model]\nhorizon = 5\nengine = "fast"\n'
                   f'[run]\nn_jobs = 1\n[output]\nto_db = "{sqlite_db}"\nto_table = "from_job"\n'
                   'run_id = "r2"\n')
    result = runner.invoke(app, ["run", "--config", str(job), "--out", str(tmp_path / "job"), "-q"])
    assert result.exit_code == 0, result.output
    with driver.connect(sqlite_db.split("://", 1)[1]) as conn, conn.cursor() as cur:
        cur.execute("SELECT run_id, count(*) FROM from_job GROUP BY run_id")
        assert cur.fetchall() == [("r2", 15)]
    # a table of an earlier version, with fewer columns and one of its own, gains this run's columns
    with driver.connect(sqlite_db.split("://", 1)[1]) as conn, conn.cursor() as cur:
        cur.execute("CREATE TABLE older (store TEXT, item TEXT, ds TIMESTAMP, yhat DOUBLE PRECISION, run_id TEXT, "
                    "note TEXT)")
        conn.commit()
    result = runner.invoke(app, args[:-7] + ["--to-db", sqlite_db, "--to-table", "older", "--run-id", "r3",
                                             "--out", str(tmp_path / "older")])
    assert result.exit_code == 0, result.output
    with driver.connect(sqlite_db.split("://", 1)[1]) as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*), count(yhat_upper), count(cutoff), count(note) FROM older")
        assert cur.fetchall() == [(15, 15, 15, 0)]
    # the same rows in another order are the same input for --resume
    shuffled = open_source(sqlite_db, query="SELECT * FROM sales ORDER BY units DESC")
    read_table(shuffled, ["store", "item"], "day", "units")
    ordered = open_source(sqlite_db, table="sales")
    read_table(ordered, ["store", "item"], "day", "units")
    assert shuffled.identity()["sha256"] == ordered.identity()["sha256"]


def test_check_and_backtest_read_a_database_too(sqlite_db, tmp_path):
    runner = CliRunner()
    check = runner.invoke(app, ["check", sqlite_db, "--table", "sales", *COLS, "--out", str(tmp_path / "check")])
    assert check.exit_code == 0, check.output
    assert len(pd.read_csv(tmp_path / "check" / "profile.csv")) == 3
    backtest = runner.invoke(app, ["backtest", sqlite_db, "--query", "SELECT * FROM sales", *COLS, *RUN,
                                   "--windows", "1", "--out", str(tmp_path / "bt")])
    assert backtest.exit_code == 0, backtest.output
    summary = json.loads((tmp_path / "bt" / "summary.json").read_text())
    assert summary["input"] == f'{sqlite_db} query "SELECT * FROM sales"' and summary["source"]["kind"] == "database"


def test_database_options_refused_where_they_cannot_work(sqlite_db, tmp_path):
    runner = CliRunner()
    missing = runner.invoke(app, ["run", sqlite_db, "--table", "nope", *COLS, *RUN, "--out", str(tmp_path / "o")])
    one_error_line(missing, "table nope", "no such table: nope")
    no_file = runner.invoke(app, ["run", "sqlite:///nowhere/x.db", "--table", "sales", *COLS, *RUN])
    one_error_line(no_file, "no such database file")
    neither = runner.invoke(app, ["run", sqlite_db, *COLS, *RUN])
    one_error_line(neither, '--query "SELECT ..." or --table NAME')
    csv_query = runner.invoke(app, ["run", "sales.csv", "--query", "SELECT 1", *COLS, *RUN])
    one_error_line(csv_query, "--query reads from a database")
    injected = runner.invoke(app, ["run", sqlite_db, "--table", "sales; DROP TABLE sales", *COLS, *RUN])
    one_error_line(injected, "not a plain table name")
    bad_sink = runner.invoke(app, ["run", sqlite_db, "--table", "sales", *COLS, *RUN, "--to-db", "ftp://x/y"])
    one_error_line(bad_sink, "--to-db ftp://x/y: not a database URI")
    unreachable = runner.invoke(app, ["run", sqlite_db, "--table", "sales", *COLS, *RUN, "--to-db",
                                      f"sqlite://{tmp_path}/no/such/dir.db", "--out", str(tmp_path / "o")])
    one_error_line(unreachable, "--to-db sqlite://", "cannot connect")  # before any fit
    foreign = runner.invoke(app, ["run", f"mysql://shop:{PASSWORD}@db/sales", *COLS, *RUN])
    one_error_line(foreign, "mysql://shop:***@db/sales: forecast reads no mysql:// URIs", "postgresql://")
    assert not (tmp_path / "o").exists()


@pytest.mark.slow
def test_a_csv_run_imports_no_database_driver(table_csv, tmp_path):
    code = ("import sys; from forecast.sources import open_source, read_table; "
            f"read_table(open_source({str(table_csv)!r}), ['unique_id'], 'ds', 'y'); "
            "print(sorted(m for m in sys.modules if m.startswith(('adbc', 'forecast.sources.database', "
            "'forecast.db', 'forecast.sinks'))))")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


class _StopAfter:
    """A reporter whose progress raises KeyboardInterrupt, as Ctrl-C would, once `n` series are done."""

    def __init__(self, n):
        self.n = n

    def progress(self, done, total):
        if done >= self.n:
            raise KeyboardInterrupt

    def note(self, text):
        pass

    def event(self, name, fields):
        pass


def test_an_interrupted_run_writes_no_half_night_and_its_resume_writes_the_whole(sqlite_db, tmp_path):
    from forecast.config import ForecastConfig, ModelOptions
    from forecast.runner import run_forecast

    def config(**more):
        return ForecastConfig(id_cols=("store", "item"), time_col="day", target_col="units", db_table="sales",
                              model=ModelOptions(horizon=5, engine="fast"), n_jobs=1, out_dir=tmp_path / "out",
                              to_db=sqlite_db, run_id="night", **more)

    stopped = run_forecast(sqlite_db, config(), reporter=_StopAfter(1))
    assert stopped.summary["status"] == "interrupted" and stopped.summary["to_db"] is None
    assert any("--to-db's tables were not written" in note for note in stopped.summary["notes"])
    import adbc_driver_sqlite.dbapi as driver

    with driver.connect(sqlite_db.split("://", 1)[1]) as conn, conn.cursor() as cur:
        cur.execute("SELECT name FROM sqlite_master WHERE name LIKE 'forecasts%'")
        assert cur.fetchall() == []
    resumed = run_forecast(sqlite_db, config(resume=True))
    assert resumed.exit_code == 0 and resumed.summary["to_db"]["rows"] == 15


def test_a_write_refused_halfway_leaves_both_tables_as_they_were(sqlite_db, tmp_path):
    import adbc_driver_sqlite.dbapi as driver

    runner = CliRunner()
    args = ["run", sqlite_db, "--table", "sales", *COLS, *RUN, "--to-db", sqlite_db, "--to-table", "atomic",
            "--run-id", "night"]
    assert runner.invoke(app, [*args, "--out", str(tmp_path / "one")]).exit_code == 0
    path = sqlite_db.split("://", 1)[1]

    def tables():
        with driver.connect(path) as conn, conn.cursor() as cur:
            cur.execute("SELECT * FROM atomic ORDER BY store, item, ds")
            forecasts = cur.fetch_arrow_table().to_pandas()
            cur.execute("SELECT * FROM atomic_runs ORDER BY store, item")
            return forecasts, cur.fetch_arrow_table().to_pandas()

    before = tables()
    with driver.connect(path) as conn, conn.cursor() as cur:  # the second table refuses rows, after the first's
        cur.execute("CREATE TRIGGER refuse BEFORE INSERT ON atomic_runs BEGIN SELECT RAISE(ABORT, 'refused'); END")
        conn.commit()
    result = runner.invoke(app, [*args, "--interval-width", "0.5", "--out", str(tmp_path / "two")])
    line = one_error_line(result, "writing atomic_runs failed: failed to execute: refused; nothing of this run was "
                          "committed", "the tables keep their previous rows")
    assert "--resume" in line
    after = tables()
    pd.testing.assert_frame_equal(after[0], before[0])
    pd.testing.assert_frame_equal(after[1], before[1])


def test_a_duckdb_file_is_read_as_its_csv_and_receives_each_run_once(tmp_path):
    driver = pytest.importorskip("adbc_driver_duckdb.dbapi")
    path = tmp_path / "shop.duckdb"
    with driver.connect(str(path)) as conn, conn.cursor() as cur:
        cur.adbc_ingest("sales", pa.Table.from_pandas(sales(), preserve_index=False), mode="create")
        conn.commit()
    uri = f"duckdb://{path}"
    sales().to_csv(tmp_path / "sales.csv", index=False)
    runner = CliRunner()
    assert runner.invoke(app, ["run", str(tmp_path / "sales.csv"), *COLS, *RUN, "--out",
                               str(tmp_path / "csv")]).exit_code == 0
    for _ in range(2):
        result = runner.invoke(app, ["run", uri, "--table", "sales", *COLS, *RUN, "--to-db", uri, "--run-id", "d1",
                                     "--out", str(tmp_path / "db"), "--overwrite"])
        assert result.exit_code == 0, result.output
    pd.testing.assert_frame_equal(forecasts_of(tmp_path / "db"), forecasts_of(tmp_path / "csv"))
    with driver.connect(str(path)) as conn, conn.cursor() as cur:
        cur.execute("SELECT run_id, count(*) FROM forecasts GROUP BY run_id")
        assert cur.fetchall() == [("d1", 15)]
    missing = runner.invoke(app, ["run", uri, "--table", "nope", *COLS, *RUN])
    one_error_line(missing, "table nope", "Table with name nope does not exist")
