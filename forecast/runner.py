"""`run_forecast`: the library function behind `forecast run`. Read, fit every series in parallel, write.

The job skeleton (lock, backend, map, part files, interrupt, summary) is job.py's; this module is what a run
adds: triage and the fallback, the series function (with --workers-read, one that reads its own series), and
the forecasts written.
"""

from __future__ import annotations

import bisect
from contextlib import nullcontext
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Mapping, Sequence

import numpy as np
import pandas as pd

from .backends import backend_class
from .checkpoint import RUN_PARTS, RunState
from .config import DuplicatePolicy, ForecastConfig, ModelOptions
from .core import Failed
from .errors import ConfigError
from .job import Job, Loaded, Mapped, RunResult, Written, run_job
from .levels import band_columns
from .model import fit_series, serve_fallback
from .outputs import (
    TableWriter,
    errors_frame,
    forecast_frame,
    params_frame,
    read_output_file,
    read_params,
    remove_leftovers,
    timings_frame,
    written_by_forecast,
)
from .progress import Reporter
from .sources import Source, TableInput, load_blocks, read_series_subset
from .timing import Clock, Tally
from .types import SENT_STAGES, SeriesData, SeriesResult, Stage, Verdict

if TYPE_CHECKING:
    from .profile import TableGrid

# The files a run may write besides the summary: one forecasts file, timings, errors, params with an engine.
_OUTPUTS = {"forecasts.parquet", "forecasts.csv", "timings.csv", "errors.csv", "params.parquet"}


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


def _table_grid(table: pd.DataFrame, series: list[SeriesData], config: ForecastConfig,
                like: TableGrid | None = None) -> TableGrid:
    """The table's frequency (inferred once, or --freq), given to every series on its grid (series.freq); `like`:
    the grid of the table's first block, for a later block."""
    from .profile import table_grid

    grid = table_grid(table, config.id_cols, config.model.freq, like)
    if len(grid.on_grid) != len(series):  # both are in key order (io.sort_by_series); a mismatch is a bug
        raise RuntimeError(f"the table's grid covers {len(grid.on_grid)} series but the table split into "
                           f"{len(series)}")
    if config.model.freq is None:
        for s, on in zip(series, grid.on_grid):
            s.freq, s.table_freq = (grid.freq if on else None), grid.freq
    return grid


def _triage(table: pd.DataFrame, series: list[SeriesData], config: ForecastConfig, grid: TableGrid,
            table_last: Any = None) -> list[tuple[Verdict, str, str]]:
    """(verdict, reason, rule) per series, in the order of `series`; rule is the triage rule the reason comes from
    ("" for a series to fit). Without --triage a series with fewer than --min-obs values (but at least one) is
    sent to the fallback (rule "new"), every other one is "fit"."""
    if config.triage is None:
        return [min_obs_verdict(s, config) for s in series]
    from .profile import profile_table, triage

    profile = triage(profile_table(table, config.id_cols, config.model.freq, grid, table_last), config.triage,
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
    """`forecast run` as a job: triage, Prophet per series (the fallback for what fails), forecasts written.

    The table is read a block of whole series at a time (--block-rows), and each series' final result (the
    fallback's for a failed fit) goes to a part file as it is settled, so the run holds a block or two of the
    table and one small record per series, whatever the table's size. The outputs are written in key order as the
    results come (see LiveOutputs); what that could not take is read back from the part files at the end.
    """

    kind = "run"
    map_stage = "fit_predict"
    schema = RUN_PARTS
    streams = True

    def __init__(self, config: ForecastConfig) -> None:
        super().__init__(config)
        self.keys = SeriesKeys()  # every series read, by index
        self.void_below = 0  # indices below this were given out before the table proved unsorted (see blocks)
        self.in_key_order = True  # the series were read in key order (else their outputs are put in it at the end)
        self.grid: TableGrid | None = None  # the first block's, which every block uses
        self.grid_votes: dict[str | None, int] = {}  # each block's own grid, by its number of series
        self.own_freq = 0
        self.warm_started = 0
        self.table_last: Any = None
        self.live: LiveOutputs | None = None  # the outputs written as the map goes (see LiveOutputs)

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

    def blocks(self, source: Source, spill_dir: Path, notify: Callable[[str], None]) -> Iterator[Loaded]:
        config = self.config
        warm = read_params(config.warm_start, config.id_cols) if config.warm_start is not None else {}
        # --workers-read: the workers read their chunks' series by key from the whole file
        rows = 0 if config.workers_read else config.block_rows
        model, blocks = load_blocks(source, config, rows, spill_dir, notify)
        for block in blocks:
            self.in_key_order &= block.in_key_order
            self.void_below = max(self.void_below, block.void_below)
            if self.live is not None and (self.void_below or not self.in_key_order):
                self.live.stop()  # its outputs come in key order at the end, from the parts (see finish)
            for s in block.series:
                s.warm = warm.get(tuple(str(v) for v in s.key))  # a series new since that run starts cold
            self.keys.add_block(block.start, [s.key for s in block.series])
            yield Loaded(block.table, block.series, block.notes, model, start=block.start, read=block.read,
                         void_below=block.void_below)

    def resumed(self, state: RunState, first: Loaded) -> dict[int, Any]:
        return dict.fromkeys(state.done_indices())  # their results are read from the parts at the end

    def prepare(self, loaded: Loaded, clock: Clock) -> list[int]:
        config = self.config
        with clock.stage("triage") if config.triage is not None else nullcontext():
            grid = _table_grid(loaded.table, loaded.series, config, self.grid)
            if self.grid is None:
                self.grid = grid
            own = grid.voted if grid.voted is not None else grid.freq  # what this block alone says
            self.grid_votes[own] = self.grid_votes.get(own, 0) + len(loaded.series)
            self.own_freq += int(np.count_nonzero(~grid.on_grid))
            last = loaded.table["ds"].max()  # a block holds at least one series
            self.table_last = last if self.table_last is None else max(self.table_last, last)
            self.verdicts = _triage(loaded.table, loaded.series, config, grid, self.table_last)
        fit = [i for i, (verdict, _, _) in enumerate(self.verdicts) if verdict == "fit"]
        self.warm_started += sum(loaded.series[i].warm is not None for i in fit)
        return fit

    def served(self, loaded: Loaded) -> dict[int, Any]:
        config = self.config
        sent = [(i, v) for i, v in enumerate(self.verdicts) if v[0] != "fit"]
        return {loaded.start + i: settle(loaded.series[i], verdict, reason, rule, None, config)
                for i, (verdict, reason, rule) in sent}

    def work(self, source: Source, loaded: Loaded, items: list, chunks: list[list[int]]
             ) -> tuple[Sequence, Callable]:
        return _worker_items(items, chunks, self.config, source, loaded.model)

    def as_result(self, series: SeriesData, outcome: Any) -> SeriesResult:
        return _as_series_result(series, outcome, self.config.fit_timeout)

    def collected(self, series: SeriesData, result: Any) -> SeriesResult:
        return settle(series, "fit", "", "", result, self.config)

    def begin(self, state: RunState, done: dict[int, Any]) -> None:
        for name in _OUTPUTS:  # what a killed run was writing live (this run holds the directory's lock)
            remove_leftovers(state.out_dir / name)
        if not done:  # a resumed run's earlier results are in the parts only: finish reads them all from there
            self.live = LiveOutputs(RunOutputs(state.out_dir, self.config))

    def kept(self, index: int, result: Any) -> None:
        if self.live is not None:
            self.live.add(index, result)
        return None  # the part file holds it; finish reads back what the live outputs did not take

    def abandon(self) -> None:
        if self.live is not None:
            self.live.stop()

    def finish(self, source: Source, loaded: Loaded, mapped: Mapped, out_dir: Path, clock: Clock,
               reporter: Reporter) -> Written:
        config, notes = self.config, loaded.notes
        self.keys.start = self.void_below  # those read before the table proved unsorted are set aside
        keys = _uniform_keys(self.keys)
        if not self.in_key_order:  # the outputs come in key order, as a sorted table's
            order = {i: r for r, i in enumerate(sorted(keys, key=lambda i: _sortable(keys[i])))}
            rank: Callable[[int], Any] = order.__getitem__
        else:
            rank = int
        with clock.stage("write"):
            live, rest = self.live, keys
            outputs = None
            try:
                # (blocks stopped the live outputs of a table not read in key order)
                if live is not None and live.usable(keys is self.keys):
                    outputs = live.outputs  # what the map wrote stays: the rest follows it
                    rest = keys.view(max(keys.start, live.next))
                else:
                    outputs = RunOutputs(out_dir, config)
                for group in mapped.state.grouped(rest, rank):
                    outputs.write(group, mapped.done)
                files = outputs.commit()
            except BaseException:
                if outputs is not None:
                    outputs.abort()
                raise
            self.live = None
            # an earlier run's, in another format or engine: only what its summary says it wrote (this run wrote
            # timings and errors)
            for stale in (_OUTPUTS & written_by_forecast(out_dir)) - {p.name for p in files.values()}:
                (out_dir / stale).unlink(missing_ok=True)
        counts, run_id = outputs.counts, outputs.run_id
        short = counts["min-obs"]
        if short:
            notes.append(f"{short} series with fewer than --min-obs {config.min_obs} values got a simple forecast "
                         "instead of Prophet's (timings.csv says which; a lower --min-obs fits them)")
            reporter.note(notes[-1])
        grid = self.grid
        if grid is None:  # no block was read (interrupted at once)
            from .profile import TableGrid

            grid = TableGrid(None, np.zeros(0, dtype=bool))
        voted = max(self.grid_votes.items(), key=lambda kv: kv[1])[0] if self.grid_votes else grid.freq
        if voted != grid.freq:
            notes.append(f"the table's frequency was taken from its first {len(grid.on_grid)} series as "
                         f"{grid.freq}, but most of its series are {voted}: pass --freq {voted} if that is the "
                         "table's (or a larger --block-rows)")
            reporter.note(notes[-1])
        n_failed = counts["failed"]
        status = mapped.status
        # Skipped series were triaged out on purpose, and a failure served by the fallback still has a forecast:
        # neither counts against --max-failed-frac.
        if status == "ok" and n_failed > config.max_failed_frac * len(keys):
            status = "failed"
        to_db = None
        with clock.stage("write"):
            if config.to_db is not None and status == "interrupted":  # never half a night in the tables
                notes.append("interrupted: --to-db's tables were not written; --resume finishes the run and writes "
                             "them")
                reporter.note(notes[-1])
            elif config.to_db is not None:  # after the files: a database that fails leaves them written
                from .sinks import write_run

                forecasts = read_output_file(files["forecasts"], config.id_cols, key_types_of(keys, config.id_cols))
                runs = _concat(outputs.sink_rows, timings_frame([], config.id_cols).assign(
                    cutoff=np.array([], dtype="datetime64[ns]"))).assign(run_id=run_id)
                to_db = write_run(config.to_db, config.to_table, forecasts, runs, run_id)
        fields = {
            "series_ok": counts["ok"],
            "series_failed": n_failed,
            "series_fallback": counts["fallback"],
            "series_fallback_after_failure": counts["after-failure"],
            "series_below_min_obs": short,
            "series_skipped": counts["skipped"],
            "series_resumed": len(mapped.done),
            "run_id": run_id,
            "table_freq": grid.freq,
            "freq_given": config.model.freq is not None,
            "series_own_freq": self.own_freq,
            "key_types": key_types_of(keys, config.id_cols),
            "series_warm_started": self.warm_started if config.warm_start is not None else None,
            "verdicts": outputs.verdicts if config.triage is not None else None,
            "to_db": to_db,
        }
        return Written(status=status, fields=fields, files=files, tally=outputs.tally)


class RunOutputs:
    """A run's output files (forecasts, params, timings, errors) written a group of results at a time, with the
    counts the summary needs of what was written; committed (renamed into place) at the end, or aborted."""

    def __init__(self, out_dir: Path, config: ForecastConfig) -> None:
        self.config = config
        self.run_id = config.run_id_in(out_dir)
        self.bands = band_columns(config.model)
        ext = "parquet" if config.output_format == "parquet" else "csv"
        id_cols = config.id_cols
        self.writers = {"forecasts": TableWriter(out_dir / f"forecasts.{ext}",
                                                 forecast_frame([], id_cols, self.run_id, self.bands)),
                        "timings": TableWriter(out_dir / "timings.csv", timings_frame([], id_cols)),
                        "errors": TableWriter(out_dir / "errors.csv", errors_frame([], id_cols))}
        if config.model.engine != "prophet":  # what a later run can --warm-start from
            self.writers["params"] = TableWriter(out_dir / "params.parquet", params_frame([], id_cols))
        # what is held: counts (and the timings rows too, with --to-db)
        self.tally = Tally()
        self.sink_rows: list[pd.DataFrame] = []
        self.counts = dict.fromkeys(("ok", "fallback", "failed", "skipped", "min-obs", "after-failure"), 0)
        self.verdicts = dict.fromkeys(("fit", "fallback", "skip"), 0)

    def write(self, group: list[tuple[int, SeriesResult]], done: Mapping[int, Any]) -> None:
        """Write these (index, result) pairs, in this order; `done`: the indices an earlier try served."""
        config, results = self.config, [r for _, r in group]
        self.writers["forecasts"].write(forecast_frame(results, config.id_cols, self.run_id, self.bands))
        if "params" in self.writers:
            self.writers["params"].write(params_frame(results, config.id_cols))
        timings = timings_frame(results, config.id_cols)
        self.writers["timings"].write(timings)
        self.writers["errors"].write(errors_frame(results, config.id_cols))
        if config.to_db is not None:
            self.sink_rows.append(timings.assign(cutoff=np.array([r.cutoff for r in results],
                                                                 dtype="datetime64[ns]")))
        counts = self.counts
        for i, r in group:
            counts[r.status] += 1
            counts["min-obs"] += r.stage == "min-obs"
            counts["after-failure"] += r.status == "fallback" and r.stage not in SENT_STAGES
            if r.verdict in self.verdicts:
                self.verdicts[r.verdict] += 1
            # the throughput counts what this run served, not what a resume took over
            self.tally.add(r.key, r.fit_seconds, r.predict_seconds, r.cpu_seconds, i not in done)

    def commit(self) -> dict[str, Path]:
        return {name: w.commit() for name, w in self.writers.items()}

    def abort(self) -> None:
        for w in self.writers.values():
            w.abort()


class LiveOutputs:
    """The outputs written while the map runs, rather than all read back from the part files at the end: each
    result settled is held until every series before it is, then written in that order, `batch` series at a time.

    Why: reading every result back from the parts and writing the outputs after the map was the run's longest
    serial stretch (1.2 s of a 14 s run of 10,000 series on 2 cores; 5 s at the M5 scale), with the workers idle.
    Written during the map, that work shares the cores with the fits instead, and the parts are read back only
    for what is left at the end (an interrupted run's series after its first gap).

    What is held: the results settled ahead of the first unsettled series (the series of the chunks in flight),
    at most `limit` of them; past that (a series stuck in a long fit), or when a key column's type changes
    between integers and text, the live outputs stop and the end writes everything from the parts, as before.
    Only a table read in key order can be written this way (ForecastJob.blocks stops it otherwise).
    """

    # series a write takes: Parquet row groups of 14,000 forecast rows at a horizon of 28. Measured on 4,138 series
    # of 1,450 days: the main process peaked at 323 MB writing at the end, 347 MB with batches of 2,000, 330 MB
    # with batches of 500
    batch = 500
    limit = 20_000  # results held ahead of a gap, at most: about 60 MB, or some 40 s of a stalled series' run

    def __init__(self, outputs: RunOutputs) -> None:
        self.outputs = outputs
        self.next = 0  # the first index not yet written
        self._held: dict[int, SeriesResult] = {}
        self._ready: list[tuple[int, SeriesResult]] = []
        self._kinds: tuple | None = None  # whether each key column is text, as the first key written says
        self._on = True

    def add(self, index: int, result: SeriesResult) -> None:
        if not self._on:
            return
        self._held[index] = result
        while self.next in self._held:
            r = self._held.pop(self.next)
            kinds = tuple(isinstance(v, str) for v in r.key)
            if self._kinds is None:
                self._kinds = kinds
            elif kinds != self._kinds:  # the end makes the column text throughout (see _uniform_keys)
                self.stop()
                return
            self._ready.append((self.next, r))
            self.next += 1
        if len(self._ready) >= self.batch:
            self._write()
        elif len(self._held) > self.limit:
            self.stop()

    def usable(self, ok: bool) -> bool:
        """Whether what was written stands (`ok`: each key column kept its type to the end); then what is ready is
        written, and the rest comes from the parts."""
        if not (self._on and ok):
            self.stop()
            return False
        self._write()
        return True

    def _write(self) -> None:
        if self._ready:
            self.outputs.write(self._ready, {})
            self._ready = []

    def stop(self) -> None:
        """Write no more, and remove what was written: the end writes everything from the parts."""
        self._on = False
        self._held, self._ready = {}, []
        self.outputs.abort()


def _concat(frames: list[pd.DataFrame], empty: pd.DataFrame) -> pd.DataFrame:
    frames = [f for f in frames if len(f)]
    return pd.concat(frames, ignore_index=True) if frames else empty


def _sortable(key: tuple) -> tuple:
    """A key as the whole table's sort orders it: its values, integers before text where a column mixes them."""
    return tuple((isinstance(v, str), v if not isinstance(v, str) else v) for v in key)


def _compact(values: tuple) -> tuple[str, Any]:
    """One block's values of one key column, held compactly: texts as an Arrow string array, Python integers as
    an int64 array; anything else (mixed types, numpy scalars) as the values themselves."""
    import pyarrow as pa

    kinds = {type(v) for v in values}
    if kinds == {str}:
        return "text", pa.array(values, type=pa.string())
    if kinds == {int}:
        try:
            return "int", np.array(values, dtype=np.int64)
        except OverflowError:
            pass
    return "values", list(values)


def _column_values(kind: str, values: Any, rows: slice = slice(None)) -> list:
    """The values `_compact` holds (those of `rows`) as the Python values they were given as."""
    part = values[rows]
    return part.to_pylist() if kind == "text" else part.tolist() if kind == "int" else part


class SeriesKeys(Mapping):
    """Every series' key by its index (a run's indices have no gaps): the one record per series that a run by
    blocks keeps until its end. Indices below `start` are not in it (set aside: see ForecastJob.blocks).

    Held compactly, a block's column at a time (see `_compact`): about 10 bytes a key where a tuple and its text
    took 160, which on four times the M5 table (122,000 series) was some 15 MB the main process grew by with the
    table. A key is made again when asked for. Columns in `as_text` are given as text (see `_uniform_keys`).
    """

    def __init__(self, start: int = 0) -> None:
        self.start = start
        self.as_text: frozenset[int] = frozenset()
        self._starts: list[int] = []  # each block's first index
        self._columns: list[tuple[tuple[str, Any], ...]] = []  # each block's key columns, as `_compact` holds them
        self._n = 0

    def add_block(self, start: int, keys: Sequence[tuple]) -> None:
        """The keys of a block's series, the first of index `start`."""
        if start != self._n:  # the blocks' series are numbered on from the last: a gap is a bug
            raise RuntimeError(f"series {start} read after {self._n} series")
        if keys:
            self._starts.append(start)
            self._columns.append(tuple(_compact(column) for column in zip(*keys)))
            self._n += len(keys)

    def view(self, start: int, as_text: frozenset[int] | None = None) -> SeriesKeys:
        """The same keys from index `start` on (its columns in `as_text` given as text)."""
        other = SeriesKeys(start)
        other.as_text = self.as_text if as_text is None else as_text
        other._starts, other._columns, other._n = self._starts, self._columns, self._n
        return other

    def _key(self, values: Sequence[Any]) -> tuple:
        return tuple(str(v) if c in self.as_text else v for c, v in enumerate(values))

    def __getitem__(self, index: int) -> tuple:
        if not self.start <= index < self._n:
            raise KeyError(index)
        b = bisect.bisect_right(self._starts, index) - 1
        row = index - self._starts[b]
        return self._key([_column_values(kind, values, slice(row, row + 1))[0] for kind, values in self._columns[b]])

    def values(self) -> Iterator[tuple]:  # type: ignore[override]
        """Every key in index order, a block's at a time (faster than one by one)."""
        for first, columns in zip(self._starts, self._columns):
            rows = zip(*(_column_values(kind, values) for kind, values in columns))
            for i, values in enumerate(rows, first):
                if i >= self.start:
                    yield self._key(values)

    def mixed_columns(self) -> frozenset[int]:
        """The key columns that hold text in some series and not in others (from `start` on)."""
        text: set[int] = set()
        other: set[int] = set()
        for first, columns in zip(self._starts, self._columns):
            skip = max(self.start - first, 0)
            for c, (kind, values) in enumerate(columns):
                if skip >= len(values):
                    continue
                if kind == "values":
                    is_text = {isinstance(v, str) for v in values[skip:]}
                else:
                    is_text = {kind == "text"}
                if True in is_text:
                    text.add(c)
                if False in is_text:
                    other.add(c)
        return frozenset(text & other)

    def __contains__(self, index: object) -> bool:
        return isinstance(index, int) and self.start <= index < self._n

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.start, self._n))

    def __len__(self) -> int:
        return max(self._n - self.start, 0)


def _uniform_keys(keys: SeriesKeys) -> SeriesKeys:
    """Keys whose columns hold one type each: a column with integers in some blocks and text in others (a CSV whose
    later rows hold a code such as 00123) is text throughout, as a whole read makes it."""
    mixed = keys.mixed_columns()
    if not mixed:
        return keys
    return keys.view(keys.start, mixed)


def key_types_of(keys: Mapping, id_cols: Sequence[str]) -> dict:
    """summary.json's key_types of these keys: "int" for a column of integers, else "text"."""
    out = {}
    for c, name in enumerate(id_cols):
        ints = all(isinstance(k[c], (int, np.integer)) and not isinstance(k[c], (bool, np.bool_))
                   for k in keys.values())
        out[name] = "int" if keys and ints else "text"
    return out


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
