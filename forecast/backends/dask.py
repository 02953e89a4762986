"""The dask backend: chunks as tasks on a Dask cluster (see base.py for what every backend does).

dask and distributed are imported only when a DaskBackend is made, and this module only when `--backend dask` is
asked for (the registry names it by string), so forecast installs and runs without them.
"""

from __future__ import annotations

import asyncio
import itertools
import os
from types import ModuleType
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator

from ..core import Failed, effective_n_jobs
from ..errors import BackendError, BackendLostError, ConfigError
from .base import Chunk, Labelled, WorkerSetup, call_item

if TYPE_CHECKING:
    import distributed

    from ..config import ForecastConfig

_DASK_MISSING = "the dask backend needs dask.distributed: pip install 'forecast[dask]'"
# Name under which the worker initializer is registered; registering again (the next run) replaces it.
_PLUGIN_NAME = "forecast-init"


def _import_distributed() -> ModuleType:
    try:
        import distributed
    except ImportError:
        raise BackendError(_DASK_MISSING) from None
    return distributed


def _first_line(e: BaseException) -> str:
    return (f"{type(e).__name__}: {e}".splitlines() or [type(e).__name__])[0]


def _run_chunk(func: Callable, chunk: Chunk) -> tuple[str, list[tuple[int, Any]]]:
    """Run on a Dask worker: func on every item of one chunk, an item's exception becoming its `Failed`; with the
    worker's address, the name the dashboard and the scheduler's logs use for it."""
    from distributed import get_worker

    return get_worker().address, [(index, call_item(func, item)) for index, item in chunk]


def _setup_worker(initializer: Callable | None, initargs: tuple, dask_worker: distributed.Worker | None = None
                  ) -> None:
    """Prepare one Dask worker: a temporary directory of its own, then the initializer.

    The directory is inside the worker's Dask scratch space, which Dask removes when the worker closes (and purges
    at the next start after a crash); it becomes TMPDIR before the initializer runs. `dask_worker` is filled in
    by `Client.run`; a plugin passes its worker.
    """
    import tempfile

    if dask_worker is None:
        from distributed import get_worker

        dask_worker = get_worker()
    tmp = os.path.join(dask_worker.local_directory, "forecast-tmp")
    os.makedirs(tmp, exist_ok=True)
    os.environ["TMPDIR"] = tmp
    tempfile.tempdir = tmp
    if initializer is not None:
        initializer(*initargs)


def _init_plugin(initializer: Callable | None, initargs: tuple) -> distributed.WorkerPlugin:
    """A WorkerPlugin running `_setup_worker` once in every worker that joins or restarts after the run started."""
    from distributed import WorkerPlugin

    class _Init(WorkerPlugin):
        name = _PLUGIN_NAME

        def setup(self, worker: distributed.Worker) -> None:
            _setup_worker(initializer, initargs, worker)

    return _Init()


class DaskBackend:
    """Chunks as tasks on a Dask cluster: a running scheduler, or a LocalCluster started for the run.

    Each chunk is one `client.submit` whose arguments hold that chunk's items, so the client never builds one graph
    holding the whole table and each chunk's data is sent once; the scheduler keeps the task so it can run it again.
    Results are reported per chunk as chunks finish (`distributed.as_completed`).

    Faults: when a worker dies (killed, out of memory), the scheduler runs its chunk again on another worker; a
    chunk that has killed more workers than the scheduler allows (`distributed.scheduler.allowed-failures`, 3 by
    default) comes back as KilledWorker, and its items are then submitted once more one by one, so only the item
    that kills its workers is recorded as failed ("worker-died"), as with the process backend.

    Args:
        n_jobs: workers of the LocalCluster started when no scheduler is given (one thread each); -1 for all
            usable cores. Ignored with a scheduler: the cluster's own threads are used.
        initializer: a module-level function every worker runs once before any work (see `_init_plugin`).
        initargs: its arguments.
        scheduler: the scheduler's address, e.g. tcp://host:8786; None starts a LocalCluster.
        connect_timeout: seconds to wait for the scheduler, and for at least one worker.
        notify: called with one-line messages for the user (the LocalCluster's dashboard link).
    """

    name = "dask"
    starts_in_background = False  # entering connects and sets up every worker before it returns

    def __init__(self, n_jobs: int = -1, initializer: Callable | None = None, initargs: tuple = (),
                 scheduler: str | None = None, connect_timeout: float = 10.0,
                 notify: Callable[[str], None] | None = None) -> None:
        _import_distributed()
        self._local_workers = effective_n_jobs(n_jobs)
        self._initializer, self._initargs = initializer, initargs
        self._scheduler = scheduler
        self._timeout = connect_timeout
        self._notify = notify or (lambda message: None)
        self._cluster = None
        self._client = None
        self._saved_levels: dict[str, int] = {}
        self.n_jobs = 0
        self.workers: dict[str, int] = {}  # address -> threads, when the run started

    uses_local_cores = False

    @classmethod
    def check_config(cls, config: ForecastConfig) -> None:
        """A per-series timeout needs a worker process this process can stop; a Dask worker's is not ours."""
        if config.fit_timeout is not None:
            raise ConfigError("--fit-timeout works with --backend local only: a Dask worker cannot be stopped "
                              "mid-task from here")
        if config.master is not None:
            raise ConfigError("--master can only be used with --backend spark; a Dask cluster is --scheduler")

    @classmethod
    def from_config(cls, config: ForecastConfig, setup: WorkerSetup,
                    notify: Callable[[str], None] | None = None) -> "DaskBackend":
        """The cluster at config.scheduler, or a LocalCluster of config.n_jobs workers when it is None."""
        # a Dask worker may be on another machine: it makes its own temp dir (see _setup_worker)
        return cls(config.n_jobs, setup.func, setup.initargs(local_processes=False), scheduler=config.scheduler,
                   connect_timeout=config.connect_timeout, notify=notify)

    def __enter__(self) -> "DaskBackend":
        import logging

        # distributed's own logs (a client warning "Couldn't gather 1 keys, rescheduling" when a worker dies, its
        # error log and tracebacks when the scheduler is lost) are about faults the scheduler is handling or that
        # the run reports in one line of its own; they would also break --log-format json's one object per line
        names = ["distributed"] + [n for n in logging.root.manager.loggerDict if n.startswith("distributed.")]
        self._saved_levels = {n: logging.getLogger(n).level for n in names}
        for n in names:
            logging.getLogger(n).setLevel(logging.CRITICAL + 1)
        try:
            self._connect()
            self._check_workers()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
        if self._cluster is not None:
            self._cluster.close()
            self._cluster = None
        import logging

        for name, level in self._saved_levels.items():
            logging.getLogger(name).setLevel(level)

    def _connect(self) -> None:
        import logging

        from distributed import Client, LocalCluster

        if self._scheduler is None:
            # one single-thread process per core: Prophet holds the GIL between Stan calls, so threads would not help
            self._cluster = LocalCluster(n_workers=self._local_workers, threads_per_worker=1, processes=True,
                                         silence_logs=logging.ERROR)
            self._client = Client(self._cluster)
            link = self._cluster.dashboard_link or "none (install bokeh for the Dask dashboard)"
            self._notify(f"started a local Dask cluster, {self._local_workers} worker(s) x 1 thread; "
                         f"dashboard: {link}")
            return
        try:
            self._client = Client(self._scheduler, timeout=self._timeout)
        except (OSError, TimeoutError) as e:
            raise BackendError(
                f"cannot reach the Dask scheduler at {self._scheduler} within {self._timeout:g} s "
                f"({type(e).__name__}); check that it is running and the address (--scheduler or FORECAST_SCHEDULER)"
            ) from e
        except ValueError as e:  # a malformed address
            raise BackendError(f"--scheduler {self._scheduler!r} is not a Dask address such as tcp://host:8786: "
                               f"{e}") from e

    def _check_workers(self) -> None:
        """Wait for a worker, check every worker's environment, then initialise them all."""
        client = self._client
        try:
            client.wait_for_workers(1, timeout=self._timeout)
        except TimeoutError:
            raise BackendError(
                f"the Dask scheduler at {client.scheduler.address} has no workers after {self._timeout:g} s; "
                f"start some with: dask worker {client.scheduler.address} --nthreads 1"
            ) from None
        # first on the workers there are, by name, so a worker that lacks forecast or prophet (or has another
        # version of forecast) is named in the error; then as a plugin, for workers that join or restart later
        answers = client.run(_setup_worker, self._initializer, self._initargs, on_error="return")
        for address, answer in sorted(answers.items()):
            if isinstance(answer, BaseException):
                raise BackendError(
                    f"Dask worker {address} cannot run forecast: {_first_line(answer)}; "
                    "install the same environment (forecast, prophet) on every worker"
                ) from None
        client.register_plugin(_init_plugin(self._initializer, self._initargs), name=_PLUGIN_NAME)
        self.workers = {address: w["nthreads"] for address, w in client.scheduler_info()["workers"].items()}
        self.n_jobs = max(1, sum(self.workers.values()))

    def info(self) -> dict:
        """What the summary says about the cluster: scheduler, workers and threads when the run started."""
        return {"name": self.name, "scheduler": self._client.scheduler.address if self._client else None,
                "local_cluster": self._cluster is not None, "workers": len(self.workers),
                "threads": sum(self.workers.values())}

    def _failure(self, e: BaseException) -> BackendError:
        """The error for a chunk the cluster could not run: lost (the scheduler gone, the connection cut: run
        again once it is back) or broken."""
        lost = (OSError, TimeoutError, asyncio.CancelledError)
        if isinstance(e, lost) or self._client is None or self._client.status != "running":
            address = self._client.scheduler.address if self._client is not None else self._scheduler
            return BackendLostError(f"lost the Dask scheduler at {address} mid-run ({_first_line(e)})")
        return BackendError(f"the Dask cluster could not run a chunk: {_first_line(e)}")

    def map(self, func: Callable, chunks: Iterable[Chunk]) -> Iterator[Labelled]:
        from distributed import KilledWorker, as_completed

        pending: dict[Any, Chunk] = {}
        feed = (c for c in chunks if c)
        ahead = max(4, 2 * self.n_jobs)  # chunks submitted ahead of the workers: enough to keep them busy, while
        submitted = 0  # a caller that makes chunks as it reads holds only these

        def submit(chunk: Chunk, priority: int) -> distributed.Future:
            future = self._client.submit(_run_chunk, func, chunk, pure=False, priority=priority)
            pending[future] = chunk
            return future

        def next_chunks(n: int) -> list:
            nonlocal submitted
            out = []
            for chunk in itertools.islice(feed, n):
                submitted += 1
                out.append(submit(chunk, -submitted))  # the earlier chunk first (the heaviest, in a plan)
            return out

        futures = as_completed(next_chunks(ahead))
        try:
            for future in futures:
                chunk = pending.pop(future)
                for more in next_chunks(1):
                    futures.add(more)
                try:
                    worker, results = future.result()
                except KilledWorker:
                    if len(chunk) > 1:  # find the item at fault: each alone, once more
                        for item in chunk:
                            futures.add(submit([item], 0))
                        continue
                    yield chunk[0][0], Failed(
                        "Dask worker died every time it ran this item (KilledWorker, after the scheduler's "
                        "allowed-failures); if it ran out of memory, give the workers more memory", "worker-died"), ""
                    continue
                except Exception as e:  # not an item's error (those are results): the cluster itself failed
                    raise self._failure(e) from e
                for index, result in results:
                    yield index, result, worker
                future.release()
        except (OSError, TimeoutError, asyncio.CancelledError) as e:  # the client lost its scheduler
            raise self._failure(e) from e
        finally:
            for future in pending:
                future.cancel()
