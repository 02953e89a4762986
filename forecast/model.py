"""The per-series functions a run maps: `fit_series` (the run's model) and `serve_fallback` (a second model for a
series the first did not serve). Knows nothing about pools.

`fit_series` never raises for a problem of its series: it returns a `SeriesResult` with status "failed", the stage
("validate", "frequency", "future", "fit", "predict") and the reason, so one series can never sink a run.
"""

from __future__ import annotations

import time
from dataclasses import replace

import numpy as np

from .config import ModelOptions
from .freq import horizon_dates, series_freq
from .models import get_model
from .timing import series_cpu
from .types import SeriesData, SeriesProblem, SeriesResult

__all__ = ["fit_series", "serve_fallback"]


def fit_series(series: SeriesData, opts: ModelOptions, model: str = "prophet") -> SeriesResult:
    """Fit one model to one series and forecast `opts.horizon` steps past its last timestamp.

    Args:
        series: the series.
        opts: model options.
        model: the registered model to fit (see models.model_names()).

    Returns:
        A SeriesResult, with status "failed" and the stage and reason for a problem of this series.
    """
    # the worker's label is the backend's to give (job.py sets it from what the backend reports)
    result = SeriesResult(key=series.key, status="failed", n_obs=int((~np.isnan(series.y)).sum()))
    cpu0 = series_cpu()
    stage = "validate"
    try:
        fitter = get_model(model)
        fitter.check(series, opts)
        stage = "frequency"
        freq = series_freq(series, opts)
        stage = "future"
        future = horizon_dates(series.ds[-1], freq, opts.horizon)
        if opts.include_history:
            future = np.concatenate([np.asarray(series.ds, dtype="datetime64[ns]"), future])
        stage = "fit"
        fc = fitter.forecast(series, future, opts)
        result.fit_seconds, result.predict_seconds = fc.fit_seconds, fc.predict_seconds
        result.ds, result.yhat, result.yhat_lower, result.yhat_upper = fc.ds, fc.yhat, fc.yhat_lower, fc.yhat_upper
        result.status, result.model, result.engine, result.params = "ok", fc.model, fc.engine, fc.params
        result.bands = fc.bands
        if fc.note:  # why the model served is not quite the one asked for (Prophet with fewer terms, say)
            result.error = fc.note
    except SeriesProblem as e:
        result.stage, result.error = e.stage, str(e)
        result.fit_seconds = getattr(e, "fit_seconds", 0.0)
    except Exception as e:  # anything else about this series' data: record it, go on with the rest
        result.stage, result.error = stage, f"{type(e).__name__}: {e}".splitlines()[0]
    result.cpu_seconds = series_cpu() - cpu0
    return result


def serve_fallback(series: SeriesData, opts: ModelOptions, kind: str, result: SeriesResult) -> SeriesResult:
    """Give a series that failed (or that triage sent to fallback) the forecast of a second, simple model.

    The stage and reason in `result` are kept, so the series still shows why its model did not serve it. Only
    future rows are produced, on the series' grid (`opts.freq`, the table's frequency, or its own). A series
    with one value gets its forecast too. Seasonal-naive with less than one season of history is naive: the model
    says fallback:naive and the reason says why. When even the simple forecast is impossible (no frequency, or
    all values missing for anything but "zero"), the series stays failed and its reason says why.

    Args:
        series: the series.
        opts: model options (horizon, freq, interval_width, non_negative).
        kind: the fallback model, one of models.fallback_names().
        result: the failed (or triaged) result of this series.

    Returns:
        `result`, updated: status "fallback" and model "fallback:<model>" with the forecast, or still "failed".
    """
    t0 = time.perf_counter()
    try:
        freq = series_freq(series, opts)
        future = horizon_dates(series.ds[-1], freq, opts.horizon)
        # the frequency worked out once: the model's own series_freq then takes it as the table's
        fc = get_model(kind).forecast(replace(series, freq=freq), future, opts)
    except SeriesProblem as e:
        result.status = "failed"
        result.error = f"{result.error}; fallback {kind} impossible: {e}" if result.error else str(e)
        return result
    if fc.note:
        result.error = f"{result.error}; {fc.note}" if result.error else fc.note
    result.ds, result.yhat, result.yhat_lower, result.yhat_upper = fc.ds, fc.yhat, fc.yhat_lower, fc.yhat_upper
    result.status, result.model = "fallback", f"fallback:{fc.model}"
    result.bands = fc.bands
    result.predict_seconds += time.perf_counter() - t0
    return result
