"""The second source: a table already in memory, a pandas DataFrame or a pyarrow Table (`forecast.forecast(df)`).

Its columns go through the same checks as a file's; messages name it "DataFrame" (or "Arrow table"). Its
columns keep their types, as a Parquet file's do: integer keys stay integers, text stays text.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Sequence

import pandas as pd

from ..errors import InputError
from .base import Source, unique_columns


def _is_arrow_table(obj: Any) -> bool:
    import sys

    pa = sys.modules.get("pyarrow")  # a caller holding an Arrow table has imported pyarrow
    return pa is not None and isinstance(obj, pa.Table)


class FrameSource(Source):
    """A pandas DataFrame or a pyarrow Table, read where it is (its index is ignored, as a file's row numbers)."""

    kind = "frame"
    path: Path | None = None  # nothing on disk: --workers-read cannot use it
    keys_as_text = False

    def __init__(self, table: Any) -> None:
        self.table = table
        self.label = "Arrow table" if _is_arrow_table(table) else "DataFrame"

    @classmethod
    def accepts(cls, obj: Any) -> bool:
        return isinstance(obj, pd.DataFrame) or _is_arrow_table(obj)

    @classmethod
    def reopen(cls, record: dict) -> FrameSource:
        label = record.get("label", "DataFrame")
        raise InputError(f"the run's input was a {label} in memory, which cannot be read again; plots need the "
                         f"history: write it to a file (to_parquet) and run from it, or plot from the {label} "
                         "yourself")

    def columns(self) -> list[str]:
        names = [str(n) for n in (self.table.column_names if _is_arrow_table(self.table) else self.table.columns)]
        return unique_columns(self.label, names)

    def _by_name(self) -> dict[str, Any]:
        names = self.table.column_names if _is_arrow_table(self.table) else list(self.table.columns)
        return {str(n): n for n in names}  # a column named 1 is asked for as "1", as a CSV header names it

    def read(self, columns: Sequence[str], id_cols: Sequence[str], time_col: str,
             filters: list | None = None) -> pd.DataFrame:
        by_name = self._by_name()
        if _is_arrow_table(self.table):
            frame = self.table.select([by_name[c] for c in columns]).to_pandas()
        else:
            frame = self.table[[by_name[c] for c in columns]].copy()  # the checks change columns; not the user's
        frame.columns = list(columns)
        return frame.reset_index(drop=True)

    def read_as_text(self, columns: Sequence[str]) -> pd.DataFrame | None:
        return self.read(columns, (), "")

    def identity(self) -> dict:
        """Its label, its size in bytes and a hash of its column names, types and values."""
        h = hashlib.sha256()
        if _is_arrow_table(self.table):
            import pyarrow as pa

            sink = pa.BufferOutputStream()
            with pa.ipc.new_stream(sink, self.table.schema) as writer:
                writer.write_table(self.table)
            data = sink.getvalue()
            h.update(data)
            return {"path": self.label, "size": data.size, "sha256": h.hexdigest()}
        frame = self.table
        h.update(json.dumps([[str(c), str(t)] for c, t in frame.dtypes.items()]).encode())
        try:
            h.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
        except TypeError:  # unhashable cells (lists): the text of every value instead
            h.update(frame.to_csv(index=False).encode())
        return {"path": self.label, "size": int(frame.memory_usage(index=False).sum()), "sha256": h.hexdigest()}

    def record(self) -> dict:
        return {"kind": self.kind, "label": self.label, "rows": int(self.table.num_rows if _is_arrow_table(self.table)
                                                                  else len(self.table)),
                "columns": self.columns()}
