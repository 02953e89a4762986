"""The sequential backend: everything in this process, in order. Used for n_jobs=1, under a debugger, and as the
reference the other backends must agree with."""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Iterable, Iterator

from .base import Chunk, Labelled, WorkerSetup, call_item, process_label

if TYPE_CHECKING:
    from ..config import ForecastConfig


class SequentialBackend:
    """Runs everything in this process, in order."""

    name = "sequential"
    starts_in_background = False  # entering runs the initializer here, before it returns

    def __init__(self, n_jobs: int = 1, initializer: Callable | None = None, initargs: tuple = ()) -> None:
        self.n_jobs = 1
        self._initializer, self._initargs = initializer, initargs

    @classmethod
    def from_config(cls, config: ForecastConfig, setup: WorkerSetup,
                    notify: Callable[[str], None] | None = None) -> "SequentialBackend":
        """This process alone, whatever config.n_jobs says."""
        return cls(1, setup.func, setup.initargs(local_processes=False))

    def __enter__(self) -> "SequentialBackend":
        if self._initializer is not None:
            self._initializer(*self._initargs)
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def info(self) -> dict:
        """What the summary says about the executor."""
        return {"name": self.name, "workers": 1, "threads": 1}

    def map(self, func: Callable, chunks: Iterable[Chunk]) -> Iterator[Labelled]:
        label = process_label()
        for chunk in chunks:
            for index, item in chunk:
                yield index, call_item(func, item), label
