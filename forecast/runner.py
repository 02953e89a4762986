"""`run_forecast`: the library function behind `forecast run`. Read, fit every series in parallel, write."""

from __future__ import annotations

import platform
import shutil
import signal
import tempfile
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Callable, Iterator

from . import __version__
from .backends import make_backend
from .config import ForecastConfig
from .core import Failed, MapInterrupted, map_chunks, split_into_chunks, usable_cores
from .io import (default_out_dir, errors_frame, forecast_frame, prepare_out_dir, read_table, split_series,
                 timings_frame, write_json, write_table)
from .model import SeriesResult, check_options, fit_series, init_worker
from .timing import Clock, slowest, throughput

EXIT_OK, EXIT_ERROR, EXIT_SOME_FAILED, EXIT_INTERRUPTED = 0, 1, 3, 130


@dataclass
class RunResult:
    """What a run produced: where, the summary (as written to summary.json), and the exit code it calls for."""

    out_dir: Path
    summary: dict
    files: dict[str, Path] = field(default_factory=dict)

    @property
    def exit_code(self) -> int:
        """0 all forecast (or failures within --max-failed-frac), 3 too many failed, 130 interrupted."""
        status = self.summary["status"]
        return {"ok": EXIT_OK, "failed": EXIT_SOME_FAILED, "interrupted": EXIT_INTERRUPTED}[status]


@contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """A scheduler stops jobs with SIGTERM: treat it like Ctrl-C so finished work is written."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _as_series_result(series, outcome) -> SeriesResult:
    if isinstance(outcome, Failed):
        stage = "worker" if outcome.kind == "worker-died" else "internal"
        return SeriesResult(key=series.key, status="failed", n_obs=int((series.y == series.y).sum()),
                            stage=stage, error=outcome.reason)
    return outcome


def _versions() -> dict[str, str]:
    from importlib.metadata import version

    return {"forecast": __version__, "prophet": version("prophet"), "python": platform.python_version()}


def run_forecast(
    path: Path | str,
    config: ForecastConfig,
    progress: Callable[[int, int], None] | None = None,
    notify: Callable[[str], None] | None = None,
) -> RunResult:
    """Forecast every series of a long table and write forecasts, timings, errors and a summary.

    Args:
        path: the input table (.csv, .csv.gz, .parquet).
        config: the run's configuration.
        progress: called as progress(done, total) as series finish.
        notify: called with one-line messages worth telling the user (e.g. timezones dropped).

    Returns:
        A RunResult; its exit_code is what a CLI should exit with.

    Raises:
        InputError, ConfigError: before anything is written.
        BackendError: when workers cannot start.
    """
    clock = Clock()
    path = Path(path)
    out_dir = Path(config.out_dir) if config.out_dir is not None else default_out_dir()
    prepare_out_dir(out_dir, config.overwrite)
    check_options(config.model)
    with clock.stage("read"):
        table, notes = read_table(path, config.id_cols, config.time_col, config.target_col, config.duplicates)
        series = split_series(table, config.id_cols)
    for note in notes:
        if notify is not None:
            notify(note)

    status = "ok"
    tmp_root = tempfile.mkdtemp(prefix="forecast-")
    try:
        with clock.stage("fit_predict"), _sigterm_as_interrupt():
            on_dask = config.backend == "dask"
            in_process = not on_dask and config.n_jobs == 1
            # a Dask worker may be on another machine: it makes its own temp dir (see backends.DaskBackend)
            initargs = (None,) if in_process or on_dask else (tmp_root,)
            options = (dict(scheduler=config.scheduler, connect_timeout=config.connect_timeout, notify=notify)
                       if on_dask else {})
            with make_backend("dask" if on_dask else None, config.n_jobs, init_worker, initargs,
                              **options) as backend:
                n_jobs = backend.n_jobs
                backend_info = backend.info()
                chunks = split_into_chunks([len(s.ds) for s in series], n_jobs * config.chunks_per_job)
                func = partial(fit_series, opts=config.model)
                try:
                    outcomes = map_chunks(func, series, backend, chunks=chunks, progress=progress)
                except MapInterrupted as e:
                    status = "interrupted"
                    outcomes = [e.partial.get(i) for i in range(len(series))]
    finally:
        shutil.rmtree(tmp_root, ignore_errors=True)

    results = [_as_series_result(s, o) for s, o in zip(series, outcomes) if o is not None]
    n_failed = sum(r.status != "ok" for r in results)
    if status == "ok" and n_failed > config.max_failed_frac * len(series):
        status = "failed"

    with clock.stage("write"):
        ext = "parquet" if config.output_format == "parquet" else "csv"
        files = {
            "forecasts": write_table(forecast_frame(results, config.id_cols), out_dir / f"forecasts.{ext}"),
            "timings": write_table(timings_frame(results, config.id_cols), out_dir / "timings.csv"),
            "errors": write_table(errors_frame(results, config.id_cols), out_dir / "errors.csv"),
        }
    task_seconds = sum(r.fit_seconds + r.predict_seconds for r in results)
    wall = clock.wall
    summary = {
        "status": status,
        "input": str(path),
        "rows": int(len(table)),
        "series_total": len(series),
        "series_done": len(results),
        "series_ok": len(results) - n_failed,
        "series_failed": n_failed,
        "cores": usable_cores(),
        "n_jobs": n_jobs,
        "backend": backend_info,
        "chunks": len(chunks),
        "wall_seconds": wall,
        "cpu_seconds": clock.cpu,
        "stage_seconds": dict(clock.stages),
        "task_seconds": task_seconds,
        **throughput(len(results), task_seconds, wall, n_jobs),
        "slowest_series": slowest([r.key for r in results],
                                  [r.fit_seconds + r.predict_seconds for r in results], config.id_cols),
        "notes": notes,
        "versions": _versions(),
        "config": config.to_dict(),
        "files": {name: p.name for name, p in files.items()},
    }
    files["summary"] = write_json(summary, out_dir / "summary.json")
    return RunResult(out_dir=out_dir, summary=summary, files=files)
