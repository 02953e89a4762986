"""`plot_run`: one PNG per series of a finished run or backtest: history, forecast, interval band, forecast start.

matplotlib (the `plot` extra) is imported only here, inside the functions, with the Agg backend, so the rest of
the package works without it and nothing needs a display.
"""

from __future__ import annotations

import hashlib
import io as _io
import re
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from .errors import ConfigError, InputError
from .io import RunDir, key_label, read_history, read_run_dir, write_atomic

# Longest readable part of a file name; the hash keeps names unique whatever is cut off.
_SLUG_CHARS = 60


def series_filename(key: Sequence) -> str:
    """A safe, stable and unique PNG file name for a series key.

    The readable part keeps letters, digits, "_" and "-" (anything else, including path separators, dots and
    control characters, becomes "_"), cut at 60 characters; a hash of the exact key makes two keys that read
    alike (e.g. "a/b" and "a_b") different files.
    """
    text = "\x1f".join(str(v) for v in key)
    slug = re.sub(r"[^A-Za-z0-9_-]+", "_", "__".join(str(v) for v in key)).strip("_")[:_SLUG_CHARS] or "series"
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:10]
    return f"{slug}-{digest}.png"


def _pyplot():
    try:
        import matplotlib
    except ImportError:
        raise ConfigError("plotting needs matplotlib: pip install 'forecast[plot]'") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def png_bytes(fig) -> bytes:
    """A finished figure as PNG bytes (laid out tightly), for a file or an HTML page."""
    buffer = _io.BytesIO()
    with warnings.catch_warnings():  # a key in a script the font lacks (CJK, emoji) draws as boxes; no warning
        warnings.filterwarnings("ignore", message="Glyph .* missing from font")
        fig.tight_layout()
        fig.savefig(buffer, format="png")
    return buffer.getvalue()


def _rows(frame: pd.DataFrame | None, id_cols: Sequence[str], key: tuple) -> pd.DataFrame | None:
    if frame is None:
        return None
    mask = np.ones(len(frame), dtype=bool)
    for col, value in zip(id_cols, key):
        mask &= (frame[col] == value).to_numpy()
    return frame[mask]


def _why_none(run: RunDir, key: tuple) -> str:
    """Why a series has no forecast: its status in timings.csv, or not done when the run was interrupted."""
    row = _rows(run.timings, run.id_cols, key)
    if row is not None and not row.empty:
        return str(row["status"].iloc[0])
    return "not done, the run was interrupted" if run.summary.get("status") == "interrupted" else "not in the run"


def render_series(run: RunDir, history: pd.DataFrame, key: tuple) -> bytes:
    """One series' figure as PNG bytes: history, forecast (every window's, for a backtest), band, start line."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(9, 3.6), dpi=90)
    try:
        past = _rows(history, run.id_cols, key)
        ax.plot(past["ds"], past["y"], color="black", linewidth=0.9, label="history")
        fc = _rows(run.backtest if run.is_backtest else run.forecasts, run.id_cols, key)
        note = ""
        if fc is None or fc.empty:
            note = f" (no forecast: {_why_none(run, key)})"
        elif run.is_backtest:
            for w, part in fc.groupby("window"):
                label = "forecast" if w == fc["window"].min() else None
                ax.plot(part["ds"], part["yhat"], color="tab:blue", linewidth=1.2, label=label)
                ax.fill_between(part["ds"], part["yhat_lower"], part["yhat_upper"], color="tab:blue", alpha=0.2)
                ax.plot(part["ds"], part["yhat_naive"], color="tab:gray", linestyle=":", linewidth=1,
                        label="seasonal naive" if label else None)
                ax.axvline(part["cutoff"].iloc[0], color="tab:red", linestyle="--", linewidth=0.8,
                           label="forecast start" if label else None)
        else:
            last = past["ds"].max() if len(past) else fc["ds"].min()
            ahead = fc[fc["ds"] > last] if len(past) else fc
            ax.plot(fc["ds"], fc["yhat"], color="tab:blue", linewidth=1.2, label="forecast")
            ax.fill_between(fc["ds"], fc["yhat_lower"], fc["yhat_upper"], color="tab:blue", alpha=0.2,
                            label="interval")
            if len(ahead):
                ax.axvline(ahead["ds"].min(), color="tab:red", linestyle="--", linewidth=0.8, label="forecast start")
        ax.set_title(key_label(key) + note, fontsize=10)
        ax.legend(loc="upper left", fontsize=7)
        ax.grid(alpha=0.3)
        fig.autofmt_xdate()
        return png_bytes(fig)
    finally:
        plt.close(fig)


def worst_series(run: RunDir, n: int) -> list[tuple]:
    """The n series with the largest Prophet MASE in the backtest (WAPE where MASE is unknown)."""
    if not run.is_backtest:
        raise ConfigError(f"--worst needs a backtest: {run.path} has no metrics.csv; run forecast backtest "
                          f"--out DIR and plot DIR")
    scores = run.metrics[run.metrics["model"] == "prophet"]
    order = scores.assign(_rank=scores["mase"].fillna(scores["wape"])).sort_values("_rank", ascending=False,
                                                                                  na_position="last")
    return [tuple(row) for row in order[run.id_cols].head(n).itertuples(index=False, name=None)]


def all_series(run: RunDir, history: pd.DataFrame) -> list[tuple]:
    """Every series key of the run's input, in key order."""
    keys = history[run.id_cols].drop_duplicates().sort_values(run.id_cols)
    return [tuple(row) for row in keys.itertuples(index=False, name=None)]


def select_series(run: RunDir, history: pd.DataFrame, series: Sequence[str] = (), worst: int | None = None
                  ) -> list[tuple]:
    """The keys to plot: those named (by `key_label`), the `worst` N of a backtest, or else every series.

    Raises:
        ConfigError: for a name that is no series of the run (with the closest names), or --worst without a
            backtest.
    """
    keys = all_series(run, history)
    chosen: list[tuple] = []
    if series:
        by_label = {key_label(k): k for k in keys}
        for name in series:
            if name not in by_label:
                import difflib

                close = difflib.get_close_matches(name, list(by_label), n=3)
                hint = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
                raise ConfigError(f"--series {name!r} is not a series of {run.path}{hint} (composite keys are "
                                  "written as value / value)")
            chosen.append(by_label[name])
    if worst:
        chosen += worst_series(run, worst)
    if not series and not worst:
        chosen = keys
    return list(dict.fromkeys(chosen))


def plot_run(run_dir: Path | str, series: Sequence[str] = (), worst: int | None = None,
             out_dir: Path | str | None = None) -> list[Path]:
    """Write one PNG per selected series of a finished run or backtest.

    Args:
        run_dir: the --out directory of `forecast run` or `forecast backtest`.
        series: keys to plot, as `key_label` shows them; with `worst` both are plotted.
        worst: plot the N series with the largest backtest error (needs a backtest directory).
        out_dir: where the PNGs go; default RUN_DIR/plots.

    Returns:
        The paths written, in the order plotted.

    Raises:
        InputError: RUN_DIR is not a run, or its input cannot be read again.
        ConfigError: an unknown --series, --worst without a backtest, matplotlib missing.
    """
    run = read_run_dir(Path(run_dir))
    _pyplot()  # fail before any work when matplotlib is missing
    history = read_history(run)
    keys = select_series(run, history, series, worst)
    out = Path(out_dir) if out_dir is not None else run.path / "plots"
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: exists and is not a directory; choose another --out")
    written = []
    for key in keys:
        png = render_series(run, history, key)
        written.append(write_atomic(out / series_filename(key), lambda tmp, png=png: Path(tmp).write_bytes(png)))
    return written
