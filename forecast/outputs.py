"""Everything a run writes, and reading a finished run back: the output directory, the tables (forecasts,
timings, errors, params), summary.json, all written atomically; and a run directory read again for plot and report.

Reading the input lives with the sources (forecast/sources/).
"""

from __future__ import annotations

import glob
import json
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np
import pandas as pd

from .errors import InputError, OutputExistsError
from .sources.base import one_line
from .types import PARAM_ARRAYS, PARAM_FLOATS, SENT_STAGES, SeriesResult

if TYPE_CHECKING:
    from .sources.table import KeyType


def default_out_dir(root: Path = Path("outputs")) -> Path:
    """outputs/<UTC timestamp>, e.g. outputs/20261126T130501Z."""
    stamp = pd.Timestamp.now(tz="UTC").strftime("%Y%m%dT%H%M%SZ")
    return root / stamp


def prepare_out_dir(out_dir: Path, overwrite: bool, resume: bool = False) -> dict | None:
    """Check that a run may write into `out_dir`; nothing is created here.

    Returns:
        With `resume`, the summary of the finished run `out_dir` holds (the caller checks that it is the same
        job: a scheduler's retry of a run that had finished); else None.

    Raises:
        OutputExistsError: when it holds a finished run (a summary.json whose status is not "interrupted")
            and neither overwrite nor resume is on.
    """
    if out_dir.exists() and not out_dir.is_dir():
        raise OutputExistsError(f"{out_dir}: exists and is not a directory; choose another --out")
    summary = out_dir / "summary.json"
    if not overwrite and not summary.exists() and not (out_dir / "parts" / "manifest.json").exists():
        foreign = sorted(p.name for p in out_dir.iterdir() if not _ours(p)) if out_dir.is_dir() else []
        if foreign:  # a run writes forecasts.csv, params.parquet...: never over files it did not write
            shown = ", ".join(foreign[:5]) + (", ..." if len(foreign) > 5 else "")
            raise OutputExistsError(f"{out_dir}: holds files but no forecast run ({shown}); choose a new or empty "
                                    "--out, or pass --overwrite to write into it")
    if summary.exists() and not overwrite:
        try:
            finished = json.loads(summary.read_text())
        except (OSError, ValueError):
            finished = {}
        if not isinstance(finished, dict):
            finished = {}
        if finished.get("status") != "interrupted":
            if resume and finished:
                return finished
            raise OutputExistsError(
                f"{out_dir}: holds a finished run (summary.json); pass --overwrite or choose another --out"
            )
    return None


# The files a run keeps in its parts directory while it works: its manifest, its parts, a temporary file of
# `write_atomic` (a write cut short).
_RUN_FILE = re.compile(r"manifest\.json|part-\d+\.parquet|\..+\.tmp")


def is_run_file(name: str) -> bool:
    """Whether a file of a run's parts directory is one a run writes there (the only ones a run removes)."""
    return _RUN_FILE.fullmatch(name) is not None


def _ours(path: Path) -> bool:
    """Whether an entry of an output directory is one a run keeps there while it works: its lock, a temporary
    file of `write_atomic`, a parts directory holding nothing but a run's files."""
    if path.name == "parts" and path.is_dir():
        return all(is_run_file(p.name) for p in path.iterdir())
    return path.name == ".lock" or (path.name.startswith(".") and path.name.endswith(".tmp"))


def written_by_forecast(out_dir: Path) -> set[str]:
    """The names of the files the run in `out_dir` wrote, as its summary.json lists them (none without one): the
    only files a later run may remove."""
    try:
        files = json.loads((Path(out_dir) / "summary.json").read_text()).get("files", {})
        return {name for name in files.values() if isinstance(name, str) and name == Path(name).name}
    except (OSError, ValueError, AttributeError):
        return set()


def _file_mode() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def _temp_beside(path: Path) -> str:
    """A new empty temporary file beside `path` (its directory made), named .NAME.XXXXXXXX.tmp: what a write of
    `path` goes into before its rename (see `remove_leftovers`)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    return tmp


def remove_leftovers(path: Path) -> None:
    """Remove the temporary files that writes of `path` left beside it when their process was killed (only with
    the output directory's lock held: another run's writes are not leftovers)."""
    for tmp in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        tmp.unlink(missing_ok=True)


def write_atomic(path: Path, write: Callable[[str], None]) -> Path:
    """Call write(tmp_path) for a temporary file beside `path`, then rename it into place.

    A reader never sees a half-written file, and a crash leaves the previous file (if any) as it was.
    """
    tmp = _temp_beside(path)
    try:
        write(tmp)
        os.chmod(tmp, _file_mode())  # mkstemp makes 0600; outputs are ordinary files for the team to read
        os.replace(tmp, path)
    except BaseException as e:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(e, OSError) and (e.filename is None or e.filename == tmp):  # name the file, not its tmp
            raise OSError(e.errno, e.strerror or one_line(e), str(path)) from e
        raise
    return path


def _key_frame(id_cols: Sequence[str], keys: list[tuple], repeats: Sequence[int] | None = None) -> pd.DataFrame:
    frame = pd.DataFrame.from_records(keys, columns=list(id_cols)) if keys else pd.DataFrame(columns=list(id_cols))
    if repeats is not None:
        frame = frame.loc[frame.index.repeat(repeats)].reset_index(drop=True)
    return frame


def forecast_frame(results: Sequence[SeriesResult], id_cols: Sequence[str], run_id: str = "",
                   bands: Sequence[str] = ()) -> pd.DataFrame:
    """The combined forecast table: key columns, ds, yhat, yhat_lower, yhat_upper, the `bands` columns (--level and
    --quantile: levels.band_columns), model (prophet or fallback:KIND), cutoff (each series' last timestamp in the
    input), run_id.

    Series forecast by Prophet ("ok") or by a fallback ("fallback"); failed and skipped series have no rows. A
    series whose model gave no such band has it empty (NaN).
    """
    ok = [r for r in results if r.status in ("ok", "fallback")]
    frame = _key_frame(id_cols, [r.key for r in ok], [len(r.ds) for r in ok])

    def cat(name: str, dtype: str) -> np.ndarray:
        parts = [getattr(r, name) for r in ok]
        return np.concatenate(parts).astype(dtype) if parts else np.array([], dtype=dtype)

    frame["ds"] = cat("ds", "datetime64[ns]")
    for name in ("yhat", "yhat_lower", "yhat_upper"):
        frame[name] = cat(name, "float64")
    for name in bands:
        parts = [np.asarray(r.bands.get(name, np.full(len(r.ds), np.nan)), dtype="float64") for r in ok]
        frame[name] = np.concatenate(parts) if parts else np.array([], dtype="float64")
    frame["model"] = np.repeat(np.array([r.model for r in ok], dtype=object), [len(r.ds) for r in ok])
    cutoffs = np.array([r.cutoff if r.cutoff is not None else np.datetime64("NaT") for r in ok], dtype="datetime64[ns]")
    frame["cutoff"] = np.repeat(cutoffs, [len(r.ds) for r in ok])
    frame["run_id"] = np.full(len(frame), run_id, dtype=object)
    return frame


def timings_frame(results: Sequence[SeriesResult], id_cols: Sequence[str]) -> pd.DataFrame:
    """One row per series: key columns, n_obs, status, fit/predict/cpu seconds, worker, error, model, verdict, engine.

    status is ok (Prophet), fallback (a simple forecast), failed (no forecast) or skipped (by triage); verdict is
    empty unless the run triaged its series; engine is the engine that fitted the series (prophet, stan, fast),
    empty when none did.
    """
    frame = _key_frame(id_cols, [r.key for r in results])
    frame["n_obs"] = np.array([r.n_obs for r in results], dtype="int64")
    frame["status"] = [r.status for r in results]
    frame["fit_seconds"] = np.array([r.fit_seconds for r in results], dtype=float)
    frame["predict_seconds"] = np.array([r.predict_seconds for r in results], dtype=float)
    frame["cpu_seconds"] = np.array([r.cpu_seconds for r in results], dtype=float)
    frame["worker"] = [r.worker for r in results]
    frame["error"] = [r.error for r in results]
    frame["model"] = [r.model for r in results]
    frame["verdict"] = [r.verdict for r in results]
    frame["engine"] = [r.engine for r in results]
    return frame


def errors_frame(results: Sequence[SeriesResult], id_cols: Sequence[str]) -> pd.DataFrame:
    """The series Prophet did not serve: key columns, stage, reason. Has its header even when none.

    Failed series (with or without a fallback forecast) and series skipped by triage (stage "triage"); a series
    that triage or --min-obs sent straight to the fallback did not fail and is not listed (timings.csv has its
    reason).
    """
    failed = [r for r in results if r.status != "ok" and not (r.status == "fallback" and r.stage in SENT_STAGES)]
    frame = _key_frame(id_cols, [r.key for r in failed])
    frame["stage"] = [r.stage for r in failed]
    frame["reason"] = [r.error for r in failed]
    return frame


# A cell a spreadsheet would read as a formula (or whose leading tab/CR it would strip to reach one).
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def csv_safe(value: Any) -> Any:
    """A text cell that a spreadsheet would run as a formula, prefixed with ' so it shows as text.

    Only text is changed, and only when it starts with =, +, -, @, a tab or a carriage return and is not a
    number: a series key "-5" or an error text "-1.5" stays as it is, "=HYPERLINK(...)" becomes "'=HYPERLINK(...)".
    Text that already looks escaped ("'=x") gets one more quote, so `csv_unsafe` gives back the exact value.
    """
    if not isinstance(value, str):
        return value
    body = value.lstrip("'")
    if body.startswith(_FORMULA_START) and not _is_number(body):
        return "'" + value
    return value


def csv_unsafe(value: Any) -> Any:
    """The value `csv_safe` was given, from what it returned (for reading our own CSV outputs back)."""
    if isinstance(value, str) and value.startswith("'") and csv_safe(value[1:]) == value:
        return value[1:]
    return value


def _csv_safe_frame(frame: pd.DataFrame) -> pd.DataFrame:
    kept = (pd.api.types.is_numeric_dtype, pd.api.types.is_datetime64_any_dtype, pd.api.types.is_bool_dtype)
    frame = frame.copy()
    for c in frame.columns:
        if not any(is_kind(frame[c].dtype) for is_kind in kept):
            # keys repeat on every forecast row: check each distinct value once
            changed = {v: csv_safe(v) for v in pd.unique(frame[c].dropna().astype(object))}
            changed = {v: safe for v, safe in changed.items() if safe != v}
            if changed:
                values = frame[c].astype(object)
                hit = values.isin(list(changed))
                frame[c] = values.where(~hit, values.map(changed))
    frame.columns = [csv_safe(str(c)) for c in frame.columns]
    return frame


def params_frame(results: Sequence[SeriesResult], id_cols: Sequence[str]) -> pd.DataFrame:
    """The stan/fast engines' fitted parameters, one row per series they fitted: key columns, engine, y_scale, k, m,
    sigma_obs (floats, on Prophet's scaled data) and delta, beta (lists). What `--warm-start` reads."""
    fitted = [r for r in results if r.params is not None]
    frame = _key_frame(id_cols, [r.key for r in fitted])
    frame["engine"] = [r.engine for r in fitted]
    for name in PARAM_FLOATS:
        frame[name] = np.array([r.params[name] for r in fitted], dtype=float)
    for name in PARAM_ARRAYS:
        frame[name] = [r.params[name] for r in fitted]
    return frame


def read_params(run_dir: Path, id_cols: Sequence[str]) -> dict[tuple, dict]:
    """A previous run's parameters (its params.parquet) by series key (as strings), for --warm-start.

    Raises:
        InputError: when the directory has no params.parquet or it lacks this run's key columns.
    """
    path = Path(run_dir) / "params.parquet"
    if not path.is_file():
        raise InputError(f"--warm-start {run_dir}: no params.parquet there; give the output directory of an earlier "
                         "run with --engine stan or fast")
    try:
        frame = pd.read_parquet(path)
    except Exception as e:
        raise InputError(f"{path}: cannot read it: {one_line(e)}") from None
    missing = [c for c in id_cols if c not in frame.columns]
    if missing:
        raise InputError(f"{path}: key column {missing[0]!r} not found; the earlier run had other --id-col columns")
    try:
        keys = zip(*(frame[c].astype(str) for c in id_cols))
        records = frame[[*PARAM_FLOATS, *PARAM_ARRAYS]].to_dict("records")
        return {tuple(k): {**r, **{name: list(r[name]) for name in PARAM_ARRAYS}} for k, r in zip(keys, records)}
    except (KeyError, TypeError, ValueError) as e:
        raise InputError(f"{path}: not the parameters of a forecast run ({one_line(e)}); give the output directory "
                         "of an earlier run with --engine stan or fast") from None


def _arrow_table(frame: pd.DataFrame) -> Any:
    """A frame as the Arrow table a Parquet output holds: Parquet that Spark, DuckDB and any Arrow reader take as it
    is, with plain Arrow types and no pandas metadata (nothing needs it to read the file back); `TableWriter`
    writes its timestamps in microseconds (Spark refuses nanoseconds)."""
    import pyarrow as pa

    table = pa.Table.from_pandas(frame, preserve_index=False).replace_schema_metadata(None)
    # pandas' text columns arrive as large_string: plain string is the type every reader knows
    return table.cast(pa.schema([pa.field(f.name, pa.string()) if pa.types.is_large_string(f.type) else f
                                 for f in table.schema]))


class TableWriter:
    """One Parquet or CSV file (by extension) written a frame at a time, as `write_table` writes one frame: into a
    temporary file beside it, renamed into place by `commit` (so a reader never sees half of it), removed by
    `abort`. What a run writes as its results come, holding one batch at a time.

    Args:
        path: the file.
        empty: the frame written when no other was (its columns make the header).
    """

    def __init__(self, path: Path, empty: pd.DataFrame) -> None:
        self.path = Path(path)
        self._empty = empty
        self._tmp = _temp_beside(self.path)
        self._parquet: Any = None
        self._schema: Any = None
        self._written = False

    def write(self, frame: pd.DataFrame) -> None:
        if len(frame) == 0:  # its columns' types may be unknown (an empty column is Arrow's null type)
            return
        try:
            self._put(frame)
        except OSError as e:  # a full disk, a file size limit: named by the file, not its temporary name
            raise OSError(e.errno, e.strerror or one_line(e), str(self.path)) from e

    def _put(self, frame: pd.DataFrame) -> None:
        if self.path.suffix == ".parquet":
            import pyarrow.parquet as pq

            table = _arrow_table(frame)
            if self._parquet is None:
                self._schema = table.schema
                self._parquet = pq.ParquetWriter(self._tmp, table.schema, coerce_timestamps="us",
                                                 allow_truncated_timestamps=True)
            else:
                table = table.cast(self._schema)
            self._parquet.write_table(table)
        else:
            _csv_safe_frame(frame).to_csv(self._tmp, mode="a" if self._written else "w", header=not self._written,
                                          index=False)
        self._written = True

    def commit(self) -> Path:
        """The file in place, holding every frame written (the empty one when none was)."""
        try:
            if not self._written:
                self._put(self._empty)
            if self._parquet is not None:
                self._parquet.close()
            os.chmod(self._tmp, _file_mode())
            os.replace(self._tmp, self.path)
        except BaseException as e:
            self.abort()
            if isinstance(e, OSError) and (e.filename is None or e.filename == self._tmp):
                raise OSError(e.errno, e.strerror or one_line(e), str(self.path)) from e
            raise
        return self.path

    def abort(self) -> None:
        """Remove the temporary file; the file at `path` (an earlier run's) stays as it was."""
        if self._parquet is not None:
            try:
                self._parquet.close()
            except Exception:
                pass
        if os.path.exists(self._tmp):
            os.unlink(self._tmp)


def write_table(frame: pd.DataFrame, path: Path) -> Path:
    """Write a frame as Parquet or CSV (by extension), atomically: a `TableWriter` given one frame.

    CSV text cells are made safe for spreadsheets (see `csv_safe`); Parquet keeps the values as they are (times
    to the microsecond, see `_arrow_table`).
    """
    writer = TableWriter(path, frame)
    try:
        writer.write(frame)
        return writer.commit()
    except BaseException:
        writer.abort()
        raise


def write_json(data: dict, path: Path) -> Path:
    """Write a dict as indented JSON, atomically."""

    def write(tmp: str) -> None:
        with open(tmp, "w") as f:
            json.dump(data, f, indent=2, default=str)
            f.write("\n")

    return write_atomic(path, write)


# ---------------------------------------------------------------------------------------------------------------
# reading a finished run back (plot, report)

@dataclass
class RunDir:
    """A finished run or backtest directory, read back: its summary and whichever tables it holds.

    Key columns are integers in every table where the run's were (summary.json's key_types), else text (as
    `key_label` shows them).
    """

    path: Path
    summary: dict
    id_cols: list[str]
    timings: pd.DataFrame | None = None
    errors: pd.DataFrame | None = None
    forecasts: pd.DataFrame | None = None  # a run's forecasts.parquet / .csv
    backtest: pd.DataFrame | None = None  # a backtest's backtest.parquet
    metrics: pd.DataFrame | None = None  # a backtest's metrics.csv

    @property
    def is_backtest(self) -> bool:
        return self.metrics is not None

    @property
    def tested_model(self) -> str:
        """A backtest's model under test, as metrics.csv names it: the first of summary["overall"] (in the order
        of --model), prophet for a backtest written before models could be chosen."""
        return next(iter(self.summary.get("overall") or {}), "prophet")


def key_label(key: Sequence[Any]) -> str:
    """How a series key is shown and given to --series: its values joined by " / "."""
    return " / ".join(str(v) for v in key)


def key_title(id_cols: Sequence[str], key: Sequence[Any]) -> str:
    """A series key as a title shows it: each value after its column's name (`store 4, dept 99`)."""
    return ", ".join(f"{c} {v}" for c, v in zip(id_cols, key))


def model_label(model: Any, engine: Any = "") -> str:
    """A model as tables and legends name it: Prophet's with the engine that fitted it (`prophet (fast)`,
    `prophet:reduced (fast)`), a fallback as its kind (`fallback:naive`)."""
    model = "" if model is None or model != model else str(model)
    engine = "" if engine is None or engine != engine else str(engine)
    if model.startswith("prophet") and engine:
        return f"{model} ({engine})"
    return model


_DIGITS = re.compile(r"(\d+)")


def natural_key(key: Sequence[Any]) -> tuple:
    """A sort key that orders series keys as a person does: numbers by value (1, 2, 10, not 1, 10, 2), also
    inside text (S2 before S10), then text."""
    parts = []
    for v in key:
        if isinstance(v, (int, np.integer)) and not isinstance(v, bool):
            parts.append(((0, int(v)),))
        else:
            parts.append(tuple((0, int(t)) if t.isdigit() else (1, t) for t in _DIGITS.split(str(v)) if t))
    return tuple(parts)


def _read_output(path: Path, id_cols: Sequence[str], types: dict[str, KeyType]) -> pd.DataFrame | None:
    """One output table of a run read back, its key columns as the run had them; None when it is not there.

    Raises:
        InputError: one line when it cannot be read (truncated, damaged, not what a run writes).
    """
    if not path.exists():
        return None
    try:
        return read_output_file(path, id_cols, types)
    except Exception as e:
        raise InputError(f"{path}: cannot read it back, it is damaged or was not written by forecast "
                         f"({one_line(e)}); run again with --overwrite to rewrite it") from None


def _key_as(column: pd.Series, kind: KeyType) -> pd.Series:
    """A key column as the run had it: integers for "int", else text."""
    if kind == "int":
        return pd.to_numeric(column.astype(str)).astype("int64")
    return column.astype(str)


def read_output_file(path: Path, id_cols: Sequence[str], types: dict[str, KeyType]) -> pd.DataFrame:
    if path.suffix == ".parquet":
        frame = pd.read_parquet(path)
    else:
        # a key such as "NA" or "null" is a key, not a missing value: only the other columns' blanks are missing
        safe_ids = [csv_safe(c) for c in id_cols]  # headers are escaped as cells are
        header = pd.read_csv(path, nrows=0).columns
        frame = pd.read_csv(path, dtype={c: "string" for c in safe_ids}, keep_default_na=False,
                            na_values={c: [""] for c in header if c not in safe_ids})
        for c in frame.columns:
            if not pd.api.types.is_numeric_dtype(frame[c].dtype):
                frame[c] = frame[c].astype(object).map(csv_unsafe)
        frame = frame.rename(columns=csv_unsafe)
    for c in id_cols:
        if c in frame.columns:
            frame[c] = _key_as(frame[c], types.get(c, "text"))
    return frame


def read_run_dir(run_dir: Path) -> RunDir:
    """Read a `forecast run` or `forecast backtest` output directory.

    Raises:
        InputError: when it is not such a directory (no summary.json, or one without a config).
    """
    run_dir = Path(run_dir)
    summary_path = run_dir / "summary.json"
    if not summary_path.exists():
        raise InputError(f"{run_dir}: no summary.json; give the --out directory of a forecast run or backtest")
    try:
        summary = json.loads(summary_path.read_text())
        id_cols = list(summary["config"]["id_cols"])
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise InputError(f"{summary_path}: not a forecast summary ({one_line(e)})") from e
    run = RunDir(path=run_dir, summary=summary, id_cols=id_cols)
    types = summary.get("key_types") or {}  # a run before key types were kept: text keys
    listed = summary.get("files") if isinstance(summary.get("files"), dict) else {}

    def table(name: str, *default: str) -> pd.DataFrame | None:
        # the file the summary lists (a Spark run's timings.parquet is a dataset, a directory), else the names
        # a local run writes
        names = [Path(str(listed[name])).name] if name in listed else default
        for file in names:
            frame = _read_output(run_dir / file, id_cols, types)
            if frame is not None:
                return frame
        return None

    run.timings = table("timings", "timings.csv")
    run.errors = table("errors", "errors.csv")
    run.forecasts = table("forecasts", "forecasts.parquet", "forecasts.csv")
    run.backtest = table("backtest", "backtest.parquet")
    run.metrics = table("metrics", "metrics.csv")
    for frame in (run.forecasts, run.backtest):
        if frame is not None:
            for c in ("ds", "cutoff"):
                if c in frame.columns:
                    frame[c] = pd.to_datetime(frame[c])
    return run


def read_history(run: RunDir) -> pd.DataFrame:
    """The input table of a finished run, read again as the run read it, from the run's own record of its source
    (summary.json's "source"; a run from before sources were recorded: its "input", a path).

    Raises:
        InputError: when the input has moved or changed so that it cannot be read, or cannot be read again at all
            (standard input, a pipe, a table in memory).
    """
    from .sources import read_table, reopen_source

    config = run.summary["config"]
    record = run.summary.get("source")
    if not isinstance(record, dict):  # a run from before sources were recorded read a file, named by "input"
        record = {"kind": "file", "given": str(run.summary["input"])}
    try:
        source = reopen_source(record)
    except InputError as e:
        raise InputError(f"{run.path / 'summary.json'}: {e}") from None
    table, _ = read_table(source, config["id_cols"], config["time_col"], config["target_col"],
                          config.get("duplicates", "error"))
    types = run.summary.get("key_types") or {}
    for c in config["id_cols"]:
        table[c] = _key_as(table[c], types.get(c, "text"))
    return table
