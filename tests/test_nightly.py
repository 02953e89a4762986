"""Nightly runs as a scheduler sees them: real `python -m forecast` processes killed with SIGKILL and SIGTERM,
resumed from their part files, a lock per output directory, fit timeouts, JSON logs and a clean temp dir."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import make_table
from typer.testing import CliRunner

from forecast.cli import app

N_SERIES = 16
pytestmark = pytest.mark.slow  # real runs started, killed and resumed

# stock Prophet: fits slow enough to interrupt mid-run, and cmdstanpy's temp files for the hygiene checks
RUN_ARGS = ["--horizon", "5", "--seed", "3", "--uncertainty-samples", "50", "--n-jobs", "2", "--quiet",
            "--engine", "prophet"]


def start(table: Path, out: Path, *extra: str, env: dict | None = None) -> subprocess.Popen:
    log = open(out.parent / f"{out.name}.stderr", "a")
    return subprocess.Popen([sys.executable, "-m", "forecast", "run", str(table), *RUN_ARGS, "--out", str(out),
                             *extra], stdout=subprocess.DEVNULL, stderr=log, env=env)


def wait_for(condition, seconds: float = 180.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.05)


def parts(out: Path) -> list[Path]:
    return sorted((out / "parts").glob("part-*.parquet"))


def summary(out: Path) -> dict:
    return json.loads((out / "summary.json").read_text())


@pytest.fixture(scope="module")
def table(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("nightly") / "table.csv"
    make_table(n_series=N_SERIES, days=60).to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def reference(table, tmp_path_factory):
    """An uninterrupted run (same seed), with TMPDIR pointed at a fresh, empty directory."""
    root = tmp_path_factory.mktemp("reference")
    tmp = root / "tmp"
    tmp.mkdir()
    out = root / "out"
    proc = start(table, out, env={**os.environ, "TMPDIR": str(tmp)})
    assert proc.wait(timeout=300) == 0, (out.parent / "out.stderr").read_text()
    return {"forecasts": pd.read_parquet(out / "forecasts.parquet"), "out": out, "tmp": tmp}


def test_run_leaves_the_temp_dir_as_it_found_it(reference):
    assert sorted(os.listdir(reference["tmp"])) == []  # cmdstanpy's files, worker dirs: all gone
    # and a finished run leaves only its outputs: no parts, manifest or lock
    assert sorted(p.name for p in reference["out"].iterdir()) == [
        "errors.csv", "forecasts.parquet", "summary.json", "timings.csv"]
    assert len(reference["forecasts"]) == N_SERIES * 5


def workers_of(pid: int) -> list[int]:
    """The worker processes whose parent is `pid` (Linux /proc; not multiprocessing's resource tracker)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            if b"spawn_main" in (stat.parent / "cmdline").read_bytes():
                found.append(int(stat.parent.name))
    return found


def running(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_sigkill_then_sigterm_then_resume_equals_an_uninterrupted_run(table, reference, tmp_path):
    out = tmp_path / "out"
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    env = {**os.environ, "TMPDIR": str(tmp)}
    proc = start(table, out, env=env)
    wait_for(lambda: len(parts(out)) >= 2)
    workers = workers_of(proc.pid)
    assert len(workers) == 2

    # one run per directory: a second run is refused while the first is alive
    second = CliRunner().invoke(app, ["run", str(table), *RUN_ARGS, "--out", str(out), "--resume"])
    assert second.exit_code == 1
    assert f"another run (pid {proc.pid} on {socket.gethostname()}" in second.stderr
    assert "is writing here; wait for it or choose another --out" in second.stderr

    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    wait_for(lambda: not any(running(w) for w in workers), 30)  # workers do not outlive their run
    assert os.listdir(tmp)  # the killed run could not remove its temp dir...
    assert not (out / "summary.json").exists()
    assert (out / ".lock").exists()  # left behind by the killed run: stale, taken over below
    killed_parts = parts(out)
    assert killed_parts

    # without --resume the unfinished run is neither reused nor clobbered
    again = CliRunner().invoke(app, ["run", str(table), *RUN_ARGS, "--out", str(out)])
    assert again.exit_code == 1
    assert "holds an unfinished run" in again.stderr and "pass --resume" in again.stderr

    # resume, and stop it with SIGTERM once it has added a part of its own
    proc = start(table, out, "--resume", env=env)
    wait_for(lambda: len(parts(out)) > len(killed_parts) or proc.poll() is not None)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=120) == 130
    s = summary(out)
    assert s["status"] == "interrupted"
    assert s["series_total"] == N_SERIES and 0 < s["series_resumed"] < s["series_done"] < N_SERIES
    assert s["series_ok"] == s["series_done"] and s["series_failed"] == 0
    assert pd.read_parquet(out / "forecasts.parquet")["unique_id"].nunique() == s["series_done"]
    assert not (out / ".lock").exists()  # a clean exit releases the lock

    proc = start(table, out, "--resume", env=env)
    assert proc.wait(timeout=300) == 0, (tmp_path / "out.stderr").read_text()
    assert os.listdir(tmp) == []  # ...the next run into the same temp dir removed it
    s = summary(out)
    assert s["status"] == "ok" and s["series_ok"] == N_SERIES and 0 < s["series_resumed"] < N_SERIES
    pd.testing.assert_frame_equal(pd.read_parquet(out / "forecasts.parquet"), reference["forecasts"])
    assert len(pd.read_csv(out / "timings.csv")) == N_SERIES
    assert not (out / "parts").exists() and not (out / ".lock").exists()


def test_resume_refuses_other_input_or_settings(table, tmp_path):
    out = tmp_path / "out"
    (out / "parts").mkdir(parents=True)
    invoke = lambda *args: CliRunner().invoke(app, ["run", *map(str, args), "--out", str(out), "--resume"])
    # an unfinished run's manifest, as a killed run leaves it
    from forecast.checkpoint import make_manifest
    from forecast.config import ForecastConfig, ModelOptions

    config = ForecastConfig(model=ModelOptions(horizon=5, seed=3, uncertainty_samples=50))
    (out / "parts" / "manifest.json").write_text(json.dumps(make_manifest(table, config.to_dict(), N_SERIES)))

    other = tmp_path / "other.csv"
    frame = pd.read_csv(table)
    frame.loc[0, "y"] += 1.0
    frame.to_csv(other, index=False)
    copy = tmp_path / "copy.csv"
    copy.write_bytes(table.read_bytes())
    cases = [
        ((table, "--horizon", 6, "--seed", 3, "--uncertainty-samples", 50),
         "the setting model.horizon differs (5 then, 6 now)"),
        ((other, "--horizon", 5, "--seed", 3, "--uncertainty-samples", 50), "the input path differs"),
    ]
    for args, message in cases:
        result = invoke(*args)
        assert result.exit_code == 1
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and f"Error: {out}: cannot resume: {message}" in lines[0], result.stderr
    # same path, changed content: refused by size or fingerprint
    (out / "parts" / "manifest.json").write_text(json.dumps(make_manifest(copy, config.to_dict(), N_SERIES)))
    frame.to_csv(copy, index=False)
    result = invoke(copy, "--horizon", 5, "--seed", 3, "--uncertainty-samples", 50)
    assert result.exit_code == 1 and "cannot resume: the input" in result.stderr
    assert not (out / ".lock").exists()


def test_stale_lock_of_another_host_is_not_taken_over(table, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / ".lock").write_text(json.dumps({"pid": 1, "host": "some-other-host", "started": "earlier"}))
    result = CliRunner().invoke(app, ["run", str(table), "--horizon", "2", "--out", str(out)])
    assert result.exit_code == 1
    assert "another run (pid 1 on some-other-host" in result.stderr and f"delete {out / '.lock'}" in result.stderr


def test_fit_timeout_fails_the_series_with_stage_fit_and_the_run_goes_on(tmp_path, write_csv):
    # 1 ms is far below any Prophet fit, so every series times out, each on a fresh worker
    path = write_csv(make_table(n_series=2, days=60))
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["run", str(path), "--horizon", "3", "--n-jobs", "1", "--fit-timeout", "0.001",
                                      "--out", str(out), "--quiet"])
    assert result.exit_code == 3, result.output
    errors = pd.read_csv(out / "errors.csv")
    assert errors["unique_id"].tolist() == ["S0", "S1"]
    assert (errors["stage"] == "fit").all()
    assert errors["reason"].str.startswith("timeout: ran longer than --fit-timeout 0.001 s").all()
    assert summary(out)["n_jobs"] == 1


def test_json_logs_and_nothing_else_on_stderr_in_process(tmp_path, write_csv):
    frame = make_table(n_series=3, days=60)
    frame.loc[frame["unique_id"] == "S1", "y"] = np.nan
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "forecast", "run", str(write_csv(frame)), "--horizon", "3",
                           "--n-jobs", "1", "--out", str(out), "--log-format", "json"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 3, proc.stderr
    events = [json.loads(line) for line in proc.stderr.splitlines()]  # every line is JSON: nothing leaked
    names = [e["event"] for e in events]
    assert names[0] == "start" and names[-1] == "end" and "progress" in names
    assert events[0]["series_total"] == 3
    failed = [e for e in events if e["event"] == "failed"]
    assert [(f["series"], f["stage"]) for f in failed] == [({"unique_id": "S1"}, "validate")]
    assert events[-1]["status"] == "failed" and events[-1]["series_ok"] == 2


def test_json_log_reports_a_table_error_as_a_json_record_too(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "forecast", "run", str(tmp_path / "nope.csv"), "--horizon", "3",
                           "--out", str(tmp_path / "out"), "--log-format", "json"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    (line,) = proc.stderr.splitlines()
    record = json.loads(line)
    assert (record["event"], record["exit_code"]) == ("error", 1)
    assert record["message"] == f"{tmp_path / 'nope.csv'}: no such file"


def test_part_files_give_back_results_as_they_were(tmp_path):
    from forecast.checkpoint import RunState
    from forecast.types import SeriesData, SeriesResult

    series = [SeriesData(key=(k, 7), ds=np.array([], dtype="datetime64[ns]"), y=np.array([])) for k in "abc"]
    ok = SeriesResult(key=("a", 7), status="ok", n_obs=60, ds=np.array(["2024-03-01", "2024-03-02"],
                      dtype="datetime64[ns]"), yhat=np.array([1.5, 2.5]), yhat_lower=np.array([np.nan, np.nan]),
                      yhat_upper=np.array([np.nan, np.nan]), fit_seconds=0.25, cpu_seconds=0.5, worker="h:1",
                      engine="fast", params={"y_scale": 3.0, "k": 0.5, "m": 0.1, "sigma_obs": 0.2, "delta": [0.0, 0.3],
                                             "beta": [1.0]})
    failed = SeriesResult(key=("c", 7), status="failed", n_obs=1, stage="validate", error="too short")
    state = RunState(tmp_path)
    state.write_part({2: failed})
    state.write_part({0: ok})
    loaded = RunState(tmp_path).load(series)
    assert sorted(loaded) == [0, 2]
    for got, want in ((loaded[0], ok), (loaded[2], failed)):
        for name in ("key", "status", "n_obs", "fit_seconds", "predict_seconds", "cpu_seconds", "worker", "stage",
                     "error", "engine", "params"):  # params: what a resumed run saves for a later --warm-start
            assert getattr(got, name) == getattr(want, name), name
        for name in ("ds", "yhat", "yhat_lower", "yhat_upper"):
            np.testing.assert_array_equal(getattr(got, name), getattr(want, name))
            assert getattr(got, name).dtype == getattr(want, name).dtype


def test_a_part_written_with_params_as_json_text_still_resumes(tmp_path):
    # parts written before params were an Arrow struct hold them as JSON text: an unfinished run of that version
    # is still resumed, its parameters kept for a later --warm-start
    import pyarrow as pa
    import pyarrow.parquet as pq

    from forecast.checkpoint import RunState
    from forecast.types import SeriesData

    params = {"y_scale": 3.0, "k": 0.5, "m": 0.1, "sigma_obs": 0.2, "delta": [0.0, 0.3], "beta": [1.0]}
    series = [SeriesData(key=("a",), ds=np.array([], dtype="datetime64[ns]"), y=np.array([]))]
    state = RunState(tmp_path)
    state.parts_dir.mkdir(parents=True)
    day = np.array(["2024-03-01"], dtype="datetime64[ns]")
    old = {"index": pa.array([0], pa.int64()), "params": pa.array([json.dumps(params)]), "bands": pa.array(["{}"])}
    for name, arrow_type in state.schema.scalars.items():
        old[name] = pa.array([None], arrow_type)
    for name in state.schema.arrays:
        old[name] = pa.array([day if name == "ds" else [1.5]])
    old["status"] = pa.array(["ok"])
    pq.write_table(pa.table(old), state.parts_dir / "part-00001.parquet")
    (got,) = RunState(tmp_path).load(series).values()
    assert (got.status, got.params) == ("ok", params)


def test_sigterm_stops_a_backtest_at_once_and_it_says_it_was_interrupted(tmp_path):
    path = tmp_path / "table.csv"
    make_table(n_series=40, days=400).to_csv(path, index=False)
    out = tmp_path / "bt"
    proc = subprocess.Popen([sys.executable, "-m", "forecast", "backtest", str(path), "--horizon", "7", "--windows",
                             "3", "--n-jobs", "2", "--out", str(out)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    lines = []
    for line in proc.stderr:  # stock Prophet, 3 fits a series: a few seconds before it is done
        lines.append(line)
        if line.startswith("progress: "):
            break
    proc.send_signal(signal.SIGTERM)
    t0 = time.monotonic()
    stdout, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130, lines
    assert time.monotonic() - t0 < 10  # its workers are stopped, not waited for
    assert summary(out)["status"] == "interrupted"
    assert "interrupted: " in stdout and " of 40 series backtested" in stdout
