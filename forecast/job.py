"""The one job skeleton behind `forecast run` and `forecast backtest`: `run_job(job, source, reporter)`.

Written once here: the output directory and its lock, reading the input, the run's temporary root, SIGTERM taken
as Ctrl-C, the backend, the map with its part files (so `--resume` finishes an unfinished job), the interrupt,
the status, the summary's common fields and the start / failed / end events. What differs is a `Job`: what a
series' function is, what a part file holds, and what is written at the end (runner.ForecastJob,
backtest.BacktestJob).
"""

from __future__ import annotations

import dataclasses
import itertools
import platform
import shutil
import signal
import threading
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any, Callable, Iterator, Literal, Sequence

from . import __version__
from .backends import Backend, WorkerSetup, backend_class, open_backend
from .checkpoint import PartSchema, PartWriter, RunLock, RunState, make_manifest, manifest_difference, run_temp_dir
from .config import ForecastConfig, ModelOptions
from .core import Failed, MapInterrupted, effective_n_jobs, map_stream, plan_chunks, usable_cores
from .errors import (
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_SOME_FAILED,
    BackendLostError,
    InputError,
    OutputExistsError,
    RunStoppedError,
)
from .models import check_options, unknown_country, worker_init
from .outputs import default_out_dir, prepare_out_dir, write_json
from .progress import Reporter, SilentReporter
from .sources import Source, TableInput, inputs_read_once, open_source
from .timing import Clock, ClockStage, Tally, run_timing
from .types import SeriesData

JobKind = Literal["run", "backtest"]
Status = Literal["ok", "failed", "interrupted"]


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


@dataclass
class Loaded:
    """What a job read: the table, its series in key order, notes for the user, and the model options with
    what the read filled in (a --holidays-file's rows)."""

    table: Any
    series: list
    notes: list[str]
    model: ModelOptions
    start: int = 0  # the index of its first series in the whole table (a job reading by blocks: see Job.blocks)
    read: float = 1.0  # the share of the input read once this block was
    void_below: int = 0  # series before this index were read before the table proved unsorted: set aside


@dataclass
class Mapped:
    """What the map left: results by series index (`done` from an earlier try, `new` what the job keeps of this
    one's: see Job.kept), and how it ran."""

    status: Status  # "ok" or "interrupted"; the job's writing may make "ok" "failed"
    done: dict[int, Any]
    new: dict[int, Any]
    n_jobs: int
    chunks: int
    backend: dict
    series_total: int = 0  # series read (all of them, unless interrupted before the input's end)
    rows: int = 0  # rows read, after repeated rows were combined
    state: RunState | None = None  # the run directory's parts, which hold every result kept


@dataclass
class Written:
    """What a job wrote: its status, its summary fields, its files, and the timing figures of every series written
    (`tally.n` of them)."""

    status: Status
    fields: dict
    files: dict[str, Path]
    tally: Tally


class Job:
    """The parts of a job that differ between `run` and `backtest`; `run_job` calls them in order."""

    kind: JobKind = "run"
    streams: bool = False  # whether `blocks` reads the input a block of series at a time (the manifest then
    # names no series count, which is known only at the end)
    map_stage: ClockStage = "fit_predict"  # the clock's name for the map
    schema: PartSchema

    def __init__(self, config: ForecastConfig) -> None:
        self.config = config

    def check(self, source: Source) -> None:
        """Refuse a source this job cannot use, before anything is created."""

    def settings(self) -> dict:
        """The configuration as JSON-ready values: the manifest's and the summary's."""
        return self.config.to_dict()

    def other_files(self) -> dict:
        """The files besides the input that shape the results, by option (None when not given)."""
        return {"--holidays-file": self.config.holidays_file}

    def load(self, source: Source) -> Loaded:
        """Read the input (inside the clock's "read" stage)."""
        raise NotImplementedError

    def blocks(self, source: Source, spill_dir: Path, notify: Callable[[str], None]) -> Iterator[Loaded]:
        """The input as blocks of whole series, read as the map needs them (the first inside the clock's "read"
        stage); `spill_dir` is the run's temporary directory. A job that reads its input whole gives one."""
        yield self.load(source)

    def resumed(self, state: RunState, first: Loaded) -> dict[int, Any]:
        """The results an unfinished earlier try left in the part files, by series index (values may be None for
        a job that takes them from the parts at its end)."""
        return state.load(first.series)

    def prepare(self, loaded: Loaded, clock: Clock) -> list[int]:
        """The indices (in the block) of the series to map, before any a resumed job has done."""
        return list(range(len(loaded.series)))

    def served(self, loaded: Loaded) -> dict[int, Any]:
        """Results, by series index in the table, of the block's series that are settled without the map (a run's
        fallback for series it does not fit); they are kept in the part files like the map's."""
        return {}

    def collected(self, series: SeriesData, result: Any) -> Any:
        """A mapped series' result as it is kept (a run's fallback for a failed fit)."""
        return result

    def begin(self, state: RunState, done: dict[int, Any]) -> None:
        """The map is about to start in state.out_dir (`done`: what an earlier try left, see `resumed`)."""

    def kept(self, index: int, result: Any) -> Any:
        """What is held of a result once it is in a part file; None: nothing (a job reading by blocks, which reads
        the results back from the part files at its end, or writes them as they come)."""
        return result

    def abandon(self) -> None:
        """The job stopped with an error before its outputs were written: remove what it had begun of them."""

    def work(self, source: Source, loaded: Loaded, items: list, chunks: list[list[int]]
             ) -> tuple[Sequence, Callable]:
        """What the backend maps: the items (the series, or what a worker reads them by) and the function."""
        raise NotImplementedError

    def as_result(self, series: SeriesData, outcome: Any) -> Any:
        """The result of one mapped series: the function's, or one made from the backend's `Failed`."""
        raise NotImplementedError

    def finish(self, source: Source, loaded: Loaded, mapped: Mapped, out_dir: Path, clock: Clock,
               reporter: Reporter) -> Written:
        """Write the outputs into out_dir; return the status and the summary fields of this kind of job."""
        raise NotImplementedError

    def json_ready(self, summary: dict) -> dict:
        """The summary as written to summary.json."""
        return summary


def run_job(job: Job, source: TableInput, reporter: Reporter | None = None) -> RunResult:
    """Run a job on one input into config.out_dir (see the module docstring).

    Args:
        job: what to run (its config is the run's).
        source: the input: a path, a DataFrame, an Arrow table or a Source (see sources.open_source).
        reporter: told progress, notes and events; None tells nothing.

    Returns:
        A RunResult; its exit_code is what a CLI should exit with.

    Raises:
        InputError, ConfigError: before anything is written.
        RunLockedError: another job is writing into the output directory.
        BackendError: when workers cannot start.
        RunStoppedError: the machine or the cluster failed midway; finished series are kept for --resume.
    """
    reporter = reporter if reporter is not None else SilentReporter()
    config = job.config
    source = open_source(source, config.query, config.db_table)
    clock = Clock()
    out_dir = Path(config.out_dir) if config.out_dir is not None else default_out_dir()
    job.check(source)
    with RunLock(out_dir), run_temp_root() as tmp_root, ExitStack() as early, inputs_read_once():
        finished = prepare_out_dir(out_dir, config.overwrite, config.resume)
        check_options(config.model)
        setup = worker_setup(config.model, tmp_root, country_per_series=config.holidays_col is not None)
        # more workers than cores: how many is known once the chunks are (a typo such as 4000 forks no 4000)
        backend = None if above_cores(config) else open_backend(config, setup, reporter.note)
        if backend is not None and backend.starts_in_background:  # local workers start (imports: about a
            early.enter_context(backend)  # second) while the input is read
        heard: list[str] = []  # what reading says as it goes (a table not sorted by key): the summary's notes too

        def notify(message: str) -> None:
            heard.append(message)
            reporter.note(message)

        with clock.stage("read"):
            blocks = job.blocks(source, Path(tmp_root) / "spill", notify)
            loaded = next(blocks)
            check_countries(loaded.series, config, source.label)
            manifest = make_manifest(source, job.settings(), None if job.streams else len(loaded.series),
                                     job.other_files())
        if finished is not None:  # --resume of a job that had finished: done, if it is the same job
            return _already_finished(out_dir, finished, manifest, reporter)
        state = RunState(out_dir, job.schema)
        state.begin(manifest, config.resume, config.overwrite)
        try:
            for note in loaded.notes:
                reporter.note(note)
            heard.extend(loaded.notes)
            loaded.notes = heard
            done = job.resumed(state, loaded) if config.resume else {}
            job.begin(state, done)
            for part in state.damaged:
                reporter.note(f"{part}: damaged, cannot be read; its series are fitted again")
            if backend is None:
                n_jobs = capped_n_jobs(config, [len(s.ds) for s in loaded.series], reporter.note)
                backend = open_backend(dataclasses.replace(config, n_jobs=n_jobs), setup, reporter.note)
            mapped = _map(job, source, loaded, blocks, state, done, backend, out_dir, clock, reporter)
            return _write(job, source, loaded, mapped, state, clock, reporter)
        except BaseException as e:
            job.abandon()
            kept = len(state.part_files())
            # nothing computed (e.g. no workers), or bad input in a later block (a fixed input is another run):
            # leave the directory as it was
            if not kept or isinstance(e, InputError):
                state.clear()
            if isinstance(e, (OSError, BackendLostError)):  # the machine or the cluster failed, not the job
                raise RunStoppedError(_stopped_message(e, kept, state)) from e
            raise


def _map(job: Job, source: Source, first: Loaded, rest: Iterator[Loaded], state: RunState, done: dict,
         backend: Backend, out_dir: Path, clock: Clock, reporter: Reporter) -> Mapped:
    """Map the job's function over its series, block by block as the backend asks for work (the next block is
    read when the last one's chunks are all out), checkpointing results in part files as they finish.

    What is held: the series in flight, and what the job keeps of each result (`Job.kept`). The notes of every
    block are added to first.notes.
    """
    config = job.config
    n_jobs = effective_n_jobs(config.n_jobs)
    backend_info = {"name": backend.name, "workers": 0, "threads": 0}
    new: dict[int, Any] = {}
    in_flight: dict[int, SeriesData] = {}  # series index -> the series, until its result is kept
    writer = PartWriter(state)
    counts = {"series": 0, "rows": 0, "chunks": 0, "finished": 0}
    read: list[tuple[int, int, int]] = []  # (first series, series, rows) of each block read
    reading = {"share": 0.0, "ended": False}
    status: Status = "ok"
    notes = first.notes

    def total() -> int:  # the series of the whole table: known once read, estimated from the share read before
        known = counts["series"]
        if reading["ended"] or reading["share"] >= 1.0:
            return known
        return max(known, round(known / max(reading["share"], 1e-9)))

    def keep(index: int, result: Any) -> None:
        held = job.kept(index, result)
        if held is not None:  # a job reading by blocks holds nothing per series here
            new[index] = held
        counts["finished"] += 1
        reporter.progress(len(done) + counts["finished"], max(total(), len(done) + counts["finished"]))

    def record(index: int, outcome: Any, worker: str) -> None:
        series = in_flight.pop(index)
        result = job.as_result(series, outcome)
        if not isinstance(outcome, Failed):
            result.worker = worker
        if result.status != "ok":
            reporter.event("failed", {"series": key_fields(result.key, config.id_cols), "stage": result.stage,
                                      "reason": result.error})
        result = job.collected(series, result)
        writer.add(index, result)
        keep(index, result)

    def chunks_of(loaded: Loaded, is_first: bool) -> Iterator[list]:
        if not is_first:
            check_countries(loaded.series, config, source.label)
            for note in loaded.notes:
                if note not in notes:
                    notes.append(note)
                    reporter.note(note)
        read.append((loaded.start, len(loaded.series), len(loaded.table)))
        if loaded.void_below:  # read again, partitioned: what was read before does not count
            read[:] = [(start, n, rows) for start, n, rows in read if start >= loaded.void_below]
        counts["series"] = sum(n for _, n, _ in read)
        counts["rows"] = sum(rows for _, _, rows in read)
        reading["share"] = loaded.read
        local = job.prepare(loaded, clock)
        served = {i: r for i, r in job.served(loaded).items() if i not in done}
        if served:
            state.write_part(served)
            for i, r in served.items():
                keep(i, r)
        mapped = [i for i in local if loaded.start + i not in done]
        if not mapped:
            return
        items = [loaded.series[i] for i in mapped]
        chunks = plan_chunks([len(s.ds) for s in items], n_jobs, config.chunks_per_job, config.chunk_rows)
        work, _ = job.work(source, loaded, items, chunks)
        for chunk in chunks:
            indices = [loaded.start + mapped[k] for k in chunk]
            for k, i in zip(chunk, indices):
                in_flight[i] = items[k]
            writer.expect(indices)
            counts["chunks"] += 1
            yield [(i, work[k]) for k, i in zip(chunk, indices)]

    def feed() -> Iterator[list]:
        yield from chunks_of(first, True)
        while True:
            with clock.stage("read"):  # inside the map's stage: a block is read while the workers fit the last
                loaded = next(rest, None)
            if loaded is None:
                break
            yield from chunks_of(loaded, False)
        reading["ended"] = True

    def start(n_jobs: int) -> None:  # once the workers are there, so a failure to start them is the only line
        reporter.event("start", {"input": source.label, "out": str(out_dir), "series_total": total(),
                                 "series_resumed": len(done), "n_jobs": n_jobs,
                                 **({"series_total_estimated": True} if job.streams and total() != counts["series"]
                                    else {})})

    _, func = job.work(source, first, [], [])
    with clock.stage(job.map_stage), _sigterm_as_interrupt():
        try:
            # the interrupt is caught outside the backend's block, so the backend sees it and stops its
            # workers at once instead of waiting for their chunks (workers started early are the same ones)
            with backend:
                n_jobs = backend.n_jobs
                backend_info = backend.info()
                chunks = feed()
                waiting = next(chunks, None)  # the first block's work planned (and any series served) first
                start(n_jobs)
                if waiting is not None:
                    map_stream(func, itertools.chain([waiting], chunks), backend, record)
        except (MapInterrupted, KeyboardInterrupt):
            status = "interrupted"
        finally:
            writer.flush()
    return Mapped(status=status, done=done, new=new, n_jobs=n_jobs, chunks=counts["chunks"],
                  backend=backend_info, series_total=counts["series"], rows=counts["rows"], state=state)


def _write(job: Job, source: Source, loaded: Loaded, mapped: Mapped, state: RunState, clock: Clock,
           reporter: Reporter) -> RunResult:
    """The job's outputs, then the summary around its fields; the parts go once the outputs hold everything."""
    config = job.config
    out_dir = state.out_dir
    written = job.finish(source, loaded, mapped, out_dir, clock, reporter)
    summary = {
        **run_summary(job.kind, written.status, source.label, source.record(), mapped.rows, mapped.series_total,
                      written.tally.n, written.fields, usable_cores(), mapped.n_jobs, mapped.backend, mapped.chunks,
                      run_timing(clock, written.tally, mapped.n_jobs, config.id_cols), loaded.notes,
                      job.settings(), written.files),
        "manifest": state.manifest(),  # what a --resume of this finished job checks it against
    }
    files = {**written.files, "summary": write_json(job.json_ready(summary), out_dir / "summary.json")}
    if written.status != "interrupted":
        state.clear()  # finished: the outputs hold everything the parts did
    reporter.event("end", end_event(summary))
    return RunResult(out_dir=out_dir, summary=summary, files=files)


def run_summary(kind: JobKind, status: str, label: str, record: dict, rows: int, series_total: int,
                series_done: int, fields: dict, cores: int, n_jobs: int, backend: dict, chunks: int, timing: dict,
                notes: list[str], config: dict, files: dict[str, Path], versions: dict[str, str] | None = None
                ) -> dict:
    """The summary.json fields of every run, in their order, around a job's own `fields`: a local job's (`_write`)
    and a Spark run's (forecast/spark.py), which has no part files and so no manifest. `versions`: more than
    forecast's, Prophet's and Python's (pyspark's)."""
    return {
        # a run's summary has never named its command: readers (report.py) take one without it for a run's
        **({"command": kind} if kind != "run" else {}),
        "status": status,
        "input": label,
        "source": record,  # what plot and report reopen
        "rows": rows,
        "series_total": series_total,
        "series_done": series_done,
        **fields,
        "cores": cores,
        "n_jobs": n_jobs,
        "backend": backend,
        "chunks": chunks,
        **timing,
        "notes": notes,
        "versions": {**_versions(), **(versions or {})},
        "config": config,
        "files": {name: p.name for name, p in files.items()},
    }


def end_event(summary: dict) -> dict:
    """The "end" event's fields, from the summary."""
    return {"status": summary["status"], "series_total": summary["series_total"],
            "series_done": summary["series_done"], "series_ok": summary["series_ok"],
            "series_failed": summary["series_failed"], "wall_seconds": round(summary["wall_seconds"], 3)}


def key_fields(key: tuple, id_cols: Sequence[str]) -> dict:
    """A series' key as {column: text}, for a log record."""
    return {c: str(v) for c, v in zip(id_cols, key)}


def worker_setup(model: ModelOptions, tmp_root: str, country_per_series: bool = False) -> WorkerSetup:
    """What every worker of a run or a backtest runs first (the models' `worker_init`), with the run's temp root
    for workers of this machine; `country_per_series`: the series take their countries' holidays (--holidays-col)."""
    func, args = worker_init(model, countries=country_per_series)
    return WorkerSetup(func, args, tmp_root)


def check_countries(series: Sequence[SeriesData], config: ForecastConfig, label: str) -> None:
    """Refuse a --holidays-col value that is no country the holidays package knows, naming the first series with
    it, before any worker starts.

    Raises:
        InputError: one line naming the input, the column, the value, the series and the fix.
    """
    if config.holidays_col is None:
        return
    first: dict[str, SeriesData] = {}
    for s in series:
        if s.country:
            first.setdefault(s.country, s)
    for code, s in first.items():
        hint = unknown_country(code)
        if hint is not None:
            key = ", ".join(f"{c}={v}" for c, v in zip(config.id_cols, s.key))
            raise InputError(f"{label}: column {config.holidays_col!r} (--holidays-col) holds {code!r} for series "
                             f"{key}, not a country the holidays package knows; {hint}")


@contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """A scheduler stops jobs with SIGTERM: treat it like Ctrl-C so finished work is written."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextmanager
def run_temp_root() -> Iterator[str]:
    """The run's private temp root (workers make theirs inside), removed at the end, whatever happens."""
    tmp_root = run_temp_dir()
    try:
        yield tmp_root
    finally:
        shutil.rmtree(tmp_root, ignore_errors=True)


def above_cores(config: ForecastConfig) -> bool:
    """Whether --n-jobs asks for more local workers than there are usable cores (see `capped_n_jobs`)."""
    return backend_class(config.backend).uses_local_cores and effective_n_jobs(config.n_jobs) > usable_cores()


def capped_n_jobs(config: ForecastConfig, weights: list[float], notify: Callable[[str], None] | None) -> int:
    """--n-jobs above the usable cores cut to the chunks items of these weights make (a job file's typo of 4000
    forks no 4000 processes), and said."""
    asked = effective_n_jobs(config.n_jobs)
    n_jobs = max(1, min(asked, len(plan_chunks(weights, asked, config.chunks_per_job, config.chunk_rows))))
    if notify is not None:
        notify(f"--n-jobs {config.n_jobs} is more than the {usable_cores()} usable core(s); running {n_jobs} "
               f"worker process(es){', one per chunk of work' if n_jobs < asked else ''}")
    return n_jobs


def _already_finished(out_dir: Path, summary: dict, manifest: dict, reporter: Reporter) -> RunResult:
    """The result of the finished job in out_dir when it ran this input with these settings; else an error."""
    diff = manifest_difference(summary.get("manifest") or {}, manifest)
    if diff is not None:
        raise OutputExistsError(f"{out_dir}: holds a finished run, and {diff}; pass --overwrite to start again or "
                                "choose another --out")
    reporter.note(f"{out_dir} holds this run, finished: nothing to resume")
    files = {name: out_dir / file for name, file in summary.get("files", {}).items()}
    return RunResult(out_dir=out_dir, summary=summary, files={**files, "summary": out_dir / "summary.json"})


def _stopped_message(e: BaseException, kept: int, state: RunState) -> str:
    """The one line of a job stopped by its machine or cluster: what failed, what is kept, how to go on."""
    if isinstance(e, OSError):
        what = f"{e.filename + ': ' if e.filename else ''}{e.strerror or e}"
        fix = "free space (or fix the cause) and run again with --resume"
    else:
        what, fix = str(e), "run again with --resume once the cluster is back"
    if kept:
        return (f"{what}; the run stopped, its finished series are kept in {state.parts_dir} ({kept} part file(s)): "
                f"{fix}")
    return f"{what}; the run stopped before any series was kept: {fix}"


def _versions() -> dict[str, str]:
    from importlib.metadata import version

    return {"forecast": __version__, "prophet": version("prophet"), "python": platform.python_version()}
