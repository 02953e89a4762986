"""Simple forecasts for series Prophet cannot or should not fit: naive, seasonal-naive, mean, zero.

Numpy only: values in, values out. No pools, no files, no dates (the caller places the forecast on the series'
own time grid). Missing values are NaN; infinities are treated as missing too.

Intervals are an empirical band: the (1 - w)/2 and (1 + w)/2 quantiles of the method's own in-sample errors
(one-step changes for naive, season-over-season changes for seasonal-naive, deviations from the mean for mean,
the values themselves for zero), added to the forecast. The band is flat over the horizon (it does not widen
with the step) and is NaN when fewer than 2 in-sample errors exist.
"""

from __future__ import annotations

import re

import numpy as np

KINDS = ("naive", "seasonal-naive", "mean", "zero")

# Seasonal period by the base of a pandas frequency string: a week of days, a year of weeks/months/quarters,
# a day of hours. Anything else (minutes, multiples such as "2D") has no season, and seasonal-naive is naive.
# The one table for the fallbacks, the backtest's seasonal-naive baseline and MASE (metrics.season_length).
_SEASONS = {"D": 7, "B": 5, "W": 52, "M": 12, "MS": 12, "ME": 12, "BM": 12, "BMS": 12, "BME": 12,
            "Q": 4, "QS": 4, "QE": 4, "BQ": 4, "BQS": 4, "BQE": 4, "H": 24}


class FallbackImpossible(ValueError):
    """The series has no value to base the chosen simple forecast on."""


def season_length(freq: str | None) -> int:
    """The seasonal period of a frequency: 7 for daily, 52 weekly (and 7D), 12 monthly, 4 quarterly, 24 hourly,
    else 1.

    Args:
        freq: a pandas frequency string such as "D", "W-SUN", "MS", "h", "QS-JAN"; None means unknown.
    """
    if not freq:
        return 1
    if freq == "7D":  # what the frequency inference makes of a weekly series with a missing week
        return 52
    match = re.fullmatch(r"(\d*)([A-Za-z]+)(?:-[A-Za-z]+)?", freq)
    if match is None or match.group(1) not in ("", "1"):
        return 1
    return _SEASONS.get(match.group(2).upper(), 1)


def _finite(y: np.ndarray) -> np.ndarray:
    y = np.asarray(y, dtype=float)
    return np.where(np.isfinite(y), y, np.nan)


def _last_value(y: np.ndarray) -> float:
    ok = np.flatnonzero(~np.isnan(y))
    if len(ok) == 0:
        raise FallbackImpossible("all values are missing")
    return float(y[ok[-1]])


def used_kind(kind: str, n: int, season: int) -> str:
    """The method that actually serves a history of `n` periods: seasonal-naive needs one whole season (`season`
    periods, more than 1); with less it is naive."""
    if kind == "seasonal-naive" and (season <= 1 or n < season):
        return "naive"
    return kind


def point_forecast(kind: str, y: np.ndarray, horizon: int, season: int = 1) -> np.ndarray:
    """The point forecast of one simple method for `horizon` steps past the end of `y`.

    Args:
        kind: "naive" (last value), "seasonal-naive" (the value one season earlier), "mean" (mean of the
            history) or "zero".
        y: the history in time order, NaN where missing.
        horizon: steps ahead.
        season: the seasonal period (see season_length); seasonal-naive is naive when the history is shorter
            than one season. A missing value in the last season is taken from earlier seasons, else the last value.

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
    if used_kind(kind, len(y), season) == "naive":
        return np.full(horizon, _last_value(y))
    if kind == "seasonal-naive":
        last = _last_value(y)
        n_seasons = len(y) // season
        seasons = y[len(y) - n_seasons * season:].reshape(n_seasons, season)
        # per phase, the most recent season that has a value at that phase
        has = ~np.isnan(seasons)
        latest = n_seasons - 1 - np.argmax(has[::-1], axis=0)
        profile = np.where(has.any(axis=0), seasons[latest, np.arange(season)], last)
        return profile[np.arange(horizon) % season]
    raise ValueError(f"unknown fallback {kind!r}; expected one of {', '.join(KINDS)}")


def in_sample_errors(kind: str, y: np.ndarray, season: int = 1) -> np.ndarray:
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


def simple_forecast(kind: str, y: np.ndarray, horizon: int, season: int = 1,
                    interval_width: float = 0.8) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(yhat, yhat_lower, yhat_upper) of one simple method; see point_forecast and the module docstring.

    The band always holds the point forecast: its lower end is at most yhat, its upper end at least yhat (the
    quantiles of errors that are all of one sign would otherwise leave the forecast outside its own interval).

    Raises:
        FallbackImpossible: every value is missing and kind is not "zero".
    """
    yhat = point_forecast(kind, y, horizon, season)
    errors = in_sample_errors(kind, y, season)
    if len(errors) < 2:
        nan = np.full(horizon, np.nan)
        return yhat, nan, nan.copy()
    lo, hi = np.quantile(errors, [(1 - interval_width) / 2, (1 + interval_width) / 2])
    lo, hi = min(lo, 0.0), max(hi, 0.0)
    return yhat, yhat + lo, yhat + hi
