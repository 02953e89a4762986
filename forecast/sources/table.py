"""The checks every source's table passes, and a run's input loaded from a source: its series, their future
values, the holidays file.

Table-level checks happen here, before any worker starts; each raises `InputError` with one line that names the
source (a file's path as given, or "DataFrame"), the column and the offending value and row. Problems of one
series are checked by the models, in the workers (models/, model.py).
"""

from __future__ import annotations

import dataclasses
import difflib
import itertools
import math
import re
import shlex
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Literal, Sequence

import numpy as np
import pandas as pd

from ..errors import InputError
from ..types import SeriesData
from .base import RawBlock, Source, TableInput, open_source

if TYPE_CHECKING:
    from ..config import DuplicatePolicy, ForecastConfig, ModelOptions

# How a key column is written back (summary.json's key_types): as integers, or as text.
KeyType = Literal["int", "text"]

# Strings that mean "no value" in a target column; anything else that is not a number is an error.
_NA_STRINGS = {"", "na", "n/a", "nan", "null", "none", "nil", "-", "?"}
# How many example keys an error message shows.
_EXAMPLES = 3


def _separator_error(label: str, found: list[str]) -> InputError | None:
    """A header read as one column because the file is separated by ';', tabs or '|'."""
    if len(found) == 1:
        for sep in (";", "\t", "|"):
            if sep in found[0]:
                return InputError(f"{label}: the header is one column, {found[0]!r}: the file seems to separate "
                                  f"columns with {sep!r}; forecast reads comma-separated files, so save it with commas")
    return None


def _suggestion(flag: str, col: str, found: list[str], taken: set[str]) -> tuple[str, str | None]:
    """The fix for a column not in the file: the closest column not `taken` by another role (" " or case aside:
    "Y" or " y " for "y"), as (hint, the column suggested)."""
    by_folded = {f.strip().casefold(): f for f in found if f not in taken}
    close = difflib.get_close_matches(col.strip().casefold(), list(by_folded), n=1, cutoff=0.4)
    if not close:  # a name that says what it holds: "date" for the time column, "sales" for the target
        words = _ROLE_WORDS.get(flag, ())
        close = [f for f in by_folded if any(w in f for w in words)][:1]
    if close:
        name = by_folded[close[0]]
        return f"did you mean {name!r}? pass {flag} {shlex.quote(name)}", name
    return f"pass {flag} NAME", None


# Words in a column's name that say it holds times or the values to forecast, for a suggestion when no name is
# close to the one asked for.
_ROLE_WORDS = {"--time-col": ("date", "time", "day", "week", "month", "period"),
               "--target-col": ("sales", "demand", "qty", "quantity", "units", "value", "volume", "amount")}


def _missing_columns(label: str, missing: list[tuple[str, str, str]], found: list[str],
                     taken: set[str] = frozenset()) -> InputError:
    """One error for every (role, flag, column) not in the file, each with its suggestion (no column suggested
    twice, none that another role already uses), and the columns the file has."""
    wrong_separator = _separator_error(label, found)
    if wrong_separator is not None:
        return wrong_separator
    shown = ", ".join(found[:20]) + (", ..." if len(found) > 20 else "")
    used = set(taken)
    hints = []
    for role, flag, col in missing:
        hint, name = _suggestion(flag, col, found, used)
        if name is not None:
            used.add(name)
        hints.append((role, col, hint))
    if len(hints) == 1:
        role, col, hint = hints[0]
        return InputError(f"{label}: {role} column {col!r} not found; columns are: {shown}; {hint}")
    each = "; ".join(f"{role} column {col!r}: {hint}" for role, col, hint in hints)
    return InputError(f"{label}: {len(hints)} columns not found; columns are: {shown}; {each}")


# How the notes say that times were made naive (they keep their local wall time).
_MADE_NAIVE = "timestamps were made naive (local wall time)"
# A day and a month as two numbers (01/02/2024, 1.2.24): which comes first cannot be told from one date.
_NUMERIC_DATE = re.compile(r"^\s*\d{1,2}[/.-]\d{1,2}[/.-]\d{2,4}\b")
# A UTC offset after a time of day (10:00+02:00, 10:00:00.5Z), and the text before it.
_TIME_AND_OFFSET = re.compile(r"^(.*\d{1,2}:\d{2}(?::\d{2}(?:\.\d+)?)?)\s*(?:Z|[+-]\d{2}(?::?\d{2})?)$")


def _to_datetime(distinct: pd.Series, **options: Any) -> pd.Series:
    with warnings.catch_warnings():  # pandas warns that it parses element by element; the checks here say more
        warnings.simplefilter("ignore")
        return pd.to_datetime(distinct, errors="coerce", **options)


def _parse_distinct_times(label: str, distinct: pd.Series, col: str, notes: list[str]) -> pd.Series:
    """Each distinct time text parsed, NaT where it is not a time, in one reading for the whole column: the format
    of its first value; else day first (13/01/2024 after 01/01/2024); else value by value, refused where the day
    and the month could be read either way. Differing UTC offsets (a daylight-saving change) keep each
    timestamp's local wall time, as one offset or a Parquet time zone does."""
    try:
        parsed = _to_datetime(distinct)
    except (ValueError, TypeError):  # UTC offsets that differ between rows: drop them, keep the wall time
        text = distinct.astype(str)
        wall = text.str.replace(_TIME_AND_OFFSET, r"\1", regex=True)
        offsets = sorted({t[len(w):].strip() for t, w in zip(text, wall)} - {""})
        notes.append(f"column {col!r} had UTC offsets that differ between rows ({', '.join(offsets[:4])}); "
                     f"{_MADE_NAIVE}")
        return _parse_distinct_times(label, wall, col, notes)
    numeric_dates = distinct.astype(str).str.match(_NUMERIC_DATE)
    if not parsed.isna().any():
        if numeric_dates.any():
            dayfirst = _to_datetime(distinct, dayfirst=True)
            differ = (dayfirst.notna() & (dayfirst != parsed)).to_numpy()
            if differ.any() and not dayfirst.isna().any():
                example = distinct.iloc[int(np.flatnonzero(differ)[0])]
                notes.append(f"column {col!r} has dates such as {example!r} that read either way; they were read "
                             "month first; if the day comes first, write ISO dates (2024-01-31)")
        return parsed
    if numeric_dates.any():
        dayfirst = _to_datetime(distinct, dayfirst=True)
        if not dayfirst.isna().any():
            return dayfirst
    mixed = _to_datetime(distinct, format="mixed")
    if numeric_dates.any():  # value by value, 01/02/2024 would be read month first beside a day-first 13/02/2024
        other = _to_datetime(distinct, format="mixed", dayfirst=True)
        differ = np.flatnonzero((numeric_dates & mixed.notna() & (other != mixed)).to_numpy())
        if len(differ):
            i = int(differ[0])
            raise InputError(f"{label}: column {col!r} mixes date formats, and {distinct.iloc[i]!r} reads as "
                             f"{mixed.iloc[i]:%Y-%m-%d} or {other.iloc[i]:%Y-%m-%d}; write ISO dates such as "
                             "2024-01-31")
    return mixed


def _shown(value: Any) -> str:
    """A value of the input as an error message shows it: text quoted, anything else as printed."""
    return repr(value) if isinstance(value, str) else str(value)


def _parse_time(label: str, raw: pd.Series, col: str, offset: int = 0) -> tuple[pd.Series, list[str]]:
    """The time column parsed (see `_parse_distinct_times`); `offset` is the table row of raw's first, for messages."""
    notes: list[str] = []
    if raw.isna().any():
        row = int(np.flatnonzero(raw.isna().to_numpy())[0])
        raise InputError(f"{label}: column {col!r} has an empty time value at row {offset + row + 1}; every row "
                         "needs one")
    if pd.api.types.is_datetime64_any_dtype(raw.dtype):
        ds = raw
    elif pd.api.types.is_numeric_dtype(raw.dtype) or pd.api.types.is_bool_dtype(raw.dtype):
        raise InputError(f"{label}: column {col!r} holds numbers (e.g. {raw.iloc[0]}), not times; store dates or "
                         "timestamps (numbers of seconds since 1970: pd.to_datetime(x, unit='s'))")
    else:
        # each distinct text is parsed once (a long table repeats every date for every series)
        if isinstance(raw.dtype, pd.CategoricalDtype):
            codes, distinct = raw.cat.codes.to_numpy(), pd.Series(raw.cat.categories.astype(object))
        else:
            codes, uniques = pd.factorize(raw)
            distinct = pd.Series(np.asarray(uniques, dtype=object))
        parsed = _parse_distinct_times(label, distinct, col, notes)
        ds = pd.Series(parsed.array.take(codes))  # (Series.iloc's indexing took 4x as long on a million rows)
        bad = parsed.isna().to_numpy()[codes]
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise InputError(
                f"{label}: column {col!r} has a value that is not a time: {raw.iloc[row]!r} at row "
                f"{offset + row + 1} ({int(bad.sum())} such row(s)); use ISO dates such as 2024-01-31"
            )
    if getattr(ds.dt, "tz", None) is not None:
        notes.append(f"column {col!r} had timezone {ds.dt.tz}; {_MADE_NAIVE}")
        ds = ds.dt.tz_localize(None)
    if ds.dtype != "datetime64[ns]" and (ds.min() < pd.Timestamp.min or ds.max() > pd.Timestamp.max):
        out = ((ds < pd.Timestamp.min) | (ds > pd.Timestamp.max)).to_numpy()
        row = int(np.flatnonzero(out)[0])
        raise InputError(f"{label}: column {col!r} has a time outside the range pandas holds (1677-09-22 to "
                         f"2262-04-11): {_shown(raw.iloc[row])} at row {offset + row + 1} ({int(out.sum())} such "
                         "row(s))")
    return ds.astype("datetime64[ns]"), notes


def _parse_target(label: str, raw: pd.Series, col: str, offset: int = 0) -> pd.Series:
    if pd.api.types.is_bool_dtype(raw.dtype):
        raise InputError(f"{label}: column {col!r} holds true/false values, not numbers; choose a numeric --target-col")
    if pd.api.types.is_numeric_dtype(raw.dtype):
        return raw.astype("float64")
    y = pd.to_numeric(raw, errors="coerce")
    text = raw.astype("string").str.strip().str.lower()
    bad = (y.isna() & raw.notna() & ~text.isin(_NA_STRINGS)).to_numpy()
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise InputError(
            f"{label}: column {col!r} has a value that is not a number: {raw.iloc[row]!r} at row "
            f"{offset + row + 1} ({int(bad.sum())} such row(s)); leave a blank cell for a missing value"
        )
    return y.astype("float64")


def _describe_key(id_cols: Sequence[str], values: Sequence[Any]) -> str:
    return ", ".join(f"{c}={v}" for c, v in zip(id_cols, values))


def _sorted_categories(col: pd.Series) -> bool:
    return isinstance(col.dtype, pd.CategoricalDtype) and col.cat.categories.is_monotonic_increasing


def _codes_if_sorted(table: pd.DataFrame, id_cols: list[str]) -> np.ndarray | None:
    """Series codes by comparing neighbouring keys, when the rows are already in key order; else None.

    Tables usually come sorted by key. Comparing neighbours (the category codes of sorted categories, else the
    values in Arrow) costs a fraction of hashing every key (groupby), and gives codes in the same order as
    groupby(sort=True).ngroup() on a sorted table.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    n = len(table)
    ascending, equal = np.zeros(n - 1, dtype=bool), np.ones(n - 1, dtype=bool)
    try:
        for col in id_cols:
            if _sorted_categories(table[col]):
                a = table[col].cat.codes.to_numpy()
                lt, eq = a[:-1] < a[1:], a[:-1] == a[1:]
            else:
                a = pa.array(table[col])
                before, after = a[:-1], a[1:]
                lt = pc.less(before, after).to_numpy(zero_copy_only=False)
                eq = pc.equal(before, after).to_numpy(zero_copy_only=False)
            ascending |= equal & lt
            equal &= eq
    except (pa.ArrowException, TypeError, ValueError):  # e.g. mixed-type keys: let groupby decide
        return None
    if not (ascending | equal).all():
        return None
    return np.r_[0, np.cumsum(~equal)]


def _key_codes(table: pd.DataFrame, id_cols: list[str]) -> np.ndarray:
    """Per row, a code of its series key that orders as the keys do (their text order for text keys)."""
    if len(id_cols) == 1 and _sorted_categories(table[id_cols[0]]):
        return table[id_cols[0]].cat.codes.to_numpy()  # the readers' sorted categories: no hashing of 50M keys
    codes = _codes_if_sorted(table, id_cols) if len(table) > 1 else None
    if codes is not None:
        return codes
    return table.groupby(id_cols, sort=True, observed=True, dropna=False).ngroup().to_numpy()


def sort_by_series(table: pd.DataFrame, id_cols: Sequence[str]) -> tuple[pd.DataFrame, np.ndarray]:
    """The table in (key, time) order, rows of equal (key, time) in their order in the file, and the key codes
    of its rows. A table already in that order (the usual export) is only checked, in one pass, not sorted."""
    codes = _key_codes(table, list(id_cols))
    ds = table["ds"].to_numpy(dtype="datetime64[ns]").view("int64")
    if len(codes) > 1:
        dcode = np.diff(codes)
        if not ((dcode > 0) | ((dcode == 0) & (np.diff(ds) >= 0))).all():
            order = np.lexsort((ds, codes))  # stable: equal (key, time) rows keep the file's order
            table, codes = table.take(order).reset_index(drop=True), codes[order]
    return table, codes


def _handle_duplicates(label: str, df: pd.DataFrame, id_cols: list[str], policy: DuplicatePolicy, time_col: str,
                       suggest: Callable[[], str] | None = None) -> pd.DataFrame:
    """The table sorted by (key, time) (see `sort_by_series`), with repeated (key, time) rows refused or combined;
    `suggest()` adds to the refusal which columns would make the rows unique."""
    df, codes = sort_by_series(df, id_cols)
    ds = df["ds"].to_numpy(dtype="datetime64[ns]")
    repeat = (codes[1:] == codes[:-1]) & (ds[1:] == ds[:-1])  # sorted: a repeat sits next to its first
    if not repeat.any():
        return df
    subset = id_cols + ["ds"]
    dup = np.r_[repeat, False] | np.r_[False, repeat]
    if policy == "error":
        first = df.loc[dup, subset].drop_duplicates().head(_EXAMPLES)
        examples = "; ".join(
            _describe_key(id_cols, r[:-1]) + f", {time_col}={pd.Timestamp(r[-1])}"
            for r in first.itertuples(index=False)
        )
        hint = suggest() if suggest is not None else ""
        raise InputError(
            f"{label}: {int(repeat.sum())} duplicate ({', '.join(id_cols)}, {time_col}) row(s), e.g. {examples}; "
            f"{hint}pass --duplicates sum, mean or last to combine them"
        )
    values = [c for c in df.columns if c not in subset]
    grouped = df.groupby(subset, sort=False, dropna=False, observed=True)[values]
    combined = {"sum": lambda g: g.sum(min_count=1), "mean": lambda g: g.mean(), "last": lambda g: g.last()}[policy]
    return combined(grouped).reset_index()


# The most other columns tried as a missing key column when (key, time) rows repeat.
_KEY_CANDIDATES = 30


def _key_suggestion(source: Source, id_cols: Sequence[str], time_col: str, used: Sequence[str]) -> str:
    """Which of the table's other columns, added as an --id-col, would make every (key, time) row unique: repeated
    rows by the hundred thousand usually mean a key column was forgotten. "" when none would, or the table cannot
    be read again (this is only a hint beside the error): a pipe or standard input, read once already, is not."""
    try:
        others = [c for c in source.columns() if c not in used][:_KEY_CANDIDATES]
        if not others:
            return ""
        frame = source.read_as_text(list(id_cols) + [time_col] + others)
        if frame is None:
            return ""
        base = list(id_cols) + [time_col]
        fixes = [c for c in others if not frame.duplicated(base + [c]).any()]
    except Exception:
        return ""
    if not fixes:
        return ""
    flags = " or ".join(f"--id-col {shlex.quote(c)}" for c in fixes[:3])
    return f"every row is unique with {flags} added to the key (a forgotten key column?); or "


def _blank_as_missing(col: pd.Series) -> pd.Series:
    """A text column with empty or all-blank cells as missing values. Only those: the CSV readers keep texts such
    as "NA" or "null" in key and time columns, since "NA" is Namibia and a key is a label, not a number."""
    if isinstance(col.dtype, pd.CategoricalDtype):
        cats = col.cat.categories
        if cats.dtype == object or pd.api.types.is_string_dtype(cats.dtype):
            blank = cats[cats.astype(str).str.strip() == ""]
            return col.cat.remove_categories(blank) if len(blank) else col
        return col
    if pd.api.types.is_string_dtype(col.dtype) or col.dtype == object:  # pandas' reader; Parquet non-text keys
        blank = col.astype("string").str.strip().eq("").fillna(False)
        return col.mask(blank.to_numpy(dtype=bool))
    return col


# An integer as a key is written in a CSV: no leading zeros (00123 is a code), no sign but a minus, no "-0" (which
# would merge with "0"), at most 18 digits (int64).
_INTEGER = re.compile(r"0|-?[1-9][0-9]{0,17}")


def _integer_keys(col: pd.Series) -> pd.Series:
    """A key column read as text whose every value is an integer written without leading zeros (1, 42, -7), as
    integers; any other column as it is (codes such as 00123, or integers mixed with text, stay text). Read as
    categories, it stays categories (of integers, in numeric order)."""
    categorical = isinstance(col.dtype, pd.CategoricalDtype)
    distinct = pd.Series(col.cat.categories if categorical else pd.unique(col.dropna()))
    if not (pd.api.types.is_string_dtype(distinct.dtype) or distinct.dtype == object) or distinct.empty:
        return col
    text = distinct.astype(str)
    if not text.str.fullmatch(_INTEGER).all():
        return col
    if not categorical:
        return col.astype("int64")
    numbers = text.astype("int64").to_numpy()
    return col.cat.rename_categories(numbers).cat.reorder_categories(np.sort(numbers))


def key_types(table: pd.DataFrame, id_cols: Sequence[str]) -> dict[str, KeyType]:
    """Per key column, "int" when it holds integers (written back as integers by `read_run_dir`), else "text"."""
    types: dict[str, KeyType] = {}
    for c in id_cols:
        dtype = table[c].dtype
        values = dtype.categories.dtype if isinstance(dtype, pd.CategoricalDtype) else dtype
        types[c] = "int" if pd.api.types.is_integer_dtype(values) and not pd.api.types.is_bool_dtype(values) \
            else "text"
    return types


def _load(source: Source, id_cols: Sequence[str], time_col: str,
          numeric: Sequence[tuple[str, str, str]], names: Sequence[str],
          filters: list | None = None, labels: Sequence[tuple[str, str, str]] = ()) -> tuple[pd.DataFrame, list[str]]:
    """Read the key, time and numeric columns of a source's table and check them.

    numeric is (role, flag, column) per numeric column; names are their names in the returned table; filters
    (Parquet only) select rows as pyarrow's `filters` does. labels are (role, flag, column) per column read as the
    keys are (text, blanks missing), kept under its own name: a label of each series such as its region.
    """
    label = source.label
    id_cols = list(id_cols)
    _check_columns(source, id_cols, time_col, numeric, labels)
    label_cols = [c for _, _, c in labels]
    raw = source.read(id_cols + [time_col] + [c for _, _, c in numeric] + label_cols, id_cols + label_cols,
                      time_col, filters)
    raw = raw.reset_index(drop=True)
    if len(raw) == 0:
        raise InputError(f"{label}: the table has no data rows")
    return _checked_rows(source, raw, id_cols, time_col, numeric, names, label_cols)


def _check_columns(source: Source, id_cols: Sequence[str], time_col: str, numeric: Sequence[tuple[str, str, str]],
                   labels: Sequence[tuple[str, str, str]] = ()) -> None:
    """Refuse, in one line, every column the run names that the table does not have."""
    found = source.columns()
    roles = [("id", "--id-col", c) for c in id_cols] + [("time", "--time-col", time_col)] + list(numeric) + \
        list(labels)
    missing = [(role, flag, col) for role, flag, col in roles if col not in found]
    if missing:  # every missing column at once, each with its suggestion
        raise _missing_columns(source.label, missing, found, {c for _, _, c in roles if c in found})


def _checked_rows(source: Source, raw: pd.DataFrame, id_cols: list[str], time_col: str,
                  numeric: Sequence[tuple[str, str, str]], names: Sequence[str], label_cols: Sequence[str],
                  offset: int = 0) -> tuple[pd.DataFrame, list[str]]:
    """Rows as read (`raw`, from the table's row `offset` on) checked and typed: the keys, ds, the numeric columns
    under `names`, the label columns. Row numbers in messages count from the table's first row."""
    label = source.label
    for col in id_cols:
        raw[col] = _blank_as_missing(raw[col])
        if raw[col].isna().any():
            row = int(np.flatnonzero(raw[col].isna().to_numpy())[0])
            raise InputError(f"{label}: id column {col!r} is empty at row {offset + row + 1}; every row needs a "
                             "series key")
        first = raw[col].iloc[0]
        if isinstance(first, (list, tuple, dict, set, np.ndarray)):
            raise InputError(f"{label}: id column {col!r} holds lists or records, not text or numbers; "
                             "use a text or number column as the series key")
    if source.keys_as_text:  # typed sources (Parquet, a DataFrame) keep the type the keys were stored with
        for col in id_cols:
            raw[col] = _integer_keys(raw[col])
    raw[time_col] = _blank_as_missing(raw[time_col])
    ds, notes = _parse_time(label, raw[time_col], time_col, offset)
    table = raw[id_cols].copy()
    table["ds"] = ds.to_numpy()
    for (_, _, col), name in zip(numeric, names):
        table[name] = _parse_target(label, raw[col], col, offset).to_numpy()
    for col in label_cols:
        table[col] = _blank_as_missing(raw[col])
    return table, notes


def read_table(source: TableInput, id_cols: Sequence[str], time_col: str, target_col: str,
               duplicates: DuplicatePolicy = "error", extra_cols: Sequence[str] = ()) -> tuple[pd.DataFrame, list[str]]:
    """Read and check a long table of many series.

    Args:
        source: a Source, or what `open_source` opens: a .csv, .csv.gz or .parquet path, "-" for standard
            input, a pandas DataFrame, a pyarrow Table.
        id_cols: the key column(s).
        time_col: the timestamp column.
        target_col: the value column.
        duplicates: "error", or how to combine repeated (key, time) rows: "sum", "mean", "last".
        extra_cols: numeric columns to read as well (regressors, cap, floor), kept under their own names.

    Returns:
        (table, notes): the table with the key columns under their own names, then `ds` (naive datetime64)
        and `y` (float64, NaN for missing), then the extra columns; notes are things the user should be told
        (e.g. timezone dropped).

    Raises:
        InputError: one line naming the source, the column, and the value and row at fault.
    """
    source = open_source(source)
    numeric = [("target", "--target-col", target_col)] + [("extra", "--regressor", c) for c in extra_cols]
    table, notes = _load(source, id_cols, time_col, numeric, ["y"] + list(extra_cols))
    used = list(id_cols) + [time_col, target_col] + list(extra_cols)
    return _without_repeats(source, table, id_cols, time_col, duplicates, used, notes), notes


def _without_repeats(source: Source, table: pd.DataFrame, id_cols: Sequence[str], time_col: str,
                     duplicates: DuplicatePolicy, used: Sequence[str], notes: Sequence[str]) -> pd.DataFrame:
    """`_handle_duplicates` for checked rows of `source`: a refusal says which other columns would make the rows
    unique (`used`: the columns the run reads), and why an hour repeats when times were made naive (`notes`)."""
    try:
        return _handle_duplicates(source.label, table, list(id_cols), duplicates, time_col,
                                  suggest=lambda: _key_suggestion(source, id_cols, time_col, used))
    except InputError as e:
        if any(_MADE_NAIVE in note for note in notes):  # made naive, a daylight-saving change repeats an hour
            raise InputError(f"{e}; the times had a time zone, and at local wall time the hour that a daylight-"
                             "saving change repeats occurs twice: store them in UTC to keep both") from None
        raise


def _label_text(value: Any) -> str:
    """A label as it is matched and shown: its text, "" for a blank."""
    return "" if pd.isna(value) else str(value)


def _series_labels(label: str, table: pd.DataFrame, id_cols: list[str],
                   labels: Sequence[tuple[str, str, str]]) -> dict[tuple, dict[str, str]]:
    """Each series' value of each label column, as text ("" blank), by key.

    Raises:
        InputError: a column with more than one value within a series, naming the series and two of its values.
    """
    per_series: dict[tuple, dict[str, str]] = {}
    for _, flag, col in labels:
        pairs = table[id_cols + [col]].drop_duplicates()
        repeated = pairs.duplicated(id_cols, keep=False).to_numpy()
        if repeated.any():
            first = pairs[repeated].iloc[0]
            values = pairs[repeated & (pairs[id_cols] == first[id_cols]).all(axis=1).to_numpy()][col]
            shown = " and ".join(repr(_label_text(v)) if not pd.isna(v) else "a blank" for v in values.iloc[:2])
            raise InputError(f"{label}: column {col!r} ({flag}) has more than one value in series "
                             f"{_describe_key(id_cols, first[id_cols].tolist())}: {shown}; it needs one value per "
                             "series")
        for row in pairs.itertuples(index=False, name=None):
            per_series.setdefault(row[:-1], {})[col] = _label_text(row[-1])
    return per_series


def read_series_subset(source: TableInput, id_cols: Sequence[str], time_col: str, target_col: str,
                       duplicates: DuplicatePolicy, keys: Sequence[tuple]) -> dict[tuple, SeriesData]:
    """Read only the series with these keys from a Parquet table, checked and split as read_table does.

    What a worker does with --workers-read: one filtered read per chunk (row groups whose statistics exclude
    the keys are skipped), so the series' data never travels from the client.

    Returns:
        The series by key.
    """
    source = open_source(source)
    first = sorted({k[0] for k in keys}, key=str)
    table, _ = _load(source, id_cols, time_col, [("target", "--target-col", target_col)], ["y"],
                     filters=[(id_cols[0], "in", first)])
    table = _handle_duplicates(source.label, table, list(id_cols), duplicates, time_col)
    wanted = set(keys)
    return {s.key: s for s in split_series(table, id_cols) if s.key in wanted}


def read_future(source: TableInput, id_cols: Sequence[str], time_col: str, cols: Sequence[str]) -> pd.DataFrame:
    """Read the --future table: key columns, time and the future values of `cols` (regressors, cap, floor).

    Raises:
        InputError: as read_table, and for repeated (key, time) rows.
    """
    source = open_source(source)
    table, _ = _load(source, id_cols, time_col, [("future", "--regressor", c) for c in cols], list(cols))
    return _handle_duplicates(source.label, table, list(id_cols), "error", time_col)


def attach_future(series: Sequence[SeriesData], future: pd.DataFrame, id_cols: Sequence[str],
                  cols: Sequence[str]) -> None:
    """Give each series its future times and values from a read_future table (none for a key it lacks)."""
    future = future.rename(columns={c: f"_extra_{i}" for i, c in enumerate(cols)})
    parts = {tuple(str(k) for k in s.key): s for s in split_series(future.assign(y=np.nan), id_cols,
                                            [f"_extra_{i}" for i in range(len(cols))])}
    empty = np.array([], dtype="datetime64[ns]")
    for s in series:
        part = parts.get(tuple(str(k) for k in s.key))
        s.future_ds = part.ds if part is not None else empty
        s.future_extra = {c: (part.extra[f"_extra_{i}"] if part is not None else np.array([]))
                          for i, c in enumerate(cols)}


# One row of a holidays file: (holiday, ISO date, lower_window, upper_window).
HolidayRow = tuple[str, str, int, int]


def _holiday_frame(path: Path, keys: Sequence[str] = ()) -> tuple[list[HolidayRow], list[tuple[str, ...]]]:
    """A holidays file's rows, checked, and each row's values of the key columns as text."""
    from .files import FileSource

    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file (--holidays-file)")
    frame = FileSource(path).read_whole(dtype={c: "string" for c in ("holiday", *keys)})
    for col in ("holiday", "ds"):
        if col not in frame.columns:
            shown = ", ".join(map(str, frame.columns[:20]))
            raise InputError(f"{path}: holidays column {col!r} not found; columns are: {shown}; the file needs "
                             "holiday and ds, and optionally lower_window and upper_window")
    missing = [c for c in keys if c not in frame.columns]
    if missing:
        shown = ", ".join(map(str, frame.columns[:20]))
        raise InputError(f"{path}: key column {missing[0]!r} (--holidays-key) not found; columns are: {shown}; the "
                         "file needs a column of each series' region (or key) named as in the input")
    for col in ("holiday", *keys):
        empty = frame[col].isna()
        if col != "holiday":  # a blank key names no region
            empty |= frame[col].astype("string").str.strip().eq("").fillna(False)
        empty = empty.to_numpy(dtype=bool)
        if empty.any():
            row = int(np.flatnonzero(empty)[0])
            what = "a holiday name" if col == "holiday" else f"its {col} (--holidays-key)"
            raise InputError(f"{path}: column {col!r} is empty at row {row + 1}; every row needs {what}")
    ds, _ = _parse_time(path, frame["ds"], "ds")
    windows = {}
    for col in ("lower_window", "upper_window"):
        values = pd.to_numeric(frame[col], errors="coerce") if col in frame else pd.Series(0, index=frame.index)
        bad = (values.isna() | (values != values.round())).to_numpy()
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise InputError(f"{path}: column {col!r} has {frame[col].iloc[row]!r} at row {row + 1}; "
                             "use a whole number of days (e.g. -1 or 0)")
        windows[col] = values.astype(int).tolist()
    rows = [(str(h), str(pd.Timestamp(d).date()), lo, up)
            for h, d, lo, up in zip(frame["holiday"], ds, windows["lower_window"], windows["upper_window"])]
    key_values = list(zip(*(frame[c].map(_label_text).tolist() for c in keys))) if keys else [()] * len(rows)
    return rows, key_values


def read_holidays(path: Path) -> tuple[HolidayRow, ...]:
    """Read a holidays table (holiday, ds, lower_window, upper_window; the windows optional, default 0).

    Returns:
        One (holiday, ISO date, lower_window, upper_window) per row, for ModelOptions.holiday_table.

    Raises:
        InputError: a missing column, a date that does not parse, a window that is not a whole number.
    """
    return tuple(_holiday_frame(path)[0])


def read_keyed_holidays(path: Path, keys: Sequence[str]) -> dict[tuple[str, ...], tuple[HolidayRow, ...]]:
    """Read a holidays table with key columns (a region, a state, a series' key): its rows by their keys' values.

    Returns:
        {(key values as text): the rows with those values, in the file's order}.

    Raises:
        InputError: as read_holidays, and for a key column missing or empty at a row.
    """
    rows, key_values = _holiday_frame(path, keys)
    keyed: dict[tuple[str, ...], list[HolidayRow]] = {}
    for value, row in zip(key_values, rows):
        keyed.setdefault(value, []).append(row)
    return {value: tuple(part) for value, part in keyed.items()}


def _shown_keys(cols: Sequence[str], values: tuple[str, ...]) -> str:
    return ", ".join(f"{c}={v!r}" for c, v in zip(cols, values))


def attach_holidays(series: Sequence[SeriesData], keyed: dict[tuple[str, ...], tuple[HolidayRow, ...]],
                    path: Path, keys: Sequence[str], values: Sequence[tuple[str, ...]]) -> list[str]:
    """Give each series the rows of a keyed holidays file (read_keyed_holidays) whose keys are its `values` (one
    per series), none when the file has no rows for them; series of one region share one tuple of rows, so a
    chunk carries each region's rows once.

    A value of the file that no series has is refused when it is written almost as one that has no rows (a typo:
    "ca" for "CA", "Californa"), or when no value of the file is any series' (the wrong column, or the keys written
    otherwise); else its rows are left out, with a note (a file for every state, a run for some).

    Returns:
        Notes for the user: the file's values no series has, and how many series have no rows.

    Raises:
        InputError: one line naming the file, the key column(s), the value and the fix.
    """
    had = set(values)
    for s, value in zip(series, values):
        s.holiday_table = keyed.get(value, ())
    unused = [v for v in keyed if v not in had]
    uncovered = sorted(v for v in had if v not in keyed)
    cols = ", ".join(keys)
    if unused and len(unused) == len(keyed):
        theirs = "; ".join(_shown_keys(keys, v) for v in sorted(had)[:_EXAMPLES])
        raise InputError(f"{path}: no value of its key column(s) {cols} (--holidays-key) is a series' (the file has "
                         f"{_shown_keys(keys, unused[0])}; the series have {theirs}); write the values as the input "
                         "does")
    folded = {" ".join(v).strip().casefold(): v for v in uncovered}
    for value in unused:
        close = difflib.get_close_matches(" ".join(value).strip().casefold(), list(folded), n=1, cutoff=0.8)
        if close:
            raise InputError(f"{path}: {_shown_keys(keys, value)} is no series' value of {cols} (--holidays-key); "
                             f"did you mean {_shown_keys(keys, folded[close[0]])}, whose series have no rows in the "
                             "file? write it as the input does")
    notes = []
    if unused:
        notes.append(f"{path}: {len(unused)} value(s) of {cols} are no series' (e.g. {_shown_keys(keys, unused[0])}): "
                     "their holidays are not used")
    if uncovered:
        n = sum(v not in keyed for v in values)
        notes.append(f"{n} series have no rows in {path} (e.g. {_shown_keys(keys, uncovered[0])}): they get no "
                     "holidays from it")
    return notes


def split_series(table: pd.DataFrame, id_cols: Sequence[str], extra_cols: Sequence[str] = ()) -> list[SeriesData]:
    """Split a checked table into series, sorted by key, each sorted by time.

    Vectorised: one sort of the whole table (a check only, when read_table has sorted it), then slices, so it
    costs about the same for 50 or 50,000 series. Each series' arrays are views of the sorted table's columns,
    not copies. The `extra_cols` (regressors, cap, floor) go into each series' `extra`.
    """
    id_cols = list(id_cols)
    table, codes = sort_by_series(table, id_cols)
    ds = table["ds"].to_numpy(dtype="datetime64[ns]")
    y = table["y"].to_numpy(dtype=float)
    starts = np.flatnonzero(np.r_[True, codes[1:] != codes[:-1]])
    ends = np.r_[starts[1:], len(codes)]
    keys = list(table[id_cols].iloc[starts].itertuples(index=False, name=None))
    extra = {c: table[c].to_numpy(dtype=float) for c in extra_cols}
    return [SeriesData(key=k, ds=ds[s:e], y=y[s:e], extra={c: v[s:e] for c, v in extra.items()})
            for k, s, e in zip(keys, starts, ends)]


def load_series(source: TableInput, config: ForecastConfig, with_future: bool = True
                ) -> tuple[pd.DataFrame, list[SeriesData], list[str], ModelOptions]:
    """Read everything a run needs: the table split into series, their future values, the holidays file (each
    series' own rows with --holidays-key), each series' country (--holidays-col).

    Args:
        source: the input table: a Source, or what `open_source` opens (a path, a DataFrame, an Arrow table).
        config: a ForecastConfig.
        with_future: attach the --future values (a run needs them for its regressors; a backtest does not).

    Returns:
        (table, series, notes, model): `model` is config.model with the --holidays-file rows filled in (when
        they are not keyed to series).

    Raises:
        InputError, ConfigError: before any worker starts.
    """
    model, blocks = load_blocks(source, config, rows=0, with_future=with_future)
    block = next(blocks)  # the table whole: one block
    return block.table, block.series, block.notes, model


def _series_label(series: SeriesData, col: str, id_cols: Sequence[str], labels: dict[tuple, dict[str, str]]) -> str:
    """A series' value of a label column, as text: its key's, when the column is an id column."""
    if col in id_cols:
        return _label_text(series.key[list(id_cols).index(col)])
    return labels[series.key][col]



# ---------------------------------------------------------------------------------------------------------------
# reading by series blocks (a table larger than memory): `stream_series`

class TableNotSorted(Exception):
    """The table's keys went back after blocks of it were given out: it must be read again, partitioned."""

    def __init__(self, row: int, key: tuple, after: tuple) -> None:
        super().__init__(f"row {row}: key {key} after {after}")
        self.row, self.key, self.after = row, key, after


@dataclass
class SeriesBlock:
    """Whole series of a table read block by block: the checked rows (key, time order), the series, the block's
    notes, how many series came before it, and the share of the input read so far."""

    table: pd.DataFrame
    series: list[SeriesData]
    notes: list[str]
    start: int
    read: float
    labels: dict[tuple, dict[str, str]] = dataclasses.field(default_factory=dict)  # see _series_labels
    in_key_order: bool = True  # its series come after those of earlier blocks in key order (else the outputs
    # are put in key order at the end: a table grouped by series in another order, or partitioned into buckets)
    void_below: int = 0  # series before this index were given out before the table proved unsorted: set aside


@dataclass(frozen=True)
class StreamPlan:
    """What `stream_series` reads and how: the columns' roles and the rows per block."""

    id_cols: tuple[str, ...]
    time_col: str
    numeric: tuple[tuple[str, str, str], ...]
    names: tuple[str, ...]
    labels: tuple[tuple[str, str, str], ...]
    duplicates: str
    rows: int


def _plain_keys(frame: pd.DataFrame, id_cols: Sequence[str]) -> pd.DataFrame:
    """Key columns as plain values (categories undone), so blocks with other categories join and write alike."""
    for c in id_cols:
        if isinstance(frame[c].dtype, pd.CategoricalDtype):
            frame[c] = frame[c].astype(frame[c].cat.categories.dtype)
    return frame


def _joined(head: pd.DataFrame, tail: pd.DataFrame, id_cols: Sequence[str]) -> pd.DataFrame:
    """Two checked blocks as one, keys of one type: integers where both hold integers, else text."""
    for c in id_cols:
        a, b = head[c], tail[c]
        if isinstance(a.dtype, pd.CategoricalDtype) and isinstance(b.dtype, pd.CategoricalDtype):
            if a.cat.categories.dtype == b.cat.categories.dtype:
                # the sorted union of the two blocks' categories (a few hundred keys), and each column's codes
                # mapped to it where it differs: usually only the carried rows', since the series they start
                # goes on in the next block, whose categories hold its key already (so a block of a million rows
                # is not recoded)
                union = a.cat.categories.union(b.cat.categories).sort_values()
                for frame, col in ((head, a), (tail, b)):
                    if not col.cat.categories.equals(union):
                        frame[c] = col.cat.set_categories(union)
                continue
        a, b = _plain_keys(head[[c]].copy(), [c])[c], _plain_keys(tail[[c]].copy(), [c])[c]
        if a.dtype != b.dtype:  # integers in one block, text in the other: text, as a whole read has it
            a, b = a.astype(str).astype(object), b.astype(str).astype(object)
        head[c], tail[c] = a, b
    return pd.concat([head, tail], ignore_index=True)


def _key_at(table: pd.DataFrame, id_cols: Sequence[str], row: int) -> tuple:
    return tuple(table[c].iloc[row] for c in id_cols)


def _key_order(a: tuple, b: tuple) -> bool:
    """Whether key a comes before key b (text order when their types differ)."""
    try:
        return a < b
    except TypeError:
        return tuple(map(str, a)) < tuple(map(str, b))


def stream_series(source: Source, plan: StreamPlan, spill_dir: Path | None,
                  notify: Callable[[str], None] | None = None
                  ) -> Iterator[SeriesBlock]:
    """The table's series, read block by block and checked as a whole read checks them: each block holds whole
    series, in key order, and only the blocks in hand are held.

    A table sorted by key (as exports usually are) is read once: each block of about `plan.rows` rows is cut at its
    last series boundary and the rest carried into the next. A table that is not is partitioned first: its checked
    rows are written into hash buckets of keys in `spill_dir`, then read bucket by bucket (each sorted, whole
    series in each), so no sort of the whole table is ever held. The disorder is usually seen in the first block;
    when it is seen only after blocks were given out, `TableNotSorted` is raised and the caller reads again with
    `partitioned_series`.

    Raises:
        InputError: as read_table, naming the table's row where a row's value is at fault.
        TableNotSorted: see above.
    """
    id_cols = list(plan.id_cols)
    label_cols = [c for _, _, c in plan.labels]
    _check_columns(source, id_cols, plan.time_col, plan.numeric, plan.labels)
    columns = id_cols + [plan.time_col] + [c for _, _, c in plan.numeric] + label_cols
    carry: pd.DataFrame | None = None  # the rows of the last series read, which the next block may go on
    carry_start = 0  # the table row of the carry's first row
    carry_notes: list[str] = []
    given = 0  # series given out so far
    # the keys of the series given out, as a sorted array of their hashes: 8 bytes each and no Python object per
    # series (two keys with one hash, which is all but impossible, would only make the table read partitioned,
    # which is never wrong)
    seen = np.array([], dtype=np.int64)
    last_key: tuple | None = None
    in_order = True  # the keys so far ascend (else the blocks' series are not in key order)
    read = 0.0
    raws = (raw for raw in source.blocks(columns, id_cols + label_cols, plan.time_col, plan.rows or _WHOLE)
            if len(raw.frame))
    following = next(raws, None)
    while following is not None:
        raw, following = following, next(raws, None)  # one block ahead: the last block is not cut
        read = raw.read if following is not None else 1.0
        checked, notes = _checked_rows(source, raw.frame.reset_index(drop=True), id_cols, plan.time_col,
                                       list(plan.numeric), list(plan.names), label_cols, raw.start)
        block_start = raw.start
        if carry is not None:
            checked, block_start, notes = _joined(carry, checked, id_cols), carry_start, carry_notes + notes
        starts = _run_starts(checked, id_cols)
        keys = list(checked[id_cols].iloc[starts].itertuples(index=False, name=None))
        repeat = _first_repeat(keys, seen)
        if repeat is not None:  # a series' rows are not all together: the table must be partitioned
            if given:  # blocks were given out: the caller starts again, partitioned
                raise TableNotSorted(block_start + int(starts[repeat]) + 1, keys[repeat], last_key)
            if plan.rows == 0:  # read whole: sorted in memory, as it is held anyway
                rest = itertools.chain([following] if following is not None else [], raws)
                yield _series_block(source, _rest_joined(checked, rest, source, plan), plan, notes, 0, 1.0)
                return
            if notify is not None:
                notify(f"{source.label}: the rows of a series are not all together (key {keys[repeat]} again at "
                       f"row {block_start + int(starts[repeat]) + 1}); the table is partitioned into buckets in the "
                       "run's temporary directory first (sorting the table by key saves this pass)")
            yield from partitioned_series(source, plan, spill_dir)
            return
        if in_order:
            chain = ([last_key] if last_key is not None else []) + keys
            in_order = all(_key_order(a, b) for a, b in zip(chain, chain[1:]))
        # the last series may go on in the next block: carried (the whole table, when it is read whole)
        cut = int(starts[-1]) if plan.rows and following is not None else len(checked)
        if plan.rows == 0 and following is not None:
            cut = 0  # the whole table at once: keep reading
        carry, carry_start, carry_notes = checked.iloc[cut:].reset_index(drop=True), block_start + cut, []
        if cut == 0:  # one series so far, not ended yet: keep reading
            carry_notes = notes
            continue
        if cut < len(checked):
            checked = checked.iloc[:cut].reset_index(drop=True)
            keys = keys[:-1]
        else:
            carry = None
        seen = _with_hashes(seen, np.fromiter(map(hash, keys), dtype=np.int64, count=len(keys)))
        last_key = keys[-1]
        block = _series_block(source, checked, plan, notes, given, read)
        block.in_key_order = in_order
        given += len(block.series)
        yield block
    if given == 0 and carry is None:
        raise InputError(f"{source.label}: the table has no data rows")


def _run_starts(table: pd.DataFrame, id_cols: Sequence[str]) -> np.ndarray:
    """The rows where a run of rows with one key starts (a key's rows all together are one run)."""
    n = len(table)
    same = np.ones(max(n - 1, 0), dtype=bool)
    for c in id_cols:
        col = table[c]
        values = col.cat.codes.to_numpy() if isinstance(col.dtype, pd.CategoricalDtype) else col.to_numpy()
        same &= values[1:] == values[:-1]
    return np.flatnonzero(np.r_[True, ~same])


# Membership in and insertion into the sorted hashes of the series given out, by binary search: np.isin and
# np.union1d sort the whole array again for every block, 32 ms each at 120,000 series (four times the M5 table:
# some 5 s of a run, growing with the square of the table); these take 0.1 and 0.4 ms there.
def _among(hashes: np.ndarray, seen: np.ndarray) -> np.ndarray:
    """Whether each of `hashes` is in `seen` (sorted)."""
    if len(seen) == 0:
        return np.zeros(len(hashes), dtype=bool)
    return seen[np.minimum(np.searchsorted(seen, hashes), len(seen) - 1)] == hashes


def _with_hashes(seen: np.ndarray, hashes: np.ndarray) -> np.ndarray:
    """`seen` (sorted, unique) with `hashes` added, still sorted and unique (np.union1d's result)."""
    new = np.unique(hashes)
    new = new[~_among(new, seen)]
    return np.insert(seen, np.searchsorted(seen, new), new)


def _first_repeat(keys: list[tuple], seen: np.ndarray) -> int | None:
    """The first of these run keys that an earlier run had (in this block, or given out before: `seen`, their
    hashes, sorted), else None."""
    hashes = np.fromiter(map(hash, keys), dtype=np.int64, count=len(keys))
    before = np.flatnonzero(_among(hashes, seen))
    here: set[tuple] = set()
    for i, key in enumerate(keys):
        if key in here or (len(before) and i == before[0]):
            return i
        here.add(key)
    return None


# The rows of a block that is the whole table (plan.rows 0).
_WHOLE = 1 << 62


def _rest_joined(checked: pd.DataFrame, raws: Iterator[RawBlock], source: Source, plan: StreamPlan) -> pd.DataFrame:
    """The checked rows so far and every block still to come, as one table (a table read whole)."""
    id_cols = list(plan.id_cols)
    label_cols = [c for _, _, c in plan.labels]
    for raw in raws:
        if len(raw.frame):
            more, _ = _checked_rows(source, raw.frame.reset_index(drop=True), id_cols, plan.time_col,
                                    list(plan.numeric), list(plan.names), label_cols, raw.start)
            checked = _joined(checked, more, id_cols)
    return checked


def _series_block(source: Source, table: pd.DataFrame, plan: StreamPlan, notes: list[str], start: int,
                  read: float) -> SeriesBlock:
    """Checked rows of whole series as a block: labels taken out, repeated rows handled, split into series."""
    id_cols = list(plan.id_cols)
    labels: dict[tuple, dict] = {}
    if plan.labels:
        labels = _series_labels(source.label, table, id_cols, plan.labels)
        table = table.drop(columns=[c for _, _, c in plan.labels])
    used = id_cols + [plan.time_col] + [c for _, _, c in plan.numeric]
    table = _without_repeats(source, table, id_cols, plan.time_col, plan.duplicates, used, notes)
    extra = [n for n in plan.names if n != "y"]
    return SeriesBlock(table, split_series(table, id_cols, extra), list(notes), start, read, labels)


def _partitioned(block: SeriesBlock) -> SeriesBlock:
    block.in_key_order = False
    return block


def _bucket_count(rows: int, first: RawBlock) -> int:
    """How many buckets hold a table whose first block is `first`: about `rows` rows each."""
    total = len(first.frame) / max(first.read, 1e-9)
    return int(min(4096, max(1, math.ceil(total / max(rows, 1)))))


def partitioned_series(source: Source, plan: StreamPlan, spill_dir: Path) -> Iterator[SeriesBlock]:
    """A table in any order, as blocks of whole series: its checked rows hashed by key into bucket files in
    `spill_dir` (one file per bucket and block read), then each bucket read, sorted and split. Buckets come in
    their order, their series in key order."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    id_cols = list(plan.id_cols)
    label_cols = [c for _, _, c in plan.labels]
    columns = id_cols + [plan.time_col] + [c for _, _, c in plan.numeric] + label_cols
    spill_dir = Path(spill_dir)
    spill_dir.mkdir(parents=True, exist_ok=True)
    n_buckets = 0
    notes: list[str] = []
    for k, raw in enumerate(source.blocks(columns, id_cols + label_cols, plan.time_col, plan.rows)):
        if len(raw.frame) == 0:
            continue
        if n_buckets == 0:
            n_buckets = _bucket_count(plan.rows, raw)
        checked, block_notes = _checked_rows(source, raw.frame.reset_index(drop=True), id_cols, plan.time_col,
                                             list(plan.numeric), list(plan.names), label_cols, raw.start)
        notes += [n for n in block_notes if n not in notes]
        checked = _plain_keys(checked, id_cols)
        text = checked[id_cols].astype(str)
        bucket = pd.util.hash_pandas_object(text, index=False).to_numpy() % np.uint64(n_buckets)
        for b in np.unique(bucket):
            part = checked[bucket == b]
            pq.write_table(pa.Table.from_pandas(part, preserve_index=False), spill_dir / f"b{int(b):05d}-{k:06d}.parquet")
        del checked, text, bucket
    if n_buckets == 0:
        raise InputError(f"{source.label}: the table has no data rows")
    given = 0
    for b in range(n_buckets):
        files = sorted(spill_dir.glob(f"b{b:05d}-*.parquet"))
        if not files:
            continue
        parts = [pq.read_table(f).to_pandas() for f in files]
        table = parts[0]
        for part in parts[1:]:
            table = _joined(table, part, id_cols)
        for f in files:
            f.unlink()
        block = _series_block(source, table, plan, notes if given == 0 else [], given, (b + 1) / n_buckets)
        given += len(block.series)
        yield _partitioned(block)


def load_blocks(source: TableInput, config: ForecastConfig, rows: int, spill_dir: Path | None = None,
                notify: Callable[[str], None] | None = None, with_future: bool = True
                ) -> tuple[ModelOptions, Iterator[SeriesBlock]]:
    """Everything a run needs, a block of whole series at a time (see `stream_series`; `rows` 0: the table whole,
    one block): the model options (the --holidays-file's rows filled in) and the blocks, their series with their
    future values (unless `with_future` is False: a backtest needs none), their own holidays (--holidays-key)
    and their countries (--holidays-col). `spill_dir` holds the buckets of a table read by blocks that is not
    grouped by series (not needed with `rows` 0).

    Raises:
        InputError, ConfigError: before the first block is given, for what the whole table is checked for (the
            columns, the --future and holidays files); in a block's turn, for what its rows hold.
    """
    from ..errors import ConfigError

    source = open_source(source)
    extra = list(config.extra_cols)
    roles = {c: ("holidays key", "--holidays-key") for c in config.holidays_keys}
    if config.holidays_col is not None:
        roles.setdefault(config.holidays_col, ("country", "--holidays-col"))
    labels = tuple((*roles[c], c) for c in config.label_cols)
    numeric = (("target", "--target-col", config.target_col),) + tuple(("extra", "--regressor", c) for c in extra)
    if config.holidays_keys:  # which of the file's regions no series has is a question of the whole table
        rows = 0
    plan = StreamPlan(tuple(config.id_cols), config.time_col, numeric, ("y", *extra), labels, config.duplicates,
                      rows)
    _check_columns(source, config.id_cols, config.time_col, numeric, labels)
    futures = None
    if with_future and extra:
        if config.future_path is None:
            raise ConfigError(f"column {extra[0]!r} (--regressor/--cap-col/--floor-col) needs its values past "
                              "the history: pass --future FILE")
        futures = read_future(config.future_path, config.id_cols, config.time_col, extra)
    model = config.model
    keyed = None
    if config.holidays_keys:
        keyed = read_keyed_holidays(config.holidays_file, config.holidays_keys)
    elif config.holidays_file is not None:
        model = dataclasses.replace(model, holiday_table=read_holidays(config.holidays_file))

    def read() -> Iterator[SeriesBlock]:
        given = 0
        try:
            for block in stream_series(source, plan, spill_dir, notify):
                given = block.start + len(block.series)
                yield block
        except TableNotSorted as e:  # seen only after blocks were given out: their series may lack rows
            key = ", ".join(f"{c}={v}" for c, v in zip(config.id_cols, e.key))
            after = ", ".join(f"{c}={v}" for c, v in zip(config.id_cols, e.after or ()))
            if notify is not None:
                notify(f"{source.label}: not sorted by its key: {key} at row {e.row} comes after {after}; the "
                       f"{given} series given out so far are set aside, and the table is partitioned into buckets "
                       "and read again (sorting the table by key saves this)")
            for block in partitioned_series(source, plan, Path(spill_dir) / "buckets"):
                block.start += given
                block.void_below = given
                yield block

    def blocks() -> Iterator[SeriesBlock]:
        for block in read():
            if futures is not None:
                attach_future(block.series, futures, config.id_cols, extra)
            if keyed is not None:
                values = [tuple(_series_label(s, c, config.id_cols, block.labels) for c in config.holidays_keys)
                          for s in block.series]
                block.notes += attach_holidays(block.series, keyed, config.holidays_file, config.holidays_keys,
                                               values)
            if config.holidays_col is not None:
                for s in block.series:
                    s.country = _series_label(s, config.holidays_col, config.id_cols, block.labels)
            yield block

    return model, blocks()
