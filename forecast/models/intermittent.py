"""The intermittent-demand models: Croston with the SBA correction, TSB, and ADIDA.

For series that are zero most of the time (item-level retail demand), where a smooth curve through zeros and
spikes fits poorly. Each forecasts a flat rate of demand per period:

- croston-sba: Croston's method with the Syntetos-Boylan correction. Simple exponential smoothing (SES, alpha 0.1)
  of the demand sizes and, separately, of the intervals between demands (counted in periods); the forecast is
  0.95 x size / interval (the 0.95 = 1 - alpha/2 removes Croston's known upward bias).
- tsb: Teunter-Syntetos-Babai. SES (alpha 0.1) of the demand sizes, and SES (alpha 0.1) over every period of
  whether it had a demand; the forecast is probability x size. Unlike Croston's, the probability decays through a
  run of zeros, so an item that stopped selling is forecast lower at each zero.
- adida: aggregate, forecast, disaggregate. The periods are summed in buckets of the mean interval between
  demands (rounded; the oldest periods that do not fill a bucket are dropped), SES with the alpha in [0.1, 0.3]
  of least in-sample squared error forecasts the next bucket, and the forecast is that total / bucket length.

The smoothing follows statsforecast's (CrostonSBA, TSB, ADIDA), which benchmarks/bench_intermittent_reference.py
checks against: SES starts at the first value, a demand is a value above zero, the first interval counts from
the start of the history. A missing value (NaN, or a timestamp absent from the grid) is left out: it is neither a
demand nor a zero, and the models work on the values in time order.

Intervals are an empirical band, as the simple models' (models/simple.py): the (1 - w)/2 and (1 + w)/2 quantiles
of the model's own one-step in-sample errors (each period's value minus what the model forecast for it from the
periods before), added to the forecast, flat over the horizon, holding the forecast, NaN with fewer than 2 errors.
For a history without negative values the band never goes below zero.

Numpy only, on the series' arrays: the recursions are one pass over the demands (or buckets) each.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Literal, get_args

import numpy as np

from ..config import ModelOptions
from ..types import Forecast, SeriesData
from .simple import FallbackImpossible

IntermittentKind = Literal["croston-sba", "tsb", "adida"]
KINDS: tuple[IntermittentKind, ...] = get_args(IntermittentKind)

# Croston's and TSB's smoothing constant: the customary 0.1 (Croston 1972; statsforecast's fixed choice), which
# weighs about the last 10 demands; SBA's correction factor is 1 - ALPHA / 2.
ALPHA = 0.1
SBA_FACTOR = 1 - ALPHA / 2
# ADIDA's SES searches its alpha in these bounds (statsforecast's): an aggregated series is short, and a free
# alpha would chase its last bucket.
ADIDA_BOUNDS = (0.1, 0.3)
# golden-section search's stop: alpha to 1e-9 (about 45 steps), so that the forecasts agree with statsforecast's
# search to 1e-8 and not just to the 1e-6 a looser stop leaves
_GOLDEN_TOL = 1e-9


def ses_levels(x: np.ndarray, alpha: float) -> np.ndarray:
    """Simple exponential smoothing's one-step forecasts of `x`: entry i is the forecast of x[i] made from x[:i]
    (entry 0, before any value, is NaN; entry 1 is x[0]), and entry len(x) the forecast past its end.

    The recursion runs over Python floats: for the few hundred to few thousand values of one series that is
    faster than any numpy formulation, whose closed form overflows ((1 - alpha) ** -n) on long series.
    """
    values = np.asarray(x, dtype=float).tolist()
    out = [math.nan] * (len(values) + 1)
    if not values:
        return np.array(out)
    level = values[0]
    out[1] = level
    keep = 1.0 - alpha
    for i in range(1, len(values)):
        level = alpha * values[i] + keep * level
        out[i + 1] = level
    return np.array(out)


def _ses_mse(x: np.ndarray, alpha: float) -> float:
    """SES's in-sample mean squared one-step error (over x[1:]); what ADIDA's alpha minimises."""
    fitted = ses_levels(x, alpha)[1:-1]
    return float(np.mean((x[1:] - fitted) ** 2)) if len(x) > 1 else 0.0


def best_alpha(x: np.ndarray, lo: float = ADIDA_BOUNDS[0], hi: float = ADIDA_BOUNDS[1]) -> float:
    """The SES alpha in [lo, hi] of least in-sample squared error, by golden-section search.

    With fewer than 3 values the error does not depend on alpha (the one error is x[1] - x[0]): the middle of
    the bounds, as statsforecast's search ends there too.
    """
    if len(x) < 3:
        return (lo + hi) / 2
    ratio = (math.sqrt(5) - 1) / 2
    a, b = lo, hi
    c, d = b - ratio * (b - a), a + ratio * (b - a)
    fc, fd = _ses_mse(x, c), _ses_mse(x, d)
    while b - a > _GOLDEN_TOL:
        if fc < fd:
            b, d, fd = d, c, fc
            c = b - ratio * (b - a)
            fc = _ses_mse(x, c)
        else:
            a, c, fc = c, d, fd
            d = a + ratio * (b - a)
            fd = _ses_mse(x, d)
    return (a + b) / 2


def _demands(y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The periods with a demand (a value above zero) and the intervals before each, in periods (the first
    counts from the start of the history: a demand in the first period has interval 1)."""
    at = np.flatnonzero(y > 0)
    return at, np.diff(at + 1, prepend=0).astype(float)


def _per_period(levels: np.ndarray, at: np.ndarray, n: int) -> np.ndarray:
    """Spread per-demand SES forecasts over the periods: period t gets the forecast made after the demands
    before it (NaN before the first demand). `levels` is ses_levels' output over the demands."""
    seen = np.searchsorted(at, np.arange(n), side="left")  # demands strictly before each period
    return levels[seen]


def croston_sba(y: np.ndarray) -> tuple[float, np.ndarray]:
    """(forecast, in-sample one-step forecasts per period) of Croston's method with the SBA correction.

    Args:
        y: the history without missing values, oldest first.
    """
    at, intervals = _demands(y)
    if len(at) == 0:
        return 0.0, np.zeros(len(y))
    sizes, gaps = ses_levels(y[at], ALPHA), ses_levels(intervals, ALPHA)
    rate = SBA_FACTOR * sizes / gaps
    return float(rate[-1]), _per_period(rate, at, len(y))


def tsb(y: np.ndarray) -> tuple[float, np.ndarray]:
    """(forecast, in-sample one-step forecasts per period) of TSB; see croston_sba."""
    at, _ = _demands(y)
    if len(at) == 0:
        return 0.0, np.zeros(len(y))
    sizes = _per_period(ses_levels(y[at], ALPHA), at, len(y) + 1)
    probability = ses_levels((y > 0).astype(float), ALPHA)
    rate = probability * sizes
    return float(rate[-1]), rate[:-1]


def adida(y: np.ndarray) -> tuple[float, np.ndarray]:
    """(forecast, in-sample one-step forecasts per period) of ADIDA; see croston_sba. The periods before the
    first whole bucket, and those of the first bucket (no earlier one to forecast it from), have none (NaN)."""
    at, intervals = _demands(y)
    if len(at) == 0:
        return 0.0, np.zeros(len(y))
    size = max(int(np.round(intervals.mean())), 1)  # np.round: half to even, as statsforecast's round()
    cut = len(y) % size
    totals = y[cut:].reshape(-1, size).sum(axis=1)
    levels = ses_levels(totals, best_alpha(totals)) / size
    fitted = np.full(len(y), np.nan)
    fitted[cut:] = np.repeat(levels[:-1], size)
    return float(levels[-1]), fitted


_METHODS = {"croston-sba": croston_sba, "tsb": tsb, "adida": adida}


def intermittent_forecast(kind: IntermittentKind, y: np.ndarray, horizon: int, interval_width: float = 0.8
                          ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(yhat, yhat_lower, yhat_upper) of one intermittent model over `horizon` periods; see the module docstring.

    Args:
        kind: "croston-sba", "tsb" or "adida".
        y: the history in time order; NaN and infinities are missing and left out.
        horizon: how many forecasts.
        interval_width: the band's coverage.

    Raises:
        FallbackImpossible: every value is missing.
        ValueError: an unknown kind.
    """
    if kind not in _METHODS:
        raise ValueError(f"unknown intermittent model {kind!r}; expected one of {', '.join(KINDS)}")
    y = np.asarray(y, dtype=float)
    y = y[np.isfinite(y)]
    if len(y) == 0:
        raise FallbackImpossible("all values are missing")
    rate, fitted = _METHODS[kind](y)
    yhat = np.full(horizon, rate)
    errors = (y - fitted)[~np.isnan(fitted)]
    if len(errors) < 2:
        nan = np.full(horizon, np.nan)
        return yhat, nan, nan.copy()
    lo, hi = np.quantile(errors, [(1 - interval_width) / 2, (1 + interval_width) / 2])
    lo, hi = min(lo, 0.0), max(hi, 0.0)  # the band holds the forecast (see simple.simple_forecast)
    lower, upper = yhat + lo, yhat + hi
    if (y >= 0).all():  # demand that never went below zero is not forecast to
        lower = np.maximum(lower, 0.0)
    return yhat, lower, upper


@dataclass(frozen=True)
class IntermittentModel:
    """One intermittent-demand method as a model: the series' values as they are (missing ones left out), a
    flat forecast at every date asked for, the empirical band; clipped at 0 with opts.non_negative."""

    name: IntermittentKind

    def check(self, series: SeriesData, opts: ModelOptions) -> None:
        """Nothing to check before the frequency: a series with one value is forecast too."""

    def forecast(self, series: SeriesData, future: np.ndarray, opts: ModelOptions, *,
                 season_length: int | None = None, source: str = "--future") -> Forecast:
        """Forecast the series at `future` (see the Model protocol; season_length does not apply).

        Raises:
            FallbackImpossible: stage "fit", when every value is missing.
        """
        t0 = time.perf_counter()
        yhat, lower, upper = intermittent_forecast(self.name, series.y, len(future), opts.interval_width)
        if opts.non_negative:
            yhat, lower, upper = (np.clip(a, 0, None) for a in (yhat, lower, upper))
        return Forecast(ds=np.asarray(future, dtype="datetime64[ns]"), yhat=yhat, yhat_lower=lower,
                        yhat_upper=upper, model=self.name, fit_seconds=time.perf_counter() - t0)


CROSTON_SBA = IntermittentModel("croston-sba")
TSB = IntermittentModel("tsb")
ADIDA = IntermittentModel("adida")
