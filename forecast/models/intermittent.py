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

Numpy only, on the series' arrays, with no Python loop per value (see ses_levels): a few tenths of a millisecond
per series, 5-15 % of a Prophet fit with the fast engine (benchmarks/bench_intermittent.py).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Literal, get_args

import numpy as np

from ..config import ModelOptions
from ..levels import band_columns, clipped, empirical_bands
from ..types import Forecast, SeriesData
from .simple import FallbackImpossible

IntermittentKind = Literal["croston-sba", "tsb", "adida"]
KINDS: tuple[IntermittentKind, ...] = get_args(IntermittentKind)

# Croston's and TSB's smoothing constant: the customary 0.1 (statsforecast's fixed one for Croston; its TSB takes
# it as an argument), which weighs about the last 10 demands; SBA's correction factor is 1 - ALPHA / 2.
ALPHA = 0.1
SBA_FACTOR = 1 - ALPHA / 2
# ADIDA's SES searches its alpha in these bounds (statsforecast's): an aggregated series is short, and a free
# alpha would chase its last bucket.
ADIDA_BOUNDS = (0.1, 0.3)
# ADIDA's search stops with alpha known to 1e-9: its forecasts then agree with statsforecast's (a golden-section
# search to about 1e-12) to 1e-12 on most series and to 1e-6 where the error is flat about its least
_ALPHA_TOL = 1e-9


def ses_levels(x: np.ndarray, alpha: float) -> np.ndarray:
    """Simple exponential smoothing's one-step forecasts of `x`: entry i is the forecast of x[i] made from x[:i]
    (entry 0, before any value, is NaN; entry 1 is x[0]), and entry len(x) the forecast past its end.

    The recursion level = alpha * x[i] + (1 - alpha) * level in closed form, so numpy does it without a Python
    loop per value: within a block, level[k] = r**k * cumsum(r**-j * u[j]) with r = 1 - alpha, which is exact to
    rounding (the sum's error scales back with r**k) as long as r**-k and the sum stay finite; blocks are cut
    where r**-k reaches 1e200 (values up to 1e100 then stay far from overflow) and carry their last level into
    the next: one block for alpha <= 0.3 up to 1,291 values, for alpha 0.1 up to 4,370.
    """
    x = np.asarray(x, dtype=float)
    out = np.full(len(x) + 1, np.nan)
    if len(x) == 0:
        return out
    u = alpha * x
    u[0] = x[0]  # SES starts at the first value
    r = 1.0 - alpha
    if r <= 0.0:  # alpha 1: each level is the last value
        out[1:] = u
        return out
    block = max(1, int(200 / -math.log10(r))) if r < 1.0 else len(x)
    carry = 0.0
    for start in range(0, len(x), block):
        seg = u[start:start + block]
        down = np.exp(np.arange(len(seg)) * math.log(r))  # r ** k, one exp instead of a pow per value
        levels = (np.cumsum(seg / down) + carry * r) * down
        out[start + 1:start + 1 + len(seg)] = levels
        carry = levels[-1]
    return out


def _ses_mse(x: np.ndarray, alpha: float) -> float:
    """SES's in-sample mean squared one-step error (over x[1:]); what ADIDA's alpha minimises."""
    fitted = ses_levels(x, alpha)[1:-1]
    return float(np.mean((x[1:] - fitted) ** 2)) if len(x) > 1 else 0.0


def best_alpha(x: np.ndarray, lo: float = ADIDA_BOUNDS[0], hi: float = ADIDA_BOUNDS[1]) -> float:
    """The SES alpha in [lo, hi] of least in-sample squared error.

    Brent's bounded search (golden sections and parabolic steps; the algorithm of scipy's fminbound, written out
    here because the package does not depend on scipy): about 10 to 20 evaluations of the error where a
    golden-section search alone takes 45 to pin alpha to _ALPHA_TOL, and each is one pass over the buckets.

    With fewer than 3 values the error does not depend on alpha (the one error is x[1] - x[0]): the middle of
    the bounds, as statsforecast's search ends there too.
    """
    if len(x) < 3:
        return (lo + hi) / 2
    # Most often the least error is at a bound (at the lower one for demand without runs: the least smoothing),
    # where Brent's steps would creep up on it 1e-9 at a time: an error rising from a bound ends the search.
    for bound, inward in ((lo, _ALPHA_TOL), (hi, -_ALPHA_TOL)):
        if _ses_mse(x, bound) <= _ses_mse(x, bound + inward):
            return bound
    golden = (3 - math.sqrt(5)) / 2
    sqrt_eps = math.sqrt(np.finfo(float).eps)
    a, b = lo, hi
    xf = nfc = fulc = a + golden * (b - a)
    fx = ffulc = fnfc = _ses_mse(x, xf)
    rat = e = 0.0
    xm = (a + b) / 2
    tol1 = sqrt_eps * abs(xf) + _ALPHA_TOL / 3
    tol2 = 2 * tol1
    while abs(xf - xm) > tol2 - (b - a) / 2:
        golden_step = True
        if abs(e) > tol1:  # try a parabola through the three best points
            golden_step = False
            r = (xf - nfc) * (fx - ffulc)
            q = (xf - fulc) * (fx - fnfc)
            p = (xf - fulc) * q - (xf - nfc) * r
            q = 2 * (q - r)
            if q > 0:
                p = -p
            q = abs(q)
            r, e = e, rat
            if abs(p) < abs(q * r / 2) and q * (a - xf) < p < q * (b - xf):
                rat = p / q
                if (xf + rat - a) < tol2 or (b - xf - rat) < tol2:
                    rat = tol1 if xm >= xf else -tol1
            else:
                golden_step = True
        if golden_step:
            e = (a if xf >= xm else b) - xf
            rat = golden * e
        u = xf + (1 if rat >= 0 else -1) * max(abs(rat), tol1)
        fu = _ses_mse(x, u)
        if fu <= fx:
            if u >= xf:
                a = xf
            else:
                b = xf
            fulc, ffulc, nfc, fnfc, xf, fx = nfc, fnfc, xf, fx, u, fu
        else:
            if u < xf:
                a = u
            else:
                b = u
            if fu <= fnfc or nfc == xf:
                fulc, ffulc, nfc, fnfc = nfc, fnfc, u, fu
            elif fu <= ffulc or fulc == xf or fulc == nfc:
                fulc, ffulc = u, fu
        xm = (a + b) / 2
        tol1 = sqrt_eps * abs(xf) + _ALPHA_TOL / 3
        tol2 = 2 * tol1
    return xf


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
    return _interval(*_fit(kind, y), horizon, interval_width)


def _interval(rate: float, errors: np.ndarray, floor: float | None, horizon: int, interval_width: float
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(yhat, yhat_lower, yhat_upper) of a fitted model (`_fit`'s rate, errors and floor)."""
    yhat = np.full(horizon, rate)
    if len(errors) < 2:
        nan = np.full(horizon, np.nan)
        return yhat, nan, nan.copy()
    lo, hi = np.quantile(errors, [(1 - interval_width) / 2, (1 + interval_width) / 2])
    lo, hi = min(lo, 0.0), max(hi, 0.0)  # the band holds the forecast (see simple.simple_forecast)
    lower, upper = yhat + lo, yhat + hi
    if floor is not None:
        lower = np.maximum(lower, floor)
    return yhat, lower, upper


def _fit(kind: IntermittentKind, y: np.ndarray) -> tuple[float, np.ndarray, float | None]:
    """The model's rate, its one-step in-sample errors (the basis of every band) and the floor of its bands: 0 for
    demand that never went below zero, which is not forecast to; None otherwise.

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
    return rate, (y - fitted)[~np.isnan(fitted)], 0.0 if (y >= 0).all() else None


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
        rate, errors, floor = _fit(self.name, series.y)
        yhat, lower, upper = _interval(rate, errors, floor, len(future), opts.interval_width)
        # --level and --quantile: a band per level from the same errors, of the same fit
        bands = empirical_bands(yhat, errors, opts, floor=floor) if band_columns(opts) else {}
        if opts.non_negative:
            yhat, lower, upper = (np.clip(a, 0, None) for a in (yhat, lower, upper))
        return Forecast(ds=np.asarray(future, dtype="datetime64[ns]"), yhat=yhat, yhat_lower=lower,
                        yhat_upper=upper, model=self.name, fit_seconds=time.perf_counter() - t0,
                        bands=clipped(bands, opts.non_negative))


CROSTON_SBA = IntermittentModel("croston-sba")
TSB = IntermittentModel("tsb")
ADIDA = IntermittentModel("adida")
