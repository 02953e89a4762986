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
from types import ModuleType
from typing import TYPE_CHECKING, Sequence

import numpy as np
import pandas as pd

from .errors import ConfigError, InputError
from .outputs import RunDir, key_label, key_title, model_label, natural_key, read_history, read_run_dir, write_atomic

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure
    from numpy.typing import ArrayLike

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


def _pyplot() -> ModuleType:
    try:
        import matplotlib
    except ImportError:
        raise ConfigError("plotting needs matplotlib: pip install 'forecast[plot]'") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def png_bytes(fig: Figure) -> bytes:
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


def _timing(run: RunDir, key: tuple, column: str) -> str:
    """One series' value of a timings.csv column, "" when it is not there."""
    row = _rows(run.timings, run.id_cols, key)
    if row is None or row.empty or column not in row.columns:
        return ""
    value = row[column].iloc[0]
    return "" if value is None or value != value else str(value)


# The y-axis shows the history's range plus this share of it on each side (more when the forecasts need it, up to
# OFF_SCALE_SHARE): a forecast that runs far outside it is drawn to the axis' edge and marked off-scale, so the
# history stays readable.
MARGIN_SHARE = 0.1
OFF_SCALE_SHARE = 0.5
# Prophet's colour, and the fallbacks' (a simple forecast, told apart at a glance).
PROPHET_COLOR, FALLBACK_COLOR = "tab:blue", "tab:orange"


def axis_limits(history_y: ArrayLike, forecast_values: ArrayLike = ()) -> tuple[float, float]:
    """The y-axis of a series' plot: the history's range with a margin, widened to hold the forecasts and their
    bands only as far as OFF_SCALE_SHARE of the history's range beyond it; what lies further is off-scale."""
    h = np.asarray(history_y, dtype=float)
    h = h[np.isfinite(h)]
    f = np.asarray(forecast_values, dtype=float).ravel()
    f = f[np.isfinite(f)]
    if not len(h):
        h = f if len(f) else np.array([0.0])
    lo, hi = float(h.min()), float(h.max())
    span = hi - lo if hi > lo else max(abs(hi), 1.0)
    lo_cap, hi_cap = lo - OFF_SCALE_SHARE * span, hi + OFF_SCALE_SHARE * span
    if len(f):
        lo, hi = min(lo, max(float(f.min()), lo_cap)), max(hi, min(float(f.max()), hi_cap))
    return lo - MARGIN_SHARE * span, hi + MARGIN_SHARE * span


def _number(x: float) -> str:
    return f"{x:,.0f}" if abs(x) >= 100 else f"{x:,.3g}"


def _mark_off_scale(ax: Axes, ds: ArrayLike, values: ArrayLike, limits: tuple[float, float], color: str, what: str
                    ) -> list[str]:
    """Draw a forecast line clipped to the axis, with triangles where it leaves it; return the notes that say how
    far it went (written on the plot)."""
    values = np.asarray(values, dtype=float)
    lo, hi = limits
    notes = []
    for side, out, edge, marker in (("above", values > hi, hi, "^"), ("below", values < lo, lo, "v")):
        if out.any():
            ax.plot(np.asarray(ds)[out], np.full(int(out.sum()), edge), linestyle="none", marker=marker,
                    color=color, markersize=6, clip_on=False)
            extreme = values[out].max() if side == "above" else values[out].min()
            notes.append(f"{what} off scale {side}: {int(out.sum())} point(s), "
                         f"{'up' if side == 'above' else 'down'} to {_number(extreme)}")
    return notes


def _history_with_gaps(past: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """The history's times and values with a missing value put where periods are missing (a step more than 1.5
    times the series' usual one), so its line breaks there instead of joining across the gap."""
    ds = past["ds"].to_numpy(dtype="datetime64[ns]")
    y = past["y"].to_numpy(dtype=float)
    if len(ds) < 3:
        return ds, y
    steps = np.diff(ds).astype("int64")
    usual = np.median(steps)
    gaps = np.flatnonzero(steps > 1.5 * usual)
    if not len(gaps):
        return ds, y
    mid = ds[gaps] + (steps[gaps] // 2).astype("timedelta64[ns]")
    return np.insert(ds, gaps + 1, mid), np.insert(y, gaps + 1, np.nan)


def _levels(fc: pd.DataFrame) -> list[str]:
    """The --level labels of a forecasts table, from its yhat_lower_<L> columns (80, 95), in its order."""
    return [c.removeprefix("yhat_lower_") for c in fc.columns if c.startswith("yhat_lower_")
            and f"yhat_upper_{c.removeprefix('yhat_lower_')}" in fc.columns]


def render_series(run: RunDir, history: pd.DataFrame, key: tuple, why: str = "") -> bytes:
    """One series' figure (see `series_figure`) as PNG bytes."""
    plt = _pyplot()
    fig = series_figure(run, history, key, why)
    try:
        return png_bytes(fig)
    finally:
        plt.close(fig)


def series_figure(run: RunDir, history: pd.DataFrame, key: tuple, why: str = "") -> Figure:
    """One series' matplotlib figure: history (broken where periods are missing), forecast (every window's, for
    a backtest), band, start line; the y-axis from the history (see `axis_limits`), with off-scale forecasts
    marked and their extremes written on the plot. The title names the key columns, `why` (e.g. the metric
    that made it one of the worst) and, for a fallback, the model that served it and why. The caller closes it."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(9, 3.6), dpi=90)
    try:
        past = _rows(history, run.id_cols, key)
        ds, y = _history_with_gaps(past)
        ax.plot(ds, y, color="black", linewidth=0.9, label="history")
        if len(ds) and np.isnan(y).any():  # a value alone between gaps would not show as a line
            ax.plot(ds, y, color="black", linestyle="none", marker=".", markersize=2)
        fc = _rows(run.backtest if run.is_backtest else run.forecasts, run.id_cols, key)
        title = key_title(run.id_cols, key)
        subtitle = why
        off_scale: list[str] = []
        if fc is None or fc.empty:
            title += f" (no forecast: {_why_none(run, key)})"
            ax.set_ylim(*axis_limits(past["y"]))
        elif run.is_backtest:
            label = model_label(run.tested_model, _timing(run, key, "engine"))
            baseline = "yhat_naive" in fc.columns  # the seasonal-naive baseline, when the backtest scored it
            limits = axis_limits(past["y"], fc[["yhat", "yhat_naive"] if baseline else ["yhat"]].to_numpy())
            ax.set_ylim(*limits)
            for w, part in fc.groupby("window"):
                first = w == fc["window"].min()
                ax.plot(part["ds"], part["yhat"].clip(*limits), color=PROPHET_COLOR, linewidth=1.2,
                        label=label if first else None)
                ax.fill_between(part["ds"], part["yhat_lower"].clip(*limits), part["yhat_upper"].clip(*limits),
                                color=PROPHET_COLOR, alpha=0.2)
                if baseline:
                    ax.plot(part["ds"], part["yhat_naive"].clip(*limits), color="tab:gray", linestyle=":",
                            linewidth=1, label="seasonal naive" if first else None)
                ax.axvline(part["cutoff"].iloc[0], color="tab:red", linestyle="--", linewidth=0.8,
                           label="forecast start" if first else None)
            off_scale += _mark_off_scale(ax, fc["ds"], fc["yhat"], limits, PROPHET_COLOR, label)
            if baseline:
                off_scale += _mark_off_scale(ax, fc["ds"], fc["yhat_naive"], limits, "tab:gray", "seasonal naive")
        else:
            last = past["ds"].max() if len(past) else fc["ds"].min()
            ahead = fc[fc["ds"] > last] if len(past) else fc
            model = str(fc["model"].iloc[0]) if "model" in fc.columns else "prophet"
            fallback = not model.startswith("prophet")
            label = model_label(model, _timing(run, key, "engine"))
            color = FALLBACK_COLOR if fallback else PROPHET_COLOR
            limits = axis_limits(past["y"], fc["yhat"])
            ax.set_ylim(*limits)
            ax.plot(fc["ds"], fc["yhat"].clip(*limits), color=color, linewidth=1.2, label=label)
            ax.fill_between(fc["ds"], fc["yhat_lower"].clip(*limits), fc["yhat_upper"].clip(*limits), color=color,
                            alpha=0.2, label="interval")
            for level in _levels(fc):  # --level bands, fainter: nested, they shade darker toward the forecast
                ax.fill_between(fc["ds"], fc[f"yhat_lower_{level}"].clip(*limits),
                                fc[f"yhat_upper_{level}"].clip(*limits), color=color, alpha=0.08,
                                label=f"{level} % interval")
            if len(ahead):
                ax.axvline(ahead["ds"].min(), color="tab:red", linestyle="--", linewidth=0.8, label="forecast start")
            off_scale += _mark_off_scale(ax, fc["ds"], fc["yhat"], limits, color, label)
            reason = _timing(run, key, "error")
            if fallback or model != "prophet":
                served = f"served by {label}" + (f": {reason}" if reason else "")
                subtitle = "; ".join(filter(None, [subtitle, served]))
        ax.set_title(title + (f"\n{_shorten(subtitle)}" if subtitle else ""), fontsize=10)
        if off_scale:
            ax.text(0.99, 0.97, "\n".join(off_scale), transform=ax.transAxes, ha="right", va="top", fontsize=7,
                    color="tab:red", bbox={"facecolor": "white", "alpha": 0.8, "edgecolor": "tab:red"})
        ax.legend(loc="upper left", fontsize=7)
        ax.grid(alpha=0.3)
        fig.autofmt_xdate()
        return fig
    except BaseException:
        plt.close(fig)
        raise


def _shorten(text: str, width: int = 100) -> str:
    """A subtitle in at most two lines of `width` characters."""
    import textwrap

    return "\n".join(textwrap.wrap(text, width, max_lines=2, placeholder="..."))


def worst_reason(run: RunDir, key: tuple) -> str:
    """Why a series is among the worst of a backtest: its MASE (and WAPE) for the model under test, as `worst_series` ranks."""
    row = _rows(run.metrics[run.metrics["model"] == run.tested_model], run.id_cols, key)
    if row is None or row.empty:
        return ""
    mase, wape = row["mase"].iloc[0], row["wape"].iloc[0]
    parts = [f"MASE {mase:.2f}" if mase == mase else "", f"WAPE {wape:.1%}" if wape == wape else ""]
    return "worst by " + ", ".join(p for p in parts if p) if any(parts) else ""


def worst_series(run: RunDir, n: int) -> list[tuple]:
    """The n series with the largest MASE of the model under test (WAPE where MASE is unknown)."""
    if not run.is_backtest:
        raise ConfigError(f"--worst needs a backtest: {run.path} has no metrics.csv; run forecast backtest "
                          f"--out DIR and plot DIR")
    scores = run.metrics[run.metrics["model"] == run.tested_model]
    order = scores.assign(_rank=scores["mase"].fillna(scores["wape"])).sort_values("_rank", ascending=False,
                                                                                  na_position="last")
    return [tuple(row) for row in order[run.id_cols].head(n).itertuples(index=False, name=None)]


def all_series(run: RunDir, history: pd.DataFrame) -> list[tuple]:
    """Every series key of the run's input, in natural order (S2 before S10)."""
    keys = history[run.id_cols].drop_duplicates()
    return sorted((tuple(row) for row in keys.itertuples(index=False, name=None)), key=natural_key)


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
    worst_keys = set(worst_series(run, worst)) if worst else set()
    written = []
    for key in keys:
        png = render_series(run, history, key, worst_reason(run, key) if key in worst_keys else "")
        written.append(write_atomic(out / series_filename(key), lambda tmp, png=png: Path(tmp).write_bytes(png)))
    return written
