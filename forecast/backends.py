"""Executors for the chunk-and-map core: one small class each, a dict from name to class.

Every backend has `n_jobs` and `map(func, chunks)`, where a chunk is a list of (index, item) pairs and `map`
yields (index, result) per item as items finish, in any order; the core puts them back in order. A result is
func(item), or `Failed` when the function raised or its worker died twice while on that item.

The process backend is a small pool of its own rather than multiprocessing.Pool or ProcessPoolExecutor: each
worker reports every item as it finishes, so the main process always knows which item a worker is on. A worker
that dies (killed, out of memory) then costs only that item: the rest of its chunk goes back to the queue, a
fresh worker takes its place, and the item is tried once more before it is recorded as failed. The stock pools
can only say that "a" worker died and fail every pending task with it.

Knowing which item each worker is on, and since when, also gives a per-item timeout: a worker past it is killed
with everything it started (it leads its own process group, so a hung Stan process goes too), the item is
recorded as `Failed(kind="timeout")` and the rest of its chunk is requeued. Workers can also be recycled after
a number of chunks, which bounds whatever memory a long run's worker would otherwise accumulate.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import threading
import time
from collections import deque
from multiprocessing.connection import wait
from typing import Any, Callable, Iterator

from .core import Failed, effective_n_jobs
from .errors import BackendError

Chunk = list[tuple[int, Any]]

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

    def __init__(self, n_jobs: int = 1, initializer: Callable | None = None, initargs: tuple = ()):
        self.n_jobs = 1
        self._initializer, self._initargs = initializer, initargs

    def __enter__(self) -> "SequentialBackend":
        if self._initializer is not None:
            self._initializer(*self._initargs)
        return self

    def __exit__(self, *exc) -> None:
        pass

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


def _worker_main(conn, initializer: Callable | None, initargs: tuple) -> None:
    """A worker's whole life: initialise once, then run chunks sent by the main process until told to stop."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the main process's to handle
    try:
        os.setpgrp()  # lead a process group, so a timeout can stop this worker and whatever it started at once
    except OSError:
        pass
    threading.Thread(target=_exit_with_parent, args=(os.getppid(),), daemon=True).start()
    try:
        _serve(conn, initializer, initargs)
    except (EOFError, OSError):  # the main process is gone: nothing to report to
        pass


def _serve(conn, initializer: Callable | None, initargs: tuple) -> None:
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
        for index, item in chunk:
            result = _call(func, item)
            try:
                conn.send(("item", index, result))
            except Exception as e:  # an unpicklable result fails that item, not the worker
                conn.send(("item", index, Failed(f"result cannot be sent back: {type(e).__name__}: {e}")))
        conn.send(("chunk-done", None, None))


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
        self.process = ctx.Process(target=_worker_main, args=(child, initializer, initargs), daemon=True)
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
        self.item_started = time.monotonic()  # when the item at the head of `pending` began
        self.chunks_done = 0

    def kill(self) -> None:
        """Kill the worker and every process it started (a Stan fit), then reap it."""
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):  # not (yet) leading its own group
            self.process.kill()
        self.process.join()

    def stop(self, timeout: float = 5.0) -> None:
        try:
            self.conn.send(None)
        except OSError:
            pass
        self.process.join(timeout)
        if self.process.is_alive():
            self.kill()
        self.conn.close()


class ProcessBackend:
    """A pool of worker processes, each started and initialised once (see the module docstring).

    Args:
        n_jobs: workers; -1 for all usable cores.
        initializer: a module-level function each worker runs once before any work (imports, logging, temp dir).
        initargs: its arguments.
        max_attempts: how many worker deaths one item may cause before it is recorded as failed.
        item_timeout: seconds one item may run; past it, its worker is killed and replaced and the item
            becomes `Failed(kind="timeout")`. None: no limit.
        max_chunks_per_worker: replace a worker after this many chunks (when more work is queued). None: never.
    """

    name = "process"

    # Recycling after 4 chunks: with the default 4 chunks per worker a normal run never pays for a restart
    # (~2-3 s of spawn and Prophet import each), while a long run with many chunks (a resume, small chunks)
    # restarts each worker now and then, so whatever a worker accumulates stays bounded by 4 chunks' worth.
    # Measured (benchmarks/bench_nightly.py, 2,000 fits of 60 days on 2 workers): RSS 159.7 -> 160.8 MB over
    # 1,000 fits per worker, so this is insurance (e.g. against a leaking Prophet release), not a need today.
    default_max_chunks_per_worker = 4

    def __init__(self, n_jobs: int = -1, initializer: Callable | None = None, initargs: tuple = (),
                 max_attempts: int = 2, item_timeout: float | None = None,
                 max_chunks_per_worker: int | None = default_max_chunks_per_worker):
        self.n_jobs = effective_n_jobs(n_jobs)
        self._initializer, self._initargs = initializer, initargs
        self._max_attempts = max_attempts
        if item_timeout is not None and not item_timeout > 0:
            raise ValueError(f"item_timeout must be positive; got {item_timeout}")
        if max_chunks_per_worker is not None and max_chunks_per_worker < 1:
            raise ValueError(f"max_chunks_per_worker must be at least 1; got {max_chunks_per_worker}")
        self._item_timeout = item_timeout
        self._max_chunks = max_chunks_per_worker
        self.recycled = 0  # workers replaced after max_chunks_per_worker chunks
        # spawn: a worker starts from a clean interpreter, so no lock or thread state of the main process
        # (a progress bar's thread, logging handlers) is copied into it half-held, as fork can do.
        self._ctx = mp.get_context("spawn")
        self._workers: list[_Worker] = []

    def __enter__(self) -> "ProcessBackend":
        self._workers = [self._start() for _ in range(self.n_jobs)]
        return self

    def __exit__(self, *exc) -> None:
        for w in self._workers:
            w.stop(timeout=5.0 if exc[0] is None else 0.5)
        self._workers = []

    def _start(self) -> _Worker:
        return _Worker(self._ctx, self._initializer, self._initargs)

    def map(self, func: Callable, chunks: list[Chunk]) -> Iterator[tuple[int, Any]]:
        queue: deque[Chunk] = deque(c for c in chunks if c)
        deaths: dict[int, int] = {}
        while queue or any(w.pending for w in self._workers):
            for w in list(self._workers):
                if w.ready and not w.pending and queue:
                    if self._max_chunks is not None and w.chunks_done >= self._max_chunks:
                        self._recycle(w)
                        continue
                    chunk = queue.popleft()
                    w.conn.send((func, chunk))
                    w.pending.extend(chunk)
                    w.item_started = time.monotonic()
            by_handle = {}
            for w in self._workers:
                by_handle[w.conn] = w
                by_handle[w.process.sentinel] = w
            for handle in wait(list(by_handle), timeout=self._next_deadline()):
                w = by_handle[handle]
                if w not in self._workers:  # replaced earlier in this round
                    continue
                yield from self._drain(w)
                if not w.process.is_alive():
                    yield from self._replace(w, queue, deaths)
            if self._item_timeout is not None:
                yield from self._stop_overdue(queue)

    def _next_deadline(self) -> float | None:
        """Seconds until the first busy worker passes the item timeout; None to wait without limit."""
        busy = [w.item_started for w in self._workers if w.pending]
        if self._item_timeout is None or not busy:
            return None
        return max(0.0, min(busy) + self._item_timeout - time.monotonic())

    def _stop_overdue(self, queue: deque) -> Iterator[tuple[int, Any]]:
        """Kill and replace every worker whose current item has run past the timeout; fail that item."""
        for w in list(self._workers):
            if not w.pending or time.monotonic() - w.item_started <= self._item_timeout:
                continue
            yield from self._drain(w)  # it may have finished just now
            if not w.pending or time.monotonic() - w.item_started <= self._item_timeout:
                continue
            overdue = w.pending[0][0]
            w.kill()
            yield from self._drain(w)
            w.conn.close()
            self._workers.remove(w)
            rest = list(w.pending)
            if rest and rest[0][0] == overdue:
                yield overdue, Failed(
                    f"ran longer than {self._item_timeout:g} s; its worker was stopped", "timeout")
                rest = rest[1:]
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
            elif kind == "init-error":
                raise BackendError(f"worker process {w.process.pid} could not start: {payload}")
            elif kind == "item":
                done_index, _ = w.pending.popleft()
                assert done_index == index, (done_index, index)
                w.item_started = time.monotonic()
                yield index, payload
            elif kind == "chunk-done":
                w.chunks_done += 1

    def _replace(self, w: _Worker, queue: deque, deaths: dict[int, int]) -> Iterator[tuple[int, Any]]:
        """A worker died: charge the item it was on, requeue the rest of its chunk, start a fresh worker."""
        w.process.join()
        yield from self._drain(w)  # what it sent just before dying is still in the pipe
        reason = _death_reason(w.process.exitcode)
        w.conn.close()
        self._workers.remove(w)
        if not w.ready:
            raise BackendError(f"worker process {w.process.pid} died while starting ({reason})")
        rest = list(w.pending)
        if rest:
            index, _ = rest[0]
            deaths[index] = deaths.get(index, 0) + 1
            if deaths[index] >= self._max_attempts:
                yield index, Failed(
                    f"worker process died ({reason}) {deaths[index]} times while on this item; "
                    "if it ran out of memory, try fewer --n-jobs",
                    "worker-died",
                )
                rest = rest[1:]
            if rest:
                queue.appendleft(rest)
        self._workers.append(self._start())


BACKENDS = {"sequential": SequentialBackend, "process": ProcessBackend}


def make_backend(name: str | None, n_jobs: int, initializer: Callable | None = None, initargs: tuple = (),
                 **options):
    """The backend for `name` ("sequential", "process"); None picks sequential for n_jobs=1, else process.

    `options` go to the backend's class (e.g. item_timeout for "process"). Use it as a context manager so
    workers are stopped on every path.
    """
    if name is None:
        name = "sequential" if effective_n_jobs(n_jobs) == 1 else "process"
    try:
        cls = BACKENDS[name]
    except KeyError:
        raise BackendError(f"unknown backend {name!r}; expected one of {', '.join(BACKENDS)}") from None
    return cls(n_jobs=n_jobs, initializer=initializer, initargs=initargs, **options)
