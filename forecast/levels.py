"""Interval levels and quantiles beyond the one --interval-width interval: their forecasts columns, and the
empirical bands of the models whose intervals come from their own in-sample errors.

`--level 80 --level 95` adds yhat_lower_80, yhat_upper_80, yhat_lower_95, yhat_upper_95; `--quantile 0.9` adds
yhat_q90. Each model draws them from what already gives its one interval (the engines' and stock Prophet's
simulated paths, a simple model's errors), so a level L is the same band as a run with --interval-width L/100:
each consumer turns a level into that width (`level_width`) and applies the very expression it applies to
--interval-width, so the two agree to the last bit.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from .config import ModelOptions


def label(value: float) -> str:
    """How a level (80, 99.5) or a quantile in percent (90, 2.5) is written in a column name: no trailing zeros."""
    return f"{value:.10g}"


def level_width(level: float) -> float:
    """The --interval-width of a level in percent: 80 -> 0.8."""
    return level / 100


def lower_column(level: float) -> str:
    return f"yhat_lower_{label(level)}"


def upper_column(level: float) -> str:
    return f"yhat_upper_{label(level)}"


def quantile_column(q: float) -> str:
    """yhat_q90 for the quantile 0.9 (named in percent, as the levels are)."""
    return f"yhat_q{label(q * 100)}"


def band_columns(opts: ModelOptions) -> list[str]:
    """The forecasts' columns after yhat_upper that opts asks for: each level's lower and upper bound, in the order
    given, then each quantile's."""
    columns = []
    for level in opts.levels:
        columns += [lower_column(level), upper_column(level)]
    return columns + [quantile_column(q) for q in opts.quantiles]


def band_probabilities(opts: ModelOptions) -> dict[str, float]:
    """Each band column's probability (0..1): a level's (1 - w) / 2 and (1 + w) / 2, as the simple models compute
    them for --interval-width; a quantile's own."""
    out = {}
    for level in opts.levels:
        w = level_width(level)
        out[lower_column(level)], out[upper_column(level)] = (1 - w) / 2, (1 + w) / 2
    for q in opts.quantiles:
        out[quantile_column(q)] = q
    return out


def band_percents(opts: ModelOptions) -> dict[str, float]:
    """Each band column's percentile (0..100), as the engines and Prophet compute them for --interval-width:
    100 * (1 - w) / 2 and 100 * (1 + w) / 2 for a level, 100 * q for a quantile."""
    out = {}
    for level in opts.levels:
        w = level_width(level)
        out[lower_column(level)], out[upper_column(level)] = 100 * (1.0 - w) / 2, 100 * (1.0 + w) / 2
    for q in opts.quantiles:
        out[quantile_column(q)] = 100 * q
    return out


def empirical_bands(yhat: np.ndarray, errors: np.ndarray, opts: ModelOptions,
                    floor: float | None = None) -> dict[str, np.ndarray]:
    """The band columns of a model whose interval is the quantiles of its in-sample errors added to the forecast
    (models/simple.py): each probability's quantile of the same `errors`. Like that interval, a bound below the
    median is at most yhat and one above it at least yhat, so every band holds the forecast (and a quantile
    column stays equal to the bound with its tail); NaN when fewer than 2 errors exist. `floor`: no column goes
    below it (0 for a model that keeps the bounds of never-negative demand at or above 0, as its interval's).
    """
    probabilities = band_probabilities(opts)
    if len(errors) < 2:
        return {name: np.full(len(yhat), np.nan) for name in probabilities}
    offsets = np.quantile(errors, list(probabilities.values())) if probabilities else []
    out = {}
    for (name, p), offset in zip(probabilities.items(), offsets):
        if p < 0.5:
            offset = min(offset, 0.0)
        elif p > 0.5:
            offset = max(offset, 0.0)
        out[name] = yhat + offset if floor is None else np.maximum(yhat + offset, floor)
    return out


def clipped(bands: dict[str, np.ndarray], non_negative: bool) -> dict[str, np.ndarray]:
    """The bands clipped at 0 with --non-negative, as the forecast and its interval are."""
    return {name: np.clip(values, 0, None) for name, values in bands.items()} if non_negative else bands


def coverage_label(level: float) -> str:
    """metrics.csv's and the summary's name for a level's coverage: coverage_80."""
    return f"coverage_{label(level)}"


def below_label(q: float) -> str:
    """metrics.csv's and the summary's name for a quantile's share of actuals at or below it: below_q90."""
    return f"below_q{label(q * 100)}"
