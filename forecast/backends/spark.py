"""`--backend spark`: a run on a Spark cluster, where Spark reads, groups and forecasts the table on its executors.

Not an executor for core.py's map: a map hands each worker series this process has read, and a table on Spark
must never pass the driver. So the class has the `Backend` protocol's checks and description, and a
`run_forecast` that `runner.run_forecast` hands the whole run to (forecast/spark.py, beside runner.py). A
backtest, which maps windows of series this process holds, is refused with one line.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator

from ..errors import BackendError, ConfigError

if TYPE_CHECKING:
    from ..config import ForecastConfig
    from ..job import RunResult
    from ..progress import Reporter
    from ..sources import TableInput
    from .base import Chunk, Labelled, WorkerSetup


class SparkBackend:
    """A Spark cluster (config.master, or the session's); see the module docstring."""

    name = "spark"
    n_jobs = 0
    starts_in_background = False
    uses_local_cores = False

    @classmethod
    def check_config(cls, config: ForecastConfig) -> None:
        """What a run on Spark cannot honour yet: each needs the table or files on the driver, or a process the
        driver stops."""
        refused = {
            "--scheduler": (config.scheduler is not None, "a Dask option; a Spark cluster is --master"),
            "--triage": (config.triage is not None, "it profiles the whole table in one process"),
            "--resume": (config.resume, "Spark retries lost tasks itself; run again with --overwrite"),
            "--workers-read": (config.workers_read, "Spark's executors always read the input themselves"),
            "--warm-start": (config.warm_start is not None, "it reads an earlier run's parameters on the driver"),
            "--fit-timeout": (config.fit_timeout is not None, "a Spark task cannot be stopped per series"),
            "--regressor/--cap-col/--floor-col": (bool(config.extra_cols), "their --future table is not joined "
                                                  "on Spark yet"),
            "--holidays-file": (config.holidays_file is not None, "it is read on the driver; use --holidays"),
            "--format csv": (config.output_format != "parquet", "Spark writes Parquet datasets"),
            "--level/--quantile": (bool(config.model.levels or config.model.quantiles), "the band columns are not "
                                   "in a Spark run's schema yet"),
            "--holidays-col": (config.holidays_col is not None, "per-series countries are not read on Spark yet"),
            "--query/--table": (config.query is not None or config.db_table is not None,
                                "Spark reads files (Parquet, CSV); a database table through its JDBC reader is "
                                "not wired yet"),
            "--to-db": (config.to_db is not None, "Spark writes Parquet datasets in --out"),
        }
        for option, (given, why) in refused.items():
            if given:
                raise ConfigError(f"{option} cannot be used with --backend spark: {why}")

    @classmethod
    def from_config(cls, config: ForecastConfig, setup: WorkerSetup, notify: Callable[[str], None] | None = None
                    ) -> SparkBackend:
        """Only `forecast run` runs on Spark (see run_forecast); anything else that asks for a map is refused."""
        raise ConfigError("--backend spark runs `forecast run` only; run backtests with --backend local or dask")

    @staticmethod
    def run_forecast(path: TableInput, config: ForecastConfig, reporter: Reporter | None = None) -> RunResult:
        """The whole run on Spark (forecast/spark.py's run_spark).

        Raises:
            BackendError: pyspark is not installed.
        """
        try:
            import pyspark  # noqa: F401
        except ImportError:
            raise BackendError("--backend spark needs pyspark: pip install 'forecast[spark]' (and Java 17; see "
                               "docs/scaling.md)") from None
        from ..spark import run_spark

        return run_spark(path, config, reporter)

    def __enter__(self) -> SparkBackend:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def info(self) -> dict:
        return {"name": self.name, "workers": 0, "threads": 0}

    def map(self, func: Callable[[Any], Any], chunks: Iterable[Chunk]) -> Iterator[Labelled]:
        raise ConfigError("--backend spark runs `forecast run` only")
