"""Forecasting on Spark: the table read, grouped by series and forecast on the executors; it never passes the driver.

    from forecast.spark import forecast_spark
    out = forecast_spark(sdf, horizon=28, id_cols=["store", "item"], time_col="date", target_col="sales", seed=1)
    out.forecasts.write.parquet("s3a://bucket/forecasts")  # Spark DataFrames: forecasts, timings, errors

`forecast run PATH --backend spark` (`run_spark`) is the same on a table Spark reads from PATH (a Parquet file, a
partitioned Parquet directory, a CSV), written by Spark as Parquet datasets in --out, with a summary.json built
from aggregates.

What a local run does per chunk of series happens here per partition: the table is partitioned by key
(`repartition(n, *key)`: whole series per partition, --chunks-per-job partitions per core of the cluster) and
each partition goes through the very functions a local run uses (`mapInPandas`): the table checks
(sources.read_table), the split into series, the frequency (the table's grid, worked out from one row of
statistics per series exactly as profile.table_grid does on a whole table), the model (model.fit_series: engines,
seeds from (seed, key)), --min-obs and --fallback (runner.min_obs_verdict, runner.settle), and the rows written
(outputs.forecast_frame, timings_frame, errors_frame). One pandas call per partition, not per series: Spark's
per-group calls (groupBy().applyInPandas) cost ten times the fast engine's fit. A series that raises is a record,
never a failed task; a lost executor's partitions are run again by Spark, and the seeds make their rows the same.
"""

from __future__ import annotations

import re
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Sequence

import numpy as np
import pandas as pd

from .config import ForecastConfig, ModelOptions
from .errors import BackendError, ConfigError, ForecastError, InputError
from .freq import step_to_freq
from .types import SENT_STAGES

if TYPE_CHECKING:
    from pyspark.sql import DataFrame as SparkFrame
    from pyspark.sql import SparkSession

    from .job import RunResult
    from .progress import Reporter
    from .sources import TableInput

__all__ = ["SparkForecasts", "forecast_spark", "run_spark"]

_DAY = 86_400 * 10**9
_MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
_WEEKDAYS = ("THU", "FRI", "SAT", "SUN", "MON", "TUE", "WED")  # 1970-01-01 was a Thursday
# An integer key as a CSV writes it (sources.table._INTEGER): such text keys are integers, as in a local run.
_INTEGER = r"^(0|-?[1-9][0-9]{0,17})$"


@dataclass
class SparkForecasts:
    """What `forecast_spark` returns: Spark DataFrames with the columns of a local run's files (forecasts,
    timings, errors), computed once: they share one persisted result (`unpersist()` frees it)."""

    forecasts: SparkFrame
    timings: SparkFrame
    errors: SparkFrame
    table_freq: str | None
    series_total: int  # the series of the input (a count the driver asks Spark for)
    partitions: int  # the tasks the series were cut into
    freq_sample: int  # the series whose steps decided table_freq (all of them up to _GRID_SAMPLE)
    _all: SparkFrame
    _input: SparkFrame

    def unpersist(self) -> None:
        """Free the cached results and input."""
        self._all.unpersist()
        self._input.unpersist()


@dataclass(frozen=True)
class _Grid:
    """The table's frequency, as profile.TableGrid decides it, in what a group needs to tell whether it lies on it:
    a fixed step in nanoseconds and its anchor, or a calendar step in months with its phase and month start/end."""

    freq: str | None = None
    step: int = 0  # nanoseconds; minus the months for a calendar step; 0: no grid
    anchor: int = 0
    at_start: bool = True


@dataclass(frozen=True)
class _Plan:
    """Everything a group's function needs, pickled once per task."""

    config: ForecastConfig
    model: ModelOptions
    grid: _Grid
    run_id: str
    label: str
    columns: tuple[str, ...]


# The columns of the one result frame every group returns, after the key columns; "_row" says which output a row
# belongs to: forecast, timing (one per series), error, or input (a table check the group failed).
_RESULT = (("ds", "timestamp_ntz"), ("yhat", "double"), ("yhat_lower", "double"), ("yhat_upper", "double"),
           ("model", "string"), ("cutoff", "timestamp_ntz"), ("run_id", "string"), ("n_obs", "bigint"),
           ("status", "string"), ("fit_seconds", "double"), ("predict_seconds", "double"),
           ("cpu_seconds", "double"), ("worker", "string"), ("error", "string"), ("verdict", "string"),
           ("engine", "string"), ("stage", "string"), ("reason", "string"), ("_rows", "bigint"),
           ("_own_freq", "boolean"), ("_row", "string"))
_FORECAST_COLS = ("ds", "yhat", "yhat_lower", "yhat_upper", "model", "cutoff", "run_id")
_TIMING_COLS = ("n_obs", "status", "fit_seconds", "predict_seconds", "cpu_seconds", "worker", "error", "model",
                "verdict", "engine")
_STATS = (("n_rows", "bigint"), ("first", "bigint"), ("modal", "bigint"), ("n_start", "bigint"),
          ("n_end", "bigint"), ("start_phases", "array<bigint>"), ("end_phases", "array<bigint>"))


def _checked(pdf: pd.DataFrame, config: ForecastConfig) -> pd.DataFrame:
    """A chunk's rows through the table checks of every source (sources.read_table): key, ds, y, in key and time
    order."""
    from .sources import read_table

    table, _ = read_table(pdf, config.id_cols, config.time_col, config.target_col, config.duplicates)
    return table


def _month_days(ds: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per timestamp: on a month's first day, on its last day, and its month since 1970-01."""
    month = ds.astype("datetime64[ns]").astype("datetime64[M]")
    start = month.astype("datetime64[ns]").view("int64")
    end = ((month + 1).astype("datetime64[ns]") - np.timedelta64(1, "D")).view("int64")
    return ds == start, ds == end, month.astype(np.int64)


@dataclass
class _Steps:
    """Per series of a checked chunk: profile's arrays (ds as int64, its series' first rows) and steps."""

    ds: np.ndarray
    starts: np.ndarray
    n_rows: np.ndarray
    modal: np.ndarray
    smin: np.ndarray
    smax: np.ndarray


def _chunk_steps(table: pd.DataFrame, id_cols: Sequence[str]) -> _Steps:
    """The steps of every series of a checked chunk, as profile.table_grid works them out for a whole table."""
    from .profile import _series_steps, _sorted_arrays

    ds, _, starts, _, step = _sorted_arrays(table, list(id_cols))
    ends = np.r_[starts[1:], len(ds)]
    modal, _, smin, smax = _series_steps(step, starts, ends)
    return _Steps(ds, starts, ends - starts, modal, smin, smax)


def _frames(chunks: Iterator[pd.DataFrame]) -> pd.DataFrame | None:
    """A partition's rows as one frame (mapInPandas hands them over in batches); None for an empty one."""
    batches = [b for b in chunks if len(b)]
    return pd.concat(batches, ignore_index=True) if batches else None


def _chunk_stats(chunks: Iterator[pd.DataFrame], config: ForecastConfig) -> Iterator[pd.DataFrame]:
    """One row per series of what profile.table_grid needs (mapInPandas over a partition of whole series); none
    for a partition failing a table check (the forecast pass says why)."""
    pdf = _frames(chunks)
    if pdf is None:
        return
    try:
        table = _checked(pdf, config)
    except InputError:
        return
    st = _chunk_steps(table, config.id_cols)
    at_start, at_end, month = _month_days(st.ds)
    phase = month % 12
    yield pd.DataFrame({
        "n_rows": st.n_rows.astype(np.int64), "first": st.ds[st.starts], "modal": st.modal.astype(np.int64),
        "n_start": np.add.reduceat(at_start.astype(np.int64), st.starts),
        "n_end": np.add.reduceat(at_end.astype(np.int64), st.starts),
        "start_phases": list(np.stack([np.add.reduceat((at_start & (phase == m)).astype(np.int64), st.starts)
                                       for m in range(12)], axis=1)),
        "end_phases": list(np.stack([np.add.reduceat((at_end & (phase == m)).astype(np.int64), st.starts)
                                     for m in range(12)], axis=1)),
    })


def _mode(values: np.ndarray) -> int:
    """The most common value (ties: the smallest), as profile._mode."""
    uniq, counts = np.unique(values, return_counts=True)
    return int(uniq[np.argmax(counts)])


def _grid_of(stats: pd.DataFrame) -> _Grid:
    """The table's frequency from one row per series, decided as profile._grid decides it from every row."""
    modal = stats["modal"].to_numpy(dtype=np.int64)
    multi = modal != 0
    if not multi.any():
        return _Grid()
    steps, counts = np.unique(modal[multi], return_counts=True)
    length = np.where(steps > 0, steps, -steps * 30 * _DAY)
    table_step = int(steps[np.lexsort((length, -counts))[0]])
    of_step = modal == table_step
    if table_step > 0:
        anchor = _mode(np.mod(stats["first"].to_numpy(dtype=np.int64)[of_step], table_step))
        label = "W-" + _WEEKDAYS[(anchor // _DAY) % 7] if table_step == 7 * _DAY else step_to_freq(table_step)
        return _Grid(label, table_step, anchor)
    months = -table_step
    n_start, n_end = stats["n_start"].to_numpy()[of_step].sum(), stats["n_end"].to_numpy()[of_step].sum()
    at_start = bool(n_start >= n_end)
    if (n_start if at_start else n_end) * 2 < stats["n_rows"].to_numpy()[of_step].sum():
        return _Grid()  # mid-month dates: no calendar grid
    phases = np.sum(np.stack(stats["start_phases" if at_start else "end_phases"].to_numpy()[of_step]), axis=0)
    by_phase = np.bincount(np.arange(12) % months, weights=phases, minlength=months)
    present = np.flatnonzero(by_phase > 0)
    anchor = int(present[np.argmax(by_phase[present])])
    name = _MONTHS[anchor]
    label = {1: "MS" if at_start else "ME", 3: ("QS-" if at_start else "QE-") + name,
             12: ("YS-" if at_start else "YE-") + name}[months]
    return _Grid(label, table_step, anchor, at_start)


def _on_grid(st: _Steps, grid: _Grid) -> np.ndarray:
    """Per series, whether it lies on the table's grid (profile._grid's on_grid, own-frequency series aside)."""
    from .profile import OWN_GRID_MIN_STEPS

    if grid.step > 0:
        on_row = np.mod(st.ds, grid.step) == grid.anchor
    else:
        at_start, at_end, month = _month_days(st.ds)
        on_row = (at_start if grid.at_start else at_end) & (np.mod(month, -grid.step) == grid.anchor)
    own = (st.n_rows - 1 >= OWN_GRID_MIN_STEPS) & (st.smin == st.smax) & (st.smin != grid.step)
    return np.logical_and.reduceat(on_row, st.starts) & ~own


# Up to this many series, every series' steps decide the table's frequency; above, a sample of about as many
_GRID_SAMPLE = 2000

_worker_ready = False  # the models' worker set-up has run in this Python worker (Spark reuses them)

_TYPES = dict(_RESULT)


def _plain(frame: pd.DataFrame) -> pd.DataFrame:
    """Columns as pyspark's Arrow conversion takes them: text and flags as Python objects with None where missing
    (it takes neither pandas 3's Arrow-backed strings nor an all-NaN float column as text), times as datetimes
    (a column a chunk left empty is NaN)."""
    for c, t in frame.dtypes.items():
        kind = _TYPES.get(c)
        if kind in ("string", "boolean") or pd.api.types.is_string_dtype(t):
            frame[c] = frame[c].astype(object).where(frame[c].notna(), None)
        elif kind == "timestamp_ntz" and not pd.api.types.is_datetime64_dtype(t):
            frame[c] = pd.to_datetime(frame[c])
    return frame


def _forecast_chunk(chunks: Iterator[pd.DataFrame], plan: _Plan) -> Iterator[pd.DataFrame]:
    """Every series of a partition (whole series: it is partitioned by key), as a local run forecasts a chunk:
    the rows of the result frame (mapInPandas)."""
    global _worker_ready
    from .backends.base import process_label
    from .model import fit_series
    from .models import worker_init
    from .outputs import errors_frame, forecast_frame, timings_frame
    from .runner import min_obs_verdict, settle
    from .sources import split_series

    pdf = _frames(chunks)
    if pdf is None:
        return
    config = plan.config
    id_cols = list(config.id_cols)
    if not _worker_ready:
        func, args = worker_init(plan.model)
        func(None, *args)  # None: a worker of another machine makes its own temp dir
        _worker_ready = True
    try:
        table = _checked(pdf, config)
    except InputError as e:
        reason = str(e).removeprefix("DataFrame: ")
        key = ", ".join(f"{c}={pdf[c].iloc[0]}" for c in id_cols)
        bad = pd.DataFrame({**{c: pdf[c].iloc[:1].to_numpy() for c in id_cols},
                            "reason": [f"{plan.label}: in the rows of the series with {key} and others: {reason}"],
                            "_row": ["input"]})
        yield _plain(bad.reindex(columns=list(plan.columns)))
        return
    series = split_series(table, id_cols)
    own_freq = np.zeros(len(series), dtype=bool)
    if config.model.freq is None and plan.grid.freq is not None:
        on = _on_grid(_chunk_steps(table, id_cols), plan.grid)
        own_freq = ~on
        for s, on_grid in zip(series, on):
            s.freq, s.table_freq = (plan.grid.freq if on_grid else None), plan.grid.freq
    label = process_label()
    results = []
    for s in series:
        verdict, reason, rule = min_obs_verdict(s, config)
        fitted = None
        if verdict == "fit":
            fitted = fit_series(s, plan.model)
            fitted.worker = label
        results.append(settle(s, verdict, reason, rule, fitted, config))
    fc = forecast_frame(results, id_cols, plan.run_id).assign(_row="forecast")
    timing = timings_frame(results, id_cols).assign(stage=[r.stage for r in results],
                                                    _rows=[len(s.ds) for s in series], _own_freq=own_freq,
                                                    _row="timing")
    errors = errors_frame(results, id_cols).assign(_row="error")
    yield _plain(pd.concat([fc, timing, errors], ignore_index=True).reindex(columns=list(plan.columns)))


def _schema(sdf: SparkFrame, id_cols: Sequence[str], fields: Sequence[tuple[str, str]]) -> str:
    """A DDL schema: the key columns with their types in `sdf`, then `fields`."""
    types = dict(sdf.dtypes)
    return ", ".join([f"`{c}` {types[c]}" for c in id_cols] + [f"`{n}` {t}" for n, t in fields])


def _check_columns(sdf: SparkFrame, config: ForecastConfig, label: str) -> None:
    from .sources.table import _missing_columns

    found = list(sdf.columns)
    roles = ([("id", "--id-col", c) for c in config.id_cols] + [("time", "--time-col", config.time_col)]
             + [("target", "--target-col", config.target_col)])
    missing = [(role, flag, col) for role, flag, col in roles if col not in found]
    if missing:
        raise _missing_columns(label, missing, found, {c for _, _, c in roles if c in found})


def _all_integers(col: str) -> Any:
    """1 when every value of a text column is an integer written without leading zeros (blanks aside), else 0."""
    from pyspark.sql import functions as F

    return F.min(F.coalesce(F.col(col).rlike(_INTEGER), F.lit(True)).cast("int"))


def integer_text_keys(sdf: SparkFrame, id_cols: Sequence[str]) -> SparkFrame:
    """Key columns read as text (a CSV) whose every value is an integer written without leading zeros, as
    integers, as a local run reads them (sources.table._integer_keys): one aggregate over the table."""
    from pyspark.sql import functions as F

    text = [c for c in id_cols if dict(sdf.dtypes)[c] == "string"]
    if not text:
        return sdf
    row = sdf.agg(*[_all_integers(c).alias(c) for c in text]).collect()[0]
    for c in text:
        if row[c] == 1:
            sdf = sdf.withColumn(c, F.col(c).cast("bigint"))
    return sdf


def _forecast_frame(sdf: SparkFrame, config: ForecastConfig, run_id: str, label: str,
                    text_keys: bool = False) -> SparkForecasts:
    """The lazy, persisted result of every series of `sdf` (see the module docstring); with `text_keys` (a CSV),
    key columns of integers become integers (`integer_text_keys`)."""
    from pyspark import StorageLevel
    from pyspark.sql import functions as F

    _check_columns(sdf, config, label)
    id_cols = list(config.id_cols)
    sdf = sdf.select(*id_cols, config.time_col, config.target_col)
    spark = sdf.sparkSession
    # whole series per partition, --chunks-per-job of them per core (as a local run's chunks), each one task, and
    # no fewer than the input's own splits (about 128 MB each), so what one task holds does not grow with the
    # table; `repartition` also keeps adaptive execution from merging a small table's partitions onto one core
    parts = max(spark_partitions(config, spark.sparkContext.defaultParallelism), sdf.rdd.getNumPartitions())
    # kept, so the passes below (keys, frequency, fits) read and shuffle the input once
    sdf = sdf.repartition(parts, *id_cols).persist(StorageLevel.MEMORY_AND_DISK)
    # one aggregate over the distinct keys (the table is partitioned by them: no second shuffle): the series, and
    # with `text_keys` (a CSV) which key columns hold only integers, which become integers (`integer_text_keys`)
    types = dict(sdf.dtypes)
    text = [c for c in id_cols if text_keys and types[c] == "string"]
    row = sdf.select(*id_cols).distinct().agg(F.count(F.lit(1)).alias("_series"),
                                              *[_all_integers(c).alias(c) for c in text]).collect()[0]
    n_series = int(row["_series"])
    for c in text:  # a cast keeps every series in its partition
        if row[c] == 1:
            sdf = sdf.withColumn(c, F.col(c).cast("bigint"))
    grid, sampled = _Grid(), 0
    if config.model.freq is None:
        # the table's frequency from the steps of every series, or of one series in k (by a hash of its key, so
        # every partition holds some) on a table of more than _GRID_SAMPLE series: the vote of each series (see
        # _grid_of) is then read off a sample, and the pass costs a few seconds of Python instead of a pass over
        # the whole table; only a table split almost evenly between two frequencies could be decided otherwise
        sample = sdf
        if n_series > _GRID_SAMPLE:
            sample = sdf.where(F.pmod(F.xxhash64(*id_cols), F.lit(-(-n_series // _GRID_SAMPLE))) == 0)
        stats = sample.mapInPandas(lambda chunks: _chunk_stats(chunks, config),
                                   ", ".join(f"`{n}` {t}" for n, t in _STATS)).toPandas()  # one row per series
        grid, sampled = _grid_of(stats), len(stats)
    model = config.model
    columns = tuple(id_cols) + tuple(n for n, _ in _RESULT)
    plan = _Plan(config, model, grid, run_id, label, columns)
    result = sdf.mapInPandas(lambda chunks: _forecast_chunk(chunks, plan), _schema(sdf, id_cols, _RESULT))
    result = result.persist(StorageLevel.MEMORY_AND_DISK)
    row = F.col("_row")
    return SparkForecasts(
        forecasts=result.filter(row == "forecast").select(*id_cols, *_FORECAST_COLS),
        timings=result.filter(row == "timing").select(*id_cols, *_TIMING_COLS),
        errors=result.filter(row == "error").select(*id_cols, "stage", "reason"),
        table_freq=grid.freq, series_total=n_series, partitions=parts, freq_sample=sampled, _all=result, _input=sdf)


def forecast_spark(sdf: SparkFrame, horizon: int = ModelOptions.horizon,
                   id_cols: Sequence[str] | str = ForecastConfig.id_cols, time_col: str = "ds",
                   target_col: str = "y", **options: Any) -> SparkForecasts:
    """Forecast every series of a Spark DataFrame on its executors, as `forecast run` would.

    Args:
        sdf: the long table (key columns, a time column, a target column).
        horizon, id_cols, time_col, target_col: as forecast.forecast.
        **options: any other setting, by its ForecastConfig or ModelOptions field name (seed=1, engine="fast",
            fallback="naive", min_obs=...); those a Spark run cannot honour are refused.

    Returns:
        SparkForecasts: forecasts, timings (one row per series) and errors, as lazy Spark DataFrames.

    Raises:
        ConfigError: an unknown option or one a Spark run cannot honour.
        InputError: a key, time or target column missing from `sdf`; a row failing a table check when the
            result is computed (see `raise_input_errors`).
    """
    from .api import _config
    from .backends.spark import SparkBackend

    config = _config(horizon, id_cols, time_col, target_col, None, options)
    SparkBackend.check_config(config)
    check_model(config.model)
    return _forecast_frame(sdf, config, config.run_id or "", "Spark DataFrame")


def check_model(model: ModelOptions) -> None:
    """The model options' checks a local run makes before any worker starts (a --holidays country)."""
    from .models import check_options

    check_options(model)


def raise_input_errors(result: SparkForecasts) -> None:
    """Raise the first table check a partition failed, as a local run refuses such a table: one line.

    Raises:
        InputError: naming the input, the series and the fault.
    """
    from pyspark.sql import functions as F

    bad = result._all.filter(F.col("_row") == "input").select("reason").limit(1).collect()
    if bad:
        raise InputError(bad[0]["reason"])


def spark_failure(e: BaseException) -> str:
    """The line of a Spark failure that says what went wrong: the Python error of a task (the last line of its
    traceback, e.g. "ModuleNotFoundError: No module named 'forecast'"), else the JVM's exception, first line."""
    text = str(getattr(e, "java_exception", None) or e)
    python = text.split("JVM stacktrace")[0]
    lines = [ln.strip() for ln in python.splitlines() if ln.strip()]
    errors = [ln for ln in lines if re.match(r"^[A-Za-z_.]*(Error|Exception)\b", ln)]
    return (errors[-1] if errors else lines[0] if lines else type(e).__name__)[:500]


# The driver JVM's own logging (connection retries, a stack trace per lost executor) would bury the run's one
# line; its errors reach the user through the exception this package turns into that line (spark_failure). The
# "repl" logger at the root's level keeps Spark from announcing its shell's default level.
_LOG4J = "rootLogger.level = fatal\nrootLogger.appenderRef.stderr.ref = console\nappender.console.type = Console\n" \
         "appender.console.name = console\nappender.console.target = SYSTEM_ERR\n" \
         "appender.console.layout.type = PatternLayout\nappender.console.layout.pattern = %m%n\n" \
         "logger.repl.name = org.apache.spark.repl.Main\nlogger.repl.level = fatal\n"


@dataclass
class _Session:
    """The Spark session of a run, whether this run started it, and where the JVM it launched writes."""

    spark: SparkSession
    started: bool
    jvm_log: Path | None  # the driver JVM's stdout and stderr; None when the JVM was there already

    def stop(self) -> None:
        """Stop what this run started, and remove the JVM's output."""
        if self.started:
            self.spark.stop()
        if self.jvm_log is not None:
            self.jvm_log.unlink(missing_ok=True)


def _first_line(path: Path | None) -> str:
    """The first line of what the JVM wrote (why it did not start: no Java, a bad option), its warnings aside."""
    try:
        text = path.read_text(errors="replace") if path is not None else ""
    except OSError:
        return ""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("WARNING:")]
    return lines[0][:300] if lines else ""


def _session(config: ForecastConfig) -> _Session:
    """The Spark session (config.master's, else the one spark-submit set up).

    A driver JVM this run launches writes to a temporary file, not to the terminal: the JVM announces itself on
    stderr before any logging setting applies ("WARNING: Using incubator modules"), and a run under cron with -q
    or --log-format json says only its own lines. Why it failed to start is quoted from that file.
    """
    import os
    import tempfile
    import warnings

    from pyspark import SparkConf, SparkContext
    from pyspark.java_gateway import launch_gateway
    from pyspark.sql import SparkSession

    # pyspark warns at every pandas conversion that it does not yet know pandas 3; the columns it is given are the
    # plain types it does know (see _plain)
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"pyspark\.")
    started = SparkSession.getActiveSession() is None
    fd, log4j = tempfile.mkstemp(prefix="forecast-log4j2-", suffix=".properties")
    with os.fdopen(fd, "w") as f:
        f.write(_LOG4J)
    conf = (SparkConf().setAppName("forecast")
            .set("spark.driver.extraJavaOptions", f"-Dlog4j2.configurationFile=file:{log4j}")
            # naive timestamps stay what they read: TimestampType columns come to pandas at UTC wall time
            .set("spark.sql.session.timeZone", "UTC")
            .set("spark.sql.legacy.parquet.nanosAsLong", "true")  # pandas' nanosecond times: see _read
            # a partition reaches pandas in fewer Arrow batches (its function takes it whole: _frames)
            .set("spark.sql.execution.arrow.maxRecordsPerBatch", "100000")
            .set("spark.ui.showConsoleProgress", "false"))  # the run reports itself; bars would break JSON logs
    if config.master is not None:
        conf.setMaster(config.master)
    jvm_log = None
    try:
        # a JVM of our own unless spark-submit (PYSPARK_GATEWAY_PORT) or an earlier session started one
        if started and SparkContext._gateway is None and "PYSPARK_GATEWAY_PORT" not in os.environ:
            fd, name = tempfile.mkstemp(prefix="forecast-spark-jvm-", suffix=".log")
            jvm_log = Path(name)
            with os.fdopen(fd, "wb") as out:  # the JVM keeps its own copy of the descriptor
                SparkContext(conf=conf, gateway=launch_gateway(conf, popen_kwargs={"stdout": out, "stderr": out}))
        spark = SparkSession.builder.config(conf=conf).getOrCreate()
    except Exception as e:  # no Java, a master that does not answer (Spark gives up after its retries)
        why = spark_failure(e)
        if "stopped SparkContext" in why:
            why = "no master answered (is it running, and is that its address and port?)"
        elif "JAVA_GATEWAY_EXITED" in why or "Java gateway process exited" in why:
            why = f"its Java process exited: {_first_line(jvm_log) or 'no Java 17 on the PATH or JAVA_HOME?'}"
        if jvm_log is not None:
            jvm_log.unlink(missing_ok=True)
        raise BackendError(f"--master {config.master or 'of the session'}: Spark could not start: {why}") from None
    finally:
        os.unlink(log4j)  # read once, when the driver's JVM starts
    spark.sparkContext.setLogLevel("ERROR")
    return _Session(spark, started, jvm_log)


def _read(spark: SparkSession, path: str, config: ForecastConfig) -> tuple[SparkFrame, bool]:
    """The input as Spark reads it on the executors: Parquet (a file, a partitioned directory) or CSV (as text,
    checked as a local run checks a CSV), and whether it is text (a CSV)."""
    from pyspark.sql import functions as F

    local = Path(path)
    remote = re.match(r"^[a-z][a-z0-9+.-]*://", path) is not None
    if not remote and not local.exists():
        raise InputError(f"{path}: no such file or directory")
    lower = path.lower().rstrip("/")
    csv = lower.endswith((".csv", ".csv.gz")) or (not remote and local.is_dir()
                                                  and any(local.rglob("*.csv")) and not any(local.rglob("*.parquet")))
    try:
        if csv:
            return spark.read.csv(path, header=True, inferSchema=False), True
        sdf = spark.read.parquet(path)
    except Exception as e:  # Spark's AnalysisException: an unreadable file, a schema it refuses
        raise InputError(f"{path}: Spark cannot read it as {'CSV' if csv else 'Parquet'}: "
                         f"{str(e).splitlines()[0]}") from None
    if dict(sdf.dtypes).get(config.time_col) == "bigint" and _nanosecond_times(local, config.time_col):
        # nanoseconds (pandas' default), which Spark reads only as numbers (nanosAsLong)
        sdf = sdf.withColumn(config.time_col, F.timestamp_micros(F.floor(F.col(config.time_col) / 1000))
                             .cast("timestamp_ntz"))
    return sdf, False


def _nanosecond_times(path: Path, col: str) -> bool:
    """Whether a local Parquet file (or the first of a directory's) stores `col` as nanosecond timestamps."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        file = path if path.is_file() else next(iter(sorted(path.rglob("*.parquet"))))
        field = pq.read_schema(file).field(col)
    except (StopIteration, KeyError, OSError, pa.ArrowException):
        return False
    return pa.types.is_timestamp(field.type) and field.type.unit == "ns"


def _cluster(spark: SparkSession) -> dict:
    """The backend's description for the summary: the master, the executors that run the series and their cores
    (a local master's one executor is the driver itself, with its threads as cores)."""
    sc = spark.sparkContext
    info = {"name": "spark", "master": sc.master, "scheduler": sc.master}  # "scheduler": where the workers are
    executors, cores = 0, 0
    try:
        jsc = sc._jsc.sc()
        local = bool(jsc.isLocal())
        listed = jsc.statusStore().executorList(True).iterator()  # the active ones
        while listed.hasNext():
            e = listed.next()
            if local or e.id() != "driver":  # a cluster's driver runs no task
                executors, cores = executors + 1, cores + int(e.totalCores())
    except Exception:  # Spark Connect has no JVM here: what the session says
        local = sc.master.startswith("local")
        executors, cores = (1 if local else 0), sc.defaultParallelism
    # "workers"/"threads": the keys every backend's description has (the summary's table reads them)
    return {**info, "local": local, "executors": executors, "cores": cores, "workers": executors, "threads": cores}


def run_spark(path: TableInput, config: ForecastConfig, reporter: Reporter | None = None) -> RunResult:
    """`forecast run PATH --backend spark`: every series of PATH forecast on Spark, the outputs written by Spark.

    Writes forecasts.parquet, timings.parquet and errors.parquet (Parquet datasets, directories) and summary.json
    into config.out_dir; the summary is built from aggregates, never from the rows.

    Returns:
        A RunResult with the exit code of a local run of the same outcome.

    Raises:
        InputError, ConfigError: the input or an option refused, before anything is written.
    """
    from importlib.metadata import version as installed

    from pyspark.sql import functions as F

    from .checkpoint import RunLock
    from .job import RunResult, end_event, run_summary
    from .outputs import default_out_dir, prepare_out_dir, write_json
    from .progress import SilentReporter
    from .timing import Tally, timing_fields

    reporter = reporter if reporter is not None else SilentReporter()
    if not isinstance(path, (str, Path)):
        raise ConfigError("--backend spark reads a path (a Parquet file or directory, a CSV); for a table in memory "
                          "use forecast.spark.forecast_spark on a Spark DataFrame")
    label = str(path)
    if label == "-":
        raise ConfigError("--backend spark cannot read standard input: Spark's executors read the input "
                          "themselves; save it to a file")
    check_model(config.model)
    out_dir = Path(config.out_dir) if config.out_dir is not None else default_out_dir()
    t0, cpu0 = time.perf_counter(), time.process_time()
    with RunLock(out_dir):
        prepare_out_dir(out_dir, config.overwrite)
        t_start = time.perf_counter()
        session = _session(config)
        spark = session.spark
        t_read = time.perf_counter()
        try:
            sdf, text = _read(spark, label, config)
            run_id = config.run_id_in(out_dir)
            # the input read and partitioned by series, and the table's frequency: before the one pass that fits
            result = _forecast_frame(sdf, config, run_id, label, text_keys=text)
            info = _cluster(spark)
            reporter.event("start", {"input": label, "out": str(out_dir), "series_total": result.series_total,
                                     "series_resumed": 0, "n_jobs": info["threads"]})
            row, status_col, stage_col = F.col("_row"), F.col("status"), F.col("stage")
            is_timing = row == "timing"

            def count(cond: Any) -> Any:
                return F.sum(F.when(is_timing & cond, 1).otherwise(0))

            def total(col: Any) -> Any:
                return F.sum(F.when(is_timing, col))

            t_map = time.perf_counter()
            agg = result._all.agg(
                count(F.lit(True)).alias("series"), total(F.col("_rows")).alias("rows"),
                *[count(status_col == s).alias(s) for s in ("ok", "failed", "fallback", "skipped")],
                count((status_col == "fallback") & ~stage_col.isin(*SENT_STAGES)).alias("after_failure"),
                count(stage_col == "min-obs").alias("below_min_obs"), count(F.col("_own_freq")).alias("own_freq"),
                total(F.col("cpu_seconds")).alias("task_cpu"),
                total(F.col("fit_seconds") + F.col("predict_seconds")).alias("task_wall"),
                # a table check a partition failed (see raise_input_errors), in the same pass
                F.first(F.when(row == "input", F.col("reason")), ignorenulls=True).alias("input_error"),
            ).collect()[0]  # the one pass that fits every series; the writes below read the persisted result
            if agg["input_error"] is not None:
                raise InputError(agg["input_error"])
            fit_seconds = time.perf_counter() - t_map
            slowest_rows = (result._all.filter(is_timing).select(*config.id_cols,
                                          (F.col("fit_seconds") + F.col("predict_seconds")).alias("s"))
                            .orderBy(F.desc("s")).limit(Tally.keep).collect())
            t_write = time.perf_counter()
            files = {name: out_dir / f"{name}.parquet" for name in ("forecasts", "timings", "errors")}
            frames = {"forecasts": result.forecasts, "timings": result.timings, "errors": result.errors}
            # three jobs at once: each is small beside its fixed cost (scheduling, the commit of its files)
            with ThreadPoolExecutor(len(files)) as pool:
                for done in [pool.submit(frames[name].write.mode("overwrite").parquet, str(target.resolve()))
                             for name, target in files.items()]:
                    done.result()
            write_seconds = time.perf_counter() - t_write
            key_types = {c: "int" if t in ("tinyint", "smallint", "int", "bigint") else "text"
                         for c, t in result.forecasts.select(*config.id_cols).dtypes}
            result.unpersist()
        except ForecastError:
            raise
        except Exception as e:  # a task that failed (e.g. an executor without forecast installed), a lost master
            raise BackendError(f"Spark ({spark.sparkContext.master}): the run failed: {spark_failure(e)}; see "
                               "docs/scaling.md for the executors' set-up") from None
        finally:
            session.stop()
        n_series, n_failed = int(agg["series"] or 0), int(agg["failed"] or 0)
        status = "failed" if n_failed > config.max_failed_frac * n_series else "ok"
        wall = time.perf_counter() - t0
        fields = {  # a local run's (runner.ForecastJob.finish), from the aggregates
            "series_ok": int(agg["ok"] or 0),
            "series_failed": n_failed,
            "series_fallback": int(agg["fallback"] or 0),
            "series_fallback_after_failure": int(agg["after_failure"] or 0),
            "series_below_min_obs": int(agg["below_min_obs"] or 0),
            "series_skipped": int(agg["skipped"] or 0),
            "series_resumed": 0,
            "run_id": run_id,
            "table_freq": config.model.freq or result.table_freq,
            "freq_given": config.model.freq is not None,
            "series_own_freq": int(agg["own_freq"] or 0),
            "key_types": key_types,
            "series_warm_started": None,
            "verdicts": None,
            "to_db": None,  # refused on Spark (backends/spark.py)
        }
        slowest = Tally()
        for r in slowest_rows:
            slowest.add(tuple(r[c] for c in config.id_cols), float(r["s"]), 0.0, 0.0, counted=False)
        timing = timing_fields(
            wall, time.process_time() - cpu0,
            {"start": t_read - t_start, "read": t_map - t_read, "fit_predict": fit_seconds, "write": write_seconds},
            n_series,
            float(agg["task_cpu"] or 0.0), float(agg["task_wall"] or 0.0), info["cores"],
            slowest.slowest(config.id_cols))
        notes = []
        if result.freq_sample < n_series and result.table_freq is not None:
            notes.append(f"the table's frequency {result.table_freq} was decided on the steps of "
                         f"{result.freq_sample:,} of its {n_series:,} series (a sample by key)")
        # the cluster's cores run the series: they are the run's cores and jobs
        summary = run_summary("run", status, label, _record(label), int(agg["rows"] or 0), n_series, n_series,
                              fields, info["cores"], info["cores"], info, result.partitions, timing, notes,
                              config.to_dict(), files, versions={"pyspark": installed("pyspark")})
        files["summary"] = write_json(summary, out_dir / "summary.json")
    reporter.event("end", end_event(summary))
    return RunResult(out_dir=out_dir, summary=summary, files=files)


def _record(path: str) -> dict:
    """The input as summary.json records it for plot and report: a file on this machine as a local run records
    it (the file source reads it again); a directory or a remote URI, which Spark read, by its path
    (`SparkInput.reopen`)."""
    from .sources import FileSource

    local = Path(path)
    if re.match(r"^[a-z][a-z0-9+.-]*://", path) is None and local.is_file():
        return FileSource(local).record()
    where = str(local.resolve()) if re.match(r"^[a-z][a-z0-9+.-]*://", path) is None else path
    return {"kind": "spark", "given": path, "path": where}


class SparkInput:
    """What a Spark run read that the file source does not (a partitioned Parquet directory, a remote URI), as
    plot and report reopen it from summary.json (registered as the source kind "spark"). Never chosen for an
    input: a Spark run opens its input itself (`_read`)."""

    kind = "spark"

    @classmethod
    def accepts(cls, obj: Any) -> bool:
        return False

    @classmethod
    def reopen(cls, record: dict) -> Any:
        """A Parquet directory on this machine as one table (its partition columns included), in memory.

        Raises:
            InputError: a remote path or a directory of CSV files, which only Spark reads; a directory gone.
        """
        import pyarrow.dataset as ds

        from .sources.frames import FrameSource

        given, where = str(record.get("given", record.get("path"))), Path(str(record.get("path")))
        if re.match(r"^[a-z][a-z0-9+.-]*://", str(record.get("path"))) is not None:
            raise InputError(f"the run's input {given} is read by Spark only; plots need the history: copy the "
                             "table to a local file and plot from a run of it")
        if not where.is_dir():
            raise InputError(f"the run's input {given} is not there any more ({where}); plots need the history")
        try:
            table = ds.dataset(where, format="parquet", partitioning="hive").to_table()
        except Exception as e:  # a directory of CSV files, damaged files
            raise InputError(f"the run's input {given} cannot be read here as a Parquet dataset ({e}); plots need "
                             "the history") from None
        source = FrameSource(table)
        source.label = given
        return source


def spark_partitions(config: ForecastConfig, parallelism: int) -> int:
    """How many partitions (tasks) the series are grouped into: --chunks-per-job per core of the cluster."""
    return max(1, parallelism * config.chunks_per_job)
