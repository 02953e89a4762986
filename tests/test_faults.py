"""Fault injection: what an unlucky night does to a run, with real `python -m forecast` processes.

The main process killed at several points and resumed, a worker killed, a full disk, a read-only output, a named
pipe and standard input as the input, a corrupt part file, lock, or output read back by plot, report and
--warm-start, a Dask scheduler killed mid-run. Every case ends in one line with its exit code, or a run that
finishes; never a traceback, a hang (each process runs under a timeout), a file outside --out, a changed user file
or a raw control character on the terminal.
"""

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import pandas as pd
import pytest
from conftest import make_table

from forecast.errors import EXIT_STOPPED

ROOT = Path(__file__).resolve().parent.parent
# enough series of the fast engine for a run of a few seconds, long enough to be hit mid-run
N_SERIES = 300
RUN_ARGS = ["--horizon", "5", "--seed", "3", "--uncertainty-samples", "50", "--n-jobs", "2", "--engine", "fast"]
# a control character that is not a line break: what must never reach a terminal raw
RAW_CONTROL = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f]")


def env(**extra) -> dict:
    e = dict(os.environ)
    e["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + [p for p in [e.get("PYTHONPATH")] if p])
    e.pop("FORECAST_SCHEDULER", None)
    e.update(extra)
    return e


def forecast(*args, timeout: float = 120, **kwargs) -> subprocess.CompletedProcess:
    """`python -m forecast ARGS` to its end (a hang fails the test at the timeout)."""
    proc = subprocess.run([sys.executable, "-m", "forecast", *map(str, args)], capture_output=True,
                          timeout=timeout, env=kwargs.pop("env", env()), **kwargs)
    proc.stdout, proc.stderr = proc.stdout.decode("utf-8", "replace"), proc.stderr.decode("utf-8", "replace")
    assert_no_mess(proc.stdout, proc.stderr)
    return proc


def start(*args, **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "forecast", *map(str, args)], env=kwargs.pop("env", env()),
                            text=True, **kwargs)


def assert_no_mess(stdout: str, stderr: str) -> None:
    assert "Traceback" not in stderr, stderr
    assert not RAW_CONTROL.search(stdout + stderr), repr(stdout + stderr)


def one_error_line(proc, code: int = 1) -> str:
    """The single `Error: ...` line of a failed command."""
    assert proc.returncode == code, (proc.returncode, proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), proc.stderr
    return lines[0]


def wait_for(condition, seconds: float = 120.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.02)


def parts(out: Path) -> list[Path]:
    return sorted((out / "parts").glob("part-*.parquet"))


def tree(root: Path) -> dict[str, float]:
    """Every file under root, with its modification time: what a run must not touch outside --out."""
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def table(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("faults") / "table.csv"
    make_table(n_series=N_SERIES, days=60).to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> Path:
    """A table of 4 series, for the faults that need no run long enough to be hit mid-run."""
    path = tmp_path_factory.mktemp("small") / "small.csv"
    make_table(n_series=4, days=40).to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def reference(table, tmp_path_factory) -> pd.DataFrame:
    """The forecasts of an uninterrupted run with the same seed."""
    out = tmp_path_factory.mktemp("reference") / "out"
    proc = forecast("run", table, *RUN_ARGS, "--out", out, "-q", timeout=300)
    assert proc.returncode == 0, proc.stderr
    return pd.read_parquet(out / "forecasts.parquet")


@contextmanager
def mounted_tmpfs(where: Path, options: str):
    """A tmpfs mounted at `where` (a small or read-only filesystem); skips where mounting is not allowed."""
    where.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)],
                                           capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], capture_output=True)


# ---------------------------------------------------------------------------------------------------------------
# the input: a named pipe, standard input

def feed_fifo(path: Path, data: bytes) -> threading.Thread:
    """A named pipe at `path` that a writer fills once, as `cat data > path &` does."""
    os.mkfifo(path)

    def write():
        with open(path, "wb") as f:  # blocks until the reader opens it
            f.write(data)

    thread = threading.Thread(target=write, daemon=True)
    thread.start()
    return thread


@pytest.mark.slow
def test_a_named_pipe_is_read_once_by_check_and_run(tmp_path, small):
    data = small.read_bytes()
    feed_fifo(tmp_path / "check.csv", data)
    proc = forecast("check", tmp_path / "check.csv", "--out", tmp_path / "profile", timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert len(pd.read_csv(tmp_path / "profile" / "profile.csv")) == 4

    feed_fifo(tmp_path / "run.csv", data)  # the run reads header, table and fingerprint: from one read
    out = tmp_path / "out"
    proc = forecast("run", tmp_path / "run.csv", "--horizon", "3", "--engine", "fast", "--n-jobs", "1",
                    "--out", out, "-q", timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert pd.read_parquet(out / "forecasts.parquet")["unique_id"].nunique() == 4
    assert not (out / ".lock").exists()


@pytest.mark.slow
def test_standard_input_is_a_table_and_plots_say_it_cannot_be_read_again(tmp_path, small):
    out = tmp_path / "out"
    proc = forecast("run", "-", "--horizon", "3", "--engine", "fast", "--n-jobs", "1", "--out", out, "-q",
                    input=small.read_bytes(), timeout=60)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["series_ok"] == 4 and summary["input"] == "-"
    # the same bytes through --resume of the finished run: the same job, nothing to do
    again = forecast("run", "-", "--horizon", "3", "--engine", "fast", "--n-jobs", "1", "--out", out, "--resume",
                     input=small.read_bytes(), timeout=60)
    assert again.returncode == 0 and "nothing to resume" in again.stderr
    line = one_error_line(forecast("plot", out, "--series", "S1", timeout=60))
    assert "was a pipe or standard input, which cannot be read again" in line


@pytest.mark.slow
def test_workers_cannot_read_a_pipe_again(tmp_path):
    os.mkfifo(tmp_path / "table.parquet")  # nobody writes: a second reader would wait forever
    line = one_error_line(forecast("run", tmp_path / "table.parquet", "--horizon", "3", "--workers-read",
                                   "--out", tmp_path / "out", timeout=60))
    assert "--workers-read needs a file the workers can read again, not a pipe" in line


# ---------------------------------------------------------------------------------------------------------------
# the main process killed, a worker killed

@pytest.mark.slow
def test_sigkill_at_several_points_then_resume_equals_an_uninterrupted_run(tmp_path, table, reference):
    out = tmp_path / "out"
    user_file = tmp_path / "notes.txt"  # beside --out: must stay as it is
    user_file.write_text("mine")
    before = tree(tmp_path)
    points = [
        ("while reading the input", lambda: (out / ".lock").exists()),
        ("after the manifest, before any part", lambda: (out / "parts" / "manifest.json").exists()),
        ("after the first part", lambda: len(parts(out)) >= 1),
    ]
    for what, reached in points:
        proc = start("run", table, *RUN_ARGS, "--out", out, "--resume", "-q", stdout=subprocess.DEVNULL,
                     stderr=subprocess.DEVNULL)
        try:
            wait_for(lambda: reached() or proc.poll() is not None)
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=60)
        assert not (out / "summary.json").exists() or proc.returncode == 0, what
    proc = forecast("run", table, *RUN_ARGS, "--out", out, "--resume", "-q", timeout=300)
    assert proc.returncode == 0, proc.stderr
    pd.testing.assert_frame_equal(pd.read_parquet(out / "forecasts.parquet"), reference)
    assert sorted(p.name for p in out.iterdir()) == ["errors.csv", "forecasts.parquet", "params.parquet",
                                                      "summary.json", "timings.csv"]
    outside = {k: v for k, v in tree(tmp_path).items() if not k.startswith("out/")}
    assert outside == before and user_file.read_text() == "mine"


def worker_pids(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == pid and b"spawn_main" in (stat.parent / "cmdline").read_bytes():
                found.append(int(stat.parent.name))
        except OSError:
            continue
    return found


@pytest.mark.slow
def test_a_worker_killed_mid_run_loses_no_series(tmp_path, table, reference):
    out = tmp_path / "out"
    proc = start("run", table, *RUN_ARGS, "--out", out, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        for line in proc.stderr:
            if line.startswith("progress: "):
                break
        os.kill(worker_pids(proc.pid)[0], signal.SIGKILL)
        stdout, stderr = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, stderr
    assert_no_mess(stdout, stderr)
    pd.testing.assert_frame_equal(pd.read_parquet(out / "forecasts.parquet"), reference)


# ---------------------------------------------------------------------------------------------------------------
# the disk: full, read-only

@pytest.mark.slow
def test_a_full_disk_stops_the_run_with_exit_75_naming_the_file_and_resume_finishes_it(tmp_path, table, reference):
    with mounted_tmpfs(tmp_path / "small", "size=4m") as disk:
        out = disk / "out"
        proc = start("run", table, *RUN_ARGS, "--out", out, "-q", stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            wait_for(lambda: len(parts(out)) >= 1 or proc.poll() is not None)
            filler = disk / "filler"
            try:  # fill the disk while the run goes on (the run's parts may have filled it already)
                with open(filler, "wb") as f:
                    while True:
                        f.write(b"\0" * 65536)
                        f.flush()
            except OSError:
                pass
            stdout, stderr = proc.communicate(timeout=300)
        finally:
            if proc.poll() is None:
                proc.kill()
        assert_no_mess(stdout, stderr)
        if proc.returncode == 0:
            pytest.skip("the run finished before the disk was full")
        line = one_error_line(subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr), EXIT_STOPPED)
        assert "No space left on device" in line and str(out) in line and "--resume" in line
        assert parts(out)  # what was finished is kept
        filler.unlink(missing_ok=True)
        proc = forecast("run", table, *RUN_ARGS, "--out", out, "--resume", "-q", timeout=300)
        assert proc.returncode == 0, proc.stderr
        pd.testing.assert_frame_equal(pd.read_parquet(out / "forecasts.parquet"), reference)


def limit_file_size(max_bytes: int):
    """For Popen's preexec_fn: files of the process (and its workers) may not grow past max_bytes, and a write past
    it fails with EFBIG instead of killing the process (SIGXFSZ ignored): a full disk where nothing can be mounted."""
    import resource

    def limit():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (max_bytes, max_bytes))

    return limit


@pytest.mark.slow
def test_files_that_cannot_grow_stop_the_run_with_exit_75_and_resume_finishes_it(tmp_path, table, reference):
    out = tmp_path / "out"
    proc = start("run", table, *RUN_ARGS, "--out", out, "-q", stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                 preexec_fn=limit_file_size(60_000))  # parts fit; params.parquet (65 kB) does not
    stdout, stderr = proc.communicate(timeout=300)
    assert_no_mess(stdout, stderr)
    line = one_error_line(subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr), EXIT_STOPPED)
    assert "File too large" in line and str(out) in line and "--resume" in line
    assert parts(out) and not (out / "summary.json").exists()
    proc = forecast("run", table, *RUN_ARGS, "--out", out, "--resume", "-q", timeout=300)
    assert proc.returncode == 0, proc.stderr
    pd.testing.assert_frame_equal(pd.read_parquet(out / "forecasts.parquet"), reference)


def test_a_read_only_output_is_one_line_and_exit_1(tmp_path, small):
    with mounted_tmpfs(tmp_path / "ro", "ro,size=1m") as disk:
        line = one_error_line(forecast("run", small, "--horizon", "3", "--engine", "fast", "--out", disk / "out"))
        assert "Read-only file system" in line and str(disk / "out") in line


# ---------------------------------------------------------------------------------------------------------------
# damaged files: a part, a lock, the outputs read back

@pytest.mark.slow
def test_a_corrupt_part_file_is_fitted_again_on_resume(tmp_path, table, reference):
    out = tmp_path / "out"
    proc = start("run", table, *RUN_ARGS, "--out", out, "-q", stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: len(parts(out)) >= 2 or proc.poll() is not None)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    if proc.returncode == 0:
        pytest.skip("the run finished before it was killed")
    damaged = parts(out)[0]
    damaged.write_bytes(damaged.read_bytes()[:40])  # truncated
    proc = forecast("run", table, *RUN_ARGS, "--out", out, "--resume", timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert f"note: {damaged}: damaged, cannot be read; its series are fitted again" in proc.stderr
    pd.testing.assert_frame_equal(pd.read_parquet(out / "forecasts.parquet"), reference)


@pytest.mark.slow
@pytest.mark.parametrize("pid", ['"abc"', "true"])
def test_a_lock_whose_pid_is_not_a_number_is_one_line_then_taken_over(tmp_path, small, pid):
    out = tmp_path / "out"
    out.mkdir()
    lock = out / ".lock"
    lock.write_text(f'{{"pid": {pid}, "host": "{os.uname().nodename}", "started": "x"}}')
    line = one_error_line(forecast("run", small, "--horizon", "3", "--engine", "fast", "--n-jobs", "1",
                                   "--out", out, "-q"))
    assert "another run is starting here" in line  # a lock being written right now looks the same
    os.utime(lock, (0, 0))  # old: left by a run that died writing it
    proc = forecast("run", small, "--horizon", "3", "--engine", "fast", "--n-jobs", "1", "--out", out, "-q")
    assert proc.returncode == 0, proc.stderr
    assert not lock.exists()


@pytest.fixture(scope="module")
def finished(small, tmp_path_factory) -> Path:
    """A finished run with the fast engine (so with params.parquet)."""
    out = tmp_path_factory.mktemp("finished") / "out"
    proc = forecast("run", small, "--horizon", "3", "--engine", "fast", "--n-jobs", "1", "--out", out, "-q")
    assert proc.returncode == 0, proc.stderr
    return out


def damaged_copy(run: Path, tmp_path: Path, name: str, content: bytes | None = None) -> Path:
    """A copy of a finished run with one file truncated (or replaced by `content`)."""
    copy = tmp_path / "copy"
    copy.mkdir()
    for f in run.iterdir():
        (copy / f.name).write_bytes(f.read_bytes())
    target = copy / name
    target.write_bytes(content if content is not None else target.read_bytes()[: target.stat().st_size // 2])
    return copy


@pytest.mark.parametrize("name,content", [
    ("forecasts.parquet", None), ("timings.csv", b"\x00\x01\x02\xff\n"), ("errors.csv", b'"unterminated\n'),
])
@pytest.mark.slow
def test_report_and_plot_on_a_damaged_output_are_one_line(tmp_path, finished, name, content):
    run = damaged_copy(finished, tmp_path, name, content)
    before = tree(run)
    for command in (["report", run, "--plots", "0"], ["plot", run, "--series", "S1"]):
        line = one_error_line(forecast(*command, timeout=60))
        assert name in line
    assert tree(run) == before  # nothing written beside the damaged run


@pytest.mark.slow
@pytest.mark.parametrize("content", [None, b"not parquet"])
def test_warm_start_from_a_damaged_params_file_is_one_line_and_writes_nothing(tmp_path, small, finished, content):
    run = damaged_copy(finished, tmp_path, "params.parquet", content)
    out = tmp_path / "out"
    line = one_error_line(forecast("run", small, "--horizon", "3", "--engine", "fast", "--warm-start", run,
                                   "--out", out))
    assert "params.parquet" in line
    assert not out.exists()


# ---------------------------------------------------------------------------------------------------------------
# the cluster: an impossible timeout, a scheduler killed mid-run

@pytest.mark.slow
def test_an_infinite_connect_timeout_is_one_line_and_leaves_nothing(tmp_path, small):
    out = tmp_path / "out"
    line = one_error_line(forecast("run", small, "--horizon", "3", "--backend", "dask", "--connect-timeout", "inf",
                                   "--out", out))
    assert "--connect-timeout must be a positive number of seconds" in line
    job = tmp_path / "job.toml"
    job.write_text(f'[input]\npath = "{small}"\n[model]\nhorizon = 3\n[run]\nbackend = "dask"\n'
                   f'connect_timeout = inf\n[output]\ndir = "{out}"\n')
    line = one_error_line(forecast("run", "--config", job))
    assert "--connect-timeout must be a positive number of seconds" in line
    assert not out.exists()  # no manifest that would make the next run "unfinished"


@pytest.mark.slow
def test_a_scheduler_killed_mid_run_exits_75_with_one_json_line_and_resume_finishes(tmp_path, table, reference):
    pytest.importorskip("distributed")
    from test_dask import _start_cluster, _stop

    address, procs = _start_cluster(tmp_path, 2)
    out = tmp_path / "out"
    try:
        run = start("run", table, *RUN_ARGS, "--backend", "dask", "--scheduler", address, "--connect-timeout", "60",
                    "--log-format", "json", "--out", out, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        lines = []
        try:
            for line in run.stderr:
                lines.append(line)
                if '"event": "progress"' in line:
                    break
            procs[0].send_signal(signal.SIGKILL)  # the scheduler
            stdout, rest = run.communicate(timeout=120)
        finally:
            if run.poll() is None:
                run.kill()
    finally:
        _stop(procs)
    stderr = "".join(lines) + rest
    assert_no_mess(stdout, stderr)
    records = [json.loads(line) for line in stderr.splitlines()]  # one object per line, nothing else
    assert run.returncode == EXIT_STOPPED, stderr
    assert records[-1]["event"] == "error" and records[-1]["exit_code"] == EXIT_STOPPED
    assert "lost the Dask scheduler" in records[-1]["message"] and "--resume" in records[-1]["message"]
    assert [r["event"] for r in records[:-1]] == ["start"] + ["progress"] * (len(records) - 2)
    assert parts(out)  # the finished chunks are kept
    # the retry: --resume, here on the local backend (the backend changes no result)
    proc = forecast("run", table, *RUN_ARGS, "--out", out, "--resume", "-q", timeout=300)
    assert proc.returncode == 0, proc.stderr
    pd.testing.assert_frame_equal(pd.read_parquet(out / "forecasts.parquet"), reference)


# ---------------------------------------------------------------------------------------------------------------
# a user's directory, a job file typo, a run served by its fallback

@pytest.mark.slow
def test_a_directory_of_someone_elses_files_is_refused_and_left_as_it_was(tmp_path, small):
    out = tmp_path / "d"
    out.mkdir()
    (out / "forecasts.csv").write_text("X\n")
    (out / "params.parquet").write_text("mine\n")
    before = tree(out)
    line = one_error_line(forecast("run", small, "--horizon", "3", "--engine", "fast", "--n-jobs", "1",
                                   "--out", out))
    assert line == (f"Error: {out}: holds files but no forecast run (forecasts.csv, params.parquet); choose a new "
                    "or empty --out, or pass --overwrite to write into it")
    assert tree(out) == before and (out / "forecasts.csv").read_text() == "X\n"
    # --overwrite writes its outputs there, but removes nothing that no run of forecast wrote
    proc = forecast("run", small, "--horizon", "3", "--n-jobs", "1", "--engine", "fast", "--format", "parquet",
                    "--out", out, "--overwrite", "-q")
    assert proc.returncode == 0, proc.stderr
    assert (out / "forecasts.csv").read_text() == "X\n" and (out / "params.parquet").exists()
    # a later run in the other format replaces what the summary says the last run wrote, and only that
    (out / "params.parquet").write_text("mine again\n")
    proc = forecast("run", small, "--horizon", "3", "--n-jobs", "1", "--format", "csv", "--engine", "fast",
                    "--out", out, "--overwrite", "-q")
    assert proc.returncode == 0, proc.stderr
    assert not (out / "forecasts.parquet").exists()  # the earlier run's, listed in its summary


@pytest.mark.slow
def test_a_parts_directory_of_someone_elses_is_not_taken_for_a_run_nor_emptied(tmp_path, small):
    out = tmp_path / "d"
    (out / "parts").mkdir(parents=True)
    (out / "parts" / "mine.txt").write_text("mine\n")
    line = one_error_line(forecast("run", small, "--horizon", "3", "--engine", "fast", "--n-jobs", "1",
                                   "--out", out))
    assert "holds files but no forecast run (parts)" in line
    proc = forecast("run", small, "--horizon", "3", "--engine", "fast", "--n-jobs", "1", "--out", out,
                    "--overwrite", "-q")
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in (out / "parts").iterdir()) == ["mine.txt"]  # the run's own parts are gone


@pytest.mark.slow
def test_n_jobs_far_above_the_cores_is_capped_at_the_chunks_and_said(tmp_path, write_csv):
    table = write_csv(make_table(n_series=3, days=40))
    out = tmp_path / "out"
    proc = forecast("run", table, "--horizon", "3", "--engine", "fast", "--n-jobs", "64", "--out", out, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert re.search(r"note: --n-jobs 64 is more than the \d+ usable core\(s\); running 3 worker process\(es\), one "
                     r"per chunk of work", proc.stderr), proc.stderr
    assert json.loads((out / "summary.json").read_text())["n_jobs"] == 3


@pytest.mark.slow
def test_a_run_served_entirely_by_its_fallback_counts_what_it_served(tmp_path, table):
    out = tmp_path / "out"
    proc = forecast("run", table, "--horizon", "3", "--n-jobs", "1", "--triage", "--min-obs", "1000", "--out", out)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["series_fallback"] == N_SERIES and summary["series_ok"] == 0
    assert summary["series_per_second"] > 0
    rate = float(re.search(r"^series/s\s+(\S+)$", proc.stdout, re.M).group(1))
    assert rate > 0
