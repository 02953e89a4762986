"""`build_report`: one self-contained HTML file for a finished run or backtest, images embedded as base64.

Every text that comes from the data (series keys, error texts, the input path) is HTML-escaped, so a key such as
`<script>` shows as text. The page loads nothing from anywhere: no scripts, no external styles or images.
"""

from __future__ import annotations

import base64
import html
import math
from pathlib import Path
from typing import Any, Sequence

import pandas as pd

from .errors import InputError
from .io import RunDir, key_label, read_history, read_run_dir, write_atomic
from .plot import _pyplot, png_bytes, render_series, worst_series

# How many series get a plot in the report; each costs ~0.1 s and ~40 kB of base64.
PLOTS = 6
# Rows shown in the slowest-series and failures tables; the full lists are in timings.csv and errors.csv.
TABLE_ROWS = 20

_STYLE = """body{font-family:sans-serif;margin:2em;max-width:70em;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em}td,th{border:1px solid #ccc;padding:.2em .6em;text-align:left}
th{background:#f0f0f0}td.num{text-align:right;font-variant-numeric:tabular-nums}img{max-width:100%}"""


def _cell(value: Any) -> str:
    if isinstance(value, float):
        text = "" if math.isnan(value) else f"{value:.4g}"
        return f'<td class="num">{text}</td>'
    if isinstance(value, int) and not isinstance(value, bool):
        return f'<td class="num">{value}</td>'
    return f"<td>{html.escape(str(value))}</td>"


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in headers)
    body = "".join("<tr>" + "".join(_cell(v) for v in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _img(png: bytes, alt: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return f'<p><img alt="{html.escape(alt, quote=True)}" src="data:image/png;base64,{data}"></p>'


def _histogram(seconds: pd.Series) -> bytes:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 2.8), dpi=90)
    try:
        ax.hist(seconds.to_numpy(dtype=float), bins=min(30, max(5, len(seconds) // 3)), color="tab:blue")
        ax.set_xlabel("fit seconds per series")
        ax.set_ylabel("series")
        return png_bytes(fig)
    finally:
        plt.close(fig)


def _summary_section(run: RunDir) -> str:
    s = run.summary
    fields = ["command", "status", "input", "rows", "series_total", "series_done", "series_ok", "series_failed",
              "series_fallback", "series_skipped", "n_jobs", "cores",
              "wall_seconds", "series_per_second", "speedup", "parallel_efficiency", "horizon", "windows", "step"]
    rows = [(name, s[name]) for name in fields if name in s]
    if "command" not in s:
        rows.insert(0, ("command", "run"))
    if "horizon" not in s:
        rows.append(("horizon", s["config"]["model"]["horizon"]))
    return "<h2>Run</h2>" + _table(["", "value"], rows)


def _timing_section(run: RunDir) -> str:
    if run.timings is None or run.timings.empty:
        return ""
    ok = run.timings[run.timings["status"] == "ok"]
    parts = ["<h2>Fit times</h2>"]
    if len(ok):
        parts.append(_img(_histogram(ok["fit_seconds"]), "histogram of fit seconds per series"))
    slow = run.timings.assign(total=run.timings["fit_seconds"] + run.timings["predict_seconds"])
    slow = slow.sort_values("total", ascending=False).head(TABLE_ROWS)
    parts.append("<h3>Slowest series</h3>")
    parts.append(_table(["series", "n_obs", "fit seconds", "predict seconds", "worker"],
                        [(key_label(r[run.id_cols]), int(r["n_obs"]), float(r["fit_seconds"]),
                          float(r["predict_seconds"]), str(r["worker"])) for _, r in slow.iterrows()]))
    return "".join(parts)


def _failures_section(run: RunDir) -> str:
    """The series Prophet did not forecast (failed, whether or not a fallback served them, or skipped by
    triage), from errors.csv, and those an interrupted run did not reach."""
    s = run.summary
    missing = s.get("series_total", 0) - s.get("series_done", s.get("series_total", 0))
    undone = (f"<p>{missing} series not done: the run was interrupted; <code>--resume</code> finishes it.</p>"
              if s.get("status") == "interrupted" and missing > 0 else "")
    errors = run.errors if run.errors is not None else pd.DataFrame()
    if errors.empty:
        return "<h2>Series without a Prophet forecast</h2><p>None.</p>" + undone
    rows = [(key_label(r[run.id_cols]), str(r["stage"]), str(r["reason"])) for _, r in errors.head(TABLE_ROWS).iterrows()]
    more = f"<p>{len(errors) - TABLE_ROWS} more in errors.csv.</p>" if len(errors) > TABLE_ROWS else ""
    return (f"<h2>Series without a Prophet forecast ({len(errors)}: failed or skipped)</h2>"
            + _table(["series", "stage", "reason"], rows) + more + undone)


def _accuracy_section(run: RunDir) -> str:
    if not run.is_backtest:
        return ""
    names = ["n", "mae", "rmse", "wape", "smape", "mase", "mape", "mape_skipped", "coverage"]
    overall = run.summary.get("overall", {})
    rows = [[model] + [float("nan") if figures.get(n) is None else figures[n] for n in names]
            for model, figures in overall.items()]
    scores = run.metrics[run.metrics["model"] == "prophet"].sort_values("mase", ascending=False).head(TABLE_ROWS)
    worst = [[key_label(r[run.id_cols])] + [r[n].item() if hasattr(r[n], "item") else r[n] for n in names]
             for _, r in scores.iterrows()]
    return ("<h2>Accuracy (backtest)</h2>"
            f"<p>{html.escape(str(run.summary.get('aggregation', '')))}.</p>"
            + _table(["model"] + names, rows)
            + "<h3>Series with the largest Prophet MASE</h3>" + _table(["series"] + names, worst))


def _plots_section(run: RunDir, n: int) -> str:
    try:
        history = read_history(run)
    except InputError as e:
        return f"<h2>Series</h2><p>No plots: {html.escape(str(e))}</p>"
    if run.is_backtest:
        keys = worst_series(run, n)
    else:
        keys = [tuple(k) for k in history[run.id_cols].drop_duplicates().head(n).itertuples(index=False, name=None)]
    heading = "worst by backtest MASE" if run.is_backtest else f"the first {len(keys)}"
    return (f"<h2>Series ({heading})</h2>"
            + "".join(_img(render_series(run, history, k), key_label(k)) for k in keys))


def build_report(run_dir: Path | str, out: Path | str | None = None, plots: int = PLOTS) -> Path:
    """Write one self-contained HTML report of a finished run or backtest.

    Args:
        run_dir: the --out directory of `forecast run` or `forecast backtest`.
        out: the HTML file; default RUN_DIR/report.html.
        plots: how many series to plot (the worst by MASE for a backtest, else the first in the input).

    Returns:
        The path of the report.

    Raises:
        InputError: RUN_DIR is not a run.
        ConfigError: matplotlib is missing.
    """
    run = read_run_dir(Path(run_dir))
    _pyplot()
    title = f"forecast {run.summary.get('command', 'run')}: {run.path.name}"
    body = "".join([
        f"<h1>{html.escape(title)}</h1>",
        _summary_section(run),
        _accuracy_section(run),
        _timing_section(run),
        _failures_section(run),
        _plots_section(run, plots) if plots else "",
    ])
    page = (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f"<style>{_STYLE}</style></head><body>{body}</body></html>\n")
    path = Path(out) if out is not None else run.path / "report.html"
    if path.is_dir():
        raise InputError(f"{path}: is a directory; give the report's file name, such as {path / 'report.html'}")
    return write_atomic(path, lambda tmp: Path(tmp).write_text(page, encoding="utf-8"))
