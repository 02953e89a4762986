"""The simple models: naive, seasonal-naive, mean and zero. A run's fallbacks and a backtest's baselines.

The arithmetic is numpy only: values in, values out, placed by the caller on the series' own time grid (NaN for
a missing step, so "one season earlier" is a calendar season across gaps). Infinities are treated as missing.

Intervals are an empirical band: the (1 - w)/2 and (1 + w)/2 quantiles of the method's own in-sample errors
(one-step changes for naive, season-over-season changes for seasonal-naive, deviations from the mean for mean,
the values themselves for zero), added to the forecast. The band is flat over the horizon (it does not widen
with the step) and is NaN when fewer than 2 in-sample errors exist.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Literal, get_args

import numpy as np

from ..config import ModelOptions
from ..freq import on_grid, series_freq
from ..freq import season_length as freq_season_length
from ..levels import band_columns, clipped, empirical_bands
from ..types import Forecast, SeriesData, SeriesProblem

SimpleKind = Literal["naive", "seasonal-naive", "mean", "zero"]
KINDS: tuple[SimpleKind, ...] = get_args(SimpleKind)


class FallbackImpossible(SeriesProblem, ValueError):
    """The series has no value to base the chosen simple forecast on."""

    def __init__(self, reason: str) -> None:
        super().__init__("fit", reason)


def _finite(y: np.ndarray) -> np.ndarray:
    y = np.asarray(y, dtype=float)
    return np.where(np.isfinite(y), y, np.nan)


def _last_value(y: np.ndarray) -> float:
    ok = np.flatnonzero(~np.isnan(y))
    if len(ok) == 0:
        raise FallbackImpossible("all values are missing")
    return float(y[ok[-1]])


def used_kind(kind: SimpleKind, n: int, season: int) -> SimpleKind:
    """The method that actually serves a history of `n` periods: seasonal-naive needs one whole season (`season`
    periods, more than 1); with less it is naive."""
    if kind == "seasonal-naive" and (season <= 1 or n < season):
        return "naive"
    return kind


def _steps(horizon: int, steps: np.ndarray | None) -> np.ndarray:
    return np.arange(1, horizon + 1) if steps is None else np.asarray(steps, dtype=int)


def seasonal_naive(y: np.ndarray, steps: np.ndarray, season: int) -> np.ndarray:
    """Each point repeats the value one or more whole seasons before it, in the last season of the history.

    Args:
        y: the history on its regular grid (NaN for a missing step), oldest first.
        steps: for each point to forecast, how many grid steps after the last history point it is (1, 2, ...).
        season: the seasonal period in grid steps; with a history shorter than it (or 1), the last value.

    A missing value in the last season is taken from the latest earlier season that has one at that phase, else
    the last value.

    Raises:
        FallbackImpossible: every value is missing.
    """
    y = _finite(y)
    last = _last_value(y)
    h = np.asarray(steps, dtype=int)
    if used_kind("seasonal-naive", len(y), season) == "naive":
        return np.full(len(h), last)
    n_seasons = len(y) // season
    seasons = y[len(y) - n_seasons * season:].reshape(n_seasons, season)
    # per phase, the most recent season that has a value at that phase
    has = ~np.isnan(seasons)
    latest = n_seasons - 1 - np.argmax(has[::-1], axis=0)
    profile = np.where(has.any(axis=0), seasons[latest, np.arange(season)], last)
    return profile[(h - 1) % season]


def point_forecast(kind: SimpleKind, y: np.ndarray, horizon: int, season: int = 1,
                   steps: np.ndarray | None = None) -> np.ndarray:
    """The point forecast of one simple method for `horizon` steps past the end of `y`.

    Args:
        kind: "naive" (last value), "seasonal-naive" (the value one season earlier, see `seasonal_naive`), "mean"
            (mean of the history) or "zero".
        y: the history in time order, NaN where missing.
        horizon: steps ahead.
        season: the seasonal period (see freq.season_length).
        steps: the grid steps ahead of each forecast point; None means 1, 2, ..., horizon.

    Raises:
        FallbackImpossible: every value is missing (only "zero" works then).
        ValueError: an unknown kind.
    """
    y = _finite(y)
    if kind == "zero":
        return np.zeros(horizon)
    if kind == "mean":
        if np.isnan(y).all():
            raise FallbackImpossible("all values are missing")
        return np.full(horizon, float(np.nanmean(y)))
    if kind in ("naive", "seasonal-naive"):
        return seasonal_naive(y, _steps(horizon, steps), season if kind == "seasonal-naive" else 1)
    raise ValueError(f"unknown fallback {kind!r}; expected one of {', '.join(KINDS)}")


def in_sample_errors(kind: SimpleKind, y: np.ndarray, season: int = 1) -> np.ndarray:
    """The method's own errors over the history (finite ones only), the basis of its interval."""
    y = _finite(y)
    if kind == "seasonal-naive" and season > 1 and len(y) >= season:
        errors = y[season:] - y[:-season]
    elif kind in ("naive", "seasonal-naive"):
        errors = np.diff(y)
    elif kind == "mean":
        errors = y - np.nanmean(y) if not np.isnan(y).all() else y
    else:
        errors = y
    return errors[~np.isnan(errors)]


def simple_forecast(kind: SimpleKind, y: np.ndarray, horizon: int, season: int = 1, interval_width: float = 0.8,
                    steps: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(yhat, yhat_lower, yhat_upper) of one simple method; see point_forecast and the module docstring.

    The band always holds the point forecast: its lower end is at most yhat, its upper end at least yhat (the
    quantiles of errors that are all of one sign would otherwise leave the forecast outside its own interval).

    Raises:
        FallbackImpossible: every value is missing and kind is not "zero".
    """
    yhat = point_forecast(kind, y, horizon, season, steps)
    errors = in_sample_errors(kind, y, season)
    if len(errors) < 2:
        nan = np.full(horizon, np.nan)
        return yhat, nan, nan.copy()
    lo, hi = np.quantile(errors, [(1 - interval_width) / 2, (1 + interval_width) / 2])
    lo, hi = min(lo, 0.0), max(hi, 0.0)
    return yhat, yhat + lo, yhat + hi


@dataclass(frozen=True)
class SimpleModel:
    """One simple method as a model: the history on its grid (the series' frequency), the forecast at the future
    dates' grid steps, with the empirical band; clipped at 0 with opts.non_negative."""

    name: SimpleKind

    def check(self, series: SeriesData, opts: ModelOptions) -> None:
        """Nothing to check before the frequency: a series with one value is forecast too."""

    def forecast(self, series: SeriesData, future: np.ndarray, opts: ModelOptions, *,
                 season_length: int | None = None, source: str = "--future") -> Forecast:
        """Forecast the series at `future` (see the Model protocol).

        Raises:
            SeriesProblem: stage "frequency" when the series' frequency cannot be told; FallbackImpossible (stage
                "fit") when every value is missing and the model is not "zero".
        """
        t0 = time.perf_counter()
        freq = series_freq(series, opts)
        y, steps = on_grid(series.ds, series.y, freq, future)
        season = season_length or freq_season_length(freq)
        yhat, lower, upper = simple_forecast(self.name, y, len(future), season, opts.interval_width, steps)
        used, note = used_kind(self.name, len(y), season), ""
        if used != self.name:
            note = (f"seasonal-naive needs one season ({season} periods of {freq}) and the history spans {len(y)}: "
                    f"naive used" if season > 1 else f"seasonal-naive: {freq} has no season: naive used")
        # --level and --quantile: a band per level from the same errors (levels.empirical_bands)
        bands = empirical_bands(yhat, in_sample_errors(self.name, y, season), opts) if band_columns(opts) else {}
        if opts.non_negative:
            yhat, lower, upper = (np.clip(a, 0, None) for a in (yhat, lower, upper))
        return Forecast(ds=np.asarray(future, dtype="datetime64[ns]"), yhat=yhat, yhat_lower=lower,
                        yhat_upper=upper, model=used, predict_seconds=time.perf_counter() - t0, note=note,
                        bands=clipped(bands, opts.non_negative))


NAIVE = SimpleModel("naive")  # the last value
SEASONAL_NAIVE = SimpleModel("seasonal-naive")  # the value one season earlier
MEAN = SimpleModel("mean")  # the mean of the history
ZERO = SimpleModel("zero")  # for a series with no value to go by
