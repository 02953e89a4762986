"""All file I/O: read and check the long table, split it into series, write every output atomically.

Table-level checks happen here, before any worker starts; each raises `InputError` with one line that names the
file, the column and the offending value and row. Problems of one series are not checked here (see model.py).
"""

from __future__ import annotations

import difflib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd

from .errors import InputError, OutputExistsError
from .model import SeriesData, SeriesResult

# Strings that mean "no value" in a target column; anything else that is not a number is an error.
_NA_STRINGS = {"", "na", "n/a", "nan", "null", "none", "nil", "-", "?"}
# How many example keys an error message shows.
_EXAMPLES = 3


def _kind(path: Path) -> str:
    name = path.name.lower()
    if name.endswith((".parquet", ".pq")):
        return "parquet"
    if name.endswith((".csv", ".csv.gz", ".txt", ".txt.gz")):
        return "csv"
    raise InputError(f"{path}: unknown file type; expected .csv, .csv.gz or .parquet")


def _one_line(e: Exception) -> str:
    text = " ".join(str(e).split())
    return text if len(text) <= 200 else text[:197] + "..."


def _columns(path: Path, kind: str) -> list[str]:
    if kind == "parquet":
        import pyarrow.parquet as pq

        return list(pq.read_schema(path).names)
    return list(pd.read_csv(path, nrows=0).columns)


def _read(path: Path, kind: str, columns: list[str], id_cols: Sequence[str], time_col: str) -> pd.DataFrame:
    if kind == "parquet":
        return pd.read_parquet(path, columns=columns)
    # Keys are labels: read them as text so codes such as 00123 keep their zeros. Times are read as text and
    # parsed here, so a UTC offset keeps its local wall time as it does in Parquet (the CSV parser turns it to UTC).
    dtype = {c: "string" for c in list(id_cols) + [time_col]}
    try:
        return pd.read_csv(path, usecols=columns, dtype=dtype, engine="pyarrow")
    except Exception:  # the pyarrow parser is fast but strict; the C parser reads what it refuses
        return pd.read_csv(path, usecols=columns, dtype=dtype, low_memory=False)


def _missing_column(path: Path, role: str, flag: str, col: str, found: list[str]) -> InputError:
    close = difflib.get_close_matches(col, found, n=1, cutoff=0.4)
    hint = f"; did you mean {close[0]!r}? pass {flag} {close[0]}" if close else f"; pass {flag} NAME"
    shown = ", ".join(found[:20]) + (", ..." if len(found) > 20 else "")
    return InputError(f"{path}: {role} column {col!r} not found; columns are: {shown}{hint}")


def _parse_time(path: Path, raw: pd.Series, col: str) -> tuple[pd.Series, list[str]]:
    notes: list[str] = []
    if raw.isna().any():
        row = int(np.flatnonzero(raw.isna().to_numpy())[0])
        raise InputError(f"{path}: column {col!r} has an empty time value at row {row + 1}; every row needs one")
    if pd.api.types.is_datetime64_any_dtype(raw.dtype):
        ds = raw
    else:
        try:
            ds = pd.to_datetime(raw, errors="coerce")
            if ds.isna().any():  # formats differ between rows: slower, tolerant parse
                ds = pd.to_datetime(raw, errors="coerce", format="mixed")
        except (ValueError, TypeError):  # mixed UTC offsets
            ds = pd.to_datetime(raw, errors="coerce", utc=True, format="mixed")
        bad = ds.isna().to_numpy()
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise InputError(
                f"{path}: column {col!r} has a value that is not a time: {raw.iloc[row]!r} at row {row + 1} "
                f"({int(bad.sum())} such row(s)); use ISO dates such as 2024-01-31"
            )
    if getattr(ds.dt, "tz", None) is not None:
        notes.append(f"column {col!r} had timezone {ds.dt.tz}; timestamps were made naive (local wall time)")
        ds = ds.dt.tz_localize(None)
    return ds.astype("datetime64[ns]"), notes


def _parse_target(path: Path, raw: pd.Series, col: str) -> pd.Series:
    if pd.api.types.is_bool_dtype(raw.dtype):
        raise InputError(f"{path}: column {col!r} holds true/false values, not numbers; choose a numeric --target-col")
    if pd.api.types.is_numeric_dtype(raw.dtype):
        return raw.astype("float64")
    y = pd.to_numeric(raw, errors="coerce")
    text = raw.astype("string").str.strip().str.lower()
    bad = (y.isna() & raw.notna() & ~text.isin(_NA_STRINGS)).to_numpy()
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise InputError(
            f"{path}: column {col!r} has a value that is not a number: {raw.iloc[row]!r} at row {row + 1} "
            f"({int(bad.sum())} such row(s)); leave a blank cell for a missing value"
        )
    return y.astype("float64")


def _describe_key(id_cols: Sequence[str], values: Sequence[Any]) -> str:
    return ", ".join(f"{c}={v}" for c, v in zip(id_cols, values))


def _handle_duplicates(path: Path, df: pd.DataFrame, id_cols: list[str], policy: str, time_col: str) -> pd.DataFrame:
    subset = id_cols + ["ds"]
    dup = df.duplicated(subset=subset, keep=False)
    if not dup.any():
        return df
    if policy == "error":
        first = df.loc[dup, subset].drop_duplicates().head(_EXAMPLES)
        examples = "; ".join(
            _describe_key(id_cols, r[:-1]) + f", {time_col}={pd.Timestamp(r[-1])}"
            for r in first.itertuples(index=False)
        )
        n_extra = int(df.duplicated(subset=subset).sum())
        raise InputError(
            f"{path}: {n_extra} duplicate ({', '.join(id_cols)}, {time_col}) row(s), e.g. {examples}; "
            "pass --duplicates sum, mean or last to combine them"
        )
    grouped = df.groupby(subset, sort=False, dropna=False, observed=True)["y"]
    combined = {"sum": lambda g: g.sum(min_count=1), "mean": lambda g: g.mean(), "last": lambda g: g.last()}[policy]
    return combined(grouped).reset_index()


def read_table(path: Path, id_cols: Sequence[str], time_col: str, target_col: str,
               duplicates: str = "error") -> tuple[pd.DataFrame, list[str]]:
    """Read and check a long table of many series.

    Args:
        path: a .csv, .csv.gz or .parquet file.
        id_cols: the key column(s).
        time_col: the timestamp column.
        target_col: the value column.
        duplicates: "error", or how to combine repeated (key, time) rows: "sum", "mean", "last".

    Returns:
        (table, notes): the table with the key columns under their own names, then `ds` (naive datetime64)
        and `y` (float64, NaN for missing); notes are things the user should be told (e.g. timezone dropped).

    Raises:
        InputError: one line naming the file, the column, and the value and row at fault.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if path.is_dir():
        raise InputError(f"{path}: is a directory; give the table file")
    kind = _kind(path)
    try:
        found = _columns(path, kind)
    except pd.errors.EmptyDataError:
        raise InputError(f"{path}: the file is empty") from None
    except Exception as e:
        raise InputError(f"{path}: cannot read as {kind}: {_one_line(e)}") from e
    id_cols = list(id_cols)
    for role, flag, cols in (("id", "--id-col", id_cols), ("time", "--time-col", [time_col]),
                             ("target", "--target-col", [target_col])):
        for col in cols:
            if col not in found:
                raise _missing_column(path, role, flag, col, found)
    try:
        raw = _read(path, kind, id_cols + [time_col, target_col], id_cols, time_col)
    except Exception as e:
        raise InputError(f"{path}: cannot read as {kind}: {_one_line(e)}") from e
    raw = raw.reset_index(drop=True)
    if len(raw) == 0:
        raise InputError(f"{path}: the table has no data rows")
    for col in id_cols:
        if raw[col].isna().any():
            row = int(np.flatnonzero(raw[col].isna().to_numpy())[0])
            raise InputError(f"{path}: id column {col!r} is empty at row {row + 1}; every row needs a series key")
    ds, notes = _parse_time(path, raw[time_col], time_col)
    y = _parse_target(path, raw[target_col], target_col)
    table = raw[id_cols].copy()
    table["ds"] = ds.to_numpy()
    table["y"] = y.to_numpy()
    table = _handle_duplicates(path, table, id_cols, duplicates, time_col)
    return table, notes


def split_series(table: pd.DataFrame, id_cols: Sequence[str]) -> list[SeriesData]:
    """Split a checked table into series, sorted by key, each sorted by time.

    Vectorised: one sort of the whole table, then slices, so it costs about the same for 50 or 50,000 series.
    """
    id_cols = list(id_cols)
    codes = table.groupby(id_cols, sort=True, observed=True, dropna=False).ngroup().to_numpy()
    ds = table["ds"].to_numpy(dtype="datetime64[ns]")
    order = np.lexsort((ds, codes))
    codes, ds, y = codes[order], ds[order], table["y"].to_numpy(dtype=float)[order]
    starts = np.flatnonzero(np.r_[True, codes[1:] != codes[:-1]])
    ends = np.r_[starts[1:], len(codes)]
    key_rows = table[id_cols].iloc[order[starts]]
    keys = list(key_rows.itertuples(index=False, name=None))
    return [SeriesData(key=k, ds=ds[s:e], y=y[s:e]) for k, s, e in zip(keys, starts, ends)]


# ---------------------------------------------------------------------------------------------------------------
# outputs

def default_out_dir(root: Path = Path("outputs")) -> Path:
    """outputs/<UTC timestamp>, e.g. outputs/20261126T130501Z."""
    stamp = pd.Timestamp.now(tz="UTC").strftime("%Y%m%dT%H%M%SZ")
    return root / stamp


def prepare_out_dir(out_dir: Path, overwrite: bool) -> None:
    """Check that a run may write into `out_dir`; nothing is created here.

    Raises:
        OutputExistsError: when it holds a finished run (a summary.json whose status is not "interrupted")
            and overwrite is off.
    """
    if out_dir.exists() and not out_dir.is_dir():
        raise OutputExistsError(f"{out_dir}: exists and is not a directory; choose another --out")
    summary = out_dir / "summary.json"
    if summary.exists() and not overwrite:
        try:
            status = json.loads(summary.read_text()).get("status")
        except (OSError, ValueError):
            status = None
        if status != "interrupted":
            raise OutputExistsError(
                f"{out_dir}: holds a finished run (summary.json); pass --overwrite or choose another --out"
            )


def _file_mode() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def write_atomic(path: Path, write: Callable[[str], None]) -> Path:
    """Call write(tmp_path) for a temporary file beside `path`, then rename it into place.

    A reader never sees a half-written file, and a crash leaves the previous file (if any) as it was.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, _file_mode())  # mkstemp makes 0600; outputs are ordinary files for the team to read
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def _key_frame(id_cols: Sequence[str], keys: list[tuple], repeats: Sequence[int] | None = None) -> pd.DataFrame:
    frame = pd.DataFrame.from_records(keys, columns=list(id_cols)) if keys else pd.DataFrame(columns=list(id_cols))
    if repeats is not None:
        frame = frame.loc[frame.index.repeat(repeats)].reset_index(drop=True)
    return frame


def forecast_frame(results: Sequence[SeriesResult], id_cols: Sequence[str]) -> pd.DataFrame:
    """The combined forecast table: key columns, ds, yhat, yhat_lower, yhat_upper, model (prophet or fallback:KIND).

    Series forecast by Prophet ("ok") or by a fallback ("fallback"); failed and skipped series have no rows.
    """
    ok = [r for r in results if r.status in ("ok", "fallback")]
    frame = _key_frame(id_cols, [r.key for r in ok], [len(r.ds) for r in ok])

    def cat(name: str, dtype: str) -> np.ndarray:
        parts = [getattr(r, name) for r in ok]
        return np.concatenate(parts).astype(dtype) if parts else np.array([], dtype=dtype)

    frame["ds"] = cat("ds", "datetime64[ns]")
    for name in ("yhat", "yhat_lower", "yhat_upper"):
        frame[name] = cat(name, "float64")
    frame["model"] = np.repeat(np.array([r.model for r in ok], dtype=object), [len(r.ds) for r in ok])
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
    that triage sent straight to the fallback did not fail and is not listed (timings.csv has its reason).
    """
    failed = [r for r in results if r.status != "ok" and not (r.status == "fallback" and r.stage == "triage")]
    frame = _key_frame(id_cols, [r.key for r in failed])
    frame["stage"] = [r.stage for r in failed]
    frame["reason"] = [r.error for r in failed]
    return frame


def params_frame(results: Sequence[SeriesResult], id_cols: Sequence[str]) -> pd.DataFrame:
    """The stan/fast engines' fitted parameters, one row per series they fitted: key columns, engine, y_scale, k, m,
    sigma_obs (floats, on Prophet's scaled data) and delta, beta (lists). What `--warm-start` reads."""
    fitted = [r for r in results if r.params is not None]
    frame = _key_frame(id_cols, [r.key for r in fitted])
    frame["engine"] = [r.engine for r in fitted]
    for name in ("y_scale", "k", "m", "sigma_obs"):
        frame[name] = np.array([r.params[name] for r in fitted], dtype=float)
    for name in ("delta", "beta"):
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
        raise InputError(f"{path}: cannot read it: {_one_line(e)}") from None
    missing = [c for c in id_cols if c not in frame.columns]
    if missing:
        raise InputError(f"{path}: key column {missing[0]!r} not found; the earlier run had other --id-col columns")
    keys = zip(*(frame[c].astype(str) for c in id_cols))
    records = frame[["y_scale", "k", "m", "sigma_obs", "delta", "beta"]].to_dict("records")
    return {tuple(k): {**r, "delta": list(r["delta"]), "beta": list(r["beta"])} for k, r in zip(keys, records)}


def write_table(frame: pd.DataFrame, path: Path) -> Path:
    """Write a frame as Parquet or CSV (by extension), atomically."""
    if path.suffix == ".parquet":
        return write_atomic(path, lambda tmp: frame.to_parquet(tmp, index=False))
    return write_atomic(path, lambda tmp: frame.to_csv(tmp, index=False))


def write_json(data: dict, path: Path) -> Path:
    """Write a dict as indented JSON, atomically."""

    def write(tmp: str) -> None:
        with open(tmp, "w") as f:
            json.dump(data, f, indent=2, default=str)
            f.write("\n")

    return write_atomic(path, write)
