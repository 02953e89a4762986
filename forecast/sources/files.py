"""The first source: a table file (CSV, gzip-compressed CSV, Parquet) or standard input ("-").

What a file's name and first bytes say it is, and reading only the columns a run needs: pyarrow's readers, the
keys as sorted categories (see `_read_csv_arrow`). A named pipe or standard input is read once and its bytes
kept (`inputs_read_once`).
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Iterator, Literal, Sequence

import pandas as pd

from ..errors import InputError
from .base import RawBlock, Source, one_line, unique_columns

if TYPE_CHECKING:
    import pyarrow as pa

# The input name that means standard input (CSV, or Parquet / gzip-compressed CSV told by their first bytes).
STDIN = "-"
# What a file is read as (a gzip-compressed CSV is "csv").
FileFormat = Literal["csv", "parquet"]


def _kind(path: Path) -> FileFormat:
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


def _content_kind(path: Path, kind: FileFormat, head: bytes) -> tuple[FileFormat, bool]:
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
def inputs_read_once() -> Iterator[None]:
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


def _stream(path: Path, data: bytes | None) -> Path | IO[bytes]:
    """What the readers open: the path of a regular file, or a fresh stream over the bytes of a pipe."""
    import io as _io

    return path if data is None else _io.BytesIO(data)


def _columns(path: Path, kind: FileFormat, data: bytes | None = None) -> list[str]:
    """The header's column names, refused with one line when one name is given to two columns."""
    if kind == "parquet":
        import pyarrow.parquet as pq

        if data is None and path.is_dir():
            names = [str(n) for n in _dataset(path).schema.names]
        else:
            names = [str(n) for n in pq.read_schema(_stream(path, data)).names]
    else:
        # the header as a row, not as names: pandas would rename a repeated "y" to "y.1"
        row = pd.read_csv(_stream(path, data), header=None, nrows=1, dtype=str, keep_default_na=False)
        names = [n if n != "" else f"Unnamed: {i}" for i, n in enumerate(row.iloc[0].tolist())]
    return unique_columns(str(path), names)


def _read(path: Path, kind: FileFormat, columns: list[str], id_cols: Sequence[str], time_col: str,
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
        return pd.read_csv(_stream(path, data), usecols=columns, dtype={c: "string" for c in text_cols},
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

    if data is None and path.is_dir():
        return _arrow_frame(_dataset(path).to_table(columns=columns, filter=_filter_expression(filters)), [])
    schema = pq.read_schema(_stream(path, data))
    as_dict = [c for c in text_cols
               if pa.types.is_string(schema.field(c).type) or pa.types.is_large_string(schema.field(c).type)]
    return _arrow_frame(pq.read_table(_stream(path, data), columns=columns, filters=filters,
                                      read_dictionary=as_dict or None),
                        [c for c in as_dict if c != text_cols[-1]])


def _arrow_frame(table: pa.Table, sorted_cols: list[str]) -> pd.DataFrame:
    """An Arrow table as a DataFrame, freeing the table's memory column by column as it goes, with the categories
    of `sorted_cols` (the keys read as dictionaries) sorted, so their codes follow the keys' text order."""
    import pyarrow as pa

    frame = table.to_pandas(self_destruct=True, split_blocks=True)
    del table
    pa.default_memory_pool().release_unused()
    for c in sorted_cols:
        frame[c] = frame[c].cat.set_categories(sorted(frame[c].cat.categories))
    return frame


def _dataset(path: Path) -> Any:
    """A directory of Parquet files (a dataset, partitioned as Spark and pyarrow write them: store=1/part-0.parquet)
    as one table; partition columns come from the directory names."""
    import pyarrow.dataset as ds

    return ds.dataset(path, format="parquet", partitioning="hive", exclude_invalid_files=True)


def _filter_expression(filters: list | None) -> Any:
    """pyarrow's `filters` list form ([(column, op, value)], ANDed) as a dataset expression."""
    if not filters:
        return None
    import pyarrow.parquet as pq

    return pq.filters_to_expression(filters)


def _fragments(dataset: Any) -> list:
    """A dataset's files in the order of their partition values (store=2 before store=10), then their names: the
    order a table partitioned by its key is sorted in."""
    import pyarrow.dataset as ds

    def order(fragment: Any) -> tuple:
        keys = ds.get_partition_keys(fragment.partition_expression)
        return tuple((str(type(v)), v) for v in keys.values()) + ((str(type("")), fragment.path),)

    return sorted(dataset.get_fragments(), key=order)


def _parquet_blocks(path: Path, columns: list[str], text_cols: list[str], rows: int,
                    data: bytes | None = None) -> Iterator[RawBlock]:
    """A Parquet file's rows (a dataset's: file by file) as blocks of at least `rows` rows, one at a time."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if data is None and path.is_dir():
        dataset = _dataset(path)
        fragments = _fragments(dataset)
        total = sum(f.count_rows() for f in fragments)
        batches = (b for f in fragments for b in f.to_batches(columns=columns, schema=dataset.schema,
                                                              batch_size=min(rows, 1 << 20)))
        as_dict: list[str] = []
    else:
        schema = pq.read_schema(_stream(path, data))
        as_dict = [c for c in text_cols
                   if pa.types.is_string(schema.field(c).type) or pa.types.is_large_string(schema.field(c).type)]
        file = pq.ParquetFile(_stream(path, data), read_dictionary=as_dict or None)
        total = file.metadata.num_rows
        batches = file.iter_batches(batch_size=min(rows, 1 << 20), columns=columns)
    keys = [c for c in as_dict if c != text_cols[-1]]
    yield from _gathered(batches, rows, keys, lambda done: done / max(total, 1))


def _gathered(batches: Iterator, rows: int, sorted_cols: list[str], share: Any) -> Iterator[RawBlock]:
    """Record batches gathered into blocks of at least `rows` rows (the last may be shorter; an empty table is
    one empty block), each a DataFrame as `_arrow_frame` makes it; share(rows read) is the share of the input."""
    import pyarrow as pa

    held: list = []
    n = start = 0
    schema = None
    for batch in batches:
        schema = batch.schema
        held.append(batch)
        n += batch.num_rows
        if n >= rows:
            yield RawBlock(_arrow_frame(pa.Table.from_batches(held, schema=schema), sorted_cols), start,
                           share(start + n))
            held, start, n = [], start + n, 0
    if held or start == 0:
        frame = (_arrow_frame(pa.Table.from_batches(held, schema=schema), sorted_cols) if held
                 else pd.DataFrame())
        yield RawBlock(frame, start, 1.0)


# The bytes pyarrow's streaming CSV reader parses at a time. It reads ahead about forty of them (measured: its
# memory pool peaked at 651 MB with 16 MB blocks, 41 MB with 1 MB ones, on the M5 table), so small blocks keep a
# table read block by block from holding a large part of it in the reader; 1 MB read the 1 GB M5 table as fast.
_CSV_BLOCK = 1 << 20


def _csv_blocks(path: Path, columns: list[str], text_cols: list[str], rows: int,
                data: bytes | None = None) -> Iterator[RawBlock]:
    """A CSV's rows as blocks of at least `rows` rows, parsed as `_read_csv_arrow` does, one block at a time.

    A file pyarrow's reader refuses part way (a row with more fields than the header, text in a number column) is
    read again whole by `_read`, whose error (or pandas' reading) names the row; from it only the rows not yet
    handed out are given, so every row is given once.
    """
    import pyarrow as pa
    from pyarrow import csv as pacsv

    if data is not None:
        raw, total = pa.BufferReader(data), len(data)
        stream = raw
    else:
        raw, total = pa.OSFile(str(path)), max(path.stat().st_size, 1)
        stream = pa.CompressedInputStream(raw, "gzip") if path.name.lower().endswith(".gz") else raw
    as_text = pa.dictionary(pa.int32(), pa.string())
    convert = pacsv.ConvertOptions(include_columns=columns,
                                   column_types={c: (as_text if c in text_cols else pa.float64()) for c in columns},
                                   null_values=_CSV_NULLS, strings_can_be_null=False)
    rows_total = _rows_estimate(path, data, total)
    given = 0
    try:
        reader = pacsv.open_csv(stream, convert_options=convert,
                                read_options=pacsv.ReadOptions(block_size=min(_CSV_BLOCK, max(rows * 8, 1 << 12))))
        for block in _gathered(iter(reader), rows, text_cols[:-1], lambda done: min(done / rows_total, 0.99)):
            yield block
            given = block.start + len(block.frame)
    except Exception:  # what pyarrow's streaming reader refuses: the whole read names the row, or reads it
        frame = _read(path, "csv", columns, text_cols[:-1], text_cols[-1], data=data)
        yield RawBlock(frame.iloc[given:].reset_index(drop=True), given, 1.0)
    finally:
        raw.close()


def _rows_estimate(path: Path, data: bytes | None, size: int) -> float:
    """About how many rows a CSV has, from the lines in its first megabyte (of compressed bytes, for gzip): for the
    share of it read so far, which the reader's own position cannot say (it reads far ahead)."""
    import zlib

    if data is not None:
        head = data[:1 << 20]
    else:
        with open(path, "rb") as f:
            head = f.read(1 << 20)
        if path.name.lower().endswith(".gz"):
            try:
                lines = zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(head).count(b"\n")
            except zlib.error:
                lines = head.count(b"\n")
            return max(1.0, lines * size / max(len(head), 1))
    return max(1.0, head.count(b"\n") * size / max(len(head), 1))


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
    reader = pacsv.open_csv(_stream(path, data), convert_options=convert,
                            read_options=pacsv.ReadOptions(block_size=16 << 20),
                            parse_options=pacsv.ParseOptions(newlines_in_values=newlines_in_values))
    return _arrow_frame(pa.Table.from_batches(list(reader), schema=reader.schema), text_cols[:-1])


def fingerprint(path: Path) -> str:
    """sha256 of the file's bytes, read in blocks (about 0.5 s per GB)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def file_identity(path: Path) -> dict:
    """A file's path (absolute), size and sha256, as a run's manifest records its input and other files; a pipe or
    standard input by the bytes the run read, not a second read."""
    path = Path(path)
    if path.is_dir():  # a dataset: its files' names and bytes
        h, size = hashlib.sha256(), 0
        for file in sorted(p for p in path.rglob("*") if p.is_file()):
            h.update(str(file.relative_to(path)).encode() + b"\0" + fingerprint(file).encode())
            size += file.stat().st_size
        return {"path": str(path.resolve()), "size": size, "sha256": h.hexdigest()}
    data = input_bytes(path)
    if data is not None:
        where = STDIN if str(path) == STDIN else str(path.resolve())
        return {"path": where, "size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    return {"path": str(path.resolve()), "size": path.stat().st_size, "sha256": fingerprint(path)}


class FileSource(Source):
    """A CSV (.csv, .csv.gz, .txt) or Parquet (.parquet, .pq) file, a named pipe, or standard input ("-").

    The file's type is checked when it is first read (its name against its first bytes), so that opening a source
    for a path that does not exist yet costs nothing and says nothing.
    """

    kind = "file"

    def __init__(self, path: Path | str) -> None:
        self.label = str(path)
        self.given = Path(path)
        self._format: tuple[FileFormat, bytes | None] | None = None  # (csv or parquet, a pipe's bytes) once opened

    @classmethod
    def accepts(cls, obj: Any) -> bool:
        return isinstance(obj, (str, os.PathLike))

    @classmethod
    def reopen(cls, record: dict) -> FileSource:
        """The file a run read, by the path it was given (from where the run started: its absolute path), refused
        when it was a pipe or standard input, or is gone."""
        given, where = Path(record["given"]), Path(record.get("path") or record["given"])
        if str(given) == STDIN or (where.exists() and not (where.is_file() or where.is_dir())):
            raise InputError(f"the run's input {given} was a pipe or standard input, which cannot be read again; "
                             "plots need the history: save the table to a file and run from it")
        if not where.exists():
            raise InputError(f"the run's input {given} is not there any more ({where}); plots need the history")
        return cls(where if not given.exists() or given.resolve() != where else given)

    @property
    def path(self) -> Path | None:
        return self.given if str(self.given) != STDIN and self.given.is_file() else None

    def blocks(self, columns: Sequence[str], id_cols: Sequence[str], time_col: str, rows: int
               ) -> Iterator[RawBlock]:
        kind, data = self._open()
        text_cols = list(id_cols) + [time_col]
        read = _parquet_blocks if kind == "parquet" else _csv_blocks
        try:
            yield from read(self.given, list(columns), text_cols, rows, data)
        except InputError:
            raise
        except Exception as e:
            raise InputError(f"{self.given}: cannot read as {kind}: {one_line(e)}") from e

    @property
    def keys_as_text(self) -> bool:
        return self._open()[0] == "csv"

    def _open(self) -> tuple[FileFormat, bytes | None]:
        """(csv or parquet, the bytes of a pipe or standard input; None for a file on disk), checked once."""
        if self._format is None:
            path = self.given
            if str(path) != STDIN and not path.exists():
                raise InputError(f"{path}: no such file")
            if path.is_dir():  # a Parquet dataset (a directory of files), or a mistake
                if not any(path.rglob("*.parquet")):
                    raise InputError(f"{path}: is a directory with no .parquet files; give the table file, or a "
                                     "directory of Parquet files (a dataset)")
                self._format = ("parquet", None)
                return self._format
            kind = _kind(path)
            data = input_bytes(path)  # a pipe's bytes, read once; None for a file on disk
            kind, gzipped = _content_kind(path, kind, _head(path, data))
            if gzipped and data is not None:
                import gzip

                try:
                    data = gzip.decompress(data)
                except (OSError, EOFError) as e:
                    raise InputError(f"{path}: cannot read as gzip-compressed CSV: {one_line(e)}") from None
            self._format = (kind, data)
        return self._format

    def columns(self) -> list[str]:
        kind, data = self._open()
        try:
            return _columns(self.given, kind, data)
        except InputError:
            raise
        except pd.errors.EmptyDataError:
            raise InputError(f"{self.given}: the file is empty") from None
        except Exception as e:
            raise InputError(f"{self.given}: cannot read as {kind}: {one_line(e)}") from e

    def read(self, columns: Sequence[str], id_cols: Sequence[str], time_col: str,
             filters: list | None = None) -> pd.DataFrame:
        kind, data = self._open()
        try:
            return _read(self.given, kind, list(columns), id_cols, time_col, filters, data)
        except InputError:
            raise
        except Exception as e:
            raise InputError(f"{self.given}: cannot read as {kind}: {one_line(e)}") from e

    def read_as_text(self, columns: Sequence[str]) -> pd.DataFrame | None:
        path = self.given
        if str(path) == STDIN or not path.exists() or not (path.is_file() or path.is_dir()):
            return None  # a pipe, read once already, cannot be read again
        if path.is_dir():
            return _dataset(path).to_table(columns=list(columns)).to_pandas()
        if _kind(path) == "parquet":
            import pyarrow.parquet as pq

            return pq.read_table(path, columns=list(columns)).to_pandas()
        return pd.read_csv(path, usecols=list(columns), dtype=str, keep_default_na=False)

    def read_whole(self, **csv_options: Any) -> pd.DataFrame:
        """Every column, by pandas' readers (`csv_options` for a CSV's): a small side table such as the holidays.

        Raises:
            InputError: one line when the file cannot be read as what it is.
        """
        kind, data = self._open()
        if self.given.is_dir():
            return _dataset(self.given).to_table().to_pandas()
        stream = _stream(self.given, data)
        try:
            return pd.read_parquet(stream) if kind == "parquet" else pd.read_csv(stream, **csv_options)
        except Exception as e:
            raise InputError(f"{self.given}: cannot read as {kind}: {one_line(e)}") from e

    def identity(self) -> dict:
        return file_identity(self.given)

    def record(self) -> dict:
        where = STDIN if str(self.given) == STDIN else str(self.given.resolve())
        return {"kind": self.kind, "given": self.label, "path": where}
