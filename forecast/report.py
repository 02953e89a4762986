"""`build_report`: one self-contained HTML file for a finished run or backtest, images embedded as base64.

Every text that comes from the data (series keys, error texts, the input path) is HTML-escaped, so a key such as
`<script>` shows as text. The page loads nothing from anywhere: no scripts, no external styles or images.
"""

from __future__ import annotations

import base64
import html
import math
from pathlib import Path
from typing import Any, Callable, Literal, Sequence

import pandas as pd

from .config import REPORT_PLOTS
from .errors import InputError
from .outputs import RunDir, key_label, model_label, natural_key, read_history, read_run_dir, write_atomic
from .plot import _pyplot, all_series, png_bytes, render_series, worst_reason, worst_series

# How many series get a plot in the report (config.REPORT_PLOTS, --plots).
PLOTS = REPORT_PLOTS
# Rows shown in the slowest-series and failures tables; the full lists are in timings.csv and errors.csv.
TABLE_ROWS = 20
# How a table column of numbers is shown: as it is, or "pct" (fractions as percentages).
ColumnKind = Literal["", "pct"]

_STYLE = """body{font-family:sans-serif;margin:2em;max-width:70em;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em}td,th{border:1px solid #ccc;padding:.2em .6em;text-align:left}
th{background:#f0f0f0}td.num{text-align:right;font-variant-numeric:tabular-nums}img{max-width:100%}
.warn{background:#fff4d6;border-left:4px solid #e0a000;padding:.4em .8em}"""


def _decimals(largest: float) -> int:
    """Decimals for a column whose largest absolute value is `largest`: about four significant digits for it."""
    for limit, decimals in ((100, 0), (10, 1), (1, 2)):
        if largest >= limit:
            return decimals
    return 3


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _column_formatter(values: Sequence[Any], kind: ColumnKind = "") -> Callable[[Any], str] | None:
    """One format for a whole column of numbers: integers with thousands separators; other numbers with the
    same number of decimals (chosen from the column's largest value), or as percentages for kind "pct"
    (fractions: 0.123 is 12.3 %). None for a column that is not numbers."""
    numbers = [v for v in values if _is_number(v)]
    if not numbers or any(not _is_number(v) and v is not None for v in values):
        return None
    finite = [abs(float(v)) for v in numbers if math.isfinite(float(v))]
    scale = 100.0 if kind == "pct" else 1.0
    if kind != "pct" and all(isinstance(v, int) or float(v).is_integer() for v in numbers if math.isfinite(v)):
        decimals = 0
    else:
        decimals = _decimals(max(finite, default=0.0) * scale)
    suffix = " %" if kind == "pct" else ""

    def fmt(v: Any) -> str:
        if not _is_number(v) or not math.isfinite(float(v)):
            return "" if v is None or v != v else str(v)
        return f"{float(v) * scale:,.{decimals}f}{suffix}"

    return fmt


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]], kinds: dict[int, ColumnKind] | None = None) -> str:
    """An HTML table; each column of numbers gets one format (see `_column_formatter`), right-aligned; kinds
    maps a column's index to "pct" for fractions shown as percentages."""
    kinds = kinds or {}
    columns = list(zip(*rows)) if rows else []
    formats = [_column_formatter(col, kinds.get(i, "")) for i, col in enumerate(columns)]
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(f'<td class="num">{formats[i](v)}</td>' if formats[i] is not None
                         else f"<td>{html.escape('' if v is None else str(v))}</td>" for i, v in enumerate(row))
        + "</tr>" for row in rows)
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


def _engine_label(run: RunDir, keys: pd.DataFrame | None = None) -> str:
    """The model that fitted the Prophet series of a run or backtest, with its engine (`prophet (fast)`); when
    some series took another engine, how many (`prophet (fast; stan: 3 series)`)."""
    configured = run.summary.get("config", {}).get("model", {}).get("engine", "")
    timings = run.timings if keys is None else keys
    if timings is None or "engine" not in timings.columns:
        return model_label("prophet", configured)
    fitted = timings.loc[timings["status"] == "ok", "engine"].dropna().astype(str)
    counts = fitted[fitted != ""].value_counts()
    if counts.empty:
        return model_label("prophet", configured)
    main = counts.index[0]
    others = "; ".join(f"{e}: {n:,} series" for e, n in counts.iloc[1:].items())
    return model_label("prophet", f"{main}; {others}" if others else main)


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
    rows.insert(2, ("model", _engine_label(run)))
    fallback = s.get("config", {}).get("fallback")
    if fallback and fallback != "none":
        rows.insert(3, ("fallback", f"fallback:{fallback}"))
    # one format for the value column: whole numbers as such, the rest with two decimals
    shown = [(name, f"{v:,}" if _is_number(v) and float(v).is_integer() else
              f"{v:,.2f}" if _is_number(v) else v) for name, v in rows]
    return "<h2>Run</h2>" + _table(["", "value"], shown)


def _timing_section(run: RunDir) -> str:
    if run.timings is None or run.timings.empty:
        return ""
    ok = run.timings[run.timings["status"] == "ok"]
    parts = ["<h2>Fit times</h2>"]
    if len(ok):
        parts.append(_img(_histogram(ok["fit_seconds"]), "histogram of fit seconds per series"))
    slow = run.timings.assign(total=run.timings["fit_seconds"] + run.timings["predict_seconds"])
    slow = slow.sort_values("total", ascending=False).head(TABLE_ROWS)
    has = set(slow.columns)
    parts.append("<h3>Slowest series</h3>")
    parts.append(_table(["series", "model", "n_obs", "fit seconds", "predict seconds", "worker"],
                        [(key_label(r[run.id_cols]),
                          model_label(r["model"] if "model" in has else "prophet", r["engine"] if "engine" in has
                                      else ""),
                          int(r["n_obs"]), float(r["fit_seconds"]), float(r["predict_seconds"]), _text(r["worker"]))
                         for _, r in slow.iterrows()]))
    return "".join(parts)


def _text(value: Any) -> str:
    return "" if value is None or value != value else str(value)


def _failures_section(run: RunDir) -> str:
    """The series Prophet did not forecast: failed (with no forecast), served by a fallback (after a failure, or
    sent there by --min-obs or triage) with the model that served them, and skipped by triage, in natural key
    order; and how many an interrupted run did not reach."""
    s = run.summary
    missing = s.get("series_total", 0) - s.get("series_done", s.get("series_total", 0))
    undone = (f"<p>{missing} series not done: the run was interrupted; <code>--resume</code> finishes it.</p>"
              if s.get("status") == "interrupted" and missing > 0 else "")
    errors = run.errors if run.errors is not None else pd.DataFrame(columns=run.id_cols + ["stage", "reason"])
    reasons = {tuple(r[run.id_cols]): (_text(r["stage"]), _text(r["reason"])) for _, r in errors.iterrows()}
    entries = []
    if run.timings is not None and "status" in run.timings.columns:
        for _, r in run.timings[run.timings["status"] != "ok"].iterrows():
            key = tuple(r[run.id_cols])
            stage, reason = reasons.pop(key, ("", _text(r.get("error"))))
            served = _text(r.get("model")) if r["status"] == "fallback" else "none"
            entries.append((key, str(r["status"]), served, stage, reason))
    for key, (stage, reason) in reasons.items():  # in errors.csv only (a run without timings)
        entries.append((key, "failed", "none", stage, reason))
    if not entries:
        return "<h2>Series without a Prophet forecast</h2><p>None.</p>" + undone
    entries.sort(key=lambda e: natural_key(e[0]))
    counts = pd.Series([e[1] for e in entries]).value_counts()
    told = ", ".join(f"{counts.get(k, 0):,} {k}" for k in ("failed", "fallback", "skipped"))
    rows = [(key_label(k), status, served, stage, reason) for k, status, served, stage, reason in entries]
    more = (f"<p>{len(rows) - TABLE_ROWS:,} more in timings.csv and errors.csv.</p>"
            if len(rows) > TABLE_ROWS else "")
    return (f"<h2>Series without a Prophet forecast ({len(rows):,}: {told})</h2>"
            + _table(["series", "status", "served by", "stage", "reason"], rows[:TABLE_ROWS]) + more + undone)


# The accuracy tables lead with the metrics that stay meaningful whatever the data (WAPE, MASE); sMAPE and MAPE
# come last, flagged when the actuals hold zeros.
_METRIC_COLUMNS = (("n", "n", ""), ("wape", "WAPE", "pct"), ("mase", "MASE", ""), ("mae", "MAE", ""),
                   ("rmse", "RMSE", ""), ("smape", "sMAPE", "pct"), ("mape", "MAPE", "pct"),
                   ("mape_skipped", "zero actuals", ""), ("coverage", "coverage", "pct"))


def _metric_columns(overall: dict) -> tuple[tuple[str, str, str], ...]:
    """_METRIC_COLUMNS, then each --level's coverage and each --quantile's share below it, as the backtest
    scored them (coverage_80 as "coverage 80", below_q90 as "below q90")."""
    tested = next(iter(overall.values()), None) or {}
    return _METRIC_COLUMNS + tuple((name, name.replace("_", " "), "pct") for name in tested
                                   if name.startswith(("coverage_", "below_q")))


def _zero_warning(overall: dict) -> str:
    tested = next(iter(overall.values()), None) or {}  # the model under test's figures
    zeros = tested.get("mape_skipped") or 0
    n = tested.get("n") or 0
    if not zeros:
        return ""
    return (f'<p class="warn">&#9888; {zeros:,} of {n:,} actuals are 0. sMAPE scores a 0 actual at its maximum '
            "(200 %) for any forecast that is not 0, so it can rank a naive forecast above a far better one; MAPE "
            "leaves those points out and grows without bound where actuals are small. Judge by WAPE and MASE.</p>")


def _accuracy_section(run: RunDir) -> str:
    if not run.is_backtest:
        return ""
    overall = run.summary.get("overall", {})
    zeros = bool(_zero_warning(overall))
    columns = _metric_columns(overall)
    headers = [title + (" \u26a0" if zeros and name in ("smape", "mape") else "") for name, title, _ in columns]
    kinds = {i + 1: kind for i, (_, _, kind) in enumerate(columns) if kind}
    prophet = _engine_label(run)
    value = (lambda v: float("nan") if v is None else v.item() if hasattr(v, "item") else v)
    rows = [[prophet if model == "prophet" else model]
            + [value(figures.get(name)) for name, _, _ in columns]
            for model, figures in overall.items()]
    tested = run.tested_model
    scores = run.metrics[run.metrics["model"] == tested].sort_values("mase", ascending=False).head(TABLE_ROWS)
    engines = {}
    if run.timings is not None and "engine" in run.timings.columns:
        engines = {tuple(r[run.id_cols]): r["engine"] for _, r in run.timings.iterrows()}
    worst = [[key_label(r[run.id_cols]), model_label(tested, engines.get(tuple(r[run.id_cols]), ""))]
             + [value(r[name]) for name, _, _ in columns] for _, r in scores.iterrows()]
    return ("<h2>Accuracy (backtest)</h2>"
            f"<p>{html.escape(str(run.summary.get('aggregation', '')))}. WAPE, sMAPE, MAPE and coverage in "
            "percent; MASE below 1 beats the seasonal-naive forecast's in-sample error.</p>"
            + _zero_warning(overall)
            + _table(["model"] + headers, rows, kinds)
            + f"<h3>Series with the largest {'Prophet' if tested == 'prophet' else html.escape(tested)} MASE</h3>"
            + _table(["series", "model"] + headers, worst, {i + 1: k for i, k in kinds.items()}))


def _plots_section(run: RunDir, n: int) -> str:
    try:
        history = read_history(run)
    except InputError as e:
        return f"<h2>Series</h2><p>No plots: {html.escape(str(e))}</p>"
    if run.is_backtest:
        keys = worst_series(run, n)
        why = {k: worst_reason(run, k) for k in keys}
    else:
        keys = all_series(run, history)[:n]
        why = {}
    heading = "worst by backtest MASE" if run.is_backtest else f"the first {len(keys)}"
    return (f"<h2>Series ({heading})</h2>"
            + "".join(_img(render_series(run, history, k, why.get(k, "")), key_label(k)) for k in keys))


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
