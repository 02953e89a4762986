"""`run_forecast`: the library function behind `forecast run`. Read, fit every series in parallel, write."""

from __future__ import annotations

import dataclasses
import platform
import shutil
import signal
import threading
from contextlib import ExitStack, contextmanager, nullcontext
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from . import __version__
from .backends import make_backend
from .checkpoint import PartWriter, RunLock, RunState, make_manifest, manifest_difference, run_temp_dir
from .config import ForecastConfig, ModelOptions
from .errors import (EXIT_INTERRUPTED, EXIT_OK, EXIT_SOME_FAILED, BackendLostError, ConfigError, OutputExistsError,
                     RunStoppedError)
from .core import Failed, MapInterrupted, effective_n_jobs, map_chunks, plan_chunks, usable_cores
from .io import (default_out_dir, errors_frame, forecast_frame, inputs_read_once, key_types, load_series,
                 params_frame, prepare_out_dir, read_params, read_series_subset, timings_frame, write_json,
                 write_table, written_by_forecast)
from .model import SENT_STAGES, SeriesResult, check_options, fit_series, init_worker, serve_fallback
from .timing import Clock, run_timing

# The files a run may write besides timings, errors and the summary: one forecasts file, params with an engine.
_OUTPUTS = {"forecasts.parquet", "forecasts.csv", "params.parquet"}


@dataclass
class RunResult:
    """What a run (or a backtest) produced: where, the summary (as written to summary.json), and the exit code it
    calls for."""

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


def _table_grid(table, series, config: ForecastConfig):
    """The table's frequency (inferred once, or --freq), given to every series on its grid (series.freq)."""
    from .profile import table_grid

    grid = table_grid(table, config.id_cols, config.model.freq)
    if len(grid.on_grid) != len(series):  # both are in key order (io.sort_by_series); a mismatch is a bug
        raise RuntimeError(f"the table's grid covers {len(grid.on_grid)} series but the table split into "
                           f"{len(series)}")
    if config.model.freq is None:
        for s, on in zip(series, grid.on_grid):
            s.freq, s.table_freq = (grid.freq if on else None), grid.freq
    return grid


def _triage(table, series, config: ForecastConfig, grid) -> list[tuple[str, str]]:
    """(verdict, reason) per series, in the order of `series`. Without --triage a series with fewer than
    --min-obs values (but at least one) is sent to the fallback, every other one is "fit"."""
    if config.triage is None:
        n_obs = [int(np.count_nonzero(~np.isnan(s.y))) for s in series]
        return [("fallback", f"new: {n} value(s) (--min-obs {config.min_obs})") if 0 < n < config.min_obs
                else ("fit", "") for n in n_obs]
    from .profile import profile_table, triage

    profile = triage(profile_table(table, config.id_cols, config.model.freq, grid), config.triage,
                     freq_given=config.model.freq is not None)
    if len(profile) != len(series):  # both are in key order (groupby sort=True); a mismatch is a bug, not input
        raise RuntimeError(f"triage profiled {len(profile)} series but the table split into {len(series)}")
    return list(zip(profile["verdict"], profile["reason"]))


def _not_fitted(series, verdict: str, reason: str, config: ForecastConfig) -> SeriesResult:
    """The result of a series kept from Prophet: skipped by triage, or served by the fallback (by triage, or
    without --triage for having fewer than --min-obs values: stage "min-obs")."""
    n_obs = int((series.y == series.y).sum())
    if verdict == "skip":
        return SeriesResult(key=series.key, status="skipped", n_obs=n_obs, stage="triage", error=reason,
                            verdict=verdict)
    kind = config.fallback if config.fallback != "none" else "seasonal-naive"
    triaged = config.triage is not None
    result = SeriesResult(key=series.key, status="failed", n_obs=n_obs, stage="triage" if triaged else "min-obs",
                          error=reason, verdict=verdict if triaged else "")
    return serve_fallback(series, config.model, kind, result)


def _versions() -> dict[str, str]:
    from importlib.metadata import version

    return {"forecast": __version__, "prophet": version("prophet"), "python": platform.python_version()}


@dataclass(frozen=True)
class SeriesRef:
    """A series named, not carried: what a worker gets with --workers-read. `chunk` holds the keys of the series
    sent with it, so the worker reads them all in one filtered read (pickled once per chunk: a shared object)."""

    key: tuple
    chunk: tuple
    warm: dict | None = None  # --warm-start parameters, which the worker's own read cannot know
    freq: str | None = None  # the table's frequency when the series lies on its grid (the client's inference)
    table_freq: str | None = None  # the table's frequency, named when an off-grid series has none of its own


@dataclass(frozen=True)
class TableSource:
    """Where and how a worker reads series itself: the table's absolute path and read_table's settings."""

    path: str
    id_cols: tuple
    time_col: str
    target_col: str
    duplicates: str


_chunk_cache: tuple[tuple, dict] = ((), {})  # the last chunk a worker read: (its keys, series by key)


def fit_from_source(ref: SeriesRef, source: TableSource, opts) -> SeriesResult:
    """Fit one series that the worker reads itself, reading its whole chunk on the chunk's first series."""
    global _chunk_cache
    if _chunk_cache[0] is not ref.chunk:
        _chunk_cache = ((), {})  # free the previous chunk before reading the next
        _chunk_cache = (ref.chunk, read_series_subset(Path(source.path), source.id_cols, source.time_col,
                                                      source.target_col, source.duplicates, ref.chunk))
    series = _chunk_cache[1][ref.key]
    series.warm, series.freq, series.table_freq = ref.warm, ref.freq, ref.table_freq
    return fit_series(series, opts)


def _worker_items(series, chunks, config: ForecastConfig, path: Path, model):
    """With --workers-read, each series becomes a SeriesRef and the function reads it; otherwise as they are."""
    func = partial(fit_series, opts=model)
    if not config.workers_read:
        return series, func
    refs: list = [None] * len(series)
    for chunk in chunks:
        keys = tuple(series[i].key for i in chunk)
        for i in chunk:
            refs[i] = SeriesRef(series[i].key, keys, series[i].warm, series[i].freq, series[i].table_freq)
    source = TableSource(str(path.resolve()), tuple(config.id_cols), config.time_col, config.target_col,
                         config.duplicates)
    return refs, partial(fit_from_source, source=source, opts=model)


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
    if config.workers_read and not path.name.lower().endswith((".parquet", ".pq")):
        raise ConfigError(f"{path}: --workers-read needs a Parquet input (workers read their series with a key "
                          "filter); convert the table to Parquet or drop --workers-read")
    if config.workers_read and not path.is_file():
        raise ConfigError(f"{path}: --workers-read needs a file the workers can read again, not a pipe or standard "
                          "input; save the table to a file or drop --workers-read")
    with RunLock(out_dir), run_temp_root() as tmp_root, ExitStack() as early, inputs_read_once():
        finished = prepare_out_dir(out_dir, config.overwrite, config.resume)
        check_options(config.model)
        # more workers than cores: how many is known once the chunks are (a typo such as 4000 forks no 4000)
        backend = None if above_cores(config) else _backend(config, tmp_root, notify)
        if backend is not None and backend.starts_in_background:  # local workers start (imports: about a
            early.enter_context(backend)  # second) while the input is read
        with clock.stage("read"):
            warm = read_params(config.warm_start, config.id_cols) if config.warm_start is not None else {}
            table, series, notes, model = load_series(path, config)
            for s in series:  # a series new since that run starts cold
                s.warm = warm.get(tuple(str(v) for v in s.key))
            manifest = make_manifest(path, config.to_dict(), len(series),
                                     {"--future": config.future_path, "--holidays-file": config.holidays_file})
        if finished is not None:  # --resume of a run that had finished: done, if it is the same job
            return _already_finished(out_dir, finished, manifest, notify)
        state = RunState(out_dir)
        state.begin(manifest, config.resume, config.overwrite)
        try:
            for note in notes:
                if notify is not None:
                    notify(note)
            with clock.stage("triage") if config.triage is not None else nullcontext():
                grid = _table_grid(table, series, config)
                verdicts = _triage(table, series, config, grid)
            done = state.load(series) if config.resume else {}
            for part in state.damaged if notify is not None else []:
                notify(f"{part}: damaged, cannot be read; its series are fitted again")
            if backend is None:
                todo = [len(s.ds) for i, (s, (verdict, _)) in enumerate(zip(series, verdicts))
                        if verdict == "fit" and i not in done]
                n_jobs = capped_n_jobs(config, todo, notify)
                backend = _backend(dataclasses.replace(config, n_jobs=n_jobs), tmp_root, notify)
            return _fit_and_write(path, config, model, clock, table, series, verdicts, notes, state, done,
                                  backend, progress, events, grid, notify)
        except BaseException as e:
            kept = len(state.part_files())
            if not kept:  # nothing computed (e.g. no workers): leave the directory as it was
                state.clear()
            if isinstance(e, (OSError, BackendLostError)):  # the machine or the cluster failed, not the job
                raise RunStoppedError(_stopped_message(e, kept, state)) from e
            raise


def _stopped_message(e: BaseException, kept: int, state: RunState) -> str:
    """The one line of a run stopped by its machine or cluster: what failed, what is kept, how to go on."""
    if isinstance(e, OSError):
        what = f"{e.filename + ': ' if e.filename else ''}{e.strerror or e}"
        fix = "free space (or fix the cause) and run again with --resume"
    else:
        what, fix = str(e), "run again with --resume once the cluster is back"
    if kept:
        return (f"{what}; the run stopped, its finished series are kept in {state.parts_dir} ({kept} part file(s)): "
                f"{fix}")
    return f"{what}; the run stopped before any series was kept: {fix}"


def above_cores(config: ForecastConfig) -> bool:
    """Whether --n-jobs asks for more local workers than there are usable cores (see `capped_n_jobs`)."""
    return config.backend == "local" and effective_n_jobs(config.n_jobs) > usable_cores()


def capped_n_jobs(config: ForecastConfig, weights: list[float], notify) -> int:
    """--n-jobs above the usable cores cut to the chunks items of these weights make (a job file's typo of 4000
    forks no 4000 processes), and said."""
    asked = effective_n_jobs(config.n_jobs)
    n_jobs = max(1, min(asked, len(plan_chunks(weights, asked, config.chunks_per_job, config.chunk_rows))))
    if notify is not None:
        notify(f"--n-jobs {config.n_jobs} is more than the {usable_cores()} usable core(s); running {n_jobs} "
               f"worker process(es){', one per chunk of work' if n_jobs < asked else ''}")
    return n_jobs


def _already_finished(out_dir: Path, summary: dict, manifest: dict, notify) -> RunResult:
    """The result of the finished run in out_dir when it ran this input with these settings; else an error."""
    diff = manifest_difference(summary.get("manifest") or {}, manifest)
    if diff is not None:
        raise OutputExistsError(f"{out_dir}: holds a finished run, and {diff}; pass --overwrite to start again or "
                                "choose another --out")
    if notify is not None:
        notify(f"{out_dir} holds this run, finished: nothing to resume")
    files = {name: out_dir / file for name, file in summary.get("files", {}).items()}
    return RunResult(out_dir=out_dir, summary=summary, files={**files, "summary": out_dir / "summary.json"})


@contextmanager
def run_temp_root() -> Iterator[str]:
    """The run's private temp root (workers make theirs inside), removed at the end, whatever happens."""
    tmp_root = run_temp_dir()
    try:
        yield tmp_root
    finally:
        shutil.rmtree(tmp_root, ignore_errors=True)


def _backend(config: ForecastConfig, tmp_root: str, notify):
    """The run's backend, not yet entered."""
    if config.backend == "dask":
        name, options, in_process = "dask", dict(scheduler=config.scheduler, connect_timeout=config.connect_timeout,
                                                 notify=notify), False
    elif config.fit_timeout is not None:
        # a timeout can only be enforced by stopping a worker process, so --fit-timeout always runs in workers
        name, options, in_process = "process", {"item_timeout": config.fit_timeout}, False
    else:
        name, options, in_process = None, {}, effective_n_jobs(config.n_jobs) == 1
    # a Dask worker may be on another machine: it makes its own temp dir (see backends.DaskBackend)
    initargs = worker_initargs(config.model, tmp_root, in_process or name == "dask")
    return make_backend(name, config.n_jobs, init_worker, initargs, **options)


def worker_initargs(model: ModelOptions, tmp_root: str, in_process: bool) -> tuple:
    """`init_worker`'s arguments for a run or a backtest: the temp root its workers make theirs in, and whether
    they import Prophet."""
    # in-process work must not point this process's TMPDIR at a directory removed after the run; the stan and
    # fast engines need Prophet only for a country's holidays
    return (None if in_process else tmp_root, model.engine == "prophet" or bool(model.holidays))


def _fit_and_write(path, config, model, clock, table, series, verdicts, notes, state, done, backend, progress,
                   events, grid, notify=None) -> RunResult:
    out_dir = state.out_dir
    emit = events if events is not None else (lambda name, fields: None)
    todo = [i for i, (verdict, _) in enumerate(verdicts) if verdict == "fit" and i not in done]
    items = [series[i] for i in todo]
    n_jobs = effective_n_jobs(config.n_jobs)
    backend_info = {"name": backend.name, "workers": 0, "threads": 0}
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

    def start(n_jobs: int) -> None:  # once the workers are there, so a failure to start them is the only line
        emit("start", {"input": str(path), "out": str(out_dir), "series_total": len(series),
                       "series_resumed": len(done), "n_jobs": n_jobs})

    def report(finished: int, total: int) -> None:
        if progress is not None:
            progress(len(done) + finished, len(todo) + len(done))

    with clock.stage("fit_predict"), _sigterm_as_interrupt():
        if not items:
            start(n_jobs)
        else:
            writer = None
            try:
                # the interrupt is caught outside the backend's block, so the backend sees it and stops its
                # workers at once instead of waiting for their chunks (workers started early are the same ones)
                with backend:
                    n_jobs = backend.n_jobs
                    backend_info = backend.info()
                    start(n_jobs)
                    chunks = plan_chunks([len(s.ds) for s in items], n_jobs, config.chunks_per_job, config.chunk_rows)
                    writer = PartWriter(state, chunks, todo)
                    work, func = _worker_items(items, chunks, config, path, model)
                    map_chunks(func, work, backend, chunks=chunks, progress=report, on_result=record)
            except MapInterrupted as e:
                status = "interrupted"
                for item, outcome in e.partial.items():  # finished, but interrupted before recorded
                    if todo[item] not in new:
                        record(item, outcome)
            finally:
                if writer is not None:
                    writer.flush()

    by_index = {**done, **new}
    serving = config.fallback != "none" or any(verdict != "fit" for verdict, _ in verdicts)
    with clock.stage("fallback") if serving else nullcontext():
        results = []
        for i, (s, (verdict, reason)) in enumerate(zip(series, verdicts)):
            if verdict != "fit":
                result = _not_fitted(s, verdict, reason, config)
            elif i not in by_index:  # interrupted before this series was done
                continue
            else:
                result = by_index[i]
                result.verdict = verdict if config.triage is not None else ""
                if result.status == "failed" and config.fallback != "none":
                    result = serve_fallback(s, config.model, config.fallback, result)
            result.cutoff = s.ds[-1]
            results.append(result)
    short = sum(r.stage == "min-obs" for r in results)
    if short:
        notes.append(f"{short} series with fewer than --min-obs {config.min_obs} values got a simple forecast "
                     "instead of Prophet's (timings.csv says which; a lower --min-obs fits them)")
        if notify is not None:
            notify(notes[-1])
    counts = {status_: sum(r.status == status_ for r in results) for status_ in ("ok", "fallback", "failed", "skipped")}
    n_failed = counts["failed"]
    # Skipped series were triaged out on purpose, and a failure served by the fallback still has a forecast:
    # neither counts against --max-failed-frac.
    if status == "ok" and n_failed > config.max_failed_frac * len(series):
        status = "failed"

    run_id = config.run_id if config.run_id is not None else out_dir.resolve().name
    with clock.stage("write"):
        ext = "parquet" if config.output_format == "parquet" else "csv"
        files = {
            "forecasts": write_table(forecast_frame(results, config.id_cols, run_id), out_dir / f"forecasts.{ext}"),
            "timings": write_table(timings_frame(results, config.id_cols), out_dir / "timings.csv"),
            "errors": write_table(errors_frame(results, config.id_cols), out_dir / "errors.csv"),
        }
        if config.model.engine != "prophet":  # what a later run can --warm-start from
            files["params"] = write_table(params_frame(results, config.id_cols), out_dir / "params.parquet")
        # an earlier run's, in another format or engine: only what its summary says it wrote
        for stale in (_OUTPUTS & written_by_forecast(out_dir)) - {p.name for p in files.values()}:
            (out_dir / stale).unlink(missing_ok=True)
    fitted = list(new.values())  # throughput counts only the work of this run, not what a resume took over
    summary = {
        "status": status,
        "input": str(path),
        "rows": int(len(table)),
        "series_total": len(series),
        "series_done": len(results),
        "series_ok": counts["ok"],
        "series_failed": n_failed,
        "series_fallback": counts["fallback"],
        "series_fallback_after_failure": sum(r.status == "fallback" and r.stage not in SENT_STAGES for r in results),
        "series_below_min_obs": short,
        "series_skipped": counts["skipped"],
        "series_resumed": len(done),
        "run_id": run_id,
        "table_freq": grid.freq,
        "freq_given": config.model.freq is not None,
        "series_own_freq": int(np.count_nonzero(~grid.on_grid)),
        "key_types": key_types(table, config.id_cols),
        "series_warm_started": sum(s.warm is not None for s in items) if config.warm_start is not None else None,
        "verdicts": ({v: sum(r.verdict == v for r in results) for v in ("fit", "fallback", "skip")}
                     if config.triage is not None else None),
        "cores": usable_cores(),
        "n_jobs": n_jobs,
        "backend": backend_info,
        "chunks": len(chunks),
        # what this run served: its fits, and the series triage or --min-obs sent straight to a fallback
        **run_timing(clock, results, fitted + [r for r in results if r.status == "fallback" and r.stage in SENT_STAGES],
                     n_jobs, config.id_cols),
        "notes": notes,
        "versions": _versions(),
        "config": config.to_dict(),
        "files": {name: p.name for name, p in files.items()},
        "manifest": state.manifest(),  # what a --resume of this finished run checks it against
    }
    files["summary"] = write_json(summary, out_dir / "summary.json")
    if status != "interrupted":
        state.clear()  # finished: the outputs hold everything the parts did
    emit("end", {"status": status, "series_total": len(series), "series_done": len(results),
                 "series_ok": counts["ok"], "series_failed": n_failed, "wall_seconds": round(summary["wall_seconds"], 3)})
    return RunResult(out_dir=out_dir, summary=summary, files=files)
