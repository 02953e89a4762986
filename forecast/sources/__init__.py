"""Input sources: where a run's long table comes from, behind one interface (`Source`), and loading it.

A new source (a database query) is one module with a `Source` subclass and one `register_source` line below.
"""

from .base import Source, TableInput, one_line, open_source, register_source, reopen_source
from .files import STDIN, FileSource, file_identity, inputs_read_once
from .table import (
    attach_future,
    attach_holidays,
    key_types,
    load_blocks,
    load_series,
    read_future,
    read_holidays,
    read_keyed_holidays,
    read_series_subset,
    read_table,
    sort_by_series,
    split_series,
)

# first, so asked last (and imported only then): it reopens what a Spark run read, and opens no input
register_source("spark", "forecast.spark:SparkInput")
register_source("file", "forecast.sources.files:FileSource")
register_source("frame", "forecast.sources.frames:FrameSource")
register_source("database", "forecast.sources.database:DatabaseSource",
                schemes=("postgresql", "postgres", "sqlite", "duckdb"))

__all__ = [
    "STDIN",
    "FileSource",
    "Source",
    "TableInput",
    "attach_future",
    "attach_holidays",
    "file_identity",
    "inputs_read_once",
    "key_types",
    "load_blocks",
    "load_series",
    "one_line",
    "open_source",
    "read_future",
    "read_holidays",
    "read_keyed_holidays",
    "read_series_subset",
    "read_table",
    "register_source",
    "reopen_source",
    "sort_by_series",
    "split_series",
]
