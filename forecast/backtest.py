"""`run_backtest`: rolling-origin backtests of every series, Prophet against a seasonal-naive baseline.

Per series (`backtest_series`, run in the workers through the same chunk-and-map core as `forecast run`): the
last `windows` origins, `step` rows apart, the last one `horizon` rows before the series' end. At each origin a
new Prophet model is fitted to the rows before it (model.py's validation, options and fit) and forecasts the
next `horizon` rows; the seasonal-naive baseline forecasts the same rows from the same history. Regressor, cap
and floor values of the test rows come from the input table itself, so --future is not needed.

`run_backtest` is job.py's skeleton, as `forecast run` is, with `BacktestJob` for what differs: so a backtest
runs on any backend, holds its output directory's lock, keeps finished series in part files for --resume, and
logs the same start / failed / end events.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from . import metrics
from .checkpoint import PartSchema
from .config import BacktestConfig, ModelOptions
from .core import Failed
from .outputs import _key_frame, errors_frame, timings_frame, write_table
from .job import Job, Loaded, Mapped, RunResult, Written, run_job
from .model import (SeriesData, SeriesProblem, checked_frame, engine_fit_predict, fit_predict, predict_frame,
                    scratch_cleanup, series_freq, validate_series)
from .progress import Reporter
from .sources import key_types, load_series
from .runner import _table_grid
from .timing import Clock, series_cpu

MODELS = ("prophet", "seasonal_naive")
AGGREGATION = ("MAE, RMSE, WAPE, sMAPE, MAPE and coverage pool every scored point of every series (WAPE = sum of "
               "absolute errors / sum of absolute actuals); MASE is the mean of the per-series MASE")


@dataclass
class BacktestResult:
    """One series' backtest: every window's forecasts and actuals as arrays (one entry per test row)."""

    key: tuple
    status: str
    n_obs: int
    window: np.ndarray = field(default_factory=lambda: np.array([], dtype="int64"))
    cutoff: np.ndarray = field(default_factory=lambda: np.array([], dtype="datetime64[ns]"))
    ds: np.ndarray = field(default_factory=lambda: np.array([], dtype="datetime64[ns]"))
    y: np.ndarray = field(default_factory=lambda: np.array([]))
    yhat: np.ndarray = field(default_factory=lambda: np.array([]))
    yhat_lower: np.ndarray = field(default_factory=lambda: np.array([]))
    yhat_upper: np.ndarray = field(default_factory=lambda: np.array([]))
    naive: np.ndarray = field(default_factory=lambda: np.array([]))
    scale: np.ndarray = field(default_factory=lambda: np.array([]))  # MASE scale of the point's window
    season_length: int = 0
    fit_seconds: float = 0.0
    predict_seconds: float = 0.0
    cpu_seconds: float = 0.0
    worker: str = ""
    stage: str = ""
    error: str = ""
    model: str = ""  # timings.csv says which model was timed, as for a run: prophet once scored, else empty
    verdict: str = ""  # a backtest does not triage
    engine: str = ""  # which engine fitted the windows (fast, stan or prophet); empty when none did


def _windows(n: int, horizon: int, windows: int, step: int) -> list[tuple[int, int]]:
    """(start, end) row ranges of the test windows, oldest first; the last ends at the last row."""
    needed = horizon + (windows - 1) * step + 2
    if n < needed:
        raise SeriesProblem("backtest", f"{n} rows are too few for {windows} window(s) of {horizon} "
                            f"step(s), {step} apart; need at least {needed} (2 to fit the first one)")
    return [(n - horizon - k * step, n - k * step) for k in reversed(range(windows))]


def _grid_positions(ds: np.ndarray, freq: str) -> np.ndarray:
    grid = pd.date_range(ds[0], ds[-1], freq=freq)
    pos = grid.get_indexer(pd.DatetimeIndex(ds))
    if (pos < 0).any():
        first = pd.Timestamp(ds[np.flatnonzero(pos < 0)[0]])
        raise SeriesProblem("frequency", f"timestamp {first} is off the series' {freq} grid; pass --freq")
    return pos


def backtest_series(series: SeriesData, opts: ModelOptions, windows: int, step: int,
                    season_length: int | None = None) -> BacktestResult:
    """Backtest one series over rolling origins (see the module docstring).

    Returns:
        A BacktestResult; status "failed" with the stage and reason for a problem of this series (too short,
        off-grid timestamps, a window Prophet cannot fit).
    """
    result = BacktestResult(key=series.key, status="failed", n_obs=int((~np.isnan(series.y)).sum()),
                            worker=f"{socket.gethostname()}:{os.getpid()}")
    cpu0 = series_cpu()
    stage = "validate"
    try:
        with scratch_cleanup():
            validate_series(series, opts)  # infinities and missing regressors anywhere in the series
            stage = "frequency"
            freq = series_freq(series, opts)
            pos = _grid_positions(series.ds, freq)
            m = season_length or metrics.season_length(freq)
            y_grid = np.full(pos[-1] + 1, np.nan)
            y_grid[pos] = series.y
            parts: dict[str, list] = {k: [] for k in ("window", "cutoff", "ds", "y", "yhat", "yhat_lower",
                                                       "yhat_upper", "naive", "scale")}
            for w, (start, end) in enumerate(_windows(len(series.ds), opts.horizon, windows, step)):
                cutoff = series.ds[start - 1]
                stage = f"window {w} (cutoff {pd.Timestamp(cutoff)})"
                train = SeriesData(key=series.key, ds=series.ds[:start], y=series.y[:start],
                                   extra={c: v[:start] for c, v in series.extra.items()},
                                   future_ds=series.ds[start:], future_extra={c: v[start:] for c, v in
                                                                              series.extra.items()})
                checked = checked_frame(train, opts)
                if checked is None:  # --engine stan or fast
                    fc = engine_fit_predict(train, series.ds[start:end], opts, source="the input table")
                    result.engine = fc["engine"]
                else:
                    frame = predict_frame(series, series.ds[start:end], opts, source="the input table")
                    fc = fit_predict(checked, frame, opts, series.key)
                    result.engine = "prophet"
                result.fit_seconds += fc["fit_seconds"]
                result.predict_seconds += fc["predict_seconds"]
                history = y_grid[:pos[start - 1] + 1]
                m_window = m if len(history) > m else 1  # too short for a whole season: plain naive
                n = end - start
                parts["window"].append(np.full(n, w))
                parts["cutoff"].append(np.full(n, cutoff))
                parts["ds"].append(series.ds[start:end])
                parts["y"].append(series.y[start:end])
                for name in ("yhat", "yhat_lower", "yhat_upper"):
                    parts[name].append(fc[name])
                parts["naive"].append(metrics.seasonal_naive(history, pos[start:end] - pos[start - 1], m_window))
                parts["scale"].append(np.full(n, metrics.naive_scale(history, m_window)))
        for name, values in parts.items():
            setattr(result, name, np.concatenate(values))
        result.season_length = m
        result.status, result.model = "ok", "prophet"
    except SeriesProblem as e:
        result.stage = e.stage
        result.error = f"{stage}: {e}" if stage.startswith("window") else str(e)
    except Exception as e:  # anything else about this series' data: record it, go on with the rest
        result.stage, result.error = stage, f"{type(e).__name__}: {e}".splitlines()[0]
    result.cpu_seconds = series_cpu() - cpu0
    return result


def _as_result(series: SeriesData, outcome) -> BacktestResult:
    if isinstance(outcome, Failed):
        stage = "worker" if outcome.kind == "worker-died" else "internal"
        return BacktestResult(key=series.key, status="failed", n_obs=int((~np.isnan(series.y)).sum()),
                              stage=stage, error=outcome.reason)
    return outcome


def backtest_frame(results: list[BacktestResult], id_cols) -> pd.DataFrame:
    """Every scored row: key columns, window, cutoff, ds, y, yhat, yhat_lower, yhat_upper, yhat_naive."""
    ok = [r for r in results if r.status == "ok"]
    frame = _key_frame(id_cols, [r.key for r in ok], [len(r.ds) for r in ok])

    def cat(name: str, dtype: str) -> np.ndarray:
        parts = [getattr(r, name) for r in ok]
        return np.concatenate(parts).astype(dtype) if parts else np.array([], dtype=dtype)

    frame["window"] = cat("window", "int64")
    frame["cutoff"] = cat("cutoff", "datetime64[ns]")
    frame["ds"] = cat("ds", "datetime64[ns]")
    for name in ("y", "yhat", "yhat_lower", "yhat_upper"):
        frame[name] = cat(name, "float64")
    frame["yhat_naive"] = cat("naive", "float64")
    return frame


def metrics_frame(results: list[BacktestResult], id_cols) -> tuple[pd.DataFrame, dict[str, dict]]:
    """Per series and model, every metric (metrics.csv); and the overall figures per model.

    Returns:
        (frame, overall): frame has the key columns, model, season_length, then n, mae, rmse, wape, smape,
        mase, mape, mape_skipped, coverage; overall maps each model to the same figures over all series.
    """
    ok = [r for r in results if r.status == "ok"]
    rows, overall = [], {}
    for model in MODELS:
        series_mase = []
        for r in ok:
            yhat = r.yhat if model == "prophet" else r.naive
            bounds = (r.yhat_lower, r.yhat_upper) if model == "prophet" else (None, None)
            figures = metrics.score(r.y, yhat, *bounds, scale=r.scale)
            series_mase.append(figures["mase"])
            rows.append({**dict(zip(id_cols, r.key)), "model": model, "engine": r.engine if model == "prophet" else "",
                         "season_length": r.season_length, **figures})
        cat = (lambda name: np.concatenate([getattr(r, name) for r in ok]) if ok else np.array([]))
        yhat = cat("yhat") if model == "prophet" else cat("naive")
        lower, upper = (cat("yhat_lower"), cat("yhat_upper")) if model == "prophet" else (None, None)
        overall[model] = metrics.overall(cat("y"), yhat, lower, upper, series_mase)
    columns = list(id_cols) + ["model", "engine", "season_length", "n", *metrics.METRICS[:-2], "mape", "mape_skipped",
                               "coverage"]
    frame = pd.DataFrame(rows, columns=columns)
    return frame, overall


# A backtest's parts: each series' status and timings, and its windows' rows, so a resumed backtest scores what
# it did before as it did then.
BACKTEST_PARTS = PartSchema(
    BacktestResult,
    scalars={"status": pa.string(), "n_obs": pa.int64(), "season_length": pa.int64(), "fit_seconds": pa.float64(),
             "predict_seconds": pa.float64(), "cpu_seconds": pa.float64(), "worker": pa.string(),
             "stage": pa.string(), "error": pa.string(), "model": pa.string(), "verdict": pa.string(),
             "engine": pa.string()},
    arrays={"window": "int64", "cutoff": "datetime64[ns]", "ds": "datetime64[ns]", "y": "float64",
            "yhat": "float64", "yhat_lower": "float64", "yhat_upper": "float64", "naive": "float64",
            "scale": "float64"},
)


class BacktestJob(Job):
    """`forecast backtest` as a job: every series' windows scored, metrics written."""

    kind = "backtest"
    map_stage = "backtest"
    schema = BACKTEST_PARTS

    def __init__(self, config: BacktestConfig):
        super().__init__(config.run)
        self.backtest = config

    def settings(self) -> dict:
        return self.backtest.to_dict()

    def load(self, source) -> Loaded:
        table, series, notes, model = load_series(source, self.config, with_future=False)
        self.grid = _table_grid(table, series, self.config)
        return Loaded(table, series, notes, model)

    def work(self, source, loaded: Loaded, items: list, chunks: list[list[int]]):
        bt = self.backtest
        return items, partial(backtest_series, opts=loaded.model, windows=bt.windows, step=bt.effective_step,
                              season_length=bt.season_length)

    def as_result(self, series, outcome) -> BacktestResult:
        return _as_result(series, outcome)

    def finish(self, source, loaded: Loaded, mapped: Mapped, out_dir: Path, clock: Clock,
               reporter: Reporter) -> Written:
        run, model = self.config, loaded.model
        by_index = {**mapped.done, **mapped.new}
        results = [by_index[i] for i in range(len(loaded.series)) if i in by_index]
        n_failed = sum(r.status != "ok" for r in results)
        status = mapped.status
        if status == "ok" and n_failed > run.max_failed_frac * len(loaded.series):
            status = "failed"
        with clock.stage("write"):
            scores, overall = metrics_frame(results, run.id_cols)
            files = {
                "metrics": write_table(scores, out_dir / "metrics.csv"),
                "backtest": write_table(backtest_frame(results, run.id_cols), out_dir / "backtest.parquet"),
                "timings": write_table(timings_frame(results, run.id_cols), out_dir / "timings.csv"),
                "errors": write_table(errors_frame(results, run.id_cols), out_dir / "errors.csv"),
            }
        fields = {
            "series_ok": len(results) - n_failed,
            "series_failed": n_failed,
            "series_resumed": len(mapped.done),
            "horizon": model.horizon,
            "windows": self.backtest.windows,
            "step": self.backtest.effective_step,
            "table_freq": self.grid.freq,
            "freq_given": model.freq is not None,
            "series_own_freq": int(np.count_nonzero(~self.grid.on_grid)),
            "key_types": key_types(loaded.table, run.id_cols),
            "overall": overall,
            # which engine fitted the Prophet windows, in series: --engine fast sends a few series to stan
            "engines": {str(e): int(n) for e, n in pd.Series([r.engine for r in results if r.status == "ok"],
                                                             dtype=object).value_counts().items()},
            "aggregation": AGGREGATION,
        }
        # throughput counts only the work of this try, not what a resume took over
        return Written(status=status, fields=fields, files=files, results=results, timed=list(mapped.new.values()))

    def json_ready(self, summary: dict) -> dict:
        return _json_ready(summary)


def run_backtest(path, config: BacktestConfig, reporter: Reporter | None = None) -> RunResult:
    """Backtest every series of a long table; write metrics.csv, backtest.parquet, timings, errors, summary.

    Finished series are checkpointed as part files as a run's are, so an interrupted backtest is finished with
    config.run.resume; one job at a time holds the output directory; it runs on config.run.backend.

    Args:
        path: the input table.
        config: the run's configuration and the windows.
        reporter: told progress, notes and the "start", "failed" and "end" events; None tells nothing.

    Returns:
        A RunResult, as a run's; summary["overall"] holds the overall metrics of Prophet and of the baseline.

    Raises:
        InputError, ConfigError: before anything is written.
        RunLockedError: another job is writing into the output directory.
        BackendError: when workers cannot start.
    """
    return run_job(BacktestJob(config), path, reporter)


def _json_ready(value):
    """NaN (a metric that cannot be computed) as null, so summary.json stays valid JSON."""
    if isinstance(value, dict):
        return {k: _json_ready(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_ready(v) for v in value]
    if isinstance(value, float) and np.isnan(value):
        return None
    return value
