"""Prophet as a model: stock Prophet, or its MAP fit through the engines (fast, stan; see engines/).

`ProphetModel.check` runs the checks every Prophet fit needs; `ProphetModel.forecast` fits one series and
forecasts it at the dates given, by opts.engine. Also here: what a worker process needs before its first Prophet
fit (`init_worker`: a private temp dir, quiet loggers) and after each one (`scratch_cleanup`).

pandas is imported inside the functions that need it (stock Prophet, --future values), not here: a worker of the
stan and fast engines then never loads it, which was most of its start-up time (a test checks).
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
import time
import warnings
from contextlib import contextmanager
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Iterator

import numpy as np

from ..config import ModelOptions, Toggle
from ..levels import band_percents, clipped
from ..types import Forecast, SeriesData, SeriesProblem

if TYPE_CHECKING:  # pandas is imported where it is used (see the module doc)
    import pandas as pd
    from prophet import Prophet

_QUIET_LOGGERS = ("cmdstanpy", "prophet", "prophet.plot", "prophet.models", "prophet.forecaster")


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


def _toggle(value: Toggle) -> Any:
    return {"auto": "auto", "on": True, "off": False}[value]


def make_prophet(opts: ModelOptions) -> Prophet:
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


def unknown_country(code: str) -> str | None:
    """None for a country code the holidays package knows (Prophet's built-in holidays), else the hint to give:
    the closest code, or what a code looks like."""
    import holidays

    supported = holidays.list_supported_countries()
    if code in supported:
        return None
    import difflib

    close = difflib.get_close_matches(code.upper(), list(supported), n=1)
    return f"did you mean {close[0]}?" if close else "use an ISO country code such as US, GB, DE"


def check_options(opts: ModelOptions) -> None:
    """Checks that need Prophet's dependencies, run once before any worker starts.

    Raises:
        ConfigError: for an unknown --holidays country.
    """
    from ..errors import ConfigError

    if opts.holidays:
        hint = unknown_country(opts.holidays)
        if hint is not None:
            raise ConfigError(f"--holidays {opts.holidays!r} is not a country the holidays package knows; {hint}")


def series_options(series: SeriesData, opts: ModelOptions) -> ModelOptions:
    """The options with the series' own holidays in place of the run's, where it has them (a keyed holidays file,
    --holidays-col): the same options as a run of this series alone with those holidays, so every engine fits the
    same model."""
    changes: dict[str, Any] = {}
    if series.holiday_table is not None:
        changes["holiday_table"] = series.holiday_table
    if series.country is not None:
        changes["holidays"] = series.country or None
    return replace(opts, **changes) if changes else opts


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


def fit_predict(train: pd.DataFrame, frame: pd.DataFrame, opts: ModelOptions, key: tuple) -> Forecast:
    """Fit a new stock Prophet model to `train` and predict at the rows of `frame`; clipped at 0 with
    opts.non_negative, bounds NaN without intervals.

    Raises:
        SeriesProblem: stage "fit" or "predict", with Prophet's or Stan's error as the reason.
    """
    try:
        t0 = time.perf_counter()
        m = make_prophet(opts)
        m.fit(train)
        fit_seconds = time.perf_counter() - t0
    except Exception as e:  # Prophet/Stan failing on this series' data
        raise SeriesProblem("fit", f"{type(e).__name__}: {e}".splitlines()[0]) from e
    try:
        t0 = time.perf_counter()
        if opts.seed is not None:
            np.random.seed(series_seed(opts.seed, key))
        paths = _keep_paths(m) if band_percents(opts) else None
        fc = m.predict(frame)
        predict_seconds = time.perf_counter() - t0
    except Exception as e:
        problem = SeriesProblem("predict", f"{type(e).__name__}: {e}".splitlines()[0])
        problem.fit_seconds = fit_seconds  # the fit happened: keep its time in timings.csv
        raise problem from e
    yhat = fc["yhat"].to_numpy(dtype=float)
    nan = np.full(len(fc), np.nan)
    lower = fc["yhat_lower"].to_numpy(dtype=float) if "yhat_lower" in fc else nan
    upper = fc["yhat_upper"].to_numpy(dtype=float) if "yhat_upper" in fc else nan
    bands = {name: m.percentile(paths["yhat"], p, axis=1) if paths else nan.copy()
             for name, p in band_percents(opts).items()}
    if opts.non_negative:
        yhat, lower, upper = (np.clip(a, 0, None) for a in (yhat, lower, upper))
    return Forecast(ds=fc["ds"].to_numpy(dtype="datetime64[ns]"), yhat=yhat, yhat_lower=lower, yhat_upper=upper,
                    model="prophet", fit_seconds=fit_seconds, predict_seconds=predict_seconds, engine="prophet",
                    bands=clipped(bands, opts.non_negative))


def _keep_paths(m: Prophet) -> dict:
    """The simulated paths of `m.predict`, kept as it draws them (filled when it runs with uncertainty samples):
    the --level and --quantile columns are their percentiles, as Prophet takes yhat_lower and yhat_upper from them,
    so no second simulation is drawn and the seeded draws stay those of a run without bands."""
    kept: dict = {}
    draw = m.sample_posterior_predictive

    def keep(*args: Any, **kwargs: Any) -> dict:
        paths = draw(*args, **kwargs)
        kept.update(paths)
        return paths

    m.sample_posterior_predictive = keep  # this one object's method: Prophet's class is left as it is
    return kept


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


def checked_frame(series: SeriesData, opts: ModelOptions) -> pd.DataFrame | None:
    """Check a series as every Prophet fit needs it (and its regressors where y is known): stock Prophet's
    training frame, or None when an engine fits it (the engines take arrays: no frame to build).

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


def engine_fit_predict(series: SeriesData, future: np.ndarray, opts: ModelOptions,
                       source: str = "--future") -> Forecast:
    """Fit a validated series with opts.engine (stan or fast) and forecast at `future` (datetime64[ns]).

    Returns:
        The forecast, with the engine that served it and its parameters (for --warm-start); model
        "prophet:reduced" and the reduction as its note for a series too short for all of Prophet's terms.

    Raises:
        SeriesProblem: stage "future" when a regressor's future value is missing, "fit" when the optimizer fails.
    """
    from ..engines import fit_forecast

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
    # Prophet's model with fewer terms, for a series too short for all of them
    return Forecast(ds=future, yhat=yhat, yhat_lower=lower, yhat_upper=upper,
                    model="prophet:reduced" if fc.reduced else "prophet", fit_seconds=fc.fit_seconds,
                    predict_seconds=fc.predict_seconds, engine=fc.engine, params=fc.params, note=fc.reduced,
                    bands=clipped(fc.bands, opts.non_negative))


class ProphetModel:
    """Prophet, fitted by opts.engine: "fast" or "stan" through engines/, "prophet" stock Prophet."""

    name = "prophet"

    def check(self, series: SeriesData, opts: ModelOptions) -> None:
        """Raise SeriesProblem (stage "validate") for a series Prophet cannot fit (see checked_frame)."""
        checked_frame(series, series_options(series, opts))

    def forecast(self, series: SeriesData, future: np.ndarray, opts: ModelOptions, *,
                 season_length: int | None = None, source: str = "--future") -> Forecast:
        """Fit the series and forecast it at `future` (see the Model protocol); its own seasonalities come from
        the options, so `season_length` is not used.

        Raises:
            SeriesProblem: stage "validate", "future", "fit" or "predict".
        """
        opts = series_options(series, opts)
        with scratch_cleanup():
            if uses_engine(opts):
                return engine_fit_predict(series, future, opts, source)
            train = _validate(series, opts)
            frame = predict_frame(series, future, opts, source)
            return fit_predict(train, frame, opts, series.key)
