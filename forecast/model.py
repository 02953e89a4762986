"""One Prophet model per series: check the series, fit, predict. Knows nothing about pools.

`fit_series` never raises for a problem of its series: it returns a `SeriesResult` with status "failed", the stage
("validate", "frequency", "future", "fit", "predict") and the reason, so one series can never sink a run.

pandas is imported inside the functions that need it (stock Prophet, --future values, fallbacks), not here: a
worker of the stan and fast engines then never loads it, which was most of its start-up time (a test checks).
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import socket
import tempfile
import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Iterator

import numpy as np

from .config import ModelOptions
from .engines.model import regular_step
from .timing import series_cpu

if TYPE_CHECKING:  # pandas is imported where it is used (see the module doc)
    import pandas as pd

_QUIET_LOGGERS = ("cmdstanpy", "prophet", "prophet.plot", "prophet.models", "prophet.forecaster")


@dataclass
class SeriesData:
    """One series as plain arrays: its key (one value per id column), sorted timestamps and values.

    `extra` holds the regressor / cap / floor columns over the history (by input column name); `future_ds` and
    `future_extra` their values past the history, from --future (None and empty when there is no such file).
    """

    key: tuple
    ds: np.ndarray  # datetime64[ns], ascending, unique
    y: np.ndarray  # float64, NaN where missing
    extra: dict[str, np.ndarray] = field(default_factory=dict)
    future_ds: np.ndarray | None = None
    future_extra: dict[str, np.ndarray] = field(default_factory=dict)
    warm: dict | None = None  # parameters of a previous run's fit of this series (--warm-start), engines only
    freq: str | None = None  # the table's frequency when the series lies on its grid; None: infer its own
    table_freq: str | None = None  # the table's frequency, on its grid or not (for the reason of an off-grid one)


@dataclass
class SeriesResult:
    """What fitting one series produced. Small and picklable; the forecast is kept as arrays."""

    key: tuple
    status: str  # "ok" or "failed"
    n_obs: int
    ds: np.ndarray = field(default_factory=lambda: np.array([], dtype="datetime64[ns]"))
    yhat: np.ndarray = field(default_factory=lambda: np.array([]))
    yhat_lower: np.ndarray = field(default_factory=lambda: np.array([]))
    yhat_upper: np.ndarray = field(default_factory=lambda: np.array([]))
    fit_seconds: float = 0.0
    predict_seconds: float = 0.0
    cpu_seconds: float = 0.0
    worker: str = ""
    stage: str = ""
    error: str = ""
    model: str = ""  # what made the forecast: "prophet", "fallback:naive", ...; empty when there is none
    verdict: str = ""  # the triage verdict (fit, fallback, skip) when the run triaged its series
    engine: str = ""  # the engine that fitted the series: prophet, stan or fast (see engines/)
    params: dict | None = None  # the stan/fast engines' fitted parameters (engines.params_dict), for --warm-start
    cutoff: Any = None  # the series' last timestamp (the forecast starts after it); set when the run assembles


# The stages of a series sent to a fallback on purpose, before any fit: by --triage, or for having fewer values
# than --min-obs. Such a series did not fail (errors.csv does not list it; timings.csv has its reason).
SENT_STAGES = ("triage", "min-obs")


class SeriesProblem(Exception):
    """A problem of one series; carries the stage it was found at."""

    def __init__(self, stage: str, reason: str):
        super().__init__(reason)
        self.stage = stage


def quiet_logs() -> None:
    """Silence cmdstanpy's and Prophet's chatter (per-fit INFO lines, the plotly notice, Newton fallbacks)."""
    for name in _QUIET_LOGGERS:
        logger = logging.getLogger(name)
        # disabled survives the setLevel calls these libraries make at import; a handler of our own stops
        # cmdstanpy from attaching its stderr handler (it only does so when the logger has none).
        logger.disabled = True
        logger.propagate = False
        if not logger.handlers:
            logger.addHandler(logging.NullHandler())
    # pandas deprecation notices about Prophet's own code: nothing a user of forecast can act on
    warnings.filterwarnings("ignore", module=r"prophet(\.|$)")
    warnings.filterwarnings("ignore", category=FutureWarning)


_worker_tmp: str | None = None


def init_worker(tmp_root: str | None = None, import_prophet: bool = True) -> None:
    """Run once in each worker: a private temp dir, quiet loggers, Prophet imported (unless `import_prophet` is
    False: the stan and fast engines do without it, and it is then imported on first use).

    cmdstanpy writes every fit's data, inits and outputs to a temp dir made at its import and never empties it;
    over thousands of fits that grows /tmp without bound. Each worker therefore points TMPDIR at a directory of
    its own (under `tmp_root`, which the run removes at the end, even for killed workers) before cmdstanpy is
    imported, and `fit_series` empties it after every fit.
    """
    global _worker_tmp
    quiet_logs()
    if tmp_root is not None:
        _worker_tmp = tempfile.mkdtemp(prefix=f"worker-{os.getpid()}-", dir=tmp_root)
        os.environ["TMPDIR"] = _worker_tmp
        tempfile.tempdir = _worker_tmp
    if not import_prophet:
        return
    import cmdstanpy  # noqa: F401  (its temp dir is made now, inside ours)
    import prophet  # noqa: F401

    quiet_logs()  # again: importing them may have attached handlers and reset levels


def _cmdstan_tmp() -> str | None:
    """cmdstanpy's temp dir, None while cmdstanpy is not imported (the stan and fast engines do not import it)."""
    import sys

    return getattr(sys.modules.get("cmdstanpy"), "_TMPDIR", None)


def _remove_new_entries(directory: str | None, before: set[str]) -> None:
    """Delete what a fit left in cmdstanpy's temp dir (its output dir, csv and json files)."""
    if directory is None or not os.path.isdir(directory):
        return
    for name in set(os.listdir(directory)) - before:
        path = os.path.join(directory, name)
        if os.path.isdir(path):
            shutil.rmtree(path, ignore_errors=True)
        else:
            try:
                os.unlink(path)
            except OSError:
                pass


def series_seed(seed: int, key: tuple) -> int:
    """A 32-bit seed derived from (seed, series key) alone, so draws do not depend on workers or chunking."""
    text = "\x1f".join([str(seed)] + [str(k) for k in key])
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "little")


# Offsets of a fixed length, in nanoseconds; and the steps of calendar grids, which vary in length, as (shortest,
# longest) in days. The frequency inference here and forecast check's profile (profile.py) share both.
FIXED_STEPS = {"D": 86_400 * 10**9, "h": 3_600 * 10**9, "min": 60 * 10**9, "s": 10**9}
CALENDAR_DAYS = {"month": (28, 31), "quarter": (89, 92), "year": (365, 366)}
_PLAIN_STEPS = {FIXED_STEPS[u]: u for u in ("D", "h")}  # pd.infer_freq of a regular index with these steps


def infer_freq(ds: np.ndarray) -> str:
    """The series' frequency as a pandas offset string.

    pandas' own inference needs a perfectly regular index; real series have gaps (days without sales removed,
    a missing week). When it gives up, the most common step is used if at least half the steps are that step.

    Raises:
        SeriesProblem: when no frequency can be told.
    """
    ns = np.asarray(ds, dtype="datetime64[ns]").view("int64")
    step = regular_step(ns) if len(ns) >= 3 else None
    if step in _PLAIN_STEPS:  # a gapless daily or hourly series: what pandas' inference says, without its cost
        return _PLAIN_STEPS[step]
    import pandas as pd

    idx = pd.DatetimeIndex(ds).as_unit("ns")
    if len(idx) >= 3:
        with warnings.catch_warnings():  # pandas 3 announces a change of return type; both are handled
            warnings.simplefilter("ignore")
            freq = pd.infer_freq(idx)
        if freq is not None:
            return getattr(freq, "freqstr", freq)
    steps = np.diff(idx.asi8)
    if len(steps) == 0:
        raise SeriesProblem("frequency", "a single timestamp: cannot infer the frequency; pass --freq")
    calendar = _calendar_freq(idx, steps)
    if calendar is not None:
        return calendar
    values, counts = np.unique(steps, return_counts=True)
    best = int(np.argmax(counts))
    if counts[best] * 2 >= len(steps):
        return step_to_freq(int(values[best]))
    raise SeriesProblem(
        "frequency",
        f"cannot infer the frequency: the steps between timestamps vary ({len(values)} different); pass --freq",
    )


# The offsets that may make each calendar grid, anchored on the first timestamp's month.
_CALENDAR_OFFSETS = {"month": ("MS", "ME"), "quarter": ("QS-{month}", "QE-{month}"),
                     "year": ("YS-{month}", "YE-{month}")}


def _calendar_freq(idx, steps: np.ndarray) -> str | None:
    """A month, quarter or year grid that holds every timestamp, when at least half the steps are one such
    period: a monthly series with a missing month steps 31 days most often, but its next date is the 1st."""
    import pandas as pd

    days = steps / FIXED_STEPS["D"]
    for period, (shortest, longest) in CALENDAR_DAYS.items():
        if np.count_nonzero((days >= shortest) & (days <= longest)) * 2 < len(steps):
            continue
        for offset in _CALENDAR_OFFSETS[period]:
            freq = offset.format(month=idx[0].strftime("%b").upper())
            grid = pd.date_range(idx[0], idx[-1], freq=freq)
            if len(grid) and grid[0] == idx[0] and idx.isin(grid).all():
                return freq
    return None


def step_to_freq(step_ns: int) -> str:
    """A fixed step in nanoseconds as the largest whole unit: 86400e9 -> "D", 2 hours -> "2h"."""
    for unit, ns in FIXED_STEPS.items():
        if step_ns % ns == 0:
            n = step_ns // ns
            return unit if n == 1 else f"{n}{unit}"
    return f"{step_ns}ns"


def series_freq(series: SeriesData, opts: ModelOptions) -> str:
    """The frequency a series is forecast at: --freq, else the table's when the series lies on its grid, else
    its own (infer_freq).

    Raises:
        SeriesProblem: stage "frequency", when the series' own frequency cannot be told.
    """
    try:
        return opts.freq or series.freq or infer_freq(series.ds)
    except SeriesProblem as e:
        if series.table_freq is None:
            raise
        raise SeriesProblem(e.stage, f"its timestamps are off the table's {series.table_freq} grid, and {e}") from None


def _toggle(value: str) -> Any:
    return {"auto": "auto", "on": True, "off": False}[value]


def make_prophet(opts: ModelOptions):
    """A new Prophet object for one series (Prophet refuses to fit the same object twice)."""
    import pandas as pd
    from prophet import Prophet

    m = Prophet(
        growth=opts.growth,
        seasonality_mode=opts.seasonality_mode,
        yearly_seasonality=_toggle(opts.yearly_seasonality),
        weekly_seasonality=_toggle(opts.weekly_seasonality),
        daily_seasonality=_toggle(opts.daily_seasonality),
        changepoint_prior_scale=opts.changepoint_prior_scale,
        seasonality_prior_scale=opts.seasonality_prior_scale,
        interval_width=opts.interval_width,
        uncertainty_samples=opts.uncertainty_samples,
    )
    if opts.holiday_table:
        m.holidays = pd.DataFrame(list(opts.holiday_table),
                                  columns=["holiday", "ds", "lower_window", "upper_window"])
        m.holidays["ds"] = pd.to_datetime(m.holidays["ds"])
    if opts.holidays:
        m.add_country_holidays(country_name=opts.holidays)
    for name in opts.regressors:
        m.add_regressor(name)
    return m


def extra_columns(opts: ModelOptions) -> dict[str, str]:
    """Input columns the model needs besides ds and y, mapped to their name in Prophet's frames."""
    cols = {name: name for name in opts.regressors}
    if opts.cap_col:
        cols[opts.cap_col] = "cap"
    if opts.floor_col:
        cols[opts.floor_col] = "floor"
    return cols


def check_options(opts: ModelOptions) -> None:
    """Checks that need Prophet's dependencies, run once before any worker starts.

    Raises:
        ConfigError: for an unknown --holidays country.
    """
    from .errors import ConfigError

    if opts.holidays:
        import holidays

        supported = holidays.list_supported_countries()
        if opts.holidays not in supported:
            import difflib

            close = difflib.get_close_matches(opts.holidays.upper(), list(supported), n=1)
            hint = f"; did you mean {close[0]}?" if close else "; use an ISO country code such as US, GB, DE"
            raise ConfigError(f"--holidays {opts.holidays!r} is not a country the holidays package knows{hint}")


def _observed(series: SeriesData) -> np.ndarray:
    """The rows of the series with a value (a mask), after the checks every model needs."""
    y = series.y
    if np.isinf(y).any():
        raise SeriesProblem("validate", f"y has {int(np.isinf(y).sum())} infinite value(s); replace or drop them")
    ok = ~np.isnan(y)
    n = int(ok.sum())
    if n == 0:
        raise SeriesProblem("validate", f"all {len(y)} values are missing")
    if n < 2:
        raise SeriesProblem("validate", "fewer than 2 non-missing values (found 1); Prophet needs at least 2")
    return ok


def _validate(series: SeriesData, opts: ModelOptions | None = None) -> pd.DataFrame:
    import pandas as pd

    ok = _observed(series)
    n = int(ok.sum())
    df = pd.DataFrame({"ds": series.ds[ok], "y": series.y[ok]})
    for col, name in (extra_columns(opts) if opts is not None else {}).items():
        values = series.extra[col][ok]
        bad = ~np.isfinite(values)
        if bad.any():
            first = pd.Timestamp(df["ds"].to_numpy()[np.flatnonzero(bad)[0]]).date()
            raise SeriesProblem("validate", f"column {col!r} is missing at {int(bad.sum())} of {n} observed "
                                f"time(s) (first {first}); fill it in the input table")
        df[name] = values
    return df


def validate_series(series: SeriesData, opts: ModelOptions) -> pd.DataFrame:
    """The training frame for Prophet (ds, y and the extra columns), without the missing values.

    Raises:
        SeriesProblem: stage "validate", for a series Prophet cannot fit (too few values, infinities, a
            regressor missing where y is known).
    """
    return _validate(series, opts)


def predict_frame(series: SeriesData, ds: np.ndarray, opts: ModelOptions, source: str = "--future") -> pd.DataFrame:
    """The frame to predict at `ds`: ds plus each extra column's value there, from the history or the future.

    Raises:
        SeriesProblem: stage "future", naming the column and the first dates whose value is missing.
    """
    import pandas as pd

    frame = pd.DataFrame({"ds": pd.DatetimeIndex(ds)})
    cols = extra_columns(opts)
    if not cols:
        return frame
    known_ds = series.ds if series.future_ds is None else np.concatenate([series.ds, series.future_ds])
    for col, name in cols.items():
        known = series.extra[col]
        if series.future_ds is not None:
            known = np.concatenate([known, series.future_extra[col]])
        lookup = pd.Series(known, index=pd.DatetimeIndex(known_ds))
        lookup = lookup[~lookup.index.duplicated(keep="last")]
        values = lookup.reindex(frame["ds"]).to_numpy(dtype=float)
        bad = ~np.isfinite(values)
        if bad.any():
            dates = ", ".join(str(pd.Timestamp(d).date()) for d in frame["ds"].to_numpy()[bad][:3])
            raise SeriesProblem("future", f"future values of {col!r} are missing for {int(bad.sum())} of "
                                f"{len(values)} forecast time(s) ({dates}); add them to {source}")
        frame[name] = values
    return frame


def fit_predict(train: pd.DataFrame, frame: pd.DataFrame, opts: ModelOptions, key: tuple) -> dict[str, Any]:
    """Fit a new Prophet model to `train` and predict at the rows of `frame`.

    Returns:
        {"ds", "yhat", "yhat_lower", "yhat_upper" (arrays; bounds NaN without intervals), "fit_seconds",
        "predict_seconds"}, clipped at 0 with opts.non_negative.

    Raises:
        SeriesProblem: stage "fit" or "predict", with Prophet's or Stan's error as the reason.
    """
    out: dict[str, Any] = {}
    try:
        t0 = time.perf_counter()
        m = make_prophet(opts)
        m.fit(train)
        out["fit_seconds"] = time.perf_counter() - t0
    except Exception as e:  # Prophet/Stan failing on this series' data
        raise SeriesProblem("fit", f"{type(e).__name__}: {e}".splitlines()[0]) from e
    try:
        t0 = time.perf_counter()
        if opts.seed is not None:
            np.random.seed(series_seed(opts.seed, key))
        fc = m.predict(frame)
        out["predict_seconds"] = time.perf_counter() - t0
    except Exception as e:
        problem = SeriesProblem("predict", f"{type(e).__name__}: {e}".splitlines()[0])
        problem.fit_seconds = out["fit_seconds"]  # the fit happened: keep its time in timings.csv
        raise problem from e
    yhat = fc["yhat"].to_numpy(dtype=float)
    nan = np.full(len(fc), np.nan)
    lower = fc["yhat_lower"].to_numpy(dtype=float) if "yhat_lower" in fc else nan
    upper = fc["yhat_upper"].to_numpy(dtype=float) if "yhat_upper" in fc else nan
    if opts.non_negative:
        yhat, lower, upper = (np.clip(a, 0, None) for a in (yhat, lower, upper))
    out.update(ds=fc["ds"].to_numpy(dtype="datetime64[ns]"), yhat=yhat, yhat_lower=lower, yhat_upper=upper)
    return out


@contextmanager
def scratch_cleanup() -> Iterator[None]:
    """Remove whatever the fits inside the block leave in cmdstanpy's temp dir."""
    tmp = _cmdstan_tmp()
    before = set(os.listdir(tmp)) if tmp and os.path.isdir(tmp) else set()
    try:
        yield
    finally:
        # a fit that imported cmdstanpy only now (stock Prophet serving what an engine does not cover) made its
        # temp dir during the block: everything in it is the block's
        _remove_new_entries(tmp if tmp is not None else _cmdstan_tmp(), before)


def horizon_dates(last, freq: str, horizon: int) -> np.ndarray:
    """The first `horizon` timestamps after `last` on the grid of `freq` (datetime64[ns]), as Prophet's
    make_future_dataframe gives them: the grid's points after `last`, so a `last` off an anchored grid (a Thursday
    with W-SUN) is followed by the grid's next point, not the one after.

    A fixed step (days, hours, minutes, seconds: "D", "2h", ...) is added in numpy: on the naive timestamps
    forecast works with, date_range adds exactly that step, and a worker of the engines then never needs pandas.

    Raises:
        SeriesProblem: stage "future", when the dates would pass the last timestamp pandas holds (2262-04-11).
    """
    fixed = re.fullmatch(r"(\d*)(D|h|min|s)", freq)
    if fixed:
        step = int(fixed[1] or 1) * FIXED_STEPS[fixed[2]]
        start = np.datetime64(last, "ns").astype(np.int64)
        if step > 0 and (np.iinfo(np.int64).max - start) // step < horizon:
            raise _past_last_timestamp(last, freq, horizon)
        return (start + step * np.arange(1, horizon + 1, dtype=np.int64)).astype("datetime64[ns]")
    import pandas as pd

    last = pd.Timestamp(last)
    try:
        dates = pd.date_range(start=last, periods=horizon + 1, freq=freq)
    except (ValueError, OverflowError):  # pandas' OutOfBoundsDatetime is a ValueError
        raise _past_last_timestamp(last, freq, horizon) from None
    return dates[dates > last][:horizon].to_numpy(dtype="datetime64[ns]")


def _past_last_timestamp(last, freq: str, horizon: int) -> SeriesProblem:
    return SeriesProblem("future", f"{horizon} steps of {freq} after {str(last)[:19]} pass 2262-04-11, the last date "
                                   "pandas can hold; use a shorter --horizon")


def checked_frame(series: SeriesData, opts: ModelOptions) -> pd.DataFrame | None:
    """Check a series as every model needs it (and its regressors where y is known): stock Prophet's training
    frame, or None when an engine fits it (the engines take arrays: no frame to build).

    Raises:
        SeriesProblem: stage "validate".
    """
    if not uses_engine(opts):
        return _validate(series, opts)
    if extra_columns(opts):
        _validate(series, opts)
    else:
        _observed(series)
    return None


def uses_engine(opts: ModelOptions) -> bool:
    """Whether opts.engine is one of the engines (fast or stan) rather than stock Prophet."""
    return opts.engine != "prophet"


def fit_series(series: SeriesData, opts: ModelOptions) -> SeriesResult:
    """Fit one Prophet model to one series and forecast `opts.horizon` steps past its last timestamp.

    Args:
        series: the series.
        opts: model options.

    Returns:
        A SeriesResult, with status "failed" and the stage and reason for a problem of this series.
    """
    result = SeriesResult(key=series.key, status="failed", n_obs=int((~np.isnan(series.y)).sum()),
                          worker=f"{socket.gethostname()}:{os.getpid()}")
    cpu0 = series_cpu()
    stage = "validate"
    try:
        with scratch_cleanup():
            engine = uses_engine(opts)
            df = checked_frame(series, opts)
            stage = "frequency"
            freq = series_freq(series, opts)
            stage = "future"
            future = horizon_dates(series.ds[-1], freq, opts.horizon)
            if opts.include_history:
                future = np.concatenate([np.asarray(series.ds, dtype="datetime64[ns]"), future])
            if engine:
                stage = "fit"
                fc = engine_fit_predict(series, future, opts)
            else:  # stock Prophet (--engine prophet)
                frame = predict_frame(series, future, opts)
                stage = "fit"
                fc = fit_predict(df, frame, opts, series.key)
            result.fit_seconds, result.predict_seconds = fc["fit_seconds"], fc["predict_seconds"]
            result.ds, result.yhat = fc["ds"], fc["yhat"]
            result.yhat_lower, result.yhat_upper = fc["yhat_lower"], fc["yhat_upper"]
            result.status, result.model = "ok", "prophet"
            result.engine, result.params = fc.get("engine", "prophet"), fc.get("params")
            if fc.get("reduced"):  # Prophet's model with fewer terms, for a series too short for all of them
                result.model, result.error = "prophet:reduced", fc["reduced"]
    except SeriesProblem as e:
        result.stage, result.error = e.stage, str(e)
        result.fit_seconds = getattr(e, "fit_seconds", 0.0)
    except Exception as e:  # anything else about this series' data: record it, go on with the rest
        result.stage, result.error = stage, f"{type(e).__name__}: {e}".splitlines()[0]
    result.cpu_seconds = series_cpu() - cpu0
    return result


def engine_fit_predict(series: SeriesData, future: np.ndarray, opts: ModelOptions,
                       source: str = "--future") -> dict[str, Any]:
    """Fit a validated series with opts.engine (stan or fast) and forecast at `future` (datetime64[ns]).

    Returns:
        fit_predict's dict ("ds", "yhat", "yhat_lower", "yhat_upper", "fit_seconds", "predict_seconds"), plus
        "engine" (the engine that served it) and "params" (for --warm-start).

    Raises:
        SeriesProblem: stage "future" when a regressor's future value is missing, "fit" when the optimizer fails.
    """
    from .engines import fit_forecast

    ok = ~np.isnan(series.y)
    seed = series_seed(opts.seed, series.key) if opts.seed is not None else None
    extra = future_extra = None
    columns = extra_columns(opts)  # regressors, cap and floor, by input column
    if columns:
        extra = {col: series.extra[col][ok] for col in columns}
        frame = predict_frame(series, future, opts, source)  # stage "future" when a value is missing
        future_extra = {col: frame[name].to_numpy(dtype=float) for col, name in columns.items()}
    try:
        fc = fit_forecast(np.asarray(series.ds[ok], dtype="datetime64[ns]"), np.asarray(series.y[ok], dtype=float),
                          future, opts, opts.engine, seed, warm=series.warm, extra=extra, future_extra=future_extra)
    except Exception as e:  # the optimizer failing on this series' data
        raise SeriesProblem("fit", f"{type(e).__name__}: {e}".splitlines()[0]) from e
    yhat, lower, upper = fc.yhat, fc.yhat_lower, fc.yhat_upper
    if opts.non_negative:
        yhat, lower, upper = (np.clip(a, 0, None) for a in (yhat, lower, upper))
    return {"ds": future, "yhat": yhat, "yhat_lower": lower, "yhat_upper": upper, "fit_seconds": fc.fit_seconds,
            "predict_seconds": fc.predict_seconds, "engine": fc.engine, "params": fc.params, "reduced": fc.reduced}


def _on_grid(series: SeriesData, freq: str) -> np.ndarray:
    """The values on the series' regular time grid, NaN for absent timestamps, so that "one season earlier"
    means a calendar season even across gaps; the values as they are when a timestamp lies off the grid."""
    import pandas as pd

    grid = pd.date_range(start=pd.Timestamp(series.ds[0]), end=pd.Timestamp(series.ds[-1]), freq=freq)
    pos = grid.get_indexer(pd.DatetimeIndex(series.ds))
    if len(grid) > 10 * len(series.ds) + 1000 or (pos < 0).any():
        return series.y
    y = np.full(len(grid), np.nan)
    y[pos] = series.y
    return y


def serve_fallback(series: SeriesData, opts: ModelOptions, kind: str, result: SeriesResult) -> SeriesResult:
    """Give a series that failed (or that triage sent to fallback) a simple forecast instead of Prophet's.

    The stage and reason in `result` are kept, so the series still shows why Prophet did not serve it. Only
    future rows are produced, on the series' grid (`opts.freq`, the table's frequency, or its own). A series
    with one value gets its forecast too. Seasonal-naive with less than one season of history is naive: the model
    says fallback:naive and the reason says why. When even the simple forecast is impossible (no frequency, or
    all values missing for anything but "zero"), the series stays failed and its reason says why.

    Args:
        series: the series.
        opts: model options (horizon, freq, interval_width, non_negative).
        kind: one of fallback.KINDS.
        result: the failed (or triaged) result of this series.

    Returns:
        `result`, updated: status "fallback" and model "fallback:<kind>" with the forecast, or still "failed".
    """
    from .fallback import FallbackImpossible, season_length, simple_forecast, used_kind

    t0 = time.perf_counter()
    try:
        freq = series_freq(series, opts)
        y = _on_grid(series, freq)
        season = season_length(freq)
        yhat, lower, upper = simple_forecast(kind, y, opts.horizon, season, opts.interval_width)
        ds = horizon_dates(series.ds[-1], freq, opts.horizon)
    except (SeriesProblem, FallbackImpossible) as e:
        result.status = "failed"
        result.error = f"{result.error}; fallback {kind} impossible: {e}" if result.error else str(e)
        return result
    used = used_kind(kind, len(y), season)
    if used != kind:
        note = (f"seasonal-naive needs one season ({season} periods of {freq}) and the history spans {len(y)}: "
                f"naive used" if season > 1 else f"seasonal-naive: {freq} has no season: naive used")
        result.error = f"{result.error}; {note}" if result.error else note
    if opts.non_negative:
        yhat, lower, upper = (np.clip(a, 0, None) for a in (yhat, lower, upper))
    result.ds = ds
    result.yhat, result.yhat_lower, result.yhat_upper = yhat, lower, upper
    result.status, result.model = "fallback", f"fallback:{used}"
    result.predict_seconds += time.perf_counter() - t0
    return result
