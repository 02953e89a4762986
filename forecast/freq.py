"""Frequencies: a series' frequency (inferred or given), its time grid, its forecast dates and its season.

The run, the models, the backtest and `forecast check`'s profile (profile.py) all take their frequency code from
here. pandas is imported inside the functions that need it: a gapless daily or hourly series, and forecast dates
a fixed step apart, are handled in numpy, so a worker of the engines never loads pandas.
"""

from __future__ import annotations

import re
import warnings
from typing import TYPE_CHECKING

import numpy as np

from .config import ModelOptions
from .engines.model import regular_step
from .types import SeriesData, SeriesProblem

if TYPE_CHECKING:
    import pandas as pd

# Offsets of a fixed length, in nanoseconds; and the steps of calendar grids, which vary in length, as (shortest,
# longest) in days.
FIXED_STEPS = {"D": 86_400 * 10**9, "h": 3_600 * 10**9, "min": 60 * 10**9, "s": 10**9}
CALENDAR_DAYS = {"month": (28, 31), "quarter": (89, 92), "year": (365, 366)}
_PLAIN_STEPS = {FIXED_STEPS[u]: u for u in ("D", "h")}  # pd.infer_freq of a regular index with these steps

# Seasonal period by the base of a pandas frequency string: a week of days, a year of weeks/months/quarters,
# a day of hours. Anything else (minutes, multiples such as "2D") has no season, and seasonal-naive is naive.
_SEASONS = {"D": 7, "B": 5, "W": 52, "M": 12, "MS": 12, "ME": 12, "BM": 12, "BMS": 12, "BME": 12,
            "Q": 4, "QS": 4, "QE": 4, "BQ": 4, "BQS": 4, "BQE": 4, "H": 24}


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


def _calendar_freq(idx: pd.DatetimeIndex, steps: np.ndarray) -> str | None:
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


def season_length(freq: str | None) -> int:
    """The seasonal period of a frequency: 7 for daily, 52 weekly (and 7D), 12 monthly, 4 quarterly, 24 hourly,
    else 1. The one rule for the seasonal-naive model (fallback and backtest baseline alike) and MASE's scale.

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


def horizon_dates(last: np.datetime64 | pd.Timestamp, freq: str, horizon: int) -> np.ndarray:
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


def _past_last_timestamp(last: np.datetime64 | pd.Timestamp, freq: str, horizon: int) -> SeriesProblem:
    return SeriesProblem("future", f"{horizon} steps of {freq} after {str(last)[:19]} pass 2262-04-11, the last date "
                                   "pandas can hold; use a shorter --horizon")


def grid_positions(ds: np.ndarray, freq: str) -> np.ndarray:
    """Each timestamp's position on the grid of `freq` that starts at ds[0] (0, 1, 3, ... across a gap).

    Raises:
        SeriesProblem: stage "frequency", naming the first timestamp off that grid.
    """
    import pandas as pd

    grid = pd.date_range(ds[0], ds[-1], freq=freq)
    pos = grid.get_indexer(pd.DatetimeIndex(ds))
    if (pos < 0).any():
        first = pd.Timestamp(ds[np.flatnonzero(pos < 0)[0]])
        raise SeriesProblem("frequency", f"timestamp {first} is off the series' {freq} grid; pass --freq")
    return pos


def on_grid(ds: np.ndarray, y: np.ndarray, freq: str, future: np.ndarray | None = None
            ) -> tuple[np.ndarray, np.ndarray | None]:
    """The values on their regular time grid (NaN for absent timestamps), so that "one season earlier" means a
    calendar season even across gaps; and how many grid steps past the last timestamp each `future` date lies.

    When a timestamp lies off the grid, or the grid would be far longer than the series (a sparse series on a fine
    grid), the values are returned as they are; when a future date lies off the grid, the steps are 1, 2, ...

    Returns:
        (values, steps): steps is None without `future`.
    """
    import pandas as pd

    plain = None if future is None else np.arange(1, len(future) + 1)
    if len(ds) == 0:
        return np.asarray(y, dtype=float), plain
    grid = pd.date_range(start=pd.Timestamp(ds[0]), end=pd.Timestamp(ds[-1]), freq=freq)
    pos = grid.get_indexer(pd.DatetimeIndex(ds))
    if len(grid) > 10 * len(ds) + 1000 or (pos < 0).any():
        return np.asarray(y, dtype=float), plain
    values = np.full(len(grid), np.nan)
    values[pos] = y
    if future is None or len(future) == 0:
        return values, plain
    ahead = pd.date_range(start=grid[0], end=pd.Timestamp(np.max(future)), freq=freq)
    steps = ahead.get_indexer(pd.DatetimeIndex(future)) - (len(grid) - 1)
    return values, (steps if (steps > 0).all() else plain)
