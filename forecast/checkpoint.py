"""What makes a run directory safe for nightly jobs: a lock, a run manifest, and part files to resume from.

An unfinished run in DIR looks like this:

    DIR/.lock                      pid, host and process start time of the run writing here
    DIR/parts/manifest.json        the input's identity (a file's path, size, sha256) and the configuration
    DIR/parts/part-00001.parquet   one row per finished series: its index, status, timings, forecast arrays

What a part row holds is the job's `PartSchema` (a run's forecasts, a backtest's windows). Parts are written
atomically as work finishes, so a run killed even with SIGKILL keeps them, and `--resume` fits only the series no
part holds. A finished run removes parts/ once its outputs and summary.json
are written. The lock is stale, and taken over, when the process that wrote it is gone; so is a temporary
directory of a run killed before it could remove it (see `run_temp_dir`).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .errors import ConfigError, RunLockedError
from .outputs import is_run_file, write_atomic, write_json
from .sources import TableInput, file_identity, open_source
from .types import PARAM_ARRAYS, PARAM_FLOATS, SeriesData, SeriesResult

PARTS_DIR = "parts"
MANIFEST = "manifest.json"
LOCK = ".lock"
# Settings that change no series' result, so a resumed run may use other values (more jobs, a longer timeout,
# the local backend or another scheduler after a Dask cluster was lost).
_FREE_SETTINGS = ("n_jobs", "chunks_per_job", "chunk_rows", "block_rows", "out_dir", "overwrite", "resume", "max_failed_frac",
                  "fit_timeout", "output_format", "run_id", "backend", "scheduler", "connect_timeout")
# A lock file still empty after this long was left by a process killed between creating and writing it.
_EMPTY_LOCK_GRACE_SECONDS = 10.0


# ---------------------------------------------------------------------------------------------------------------
# the lock

def _process_start(pid: int) -> str | None:
    """The start time of a process in clock ticks since boot (Linux), to tell a reused pid from the original."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _holder_alive(holder: dict) -> bool:
    if holder.get("host") != socket.gethostname():
        return True  # cannot look at another machine's processes: assume it is running
    pid = holder["pid"]
    if pid <= 0 or _pid_gone(pid):
        return False
    started = holder.get("process_start")
    return started is None or _process_start(pid) in (None, started)


class RunLock:
    """`with RunLock(out_dir):` one run at a time in a directory.

    Creates the directory if needed; on exit removes the lock, and the directory if this run created it and
    left it empty (an input error writes nothing).

    Raises:
        RunLockedError: when a live run holds the directory.
    """

    def __init__(self, out_dir: Path) -> None:
        self.out_dir = Path(out_dir)
        self.path = self.out_dir / LOCK
        self._created = False

    def __enter__(self) -> "RunLock":
        if self.out_dir.exists() and not self.out_dir.is_dir():
            raise ConfigError(f"{self.out_dir}: exists and is not a directory; choose another --out")
        self._created = not self.out_dir.exists()
        self.out_dir.mkdir(parents=True, exist_ok=True)
        me = {"pid": os.getpid(), "host": socket.gethostname(), "process_start": _process_start(os.getpid()),
              "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                self._check_stale()
                continue
            with os.fdopen(fd, "w") as f:
                json.dump(me, f)
            return self
        raise RunLockedError(f"{self.out_dir}: cannot take the lock {self.path}; try again")

    def _check_stale(self) -> None:
        """Remove the lock if the run that holds it is gone; raise if it is alive."""
        try:
            text = self.path.read_text()
            age = time.time() - self.path.stat().st_mtime
        except FileNotFoundError:
            return
        try:
            holder = json.loads(text)
            if not isinstance(holder, dict) or type(holder.get("pid")) is not int:  # noqa: E721 (bool is no pid)
                raise ValueError("not a lock")
        except ValueError:
            if age < _EMPTY_LOCK_GRACE_SECONDS:  # being written right now
                raise RunLockedError(f"{self.out_dir}: another run is starting here; wait for it or choose another --out") from None
            holder = {}
        if holder and _holder_alive(holder):
            raise RunLockedError(
                f"{self.out_dir}: another run (pid {holder.get('pid')} on {holder.get('host')}, started "
                f"{holder.get('started')}) is writing here; wait for it or choose another --out "
                f"(if it is not running, delete {self.path})"
            )
        self.path.unlink(missing_ok=True)  # stale: its run crashed or was killed

    def __exit__(self, *exc: object) -> None:
        try:
            self.path.unlink(missing_ok=True)
        except OSError:  # the directory became read-only: the lock stays, and the next run finds it stale
            pass
        if self._created:
            try:
                self.out_dir.rmdir()  # only if empty
            except OSError:
                pass


def _pid_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        pass
    return False


def run_temp_dir() -> str:
    """A fresh temporary directory for this run's workers, named after this process, in the system temp dir.

    A run killed with SIGKILL cannot remove its own; so first remove those of our runs whose process is gone,
    and the system temp dir does not fill up over many nights of killed runs.
    """
    root = tempfile.gettempdir()
    prefix = "forecast-"
    for name in os.listdir(root):
        pid = name[len(prefix):].split("-", 1)[0]
        path = os.path.join(root, name)
        if name.startswith(prefix) and pid.isdigit() and _pid_gone(int(pid)):
            try:
                if os.stat(path).st_uid == os.getuid() and os.path.isdir(path):
                    shutil.rmtree(path, ignore_errors=True)
            except OSError:
                pass
    return tempfile.mkdtemp(prefix=f"{prefix}{os.getpid()}-")


# ---------------------------------------------------------------------------------------------------------------
# the manifest

def make_manifest(source: TableInput, config_dict: dict, series_total: int, other_files: dict | None = None) -> dict:
    """What identifies a run: its input's identity (a file's path, size and sha256; a table in memory: a hash of its
    content), the other files that shape its results (`other_files`, by role: a --future table, a holidays file;
    None when not used) and the settings that shape them."""
    return {
        "input": open_source(source).identity(),
        "files": {role: file_identity(Path(f)) if f is not None else None
                  for role, f in (other_files or {}).items()},
        # through JSON and back, so it compares equal to the copy read from manifest.json (tuples become lists)
        "config": json.loads(json.dumps({k: v for k, v in config_dict.items() if k not in _FREE_SETTINGS},
                                        default=str)),
        "series_total": series_total,
    }


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def manifest_difference(old: dict, new: dict) -> str | None:
    """One phrase naming the first thing that differs between two manifests, or None."""
    a, b = old.get("input", {}), new["input"]
    if a.get("path") != b["path"]:
        return f"the input path differs ({a.get('path')} then, {b['path']} now)"
    if a.get("size") != b["size"]:
        return f"the input size differs ({a.get('size')} bytes then, {b['size']} now)"
    if a.get("sha256") != b["sha256"]:
        return "the input's content differs (same size, other sha256)"
    files_then = old.get("files", {})
    for role, now in new.get("files", {}).items():
        then = files_then.get(role)
        if (then or {}).get("path") != (now or {}).get("path"):
            return f"the {role} file differs ({(then or {}).get('path')} then, {(now or {}).get('path')} now)"
        if now is not None and (then.get("size"), then.get("sha256")) != (now["size"], now["sha256"]):
            return f"the {role} file's content differs ({now['path']})"
    fa, fb = _flatten(old.get("config", {})), _flatten(new["config"])
    for key in sorted(set(fa) | set(fb)):
        if fa.get(key) != fb.get(key):
            return f"the setting {key} differs ({fa.get(key)!r} then, {fb.get(key)!r} now)"
    return None


# ---------------------------------------------------------------------------------------------------------------
# the run directory

@dataclass(frozen=True)
class PartSchema:
    """What one row of a part file holds for a kind of job: the result type and its fields by kind of column.

    Attributes:
        result_type: what a row is read back as, called with key= and every field below.
        scalars: one value per result, by field name, with its Arrow type.
        arrays: one array per result (a list column), by field name, with its numpy dtype.
        json_fields: a value per result kept as JSON text (None as null); optional when reading, so parts
            written before such a field existed still load.
        structs: a dict of a fixed shape per result (None as null), by field name, with its Arrow struct type:
            Arrow converts one in about a microsecond, where JSON text took a tenth of a millisecond. Read back as
            dicts of lists; a part that holds the field as JSON text (written before it was a struct) still loads.
    """

    result_type: Callable[..., Any]
    scalars: dict[str, pa.DataType]
    arrays: dict[str, str]
    json_fields: tuple[str, ...] = ()
    structs: dict[str, pa.DataType] = field(default_factory=dict)


def _run_result(**fields: Any) -> SeriesResult:
    """A SeriesResult read back from a part file, whose JSON keeps the --level and --quantile columns as lists."""
    fields["bands"] = {name: np.asarray(values, dtype="float64") for name, values in (fields["bands"] or {}).items()}
    if fields.get("cutoff") is not None:
        fields["cutoff"] = np.datetime64(fields["cutoff"], "ns")
    return SeriesResult(**fields)


# An engine's fitted parameters (engines.params_dict) as a part holds them.
PARAMS_TYPE = pa.struct([(name, pa.float64()) for name in PARAM_FLOATS]
                        + [(name, pa.list_(pa.float64())) for name in PARAM_ARRAYS])

# A run's parts: each series' final result (after the fallback: its status, timings, verdict, cutoff and forecast
# arrays, the --level and --quantile columns as JSON, as many as the run asked for), and the engines' fitted
# parameters, so a resumed run still saves every series' for a later --warm-start.
RUN_PARTS = PartSchema(
    _run_result,
    scalars={"status": pa.string(), "n_obs": pa.int64(), "fit_seconds": pa.float64(),
             "predict_seconds": pa.float64(), "cpu_seconds": pa.float64(), "worker": pa.string(),
             "stage": pa.string(), "error": pa.string(), "model": pa.string(), "engine": pa.string(),
             "verdict": pa.string(), "cutoff": pa.timestamp("ns")},
    arrays={"ds": "datetime64[ns]", "yhat": "float64", "yhat_lower": "float64", "yhat_upper": "float64"},
    json_fields=("bands",),
    structs={"params": PARAMS_TYPE},
)


def _as_list(value: Any) -> list:
    """JSON for the arrays a json field may hold (a backtest's other models' forecasts): a list, NaN kept."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


class RunState:
    """The parts and manifest of one run directory (hold its RunLock while using this); `schema` says what a part
    row holds."""

    def __init__(self, out_dir: Path, schema: PartSchema = RUN_PARTS) -> None:
        self.out_dir = Path(out_dir)
        self.schema = schema
        self.parts_dir = self.out_dir / PARTS_DIR
        self._next_part = 1
        self.damaged: list[Path] = []  # part files `load` could not read

    def part_files(self) -> list[Path]:
        return sorted(self.parts_dir.glob("part-*.parquet")) if self.parts_dir.is_dir() else []

    def unfinished(self) -> bool:
        return (self.parts_dir / MANIFEST).exists()

    def begin(self, manifest: dict, resume: bool, overwrite: bool) -> None:
        """Start a fresh run, or check that a resumed one matches the unfinished run here.

        Raises:
            ConfigError: an unfinished run is here and neither --resume nor --overwrite was given, or --resume
                was given and the input or a setting differs from the unfinished run's.
        """
        if self.unfinished() and resume:
            try:
                old = json.loads((self.parts_dir / MANIFEST).read_text())
            except (OSError, ValueError):
                old = {}
            diff = manifest_difference(old, manifest)
            if diff is not None:
                raise ConfigError(f"{self.out_dir}: cannot resume: {diff}; resume with the same input and "
                                  "settings, or pass --overwrite to start again")
            for tmp in self.parts_dir.glob(".part-*.tmp"):  # a part being written when the run was killed
                tmp.unlink(missing_ok=True)
            numbers = [int(p.stem.split("-")[1]) for p in self.part_files()]
            self._next_part = max(numbers, default=0) + 1
            return
        if self.unfinished() and not overwrite:
            raise ConfigError(f"{self.out_dir}: holds an unfinished run ({len(self.part_files())} part file(s)); "
                              "pass --resume to finish it or --overwrite to start again")
        self.clear()
        write_json(manifest, self.parts_dir / MANIFEST)

    def manifest(self) -> dict:
        """The manifest `begin` wrote for this run."""
        return json.loads((self.parts_dir / MANIFEST).read_text())

    def load(self, series: Sequence[SeriesData]) -> dict[int, Any]:
        """The results held by the part files, by series index. A part that cannot be read (a damaged disk) is
        listed in `damaged` and its series are fitted again."""
        schema = self.schema
        done: dict[int, Any] = {}
        self.damaged = []
        keys = {i: s.key for i, s in enumerate(series)}
        for path in self.part_files():
            try:
                table = pq.read_table(path)
                if any(name not in table.column_names for name in ("index", *schema.scalars, *schema.arrays)) or any(
                        not 0 <= i < len(series) for i in table.column("index").to_pylist()):
                    raise ValueError("not a part file of this run")
            except (OSError, ValueError, pa.ArrowException):
                self.damaged.append(path)
                continue
            done.update(self._read_part(table, keys))
        return done

    def done_indices(self) -> set[int]:
        """The series indices the part files hold (their index column only), for a job that reads its series
        block by block and takes the parts' results only at its end (`grouped`). Damaged parts are listed in
        `damaged`, and their series are done again."""
        done: set[int] = set()
        self.damaged = []
        for path in self.part_files():
            try:
                done.update(pq.read_table(path, columns=["index"]).column("index").to_pylist())
            except (OSError, ValueError, KeyError, pa.ArrowException):
                self.damaged.append(path)
        return done

    def grouped(self, keys: Mapping[int, tuple], rank: Callable[[int], Any]) -> Iterator[list[tuple[int, Any]]]:
        """The (index, result) pairs the part files hold for the series in `keys` (index: key), in the order of
        rank(index), a group of parts at a time: parts whose ranks do not overlap (a sorted table's, written as its blocks
        finished) are read one by one, so only a group of parts is held at once. A series held twice (a part
        rewritten after an interrupted write) is taken from the later part."""
        if not keys:  # nothing asked for (a run whose outputs took every series as it went): no part is opened
            return
        spans = []
        for path in self.part_files():
            if path in self.damaged:
                continue
            try:
                ranks = [rank(i) for i in pq.read_table(path, columns=["index"]).column("index").to_pylist()
                         if i in keys]
            except (OSError, ValueError, KeyError, pa.ArrowException):
                continue
            if ranks:
                spans.append((min(ranks), max(ranks), path))
        spans.sort(key=lambda span: span[:2])
        group: list[Path] = []
        high = None
        for low, top, path in spans + [(None, None, None)]:
            if group and (path is None or low > high):
                results: dict[int, Any] = {}
                for part in sorted(group):  # later parts win
                    results.update(self._read_part(part, keys))
                yield [(i, results[i]) for i in sorted(results, key=rank)]
                group, high = [], None
            if path is not None:
                group.append(path)
                high = top if high is None else max(high, top)

    def _read_part(self, part: Path | pa.Table, keys: Mapping[int, tuple]) -> dict[int, Any]:
        """One part's results (its file, or the file read) by series index, for the series in `keys` (their keys
        given them)."""
        schema = self.schema
        table = part if isinstance(part, pa.Table) else pq.read_table(part)
        indices = table.column("index").to_pylist()
        cols = {name: table.column(name).to_pylist() for name in schema.scalars if name in table.column_names}
        arrays = {name: _split_list_column(table.column(name)) for name in schema.arrays}
        texts = {name: table.column(name).to_pylist() if name in table.column_names else [None] * len(table)
                 for name in schema.json_fields}
        structs = {name: _struct_values(table, name) for name in schema.structs}
        out = {}
        for row, index in enumerate(indices):
            if index in keys:
                out[index] = schema.result_type(
                    key=keys[index], **{k: v[row] for k, v in cols.items()},
                    **{k: v[row] for k, v in arrays.items()},
                    **{k: json.loads(v[row]) if v[row] is not None else None for k, v in texts.items()},
                    **{k: v[row] for k, v in structs.items()},
                )
        return out

    def write_part(self, results: dict[int, Any]) -> Path:
        """Write finished results (by series index) as the next part file, atomically."""
        schema = self.schema
        indices = sorted(results)
        rows = [results[i] for i in indices]
        columns = {"index": pa.array(indices, type=pa.int64())}
        for name, arrow_type in schema.scalars.items():
            columns[name] = pa.array([getattr(r, name) for r in rows], type=arrow_type)
        for name in schema.json_fields:
            columns[name] = pa.array([json.dumps(v, default=_as_list) if (v := getattr(r, name)) is not None else None
                                      for r in rows], type=pa.string())
        for name, arrow_type in schema.structs.items():
            columns[name] = pa.array([getattr(r, name) for r in rows], type=arrow_type)
        for name, dtype in schema.arrays.items():
            parts = [np.asarray(getattr(r, name), dtype=dtype) for r in rows]
            offsets = np.r_[0, np.cumsum([len(p) for p in parts])].astype("int32")
            values = np.concatenate(parts) if parts else np.array([], dtype=dtype)
            columns[name] = pa.ListArray.from_arrays(pa.array(offsets), pa.array(values))
        table = pa.table(columns)
        path = self.parts_dir / f"part-{self._next_part:05d}.parquet"
        # without dictionary pages: a part's values hardly repeat, and encoding them took half of a write's time
        write_atomic(path, lambda tmp: pq.write_table(table, tmp, use_dictionary=False))
        self._next_part += 1  # a write that failed (a full disk) leaves its number to the next try
        return path

    def clear(self) -> None:
        """Remove the parts and manifest (a finished run, or --overwrite): the files a run writes there, and the
        directory once empty; anything else someone put there stays."""
        if not self.parts_dir.is_dir():
            return
        for path in self.parts_dir.iterdir():
            if is_run_file(path.name):
                try:
                    path.unlink()
                except OSError:
                    pass
        try:
            self.parts_dir.rmdir()
        except OSError:
            pass


def _struct_values(table: pa.Table, name: str) -> list:
    """A struct field's values (dicts, None as null); from JSON text in a part written when it was a json field."""
    if name not in table.column_names:
        return [None] * len(table)
    values = table.column(name).to_pylist()
    if pa.types.is_string(table.column(name).type):
        return [json.loads(v) if v is not None else None for v in values]
    return values


def _split_list_column(column: pa.ChunkedArray) -> list[np.ndarray]:
    arr = column.combine_chunks()
    offsets = arr.offsets.to_numpy()
    values = arr.values.to_numpy(zero_copy_only=False)
    return [values[offsets[i]:offsets[i + 1]].copy() for i in range(len(arr))]


class PartWriter:
    """Collects results as they finish and writes them as part files: when a chunk is complete, and at least
    every `flush_seconds` while a long chunk runs, so a crash loses little work. Chunks are told (`expect`) as they
    are made, by the series indices they hold; results come by series index.

    Args:
        state: the run directory.
    """

    # A minute between parts at most: a killed run loses at most about a minute of work per worker, while
    # even a week-long run makes only a few thousand small files.
    flush_seconds = 60.0

    def __init__(self, state: RunState) -> None:
        self._state = state
        self._chunk_of: dict[int, int] = {}
        self._left: list[int] = []
        self._buffer: dict[int, Any] = {}
        self._last = time.monotonic()

    def expect(self, chunk: Sequence[int]) -> None:
        """A chunk of these series indices is on its way to the workers."""
        c = len(self._left)
        self._left.append(len(chunk))
        for i in chunk:
            self._chunk_of[i] = c

    def add(self, index: int, result: Any) -> None:
        self._buffer[index] = result
        c = self._chunk_of.pop(index, None)
        if c is not None:
            self._left[c] -= 1
        if (c is not None and self._left[c] == 0) or time.monotonic() - self._last >= self.flush_seconds:
            self.flush()

    def flush(self) -> None:
        """Write what is buffered (a repeat after an interrupted write is harmless: later parts win)."""
        if self._buffer:
            self._state.write_part(self._buffer)
            self._buffer = {}
        self._last = time.monotonic()
