"""`run_forecast`: the library function behind `forecast run`. Read, fit every series in parallel, write."""

from __future__ import annotations

import platform
import shutil
import signal
import tempfile
import threading
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Callable, Iterator

from . import __version__
from .backends import make_backend
from .config import ForecastConfig
from .core import Failed, MapInterrupted, effective_n_jobs, map_chunks, split_into_chunks, usable_cores
from .io import (default_out_dir, errors_frame, forecast_frame, params_frame, prepare_out_dir, read_params,
                 read_table, split_series, timings_frame, write_json, write_table)
from .model import SeriesResult, check_options, fit_series, init_worker, serve_fallback
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


def _triage(table, series, config: ForecastConfig) -> list[tuple[str, str]]:
    """(verdict, reason) per series, in the order of `series`; every series is "fit" without --triage."""
    if config.triage is None:
        return [("fit", "")] * len(series)
    from .profile import profile_table, triage

    profile = triage(profile_table(table, config.id_cols), config.triage, freq_given=config.model.freq is not None)
    if len(profile) != len(series):  # both are in key order (groupby sort=True); a mismatch is a bug, not input
        raise RuntimeError(f"triage profiled {len(profile)} series but the table split into {len(series)}")
    return list(zip(profile["verdict"], profile["reason"]))


def _not_fitted(series, verdict: str, reason: str, config: ForecastConfig) -> SeriesResult:
    """The result of a series triage kept from Prophet: skipped, or served by the fallback."""
    n_obs = int((series.y == series.y).sum())
    if verdict == "skip":
        return SeriesResult(key=series.key, status="skipped", n_obs=n_obs, stage="triage", error=reason,
                            verdict=verdict)
    kind = config.fallback if config.fallback != "none" else "seasonal-naive"
    result = SeriesResult(key=series.key, status="failed", n_obs=n_obs, stage="triage", error=reason,
                          verdict=verdict)
    return serve_fallback(series, config.model, kind, result)


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
        warm = read_params(config.warm_start, config.id_cols) if config.warm_start is not None else {}
        table, notes = read_table(path, config.id_cols, config.time_col, config.target_col, config.duplicates)
        series = split_series(table, config.id_cols)
        for s in series:  # a series new since that run starts cold
            s.warm = warm.get(tuple(str(v) for v in s.key))
    for note in notes:
        if notify is not None:
            notify(note)

    with clock.stage("triage") if config.triage is not None else nullcontext():
        verdicts = _triage(table, series, config)
    to_fit = [s for s, (v, _) in zip(series, verdicts) if v == "fit"]

    status = "ok"
    tmp_root = tempfile.mkdtemp(prefix="forecast-")
    try:
        with clock.stage("fit_predict"), _sigterm_as_interrupt():
            n_jobs = effective_n_jobs(config.n_jobs)
            # in-process work must not point this process's TMPDIR at a directory removed after the run
            initargs = (None,) if n_jobs == 1 else (tmp_root,)
            # the stan and fast engines need Prophet only for what they do not cover (holidays)
            initargs += (config.model.engine == "prophet" or bool(config.model.holidays),)
            chunks = split_into_chunks([len(s.ds) for s in to_fit], n_jobs * config.chunks_per_job)
            func = partial(fit_series, opts=config.model)
            try:
                # the interrupt is caught outside the backend's block, so the backend sees it and stops its
                # workers at once instead of waiting for their chunks
                with make_backend(None, n_jobs, init_worker, initargs) as backend:
                    outcomes = map_chunks(func, to_fit, backend, chunks=chunks, progress=progress)
            except MapInterrupted as e:
                status = "interrupted"
                outcomes = [e.partial.get(i) for i in range(len(to_fit))]
    finally:
        shutil.rmtree(tmp_root, ignore_errors=True)

    serving = config.fallback != "none" or config.triage is not None
    with clock.stage("fallback") if serving else nullcontext():
        fitted = iter(outcomes)
        results = []
        for s, (verdict, reason) in zip(series, verdicts):
            if verdict != "fit":
                results.append(_not_fitted(s, verdict, reason, config))
                continue
            outcome = next(fitted)
            if outcome is None:  # interrupted before this series was done
                continue
            result = _as_series_result(s, outcome)
            result.verdict = verdict if config.triage is not None else ""
            if result.status == "failed" and config.fallback != "none":
                result = serve_fallback(s, config.model, config.fallback, result)
            results.append(result)
    counts = {status_: sum(r.status == status_ for r in results) for status_ in ("ok", "fallback", "failed", "skipped")}
    n_failed = counts["failed"]
    # Skipped series were triaged out on purpose, and a failure served by the fallback still has a forecast:
    # neither counts against --max-failed-frac.
    if status == "ok" and n_failed > config.max_failed_frac * len(series):
        status = "failed"

    with clock.stage("write"):
        ext = "parquet" if config.output_format == "parquet" else "csv"
        files = {
            "forecasts": write_table(forecast_frame(results, config.id_cols), out_dir / f"forecasts.{ext}"),
            "timings": write_table(timings_frame(results, config.id_cols), out_dir / "timings.csv"),
            "errors": write_table(errors_frame(results, config.id_cols), out_dir / "errors.csv"),
        }
        if config.model.engine != "prophet":  # what a later run can --warm-start from
            files["params"] = write_table(params_frame(results, config.id_cols), out_dir / "params.parquet")
    task_seconds = sum(r.fit_seconds + r.predict_seconds for r in results)
    wall = clock.wall
    summary = {
        "status": status,
        "input": str(path),
        "rows": int(len(table)),
        "series_total": len(series),
        "series_done": len(results),
        "series_ok": counts["ok"],
        "series_failed": n_failed,
        "series_fallback": counts["fallback"],
        "series_fallback_after_failure": sum(r.status == "fallback" and r.stage != "triage" for r in results),
        "series_skipped": counts["skipped"],
        "series_warm_started": sum(s.warm is not None for s in to_fit) if config.warm_start is not None else None,
        "verdicts": ({v: sum(r.verdict == v for r in results) for v in ("fit", "fallback", "skip")}
                     if config.triage is not None else None),
        "cores": usable_cores(),
        "n_jobs": n_jobs,
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
