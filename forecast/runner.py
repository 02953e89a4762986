"""`run_forecast`: the library function behind `forecast run`. Read, fit every series in parallel, write.

The job skeleton (lock, backend, map, part files, interrupt, summary) is job.py's; this module is what a run
adds: triage and the fallback, the series function (with --workers-read, one that reads its own series), and
the forecasts written.
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np

from .backends import backend_class
from .checkpoint import RUN_PARTS
from .config import DuplicatePolicy, ForecastConfig, ModelOptions
from .core import Failed
from .errors import ConfigError
from .job import Job, Loaded, Mapped, RunResult, Written, run_job
from .levels import band_columns
from .model import fit_series, serve_fallback
from .outputs import (
    errors_frame,
    forecast_frame,
    params_frame,
    read_params,
    timings_frame,
    write_table,
    written_by_forecast,
)
from .progress import Reporter
from .sources import Source, TableInput, key_types, load_series, read_series_subset
from .timing import Clock
from .types import SENT_STAGES, SeriesData, SeriesResult, Stage, Verdict

if TYPE_CHECKING:
    import pandas as pd

    from .profile import TableGrid

# The files a run may write besides timings, errors and the summary: one forecasts file, params with an engine.
_OUTPUTS = {"forecasts.parquet", "forecasts.csv", "params.parquet"}


def _as_series_result(series: SeriesData, outcome: SeriesResult | Failed,
                      fit_timeout: float | None = None) -> SeriesResult:
    if isinstance(outcome, Failed):
        stage: Stage = {"worker-died": "worker", "timeout": "fit"}.get(outcome.kind, "internal")
        reason = outcome.reason
        if outcome.kind == "timeout":
            reason = f"timeout: ran longer than --fit-timeout {fit_timeout:g} s; its worker was stopped"
        return SeriesResult(key=series.key, status="failed", n_obs=int((series.y == series.y).sum()),
                            stage=stage, error=reason)
    return outcome


def _table_grid(table: pd.DataFrame, series: list[SeriesData], config: ForecastConfig) -> TableGrid:
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


def _triage(table: pd.DataFrame, series: list[SeriesData], config: ForecastConfig, grid: TableGrid
            ) -> list[tuple[Verdict, str, str]]:
    """(verdict, reason, rule) per series, in the order of `series`; rule is the triage rule the reason comes from
    ("" for a series to fit). Without --triage a series with fewer than --min-obs values (but at least one) is
    sent to the fallback (rule "new"), every other one is "fit"."""
    if config.triage is None:
        return [min_obs_verdict(s, config) for s in series]
    from .profile import profile_table, triage

    profile = triage(profile_table(table, config.id_cols, config.model.freq, grid), config.triage,
                     freq_given=config.model.freq is not None)
    if len(profile) != len(series):  # both are in key order (groupby sort=True); a mismatch is a bug, not input
        raise RuntimeError(f"triage profiled {len(profile)} series but the table split into {len(series)}")
    first_rule = profile["rules"].str.partition(";")[0]  # the rules are listed in RULES' order, as the reason
    return list(zip(profile["verdict"], profile["reason"], first_rule))


def min_obs_verdict(series: SeriesData, config: ForecastConfig) -> tuple[Verdict, str, str]:
    """A series' (verdict, reason, rule) without --triage: the fallback below --min-obs values (but at least one),
    rule "new"."""
    n = int(np.count_nonzero(~np.isnan(series.y)))
    if 0 < n < config.min_obs:
        return "fallback", f"new: {n} value(s) (--min-obs {config.min_obs})", "new"
    return "fit", "", ""


def settle(series: SeriesData, verdict: Verdict, reason: str, rule: str, fitted: SeriesResult | None,
           config: ForecastConfig) -> SeriesResult:
    """A series' final result: the fallback's for one kept from its model (`fitted` None), else its fit's, with
    the fallback for a failure (--fallback); its verdict and cutoff set. What every backend's run writes."""
    if verdict != "fit" or fitted is None:
        result = _not_fitted(series, verdict, reason, rule, config)
    else:
        result = fitted
        result.verdict = verdict if config.triage is not None else ""
        if result.status == "failed" and config.fallback != "none":
            result = serve_fallback(series, config.model, config.fallback, result)
    result.cutoff = series.ds[-1]
    return result


def _not_fitted(series: SeriesData, verdict: Verdict, reason: str, rule: str, config: ForecastConfig
                ) -> SeriesResult:
    """The result of a series kept from Prophet: skipped by triage, or served by the fallback (by triage, or
    without --triage for having fewer than --min-obs values: stage "min-obs"). A series triage calls
    intermittent gets --intermittent-model, and its reason says so; any other the --fallback model
    (seasonal-naive when none)."""
    n_obs = int((series.y == series.y).sum())
    if verdict == "skip":
        return SeriesResult(key=series.key, status="skipped", n_obs=n_obs, stage="triage", error=reason,
                            verdict=verdict)
    kind = config.fallback if config.fallback != "none" else "seasonal-naive"
    if rule == "intermittent":
        kind = config.intermittent_model
        reason = f"{reason}; --intermittent-model {kind}"
    triaged = config.triage is not None
    result = SeriesResult(key=series.key, status="failed", n_obs=n_obs, stage="triage" if triaged else "min-obs",
                          error=reason, verdict=verdict if triaged else "")
    return serve_fallback(series, config.model, kind, result)


@dataclass(frozen=True)
class SeriesRef:
    """A series named, not carried: what a worker gets with --workers-read. `chunk` holds the keys of the series
    sent with it, so the worker reads them all in one filtered read (pickled once per chunk: a shared object)."""

    key: tuple
    chunk: tuple
    warm: dict | None = None  # --warm-start parameters, which the worker's own read cannot know
    freq: str | None = None  # the table's frequency when the series lies on its grid (the client's inference)
    table_freq: str | None = None  # the table's frequency, named when an off-grid series has none of its own
    holiday_table: tuple | None = None  # its own holiday rows (--holidays-key), shared by the series of a region
    country: str | None = None  # its own country (--holidays-col)


@dataclass(frozen=True)
class TableSource:
    """Where and how a worker reads series itself: the table's absolute path and read_table's settings."""

    path: str
    id_cols: tuple
    time_col: str
    target_col: str
    duplicates: DuplicatePolicy


_chunk_cache: tuple[tuple, dict] = ((), {})  # the last chunk a worker read: (its keys, series by key)


def fit_from_source(ref: SeriesRef, source: TableSource, opts: ModelOptions) -> SeriesResult:
    """Fit one series that the worker reads itself, reading its whole chunk on the chunk's first series."""
    global _chunk_cache
    if _chunk_cache[0] is not ref.chunk:
        _chunk_cache = ((), {})  # free the previous chunk before reading the next
        _chunk_cache = (ref.chunk, read_series_subset(Path(source.path), source.id_cols, source.time_col,
                                                      source.target_col, source.duplicates, ref.chunk))
    series = _chunk_cache[1][ref.key]
    series.warm, series.freq, series.table_freq = ref.warm, ref.freq, ref.table_freq
    series.holiday_table, series.country = ref.holiday_table, ref.country
    return fit_series(series, opts)


def _worker_items(series: list[SeriesData], chunks: list[list[int]], config: ForecastConfig, source: Source,
                  model: ModelOptions) -> tuple[Sequence, Callable]:
    """With --workers-read, each series becomes a SeriesRef and the function reads it; otherwise as they are."""
    func = partial(fit_series, opts=model)
    if not config.workers_read:
        return series, func
    refs: list = [None] * len(series)
    for chunk in chunks:
        keys = tuple(series[i].key for i in chunk)
        for i in chunk:
            s = series[i]
            refs[i] = SeriesRef(s.key, keys, s.warm, s.freq, s.table_freq, s.holiday_table, s.country)
    table = TableSource(str(source.path.resolve()), tuple(config.id_cols), config.time_col, config.target_col,
                        config.duplicates)
    return refs, partial(fit_from_source, source=table, opts=model)



class ForecastJob(Job):
    """`forecast run` as a job: triage, Prophet per series (the fallback for what fails), forecasts written."""

    kind = "run"
    map_stage = "fit_predict"
    schema = RUN_PARTS

    def check(self, source: Source) -> None:
        if self.config.to_db is not None:  # the night's work is not done to find the database unreachable
            from .sinks import check_reachable

            check_reachable(self.config.to_db)
        if not self.config.workers_read:
            return
        if not source.label.lower().endswith((".parquet", ".pq")):
            raise ConfigError(f"{source.label}: --workers-read needs a Parquet input (workers read their series with a "
                              "key filter); convert the table to Parquet or drop --workers-read")
        if source.path is None:
            raise ConfigError(f"{source.label}: --workers-read needs a file the workers can read again, not a pipe or "
                              "standard input; save the table to a file or drop --workers-read")

    def other_files(self) -> dict:
        return {"--future": self.config.future_path, "--holidays-file": self.config.holidays_file}

    def load(self, source: Source) -> Loaded:
        config = self.config
        warm = read_params(config.warm_start, config.id_cols) if config.warm_start is not None else {}
        table, series, notes, model = load_series(source, config)
        for s in series:  # a series new since that run starts cold
            s.warm = warm.get(tuple(str(v) for v in s.key))
        return Loaded(table, series, notes, model)

    def prepare(self, loaded: Loaded, clock: Clock) -> list[int]:
        config = self.config
        with clock.stage("triage") if config.triage is not None else nullcontext():
            self.grid = _table_grid(loaded.table, loaded.series, config)
            self.verdicts = _triage(loaded.table, loaded.series, config, self.grid)
        return [i for i, (verdict, _, _) in enumerate(self.verdicts) if verdict == "fit"]

    def work(self, source: Source, loaded: Loaded, items: list, chunks: list[list[int]]
             ) -> tuple[Sequence, Callable]:
        return _worker_items(items, chunks, self.config, source, loaded.model)

    def as_result(self, series: SeriesData, outcome: Any) -> SeriesResult:
        return _as_series_result(series, outcome, self.config.fit_timeout)

    def finish(self, source: Source, loaded: Loaded, mapped: Mapped, out_dir: Path, clock: Clock,
               reporter: Reporter) -> Written:
        config, series, notes, verdicts, grid = self.config, loaded.series, loaded.notes, self.verdicts, self.grid
        by_index = {**mapped.done, **mapped.new}
        serving = config.fallback != "none" or any(verdict != "fit" for verdict, _, _ in verdicts)
        with clock.stage("fallback") if serving else nullcontext():
            results = []
            for i, (s, (verdict, reason, rule)) in enumerate(zip(series, verdicts)):
                if verdict == "fit" and i not in by_index:  # interrupted before this series was done
                    continue
                results.append(settle(s, verdict, reason, rule, by_index.get(i), config))
        short = sum(r.stage == "min-obs" for r in results)
        if short:
            notes.append(f"{short} series with fewer than --min-obs {config.min_obs} values got a simple forecast "
                         "instead of Prophet's (timings.csv says which; a lower --min-obs fits them)")
            reporter.note(notes[-1])
        counts = {status_: sum(r.status == status_ for r in results)
                  for status_ in ("ok", "fallback", "failed", "skipped")}
        n_failed = counts["failed"]
        status = mapped.status
        # Skipped series were triaged out on purpose, and a failure served by the fallback still has a forecast:
        # neither counts against --max-failed-frac.
        if status == "ok" and n_failed > config.max_failed_frac * len(series):
            status = "failed"

        run_id = config.run_id if config.run_id is not None else out_dir.resolve().name
        with clock.stage("write"):
            ext = "parquet" if config.output_format == "parquet" else "csv"
            forecasts = forecast_frame(results, config.id_cols, run_id, band_columns(config.model))
            timings = timings_frame(results, config.id_cols)
            files = {
                "forecasts": write_table(forecasts, out_dir / f"forecasts.{ext}"),
                "timings": write_table(timings, out_dir / "timings.csv"),
                "errors": write_table(errors_frame(results, config.id_cols), out_dir / "errors.csv"),
            }
            if config.model.engine != "prophet":  # what a later run can --warm-start from
                files["params"] = write_table(params_frame(results, config.id_cols), out_dir / "params.parquet")
            # an earlier run's, in another format or engine: only what its summary says it wrote
            for stale in (_OUTPUTS & written_by_forecast(out_dir)) - {p.name for p in files.values()}:
                (out_dir / stale).unlink(missing_ok=True)
            to_db = None
            if config.to_db is not None and status == "interrupted":  # never half a night in the tables
                notes.append("interrupted: --to-db's tables were not written; --resume finishes the run and writes "
                             "them")
                reporter.note(notes[-1])
            elif config.to_db is not None:  # after the files: a database that fails leaves them written
                from .sinks import write_run

                runs = timings.assign(cutoff=np.array([r.cutoff for r in results], dtype="datetime64[ns]"),
                                      run_id=run_id)
                to_db = write_run(config.to_db, config.to_table, forecasts, runs, run_id)
        items = [series[i] for i in mapped.todo]
        fields = {
            "series_ok": counts["ok"],
            "series_failed": n_failed,
            "series_fallback": counts["fallback"],
            "series_fallback_after_failure": sum(r.status == "fallback" and r.stage not in SENT_STAGES
                                                 for r in results),
            "series_below_min_obs": short,
            "series_skipped": counts["skipped"],
            "series_resumed": len(mapped.done),
            "run_id": run_id,
            "table_freq": grid.freq,
            "freq_given": config.model.freq is not None,
            "series_own_freq": int(np.count_nonzero(~grid.on_grid)),
            "key_types": key_types(loaded.table, config.id_cols),
            "series_warm_started": (sum(s.warm is not None for s in items) if config.warm_start is not None
                                    else None),
            "verdicts": ({v: sum(r.verdict == v for r in results) for v in ("fit", "fallback", "skip")}
                         if config.triage is not None else None),
            "to_db": to_db,
        }
        # what this run served: its fits (not what a resume took over), and the series triage or --min-obs sent
        # straight to a fallback
        timed = list(mapped.new.values()) + [r for r in results if r.status == "fallback" and r.stage in SENT_STAGES]
        return Written(status=status, fields=fields, files=files, results=results, timed=timed)


def run_forecast(path: TableInput, config: ForecastConfig, reporter: Reporter | None = None) -> RunResult:
    """Forecast every series of a long table and write forecasts, timings, errors and a summary.

    Finished series are checkpointed as part files in the output directory while the run goes on, so a run that
    is killed can be finished with `config.resume` (see checkpoint.py); one run at a time holds the directory.

    Args:
        path: the input table: a .csv, .csv.gz or .parquet path ("-": standard input), a pandas DataFrame, a
            pyarrow Table, or a Source (see sources.open_source).
        config: the run's configuration.
        reporter: told progress, one-line notes (e.g. timezones dropped) and the "start", "failed" and "end"
            events (see progress.Reporter); None tells nothing.

    Returns:
        A RunResult; its exit_code is what a CLI should exit with.

    Raises:
        InputError, ConfigError: before anything is written.
        RunLockedError: another run is writing into the output directory.
        BackendError: when workers cannot start.
    """
    native = getattr(backend_class(config.backend), "run_forecast", None)
    if native is not None:  # a backend that runs the whole job where the table is (Spark), not a map of ours
        return native(path, config, reporter)
    return run_job(ForecastJob(config), path, reporter)
