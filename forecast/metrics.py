"""Forecast accuracy metrics and MASE's seasonal-naive scale: pure numpy, no pandas, no models.

Every metric takes aligned arrays of actuals and forecasts; points whose actual is missing (NaN) are left out.
Percentages are returned as fractions (0.12 means 12%). How the per-point errors are pooled into one figure per
series and one overall is in `score` and `overall`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import numpy as np

if TYPE_CHECKING:
    from numpy.typing import ArrayLike

METRICS = ("mae", "rmse", "wape", "smape", "mase", "mape", "coverage")

def _clean(y: ArrayLike, yhat: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    y, yhat = np.asarray(y, dtype=float), np.asarray(yhat, dtype=float)
    ok = ~np.isnan(y)
    return y[ok], yhat[ok]


def mae(y: ArrayLike, yhat: ArrayLike) -> float:
    """Mean absolute error."""
    y, yhat = _clean(y, yhat)
    return float(np.mean(np.abs(y - yhat))) if len(y) else np.nan


def rmse(y: ArrayLike, yhat: ArrayLike) -> float:
    """Root mean squared error."""
    y, yhat = _clean(y, yhat)
    return float(np.sqrt(np.mean((y - yhat) ** 2))) if len(y) else np.nan


def wape(y: ArrayLike, yhat: ArrayLike) -> float:
    """Weighted absolute percentage error: sum |y - yhat| / sum |y|; NaN when every actual is 0."""
    y, yhat = _clean(y, yhat)
    denom = np.sum(np.abs(y))
    return float(np.sum(np.abs(y - yhat)) / denom) if denom > 0 else np.nan


def smape(y: ArrayLike, yhat: ArrayLike) -> float:
    """Symmetric MAPE: mean of 2|y - yhat| / (|y| + |yhat|), in 0..2; a point where both are 0 counts as 0."""
    y, yhat = _clean(y, yhat)
    if not len(y):
        return np.nan
    denom = np.abs(y) + np.abs(yhat)
    terms = np.divide(2 * np.abs(y - yhat), denom, out=np.zeros_like(denom), where=denom > 0)
    return float(np.mean(terms))


def mape(y: ArrayLike, yhat: ArrayLike) -> tuple[float, int]:
    """Mean absolute percentage error over the non-zero actuals.

    Returns:
        (mape, skipped): the mean of |y - yhat| / |y| where y != 0, and how many zero actuals were skipped.
    """
    y, yhat = _clean(y, yhat)
    nonzero = y != 0
    skipped = int((~nonzero).sum())
    if not nonzero.any():
        return np.nan, skipped
    return float(np.mean(np.abs(y[nonzero] - yhat[nonzero]) / np.abs(y[nonzero]))), skipped


def coverage(y: ArrayLike, lower: ArrayLike, upper: ArrayLike) -> float:
    """Share of actuals inside [lower, upper]; NaN when there are no intervals."""
    y, lower, upper = (np.asarray(a, dtype=float) for a in (y, lower, upper))
    ok = ~(np.isnan(y) | np.isnan(lower) | np.isnan(upper))
    if not ok.any():
        return np.nan
    return float(np.mean((y[ok] >= lower[ok]) & (y[ok] <= upper[ok])))


def share_below(y: ArrayLike, bound: ArrayLike) -> float:
    """Share of actuals at or below `bound` (a quantile forecast: about q for a calibrated q quantile); NaN when
    there are none."""
    y, bound = np.asarray(y, dtype=float), np.asarray(bound, dtype=float)
    ok = ~(np.isnan(y) | np.isnan(bound))
    return float(np.mean(y[ok] <= bound[ok])) if ok.any() else np.nan


def naive_scale(y_train: ArrayLike, m: int) -> float:
    """MASE's denominator: the mean absolute error of the seasonal-naive forecast in-sample, |y[t] - y[t-m]|.

    Pairs with a missing value are left out. NaN when no pair is left or the series never changes (the scaled
    error would be infinite).
    """
    y = np.asarray(y_train, dtype=float)
    if len(y) <= m:
        return np.nan
    diffs = np.abs(y[m:] - y[:-m])
    diffs = diffs[~np.isnan(diffs)]
    if not len(diffs):
        return np.nan
    scale = float(np.mean(diffs))
    return scale if scale > 0 else np.nan


def score(y: ArrayLike, yhat: ArrayLike, lower: ArrayLike | None = None, upper: ArrayLike | None = None,
          scale: ArrayLike | None = None) -> dict[str, float]:
    """Every metric for one set of points (one series over all its windows, or everything pooled).

    Args:
        y, yhat: actuals and forecasts.
        lower, upper: the interval, or None.
        scale: per point, the MASE scale of the window the point belongs to (from `naive_scale`), or None.

    Returns:
        {"n": points scored, "mae", "rmse", "wape", "smape", "mase", "mape", "mape_skipped", "coverage"}.
        MASE is the mean of |y - yhat| / scale over the points whose scale is known.
    """
    y, yhat = np.asarray(y, dtype=float), np.asarray(yhat, dtype=float)
    mape_value, skipped = mape(y, yhat)
    out = {"n": int((~np.isnan(y)).sum()), "mae": mae(y, yhat), "rmse": rmse(y, yhat), "wape": wape(y, yhat),
           "smape": smape(y, yhat), "mase": np.nan, "mape": mape_value, "mape_skipped": skipped,
           "coverage": np.nan}
    if scale is not None:
        scale = np.asarray(scale, dtype=float)
        scaled = np.abs(y - yhat) / scale
        scaled = scaled[~np.isnan(scaled) & np.isfinite(scaled)]
        out["mase"] = float(np.mean(scaled)) if len(scaled) else np.nan
    if lower is not None and upper is not None:
        out["coverage"] = coverage(y, lower, upper)
    return out


def overall(y: ArrayLike, yhat: ArrayLike, lower: ArrayLike | None, upper: ArrayLike | None,
            series_mase: Sequence[float]) -> dict[str, float]:
    """The overall figures of a backtest: every point of every series pooled, except MASE.

    MAE, RMSE, WAPE (sum of absolute errors over sum of absolute actuals), sMAPE, MAPE and coverage are computed
    over all points together, so WAPE weighs each series by its volume. MASE is the mean of the per-series
    MASE values (it is scale-free, so each series counts once).
    """
    out = score(y, yhat, lower, upper)
    known = np.asarray([v for v in series_mase if not np.isnan(v)], dtype=float)
    out["mase"] = float(np.mean(known)) if len(known) else np.nan
    return out
