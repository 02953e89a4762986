"""The process backend: a pool of worker processes on this machine (see base.py for what every backend does).

It is a small pool of its own rather than multiprocessing.Pool or ProcessPoolExecutor: each
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

import multiprocessing as mp
import os
import signal
import sys
import threading
import time
from collections import deque
from contextlib import contextmanager
from multiprocessing.connection import wait
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, MutableSequence

from ..core import Failed, effective_n_jobs
from ..errors import BackendError
from .base import Chunk, Labelled, WorkerSetup, call_item, process_label

if TYPE_CHECKING:
    from multiprocessing.connection import Connection
    from multiprocessing.context import BaseContext

    from ..config import ForecastConfig

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


def _exit_with_parent(parent: int) -> None:
    """Stop this worker, and what it started, soon after the main process is gone (killed with SIGKILL), rather
    than finish a chunk nobody will collect, or hang on forever with a hung fit."""
    while os.getppid() == parent:
        time.sleep(1.0)
    if os.getpgrp() == os.getpid():
        os.killpg(os.getpid(), signal.SIGKILL)
    os._exit(1)


def _worker_main(conn: Connection, on_item: MutableSequence[float], initializer: Callable | None,
                 initargs: tuple) -> None:
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


def _serve(conn: Connection, on_item: MutableSequence[float], initializer: Callable | None, initargs: tuple) -> None:
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
            done.append((index, call_item(func, item)))
            if n == len(chunk) or time.monotonic() - sent >= _REPORT_SECONDS:
                _report(conn, done)
                done, sent = [], time.monotonic()


def _report(conn: Connection, done: list[tuple[int, Any]]) -> None:
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


@contextmanager
def _script_not_rerun() -> Iterator[None]:
    """Start workers without running the user's script again.

    spawn starts a worker by importing the main module once more, so that what it defines can be unpickled there;
    a script that calls forecast.forecast(...) at its top level, without `if __name__ == "__main__":`, would then
    start a run inside every worker, which multiprocessing refuses: every worker would die while starting. What
    this backend runs are functions of importable modules (the package's own), so its workers never need the
    script: its path is hidden from spawn while a worker starts. A module run with -m is imported by name, as
    before (forecast's and pytest's __main__ guard themselves).
    """
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    if main is None or path is None or getattr(main, "__spec__", None) is not None:
        yield
        return
    del main.__file__
    try:
        yield
    finally:
        main.__file__ = path


class _Worker:
    def __init__(self, ctx: BaseContext, initializer: Callable | None, initargs: tuple) -> None:
        self.conn, child = ctx.Pipe()
        self.on_item = ctx.RawArray("d", [-1.0, 0.0])  # written by the worker: see _serve
        self.started_at = time.monotonic()
        self.ready_at = self.started_at  # when it said it was ready (see ProcessBackend._drain)
        self.process = ctx.Process(target=_worker_main, args=(child, self.on_item, initializer, initargs),
                                   daemon=True)
        saved = {k: os.environ.get(k) for k in _WORKER_ENV}
        os.environ.update(_WORKER_ENV)
        try:
            with _script_not_rerun():
                self.process.start()
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
        child.close()
        self.label = process_label(self.process.pid)  # what its results are labelled with
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


class _Feed:
    """The chunks to run: those given back (a dead worker's rest, first) and then the caller's, taken one at a time
    when a worker is free, so a caller that makes its chunks as it reads (a table read block by block) holds only
    the chunks in flight. True while any chunk may be left."""

    def __init__(self, chunks: Iterable[Chunk]) -> None:
        self._back: deque[Chunk] = deque()
        self._chunks = iter(chunks)
        self._ended = False

    def _fill(self) -> None:
        while not self._back and not self._ended:
            try:
                chunk = next(self._chunks)
            except StopIteration:
                self._ended = True
                return
            if chunk:
                self._back.append(chunk)

    def __bool__(self) -> bool:
        self._fill()
        return bool(self._back)

    def popleft(self) -> Chunk:
        self._fill()
        return self._back.popleft()

    def appendleft(self, chunk: Chunk) -> None:
        self._back.appendleft(chunk)


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
        life_per_start: ...and once it has been ready for this many times as long as it took to start.
    """

    name = "process"

    # Recycling after 5,000 items: whatever a worker accumulates stays bounded by 5,000 fits' worth. Measured
    # (benchmarks/bench_nightly.py, 5,000 fits of 60 days on 2 workers): RSS 161.5 -> 163.6 MB over 2,500 fits per
    # worker, so this is insurance (e.g. against a leaking Prophet release), not a need today. Counted in items,
    # not chunks, since chunk sizes vary with the input.
    default_max_items_per_worker = 5000
    # ...and only once the worker has lived this many times as long as it took to start: a restart (spawn and
    # imports) costs about 1 s, which was under 2 % of 5,000 Prophet fits (10 to 100 ms each) but is 10 % of
    # 5,000 fast-engine fits (about 2 ms each), paid again every 10 s of a long run. Both ways, restarts stay
    # under 2 % of a worker's time.
    default_life_per_start = 50.0

    def __init__(self, n_jobs: int = -1, initializer: Callable | None = None, initargs: tuple = (),
                 max_attempts: int = 2, item_timeout: float | None = None,
                 max_items_per_worker: int | None = default_max_items_per_worker,
                 life_per_start: float = default_life_per_start) -> None:
        self.n_jobs = effective_n_jobs(n_jobs)
        self._initializer, self._initargs = initializer, initargs
        self._max_attempts = max_attempts
        if item_timeout is not None and not item_timeout > 0:
            raise ValueError(f"item_timeout must be positive; got {item_timeout}")
        if max_items_per_worker is not None and max_items_per_worker < 1:
            raise ValueError(f"max_items_per_worker must be at least 1; got {max_items_per_worker}")
        self._item_timeout = item_timeout
        self._max_items = max_items_per_worker
        self._life_per_start = life_per_start
        self.recycled = 0  # workers replaced after max_items_per_worker items
        self._start_deaths = 0  # workers that died while starting since one last became ready
        # spawn: a worker starts from a clean interpreter, so no lock or thread state of the main process
        # (a progress bar's thread, logging handlers) is copied into it half-held, as fork can do.
        self._ctx = mp.get_context("spawn")
        self._workers: list[_Worker] = []

    # Entering returns at once: the workers start (spawn, imports, initializer) in the background, so a caller
    # can enter the backend before its own slow set-up, such as reading the input, and have both at the same time.
    starts_in_background = True

    @classmethod
    def from_config(cls, config: ForecastConfig, setup: WorkerSetup,
                    notify: Callable[[str], None] | None = None) -> "ProcessBackend":
        """config.n_jobs worker processes, with config.fit_timeout as the per-item timeout."""
        return cls(config.n_jobs, setup.func, setup.initargs(local_processes=True), item_timeout=config.fit_timeout)

    def __enter__(self) -> "ProcessBackend":
        if not self._workers:  # entering again (a caller that started the workers early) keeps them
            self._workers = [self._start() for _ in range(self.n_jobs)]
        return self

    def __exit__(self, *exc: object) -> None:
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

    def map(self, func: Callable, chunks: Iterable[Chunk]) -> Iterator[Labelled]:
        queue = _Feed(chunks)
        deaths: dict[int, int] = {}
        while queue or any(w.pending for w in self._workers):
            self._dispatch(func, queue)
            by_handle = {}
            for w in self._workers:
                by_handle[w.conn] = w
                by_handle[w.process.sentinel] = w
            finished: list[Labelled] = []
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

    def _dispatch(self, func: Callable, queue: _Feed) -> None:
        """Send the next chunk to every idle worker (recycling one that has done its share first)."""
        for w in list(self._workers):
            if w.ready and not w.pending and queue:
                if self._served_its_share(w):
                    self._recycle(w)
                    continue
                chunk = queue.popleft()
                w.conn.send((func, chunk))
                w.pending.extend(chunk)
                w.heard_at = time.monotonic()

    def _served_its_share(self, w: _Worker) -> bool:
        """Whether `w` is due to be replaced by a fresh worker (see max_items_per_worker and life_per_start)."""
        if self._max_items is None or w.items_done < self._max_items:
            return False
        return time.monotonic() - w.ready_at >= self._life_per_start * (w.ready_at - w.started_at)

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

    def _stop_overdue(self, queue: _Feed) -> Iterator[Labelled]:
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
                yield overdue, Failed(f"ran longer than {self._item_timeout:g} s; its worker was stopped",
                                      "timeout"), w.label
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

    def _drain(self, w: _Worker) -> Iterator[Labelled]:
        """Take every message the worker has sent so far."""
        while True:
            try:
                if not w.conn.poll():
                    return
                kind, index, payload = w.conn.recv()
            except (EOFError, OSError):
                return
            if kind == "ready":
                w.ready, w.ready_at = True, time.monotonic()
                self._start_deaths = 0
            elif kind == "init-error":
                raise BackendError(f"worker process {w.process.pid} could not start: {payload}")
            elif kind == "items":
                w.heard_at = time.monotonic()
                for index, result in payload:
                    done_index, _ = w.pending.popleft()
                    assert done_index == index, (done_index, index)
                    w.items_done += 1
                    yield index, result, w.label

    def _replace(self, w: _Worker, queue: _Feed, deaths: dict[int, int]) -> Iterator[Labelled]:
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
                ), w.label
                rest = [(i, item) for i, item in rest if i != index]
            if rest:
                queue.appendleft(rest)
        self._workers.append(self._start())
