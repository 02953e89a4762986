"""Run configuration: defaults and value checks, no I/O.

`ModelOptions` is what a worker needs to fit one series; it is small and picklable. `ForecastConfig` is the
whole run: input columns, model options, parallelism and outputs.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, get_args

from .backends import backend_class, backend_names
from .errors import ConfigError
from .models import fallback_names, model_names
from .types import Engine

Growth = Literal["linear", "flat", "logistic"]
GROWTHS: tuple[Growth, ...] = get_args(Growth)
# Names Prophet gives its own columns; a regressor cannot take one of them.
_RESERVED = ("ds", "y", "cap", "floor", "t", "trend", "yhat", "yhat_lower", "yhat_upper", "holidays")
SeasonalityMode = Literal["additive", "multiplicative"]
SEASONALITY_MODES: tuple[SeasonalityMode, ...] = get_args(SeasonalityMode)
Toggle = Literal["auto", "on", "off"]
TOGGLES: tuple[Toggle, ...] = get_args(Toggle)
DuplicatePolicy = Literal["error", "sum", "mean", "last"]
DUPLICATE_POLICIES: tuple[DuplicatePolicy, ...] = get_args(DuplicatePolicy)
OutputFormat = Literal["parquet", "csv"]
OUTPUT_FORMATS: tuple[OutputFormat, ...] = get_args(OutputFormat)
FALLBACKS = ("none", *fallback_names())  # the --fallback choices: the models registered as fallbacks
# What a series triage calls intermittent gets (--intermittent-model; any fallback model may be chosen). TSB: in
# benchmarks/bench_intermittent.py's backtests of M5's intermittent series (docs/check-and-fallbacks.md) tsb and
# adida have the lowest MASE of the five models on both tables (tsb 0.813 and 0.913, adida 0.817 and 0.909;
# seasonal-naive 0.869 and 1.052, Prophet 0.857 and 1.071, croston-sba 1.001 and 1.092), their 80 % bands cover
# 76-84 %, and tsb costs half or less of adida (~5 % of a Prophet fit). Its demand probability decays through a
# run of zeros, where Croston's forecast stays put until the next sale: on the item that stopped selling
# (FOODS_3_008), 28 days into its run of zeros croston-sba forecasts 3.5 a day, tsb 0.10.
INTERMITTENT_MODEL = "tsb"
BACKEND_NAMES = backend_names()  # the CLI's choices; a backend registered later is still accepted below
ENGINES: tuple[Engine, ...] = get_args(Engine)
# What a backtest scores by default: Prophet, and the seasonal-naive baseline it has to beat (models/).
BACKTEST_MODELS = ("prophet", "seasonal-naive")
# A holidays file's own columns (sources/table.py read_holidays).
HOLIDAY_COLUMNS = ("holiday", "ds", "lower_window", "upper_window")
# How many series `forecast report` plots (--plots); each costs ~0.1 s and ~40 kB of base64.
REPORT_PLOTS = 6


def _choice(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(f"{name} must be one of {', '.join(allowed)}; got {value!r}")


@dataclass(frozen=True)
class ModelOptions:
    """How to fit and predict one series. Mirrors Prophet's own arguments where it has them."""

    horizon: int = 28
    freq: str | None = None
    growth: Growth = "linear"
    seasonality_mode: SeasonalityMode = "additive"
    yearly_seasonality: Toggle = "auto"
    weekly_seasonality: Toggle = "auto"
    daily_seasonality: Toggle = "auto"
    changepoint_prior_scale: float = 0.05
    seasonality_prior_scale: float = 10.0
    holidays: str | None = None
    interval_width: float = 0.8
    levels: tuple[float, ...] = ()  # more interval levels in percent (--level 80 --level 95), besides interval_width
    quantiles: tuple[float, ...] = ()  # quantile columns (--quantile 0.9), as fractions
    uncertainty_samples: int = 1000
    non_negative: bool = False
    include_history: bool = False
    seed: int | None = None
    regressors: tuple[str, ...] = ()
    cap_col: str | None = None
    floor_col: str | None = None
    # (holiday, ds as ISO text, lower_window, upper_window) rows from --holidays-file; read by io.read_holidays
    holiday_table: tuple[tuple[str, str, int, int], ...] = ()
    engine: Engine = "fast"  # fast (in-process exact MAP), stan (Prophet's optimizer, direct) or prophet (stock)

    def __post_init__(self) -> None:
        if self.horizon < 1:
            raise ConfigError(f"--horizon must be at least 1; got {self.horizon}")
        if self.growth == "logistic" and not self.cap_col:
            raise ConfigError("--growth logistic needs --cap-col (the column holding each time's capacity)")
        if self.growth != "logistic" and (self.cap_col or self.floor_col):
            raise ConfigError("--cap-col and --floor-col can only be used with --growth logistic")
        for name in self.regressors:
            if name in _RESERVED:
                raise ConfigError(f"--regressor {name!r} clashes with a column Prophet makes; rename the column")
        extras = list(self.regressors) + [c for c in (self.cap_col, self.floor_col) if c]
        repeated = sorted({c for c in extras if extras.count(c) > 1})
        if repeated:
            raise ConfigError(f"column {repeated[0]!r} is given more than once (--regressor/--cap-col/--floor-col)")
        _choice("--growth", self.growth, GROWTHS)
        _choice("--engine", self.engine, ENGINES)
        _choice("--seasonality-mode", self.seasonality_mode, SEASONALITY_MODES)
        for name in ("yearly", "weekly", "daily"):
            _choice(f"--{name}-seasonality", getattr(self, f"{name}_seasonality"), TOGGLES)
        if not 0 < self.interval_width < 1:
            raise ConfigError(f"--interval-width must be between 0 and 1; got {self.interval_width}")
        self._check_bands()
        if self.uncertainty_samples < 0:
            raise ConfigError(f"--uncertainty-samples must be 0 or more; got {self.uncertainty_samples}")
        simulated = self.horizon * self.uncertainty_samples
        if simulated > MAX_SIMULATED:  # Prophet simulates samples x steps at once: 8 bytes each, several arrays
            raise ConfigError(
                f"--horizon {self.horizon} with {self.uncertainty_samples} uncertainty samples simulates "
                f"{simulated:,} values per series (over {MAX_SIMULATED * 8 * 4 / 1e9:.1f} GB in each worker); "
                "shorten the horizon or lower --uncertainty-samples (0: no intervals)")
        for name in ("changepoint_prior_scale", "seasonality_prior_scale"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"--{name.replace('_', '-')} must be positive; got {getattr(self, name)}")
        if self.freq is not None:
            import pandas as pd

            try:
                offset = pd.tseries.frequencies.to_offset(self.freq)
            except ValueError:
                raise ConfigError(
                    f"--freq {self.freq!r} is not a pandas frequency; use e.g. D, W-SUN, MS, h"
                ) from None
            if offset.n <= 0:
                raise ConfigError(f"--freq {self.freq!r} does not step forward in time; use a positive step such "
                                  "as D, 2D, W-SUN, MS or h")


    def _check_bands(self) -> None:
        """--level and --quantile: each in its range, none twice (a column each); kept as tuples of floats, so a
        list given to forecast.forecast() reads as the CLI's repeated options do."""
        for name in ("levels", "quantiles"):
            values = getattr(self, name)
            object.__setattr__(self, name, (float(values),) if isinstance(values, (int, float)) else
                               tuple(float(v) for v in values))
        for level in self.levels:
            if not 0 < level < 100:
                raise ConfigError(f"--level is a percentage between 0 and 100 (80 for an 80 % interval); got {level:g}")
        for q in self.quantiles:
            if not 0 < q < 1:
                raise ConfigError(f"--quantile must be between 0 and 1 (0.9 for the 90th percentile); got {q:g}")
        for name, values in (("--level", self.levels), ("--quantile", self.quantiles)):
            if len(set(values)) < len(values):
                raise ConfigError(f"{name} names a value more than once: {', '.join(f'{v:g}' for v in values)}")


# The most values the interval simulation of one series may hold (horizon x uncertainty samples): Prophet's
# simulation, which the engines keep, holds them all at once, in several arrays of 8-byte floats.
MAX_SIMULATED = 50_000_000
# The longest --fit-timeout or --connect-timeout: the waits they set must stay within what the OS timers take.
MAX_FIT_TIMEOUT = 1e6


@dataclass(frozen=True)
class TriageRules:
    """Thresholds that send a series to Prophet (fit), to a simple forecast (fallback) or nowhere (skip).

    Args:
        min_obs: fewer non-missing values than this is a new series: fallback.
        max_zero_share: more zeros than this share of the values is intermittent demand: fallback.
        max_gap_share: more missing periods than this share of the series' range is gappy: fallback.
        stale_after: a last value more than this many periods (of the series' own frequency) before the
            table's last timestamp is a series that stopped: skip.
        allow_negative: fit series with negative values whatever their share.
        max_negative_share: a larger share of negative values (of the non-missing ones) is sent to fallback.
    """

    # 30 values: about a month of daily data, the least on which a weekly pattern can be told from noise. Below
    # it Prophet's automatic seasonalities are mostly off (yearly needs two years, weekly two weeks of daily data)
    # and what is left is a trend through noise, which a few points can send far outside the history; a run
    # applies it without --triage too (ForecastConfig.min_obs).
    min_obs: int = 30
    # Prophet's Gaussian noise is a poor model once most values are zero; half is the usual intermittency cut.
    max_zero_share: float = 0.5
    max_gap_share: float = 0.2
    # 28 periods: four weeks of a daily series without a value is a discontinued item, not a quiet spell.
    stale_after: float = 28
    allow_negative: bool = False
    # A tenth: returns (negative sales) now and then are part of retail demand and Prophet fits them as noise;
    # when more than one value in ten is negative the series is mostly something else (net returns, corrections).
    max_negative_share: float = 0.1

    def __post_init__(self) -> None:
        if self.min_obs < 1:
            raise ConfigError(f"--min-obs must be at least 1; got {self.min_obs}")
        for name in ("max_zero_share", "max_gap_share", "max_negative_share"):
            if not 0 <= getattr(self, name) <= 1:
                raise ConfigError(f"--{name.replace('_', '-')} must be between 0 and 1; got {getattr(self, name)}")
        if not self.stale_after >= 0:
            raise ConfigError(f"--stale-after must be 0 or more periods; got {self.stale_after}")


@dataclass(frozen=True)
class ForecastConfig:
    """One `forecast run`: where the table is, how to read it, how to fit, where to write.

    Args:
        id_cols: the column(s) whose values name a series, e.g. ("store", "item").
        time_col: the timestamp column.
        target_col: the value to forecast.
        duplicates: what to do with repeated (key, time) rows: "error", or combine by "sum", "mean", "last".
        model: the per-series model options.
        n_jobs: worker processes; -1 all usable cores, 1 in-process (no pool).
        chunks_per_job: chunks per worker; more chunks balance better, fewer cost less overhead.
        chunk_rows: the most rows of input one chunk carries (more chunks for a large table), which bounds what a
            worker receives and holds at once.
        block_rows: rows `forecast run` reads at a time (cut at series boundaries), so that the main process holds
            a block or two of the table, never all of it; 0 reads the table whole.
        out_dir: where outputs go; None means outputs/<UTC timestamp>.
        overwrite: replace a finished run in out_dir.
        output_format: "parquet" or "csv" for the forecasts table.
        max_failed_frac: the share of failed series still accepted with exit code 0.
        fallback: the model for a series that fails (and for one triage sends to fallback, but an intermittent
            one): "none" or a model registered as a fallback (FALLBACKS).
        triage: rules that decide per series between Prophet, a fallback and skipping; None fits every series.
        intermittent_model: the model (one of the fallbacks) that serves a series triage calls intermittent,
            whatever --fallback is.
        future_path: the table of future regressor / cap / floor values (same key and time columns).
        holidays_file: a table of holidays (holiday, ds, lower_window, upper_window); read into
            model.holiday_table by sources.load_series, or, with holidays_keys, into each series' own rows.
        holidays_keys: the holidays file's key columns (a region, a state, or the series' own key columns): each
            series gets the rows whose keys are its own, where each key is an id column or an input column
            constant per series; () applies every row to every series.
        holidays_col: the input column holding each series' country code (constant per series) for Prophet's
            built-in holidays of that country; a series with a blank gets none.
        backend: "local" (this machine's cores) or "dask" (a Dask cluster).
        scheduler: the Dask scheduler's address (tcp://host:8786); None with "dask" starts a local cluster.
        connect_timeout: seconds to wait for the Dask scheduler and its first worker.
        master: the Spark master URL (spark://host:7077, yarn, k8s://https://host:443, local[4]); None with
            "spark" takes the session's (spark-submit's --master, or local[*]).
        resume: finish the unfinished run in out_dir (same input and settings), fitting only what it lacks.
        workers_read: workers read their own series from the (Parquet) input instead of receiving them; the
            input path must be readable by every worker at the same path.
        fit_timeout: seconds one series may take; past it the series fails with reason timeout. Needs a
            worker process to stop, so it runs in one even with n_jobs=1. None: no limit.
        warm_start: the output directory of an earlier run with --engine stan or fast; each series starts from the
            parameters saved there (params.parquet). The stock engine ignores it.
        min_obs: a series with fewer non-missing values than this (but at least one) gets the fallback (the
            --fallback kind, seasonal-naive when none) instead of Prophet, with or without triage; 2 fits every
            series of two values or more. With triage, triage.min_obs applies (the CLI's one --min-obs sets both).
        run_id: the forecasts' run_id column, so nightly results appended to one table can be told apart; None
            means the output directory's name.
        query: the SELECT a database input (postgresql://..., sqlite:///..., duckdb:///...) runs; or
        db_table: the table a database input reads whole.
        to_db: a database (postgresql://..., sqlite:///... or duckdb:///...) that also receives the forecasts, into to_table, and
            each series' record, into to_table + "_runs"; None writes files only.
        to_table: the table of the forecasts in to_db.
    """

    id_cols: tuple[str, ...] = ("unique_id",)
    time_col: str = "ds"
    target_col: str = "y"
    duplicates: DuplicatePolicy = "error"
    model: ModelOptions = field(default_factory=ModelOptions)
    n_jobs: int = -1
    # 4 chunks per worker: a long series in one chunk cannot leave a core idle for more than ~1/4 of its share,
    # while the per-chunk overhead (one pickled message each way) stays negligible.
    chunks_per_job: int = 4
    # 1M rows: 16 MB of times and values per message to a worker; M5 scale (44M rows) makes 44 chunks
    chunk_rows: int = 1_000_000
    # 1M rows: about 500 series of 5 years of days a block. Reading, checking and handing out a block holds about
    # 100 bytes a row for a moment (measured on the M5 table: the main process peaked 110 MB above its imports at
    # 0.5M rows, 220 MB at 1M, 330 MB at 2M), whatever the table's size; 0: the whole table at once
    block_rows: int = 1_000_000
    out_dir: Path | None = None
    overwrite: bool = False
    output_format: OutputFormat = "parquet"
    max_failed_frac: float = 0.0
    fallback: str = "none"
    triage: TriageRules | None = None
    intermittent_model: str = INTERMITTENT_MODEL
    future_path: Path | None = None
    holidays_file: Path | None = None
    holidays_keys: tuple[str, ...] = ()
    holidays_col: str | None = None
    backend: str = "local"
    scheduler: str | None = None
    connect_timeout: float = 10.0
    master: str | None = None
    resume: bool = False
    fit_timeout: float | None = None
    workers_read: bool = False
    warm_start: Path | None = None  # a previous run's output directory: start each series from its parameters
    min_obs: int = TriageRules.min_obs
    run_id: str | None = None
    query: str | None = None
    db_table: str | None = None
    to_db: str | None = None
    to_table: str = "forecasts"

    @property
    def extra_cols(self) -> tuple[str, ...]:
        """Input columns read besides key, time and target: regressors, cap, floor."""
        m = self.model
        return tuple(m.regressors) + tuple(c for c in (m.cap_col, m.floor_col) if c)

    def run_id_in(self, out_dir: Path) -> str:
        """The forecasts' run_id of a run into `out_dir`: run_id, or the directory's name."""
        return self.run_id if self.run_id is not None else Path(out_dir).resolve().name

    @property
    def label_cols(self) -> tuple[str, ...]:
        """Input columns read as labels constant per series, besides the keys: the --holidays-key columns that are
        not id columns, and the --holidays-col."""
        cols = [c for c in (*self.holidays_keys, self.holidays_col) if c is not None and c not in self.id_cols]
        return tuple(dict.fromkeys(cols))

    def __post_init__(self) -> None:
        if not self.id_cols:
            raise ConfigError("at least one --id-col is needed")
        cols = list(self.id_cols) + [self.time_col, self.target_col] + list(self.extra_cols)
        repeated = sorted({c for c in cols if cols.count(c) > 1})
        if repeated:
            raise ConfigError(f"column {repeated[0]!r} is given for more than one role "
                              "(--id-col/--time-col/--target-col/--regressor/--cap-col/--floor-col)")
        _choice("--duplicates", self.duplicates, DUPLICATE_POLICIES)
        _choice("--format", self.output_format, OUTPUT_FORMATS)
        _choice("--fallback", self.fallback, FALLBACKS)
        _choice("--intermittent-model", self.intermittent_model, FALLBACKS[1:])
        if self.n_jobs == 0:
            raise ConfigError("--n-jobs must not be 0; use -1 for all cores or a positive count")
        if self.chunks_per_job < 1:
            raise ConfigError(f"chunks_per_job must be at least 1; got {self.chunks_per_job}")
        if self.chunk_rows < 1:
            raise ConfigError(f"chunk_rows must be at least 1; got {self.chunk_rows}")
        if self.block_rows < 0:
            raise ConfigError(f"block_rows must be 0 (the whole table at once) or more; got {self.block_rows}")
        if not 0 <= self.max_failed_frac <= 1:
            raise ConfigError(f"--max-failed-frac must be between 0 and 1; got {self.max_failed_frac}")
        _choice("--backend", self.backend, backend_names())
        backend_class(self.backend).check_config(self)  # what that backend cannot do (backends/<name>.py)
        if not 0 < self.connect_timeout <= MAX_FIT_TIMEOUT:  # inf or nan would reach Dask's timers
            raise ConfigError(f"--connect-timeout must be a positive number of seconds up to {MAX_FIT_TIMEOUT:,.0f}; "
                              f"got {self.connect_timeout}")
        if self.resume and self.overwrite:
            raise ConfigError("--resume and --overwrite cannot be used together: resume keeps the run, overwrite "
                              "starts it again")
        if self.fit_timeout is not None and not 0 < self.fit_timeout <= MAX_FIT_TIMEOUT:
            raise ConfigError(f"--fit-timeout must be a positive number of seconds up to {MAX_FIT_TIMEOUT:,.0f} "
                              f"(about 11 days); got {self.fit_timeout}; leave it out for no timeout")
        if self.workers_read and self.extra_cols:
            raise ConfigError("--workers-read cannot be used with --regressor, --cap-col or --floor-col yet: their "
                              "future values are read by the client")
        if self.min_obs < 1:
            raise ConfigError(f"--min-obs must be at least 1; got {self.min_obs}")
        if self.query is not None and self.db_table is not None:
            raise ConfigError("give --query or --table, not both: the query says what to read")
        if self.to_db is not None:
            from .db import dialect, masked, table_name

            if dialect(self.to_db) is None:
                raise ConfigError(f"--to-db {masked(self.to_db)}: not a database URI; give postgresql://USER@HOST:"
                                  "PORT/DB or sqlite:///path/to/file.db")
            table_name(self.to_table, "--to-table")
        self._check_holidays()

    def _check_holidays(self) -> None:
        """The checks of --holidays-key and --holidays-col, which read labels from the input."""
        if isinstance(self.holidays_keys, str):  # tuple("region") would be its letters
            raise ConfigError(f"holidays_keys takes a tuple of column names, e.g. ({self.holidays_keys!r},)")
        if self.holidays_keys and self.holidays_file is None:
            raise ConfigError("--holidays-key names the key column of a holidays file: pass --holidays-file too")
        if len(set(self.holidays_keys)) < len(self.holidays_keys):
            raise ConfigError(f"--holidays-key names a column more than once: {', '.join(self.holidays_keys)}")
        for col in self.holidays_keys:
            if col in HOLIDAY_COLUMNS:  # the file's own columns cannot also be its key
                raise ConfigError(f"--holidays-key {col!r} is one of the holidays file's own columns "
                                  f"({', '.join(HOLIDAY_COLUMNS)}); name the key column otherwise")
        if self.holidays_col is not None and self.model.holidays:
            raise ConfigError("--holidays and --holidays-col both give the country: use --holidays for one country "
                              "for every series, or --holidays-col for each series' own")
        roles = {self.time_col: "--time-col", self.target_col: "--target-col",
                 **{c: "--regressor/--cap-col/--floor-col" for c in self.extra_cols}}
        labels = [(c, "--holidays-key") for c in self.holidays_keys] + [(self.holidays_col, "--holidays-col")]
        for col, flag in labels:
            if col in roles:
                raise ConfigError(f"column {col!r} is given as {flag} and {roles[col]}; {flag} names a column of "
                                  "labels, such as a region or a country code")

    def to_dict(self) -> dict:
        """The configuration as plain JSON-ready values, for summary.json."""
        d = dataclasses.asdict(self)
        d["id_cols"] = list(self.id_cols)
        d["holidays_keys"] = list(self.holidays_keys)
        d["out_dir"] = str(self.out_dir) if self.out_dir is not None else None
        for name in ("future_path", "holidays_file"):
            d[name] = str(d[name]) if d[name] is not None else None
        d["warm_start"] = str(self.warm_start) if self.warm_start is not None else None
        if self.to_db is not None:  # never a password in summary.json or a log
            from .db import masked

            d["to_db"] = masked(self.to_db)
        return d


@dataclass(frozen=True)
class BacktestConfig:
    """One `forecast backtest`: a run's configuration plus the rolling-origin windows.

    Args:
        run: input columns, model options (model.horizon is each window's length), parallelism, outputs.
        windows: how many forecast origins, the last one `horizon` steps before each series' end.
        step: rows between consecutive origins; None means the horizon (windows that do not overlap).
        season_length: the seasonal-naive baseline's period in steps; None picks it from the frequency
            (7 for daily, 24 hourly, 52 weekly, 12 monthly, 4 quarterly, else 1).
        models: the registered models to score (models.model_names()), the one under test first: its interval
            is scored too, the others' point forecasts only.
    """

    run: ForecastConfig = field(default_factory=ForecastConfig)
    windows: int = 3
    step: int | None = None
    season_length: int | None = None
    models: tuple[str, ...] = BACKTEST_MODELS

    def __post_init__(self) -> None:
        if self.windows < 1:
            raise ConfigError(f"--windows must be at least 1; got {self.windows}")
        if self.step is not None and self.step < 1:
            raise ConfigError(f"--step must be at least 1; got {self.step}")
        if self.season_length is not None and self.season_length < 1:
            raise ConfigError(f"--season-length must be at least 1; got {self.season_length}")
        if not self.models:
            raise ConfigError("--model needs at least one model")
        for name in self.models:
            _choice("--model", name, model_names())
        if len(set(self.models)) < len(self.models):
            raise ConfigError(f"--model names a model more than once: {', '.join(self.models)}")

    @property
    def effective_step(self) -> int:
        return self.step if self.step is not None else self.run.model.horizon

    def to_dict(self) -> dict:
        """The configuration as plain JSON-ready values, for summary.json."""
        d = self.run.to_dict()
        d.update(windows=self.windows, step=self.effective_step, season_length=self.season_length,
                 models=list(self.models))
        return d
