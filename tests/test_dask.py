"""`forecast run --backend dask` against a real scheduler and real workers started as separate processes."""

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from conftest import make_table
from typer.testing import CliRunner

from forecast.cli import app

distributed = pytest.importorskip("distributed")
pytestmark = pytest.mark.slow  # real clusters on loopback

ROOT = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(**extra) -> dict:
    """The environment of every process started here: this worktree's forecast first on the path."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + [p for p in [env.get("PYTHONPATH")] if p])
    env.pop("FORECAST_SCHEDULER", None)
    env.update(extra)
    return env


def _start_cluster(tmp: Path, n_workers: int, python_path: list[Path] = ()):
    """A `dask scheduler` and n `dask worker --nthreads 1` processes on 127.0.0.1; returns (address, processes)."""
    address = f"tcp://127.0.0.1:{_free_port()}"
    env = _env()
    env["PYTHONPATH"] = os.pathsep.join([str(p) for p in python_path] + [env["PYTHONPATH"]])
    quiet = dict(stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, cwd=tmp)
    procs = [subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1",
                               "--port", address.rsplit(":", 1)[1], "--no-dashboard"], **quiet)]
    for i in range(n_workers):
        procs.append(subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_worker", address, "--nthreads", "1",
                                       "--host", "127.0.0.1", "--no-dashboard", "--local-directory",
                                       str(tmp / f"w{i}")], **quiet))
    return address, procs


def _stop(procs) -> None:
    for p in reversed(procs):  # workers first, then the scheduler
        p.terminate()
    for p in procs:
        try:
            p.wait(timeout=15)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A scheduler and two single-thread workers, connected; yields (address, client). Stopped after the module."""
    tmp = tmp_path_factory.mktemp("cluster")
    address, procs = _start_cluster(tmp, 2)
    client = None
    try:
        client = distributed.Client(address, timeout=60)
        client.wait_for_workers(2, timeout=120)
        yield address, client
    finally:
        if client is not None:
            client.close()
        _stop(procs)


def _forecast(*args, env=None, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "forecast", "run", *map(str, args)], capture_output=True, text=True,
                          env=env or _env(), cwd=ROOT, timeout=300, **kwargs)


def test_dask_run_equals_local_run_and_names_its_workers(tmp_path, cluster):
    address, client = cluster
    table = tmp_path / "table.csv"
    make_table(n_series=6, days=80, id_cols=("store", "item")).to_csv(table, index=False)
    common = [table, "--id-col", "store", "--id-col", "item", "--horizon", 5, "--seed", 3,
              "--uncertainty-samples", 200, "--run-id", "nightly"]  # the same run_id: else the out dirs' names
    local = CliRunner().invoke(app, ["run", *map(str, common), "--n-jobs", 1, "--out", tmp_path / "local", "-q"])
    assert local.exit_code == 0, local.output
    proc = _forecast(*common, "--backend", "dask", "--scheduler", address, "--out", tmp_path / "dask")
    assert proc.returncode == 0, proc.stderr

    for name in ("forecasts.parquet", "errors.csv"):
        read = pd.read_parquet if name.endswith("parquet") else pd.read_csv
        pd.testing.assert_frame_equal(read(tmp_path / "dask" / name), read(tmp_path / "local" / name))
    timings = pd.read_csv(tmp_path / "dask" / "timings.csv")
    local_timings = pd.read_csv(tmp_path / "local" / "timings.csv")
    assert timings[["store", "item", "n_obs", "status"]].equals(local_timings[["store", "item", "n_obs", "status"]])
    workers = set(client.scheduler_info()["workers"])
    assert set(timings["worker"]) <= workers and len(set(timings["worker"])) == 2
    summary = json.loads((tmp_path / "dask" / "summary.json").read_text())
    assert summary["status"] == "ok" and summary["series_ok"] == 6
    assert summary["backend"] == {"name": "dask", "scheduler": address, "local_cluster": False, "workers": 2,
                                  "threads": 2}
    assert summary["n_jobs"] == 2
    assert "dask workers         2 (2 threads) at " + address in proc.stdout


def test_a_worker_killed_mid_run_loses_no_series(tmp_path, cluster):
    address, client = cluster
    n_series = 40
    table = tmp_path / "table.csv"
    make_table(n_series=n_series, days=60).to_csv(table, index=False)
    out = tmp_path / "out"
    pids = client.run(os.getpid)  # the worker processes (under their nannies)
    run = subprocess.Popen([sys.executable, "-m", "forecast", "run", str(table), "--horizon", "3", "--backend", "dask",
                            "--out", str(out), "--uncertainty-samples", "50"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
                           env=_env(FORECAST_SCHEDULER=address))  # the address from the environment this time
    try:
        for line in run.stderr:  # kill as soon as the first results are in
            if line.startswith("progress: "):
                break
        victim = sorted(pids.values())[0]
        os.kill(victim, signal.SIGKILL)
        stdout, stderr = run.communicate(timeout=300)
    finally:
        if run.poll() is None:
            run.kill()
    assert run.returncode == 0, stderr
    # only the run's own plain lines: nothing from Dask about the lost worker
    assert all(line.startswith(("progress: ", "end: ")) for line in stderr.splitlines()), stderr
    assert victim not in client.run(os.getpid).values()  # it is gone (its nanny started a fresh one)
    done = int(line.split()[1].split("/")[0])
    assert done < n_series  # the kill really happened mid-run
    timings = pd.read_csv(out / "timings.csv")
    assert sorted(timings["unique_id"]) == sorted(f"S{i}" for i in range(n_series))
    assert (timings["status"] == "ok").all()
    assert pd.read_parquet(out / "forecasts.parquet")["unique_id"].nunique() == n_series
    assert json.loads((out / "summary.json").read_text())["series_ok"] == n_series


def test_unreachable_scheduler_is_one_line_and_exit_1(tmp_path, table_csv):
    address = f"tcp://127.0.0.1:{_free_port()}"  # nothing listens there
    proc = _forecast(table_csv, "--horizon", 3, "--backend", "dask", "--scheduler", address, "--connect-timeout", 2,
                     "--out", tmp_path / "out")
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith(f"Error: cannot reach the Dask scheduler at {address} within 2 s")
    assert not (tmp_path / "out").exists()


def test_worker_without_prophet_is_named(tmp_path, table_csv):
    # a worker whose environment lacks prophet: a stand-in package that fails to import, first on its path
    fake = tmp_path / "fake"
    (fake / "prophet").mkdir(parents=True)
    (fake / "prophet" / "__init__.py").write_text("raise ImportError('prophet is not installed here')\n")
    address, procs = _start_cluster(tmp_path, 1, python_path=[fake])
    try:
        with distributed.Client(address, timeout=60) as client:
            client.wait_for_workers(1, timeout=120)
            worker = next(iter(client.scheduler_info()["workers"]))
        proc = _forecast(table_csv, "--horizon", 3, "--backend", "dask", "--scheduler", address,
                         "--out", tmp_path / "out", "--engine", "prophet")  # stock Prophet: workers import it
    finally:
        _stop(procs)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        f"Error: Dask worker {worker} cannot run forecast: ImportError: prophet is not installed here; "
        "install the same environment (forecast, prophet) on every worker"]


def test_scheduler_needs_the_dask_backend(table_csv):
    result = CliRunner().invoke(app, ["run", str(table_csv), "--horizon", "3", "--scheduler", "tcp://h:8786"])
    assert result.exit_code == 2
    assert result.stderr.strip() == "Error: --scheduler can only be used with --backend dask"


def test_without_dask_installed_the_error_names_the_extra(table_csv, monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "distributed", None)  # what `import distributed` sees when it is not installed
    result = CliRunner().invoke(app, ["run", str(table_csv), "--horizon", "3", "--backend", "dask",
                                      "--out", str(tmp_path / "out")])
    assert result.exit_code == 1
    assert result.stderr.strip() == ("Error: the dask backend needs dask.distributed: "
                                     "pip install 'forecast[dask]'")


def test_workers_reading_their_own_series_give_the_same_forecasts(tmp_path, cluster):
    address, _ = cluster
    frame = make_table(n_series=6, days=70, id_cols=("store", "item"))
    frame["store"] = frame["store"].str[-1].astype(int)  # an integer key column: types must survive the filter
    frame.loc[(frame["store"] == 1) & (frame["item"] == "item0"), "y"] = float("nan")  # one broken series
    table = tmp_path / "table.parquet"
    frame.to_parquet(table, index=False)
    common = [table, "--id-col", "store", "--id-col", "item", "--horizon", 4, "--seed", 5,
              "--uncertainty-samples", 100, "--max-failed-frac", 0.5, "--run-id", "nightly"]
    local = CliRunner().invoke(app, ["run", *map(str, common), "--n-jobs", 1, "--out", tmp_path / "local", "-q"])
    assert local.exit_code == 0, local.output
    proc = _forecast(*common, "--backend", "dask", "--scheduler", address, "--workers-read",
                     "--out", tmp_path / "dask")
    assert proc.returncode == 0, proc.stderr
    for name in ("forecasts.parquet", "errors.csv"):
        read = pd.read_parquet if name.endswith("parquet") else pd.read_csv
        pd.testing.assert_frame_equal(read(tmp_path / "dask" / name), read(tmp_path / "local" / name))
    assert len(pd.read_csv(tmp_path / "dask" / "errors.csv")) == 1


def test_workers_read_needs_parquet(tmp_path, table_csv):
    result = CliRunner().invoke(app, ["run", str(table_csv), "--horizon", "3", "--workers-read",
                                      "--out", str(tmp_path / "out")])
    assert result.exit_code == 1
    assert result.stderr.strip() == (f"Error: {table_csv}: --workers-read needs a Parquet input (workers read their "
                                     "series with a key filter); convert the table to Parquet or drop --workers-read")
    assert not (tmp_path / "out").exists()


def test_a_backtest_on_dask_scores_as_a_local_one_and_names_its_workers(tmp_path, cluster):
    from forecast.backtest import run_backtest
    from forecast.config import BacktestConfig, ForecastConfig, ModelOptions

    address, client = cluster
    table = tmp_path / "table.csv"
    make_table(n_series=6, days=90, id_cols=("store", "item")).to_csv(table, index=False)

    def backtest(out, **run):
        model = ModelOptions(horizon=7, seed=3, uncertainty_samples=100)
        config = ForecastConfig(id_cols=("store", "item"), model=model, out_dir=tmp_path / out, **run)
        return run_backtest(table, BacktestConfig(run=config, windows=2))

    local = backtest("local", n_jobs=1)
    dask = backtest("dask", backend="dask", scheduler=address)
    assert local.exit_code == dask.exit_code == 0
    assert dask.summary["overall"] == local.summary["overall"]
    for name in ("metrics.csv", "errors.csv"):
        pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "dask" / name), pd.read_csv(tmp_path / "local" / name))
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "dask" / "backtest.parquet"),
                                  pd.read_parquet(tmp_path / "local" / "backtest.parquet"))
    assert dask.summary["backend"] == {"name": "dask", "scheduler": address, "local_cluster": False, "workers": 2,
                                       "threads": 2}
    workers = set(pd.read_csv(tmp_path / "dask" / "timings.csv")["worker"])
    assert workers <= set(client.scheduler_info()["workers"]) and len(workers) == 2
