"""`run_backtest`: rolling-origin backtests of every series, Prophet against a seasonal-naive baseline.

Per series (`backtest_series`, run in the workers through the same chunk-and-map core as `forecast run`): the
last `windows` origins, `step` rows apart, the last one `horizon` rows before the series' end. At each origin a
new Prophet model is fitted to the rows before it (model.py's validation, options and fit) and forecasts the
next `horizon` rows; the seasonal-naive baseline forecasts the same rows from the same history. Regressor, cap
and floor values of the test rows come from the input table itself, so --future is not needed.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from . import metrics
from .backends import make_backend
from .config import BacktestConfig, ModelOptions
from .core import Failed, MapInterrupted, effective_n_jobs, map_chunks, plan_chunks, usable_cores
from .model import (SeriesData, SeriesProblem, check_options, checked_frame, engine_fit_predict, fit_predict,
                    init_worker, predict_frame, scratch_cleanup, series_freq, validate_series)
from .outputs import _key_frame, default_out_dir, errors_frame, prepare_out_dir, timings_frame, write_json, write_table
from .runner import (RunResult, _sigterm_as_interrupt, _table_grid, _versions, above_cores, capped_n_jobs,
                     run_temp_root, worker_initargs)
from .sources import TableInput, key_types, load_series, open_source
from .timing import Clock, run_timing, series_cpu

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


def run_backtest(path: TableInput, config: BacktestConfig, progress: Callable[[int, int], None] | None = None,
                 notify: Callable[[str], None] | None = None) -> RunResult:
    """Backtest every series of a long table; write metrics.csv, backtest.parquet, timings, errors, summary.

    Args:
        path: the input table: a path, a DataFrame, an Arrow table (see sources.open_source).
        config: the run's configuration and the windows.
        progress: called as progress(done, total) as series finish.
        notify: called with one-line messages for the user.

    Returns:
        A RunResult, as a run's; summary["overall"] holds the overall metrics of Prophet and of the baseline.

    Raises:
        InputError, ConfigError: before anything is written.
        BackendError: when workers cannot start.
    """
    run = config.run
    clock = Clock()
    source = open_source(path)
    out_dir = Path(run.out_dir) if run.out_dir is not None else default_out_dir()
    prepare_out_dir(out_dir, run.overwrite)
    check_options(run.model)
    with clock.stage("read"):
        table, series, notes, model = load_series(source, run, with_future=False)
        grid = _table_grid(table, series, run)
    for note in notes:
        if notify is not None:
            notify(note)

    status = "ok"
    with run_temp_root() as tmp_root, clock.stage("backtest"), _sigterm_as_interrupt():
        asked = capped_n_jobs(run, [len(s.ds) for s in series], notify) if above_cores(run) else run.n_jobs
        initargs = worker_initargs(run.model, tmp_root, effective_n_jobs(asked) == 1)
        try:
            # caught outside the backend's block, as run_forecast does: the backend sees the interrupt and stops
            # its workers at once instead of waiting for their chunks
            with make_backend(None, asked, init_worker, initargs) as backend:
                n_jobs = backend.n_jobs
                chunks = plan_chunks([len(s.ds) for s in series], n_jobs, run.chunks_per_job, run.chunk_rows)
                func = partial(backtest_series, opts=model, windows=config.windows, step=config.effective_step,
                               season_length=config.season_length)
                outcomes = map_chunks(func, series, backend, chunks=chunks, progress=progress)
        except MapInterrupted as e:
            status = "interrupted"
            outcomes = [e.partial.get(i) for i in range(len(series))]

    results = [_as_result(s, o) for s, o in zip(series, outcomes) if o is not None]
    n_failed = sum(r.status != "ok" for r in results)
    if status == "ok" and n_failed > run.max_failed_frac * len(series):
        status = "failed"
    with clock.stage("write"):
        scores, overall = metrics_frame(results, run.id_cols)
        files = {
            "metrics": write_table(scores, out_dir / "metrics.csv"),
            "backtest": write_table(backtest_frame(results, run.id_cols), out_dir / "backtest.parquet"),
            "timings": write_table(timings_frame(results, run.id_cols), out_dir / "timings.csv"),
            "errors": write_table(errors_frame(results, run.id_cols), out_dir / "errors.csv"),
        }
    summary = {
        "command": "backtest",
        "status": status,
        "input": source.label,
        "source": source.record(),  # what plot and report reopen
        "rows": int(len(table)),
        "series_total": len(series),
        "series_done": len(results),
        "series_ok": len(results) - n_failed,
        "series_failed": n_failed,
        "horizon": model.horizon,
        "windows": config.windows,
        "step": config.effective_step,
        "table_freq": grid.freq,
        "freq_given": model.freq is not None,
        "series_own_freq": int(np.count_nonzero(~grid.on_grid)),
        "key_types": key_types(table, run.id_cols),
        "overall": overall,
        # which engine fitted the Prophet windows, in series: --engine fast sends a few series to stan
        "engines": {str(e): int(n) for e, n in pd.Series([r.engine for r in results if r.status == "ok"],
                                                         dtype=object).value_counts().items()},
        "aggregation": AGGREGATION,
        "cores": usable_cores(),
        "n_jobs": n_jobs,
        "chunks": len(chunks),
        **run_timing(clock, results, results, n_jobs, run.id_cols),
        "notes": notes,
        "versions": _versions(),
        "config": config.to_dict(),
        "files": {name: p.name for name, p in files.items()},
    }
    files["summary"] = write_json(_json_ready(summary), out_dir / "summary.json")
    return RunResult(out_dir=out_dir, summary=summary, files=files)


def _json_ready(value):
    """NaN (a metric that cannot be computed) as null, so summary.json stays valid JSON."""
    if isinstance(value, dict):
        return {k: _json_ready(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_ready(v) for v in value]
    if isinstance(value, float) and np.isnan(value):
        return None
    return value
