"""Shared fixtures: small seeded long tables written as real files."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest


def make_table(n_series: int = 4, days: int = 120, seed: int = 0, start: str = "2024-01-01",
               id_cols=("unique_id",)) -> pd.DataFrame:
    """A long table of daily series with trend, weekly seasonality and noise; keys S0, S1, ... (or store/item)."""
    rng = np.random.default_rng(seed)
    ds = pd.date_range(start, periods=days, freq="D")
    t = np.arange(days)
    frames = []
    for i in range(n_series):
        y = 20 + 5 * i + 0.05 * t + 3 * np.sin(2 * np.pi * t / 7) + rng.normal(0, 1, days)
        frame = pd.DataFrame({"ds": ds, "y": y})
        if len(id_cols) == 1:
            frame.insert(0, id_cols[0], f"S{i}")
        else:
            frame.insert(0, id_cols[0], f"store{i % 2}")
            frame.insert(1, id_cols[1], f"item{i // 2}")
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


@pytest.fixture
def table_csv(tmp_path: Path) -> Path:
    path = tmp_path / "table.csv"
    make_table().to_csv(path, index=False)
    return path


@pytest.fixture
def write_csv(tmp_path: Path):
    """write_csv(frame_or_text, name) -> path of a real CSV file in the test's temp dir."""

    def write(data, name: str = "input.csv") -> Path:
        path = tmp_path / name
        if isinstance(data, str):
            path.write_text(data)
        else:
            data.to_csv(path, index=False)
        return path

    return write
