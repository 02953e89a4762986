"""Profile every series of a checked table without fitting it, and triage each: fit, fallback or skip.

Vectorised over the whole table: one sort (skipped when the table is already in key and time order), then
numpy reductions over each series' slice (`np.ufunc.reduceat`); no Python loop runs per series. `run_check` is
the library function behind `forecast check`; `forecast run --triage` uses `profile_table` and `triage`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from .config import ForecastConfig, TriageRules
from .errors import ConfigError
from .freq import CALENDAR_DAYS, FIXED_STEPS, infer_freq, step_to_freq
from .outputs import default_out_dir, write_table
from .sources import TableInput, open_source, read_table, sort_by_series
from .types import SeriesProblem

_DAY = FIXED_STEPS["D"]
_HOUR = FIXED_STEPS["h"]
# Calendar steps vary in length (a month is 28-31 days); they are coded as minus their length in months, which
# cannot collide with a real step (steps are positive nanoseconds).
_MONTH, _QUARTER, _YEAR = -1, -3, -12
_CALENDAR = tuple((*CALENDAR_DAYS[period], code)
                  for period, code in (("month", _MONTH), ("quarter", _QUARTER), ("year", _YEAR)))
# The rules in the order their reason is reported: skips first, then the reasons to fall back.
RULES = (("empty", "skip"), ("frequency", "skip"), ("stale", "skip"), ("new", "fallback"),
         ("intermittent", "fallback"), ("gappy", "fallback"), ("negative", "fallback"), ("constant", "fallback"))
# How many example series the terminal table shows per rule.
_EXAMPLES = 3


def _sorted_arrays(table: pd.DataFrame, id_cols: list[str]
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray, pd.DataFrame, np.ndarray]:
    """ds (int64 ns) and y in (key, time) order, the first row of each series, its key values, and the steps
    between consecutive rows (np.diff of ds, so the last row of a series holds the step into the next one)."""
    table, codes = sort_by_series(table, id_cols)  # read_table's output is in order already: only checked
    ds = table["ds"].to_numpy(dtype="datetime64[ns]").view("int64")
    y = table["y"].to_numpy(dtype=float)
    step = np.zeros_like(ds)  # np.diff then np.r_[step, 0] held two row-length copies at once (355 MB each at M5)
    np.subtract(ds[1:], ds[:-1], out=step[:-1])
    starts = np.r_[0, np.flatnonzero(np.diff(codes)) + 1]
    keys = table[id_cols].iloc[starts].reset_index(drop=True)
    return ds, y, starts, keys, step


def _modal_steps(step: np.ndarray, starts: np.ndarray, n_rows: np.ndarray, irregular: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Most common step and its share for the series flagged irregular (ties: the smallest step)."""
    n_series = len(starts)
    mode = np.zeros(n_series, dtype=np.int64)
    share = np.ones(n_series)
    series = np.flatnonzero(irregular)
    if len(series) == 0:
        return mode, share
    lengths = n_rows[series] - 1  # the steps inside each irregular series
    g = np.repeat(series, lengths)
    offset = np.arange(len(g)) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    s = step[np.repeat(starts[series], lengths) + offset]
    order = np.lexsort((s, g))
    g, s = g[order], s[order]
    run = np.flatnonzero(np.r_[True, (g[1:] != g[:-1]) | (s[1:] != s[:-1])])
    run_g, run_s, run_n = g[run], s[run], np.diff(np.r_[run, len(g)])
    best = np.lexsort((run_s, -run_n, run_g))
    first = best[np.r_[True, run_g[best][1:] != run_g[best][:-1]]]
    mode[run_g[first]] = run_s[first]
    share[run_g[first]] = run_n[first] / (n_rows[run_g[first]] - 1)
    return mode, share


def _series_steps(step: np.ndarray, starts: np.ndarray, ends: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per series: its most common step (calendar steps coded as _MONTH, _QUARTER, _YEAR; 0 for a single row),
    that step's share of its steps, and its smallest and largest step. `step` is _sorted_arrays' (changed in
    place)."""
    n_rows = ends - starts
    calendar = np.flatnonzero(step >= _CALENDAR[0][0] * _DAY)  # few rows in a daily table: work on those only
    days = step[calendar] / _DAY
    for lo, hi, code in _CALENDAR:
        step[calendar[(days >= lo) & (days <= hi)]] = code
    # The step out of a series' last row leads into the next series; replacing it by the series' own first step
    # leaves its minimum and maximum as they are, without a masked copy of the whole array.
    multi = n_rows >= 2
    step[ends[multi] - 1] = step[starts[multi]]
    smin = np.minimum.reduceat(step, starts)
    smax = np.maximum.reduceat(step, starts)
    irregular = (n_rows >= 3) & (smin != smax)
    mode, share = _modal_steps(step, starts, n_rows, irregular)
    modal = np.where(irregular, mode, np.where(multi, smin, 0))
    return modal, share, np.where(multi, smin, 0), np.where(multi, smax, 0)


# A series on the table's grid whose steps are all one larger multiple of the table's step, this many at least,
# keeps its own frequency: a weekly series in a daily table stays weekly. With fewer steps a regular pattern is
# as likely a coincidence of sparse sales (a department that sold in 3 weeks, 14 days apart) as a schedule.
OWN_GRID_MIN_STEPS = 8
_WEEKDAYS = ("THU", "FRI", "SAT", "SUN", "MON", "TUE", "WED")  # 1970-01-01, day 0 of the epoch, was a Thursday
_MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")


@dataclass
class TableGrid:
    """The table's frequency and which series lie on its grid.

    Attributes:
        freq: the frequency most series share, with its anchor (W-FRI, D, MS, QS-JAN, h, 14D); --freq when given;
            None when no series has two rows.
        on_grid: per series in key order (as io.split_series), whether it uses `freq`; the others infer their own.
        step: `freq` as a step code (nanoseconds, or minus months for a calendar step), for gap counts.
    """

    freq: str | None
    on_grid: np.ndarray
    step: int = 0
    anchor: int = 0  # where the grid starts: a step's phase (nanoseconds), or the month of a calendar step
    at_start: bool = True  # a calendar step's timestamps fall on the month's first day (else its last)
    voted: str | None = None  # with `like` (table_grid): the frequency this table alone would have taken


def table_grid(table: pd.DataFrame, id_cols: Sequence[str], freq: str | None = None,
               like: TableGrid | None = None) -> TableGrid:
    """The table's frequency, inferred once for the whole table, and the series that lie on its grid.

    The table's step is the most common step of its series (each series counts once, by its own most common
    step); its anchor is where most of those series start (the weekday of a weekly table, the time of day of a
    daily one, the month of a quarterly or yearly one; for calendar steps, the start or end of the month that
    most of their timestamps fall on). A series lies on the grid when every one
    of its timestamps does, however many periods it misses and however few rows it has (one included), unless
    all its steps are one larger multiple of the table's (at least OWN_GRID_MIN_STEPS of them). With `freq`
    (--freq) every series uses it. With `like` (the grid of a table's first block, when it is read block by
    block) the frequency is that grid's, and which series lie on it is worked out; `voted` says what this table
    alone would have taken.
    """
    if freq is not None:
        _check_given_freq(table, id_cols, freq)
        return TableGrid(freq, np.ones(table.groupby(list(id_cols), observed=True).ngroups, dtype=bool),
                         _given_step(freq) or 0)
    ds, _, starts, _, step = _sorted_arrays(table, list(id_cols))
    ends = np.r_[starts[1:], len(ds)]
    modal, _, smin, smax = _series_steps(step, starts, ends)
    grid = _grid(ds, starts, ends, modal, smin, smax, like)
    if like is not None:
        grid.voted = _grid(ds, starts, ends, modal, smin, smax).freq
    return grid


def _mode(values: np.ndarray) -> int:
    uniq, counts = np.unique(values, return_counts=True)
    return int(uniq[np.argmax(counts)])  # ties: the smallest


def _grid(ds: np.ndarray, starts: np.ndarray, ends: np.ndarray, modal: np.ndarray, smin: np.ndarray,
          smax: np.ndarray, like: TableGrid | None = None) -> TableGrid:
    n_series = len(starts)
    n_rows = ends - starts
    none = TableGrid(None, np.zeros(n_series, dtype=bool))
    if like is not None and like.freq is None:
        return none
    multi = modal != 0
    if like is None and not multi.any():
        return none
    if like is not None:
        table_step = like.step
    else:
        steps, counts = np.unique(modal[multi], return_counts=True)
        length = np.where(steps > 0, steps, -steps * 30 * _DAY)  # a calendar step as about its length
        table_step = int(steps[np.lexsort((length, -counts))[0]])  # the most common; a tie: the finer grid
    of_step = modal == table_step
    if table_step > 0:
        # where those series start (one value each)
        anchor = like.anchor if like is not None else _mode(np.mod(ds[starts[of_step]], table_step))
        on_row = np.mod(ds, table_step) == anchor
        if table_step == 7 * _DAY:
            label = "W-" + _WEEKDAYS[(anchor // _DAY) % 7]
        else:
            label = step_to_freq(table_step)
    else:
        months = -table_step
        month = ds.astype("datetime64[ns]").astype("datetime64[M]")
        month_start = month.astype("datetime64[ns]").view("int64")
        month_end = ((month + 1).astype("datetime64[ns]") - np.timedelta64(1, "D")).view("int64")
        rows_of = np.repeat(of_step, n_rows)  # the rows of the series whose own step is the table's
        starts_of, ends_of = ds == month_start, ds == month_end
        if like is not None:
            at_start = like.at_start
        else:
            at_start = np.count_nonzero(starts_of[rows_of]) >= np.count_nonzero(ends_of[rows_of])
        on_day = starts_of if at_start else ends_of
        # mid-month dates: no calendar grid
        if like is None and np.count_nonzero(on_day[rows_of]) * 2 < np.count_nonzero(rows_of):
            return none
        phase = np.mod(month.astype(np.int64), months)  # month 0 of the epoch is January
        anchor = like.anchor if like is not None else _mode(phase[rows_of & on_day])
        on_row = on_day & (phase == anchor)
        name = _MONTHS[anchor]
        label = {1: "MS" if at_start else "ME", 3: ("QS-" if at_start else "QE-") + name,
                 12: ("YS-" if at_start else "YE-") + name}[months]
    on_grid = np.logical_and.reduceat(on_row, starts)
    own = (n_rows - 1 >= OWN_GRID_MIN_STEPS) & (smin == smax) & (smin != table_step)
    if like is not None:
        label = like.freq
    return TableGrid(label, on_grid & ~own, table_step, int(anchor), bool(table_step > 0 or at_start))



def _periods_between(a: np.ndarray, b: np.ndarray, step: np.ndarray) -> np.ndarray:
    """(b - a) in steps of each series (float); calendar steps count whole months, quarters or years."""
    out = np.full(len(a), np.nan)
    fixed = step > 0
    out[fixed] = (b[fixed] - a[fixed]) / step[fixed]
    cal = step < 0
    months = (b[cal].astype("datetime64[ns]").astype("datetime64[M]").astype(np.int64)
              - a[cal].astype("datetime64[ns]").astype("datetime64[M]").astype(np.int64))
    out[cal] = months / -step[cal]
    return out


def _check_given_freq(table: pd.DataFrame, id_cols: Sequence[str], freq: str) -> None:
    """Refuse an anchored --freq whose grid misses the table's dates: `--freq W` (pandas' W-SUN) on a table of
    Fridays put every forecast on a Sunday two days after the cutoff, and the backtest refused every series.

    Raises:
        ConfigError: naming the grid the table's dates do lie on, when fewer than half of them lie on `freq`'s.
    """
    from pandas.tseries.frequencies import to_offset

    offset = to_offset(freq)
    if isinstance(offset, pd.offsets.Tick):  # fixed steps (D, h, ...) have no anchor to miss
        return
    dates = pd.DatetimeIndex(pd.unique(table["ds"].to_numpy(dtype="datetime64[ns]")))
    if len(dates) == 0:
        return
    on = sum(bool(offset.is_on_offset(d)) for d in dates[:: max(1, len(dates) // 500)])  # a sample of 500 at most
    if on * 2 >= len(dates[:: max(1, len(dates) // 500)]):
        return
    own = table_grid(table, id_cols).freq
    hint = f"; the table's dates lie on {own}: use --freq {own}" if own else ""
    raise ConfigError(f"--freq {freq} ({offset.freqstr}): the table's dates do not lie on its grid (the first is "
                      f"{dates.min().strftime('%a %Y-%m-%d')}){hint}")


def _given_step(freq: str) -> int | None:
    """A --freq as a step code (nanoseconds, or minus months for calendar steps); None when it has no fixed
    length (business days, say), which leaves the frequency to be inferred per series."""
    match = re.fullmatch(r"(\d*)(D|h|min|s|W|MS|ME|M|BMS|BME|QS|QE|Q|BQS|BQE|YS|YE|Y|AS|A|BYS|BYE)(?:-[A-Z]{3})?", freq)
    if match is None:
        return None
    n, unit = int(match[1] or 1), match[2]
    fixed = {**FIXED_STEPS, "W": 7 * _DAY}
    if unit in fixed:
        return n * fixed[unit]
    if unit.lstrip("B").startswith("M"):
        return n * _MONTH
    return n * (_QUARTER if unit.lstrip("B").startswith("Q") else _YEAR)


def profile_table(table: pd.DataFrame, id_cols: Sequence[str], freq: str | None = None,
                  grid: TableGrid | None = None, table_last: np.datetime64 | None = None) -> pd.DataFrame:
    """One row per series (in key order, as io.split_series) describing its history, without fitting.

    Frequency is `freq` (--freq) when given; else the table's frequency (`table_grid`) for a series on its grid,
    and for a series off it freq.infer_freq's rule, as `forecast run` uses them. Every label is a pandas
    frequency that --freq takes (W-FRI, MS, QS-JAN, D, h, 14D).

    Args:
        table: a table from io.read_table (key columns, ds, y).
        id_cols: the key column(s).
        freq: the --freq given to the run or check, if any: gaps and age are counted on its grid.
        grid: the table's grid, when the caller has it already (`table_grid`).
        table_last: the table's last timestamp, which ages are counted to, when `table` is a block of it.

    Returns:
        Key columns, then n_rows, n_obs (non-missing values), first, last (timestamps of the first and last
        row), last_value (timestamp of the last non-missing value), freq (a pandas frequency: D, W-FRI, MS,
        QS-JAN, h, 2D, ...; empty when it cannot be told), expected_periods and missing_periods inside first..last, gap_share,
        zero_share, n_negative, constant, y_min, y_max, age_periods and age_days (last_value's age at the table's last
        timestamp).
    """
    id_cols = list(id_cols)
    ds, y, starts, keys, step = _sorted_arrays(table, id_cols)
    n, n_series = len(ds), len(starts)
    ends = np.r_[starts[1:], n]
    n_rows = ends - starts
    has = ~np.isnan(y)

    modal, share, smin, smax = _series_steps(step, starts, ends)
    freq_step = np.where(share >= 0.5, modal, 0)
    given = _given_step(freq) if freq is not None else None
    if given is not None:
        freq_step[:] = given
        labels = np.full(n_series, freq, dtype=object)
    else:
        if grid is None:
            grid = _grid(ds, starts, ends, modal, smin, smax)
        labels = np.full(n_series, "", dtype=object)
        if grid.freq is not None:
            labels[grid.on_grid] = grid.freq
            freq_step[grid.on_grid] = grid.step
        # a series off the table's grid: its own frequency, as `forecast run` infers it (few series: a loop)
        for i in np.flatnonzero(~grid.on_grid):
            try:
                labels[i] = infer_freq(ds[starts[i]:ends[i]].view("datetime64[ns]"))
            except SeriesProblem:
                freq_step[i] = 0
                continue
            own = _given_step(labels[i])
            freq_step[i] = own if own is not None else freq_step[i]

    n_obs = np.add.reduceat(has, starts)
    first, last = ds[starts], ds[ends - 1]
    last_value = last if has.all() else np.maximum.reduceat(np.where(has, ds, np.iinfo(np.int64).min), starts)
    expected = np.floor(_periods_between(first, last, freq_step) + 1e-9) + 1
    missing = np.clip(expected - n_obs, 0, None)
    with np.errstate(invalid="ignore", divide="ignore"):
        zero_share = np.add.reduceat(y == 0, starts) / n_obs
        gap_share = missing / expected
    with np.errstate(invalid="ignore"):
        hi, lo = np.fmax.reduceat(y, starts), np.fmin.reduceat(y, starts)  # fmax/fmin skip NaN
    table_last = ds.max() if table_last is None else max(int(ds.max()), int(np.datetime64(table_last, "ns").view("int64")))
    age = _periods_between(last_value, np.full(n_series, table_last), freq_step)
    age_days = (table_last - last_value) / _DAY

    none = n_obs == 0
    profile = keys
    profile["n_rows"] = n_rows
    profile["n_obs"] = n_obs
    profile["first"] = first.view("datetime64[ns]")
    profile["last"] = last.view("datetime64[ns]")
    profile["last_value"] = np.where(none, np.datetime64("NaT"), last_value.view("datetime64[ns]"))
    profile["freq"] = labels
    profile["expected_periods"] = pd.array(np.where(np.isnan(expected), None, expected), dtype="Int64")
    profile["missing_periods"] = pd.array(np.where(np.isnan(missing), None, missing), dtype="Int64")
    profile["gap_share"] = gap_share
    profile["zero_share"] = zero_share
    profile["n_negative"] = np.add.reduceat(y < 0, starts)
    profile["constant"] = (n_obs >= 2) & (hi == lo)
    profile["y_min"] = np.where(none, np.nan, lo)
    profile["y_max"] = np.where(none, np.nan, hi)
    profile["age_periods"] = np.where(none, np.nan, age)
    profile["age_days"] = np.where(none, np.nan, age_days)
    return profile


def _fmt(values: pd.Series, digits: int = 0) -> pd.Series:
    return values.round(digits).astype("int64" if digits == 0 else "float64").astype(str)


def rule_masks(profile: pd.DataFrame, rules: TriageRules, freq_given: bool = False) -> dict[str, np.ndarray]:
    """Which series each rule catches (a series may be caught by several)."""
    has = profile["n_obs"].to_numpy() > 0
    return {
        "empty": ~has,
        "frequency": has & (profile["freq"].to_numpy() == "") & (not freq_given),
        "stale": (profile["age_periods"] > rules.stale_after).to_numpy(),
        "new": has & (profile["n_obs"] < rules.min_obs).to_numpy(),
        "intermittent": (profile["zero_share"] > rules.max_zero_share).to_numpy(),
        "gappy": has & (profile["gap_share"] > rules.max_gap_share).to_numpy(),
        "negative": has & (profile["n_negative"] > rules.max_negative_share * profile["n_obs"]).to_numpy()
                    & (not rules.allow_negative),
        "constant": profile["constant"].to_numpy() & has,
    }


def _reasons(p: pd.DataFrame, rules: TriageRules) -> dict[str, pd.Series]:
    single = p["n_rows"] == 1
    return {
        "empty": "no values: all " + p["n_rows"].astype(str) + " missing",
        "frequency": "cannot infer the frequency (" + single.map({True: "a single timestamp",
                                                                  False: "the steps vary"}) + "); pass --freq",
        "stale": ("stale: last value " + p["last_value"].dt.strftime("%Y-%m-%d %H:%M").str.removesuffix(" 00:00")
                  + ", " + p["age_periods"].fillna(0).round(1).map("{:g}".format) + f" periods before the table's end "
                  f"(--stale-after {rules.stale_after:g})"),
        "new": "new: " + p["n_obs"].astype(str) + f" values (--min-obs {rules.min_obs})",
        "intermittent": ("intermittent: " + _fmt(100 * p["zero_share"].fillna(0)) + "% zeros "
                         f"(--max-zero-share {rules.max_zero_share:g})"),
        "gappy": ("gappy: " + p["missing_periods"].astype(str) + " of " + p["expected_periods"].astype(str)
                  + f" periods missing (--max-gap-share {rules.max_gap_share:g})"),
        "negative": ("negative: " + p["n_negative"].astype(str) + " of " + p["n_obs"].astype(str) + " values below "
                     f"0 (--max-negative-share {rules.max_negative_share:g}; --allow-negative fits them)"),
        "constant": "constant at " + p["y_max"].map("{:g}".format),
    }


def triage(profile: pd.DataFrame, rules: TriageRules, freq_given: bool = False) -> pd.DataFrame:
    """Add verdict (fit, fallback, skip), reason (the first rule that caught the series) and rules (all of them).

    Skip rules: empty (no values), frequency (cannot be told and no --freq; a fallback needs it too), stale.
    Fallback rules: new (--min-obs), intermittent (--max-zero-share), gappy (--max-gap-share), negative (a share
    of negative values above --max-negative-share, unless --allow-negative), constant. A series no rule catches is fit.

    Args:
        profile: from profile_table.
        rules: the thresholds.
        freq_given: a --freq was given, so an unknown frequency is not a reason to skip.
    """
    masks = rule_masks(profile, rules, freq_given)
    out = profile.copy()
    rows = np.arange(len(profile))
    reason = np.full(len(profile), "", dtype=object)
    names = pd.Series("", index=profile.index, dtype=object)
    texts = _reasons(profile, rules)
    for name, _ in reversed(RULES):  # earlier rules overwrite later ones: the first rule's reason is kept
        mask = masks[name]
        if mask.any():
            reason[rows[mask]] = texts[name][mask].to_numpy()
    for name, _ in RULES:
        names = names.where(~masks[name], names + name + ";")
    skip = np.logical_or.reduce([masks[n] for n, v in RULES if v == "skip"])
    fallback = np.logical_or.reduce([masks[n] for n, v in RULES if v == "fallback"])
    out["verdict"] = np.select([skip, fallback], ["skip", "fallback"], "fit")
    out["reason"] = reason
    out["rules"] = names.str.removesuffix(";")
    return out


def _key_text(profile: pd.DataFrame, id_cols: Sequence[str]) -> pd.Series:
    text = profile[id_cols[0]].astype(str)
    for col in id_cols[1:]:
        text = text + "/" + profile[col].astype(str)
    return text


def summarize(profile: pd.DataFrame, id_cols: Sequence[str], rules: TriageRules, freq_given: bool = False) -> dict:
    """Counts for the terminal: series, history length distribution, frequency mix, verdicts, each rule's catch."""
    masks = rule_masks(profile, rules, freq_given)
    n_obs = profile["n_obs"].to_numpy()
    q = np.percentile(n_obs, [0, 10, 50, 90, 100]) if len(n_obs) else [0] * 5
    freq = profile["freq"].replace("", "unknown").value_counts()
    verdicts = profile["verdict"].value_counts()
    caught = {}
    for name, verdict in RULES:
        idx = np.flatnonzero(masks[name])
        caught[name] = {"verdict": verdict, "series": int(len(idx)),
                        "examples": _key_text(profile.iloc[idx[:_EXAMPLES]], list(id_cols)).tolist()}
    return {
        "series": int(len(profile)),
        "rows": int(profile["n_rows"].sum()),
        "n_obs": dict(zip(("min", "p10", "median", "p90", "max"), (float(v) for v in q))),
        "freq": {str(k): int(v) for k, v in freq.items()},
        "verdicts": {v: int(verdicts.get(v, 0)) for v in ("fit", "fallback", "skip")},
        "rules": caught,
    }


@dataclass
class CheckResult:
    """What `forecast check` found: the profile (with verdicts), the counts, and where profile.csv went."""

    out_dir: Path
    profile: pd.DataFrame
    summary: dict
    notes: list[str] = field(default_factory=list)
    files: dict[str, Path] = field(default_factory=dict)


def default_check_dir() -> Path:
    """outputs/<UTC timestamp>-check, beside the runs' outputs/<UTC timestamp>."""
    run_dir = default_out_dir()
    return run_dir.with_name(run_dir.name + "-check")


def run_check(path: TableInput, config: ForecastConfig, rules: TriageRules) -> CheckResult:
    """Check a table as `forecast run` would, profile and triage every series, and write profile.csv.

    Args:
        path: the input table: a path, a DataFrame, an Arrow table (see sources.open_source).
        config: the input columns and duplicates policy, and out_dir (None: outputs/<UTC timestamp>-check).
        rules: the triage thresholds.

    Returns:
        A CheckResult.

    Raises:
        InputError: the table cannot be used (the same checks as `forecast run`); nothing is written.
    """
    table, notes = read_table(open_source(path, config.query, config.db_table), config.id_cols, config.time_col,
                              config.target_col, config.duplicates)
    freq_given = config.model.freq is not None
    grid = table_grid(table, config.id_cols, config.model.freq)
    profile = triage(profile_table(table, config.id_cols, config.model.freq, grid), rules, freq_given)
    out_dir = Path(config.out_dir) if config.out_dir is not None else default_check_dir()
    _may_write_profile(out_dir, list(profile.columns))
    files = {"profile": write_table(profile, out_dir / "profile.csv")}
    summary = summarize(profile, config.id_cols, rules, freq_given)
    summary["table_freq"] = grid.freq
    summary["series_own_freq"] = int(np.count_nonzero(~grid.on_grid))
    return CheckResult(out_dir=out_dir, profile=profile, summary=summary, notes=notes, files=files)


def _may_write_profile(out_dir: Path, columns: list[str]) -> None:
    """`forecast check` writes profile.csv into --out: never over someone else's files (a directory with other
    files, or a profile.csv whose header is not a check's), which it would replace without a word.

    Raises:
        OutputExistsError: naming the files and the fix.
    """
    from .errors import OutputExistsError

    if out_dir.exists() and not out_dir.is_dir():
        raise OutputExistsError(f"{out_dir}: exists and is not a directory; choose another --out")
    if not out_dir.is_dir():
        return
    foreign = sorted(p.name for p in out_dir.iterdir() if p.name != "profile.csv" and not p.name.startswith("."))
    profile = out_dir / "profile.csv"
    if profile.is_file():
        try:
            with open(profile, encoding="utf-8") as f:
                header = f.readline().rstrip("\r\n").split(",")
        except (OSError, UnicodeDecodeError):
            header = []
        if header[-3:] != columns[-3:]:  # a check's profile ends with verdict, reason, rules
            foreign.append("profile.csv")
    if foreign:
        shown = ", ".join(foreign[:5]) + (", ..." if len(foreign) > 5 else "")
        raise OutputExistsError(f"{out_dir}: holds files that are not a forecast check's ({shown}); choose a new or "
                                "empty --out")


def format_check(result: CheckResult) -> str:
    """The short terminal table of `forecast check`."""
    s = result.summary
    q = s["n_obs"]
    lines = [
        ("series", str(s["series"])),
        ("rows", str(s["rows"])),
        ("values per series", f"min {q['min']:g}, p10 {q['p10']:g}, median {q['median']:g}, "
                              f"p90 {q['p90']:g}, max {q['max']:g}"),
        ("table frequency", f"{s['table_freq'] or 'none'} ({s['series_own_freq']} series off its grid, with "
                            "their own)"),
        ("frequency", ", ".join(f"{k} {v}" for k, v in s["freq"].items())),
        ("verdicts", ", ".join(f"{k} {v}" for k, v in s["verdicts"].items())),
    ]
    for name, rule in s["rules"].items():
        if rule["series"]:
            more = ", ..." if rule["series"] > len(rule["examples"]) else ""
            lines.append((f"  {name} -> {rule['verdict']}", f"{rule['series']}: {', '.join(rule['examples'])}{more}"))
    lines.append(("profile", str(result.files["profile"])))
    width = max(len(k) for k, _ in lines)
    return "\n".join(f"{k.ljust(width)}  {v}" for k, v in lines)
