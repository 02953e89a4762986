"""What every backend is: the `Backend` protocol, the worker set-up it is given, and the per-item call.

A chunk is a list of (index, item) pairs. `map(func, chunks)` yields (index, result, worker) per item as items
finish, in any order (the core puts them back in order): result is func(item), or `Failed` when the function
raised or its worker died while on that item; worker is the label of the worker that ran it ("host:pid" for a
process, a Dask worker's address), "" when no single worker can be named. Labelling is the backend's job, so the
per-item function need not know where it runs. `chunks` may be a generator: a backend takes a chunk from it only
as its workers can start one (a few ahead at most), so a caller that makes chunks as it reads a table block by
block holds only the chunks in flight.

A worker runs one item at a time: the per-series function may keep per-process state between items (a model's
scratch directory, the CPU clock a series' time is read from), so a backend that runs items side by side in one
process must not be used with it. A backend is opened (`with backend:`) before `map` and closed after it, on every
path; closing it stops its work promptly (an interrupted run waits for nothing but the items in flight).
`info()` is what the summary says about it. `open_backend` (in the package) builds one from a run's
configuration through its class's `from_config`.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Protocol

from ..core import Failed

if TYPE_CHECKING:
    from ..config import ForecastConfig

Chunk = list[tuple[int, Any]]
Labelled = tuple[int, Any, str]  # (index, result, worker label): what `map` yields


def call_item(func: Callable, item: Any) -> Any:
    """func(item), or the `Failed` its exception becomes: one item's error must not end its chunk."""
    try:
        return func(item)
    except Exception as e:
        return Failed(f"{type(e).__name__}: {e}".splitlines()[0], "error")


def process_label(pid: int | None = None) -> str:
    """The label of a worker process on this machine: "host:pid" (this process's when pid is None)."""
    return f"{socket.gethostname()}:{os.getpid() if pid is None else pid}"


@dataclass(frozen=True)
class WorkerSetup:
    """What every worker runs once before any work: func(temp_root, *args).

    Attributes:
        func: a module-level function, or None for nothing.
        args: its arguments after the first.
        temp_root: a directory on this machine that worker processes make their temporary directories in. The
            backend passes it only to worker processes of this machine; work in this process, and workers on
            other machines (which make their own), get None.
    """

    func: Callable | None = None
    args: tuple = ()
    temp_root: str | None = None

    def initargs(self, local_processes: bool) -> tuple:
        """The function's arguments for workers that are (True) or are not separate processes of this machine."""
        return (self.temp_root if local_processes else None, *self.args)


class Backend(Protocol):
    """An executor for the chunk-and-map core (see the module docstring)."""

    name: str
    n_jobs: int  # workers (threads, over a cluster) it runs items on; known once entered
    starts_in_background: bool  # entering returns before the workers are ready, so it may be entered early
    # its workers are processes of this machine: --n-jobs above the usable cores is cut to what the work needs
    uses_local_cores: bool

    @classmethod
    def check_config(cls, config: ForecastConfig) -> None:
        """Raise ConfigError for an option of `config` this backend cannot honour (checked with the rest of the
        configuration, before anything runs)."""
        ...

    @classmethod
    def from_config(cls, config: ForecastConfig, setup: WorkerSetup, notify: Callable[[str], None] | None = None
                    ) -> Backend:
        """The backend a run with this configuration uses, not yet entered."""
        ...

    def __enter__(self) -> Backend: ...

    def __exit__(self, *exc: object) -> None: ...

    def info(self) -> dict:
        """What the summary says about the executor: at least name, workers (processes or cluster workers) and
        threads (items it runs at once, over all workers); a cluster's address as "scheduler"."""
        ...

    def map(self, func: Callable, chunks: Iterable[Chunk]) -> Iterator[Labelled]: ...
