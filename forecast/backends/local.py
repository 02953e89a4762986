"""The "local" backend: this machine's cores, as a pool of worker processes or, for one job, this process alone."""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

from ..core import effective_n_jobs
from ..errors import ConfigError
from .process import ProcessBackend
from .sequential import SequentialBackend

if TYPE_CHECKING:
    from ..config import ForecastConfig
    from .base import Backend, WorkerSetup


class LocalBackend:
    """Chooses between the process pool and this process; not a backend itself, only what `--backend local` opens."""

    name = "local"
    uses_local_cores = True

    @classmethod
    def check_config(cls, config: ForecastConfig) -> None:
        """A scheduler's or master's address is a cluster's option: here it can only be a mistake."""
        if config.scheduler is not None:
            raise ConfigError("--scheduler can only be used with --backend dask")
        if config.master is not None:
            raise ConfigError("--master can only be used with --backend spark")

    @classmethod
    def from_config(cls, config: ForecastConfig, setup: WorkerSetup,
                    notify: Callable[[str], None] | None = None) -> Backend:
        """The process pool for config.n_jobs workers; this process alone for one job (a pool would only add
        its start-up), except with a fit timeout, which only stopping a worker process can enforce."""
        if config.fit_timeout is None and effective_n_jobs(config.n_jobs) == 1:
            return SequentialBackend.from_config(config, setup, notify)
        return ProcessBackend.from_config(config, setup, notify)
