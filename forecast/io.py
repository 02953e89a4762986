"""All file I/O: read and check the long table, split it into series, write every output atomically.

Table-level checks happen here, before any worker starts; each raises `InputError` with one line that names the
file, the column and the offending value and row. Problems of one series are not checked here (see model.py).
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import os
import re
import shlex
import stat
import sys
import tempfile
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd

from .errors import InputError, OutputExistsError
from .model import SENT_STAGES, SeriesData, SeriesResult

# Strings that mean "no value" in a target column; anything else that is not a number is an error.
_NA_STRINGS = {"", "na", "n/a", "nan", "null", "none", "nil", "-", "?"}
# How many example keys an error message shows.
_EXAMPLES = 3


# The input name that means standard input (CSV, or Parquet / gzip-compressed CSV told by their first bytes).
STDIN = "-"


def _kind(path: Path) -> str:
    if str(path) == STDIN:
        return "csv"
    name = path.name.lower()
    if name.endswith((".parquet", ".pq")):
        return "parquet"
    if name.endswith((".csv", ".csv.gz", ".txt", ".txt.gz")):
        return "csv"
    raise InputError(f"{path}: unknown file type; expected .csv, .csv.gz or .parquet")


# What a file's first bytes say it is, for a file whose name says otherwise.
_GZIP, _PARQUET = b"\x1f\x8b", b"PAR1"
_OTHER_FORMATS = ((b"PK\x03\x04", "a ZIP archive (an Excel workbook?), not CSV; export the sheet as CSV (UTF-8)"),
                  (b"\xff\xfe", "UTF-16 text, not UTF-8; save it as CSV UTF-8"),
                  (b"\xfe\xff", "UTF-16 text, not UTF-8; save it as CSV UTF-8"))


def _content_kind(path: Path, kind: str, head: bytes) -> tuple[str, bool]:
    """(kind, gzip) as the file's first bytes say, checked against its name: a Parquet file named .csv, a gzip
    file named .csv or .parquet, or a spreadsheet are one line naming what the file is. Standard input has no
    name: its first bytes decide."""
    stdin = str(path) == STDIN
    gzipped = head.startswith(_GZIP)
    if head.startswith(_PARQUET):
        if kind == "parquet" or stdin:
            return "parquet", False
        raise InputError(f"{path}: is a Parquet file (it starts with PAR1), not CSV; name it .parquet")
    if gzipped:
        if stdin or (kind == "csv" and path.name.lower().endswith(".gz")):
            return "csv", True
        what = "Parquet" if kind == "parquet" else "plain CSV"
        raise InputError(f"{path}: is gzip-compressed, not {what}; name it .csv.gz (a gzip-compressed CSV)")
    if kind == "csv" and path.name.lower().endswith(".gz") and head:
        raise InputError(f"{path}: is not gzip-compressed although its name ends in .gz; name it .csv")
    for magic, what in _OTHER_FORMATS:
        if head.startswith(magic):
            raise InputError(f"{path}: is {what}")
    if kind == "parquet" and head:
        raise InputError(f"{path}: cannot read as parquet: it does not start with PAR1, so it is not a Parquet "
                         "file; if it is CSV, name it .csv")
    return kind, False


# The bytes of the inputs that are not regular files, while `inputs_read_once` is on: see `input_bytes`.
_read_once: dict[str, bytes] | None = None


@contextmanager
def inputs_read_once():
    """While on, an input that is not a regular file (a named pipe, standard input) is read only once and its
    bytes kept for every later read: a run reads its input's header, its table and its fingerprint."""
    global _read_once
    previous, _read_once = _read_once, {}
    try:
        yield
    finally:
        _read_once = previous


def input_bytes(path: Path) -> bytes | None:
    """The content of an input that is not a regular file (standard input `-`, a named pipe, a process
    substitution), read to its end; None for a regular file, which is read from disk as often as needed.

    Raises:
        InputError: for standard input on a terminal or a device such as /dev/zero, which would never end.
    """
    key = str(path)
    if _read_once is not None and key in _read_once:
        return _read_once[key]
    if key == STDIN:
        stream = sys.stdin.buffer if hasattr(sys.stdin, "buffer") else sys.stdin
        if stream.isatty():
            raise InputError("-: standard input is a terminal; pipe the table in (forecast run - ... < table.csv)")
        data = stream.read()
    else:
        try:
            mode = os.stat(path).st_mode
        except OSError:
            return None
        if stat.S_ISREG(mode) or stat.S_ISDIR(mode):
            return None
        if not stat.S_ISFIFO(mode):
            raise InputError(f"{path}: is a device or socket, not a table file or a pipe")
        with open(path, "rb") as f:
            data = f.read()
    if _read_once is not None:
        _read_once[key] = data
    return data


def _head(path: Path, data: bytes | None) -> bytes:
    if data is not None:
        return data[:4]
    with open(path, "rb") as f:
        return f.read(4)


def _source(path: Path, data: bytes | None):
    """What the readers open: the path of a regular file, or a fresh stream over the bytes of a pipe."""
    import io as _io

    return path if data is None else _io.BytesIO(data)


def _one_line(e: Exception) -> str:
    text = " ".join(str(e).split())
    return text if len(text) <= 200 else text[:197] + "..."


def _columns(path: Path, kind: str, data: bytes | None = None) -> list[str]:
    """The header's column names, refused with one line when one name is given to two columns."""
    if kind == "parquet":
        import pyarrow.parquet as pq

        names = [str(n) for n in pq.read_schema(_source(path, data)).names]
    else:
        # the header as a row, not as names: pandas would rename a repeated "y" to "y.1"
        row = pd.read_csv(_source(path, data), header=None, nrows=1, dtype=str, keep_default_na=False)
        names = [n if n != "" else f"Unnamed: {i}" for i, n in enumerate(row.iloc[0].tolist())]
    for i, name in enumerate(names):
        if name in names[:i]:
            where = ", ".join(str(j + 1) for j, n in enumerate(names) if n == name)
            raise InputError(f"{path}: the header names column {name!r} more than once (columns {where}); give "
                             "each column its own name")
    return names


def _read(path: Path, kind: str, columns: list[str], id_cols: Sequence[str], time_col: str,
          filters: list | None = None, data: bytes | None = None) -> pd.DataFrame:
    if kind == "parquet":
        return _read_parquet(path, columns, list(id_cols) + [time_col], filters, data)
    # Keys are labels: read them as text so codes such as 00123 keep their zeros. Times are read as text and
    # parsed here, so a UTC offset keeps its local wall time as it does in Parquet (the CSV parser turns it to UTC).
    # Only numeric columns take "NA", "null" and the like as missing: in a key they are labels.
    text_cols = list(id_cols) + [time_col]
    try:
        try:
            return _read_csv_arrow(path, columns, text_cols, data=data)
        except Exception as e:
            if _RAGGED.search(str(e)) is None:
                raise
            # a quoted value with a line break in it, split at a block's end, looks like a short row
            return _read_csv_arrow(path, columns, text_cols, newlines_in_values=True, data=data)
    except Exception as e:
        ragged = _RAGGED.search(str(e))
        if ragged is not None:  # pandas' reader would drop the extra fields or fill the missing ones silently
            expected, got, row = ragged.groups()
            raise InputError(f"{path}: a row has {got} fields where the header has {expected}: {row.strip()!r}; "
                             'quote values that contain a comma ("1,234") or fix the row') from None
        # the pyarrow parser is strict about values; the C parser reads what it refuses, and the checks describe it
        return pd.read_csv(_source(path, data), usecols=columns, dtype={c: "string" for c in text_cols},
                           low_memory=False,
                           keep_default_na=False, na_values={c: _CSV_NULLS for c in columns if c not in text_cols})


# pyarrow's error for a row with another number of fields than the header
_RAGGED = re.compile(r"Expected (\d+) columns, got (\d+): (.*)", re.S)


def _read_parquet(path: Path, columns: list[str], text_cols: list[str], filters: list | None,
                  data: bytes | None = None) -> pd.DataFrame:
    """A Parquet table's columns, with text key and time columns read as categories (see `_read_csv_arrow`):
    at the M5 scale this halves the peak memory of the read. The keys' categories are sorted."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pq.read_schema(_source(path, data))
    as_dict = [c for c in text_cols
               if pa.types.is_string(schema.field(c).type) or pa.types.is_large_string(schema.field(c).type)]
    return _arrow_frame(pq.read_table(_source(path, data), columns=columns, filters=filters,
                                      read_dictionary=as_dict or None),
                        [c for c in as_dict if c != text_cols[-1]])


def _arrow_frame(table, sorted_cols: list[str]) -> pd.DataFrame:
    """An Arrow table as a DataFrame, freeing the table's memory column by column as it goes, with the categories
    of `sorted_cols` (the keys read as dictionaries) sorted, so their codes follow the keys' text order."""
    import pyarrow as pa

    frame = table.to_pandas(self_destruct=True, split_blocks=True)
    del table
    pa.default_memory_pool().release_unused()
    for c in sorted_cols:
        frame[c] = frame[c].cat.set_categories(sorted(frame[c].cat.categories))
    return frame


# What pandas' CSV readers take for a missing value (pandas' default na_values), so both parsers agree.
_CSV_NULLS = ["", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN", "<NA>",
              "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null"]


def _read_csv_arrow(path: Path, columns: list[str], text_cols: list[str],
                    newlines_in_values: bool = False, data: bytes | None = None) -> pd.DataFrame:
    """pyarrow's CSV reader (gzip by the file's extension), block by block, with the key and time columns
    dictionary-encoded and every other column read as float64.

    A long table repeats each key and each timestamp many times: as categories every distinct text is held once
    and each row costs a small integer code, not a string, and `_parse_time` parses each distinct timestamp once.
    Reading in blocks holds the parsed columns and one block of text, not the whole file's text. At M5's scale
    (44 million rows, 1 GB of CSV) reading and checking the table peaks at about 1.9 GB (pandas' reader with
    string keys and times: 7.7 GB). The keys' categories are sorted, so their codes follow the keys' text order.
    A value pyarrow cannot convert (text in a number column) sends the file to pandas' reader,
    whose result the checks then describe in one line.
    """
    import pyarrow as pa
    from pyarrow import csv as pacsv

    as_text = pa.dictionary(pa.int32(), pa.string())
    types = {c: (as_text if c in text_cols else pa.float64()) for c in columns}
    convert = pacsv.ConvertOptions(include_columns=columns, column_types=types, null_values=_CSV_NULLS,
                                   strings_can_be_null=False)  # key and time texts: see _blank_as_missing
    reader = pacsv.open_csv(_source(path, data), convert_options=convert,
                            read_options=pacsv.ReadOptions(block_size=16 << 20),
                            parse_options=pacsv.ParseOptions(newlines_in_values=newlines_in_values))
    return _arrow_frame(pa.Table.from_batches(list(reader), schema=reader.schema), text_cols[:-1])


def _separator_error(path: Path, found: list[str]) -> InputError | None:
    """A header read as one column because the file is separated by ';', tabs or '|'."""
    if len(found) == 1:
        for sep in (";", "\t", "|"):
            if sep in found[0]:
                return InputError(f"{path}: the header is one column, {found[0]!r}: the file seems to separate "
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


def _missing_columns(path: Path, missing: list[tuple[str, str, str]], found: list[str],
                     taken: set[str] = frozenset()) -> InputError:
    """One error for every (role, flag, column) not in the file, each with its suggestion (no column suggested
    twice, none that another role already uses), and the columns the file has."""
    wrong_separator = _separator_error(path, found)
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
        return InputError(f"{path}: {role} column {col!r} not found; columns are: {shown}; {hint}")
    each = "; ".join(f"{role} column {col!r}: {hint}" for role, col, hint in hints)
    return InputError(f"{path}: {len(hints)} columns not found; columns are: {shown}; {each}")


# How the notes say that times were made naive (they keep their local wall time).
_MADE_NAIVE = "timestamps were made naive (local wall time)"
# A day and a month as two numbers (01/02/2024, 1.2.24): which comes first cannot be told from one date.
_NUMERIC_DATE = re.compile(r"^\s*\d{1,2}[/.-]\d{1,2}[/.-]\d{2,4}\b")
# A UTC offset after a time of day (10:00+02:00, 10:00:00.5Z), and the text before it.
_TIME_AND_OFFSET = re.compile(r"^(.*\d{1,2}:\d{2}(?::\d{2}(?:\.\d+)?)?)\s*(?:Z|[+-]\d{2}(?::?\d{2})?)$")


def _to_datetime(distinct: pd.Series, **options) -> pd.Series:
    with warnings.catch_warnings():  # pandas warns that it parses element by element; the checks here say more
        warnings.simplefilter("ignore")
        return pd.to_datetime(distinct, errors="coerce", **options)


def _parse_distinct_times(path: Path, distinct: pd.Series, col: str, notes: list[str]) -> pd.Series:
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
        return _parse_distinct_times(path, wall, col, notes)
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
            raise InputError(f"{path}: column {col!r} mixes date formats, and {distinct.iloc[i]!r} reads as "
                             f"{mixed.iloc[i]:%Y-%m-%d} or {other.iloc[i]:%Y-%m-%d}; write ISO dates such as "
                             "2024-01-31")
    return mixed


def _shown(value: Any) -> str:
    """A value of the input as an error message shows it: text quoted, anything else as printed."""
    return repr(value) if isinstance(value, str) else str(value)


def _parse_time(path: Path, raw: pd.Series, col: str) -> tuple[pd.Series, list[str]]:
    notes: list[str] = []
    if raw.isna().any():
        row = int(np.flatnonzero(raw.isna().to_numpy())[0])
        raise InputError(f"{path}: column {col!r} has an empty time value at row {row + 1}; every row needs one")
    if pd.api.types.is_datetime64_any_dtype(raw.dtype):
        ds = raw
    elif pd.api.types.is_numeric_dtype(raw.dtype) or pd.api.types.is_bool_dtype(raw.dtype):
        raise InputError(f"{path}: column {col!r} holds numbers (e.g. {raw.iloc[0]}), not times; store dates or "
                         "timestamps (numbers of seconds since 1970: pd.to_datetime(x, unit='s'))")
    else:
        # each distinct text is parsed once (a long table repeats every date for every series)
        if isinstance(raw.dtype, pd.CategoricalDtype):
            codes, distinct = raw.cat.codes.to_numpy(), pd.Series(raw.cat.categories.astype(object))
        else:
            codes, uniques = pd.factorize(raw)
            distinct = pd.Series(np.asarray(uniques, dtype=object))
        parsed = _parse_distinct_times(path, distinct, col, notes)
        ds = parsed.iloc[codes].reset_index(drop=True)
        bad = parsed.isna().to_numpy()[codes]
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise InputError(
                f"{path}: column {col!r} has a value that is not a time: {raw.iloc[row]!r} at row {row + 1} "
                f"({int(bad.sum())} such row(s)); use ISO dates such as 2024-01-31"
            )
    if getattr(ds.dt, "tz", None) is not None:
        notes.append(f"column {col!r} had timezone {ds.dt.tz}; {_MADE_NAIVE}")
        ds = ds.dt.tz_localize(None)
    if ds.dtype != "datetime64[ns]" and (ds.min() < pd.Timestamp.min or ds.max() > pd.Timestamp.max):
        out = ((ds < pd.Timestamp.min) | (ds > pd.Timestamp.max)).to_numpy()
        row = int(np.flatnonzero(out)[0])
        raise InputError(f"{path}: column {col!r} has a time outside the range pandas holds (1677-09-22 to "
                         f"2262-04-11): {_shown(raw.iloc[row])} at row {row + 1} ({int(out.sum())} such row(s))")
    return ds.astype("datetime64[ns]"), notes


def _parse_target(path: Path, raw: pd.Series, col: str) -> pd.Series:
    if pd.api.types.is_bool_dtype(raw.dtype):
        raise InputError(f"{path}: column {col!r} holds true/false values, not numbers; choose a numeric --target-col")
    if pd.api.types.is_numeric_dtype(raw.dtype):
        return raw.astype("float64")
    y = pd.to_numeric(raw, errors="coerce")
    text = raw.astype("string").str.strip().str.lower()
    bad = (y.isna() & raw.notna() & ~text.isin(_NA_STRINGS)).to_numpy()
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise InputError(
            f"{path}: column {col!r} has a value that is not a number: {raw.iloc[row]!r} at row {row + 1} "
            f"({int(bad.sum())} such row(s)); leave a blank cell for a missing value"
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


def _handle_duplicates(path: Path, df: pd.DataFrame, id_cols: list[str], policy: str, time_col: str,
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
            f"{path}: {int(repeat.sum())} duplicate ({', '.join(id_cols)}, {time_col}) row(s), e.g. {examples}; "
            f"{hint}pass --duplicates sum, mean or last to combine them"
        )
    values = [c for c in df.columns if c not in subset]
    grouped = df.groupby(subset, sort=False, dropna=False, observed=True)[values]
    combined = {"sum": lambda g: g.sum(min_count=1), "mean": lambda g: g.mean(), "last": lambda g: g.last()}[policy]
    return combined(grouped).reset_index()


# The most other columns tried as a missing key column when (key, time) rows repeat.
_KEY_CANDIDATES = 30


def _key_suggestion(path: Path, id_cols: Sequence[str], time_col: str, used: Sequence[str]) -> str:
    """Which of the file's other columns, added as an --id-col, would make every (key, time) row unique: repeated
    rows by the hundred thousand usually mean a key column was forgotten. "" when none would, or the file cannot
    be read again (this is only a hint beside the error): a pipe or standard input, read once already, is not."""
    if str(path) == STDIN or not path.is_file():
        return ""
    try:
        kind = _kind(path)
        others = [c for c in _columns(path, kind) if c not in used][:_KEY_CANDIDATES]
        if not others:
            return ""
        columns = list(id_cols) + [time_col] + others
        if kind == "parquet":
            import pyarrow.parquet as pq

            frame = pq.read_table(path, columns=columns).to_pandas()
        else:
            frame = pd.read_csv(path, usecols=columns, dtype=str, keep_default_na=False)
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


def key_types(table: pd.DataFrame, id_cols: Sequence[str]) -> dict[str, str]:
    """Per key column, "int" when it holds integers (written back as integers by `read_run_dir`), else "text"."""
    types = {}
    for c in id_cols:
        dtype = table[c].dtype
        values = dtype.categories.dtype if isinstance(dtype, pd.CategoricalDtype) else dtype
        types[c] = "int" if pd.api.types.is_integer_dtype(values) and not pd.api.types.is_bool_dtype(values) \
            else "text"
    return types


def _load(path: Path, id_cols: Sequence[str], time_col: str,
          numeric: Sequence[tuple[str, str, str]], names: Sequence[str],
          filters: list | None = None) -> tuple[pd.DataFrame, list[str]]:
    """Read the key, time and numeric columns of a table and check them.

    numeric is (role, flag, column) per numeric column; names are their names in the returned table; filters
    (Parquet only) select rows as pyarrow's `filters` does.
    """
    path = Path(path)
    if str(path) != STDIN and not path.exists():
        raise InputError(f"{path}: no such file")
    if path.is_dir():
        raise InputError(f"{path}: is a directory; give the table file")
    kind = _kind(path)
    data = input_bytes(path)  # a pipe's bytes, read once; None for a file on disk
    kind, gzipped = _content_kind(path, kind, _head(path, data))
    if gzipped and data is not None:
        import gzip

        try:
            data = gzip.decompress(data)
        except (OSError, EOFError) as e:
            raise InputError(f"{path}: cannot read as gzip-compressed CSV: {_one_line(e)}") from None
    try:
        found = _columns(path, kind, data)
    except InputError:
        raise
    except pd.errors.EmptyDataError:
        raise InputError(f"{path}: the file is empty") from None
    except Exception as e:
        raise InputError(f"{path}: cannot read as {kind}: {_one_line(e)}") from e
    id_cols = list(id_cols)
    roles = [("id", "--id-col", c) for c in id_cols] + [("time", "--time-col", time_col)] + list(numeric)
    missing = [(role, flag, col) for role, flag, col in roles if col not in found]
    if missing:  # every missing column at once, each with its suggestion
        raise _missing_columns(path, missing, found, {c for _, _, c in roles if c in found})
    try:
        raw = _read(path, kind, id_cols + [time_col] + [c for _, _, c in numeric], id_cols, time_col, filters,
                    data)
    except InputError:
        raise
    except Exception as e:
        raise InputError(f"{path}: cannot read as {kind}: {_one_line(e)}") from e
    raw = raw.reset_index(drop=True)
    if len(raw) == 0:
        raise InputError(f"{path}: the table has no data rows")
    for col in id_cols:
        raw[col] = _blank_as_missing(raw[col])
        if raw[col].isna().any():
            row = int(np.flatnonzero(raw[col].isna().to_numpy())[0])
            raise InputError(f"{path}: id column {col!r} is empty at row {row + 1}; every row needs a series key")
        first = raw[col].iloc[0]
        if isinstance(first, (list, tuple, dict, set, np.ndarray)):
            raise InputError(f"{path}: id column {col!r} holds lists or records, not text or numbers; "
                             "use a text or number column as the series key")
    if kind == "csv":  # Parquet keys keep the type they were stored with
        for col in id_cols:
            raw[col] = _integer_keys(raw[col])
    raw[time_col] = _blank_as_missing(raw[time_col])
    ds, notes = _parse_time(path, raw[time_col], time_col)
    table = raw[id_cols].copy()
    table["ds"] = ds.to_numpy()
    for (_, _, col), name in zip(numeric, names):
        table[name] = _parse_target(path, raw[col], col).to_numpy()
    return table, notes


def read_table(path: Path, id_cols: Sequence[str], time_col: str, target_col: str,
               duplicates: str = "error", extra_cols: Sequence[str] = ()) -> tuple[pd.DataFrame, list[str]]:
    """Read and check a long table of many series.

    Args:
        path: a .csv, .csv.gz or .parquet file.
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
        InputError: one line naming the file, the column, and the value and row at fault.
    """
    numeric = [("target", "--target-col", target_col)] + [("extra", "--regressor", c) for c in extra_cols]
    table, notes = _load(path, id_cols, time_col, numeric, ["y"] + list(extra_cols))
    try:
        used = list(id_cols) + [time_col, target_col] + list(extra_cols)
        table = _handle_duplicates(Path(path), table, list(id_cols), duplicates, time_col,
                                   suggest=lambda: _key_suggestion(Path(path), id_cols, time_col, used))
    except InputError as e:
        if any(_MADE_NAIVE in note for note in notes):  # made naive, a daylight-saving change repeats an hour
            raise InputError(f"{e}; the times had a time zone, and at local wall time the hour that a daylight-"
                             "saving change repeats occurs twice: store them in UTC to keep both") from None
        raise
    return table, notes


def read_series_subset(path: Path, id_cols: Sequence[str], time_col: str, target_col: str, duplicates: str,
                       keys: Sequence[tuple]) -> dict[tuple, SeriesData]:
    """Read only the series with these keys from a Parquet table, checked and split as read_table does.

    What a worker does with --workers-read: one filtered read per chunk (row groups whose statistics exclude
    the keys are skipped), so the series' data never travels from the client.

    Returns:
        The series by key.
    """
    first = sorted({k[0] for k in keys}, key=str)
    table, _ = _load(path, id_cols, time_col, [("target", "--target-col", target_col)], ["y"],
                     filters=[(id_cols[0], "in", first)])
    table = _handle_duplicates(Path(path), table, list(id_cols), duplicates, time_col)
    wanted = set(keys)
    return {s.key: s for s in split_series(table, id_cols) if s.key in wanted}


def read_future(path: Path, id_cols: Sequence[str], time_col: str, cols: Sequence[str]) -> pd.DataFrame:
    """Read the --future table: key columns, time and the future values of `cols` (regressors, cap, floor).

    Raises:
        InputError: as read_table, and for repeated (key, time) rows.
    """
    table, _ = _load(path, id_cols, time_col, [("future", "--regressor", c) for c in cols], list(cols))
    return _handle_duplicates(Path(path), table, list(id_cols), "error", time_col)


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


def read_holidays(path: Path) -> tuple[tuple[str, str, int, int], ...]:
    """Read a holidays table (holiday, ds, lower_window, upper_window; the windows optional, default 0).

    Returns:
        One (holiday, ISO date, lower_window, upper_window) per row, for ModelOptions.holiday_table.

    Raises:
        InputError: a missing column, a date that does not parse, a window that is not a whole number.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file (--holidays-file)")
    kind = _kind(path)
    data = input_bytes(path)  # a pipe (a process substitution) is read once: the run's fingerprint reads it too
    kind, _ = _content_kind(path, kind, _head(path, data))
    source = _source(path, data)
    try:
        frame = pd.read_parquet(source) if kind == "parquet" else pd.read_csv(source, dtype={"holiday": "string"})
    except Exception as e:
        raise InputError(f"{path}: cannot read as {kind}: {_one_line(e)}") from e
    for col in ("holiday", "ds"):
        if col not in frame.columns:
            shown = ", ".join(map(str, frame.columns[:20]))
            raise InputError(f"{path}: holidays column {col!r} not found; columns are: {shown}; the file needs "
                             "holiday and ds, and optionally lower_window and upper_window")
    if frame["holiday"].isna().any():
        row = int(np.flatnonzero(frame["holiday"].isna().to_numpy())[0])
        raise InputError(f"{path}: column 'holiday' is empty at row {row + 1}; every row needs a holiday name")
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
    return tuple((str(h), str(pd.Timestamp(d).date()), lo, up)
                 for h, d, lo, up in zip(frame["holiday"], ds, windows["lower_window"], windows["upper_window"]))


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


def load_series(path: Path, config, with_future: bool = True) -> tuple[pd.DataFrame, list[SeriesData], list[str], Any]:
    """Read everything a run needs: the table split into series, their future values, the holidays file.

    Args:
        path: the input table.
        config: a ForecastConfig.
        with_future: attach the --future values (a run needs them for its regressors; a backtest does not).

    Returns:
        (table, series, notes, model): `model` is config.model with the --holidays-file rows filled in.

    Raises:
        InputError, ConfigError: before any worker starts.
    """
    from .errors import ConfigError

    extra = list(config.extra_cols)
    table, notes = read_table(path, config.id_cols, config.time_col, config.target_col, config.duplicates, extra)
    series = split_series(table, config.id_cols, extra)
    if with_future and extra:
        if config.future_path is None:
            raise ConfigError(f"column {extra[0]!r} (--regressor/--cap-col/--floor-col) needs its values past "
                              "the history: pass --future FILE")
        attach_future(series, read_future(config.future_path, config.id_cols, config.time_col, extra),
                      config.id_cols, extra)
    model = config.model
    if config.holidays_file is not None:
        model = dataclasses.replace(model, holiday_table=read_holidays(config.holidays_file))
    return table, series, notes, model


# ---------------------------------------------------------------------------------------------------------------
# outputs

def default_out_dir(root: Path = Path("outputs")) -> Path:
    """outputs/<UTC timestamp>, e.g. outputs/20261126T130501Z."""
    stamp = pd.Timestamp.now(tz="UTC").strftime("%Y%m%dT%H%M%SZ")
    return root / stamp


def prepare_out_dir(out_dir: Path, overwrite: bool, resume: bool = False) -> dict | None:
    """Check that a run may write into `out_dir`; nothing is created here.

    Returns:
        With `resume`, the summary of the finished run `out_dir` holds (the caller checks that it is the same
        job: a scheduler's retry of a run that had finished); else None.

    Raises:
        OutputExistsError: when it holds a finished run (a summary.json whose status is not "interrupted")
            and neither overwrite nor resume is on.
    """
    if out_dir.exists() and not out_dir.is_dir():
        raise OutputExistsError(f"{out_dir}: exists and is not a directory; choose another --out")
    summary = out_dir / "summary.json"
    if not overwrite and not summary.exists() and not (out_dir / "parts" / "manifest.json").exists():
        foreign = sorted(p.name for p in out_dir.iterdir() if not _ours(p)) if out_dir.is_dir() else []
        if foreign:  # a run writes forecasts.csv, params.parquet...: never over files it did not write
            shown = ", ".join(foreign[:5]) + (", ..." if len(foreign) > 5 else "")
            raise OutputExistsError(f"{out_dir}: holds files but no forecast run ({shown}); choose a new or empty "
                                    "--out, or pass --overwrite to write into it")
    if summary.exists() and not overwrite:
        try:
            finished = json.loads(summary.read_text())
        except (OSError, ValueError):
            finished = {}
        if not isinstance(finished, dict):
            finished = {}
        if finished.get("status") != "interrupted":
            if resume and finished:
                return finished
            raise OutputExistsError(
                f"{out_dir}: holds a finished run (summary.json); pass --overwrite or choose another --out"
            )
    return None


# The files a run keeps in its parts directory while it works: its manifest, its parts, a temporary file of
# `write_atomic` (a write cut short).
_RUN_FILE = re.compile(r"manifest\.json|part-\d+\.parquet|\..+\.tmp")


def is_run_file(name: str) -> bool:
    """Whether a file of a run's parts directory is one a run writes there (the only ones a run removes)."""
    return _RUN_FILE.fullmatch(name) is not None


def _ours(path: Path) -> bool:
    """Whether an entry of an output directory is one a run keeps there while it works: its lock, a temporary
    file of `write_atomic`, a parts directory holding nothing but a run's files."""
    if path.name == "parts" and path.is_dir():
        return all(is_run_file(p.name) for p in path.iterdir())
    return path.name == ".lock" or (path.name.startswith(".") and path.name.endswith(".tmp"))


def written_by_forecast(out_dir: Path) -> set[str]:
    """The names of the files the run in `out_dir` wrote, as its summary.json lists them (none without one): the
    only files a later run may remove."""
    try:
        files = json.loads((Path(out_dir) / "summary.json").read_text()).get("files", {})
        return {name for name in files.values() if isinstance(name, str) and name == Path(name).name}
    except (OSError, ValueError, AttributeError):
        return set()


def _file_mode() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def write_atomic(path: Path, write: Callable[[str], None]) -> Path:
    """Call write(tmp_path) for a temporary file beside `path`, then rename it into place.

    A reader never sees a half-written file, and a crash leaves the previous file (if any) as it was.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, _file_mode())  # mkstemp makes 0600; outputs are ordinary files for the team to read
        os.replace(tmp, path)
    except BaseException as e:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(e, OSError) and (e.filename is None or e.filename == tmp):  # name the file, not its tmp
            raise OSError(e.errno, e.strerror or _one_line(e), str(path)) from e
        raise
    return path


def _key_frame(id_cols: Sequence[str], keys: list[tuple], repeats: Sequence[int] | None = None) -> pd.DataFrame:
    frame = pd.DataFrame.from_records(keys, columns=list(id_cols)) if keys else pd.DataFrame(columns=list(id_cols))
    if repeats is not None:
        frame = frame.loc[frame.index.repeat(repeats)].reset_index(drop=True)
    return frame


def forecast_frame(results: Sequence[SeriesResult], id_cols: Sequence[str], run_id: str = "") -> pd.DataFrame:
    """The combined forecast table: key columns, ds, yhat, yhat_lower, yhat_upper, model (prophet or fallback:KIND),
    cutoff (each series' last timestamp in the input), run_id.

    Series forecast by Prophet ("ok") or by a fallback ("fallback"); failed and skipped series have no rows.
    """
    ok = [r for r in results if r.status in ("ok", "fallback")]
    frame = _key_frame(id_cols, [r.key for r in ok], [len(r.ds) for r in ok])

    def cat(name: str, dtype: str) -> np.ndarray:
        parts = [getattr(r, name) for r in ok]
        return np.concatenate(parts).astype(dtype) if parts else np.array([], dtype=dtype)

    frame["ds"] = cat("ds", "datetime64[ns]")
    for name in ("yhat", "yhat_lower", "yhat_upper"):
        frame[name] = cat(name, "float64")
    frame["model"] = np.repeat(np.array([r.model for r in ok], dtype=object), [len(r.ds) for r in ok])
    cutoffs = np.array([r.cutoff if r.cutoff is not None else np.datetime64("NaT") for r in ok], dtype="datetime64[ns]")
    frame["cutoff"] = np.repeat(cutoffs, [len(r.ds) for r in ok])
    frame["run_id"] = np.full(len(frame), run_id, dtype=object)
    return frame


def timings_frame(results: Sequence[SeriesResult], id_cols: Sequence[str]) -> pd.DataFrame:
    """One row per series: key columns, n_obs, status, fit/predict/cpu seconds, worker, error, model, verdict, engine.

    status is ok (Prophet), fallback (a simple forecast), failed (no forecast) or skipped (by triage); verdict is
    empty unless the run triaged its series; engine is the engine that fitted the series (prophet, stan, fast),
    empty when none did.
    """
    frame = _key_frame(id_cols, [r.key for r in results])
    frame["n_obs"] = np.array([r.n_obs for r in results], dtype="int64")
    frame["status"] = [r.status for r in results]
    frame["fit_seconds"] = np.array([r.fit_seconds for r in results], dtype=float)
    frame["predict_seconds"] = np.array([r.predict_seconds for r in results], dtype=float)
    frame["cpu_seconds"] = np.array([r.cpu_seconds for r in results], dtype=float)
    frame["worker"] = [r.worker for r in results]
    frame["error"] = [r.error for r in results]
    frame["model"] = [r.model for r in results]
    frame["verdict"] = [r.verdict for r in results]
    frame["engine"] = [r.engine for r in results]
    return frame


def errors_frame(results: Sequence[SeriesResult], id_cols: Sequence[str]) -> pd.DataFrame:
    """The series Prophet did not serve: key columns, stage, reason. Has its header even when none.

    Failed series (with or without a fallback forecast) and series skipped by triage (stage "triage"); a series
    that triage or --min-obs sent straight to the fallback did not fail and is not listed (timings.csv has its
    reason).
    """
    failed = [r for r in results if r.status != "ok" and not (r.status == "fallback" and r.stage in SENT_STAGES)]
    frame = _key_frame(id_cols, [r.key for r in failed])
    frame["stage"] = [r.stage for r in failed]
    frame["reason"] = [r.error for r in failed]
    return frame


# A cell a spreadsheet would read as a formula (or whose leading tab/CR it would strip to reach one).
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def csv_safe(value: Any) -> Any:
    """A text cell that a spreadsheet would run as a formula, prefixed with ' so it shows as text.

    Only text is changed, and only when it starts with =, +, -, @, a tab or a carriage return and is not a
    number: a series key "-5" or an error text "-1.5" stays as it is, "=HYPERLINK(...)" becomes "'=HYPERLINK(...)".
    Text that already looks escaped ("'=x") gets one more quote, so `csv_unsafe` gives back the exact value.
    """
    if not isinstance(value, str):
        return value
    body = value.lstrip("'")
    if body.startswith(_FORMULA_START) and not _is_number(body):
        return "'" + value
    return value


def csv_unsafe(value: Any) -> Any:
    """The value `csv_safe` was given, from what it returned (for reading our own CSV outputs back)."""
    if isinstance(value, str) and value.startswith("'") and csv_safe(value[1:]) == value:
        return value[1:]
    return value


def _csv_safe_frame(frame: pd.DataFrame) -> pd.DataFrame:
    kept = (pd.api.types.is_numeric_dtype, pd.api.types.is_datetime64_any_dtype, pd.api.types.is_bool_dtype)
    frame = frame.copy()
    for c in frame.columns:
        if not any(is_kind(frame[c].dtype) for is_kind in kept):
            # keys repeat on every forecast row: check each distinct value once
            changed = {v: csv_safe(v) for v in pd.unique(frame[c].dropna().astype(object))}
            changed = {v: safe for v, safe in changed.items() if safe != v}
            if changed:
                values = frame[c].astype(object)
                hit = values.isin(list(changed))
                frame[c] = values.where(~hit, values.map(changed))
    frame.columns = [csv_safe(str(c)) for c in frame.columns]
    return frame


def params_frame(results: Sequence[SeriesResult], id_cols: Sequence[str]) -> pd.DataFrame:
    """The stan/fast engines' fitted parameters, one row per series they fitted: key columns, engine, y_scale, k, m,
    sigma_obs (floats, on Prophet's scaled data) and delta, beta (lists). What `--warm-start` reads."""
    fitted = [r for r in results if r.params is not None]
    frame = _key_frame(id_cols, [r.key for r in fitted])
    frame["engine"] = [r.engine for r in fitted]
    for name in ("y_scale", "k", "m", "sigma_obs"):
        frame[name] = np.array([r.params[name] for r in fitted], dtype=float)
    for name in ("delta", "beta"):
        frame[name] = [r.params[name] for r in fitted]
    return frame


def read_params(run_dir: Path, id_cols: Sequence[str]) -> dict[tuple, dict]:
    """A previous run's parameters (its params.parquet) by series key (as strings), for --warm-start.

    Raises:
        InputError: when the directory has no params.parquet or it lacks this run's key columns.
    """
    path = Path(run_dir) / "params.parquet"
    if not path.is_file():
        raise InputError(f"--warm-start {run_dir}: no params.parquet there; give the output directory of an earlier "
                         "run with --engine stan or fast")
    try:
        frame = pd.read_parquet(path)
    except Exception as e:
        raise InputError(f"{path}: cannot read it: {_one_line(e)}") from None
    missing = [c for c in id_cols if c not in frame.columns]
    if missing:
        raise InputError(f"{path}: key column {missing[0]!r} not found; the earlier run had other --id-col columns")
    try:
        keys = zip(*(frame[c].astype(str) for c in id_cols))
        records = frame[["y_scale", "k", "m", "sigma_obs", "delta", "beta"]].to_dict("records")
        return {tuple(k): {**r, "delta": list(r["delta"]), "beta": list(r["beta"])} for k, r in zip(keys, records)}
    except (KeyError, TypeError, ValueError) as e:
        raise InputError(f"{path}: not the parameters of a forecast run ({_one_line(e)}); give the output directory "
                         "of an earlier run with --engine stan or fast") from None


def _write_parquet(frame: pd.DataFrame, path: str) -> None:
    """Parquet that Spark, DuckDB and any Arrow reader take as it is: timestamps in microseconds (Spark refuses
    nanoseconds), plain Arrow types, and no pandas metadata (nothing needs it to read the file back)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pandas(frame, preserve_index=False).replace_schema_metadata(None)
    # pandas' text columns arrive as large_string: plain string is the type every reader knows
    table = table.cast(pa.schema([pa.field(f.name, pa.string()) if pa.types.is_large_string(f.type) else f
                                  for f in table.schema]))
    pq.write_table(table, path, coerce_timestamps="us", allow_truncated_timestamps=True)


def write_table(frame: pd.DataFrame, path: Path) -> Path:
    """Write a frame as Parquet or CSV (by extension), atomically.

    CSV text cells are made safe for spreadsheets (see `csv_safe`); Parquet keeps the values as they are (times
    to the microsecond, see `_write_parquet`).
    """
    if path.suffix == ".parquet":
        return write_atomic(path, lambda tmp: _write_parquet(frame, tmp))
    safe = _csv_safe_frame(frame)
    return write_atomic(path, lambda tmp: safe.to_csv(tmp, index=False))


def write_json(data: dict, path: Path) -> Path:
    """Write a dict as indented JSON, atomically."""

    def write(tmp: str) -> None:
        with open(tmp, "w") as f:
            json.dump(data, f, indent=2, default=str)
            f.write("\n")

    return write_atomic(path, write)


# ---------------------------------------------------------------------------------------------------------------
# reading a finished run back (plot, report)

@dataclass
class RunDir:
    """A finished run or backtest directory, read back: its summary and whichever tables it holds.

    Key columns are integers in every table where the run's were (summary.json's key_types), else text (as
    `key_label` shows them).
    """

    path: Path
    summary: dict
    id_cols: list[str]
    timings: pd.DataFrame | None = None
    errors: pd.DataFrame | None = None
    forecasts: pd.DataFrame | None = None  # a run's forecasts.parquet / .csv
    backtest: pd.DataFrame | None = None  # a backtest's backtest.parquet
    metrics: pd.DataFrame | None = None  # a backtest's metrics.csv

    @property
    def is_backtest(self) -> bool:
        return self.metrics is not None


def key_label(key: Sequence[Any]) -> str:
    """How a series key is shown and given to --series: its values joined by " / "."""
    return " / ".join(str(v) for v in key)


def key_title(id_cols: Sequence[str], key: Sequence[Any]) -> str:
    """A series key as a title shows it: each value after its column's name (`store 4, dept 99`)."""
    return ", ".join(f"{c} {v}" for c, v in zip(id_cols, key))


def model_label(model: Any, engine: Any = "") -> str:
    """A model as tables and legends name it: Prophet's with the engine that fitted it (`prophet (fast)`,
    `prophet:reduced (fast)`), a fallback as its kind (`fallback:naive`)."""
    model = "" if model is None or model != model else str(model)
    engine = "" if engine is None or engine != engine else str(engine)
    if model.startswith("prophet") and engine:
        return f"{model} ({engine})"
    return model


_DIGITS = re.compile(r"(\d+)")


def natural_key(key: Sequence[Any]) -> tuple:
    """A sort key that orders series keys as a person does: numbers by value (1, 2, 10, not 1, 10, 2), also
    inside text (S2 before S10), then text."""
    parts = []
    for v in key:
        if isinstance(v, (int, np.integer)) and not isinstance(v, bool):
            parts.append(((0, int(v)),))
        else:
            parts.append(tuple((0, int(t)) if t.isdigit() else (1, t) for t in _DIGITS.split(str(v)) if t))
    return tuple(parts)


def _read_output(path: Path, id_cols: Sequence[str], types: dict[str, str]) -> pd.DataFrame | None:
    """One output table of a run read back, its key columns as the run had them; None when it is not there.

    Raises:
        InputError: one line when it cannot be read (truncated, damaged, not what a run writes).
    """
    if not path.exists():
        return None
    try:
        return _read_output_file(path, id_cols, types)
    except Exception as e:
        raise InputError(f"{path}: cannot read it back, it is damaged or was not written by forecast "
                         f"({_one_line(e)}); run again with --overwrite to rewrite it") from None


def _key_as(column: pd.Series, kind: str) -> pd.Series:
    """A key column as the run had it: integers for "int", else text."""
    if kind == "int":
        return pd.to_numeric(column.astype(str)).astype("int64")
    return column.astype(str)


def _read_output_file(path: Path, id_cols: Sequence[str], types: dict[str, str]) -> pd.DataFrame:
    if path.suffix == ".parquet":
        frame = pd.read_parquet(path)
    else:
        # a key such as "NA" or "null" is a key, not a missing value: only the other columns' blanks are missing
        safe_ids = [csv_safe(c) for c in id_cols]  # headers are escaped as cells are
        header = pd.read_csv(path, nrows=0).columns
        frame = pd.read_csv(path, dtype={c: "string" for c in safe_ids}, keep_default_na=False,
                            na_values={c: [""] for c in header if c not in safe_ids})
        for c in frame.columns:
            if not pd.api.types.is_numeric_dtype(frame[c].dtype):
                frame[c] = frame[c].astype(object).map(csv_unsafe)
        frame = frame.rename(columns=csv_unsafe)
    for c in id_cols:
        if c in frame.columns:
            frame[c] = _key_as(frame[c], types.get(c, "text"))
    return frame


def read_run_dir(run_dir: Path) -> RunDir:
    """Read a `forecast run` or `forecast backtest` output directory.

    Raises:
        InputError: when it is not such a directory (no summary.json, or one without a config).
    """
    run_dir = Path(run_dir)
    summary_path = run_dir / "summary.json"
    if not summary_path.exists():
        raise InputError(f"{run_dir}: no summary.json; give the --out directory of a forecast run or backtest")
    try:
        summary = json.loads(summary_path.read_text())
        id_cols = list(summary["config"]["id_cols"])
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise InputError(f"{summary_path}: not a forecast summary ({_one_line(e)})") from e
    run = RunDir(path=run_dir, summary=summary, id_cols=id_cols)
    types = summary.get("key_types") or {}  # a run before key types were kept: text keys
    run.timings = _read_output(run_dir / "timings.csv", id_cols, types)
    run.errors = _read_output(run_dir / "errors.csv", id_cols, types)
    for name in ("forecasts.parquet", "forecasts.csv"):
        run.forecasts = run.forecasts if run.forecasts is not None else _read_output(run_dir / name, id_cols, types)
    run.backtest = _read_output(run_dir / "backtest.parquet", id_cols, types)
    run.metrics = _read_output(run_dir / "metrics.csv", id_cols, types)
    for frame in (run.forecasts, run.backtest):
        if frame is not None:
            for c in ("ds", "cutoff"):
                if c in frame.columns:
                    frame[c] = pd.to_datetime(frame[c])
    return run


def read_history(run: RunDir) -> pd.DataFrame:
    """The input table of a finished run, read again as the run read it (its summary.json config says how).

    Raises:
        InputError: when the input has moved or changed so that it cannot be read.
    """
    config = run.summary["config"]
    path = Path(run.summary["input"])
    if str(path) == STDIN or (path.exists() and not path.is_file()):
        raise InputError(f"{run.path / 'summary.json'}: the run's input {path} was a pipe or standard input, which "
                         "cannot be read again; plots need the history: save the table to a file and run from it")
    if not path.exists():
        raise InputError(f"{run.path / 'summary.json'}: the run's input {path} is not there any more; plots "
                         "need the history (run from the directory the run was started in)")
    table, _ = read_table(path, config["id_cols"], config["time_col"], config["target_col"],
                          config.get("duplicates", "error"))
    types = run.summary.get("key_types") or {}
    for c in config["id_cols"]:
        table[c] = _key_as(table[c], types.get(c, "text"))
    return table
