"""`forecast.forecast(df, ...)`: a notebook's way in. A table in memory (or a file) in, a DataFrame of forecasts
out, by the same run as `forecast run`: the same checks, engines, seeds and per-series records, and no files
unless asked for (`out=`).

    import forecast
    fc = forecast.forecast(df, horizon=28, id_cols=["store", "item"], time_col="date", target_col="sales")
    records = forecast.forecast_with_records(df, horizon=28, id_cols=["store", "item"])
    records.timings[records.timings["status"] != "ok"]
"""

from __future__ import annotations

import dataclasses
import difflib
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import pandas as pd

from .config import ForecastConfig, ModelOptions
from .errors import ConfigError
from .sources import TableInput

if TYPE_CHECKING:
    from .progress import Reporter

# Set by `forecast` itself from its own arguments, not through **options.
_OWN = {"horizon", "id_cols", "time_col", "target_col", "model", "out_dir"}


@dataclass
class ForecastRecords:
    """A run's forecasts and its per-series records, as `forecast run` writes them to forecasts, timings.csv,
    errors.csv and summary.json."""

    # key columns, ds, yhat, yhat_lower, yhat_upper (then levels=/quantiles= columns), model, cutoff, run_id
    forecasts: pd.DataFrame
    timings: pd.DataFrame  # one row per series: n_obs, status, seconds, worker, error, model, verdict, engine
    errors: pd.DataFrame  # the series Prophet did not serve: key columns, stage, reason
    summary: dict
    out_dir: Path | None = None  # where the files are, with `out=`; None when none were kept


def _config(horizon: int, id_cols: Sequence[str] | str, time_col: str, target_col: str, out: Path | str | None,
            options: dict[str, Any]) -> ForecastConfig:
    """The run's configuration, each option by its ForecastConfig or ModelOptions field name.

    Raises:
        ConfigError: an option that is neither's field, or one set by its own argument.
    """
    run_fields = {f.name for f in dataclasses.fields(ForecastConfig)} - _OWN
    model_fields = {f.name for f in dataclasses.fields(ModelOptions)} - _OWN
    for name in options:
        if name in _OWN:
            raise ConfigError(f"forecast(): {name!r} is set by its own argument (horizon, id_cols, time_col, "
                              "target_col, out), not as an option")
        if name not in run_fields | model_fields:
            close = difflib.get_close_matches(name, sorted(run_fields | model_fields), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ConfigError(f"forecast(): unknown option {name!r}{hint} (options are the fields of "
                              "ForecastConfig and ModelOptions)")
    model = ModelOptions(horizon=horizon, **{k: v for k, v in options.items() if k in model_fields})
    ids = (id_cols,) if isinstance(id_cols, str) else tuple(id_cols)
    return ForecastConfig(id_cols=ids, time_col=time_col, target_col=target_col, model=model,
                          out_dir=Path(out) if out is not None else None,
                          **{k: v for k, v in options.items() if k in run_fields})


def forecast_with_records(df: TableInput, horizon: int = ModelOptions.horizon,
                          id_cols: Sequence[str] | str = ForecastConfig.id_cols, time_col: str = "ds",
                          target_col: str = "y", *, out: Path | str | None = None,
                          reporter: Reporter | None = None, **options: Any) -> ForecastRecords:
    """Forecast every series of a long table, and keep the run's per-series records.

    Args:
        df: the long table: a pandas DataFrame, a pyarrow Table, or a file path (as `forecast run` reads).
        horizon: steps to forecast past each series' last timestamp.
        id_cols: the key column(s).
        time_col: the timestamp column.
        target_col: the value column.
        out: a directory to write the run's files to, as `forecast run --out` does; None: no files are left.
        reporter: told progress, one-line notes (also in summary["notes"]) and events (see progress.Reporter;
            progress.make_progress(quiet=False) draws a bar); None tells nothing.
        **options: any other setting, by its ForecastConfig or ModelOptions field name (seed=1, engine="stan",
            fallback="seasonal-naive", n_jobs=4, freq="W-SUN", levels=[80, 95], quantiles=[0.5, 0.9], ...).

    Returns:
        The forecasts and records (see `ForecastRecords`).

    Raises:
        InputError: the table cannot be used; one line naming "DataFrame" (or the file), the column and the row.
        ConfigError: an unknown or inconsistent option.
        KeyboardInterrupt: the run was interrupted (with `out=`, `resume=True` finishes it).
    """
    from .outputs import default_out_dir, read_run_dir
    from .runner import run_forecast

    config = _config(horizon, id_cols, time_col, target_col, out, options)
    scratch = None
    if out is None:  # the run writes its outputs as always, here, and they are read back and removed
        scratch = tempfile.mkdtemp(prefix="forecast-")
        # a run is named after its output directory; this one has none to speak of: its UTC time, as a CLI run's
        run_id = config.run_id_in(default_out_dir())
        config = dataclasses.replace(config, out_dir=Path(scratch), output_format="parquet", run_id=run_id)
    try:
        result = run_forecast(df, config, reporter)
        if result.summary["status"] == "interrupted":
            raise KeyboardInterrupt
        run = read_run_dir(result.out_dir)
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
    forecasts = run.forecasts if run.forecasts is not None else pd.DataFrame()
    return ForecastRecords(forecasts=forecasts, timings=run.timings, errors=run.errors, summary=result.summary,
                           out_dir=None if scratch is not None else result.out_dir)


def forecast(df: TableInput, horizon: int = ModelOptions.horizon,
             id_cols: Sequence[str] | str = ForecastConfig.id_cols, time_col: str = "ds", target_col: str = "y",
             *, out: Path | str | None = None, **options: Any) -> pd.DataFrame:
    """Forecast every series of a long table (the way statsforecast's `forecast(df=...)` does).

    The same run as `forecast run`: the same checks, engines, seeds and fallbacks. For the per-series records
    (timings, errors, the summary) use `forecast_with_records`, which takes the same arguments.

    Args:
        df: the long table: a pandas DataFrame, a pyarrow Table, or a file path.
        horizon: steps to forecast past each series' last timestamp.
        id_cols: the key column(s).
        time_col: the timestamp column.
        target_col: the value column.
        out: a directory to write the run's files to; None: no files are left.
        **options: any other setting, by its ForecastConfig or ModelOptions field name.

    Returns:
        The forecasts: key columns, ds, yhat, yhat_lower, yhat_upper (then with levels=[80, 95] yhat_lower_80,
        yhat_upper_80, ..., with quantiles=[0.9] yhat_q90), model, cutoff, run_id.

    Raises:
        InputError, ConfigError, KeyboardInterrupt: see `forecast_with_records`.
    """
    return forecast_with_records(df, horizon, id_cols, time_col, target_col, out=out, **options).forecasts
