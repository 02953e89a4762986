"""The per-series types every layer shares: a series, a model's forecast of it, and what a run records of it.

Plain dataclasses of numpy arrays: small and picklable, so they cross process and cluster boundaries as they are.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

# What became of one series: forecast by its model, served by a fallback model, not forecast, or left out by triage.
Status = Literal["ok", "failed", "fallback", "skipped"]
# Where a series' problem was found (or why it was sent to a fallback before any fit: "triage", "min-obs"); a
# backtest adds "backtest" (too few rows for its windows).
Stage = Literal["", "validate", "frequency", "future", "fit", "predict", "triage", "min-obs", "worker", "internal",
                "backtest"]

# What --triage decided for a series ("" when the run did not triage).
Verdict = Literal["", "fit", "fallback", "skip"]

# The engines that fit Prophet's model (see engines/): a result's engine, or "" for a model without engines.
Engine = Literal["fast", "stan", "prophet"]

# The stages of a series sent to a fallback on purpose, before any fit: by --triage, or for having fewer values
# than --min-obs. Such a series did not fail (errors.csv does not list it; timings.csv has its reason).
SENT_STAGES: tuple[Stage, ...] = ("triage", "min-obs")

# The fields of an engine's fitted parameters (engines.params_dict, a result's `params`): floats on Prophet's
# scaled data, then arrays (the changepoints' deltas, the features' betas). What params.parquet holds per series.
PARAM_FLOATS = ("y_scale", "k", "m", "sigma_obs")
PARAM_ARRAYS = ("delta", "beta")


class SeriesProblem(Exception):
    """A problem of one series; carries the stage it was found at."""

    def __init__(self, stage: Stage, reason: str) -> None:
        super().__init__(reason)
        self.stage = stage


@dataclass
class SeriesData:
    """One series as plain arrays: its key (one value per id column), sorted timestamps and values.

    `extra` holds the regressor / cap / floor columns over the history (by input column name); `future_ds` and
    `future_extra` their values past the history, from --future (None and empty when there is no such file).
    `holiday_table` and `country` are its own holidays when they differ between series (None: the run's).
    """

    key: tuple
    ds: np.ndarray  # datetime64[ns], ascending, unique
    y: np.ndarray  # float64, NaN where missing
    extra: dict[str, np.ndarray] = field(default_factory=dict)
    future_ds: np.ndarray | None = None
    future_extra: dict[str, np.ndarray] = field(default_factory=dict)
    warm: dict | None = None  # parameters of a previous run's fit of this series (--warm-start), engines only
    freq: str | None = None  # the table's frequency when the series lies on its grid; None: infer its own
    table_freq: str | None = None  # the table's frequency, on its grid or not (for the reason of an off-grid one)
    # Its own holidays, where they differ between series: the rows of a --holidays-file keyed by --holidays-key
    # that are this series' (holiday, ISO date, lower_window, upper_window; series of one region share one
    # tuple), and its country from --holidays-col ("" none). None: the run's (ModelOptions.holiday_table, .holidays).
    holiday_table: tuple[tuple[str, str, int, int], ...] | None = None
    country: str | None = None


@dataclass
class Forecast:
    """One model's forecast of one series at the dates it was asked for; bounds are NaN without intervals."""

    ds: np.ndarray  # datetime64[ns]
    yhat: np.ndarray
    yhat_lower: np.ndarray
    yhat_upper: np.ndarray
    model: str  # the model that served it: "prophet", "prophet:reduced", "naive" (a seasonal-naive short of a season)
    fit_seconds: float = 0.0
    predict_seconds: float = 0.0
    engine: Engine | Literal[""] = ""  # empty for a model without engines
    params: dict | None = None  # the engines' fitted parameters (engines.params_dict), for --warm-start
    note: str = ""  # why the model served differs from the one asked for (fewer terms, no whole season); else ""
    # --level and --quantile columns (levels.band_columns: yhat_lower_80, yhat_q90, ...), from the same draws or
    # errors as yhat_lower and yhat_upper; empty when none were asked for
    bands: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass
class SeriesResult:
    """What fitting one series produced. Small and picklable; the forecast is kept as arrays."""

    key: tuple
    status: Status
    n_obs: int
    ds: np.ndarray = field(default_factory=lambda: np.array([], dtype="datetime64[ns]"))
    yhat: np.ndarray = field(default_factory=lambda: np.array([]))
    yhat_lower: np.ndarray = field(default_factory=lambda: np.array([]))
    yhat_upper: np.ndarray = field(default_factory=lambda: np.array([]))
    fit_seconds: float = 0.0
    predict_seconds: float = 0.0
    cpu_seconds: float = 0.0
    worker: str = ""
    stage: Stage = ""
    error: str = ""
    model: str = ""  # what made the forecast: "prophet", "fallback:naive", ...; empty when there is none
    verdict: Verdict = ""  # the triage verdict when the run triaged its series
    engine: Engine | Literal[""] = ""  # the engine that fitted the series (see engines/)
    params: dict | None = None  # the stan/fast engines' fitted parameters (engines.params_dict), for --warm-start
    cutoff: Any = None  # the series' last timestamp (the forecast starts after it); set when the run assembles
    bands: dict[str, np.ndarray] = field(default_factory=dict)  # the forecast's --level and --quantile columns
