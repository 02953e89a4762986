"""The job skeleton that `run` and `backtest` share: a backtest's lock, resume and log events, and a backend
registered by name being usable by both."""

import io
import json
import os
import socket

import pandas as pd
import pytest
from conftest import make_table
from fakes import StopAfter

import forecast.backends as backends
from forecast.backends.base import call_item
from forecast.backtest import run_backtest
from forecast.checkpoint import RunLock
from forecast.config import BacktestConfig, ForecastConfig, ModelOptions
from forecast.errors import ConfigError, RunLockedError
from forecast.progress import JsonProgress
from forecast.runner import run_forecast

MODEL = ModelOptions(horizon=7, seed=1, uncertainty_samples=100)


def _config(out, **run) -> BacktestConfig:
    return BacktestConfig(run=ForecastConfig(model=MODEL, n_jobs=1, out_dir=out, **run), windows=2)


@pytest.fixture
def table(tmp_path):
    path = tmp_path / "table.csv"
    make_table(n_series=6, days=90).to_csv(path, index=False)
    return path


def test_an_interrupted_backtest_resumed_fits_only_what_is_missing_and_scores_as_an_uninterrupted_one(tmp_path,
                                                                                                       table):
    whole = run_backtest(table, _config(tmp_path / "whole"))
    assert whole.exit_code == 0

    out = tmp_path / "out"
    stopped = run_backtest(table, _config(out), reporter=StopAfter(2))
    assert stopped.exit_code == 130 and stopped.summary["status"] == "interrupted"
    assert stopped.summary["series_done"] == 2
    assert list((out / "parts").glob("part-*.parquet"))  # the finished series are kept

    with pytest.raises(ConfigError, match="holds an unfinished run"):  # neither --resume nor --overwrite
        run_backtest(table, _config(out))

    resumed = run_backtest(table, _config(out, resume=True))
    assert resumed.exit_code == 0
    assert resumed.summary["series_resumed"] == 2 and resumed.summary["series_done"] == 6
    assert not (out / "parts").exists()
    for name in ("metrics.csv", "errors.csv"):
        pd.testing.assert_frame_equal(pd.read_csv(out / name), pd.read_csv(tmp_path / "whole" / name))
    pd.testing.assert_frame_equal(pd.read_parquet(out / "backtest.parquet"),
                                  pd.read_parquet(tmp_path / "whole" / "backtest.parquet"))
    assert resumed.summary["overall"] == whole.summary["overall"]

    again = run_backtest(table, _config(out, resume=True))  # a scheduler's retry of a finished backtest
    assert again.summary == json.loads((out / "summary.json").read_text())


def test_a_backtest_takes_the_lock_of_its_output_directory(tmp_path, table):
    out = tmp_path / "out"
    with RunLock(out):  # a live job (this process) holds it
        with pytest.raises(RunLockedError, match="another run .* is writing here"):
            run_backtest(table, _config(out))
    assert not (out / "summary.json").exists()
    assert run_backtest(table, _config(out)).exit_code == 0
    assert not (out / ".lock").exists()


def test_a_backtest_logs_start_failed_and_end_as_json_lines(tmp_path, table):
    frame = pd.read_csv(table)
    short = pd.DataFrame({"unique_id": "short", "ds": pd.date_range("2024-01-01", periods=10), "y": range(10)})
    path = tmp_path / "with-short.csv"
    pd.concat([frame, short]).to_csv(path, index=False)
    stream = io.StringIO()
    result = run_backtest(path, _config(tmp_path / "out", max_failed_frac=0.5), reporter=JsonProgress(stream))
    assert result.exit_code == 0
    records = [json.loads(line) for line in stream.getvalue().splitlines()]
    events = [r["event"] for r in records if r["event"] != "progress"]
    assert events == ["start", "failed", "end"]
    start, failed, end = (r for r in records if r["event"] != "progress")
    assert start["series_total"] == 7 and start["series_resumed"] == 0 and start["n_jobs"] == 1
    assert failed["series"] == {"unique_id": "short"} and failed["stage"] == "backtest"
    assert (end["status"], end["series_ok"], end["series_failed"]) == ("ok", 6, 1)


class ToyBackend:
    """A backend of the test's own: items in this process, labelled with a name no other backend uses."""

    name = "toy"
    starts_in_background = False
    uses_local_cores = False
    n_jobs = 1

    @classmethod
    def check_config(cls, config):
        pass

    def __init__(self, setup):
        self.setup = setup

    @classmethod
    def from_config(cls, config, setup, notify=None):
        return cls(setup)

    def __enter__(self):
        if self.setup.func is not None:
            self.setup.func(*self.setup.initargs(local_processes=False))
        return self

    def __exit__(self, *exc):
        pass

    def info(self) -> dict:
        return {"name": self.name, "workers": 1, "threads": 1}

    def map(self, func, chunks):
        for chunk in chunks:
            for index, item in chunk:
                yield index, call_item(func, item), "toy-worker"


def test_a_registered_backend_is_usable_by_run_and_backtest_by_name(tmp_path, table, monkeypatch):
    monkeypatch.setattr(backends, "_REGISTRY", dict(backends._REGISTRY))  # registered for this test only
    backends.register_backend("toy", ToyBackend)
    assert backends.backend_names() == ("local", "dask", "spark", "toy")

    run = run_forecast(table, ForecastConfig(model=MODEL, backend="toy", out_dir=tmp_path / "run"))
    assert run_forecast(table, ForecastConfig(model=MODEL, n_jobs=1, out_dir=tmp_path / "local")).exit_code == 0
    assert run.exit_code == 0 and run.summary["backend"] == {"name": "toy", "workers": 1, "threads": 1}
    assert set(pd.read_csv(tmp_path / "run" / "timings.csv")["worker"]) == {"toy-worker"}
    assert set(pd.read_csv(tmp_path / "local" / "timings.csv")["worker"]) == {f"{socket.gethostname()}:{os.getpid()}"}
    forecasts = pd.read_parquet(tmp_path / "run" / "forecasts.parquet").drop(columns="run_id")
    pd.testing.assert_frame_equal(forecasts,
                                  pd.read_parquet(tmp_path / "local" / "forecasts.parquet").drop(columns="run_id"))

    bt = run_backtest(table, _config(tmp_path / "bt", backend="toy"))
    assert bt.exit_code == 0 and bt.summary["backend"]["name"] == "toy"
    assert set(pd.read_csv(tmp_path / "bt" / "timings.csv")["worker"]) == {"toy-worker"}


def test_a_backend_registered_by_module_path_is_imported_only_when_opened(monkeypatch):
    monkeypatch.setattr(backends, "_REGISTRY", dict(backends._REGISTRY))
    backends.register_backend("toy", "test_job:ToyBackend")
    assert isinstance(backends._REGISTRY["toy"], str)
    assert backends.backend_class("toy") is ToyBackend
    with pytest.raises(ValueError, match="a backend is a class or a 'module:Class' string"):
        backends.register_backend("bad", "no_colon")


_BACKTEST_IN_A_PROCESS = """
import sys
from forecast.backtest import run_backtest
from forecast.config import BacktestConfig, ForecastConfig, ModelOptions
model = ModelOptions(horizon=5, seed=3, uncertainty_samples=50, engine="prophet")
run = ForecastConfig(model=model, n_jobs=2, out_dir=sys.argv[2], resume=True)
sys.exit(run_backtest(sys.argv[1], BacktestConfig(run=run, windows=2)).exit_code)
"""


@pytest.mark.slow
def test_a_backtest_killed_after_its_first_part_resumes_to_the_same_metrics(tmp_path):
    import subprocess
    import sys
    import time
    from pathlib import Path

    table = tmp_path / "table.csv"
    make_table(n_series=24, days=60).to_csv(table, index=False)
    root = Path(__file__).resolve().parent.parent
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root)] + [p for p in [os.environ.get("PYTHONPATH")] if p])}

    def backtest(out: Path) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-c", _BACKTEST_IN_A_PROCESS, str(table), str(out)], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    assert backtest(tmp_path / "whole").wait(timeout=600) == 0
    out = tmp_path / "out"
    proc = backtest(out)
    try:
        deadline = time.monotonic() + 300
        while not list((out / "parts").glob("part-*.parquet")) and proc.poll() is None:
            assert time.monotonic() < deadline, "no part file in time"
            time.sleep(0.05)
    finally:
        proc.kill()
        proc.wait(timeout=60)
    assert not (out / "summary.json").exists()  # killed mid-way, not finished
    assert backtest(out).wait(timeout=600) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert 0 < summary["series_resumed"] < 24 and summary["status"] == "ok"
    pd.testing.assert_frame_equal(pd.read_csv(out / "metrics.csv"), pd.read_csv(tmp_path / "whole" / "metrics.csv"))
    pd.testing.assert_frame_equal(pd.read_parquet(out / "backtest.parquet"),
                                  pd.read_parquet(tmp_path / "whole" / "backtest.parquet"))
