"""Progress on the terminal: a rich bar when stderr is a terminal, a few plain lines otherwise (cron, logs)."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class PlainProgress:
    """One line per tenth of the work, or per minute, whichever comes first; nothing with quiet=True."""

    # A line a minute at most keeps a nightly log readable while still showing the job is alive.
    every_seconds = 60.0

    def __init__(self, stream: TextIO | None = None, quiet: bool = False):
        self.stream = stream or sys.stderr
        self.quiet = quiet
        self._t0 = time.perf_counter()
        self._last_t = self._t0
        self._last_tenth = 0

    def __enter__(self) -> "PlainProgress":
        return self

    def __exit__(self, *exc) -> None:
        pass

    def note(self, message: str) -> None:
        if not self.quiet:
            print(f"note: {message}", file=self.stream, flush=True)

    def __call__(self, done: int, total: int) -> None:
        if self.quiet:
            return
        now = time.perf_counter()
        tenth = done * 10 // max(total, 1)
        if tenth > self._last_tenth or now - self._last_t >= self.every_seconds:
            self._last_tenth, self._last_t = tenth, now
            rate = done / max(now - self._t0, 1e-9)
            print(f"progress: {done}/{total} series, {rate:.1f} series/s", file=self.stream, flush=True)


class RichProgress:
    """A live bar: series done / total, rate, elapsed and ETA."""

    def __init__(self, description: str = "forecasting"):
        from rich.console import Console
        from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TaskProgressColumn, TextColumn,
                                   TimeElapsedColumn, TimeRemainingColumn)

        self.console = Console(stderr=True)
        self._progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TaskProgressColumn(),
            TextColumn("{task.fields[rate]} series/s"), TimeElapsedColumn(), TextColumn("ETA"),
            TimeRemainingColumn(), console=self.console, transient=False,
        )
        self._task = None
        self._description = description
        self._t0 = time.perf_counter()

    def __enter__(self) -> "RichProgress":
        self._progress.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._progress.__exit__(*exc)

    def note(self, message: str) -> None:
        self.console.print(f"note: {message}", markup=False, highlight=False)

    def __call__(self, done: int, total: int) -> None:
        rate = f"{done / max(time.perf_counter() - self._t0, 1e-9):.1f}"
        if self._task is None:
            self._task = self._progress.add_task(self._description, total=total, rate=rate)
        self._progress.update(self._task, completed=done, rate=rate)


def make_progress(quiet: bool) -> PlainProgress | RichProgress:
    """The right progress display for where stderr goes."""
    if not quiet and sys.stderr.isatty():
        return RichProgress()
    return PlainProgress(quiet=quiet)
