"""`forecast run --backend spark` and `forecast.spark.forecast_spark` on a real Spark standalone cluster: a master
and one worker started from the scripts inside the pyspark package, on 127.0.0.1."""

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from forecast.plot import series_filename

pyspark = pytest.importorskip("pyspark")
pytestmark = pytest.mark.slow  # a real cluster on loopback, JVMs included

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "data" / "sample.csv"
KEYS = ["store", "item"]
# the sample's columns, the seed and a fallback: what the local and the Spark run are both given
OPTIONS = ["--id-col", "store", "--id-col", "item", "--time-col", "date", "--target-col", "sales", "--horizon", "7",
           "--seed", "3", "--max-failed-frac", "0.5"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env() -> dict:
    """Every process started here: this worktree's forecast first on the path, this Python for Spark's workers,
    Spark on loopback."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + [p for p in [env.get("PYTHONPATH")] if p])
    env.update(PYSPARK_PYTHON=sys.executable, PYSPARK_DRIVER_PYTHON=sys.executable, SPARK_LOCAL_IP="127.0.0.1",
               SPARK_HOME=str(Path(pyspark.__file__).parent))
    return env


def _alive_workers(ui_port: int) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{ui_port}/json/", timeout=2) as r:
            return int(json.load(r).get("aliveworkers", 0))
    except OSError:
        return 0


class Cluster(str):
    """spark://127.0.0.1:PORT, and the pid of its one worker (whose child is the executor)."""

    worker_pid: int
    work_dir: Path  # the worker's: app-ID/N per executor it started for an application


@pytest.fixture(scope="module")
def master(tmp_path_factory) -> Cluster:
    """A standalone master with one 2-core worker; both stopped at the end."""
    tmp = tmp_path_factory.mktemp("spark")
    spark_class = str(Path(pyspark.__file__).parent / "bin" / "spark-class")
    port, ui = _free_port(), _free_port()
    url = f"spark://127.0.0.1:{port}"
    env = _env()
    logs = [open(tmp / "master.log", "w"), open(tmp / "worker.log", "w")]
    procs = [subprocess.Popen([spark_class, "org.apache.spark.deploy.master.Master", "--host", "127.0.0.1",
                               "--port", str(port), "--webui-port", str(ui)], env=env, cwd=tmp,
                              stdout=logs[0], stderr=subprocess.STDOUT, start_new_session=True)]
    procs.append(subprocess.Popen([spark_class, "org.apache.spark.deploy.worker.Worker", url, "--host", "127.0.0.1",
                                   "--cores", "2", "--memory", "2g", "--webui-port", str(_free_port()),
                                   "--work-dir", str(tmp / "work")], env=env, cwd=tmp,
                                  stdout=logs[1], stderr=subprocess.STDOUT, start_new_session=True))
    try:
        deadline = time.monotonic() + 90
        while _alive_workers(ui) < 1:
            if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
                raise RuntimeError("the Spark master or worker did not start: " + (tmp / "worker.log").read_text())
            time.sleep(0.5)
        cluster = Cluster(url)
        cluster.worker_pid = procs[1].pid  # spark-class execs java: the worker JVM itself
        cluster.work_dir = tmp / "work"
        yield cluster
    finally:
        for p in reversed(procs):  # the worker (and its executors) first, then the master
            try:
                os.killpg(p.pid, 15)
            except ProcessLookupError:
                pass
        for p in procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, 9)
                p.wait()
        for f in logs:
            f.close()


@pytest.fixture(scope="module")
def table(tmp_path_factory) -> Path:
    """Six of the sample's series (items as integers), and three odd ones: all values missing (failed), one value
    (below --min-obs: the fallback), timestamps off the table's daily grid (a frequency of its own)."""
    sample = pd.read_csv(SAMPLE, dtype=str)
    sample = sample[sample["store"].isin(["S01", "S02"]) & sample["item"].isin(["I001", "I002", "I003"])].copy()
    sample["item"] = sample["item"].str.lstrip("I0")
    irregular = pd.Timestamp("2025-01-01") + pd.to_timedelta(np.arange(40), "D") + pd.to_timedelta(
        np.arange(40) * 37 % 24, "h")  # off the table's daily grid
    odd = pd.DataFrame({"store": ["S09"] * 44, "item": ["1"] * 3 + ["2"] + ["3"] * 40,
                        "date": ["2025-01-01", "2025-01-02", "2025-01-03", "2025-01-05"]
                        + irregular.strftime("%Y-%m-%d %H:%M:%S").tolist(),
                        "sales": ["", "", "", "4"] + [str(v) for v in range(40)]})
    path = tmp_path_factory.mktemp("table") / "table.csv"
    pd.concat([sample, odd], ignore_index=True).to_csv(path, index=False)
    return path


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "forecast", *args], env=_env(), capture_output=True, text=True,
                          timeout=600)


def _sorted(frame: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    return frame.sort_values(by).reset_index(drop=True)


@pytest.fixture(scope="module")
def local_run(table, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("local") / "out"
    done = _cli("run", str(table), *OPTIONS, "--n-jobs", "1", "--out", str(out))
    assert done.returncode == 0, done.stderr
    return out


@pytest.fixture(scope="module")
def spark_run(table, master, tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    out = tmp_path_factory.mktemp("spark") / "out"
    return out, _cli("run", str(table), *OPTIONS, "--backend", "spark", "--master", master, "--log-format", "json",
                     "--out", str(out))


def test_spark_run_equals_local_run(local_run, spark_run, master):
    out, done = spark_run
    assert done.returncode == 0, done.stderr
    # stderr is forecast's own JSON lines only: nothing from the JVM, even at its start
    events = [json.loads(line)["event"] for line in done.stderr.splitlines()]
    assert events[0] == "start" and events[-1] == "end" and set(events) <= {"start", "failed", "end"}, events
    local, spark = (json.loads((d / "summary.json").read_text()) for d in (local_run, out))
    for field in ("series_total", "series_ok", "series_failed", "series_fallback", "series_below_min_obs", "rows",
                  "table_freq", "key_types", "status", "series_own_freq"):
        assert spark[field] == local[field], field
    assert spark["key_types"] == {"store": "text", "item": "int"}
    assert set(local) - set(spark) <= {"manifest"}  # a Spark run cannot be resumed: it has no manifest
    assert spark["backend"]["name"] == "spark" and spark["backend"]["master"] == master
    assert spark["backend"]["executors"] == 1
    assert (out / "forecasts.parquet").is_dir()  # a dataset Spark wrote, not a file this process wrote

    a = _sorted(pd.read_parquet(local_run / "forecasts.parquet"), KEYS + ["ds"])
    b = _sorted(pd.read_parquet(out / "forecasts.parquet"), KEYS + ["ds"])
    assert list(b.columns) == list(a.columns)
    assert b["item"].dtype == a["item"].dtype
    pd.testing.assert_frame_equal(b.drop(columns=["run_id"]), a.drop(columns=["run_id"]), check_dtype=False,
                                  rtol=1e-6)
    timings = _sorted(pd.read_parquet(out / "timings.parquet"), KEYS)
    local_timings = _sorted(pd.read_csv(local_run / "timings.csv", keep_default_na=False), KEYS)
    assert list(timings.columns) == list(local_timings.columns)
    for col in ("store", "item", "n_obs", "status", "model", "engine", "error"):
        assert timings[col].astype(str).tolist() == local_timings[col].astype(str).tolist(), col
    errors = _sorted(pd.read_parquet(out / "errors.parquet"), KEYS)
    local_errors = _sorted(pd.read_csv(local_run / "errors.csv", keep_default_na=False), KEYS)
    assert errors["reason"].tolist() == ["all 3 values are missing"]
    assert errors.astype(str).to_dict("records") == local_errors.astype(str).to_dict("records")


def test_partitioned_parquet_is_one_table(table, local_run, master, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    frame = pd.read_csv(table, dtype={"store": str, "date": str})
    frame["date"] = pd.to_datetime(frame["date"], format="mixed")  # nanoseconds, as pandas writes them
    dataset = tmp_path / "by_store"
    pq.write_to_dataset(pa.Table.from_pandas(frame, preserve_index=False), dataset, partition_cols=["store"])
    assert len(list(dataset.rglob("*.parquet"))) == 3
    out = tmp_path / "out"
    done = _cli("run", str(dataset), *OPTIONS, "--backend", "spark", "--master", master, "--out", str(out))
    assert done.returncode == 0, done.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["series_total"] == 9 and summary["rows"] == len(frame)
    a = _sorted(pd.read_parquet(local_run / "forecasts.parquet"), KEYS + ["ds"])
    b = _sorted(pd.read_parquet(out / "forecasts.parquet"), KEYS + ["ds"])[list(a.columns)]
    b["store"] = b["store"].astype(str)
    np.testing.assert_allclose(b["yhat"], a["yhat"], rtol=1e-6)
    assert b[KEYS].astype(str).values.tolist() == a[KEYS].astype(str).values.tolist()
    # plot reads the dataset again as one table (its partition column included) for the history
    done = _cli("plot", str(out), "--series", "S01 / 1", "--out", str(tmp_path / "plots"))
    assert done.returncode == 0, done.stderr
    assert [p.name for p in (tmp_path / "plots").iterdir()] == [series_filename(("S01", 1))]


def test_plot_and_report_read_a_spark_run(local_run, spark_run, tmp_path):
    """plot and report read the Parquet datasets Spark wrote and the input again: the same plots as the local
    run's, and a report with its slowest series and its failure."""
    out, done = spark_run
    assert done.returncode == 0, done.stderr
    plotted = {}
    for name, run in (("local", local_run), ("spark", out)):
        done = _cli("plot", str(run), "--out", str(tmp_path / name))
        assert done.returncode == 0, done.stderr
        plotted[name] = sorted(p.name for p in (tmp_path / name).iterdir())
    assert plotted["spark"] == plotted["local"] and len(plotted["spark"]) == 9  # the failed series' history too
    for p in (tmp_path / "spark").iterdir():
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 5000
    done = _cli("report", str(out))
    assert done.returncode == 0, done.stderr
    page = (out / "report.html").read_text()
    assert "all 3 values are missing" in page and "Slowest series" in page and "S01 / 1" in page
    assert page.count("data:image/png;base64,") >= 4  # the fit times and the first series' plots


def test_library_function_returns_the_cli_rows(table, spark_run, master):
    """The same rows as the CLI's; a value that is not a number is one line naming the series and the value."""
    from pyspark.sql import SparkSession

    from forecast.errors import InputError
    from forecast.spark import forecast_spark, integer_text_keys, raise_input_errors

    out, done = spark_run
    assert done.returncode == 0, done.stderr
    spark = (SparkSession.builder.master(master).appName("forecast-test")
             .config("spark.sql.session.timeZone", "UTC").getOrCreate())
    try:
        sdf = integer_text_keys(spark.read.csv(str(table), header=True), KEYS)
        result = forecast_spark(sdf, horizon=7, id_cols=KEYS, time_col="date", target_col="sales", seed=3,
                                run_id=out.name)
        assert result.freq_sample == result.series_total == 9  # a small table: every series' steps decide
        rows = _sorted(result.forecasts.toPandas(), KEYS + ["ds"])
        timings = result.timings.toPandas()
        result.unpersist()
        bad = spark.createDataFrame(pd.DataFrame({"store": ["S1"] * 3, "item": [1, 1, 1],
                                                  "date": ["2025-01-01", "2025-01-02", "2025-01-03"],
                                                  "sales": ["1", "x", "3"]}))
        with pytest.raises(InputError, match=r"Spark DataFrame: .*store=S1, item=1.*'sales'.*'x'"):
            raise_input_errors(forecast_spark(bad, horizon=2, id_cols=KEYS, time_col="date", target_col="sales"))
    finally:
        spark.stop()
    cli = _sorted(pd.read_parquet(out / "forecasts.parquet"), KEYS + ["ds"])
    assert list(rows.columns) == list(cli.columns)
    pd.testing.assert_frame_equal(rows, cli, check_dtype=False, rtol=1e-9)
    assert sorted(timings["status"]) == sorted(pd.read_parquet(out / "timings.parquet")["status"])


def test_spark_refuses_what_it_cannot_honour(table, tmp_path):
    done = _cli("run", str(table), *OPTIONS, "--backend", "spark", "--triage", "--out", str(tmp_path / "o"))
    assert done.returncode == 1
    assert "--triage cannot be used with --backend spark" in done.stderr and "Traceback" not in done.stderr
    done = _cli("run", str(table), *OPTIONS, "--master", "local[1]", "--out", str(tmp_path / "o"))
    assert done.returncode == 1 and "--master can only be used with --backend spark" in done.stderr


def _children(pid: int) -> list[tuple[int, str]]:
    """(pid, command line) of the processes whose parent is pid."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            if ppid == pid:
                found.append((int(entry.name), (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()))
        except (OSError, IndexError, ValueError):
            continue
    return found


def _active_fit_stage(ui_port: int) -> bool:
    """Whether the driver at ui_port runs the stage that fits the series: after the frequency pass (toPandas) is
    done, the aggregate over the partitions (one task each: 2 cores x 4), with tasks running."""
    base = f"http://127.0.0.1:{ui_port}/api/v1/applications"
    try:
        with urllib.request.urlopen(base, timeout=2) as r:
            app = json.load(r)[0]["id"]
        with urllib.request.urlopen(f"{base}/{app}/stages?status=complete", timeout=2) as r:
            if not any(st["name"].startswith("toPandas at") for st in json.load(r)):
                return False
        with urllib.request.urlopen(f"{base}/{app}/stages?status=active", timeout=2) as r:
            stages = json.load(r)
    except (OSError, IndexError, KeyError, ValueError):
        return False
    return any(st["name"].startswith("collect at") and st["numTasks"] == 8 and st["numActiveTasks"] > 0
               and st["numCompleteTasks"] < 4 for st in stages)


def test_a_lost_executor_still_gives_every_series_once(master, tmp_path):
    """The executor is killed while it fits the series: Spark starts another and runs the lost tasks again."""
    out, ui = tmp_path / "out", _free_port()
    env = _env()
    env["PYSPARK_SUBMIT_ARGS"] = f"--conf spark.ui.port={ui} pyspark-shell"  # where the test sees the stages
    run = subprocess.Popen([sys.executable, "-m", "forecast", "run", str(SAMPLE), *OPTIONS, "--engine", "prophet",
                            "--backend", "spark", "--master", master, "--out", str(out)],
                           env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 300
        while not _active_fit_stage(ui):
            assert run.poll() is None and time.monotonic() < deadline, "the run ended before its fits were seen"
            time.sleep(0.2)
        executors = [pid for pid, cmd in _children(master.worker_pid) if "CoarseGrainedExecutorBackend" in cmd]
        assert len(executors) == 1
        os.kill(executors[0], 9)
        _, stderr = run.communicate(timeout=600)
    finally:
        if run.poll() is None:
            run.kill()
    assert run.returncode == 0, stderr
    app = max(master.work_dir.iterdir(), key=lambda d: d.stat().st_mtime)
    assert len(list(app.iterdir())) == 2  # the executor killed, and the one the worker started instead
    timings = pd.read_parquet(out / "timings.parquet")
    keys = pd.read_csv(SAMPLE, usecols=KEYS).drop_duplicates()
    assert len(timings) == len(keys) == 50
    assert not timings.duplicated(KEYS).any() and set(timings["status"]) == {"ok"}
    forecasts = pd.read_parquet(out / "forecasts.parquet")
    assert len(forecasts) == 50 * 7 and not forecasts.duplicated(KEYS + ["ds"]).any()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["series_total"] == summary["series_ok"] == 50


def test_quiet_under_cron_and_truthful_about_a_local_master(table, tmp_path):
    """With -q a local-master run says nothing on stderr (the JVM's banners and log lines included; a cluster's
    run with --log-format json: test_spark_run_equals_local_run). The table names the one executor (the driver)
    and its 2 cores."""
    out = tmp_path / "quiet"
    done = _cli("run", str(table), *OPTIONS, "--backend", "spark", "--master", "local[2]", "-q", "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    assert "spark executors      1 (2 cores) at local[2]" in done.stdout
    backend = json.loads((out / "summary.json").read_text())["backend"]
    assert (backend["executors"], backend["cores"], backend["local"]) == (1, 2, True)
