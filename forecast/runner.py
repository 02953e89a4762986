"""`run_forecast`: the library function behind `forecast run`. Read, fit every series in parallel, write."""

from __future__ import annotations

import platform
import shutil
import signal
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Callable, Iterator

from . import __version__
from .backends import make_backend
from .checkpoint import PartWriter, RunLock, RunState, make_manifest, run_temp_dir
from .config import ForecastConfig
from .core import Failed, MapInterrupted, effective_n_jobs, map_chunks, split_into_chunks, usable_cores
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


def _as_series_result(series, outcome, fit_timeout: float | None = None) -> SeriesResult:
    if isinstance(outcome, Failed):
        stage = {"worker-died": "worker", "timeout": "fit"}.get(outcome.kind, "internal")
        reason = outcome.reason
        if outcome.kind == "timeout":
            reason = f"timeout: ran longer than --fit-timeout {fit_timeout:g} s; its worker was stopped"
        return SeriesResult(key=series.key, status="failed", n_obs=int((series.y == series.y).sum()),
                            stage=stage, error=reason)
    return outcome


def _versions() -> dict[str, str]:
    from importlib.metadata import version

    return {"forecast": __version__, "prophet": version("prophet"), "python": platform.python_version()}


def _key_fields(key: tuple, id_cols) -> dict:
    return {c: str(v) for c, v in zip(id_cols, key)}


def run_forecast(
    path: Path | str,
    config: ForecastConfig,
    progress: Callable[[int, int], None] | None = None,
    notify: Callable[[str], None] | None = None,
    events: Callable[[str, dict], None] | None = None,
) -> RunResult:
    """Forecast every series of a long table and write forecasts, timings, errors and a summary.

    Finished series are checkpointed as part files in the output directory while the run goes on, so a run that
    is killed can be finished with `config.resume` (see checkpoint.py); one run at a time holds the directory.

    Args:
        path: the input table (.csv, .csv.gz, .parquet).
        config: the run's configuration.
        progress: called as progress(done, total) as series finish.
        notify: called with one-line messages worth telling the user (e.g. timezones dropped).
        events: called as events(name, fields) for "start", "failed" (each failed series) and "end", for logs.

    Returns:
        A RunResult; its exit_code is what a CLI should exit with.

    Raises:
        InputError, ConfigError: before anything is written.
        RunLockedError: another run is writing into the output directory.
        BackendError: when workers cannot start.
    """
    clock = Clock()
    path = Path(path)
    out_dir = Path(config.out_dir) if config.out_dir is not None else default_out_dir()
    with RunLock(out_dir):
        prepare_out_dir(out_dir, config.overwrite)
        check_options(config.model)
        with clock.stage("read"):
            table, notes = read_table(path, config.id_cols, config.time_col, config.target_col, config.duplicates)
            series = split_series(table, config.id_cols)
            manifest = make_manifest(path, config.to_dict(), len(series))
        state = RunState(out_dir)
        state.begin(manifest, config.resume, config.overwrite)
        for note in notes:
            if notify is not None:
                notify(note)
        done = state.load(series) if config.resume else {}
        return _fit_and_write(path, config, clock, table, series, notes, state, done, progress, events)


def _fit_and_write(path, config, clock, table, series, notes, state, done, progress, events) -> RunResult:
    out_dir = state.out_dir
    emit = events if events is not None else (lambda name, fields: None)
    todo = [i for i in range(len(series)) if i not in done]
    items = [series[i] for i in todo]
    # a timeout can only be enforced by stopping a worker process, so --fit-timeout always runs in workers
    backend_name = "process" if config.fit_timeout is not None else None
    options = {"item_timeout": config.fit_timeout} if config.fit_timeout is not None else {}
    n_jobs = effective_n_jobs(config.n_jobs)
    in_process = backend_name is None and n_jobs == 1
    emit("start", {"input": str(path), "out": str(out_dir), "series_total": len(series),
                   "series_resumed": len(done), "n_jobs": n_jobs})
    new: dict[int, SeriesResult] = {}
    chunks: list[list[int]] = []
    status = "ok"

    def record(item: int, outcome) -> None:
        result = _as_series_result(items[item], outcome, config.fit_timeout)
        new[todo[item]] = result
        writer.add(item, result)
        if result.status != "ok":
            emit("failed", {"series": _key_fields(result.key, config.id_cols), "stage": result.stage,
                            "reason": result.error})

    def report(finished: int, total: int) -> None:
        if progress is not None:
            progress(len(done) + finished, len(series))

    tmp_root = run_temp_dir()
    try:
        with clock.stage("fit_predict"), _sigterm_as_interrupt():
            if items:
                initargs = (None,) if in_process else (tmp_root,)
                with make_backend(backend_name, config.n_jobs, init_worker, initargs, **options) as backend:
                    n_jobs = backend.n_jobs
                    chunks = split_into_chunks([len(s.ds) for s in items], n_jobs * config.chunks_per_job)
                    writer = PartWriter(state, chunks, todo)
                    func = partial(fit_series, opts=config.model)
                    try:
                        map_chunks(func, items, backend, chunks=chunks, progress=report, on_result=record)
                    except MapInterrupted as e:
                        status = "interrupted"
                        for item, outcome in e.partial.items():  # finished, but interrupted before recorded
                            if todo[item] not in new:
                                record(item, outcome)
                    finally:
                        writer.flush()
    finally:
        shutil.rmtree(tmp_root, ignore_errors=True)

    by_index = {**done, **new}
    results = [by_index[i] for i in range(len(series)) if i in by_index]
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
    fitted = list(new.values())  # throughput counts only the work of this run, not what a resume took over
    task_seconds = sum(r.fit_seconds + r.predict_seconds for r in fitted)
    wall = clock.wall
    summary = {
        "status": status,
        "input": str(path),
        "rows": int(len(table)),
        "series_total": len(series),
        "series_done": len(results),
        "series_ok": len(results) - n_failed,
        "series_failed": n_failed,
        "series_resumed": len(done),
        "cores": usable_cores(),
        "n_jobs": n_jobs,
        "chunks": len(chunks),
        "wall_seconds": wall,
        "cpu_seconds": clock.cpu,
        "stage_seconds": dict(clock.stages),
        "task_seconds": task_seconds,
        **throughput(len(fitted), task_seconds, wall, n_jobs),
        "slowest_series": slowest([r.key for r in results],
                                  [r.fit_seconds + r.predict_seconds for r in results], config.id_cols),
        "notes": notes,
        "versions": _versions(),
        "config": config.to_dict(),
        "files": {name: p.name for name, p in files.items()},
    }
    files["summary"] = write_json(summary, out_dir / "summary.json")
    if status != "interrupted":
        state.clear()  # finished: the outputs hold everything the parts did
    emit("end", {"status": status, "series_total": len(series), "series_done": len(results),
                 "series_ok": len(results) - n_failed, "series_failed": n_failed, "wall_seconds": round(wall, 3)})
    return RunResult(out_dir=out_dir, summary=summary, files=files)
