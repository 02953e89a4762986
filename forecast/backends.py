"""Executors for the chunk-and-map core: one small class each, a dict from name to class.

Every backend has `n_jobs` and `map(func, chunks)`, where a chunk is a list of (index, item) pairs and `map`
yields (index, result) per item as items finish, in any order; the core puts them back in order. A result is
func(item), or `Failed` when the function raised or its worker died twice while on that item.

The process backend is a small pool of its own rather than multiprocessing.Pool or ProcessPoolExecutor: each
worker publishes the item it is on in a few bytes of shared memory, so the main process always knows which item
a worker is on. A worker that dies (killed, out of memory) then costs only that item: the rest of its chunk goes
back to the queue, a fresh worker takes its place, and the item is tried once more before it is recorded as
failed. The stock pools can only say that "a" worker died and fail every pending task with it.

Workers send finished items back in batches, at most `_REPORT_SECONDS` apart and at the end of each chunk, rather
than one message per item: for items of about 10 ms (the fast engine), a message per item cost the worker ~0.3 ms
(pickling, a pipe write, waking the main process) and the main process as much again, ~5 % of a 2-core run.
Results a dying worker finished but had not sent yet are lost with it; those items run again, uncharged.

Knowing which item each worker is on, and since when, also gives a per-item timeout: a worker past it is killed
with everything it started (it leads its own process group, so a hung Stan process goes too), the item is
recorded as `Failed(kind="timeout")` and the rest of its chunk is requeued. Workers can also be recycled after
a number of items (between chunks), which bounds whatever memory a long run's worker would otherwise accumulate.
"""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import os
import signal
import threading
import time
from collections import deque
from multiprocessing.connection import wait
from typing import Any, Callable, Iterator

from .core import Failed, effective_n_jobs
from .errors import BackendError, BackendLostError

Chunk = list[tuple[int, Any]]

# How long a worker may hold finished results before sending them: progress on a terminal still moves 20 times a
# second, and an interrupted or killed worker loses at most this much finished work.
_REPORT_SECONDS = 0.05

# Environment for worker processes, set before they import numpy: one BLAS/OpenMP thread each, since the
# parallelism is across workers; more threads per worker would only oversubscribe the cores.
_WORKER_ENV = {
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "VECLIB_MAXIMUM_THREADS": "1",
    "NUMEXPR_NUM_THREADS": "1",
}


def _call(func: Callable, item: Any) -> Any:
    try:
        return func(item)
    except Exception as e:  # one item's error must not end the chunk: it becomes that item's result
        return Failed(f"{type(e).__name__}: {e}".splitlines()[0], "error")


class SequentialBackend:
    """Runs everything in this process, in order. Used for n_jobs=1, under a debugger, and as the reference."""

    name = "sequential"
    starts_in_background = False  # entering runs the initializer here, before it returns

    def __init__(self, n_jobs: int = 1, initializer: Callable | None = None, initargs: tuple = ()):
        self.n_jobs = 1
        self._initializer, self._initargs = initializer, initargs

    def __enter__(self) -> "SequentialBackend":
        if self._initializer is not None:
            self._initializer(*self._initargs)
        return self

    def __exit__(self, *exc) -> None:
        pass

    def info(self) -> dict:
        """What the summary says about the executor."""
        return {"name": self.name, "workers": 1, "threads": 1}

    def map(self, func: Callable, chunks: list[Chunk]) -> Iterator[tuple[int, Any]]:
        for chunk in chunks:
            for index, item in chunk:
                yield index, _call(func, item)


def _exit_with_parent(parent: int) -> None:
    """Stop this worker, and what it started, soon after the main process is gone (killed with SIGKILL), rather
    than finish a chunk nobody will collect, or hang on forever with a hung fit."""
    while os.getppid() == parent:
        time.sleep(1.0)
    if os.getpgrp() == os.getpid():
        os.killpg(os.getpid(), signal.SIGKILL)
    os._exit(1)


def _worker_main(conn, on_item, initializer: Callable | None, initargs: tuple) -> None:
    """A worker's whole life: initialise once, then run chunks sent by the main process until told to stop."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the main process's to handle
    try:
        os.setpgrp()  # lead a process group, so a timeout can stop this worker and whatever it started at once
    except OSError:
        pass
    threading.Thread(target=_exit_with_parent, args=(os.getppid(),), daemon=True).start()
    try:
        _serve(conn, on_item, initializer, initargs)
    except (EOFError, OSError):  # the main process is gone: nothing to report to
        pass


def _serve(conn, on_item, initializer: Callable | None, initargs: tuple) -> None:
    """Initialise, then run the chunks the main process sends until it sends None. `on_item` is shared memory:
    [index of the item being worked on, time.monotonic() when it began]."""
    try:
        if initializer is not None:
            initializer(*initargs)
    except BaseException as e:
        conn.send(("init-error", None, f"{type(e).__name__}: {e}".splitlines()[0]))
        return
    conn.send(("ready", None, None))
    while True:
        message = conn.recv()
        if message is None:
            return
        func, chunk = message
        done: list[tuple[int, Any]] = []
        sent = time.monotonic()
        for n, (index, item) in enumerate(chunk, 1):
            on_item[1] = time.monotonic()  # the start first: whoever reads the new index then reads its start
            on_item[0] = index
            done.append((index, _call(func, item)))
            if n == len(chunk) or time.monotonic() - sent >= _REPORT_SECONDS:
                _report(conn, done)
                done, sent = [], time.monotonic()


def _report(conn, done: list[tuple[int, Any]]) -> None:
    """Send finished items to the main process in one message; an unpicklable result fails that item, not the
    worker (pickling happens before anything is written, so a failed send sends nothing)."""
    try:
        conn.send(("items", None, done))
        return
    except Exception:
        pass
    for index, result in done:
        try:
            conn.send(("items", None, [(index, result)]))
        except Exception as e:
            conn.send(("items", None, [(index, Failed(f"result cannot be sent back: {type(e).__name__}: {e}"))]))


def _death_reason(exitcode: int | None) -> str:
    if exitcode is not None and exitcode < 0:
        try:
            return f"signal {signal.Signals(-exitcode).name}"
        except ValueError:
            return f"signal {-exitcode}"
    return f"exit code {exitcode}"


class _Worker:
    def __init__(self, ctx, initializer, initargs):
        self.conn, child = ctx.Pipe()
        self.on_item = ctx.RawArray("d", [-1.0, 0.0])  # written by the worker: see _serve
        self.process = ctx.Process(target=_worker_main, args=(child, self.on_item, initializer, initargs),
                                   daemon=True)
        saved = {k: os.environ.get(k) for k in _WORKER_ENV}
        os.environ.update(_WORKER_ENV)
        try:
            self.process.start()
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
        child.close()
        self.ready = False
        self.pending: deque[tuple[int, Any]] = deque()  # items sent and not yet reported, in run order
        self.heard_at = time.monotonic()  # when it was last sent a chunk or last sent results back
        self.items_done = 0
        self.stopping = False

    def current(self) -> tuple[int, float] | None:
        """The pending item this worker is on and since when (time.monotonic()); None when nothing is pending.

        Between items (a chunk just sent, or results just sent back), that is the next item, since then.
        """
        if not self.pending:
            return None
        index, started = int(self.on_item[0]), self.on_item[1]
        if any(i == index for i, _ in self.pending):
            return index, started
        return self.pending[0][0], self.heard_at

    def kill(self) -> None:
        """Kill the worker and every process it started (a Stan fit), then reap it."""
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):  # not (yet) leading its own group
            self.process.kill()
        self.process.join()

    def ask_to_stop(self) -> None:
        """Tell the worker to exit once it is done with what it was sent."""
        if not self.stopping:
            self.stopping = True
            try:
                self.conn.send(None)
            except OSError:
                pass

    def stop(self, timeout: float = 5.0) -> None:
        self.ask_to_stop()
        self.process.join(timeout)
        if self.process.is_alive():
            self.kill()
        self.conn.close()


# Workers in a row that may die while starting (they hold no work yet) before the run gives up on its set-up.
_MAX_START_DEATHS = 3


class ProcessBackend:
    """A pool of worker processes, each started and initialised once (see the module docstring).

    Args:
        n_jobs: workers; -1 for all usable cores.
        initializer: a module-level function each worker runs once before any work (imports, logging, temp dir).
        initargs: its arguments.
        max_attempts: how many worker deaths one item may cause before it is recorded as failed.
        item_timeout: seconds one item may run; past it, its worker is killed and replaced and the item
            becomes `Failed(kind="timeout")`. None: no limit.
        max_items_per_worker: replace a worker, between chunks, once it has done this many items (when more work
            is queued). None: never.
    """

    name = "process"

    # Recycling after 5,000 items: a restart costs ~1 s (the fast engine) to ~3 s (spawn and Prophet import), next
    # to 5,000 fits of 10 ms to 100 ms each, so under 2 % of a worker's time, while whatever a worker accumulates
    # stays bounded by 5,000 fits' worth. Measured (benchmarks/bench_nightly.py, 5,000 fits of 60 days on 2
    # workers): RSS 161.5 -> 163.6 MB over 2,500 fits per worker, so this is insurance (e.g. against a leaking
    # Prophet release), not a need today. Counted in items, not chunks, since chunk sizes vary with the input.
    default_max_items_per_worker = 5000

    def __init__(self, n_jobs: int = -1, initializer: Callable | None = None, initargs: tuple = (),
                 max_attempts: int = 2, item_timeout: float | None = None,
                 max_items_per_worker: int | None = default_max_items_per_worker):
        self.n_jobs = effective_n_jobs(n_jobs)
        self._initializer, self._initargs = initializer, initargs
        self._max_attempts = max_attempts
        if item_timeout is not None and not item_timeout > 0:
            raise ValueError(f"item_timeout must be positive; got {item_timeout}")
        if max_items_per_worker is not None and max_items_per_worker < 1:
            raise ValueError(f"max_items_per_worker must be at least 1; got {max_items_per_worker}")
        self._item_timeout = item_timeout
        self._max_items = max_items_per_worker
        self.recycled = 0  # workers replaced after max_items_per_worker items
        self._start_deaths = 0  # workers that died while starting since one last became ready
        # spawn: a worker starts from a clean interpreter, so no lock or thread state of the main process
        # (a progress bar's thread, logging handlers) is copied into it half-held, as fork can do.
        self._ctx = mp.get_context("spawn")
        self._workers: list[_Worker] = []

    # Entering returns at once: the workers start (spawn, imports, initializer) in the background, so a caller
    # can enter the backend before its own slow set-up, such as reading the input, and have both at the same time.
    starts_in_background = True

    def __enter__(self) -> "ProcessBackend":
        if not self._workers:  # entering again (a caller that started the workers early) keeps them
            self._workers = [self._start() for _ in range(self.n_jobs)]
        return self

    def __exit__(self, *exc) -> None:
        workers, self._workers = self._workers, []  # exiting again does nothing
        for w in workers:  # tell them all first, so they wind down side by side
            w.ask_to_stop()
        for w in workers:
            w.stop(timeout=5.0 if exc[0] is None else 0.5)

    def info(self) -> dict:
        """What the summary says about the executor: one single-thread process per job."""
        return {"name": self.name, "workers": self.n_jobs, "threads": self.n_jobs}

    def _start(self) -> _Worker:
        return _Worker(self._ctx, self._initializer, self._initargs)

    def map(self, func: Callable, chunks: list[Chunk]) -> Iterator[tuple[int, Any]]:
        queue: deque[Chunk] = deque(c for c in chunks if c)
        deaths: dict[int, int] = {}
        while queue or any(w.pending for w in self._workers):
            self._dispatch(func, queue)
            by_handle = {}
            for w in self._workers:
                by_handle[w.conn] = w
                by_handle[w.process.sentinel] = w
            finished: list[tuple[int, Any]] = []
            for handle in wait(list(by_handle), timeout=self._next_deadline()):
                w = by_handle[handle]
                if w not in self._workers:  # replaced earlier in this round
                    continue
                finished.extend(self._drain(w))
                if not w.process.is_alive():
                    finished.extend(self._replace(w, queue, deaths))
            if self._item_timeout is not None:
                finished.extend(self._stop_overdue(queue))
            # A worker that has just finished its chunk gets the next one before the caller sees the results:
            # what the caller does with them (writing a part file) would otherwise leave that worker idle.
            self._dispatch(func, queue)
            yield from finished

    def _dispatch(self, func: Callable, queue: deque) -> None:
        """Send the next chunk to every idle worker (recycling one that has done its share first)."""
        for w in list(self._workers):
            if w.ready and not w.pending and queue:
                if self._max_items is not None and w.items_done >= self._max_items:
                    self._recycle(w)
                    continue
                chunk = queue.popleft()
                w.conn.send((func, chunk))
                w.pending.extend(chunk)
                w.heard_at = time.monotonic()

    def _next_deadline(self) -> float | None:
        """Seconds until the first busy worker passes the item timeout; None to wait without limit."""
        if self._item_timeout is None:
            return None
        busy = [on[1] for w in self._workers if (on := w.current()) is not None]
        if not busy:
            return None
        return max(0.0, min(busy) + self._item_timeout - time.monotonic())

    def _overdue(self, w: _Worker) -> int | None:
        """The item `w` has been on for longer than the timeout, if any."""
        on = w.current()
        return on[0] if on is not None and time.monotonic() - on[1] > self._item_timeout else None

    def _stop_overdue(self, queue: deque) -> Iterator[tuple[int, Any]]:
        """Kill and replace every worker whose current item has run past the timeout; fail that item."""
        for w in list(self._workers):
            if self._overdue(w) is None:
                continue
            yield from self._drain(w)  # it may have finished just now
            overdue = self._overdue(w)
            if overdue is None:
                continue
            w.kill()
            yield from self._drain(w)
            w.conn.close()
            self._workers.remove(w)
            if any(i == overdue for i, _ in w.pending):
                yield overdue, Failed(f"ran longer than {self._item_timeout:g} s; its worker was stopped", "timeout")
            rest = [(i, item) for i, item in w.pending if i != overdue]  # finished but unsent ones run again
            if rest:
                queue.appendleft(rest)
            self._workers.append(self._start())

    def _recycle(self, w: _Worker) -> None:
        """Replace an idle worker that has done its share of chunks with a fresh one."""
        w.stop()
        self._workers.remove(w)
        self._workers.append(self._start())
        self.recycled += 1

    def _drain(self, w: _Worker) -> Iterator[tuple[int, Any]]:
        """Take every message the worker has sent so far."""
        while True:
            try:
                if not w.conn.poll():
                    return
                kind, index, payload = w.conn.recv()
            except (EOFError, OSError):
                return
            if kind == "ready":
                w.ready = True
                self._start_deaths = 0
            elif kind == "init-error":
                raise BackendError(f"worker process {w.process.pid} could not start: {payload}")
            elif kind == "items":
                w.heard_at = time.monotonic()
                for index, result in payload:
                    done_index, _ = w.pending.popleft()
                    assert done_index == index, (done_index, index)
                    w.items_done += 1
                    yield index, result

    def _replace(self, w: _Worker, queue: deque, deaths: dict[int, int]) -> Iterator[tuple[int, Any]]:
        """A worker died: charge the item it was on, requeue the rest of its chunk, start a fresh worker."""
        w.process.join()
        yield from self._drain(w)  # what it sent just before dying is still in the pipe
        reason = _death_reason(w.process.exitcode)
        w.conn.close()
        self._workers.remove(w)
        if not w.ready:  # it held no work; once may be the OOM killer or an operator, thrice is the set-up
            self._start_deaths += 1
            if self._start_deaths >= _MAX_START_DEATHS:
                raise BackendError(f"worker process {w.process.pid} died while starting ({reason}), "
                                   f"{self._start_deaths} workers in a row")
        elif (on := w.current()) is not None:
            index = on[0]
            deaths[index] = deaths.get(index, 0) + 1
            rest = list(w.pending)  # items it finished but had not sent run again, uncharged
            if deaths[index] >= self._max_attempts:
                yield index, Failed(
                    f"worker process died ({reason}) {deaths[index]} times while on this item; "
                    "if it ran out of memory, try fewer --n-jobs",
                    "worker-died",
                )
                rest = [(i, item) for i, item in rest if i != index]
            if rest:
                queue.appendleft(rest)
        self._workers.append(self._start())


# ---------------------------------------------------------------------------------------------------------------
# Dask: the same interface over a cluster. dask and distributed are imported only in here, so forecast installs and
# runs without them.

_DASK_MISSING = "the dask backend needs dask.distributed: pip install 'forecast[dask]'"
# Name under which the worker initializer is registered; registering again (the next run) replaces it.
_PLUGIN_NAME = "forecast-init"


def _import_distributed():
    try:
        import distributed
    except ImportError:
        raise BackendError(_DASK_MISSING) from None
    return distributed


def _first_line(e: BaseException) -> str:
    return (f"{type(e).__name__}: {e}".splitlines() or [type(e).__name__])[0]


def _run_chunk(func: Callable, chunk: Chunk) -> list[tuple[int, Any]]:
    """Run on a Dask worker: func on every item of one chunk, an item's exception becoming its `Failed`.

    A result with a `worker` attribute (model.SeriesResult) is labelled with the Dask worker's address, the name
    the dashboard and the scheduler's logs use for it.
    """
    from distributed import get_worker

    name = get_worker().address
    out = []
    for index, item in chunk:
        result = _call(func, item)
        if not isinstance(result, Failed) and hasattr(result, "worker"):
            result.worker = name
        out.append((index, result))
    return out


def _setup_worker(initializer: Callable | None, initargs: tuple, dask_worker=None) -> None:
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


def _init_plugin(initializer: Callable | None, initargs: tuple):
    """A WorkerPlugin running `_setup_worker` once in every worker that joins or restarts after the run started."""
    from distributed import WorkerPlugin

    class _Init(WorkerPlugin):
        name = _PLUGIN_NAME

        def setup(self, worker) -> None:
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
                 notify: Callable[[str], None] | None = None):
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

    def __exit__(self, *exc) -> None:
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

    def map(self, func: Callable, chunks: list[Chunk]) -> Iterator[tuple[int, Any]]:
        from distributed import KilledWorker, as_completed

        pending: dict[Any, Chunk] = {}

        def submit(chunk: Chunk, priority: int):
            future = self._client.submit(_run_chunk, func, chunk, pure=False, priority=priority)
            pending[future] = chunk
            return future

        # chunks come heaviest first; a higher priority starts them first
        futures = as_completed([submit(c, len(chunks) - i) for i, c in enumerate(chunks) if c])
        try:
            for future in futures:
                chunk = pending.pop(future)
                try:
                    results = future.result()
                except KilledWorker:
                    if len(chunk) > 1:  # find the item at fault: each alone, once more
                        for item in chunk:
                            futures.add(submit([item], 0))
                        continue
                    yield chunk[0][0], Failed(
                        "Dask worker died every time it ran this item (KilledWorker, after the scheduler's "
                        "allowed-failures); if it ran out of memory, give the workers more memory", "worker-died")
                    continue
                except Exception as e:  # not an item's error (those are results): the cluster itself failed
                    raise self._failure(e) from e
                yield from results
                future.release()
        except (OSError, TimeoutError, asyncio.CancelledError) as e:  # the client lost its scheduler
            raise self._failure(e) from e
        finally:
            for future in pending:
                future.cancel()


BACKENDS = {"sequential": SequentialBackend, "process": ProcessBackend, "dask": DaskBackend}


def make_backend(name: str | None, n_jobs: int, initializer: Callable | None = None, initargs: tuple = (),
                 **options):
    """The backend for `name` ("sequential", "process", "dask"); None picks sequential for n_jobs=1, else process.

    `options` go to the backend's class (item_timeout for "process"; scheduler, connect_timeout, notify for
    "dask"). Use it as a context manager so workers are stopped on every path.
    """
    if name is None:
        name = "sequential" if effective_n_jobs(n_jobs) == 1 else "process"
    try:
        cls = BACKENDS[name]
    except KeyError:
        raise BackendError(f"unknown backend {name!r}; expected one of {', '.join(BACKENDS)}") from None
    return cls(n_jobs=n_jobs, initializer=initializer, initargs=initargs, **options)
