"""`run_backtest`: rolling-origin backtests of every series, any model scored against any other.

Per series (`backtest_series`, run in the workers through the same chunk-and-map core as `forecast run`): the
last `windows` origins, `step` rows apart, the last one `horizon` rows before the series' end. At each origin
every configured model (models/; by default Prophet and the seasonal-naive baseline) is fitted to the rows
before it and forecasts the next `horizon` rows. Regressor, cap and floor values of the test rows come from the
input table itself, so --future is not needed. The first model is the one under test: its intervals are kept and
scored; the others are compared on their point forecasts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Callable, Literal, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa

from . import metrics
from .checkpoint import PartSchema
from .config import BACKTEST_MODELS, BacktestConfig, ModelOptions
from .core import Failed
from .freq import grid_positions, series_freq
from .freq import season_length as freq_season_length
from .job import Job, Loaded, Mapped, RunResult, Written, run_job
from .levels import band_columns, below_label, coverage_label, lower_column, quantile_column, upper_column
from .models import get_model
from .outputs import _key_frame, errors_frame, timings_frame, write_table
from .progress import Reporter
from .runner import _table_grid
from .sources import Source, TableInput, key_types, load_series
from .timing import Clock, Tally, series_cpu
from .types import Engine, SeriesData, SeriesProblem, Stage, Status, Verdict

AGGREGATION = ("MAE, RMSE, WAPE, sMAPE, MAPE and coverage pool every scored point of every series (WAPE = sum of "
               "absolute errors / sum of absolute actuals); MASE is the mean of the per-series MASE")
# backtest.parquet's column of a model after the first, where it is not yhat_<name>: the seasonal-naive baseline's
# is the yhat_naive earlier backtests wrote (and plots read), so naive's, which would take that name, is yhat_last
_COLUMNS = {"seasonal-naive": "yhat_naive", "naive": "yhat_last"}


def score_label(model: str) -> str:
    """How metrics.csv and summary["overall"] name a model: "seasonal-naive" -> "seasonal_naive"."""
    return model.replace("-", "_")


def forecast_column(model: str) -> str:
    """backtest.parquet's column for the point forecasts of a model after the first (see _COLUMNS)."""
    return _COLUMNS.get(model, f"yhat_{score_label(model)}")


@dataclass
class BacktestResult:
    """One series' backtest: every window's forecasts and actuals as arrays (one entry per test row).

    yhat and its bounds are the first model's; `points` holds the other models' point forecasts by name.
    """

    key: tuple
    status: Status  # "ok" or "failed"
    n_obs: int
    window: np.ndarray = field(default_factory=lambda: np.array([], dtype="int64"))
    cutoff: np.ndarray = field(default_factory=lambda: np.array([], dtype="datetime64[ns]"))
    ds: np.ndarray = field(default_factory=lambda: np.array([], dtype="datetime64[ns]"))
    y: np.ndarray = field(default_factory=lambda: np.array([]))
    yhat: np.ndarray = field(default_factory=lambda: np.array([]))
    yhat_lower: np.ndarray = field(default_factory=lambda: np.array([]))
    yhat_upper: np.ndarray = field(default_factory=lambda: np.array([]))
    points: dict[str, np.ndarray] = field(default_factory=dict)
    bands: dict[str, np.ndarray] = field(default_factory=dict)  # the first model's --level and --quantile columns
    scale: np.ndarray = field(default_factory=lambda: np.array([]))  # MASE scale of the point's window
    season_length: int = 0
    fit_seconds: float = 0.0
    predict_seconds: float = 0.0
    cpu_seconds: float = 0.0
    worker: str = ""
    stage: str = ""
    error: str = ""
    model: str = ""  # timings.csv says which model was timed, as for a run: the first model once scored, else empty
    verdict: Verdict = ""  # a backtest does not triage
    engine: Engine | Literal[""] = ""  # which engine fitted the first model's windows; empty when none did
    engines: dict[str, str] = field(default_factory=dict)  # each model's engine, by name ("" for the simple ones)


def _windows(n: int, horizon: int, windows: int, step: int) -> list[tuple[int, int]]:
    """(start, end) row ranges of the test windows, oldest first; the last ends at the last row."""
    needed = horizon + (windows - 1) * step + 2
    if n < needed:
        raise SeriesProblem("backtest", f"{n} rows are too few for {windows} window(s) of {horizon} "
                            f"step(s), {step} apart; need at least {needed} (2 to fit the first one)")
    return [(n - horizon - k * step, n - k * step) for k in reversed(range(windows))]


def backtest_series(series: SeriesData, opts: ModelOptions, windows: int, step: int,
                    season_length: int | None = None,
                    models: Sequence[str] = BACKTEST_MODELS) -> BacktestResult:
    """Backtest one series over rolling origins (see the module docstring).

    Args:
        series: the series.
        opts: model options; opts.horizon is each window's length.
        windows, step: how many origins, and the rows between them.
        season_length: the seasonal period of the seasonal models and of MASE's scale; None takes it from the
            series' frequency (freq.season_length).
        models: the registered models to score, the one under test first.

    Returns:
        A BacktestResult; status "failed" with the stage and reason for a problem of this series (too short,
        off-grid timestamps, a window a model cannot fit).
    """
    result = BacktestResult(key=series.key, status="failed", n_obs=int((~np.isnan(series.y)).sum()))
    cpu0 = series_cpu()
    stage = "validate"
    first = models[0]
    try:
        fitters = {name: get_model(name) for name in models}
        for fitter in fitters.values():  # infinities and missing regressors anywhere in the series
            fitter.check(series, opts)
        stage = "frequency"
        freq = series_freq(series, opts)
        pos = grid_positions(series.ds, freq)
        m = season_length or freq_season_length(freq)
        y_grid = np.full(pos[-1] + 1, np.nan)
        y_grid[pos] = series.y
        parts: dict[str, list] = {k: [] for k in ("window", "cutoff", "ds", "y", "yhat", "yhat_lower",
                                                   "yhat_upper", "scale")}
        points: dict[str, list] = {name: [] for name in models[1:]}
        bands: dict[str, list] = {name: [] for name in band_columns(opts)}
        for w, (start, end) in enumerate(_windows(len(series.ds), opts.horizon, windows, step)):
            cutoff = series.ds[start - 1]
            stage = f"window {w} (cutoff {pd.Timestamp(cutoff)})"
            train = SeriesData(key=series.key, ds=series.ds[:start], y=series.y[:start],
                               extra={c: v[:start] for c, v in series.extra.items()},
                               future_ds=series.ds[start:], future_extra={c: v[start:] for c, v in
                                                                          series.extra.items()},
                               freq=freq, table_freq=series.table_freq, holiday_table=series.holiday_table,
                               country=series.country)
            for name, fitter in fitters.items():
                fitter.check(train, opts)
                fc = fitter.forecast(train, series.ds[start:end], opts, season_length=m, source="the input table")
                result.engines[name] = fc.engine
                if name != first:
                    points[name].append(fc.yhat)
                    continue
                result.engine = fc.engine
                result.fit_seconds += fc.fit_seconds
                result.predict_seconds += fc.predict_seconds
                for bound in ("yhat", "yhat_lower", "yhat_upper"):
                    parts[bound].append(getattr(fc, bound))
                for name, values in bands.items():  # a model without such a band leaves it empty
                    values.append(fc.bands.get(name, np.full(len(fc.yhat), np.nan)))
            history = y_grid[:pos[start - 1] + 1]
            m_window = m if len(history) > m else 1  # too short for a whole season: plain naive's scale
            n = end - start
            parts["window"].append(np.full(n, w))
            parts["cutoff"].append(np.full(n, cutoff))
            parts["ds"].append(series.ds[start:end])
            parts["y"].append(series.y[start:end])
            parts["scale"].append(np.full(n, metrics.naive_scale(history, m_window)))
        for name, values in parts.items():
            setattr(result, name, np.concatenate(values))
        result.points = {name: np.concatenate(values) for name, values in points.items()}
        result.bands = {name: np.concatenate(values) for name, values in bands.items()}
        result.season_length = m
        result.status, result.model = "ok", first
    except SeriesProblem as e:
        result.stage = e.stage
        result.error = f"{stage}: {e}" if stage.startswith("window") else str(e)
    except Exception as e:  # anything else about this series' data: record it, go on with the rest
        result.stage, result.error = stage, f"{type(e).__name__}: {e}".splitlines()[0]
    result.cpu_seconds = series_cpu() - cpu0
    return result


def _as_result(series: SeriesData, outcome: BacktestResult | Failed) -> BacktestResult:
    if isinstance(outcome, Failed):
        stage: Stage = "worker" if outcome.kind == "worker-died" else "internal"
        return BacktestResult(key=series.key, status="failed", n_obs=int((~np.isnan(series.y)).sum()),
                              stage=stage, error=outcome.reason)
    return outcome


def backtest_frame(results: list[BacktestResult], id_cols: Sequence[str],
                   models: Sequence[str] = BACKTEST_MODELS, bands: Sequence[str] = ()) -> pd.DataFrame:
    """Every scored row: key columns, window, cutoff, ds, y, the first model's yhat, yhat_lower and yhat_upper and
    its `bands` columns (--level, --quantile), then each other model's point forecast (forecast_column: yhat_naive
    for the seasonal-naive baseline)."""
    ok = [r for r in results if r.status == "ok"]
    frame = _key_frame(id_cols, [r.key for r in ok], [len(r.ds) for r in ok])

    def cat(parts: list[np.ndarray], dtype: str) -> np.ndarray:
        return np.concatenate(parts).astype(dtype) if parts else np.array([], dtype=dtype)

    frame["window"] = cat([r.window for r in ok], "int64")
    frame["cutoff"] = cat([r.cutoff for r in ok], "datetime64[ns]")
    frame["ds"] = cat([r.ds for r in ok], "datetime64[ns]")
    for name in ("y", "yhat", "yhat_lower", "yhat_upper"):
        frame[name] = cat([getattr(r, name) for r in ok], "float64")
    for name in bands:
        frame[name] = cat([r.bands[name] for r in ok], "float64")
    for model in models[1:]:
        frame[forecast_column(model)] = cat([r.points[model] for r in ok], "float64")
    return frame


def metrics_frame(results: list[BacktestResult], id_cols: Sequence[str],
                  models: Sequence[str] = BACKTEST_MODELS,
                  levels: Sequence[float] = (), quantiles: Sequence[float] = ()
                  ) -> tuple[pd.DataFrame, dict[str, dict]]:
    """Per series and model, every metric (metrics.csv); and the overall figures per model.

    Every model is scored on the same points with the same MASE scale; only the first model has its interval
    scored (coverage, and with --level each level's coverage, with --quantile each quantile's share of actuals
    at or below it), the others being compared on their point forecasts.

    Returns:
        (frame, overall): frame has the key columns, model (score_label), engine, season_length, then n, mae,
        rmse, wape, smape, mase, mape, mape_skipped, coverage, coverage_<level> per level and below_q<percent>
        per quantile; overall maps each model's label to the same figures over all series.
    """
    ok = [r for r in results if r.status == "ok"]
    rows, overall = [], {}

    def cat(arrays: list[np.ndarray]) -> np.ndarray:
        return np.concatenate(arrays) if arrays else np.array([])

    for i, model in enumerate(models):
        label, series_mase = score_label(model), []
        for r in ok:
            yhat = r.yhat if i == 0 else r.points[model]
            bounds = (r.yhat_lower, r.yhat_upper) if i == 0 else (None, None)
            figures = metrics.score(r.y, yhat, *bounds, scale=r.scale)
            figures.update(_band_scores(r.y, [r.bands] if i == 0 else [], levels, quantiles))
            series_mase.append(figures["mase"])
            rows.append({**dict(zip(id_cols, r.key)), "model": label, "engine": r.engines.get(model, ""),
                         "season_length": r.season_length, **figures})
        yhat = cat([r.yhat for r in ok]) if i == 0 else cat([r.points[model] for r in ok])
        lower, upper = (cat([r.yhat_lower for r in ok]), cat([r.yhat_upper for r in ok])) if i == 0 else (None, None)
        overall[label] = metrics.overall(cat([r.y for r in ok]), yhat, lower, upper, series_mase)
        overall[label].update(_band_scores(cat([r.y for r in ok]), [r.bands for r in ok] if i == 0 else [],
                                           levels, quantiles))
    columns = list(id_cols) + ["model", "engine", "season_length", "n", *metrics.METRICS[:-2], "mape", "mape_skipped",
                               "coverage", *(coverage_label(level) for level in levels),
                               *(below_label(q) for q in quantiles)]
    frame = pd.DataFrame(rows, columns=columns)
    return frame, overall


def _band_scores(y: np.ndarray, bands: list[dict[str, np.ndarray]], levels: Sequence[float],
                 quantiles: Sequence[float]) -> dict[str, float]:
    """Each level's coverage (coverage_80: the share of actuals inside yhat_lower_80..yhat_upper_80) and each
    quantile's share of actuals at or below it (below_q90, which a calibrated 0.9 quantile keeps near 0.9), over
    the points whose bands are given in order (one dict per series, or one for a series alone); NaN for a model
    whose interval is not scored (no bands given)."""
    def column(name: str) -> np.ndarray:
        return np.concatenate([b[name] for b in bands])

    out = {}
    for level in levels:
        out[coverage_label(level)] = (metrics.coverage(y, column(lower_column(level)), column(upper_column(level)))
                                      if bands else np.nan)
    for q in quantiles:
        out[below_label(q)] = metrics.share_below(y, column(quantile_column(q))) if bands else np.nan
    return out


# it did before as it did then.
def _from_part(**fields: Any) -> BacktestResult:
    """A BacktestResult read back from a part file, whose JSON keeps the other models' forecasts and the first
    model's --level and --quantile columns as lists."""
    fields["points"] = {name: np.asarray(values, dtype="float64") for name, values in (fields["points"] or {}).items()}
    fields["bands"] = {name: np.asarray(values, dtype="float64") for name, values in (fields["bands"] or {}).items()}
    fields["engines"] = fields["engines"] or {}
    return BacktestResult(**fields)


BACKTEST_PARTS = PartSchema(
    _from_part,
    scalars={"status": pa.string(), "n_obs": pa.int64(), "season_length": pa.int64(), "fit_seconds": pa.float64(),
             "predict_seconds": pa.float64(), "cpu_seconds": pa.float64(), "worker": pa.string(),
             "stage": pa.string(), "error": pa.string(), "model": pa.string(), "verdict": pa.string(),
             "engine": pa.string()},
    arrays={"window": "int64", "cutoff": "datetime64[ns]", "ds": "datetime64[ns]", "y": "float64",
            "yhat": "float64", "yhat_lower": "float64", "yhat_upper": "float64", "scale": "float64"},
    json_fields=("points", "engines", "bands"),
)


class BacktestJob(Job):
    """`forecast backtest` as a job: every series' windows scored, metrics written."""

    kind = "backtest"
    map_stage = "backtest"
    schema = BACKTEST_PARTS

    def __init__(self, config: BacktestConfig) -> None:
        super().__init__(config.run)
        self.backtest = config

    def settings(self) -> dict:
        return self.backtest.to_dict()

    def load(self, source: Source) -> Loaded:
        table, series, notes, model = load_series(source, self.config, with_future=False)
        self.grid = _table_grid(table, series, self.config)
        return Loaded(table, series, notes, model)

    def work(self, source: Source, loaded: Loaded, items: list, chunks: list[list[int]]
             ) -> tuple[Sequence, Callable]:
        bt = self.backtest
        return items, partial(backtest_series, opts=loaded.model, windows=bt.windows, step=bt.effective_step,
                              season_length=bt.season_length, models=bt.models)

    def as_result(self, series: SeriesData, outcome: Any) -> BacktestResult:
        return _as_result(series, outcome)

    def finish(self, source: Source, loaded: Loaded, mapped: Mapped, out_dir: Path, clock: Clock,
               reporter: Reporter) -> Written:
        run, model = self.config, loaded.model
        by_index = {**mapped.done, **mapped.new}
        results = [by_index[i] for i in range(len(loaded.series)) if i in by_index]
        n_failed = sum(r.status != "ok" for r in results)
        status = mapped.status
        if status == "ok" and n_failed > run.max_failed_frac * len(loaded.series):
            status = "failed"
        with clock.stage("write"):
            scores, overall = metrics_frame(results, run.id_cols, self.backtest.models, model.levels,
                                            model.quantiles)
            files = {
                "metrics": write_table(scores, out_dir / "metrics.csv"),
                "backtest": write_table(backtest_frame(results, run.id_cols, self.backtest.models,
                                                       band_columns(model)), out_dir / "backtest.parquet"),
                "timings": write_table(timings_frame(results, run.id_cols), out_dir / "timings.csv"),
                "errors": write_table(errors_frame(results, run.id_cols), out_dir / "errors.csv"),
            }
        fields = {
            "series_ok": len(results) - n_failed,
            "series_failed": n_failed,
            "series_resumed": len(mapped.done),
            "horizon": model.horizon,
            "windows": self.backtest.windows,
            "step": self.backtest.effective_step,
            "table_freq": self.grid.freq,
            "freq_given": model.freq is not None,
            "series_own_freq": int(np.count_nonzero(~self.grid.on_grid)),
            "key_types": key_types(loaded.table, run.id_cols),
            "overall": overall,
            # which engine fitted the first model's windows, in series (none for a simple model)
            "engines": {str(e): int(n) for e, n in pd.Series([r.engine for r in results if r.status == "ok" and
                                                              r.engine], dtype=object).value_counts().items()},
            "aggregation": AGGREGATION,
        }
        # throughput counts only the work of this try, not what a resume took over
        return Written(status=status, fields=fields, files=files,
                       tally=Tally.of(results, list(mapped.new.values())))

    def json_ready(self, summary: dict) -> dict:
        return _json_ready(summary)


def run_backtest(path: TableInput, config: BacktestConfig, reporter: Reporter | None = None) -> RunResult:
    """Backtest every series of a long table; write metrics.csv, backtest.parquet, timings, errors, summary.

    Finished series are checkpointed as part files as a run's are, so an interrupted backtest is finished with
    config.run.resume; one job at a time holds the output directory; it runs on config.run.backend.

    Args:
        path: the input table: a path, a DataFrame, an Arrow table or a Source (see sources.open_source).
        config: the run's configuration, the windows and the models.
        reporter: told progress, notes and the "start", "failed" and "end" events; None tells nothing.

    Returns:
        A RunResult, as a run's; summary["overall"] holds the overall metrics of each model, in config.models'
        order (by score_label).

    Raises:
        InputError, ConfigError: before anything is written.
        RunLockedError: another job is writing into the output directory.
        BackendError: when workers cannot start.
    """
    return run_job(BacktestJob(config), path, reporter)


def _json_ready(value: Any) -> Any:
    """NaN (a metric that cannot be computed) as null, so summary.json stays valid JSON."""
    if isinstance(value, dict):
        return {k: _json_ready(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_ready(v) for v in value]
    if isinstance(value, float) and np.isnan(value):
        return None
    return value
