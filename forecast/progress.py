"""Progress and logs on stderr: a rich bar on a terminal, plain lines otherwise (cron, logs), or JSON lines.

Every display is a `Reporter`: progress(done, total) calls, note(message) and event(name, fields) for the job's
"start", each "failed" series and the "end"; see `make_progress`.
"""

from __future__ import annotations

import json
import re
import sys
import time
from typing import Literal, Protocol, TextIO, get_args

LogFormat = Literal["text", "json"]
LOG_FORMATS: tuple[LogFormat, ...] = get_args(LogFormat)

EventName = Literal["start", "failed", "end"]
# A JSON log line's "event": an event, a note, a progress line, or the CLI's error line.
RecordName = EventName | Literal["note", "progress", "error"]


class Reporter(Protocol):
    """What a run or a backtest tells its user while it works (stderr for the CLI)."""

    def progress(self, done: int, total: int) -> None:
        """`done` of `total` series finished (`total` is an estimate while a table read by blocks is being read)."""

    def note(self, message: str) -> None:
        """A one-line message worth telling the user (e.g. timezones dropped)."""

    def event(self, name: EventName, fields: dict) -> None:
        """A record for logs: "start", "failed" (one per failed series) or "end", with its fields."""


class SilentReporter:
    """Tells nothing: what a job reports to when its caller gives no reporter."""

    def progress(self, done: int, total: int) -> None:
        pass

    def note(self, message: str) -> None:
        pass

    def event(self, name: EventName, fields: dict) -> None:
        pass

# Control characters (C0, DEL, C1) and the bidirectional overrides that reorder a line: a series key or a column
# name holding ESC or NUL must not clear, repaint or hide what the operator's terminal shows.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def printable(text: str) -> str:
    """Text for a terminal or a log line: every control character escaped (a line break as \\n, ESC as \\x1b), so
    one record stays one line and shows what it holds."""
    return _CONTROL.sub(lambda m: _NAMED.get(m.group(), f"\\x{ord(m.group()):02x}" if ord(m.group()) < 0x100
                                             else f"\\u{ord(m.group()):04x}"), text)


class PlainProgress:
    """One line per tenth of the work, or per minute, whichever comes first; nothing with quiet=True.

    Also one line at the start, one per failed series and one at the end, each starting with its event name.
    """

    # A line a minute at most keeps a nightly log readable while still showing the job is alive.
    every_seconds = 60.0

    def __init__(self, stream: TextIO | None = None, quiet: bool = False) -> None:
        self.stream = stream or sys.stderr
        self.quiet = quiet
        self._t0 = time.perf_counter()
        self._last_t = self._t0
        self._last_tenth = 0

    def __enter__(self) -> "PlainProgress":
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def _write(self, line: str) -> None:
        if not self.quiet:  # one record per line, whatever a series key holds
            print(printable(line), file=self.stream, flush=True)

    def note(self, message: str) -> None:
        self._write(f"note: {message}")

    def _due(self, done: int, total: int) -> float | None:
        """The rate in series/s when a progress line is due, else None."""
        now = time.perf_counter()
        tenth = done * 10 // max(total, 1)
        if tenth > self._last_tenth or now - self._last_t >= self.every_seconds:
            self._last_tenth, self._last_t = tenth, now
            return done / max(now - self._t0, 1e-9)
        return None

    def progress(self, done: int, total: int) -> None:
        if self.quiet:
            return
        rate = self._due(done, total)
        if rate is not None:
            self._write(f"progress: {done}/{total} series, {rate:.1f} series/s")

    def event(self, name: EventName, fields: dict) -> None:
        f = fields
        if name == "start":
            resumed = f" ({f['series_resumed']} done before, resumed)" if f.get("series_resumed") else ""
            about = "about " if f.get("series_total_estimated") else ""
            self._write(f"start: {about}{f['series_total']} series{resumed}, n_jobs {f['n_jobs']}, output {f['out']}")
        elif name == "failed":
            key = ", ".join(f"{k}={v}" for k, v in f["series"].items())
            self._write(f"failed: {key}: {f['stage']}: {f['reason']}")
        elif name == "end":
            self._write(f"end: {f['status']}, {f['series_ok']} ok, {f['series_failed']} failed, "
                        f"{f['series_done']}/{f['series_total']} done, {f['wall_seconds']:.1f} s")


def json_line(event: RecordName, fields: dict) -> str:
    """One record of the JSON log: {"time": ..., "event": ..., **fields}."""
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    # json escapes every other control character itself (and, ASCII only, C1 and the bidi overrides)
    return json.dumps({"time": stamp, "event": event, **fields}, default=str).replace("\x7f", "\\u007f")


class JsonProgress(PlainProgress):
    """The same events as PlainProgress, as one JSON object per line: {"time": ..., "event": ..., ...}."""

    def _emit(self, event: RecordName, fields: dict) -> None:
        self._write(json_line(event, fields))

    def note(self, message: str) -> None:
        self._emit("note", {"message": message})

    def progress(self, done: int, total: int) -> None:
        if self.quiet:
            return
        rate = self._due(done, total)
        if rate is not None:
            self._emit("progress", {"done": done, "total": total, "series_per_second": round(rate, 3)})

    def event(self, name: EventName, fields: dict) -> None:
        self._emit(name, fields)


class RichProgress:
    """A live bar: series done / total, rate, elapsed and ETA; failed series printed above it."""

    def __init__(self, description: str = "forecasting") -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TaskProgressColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

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

    def __exit__(self, *exc: object) -> None:
        self._progress.__exit__(*exc)

    def note(self, message: str) -> None:
        self.console.print(printable(f"note: {message}"), markup=False, highlight=False)

    def event(self, name: EventName, fields: dict) -> None:
        if name == "failed":  # start and end are the bar and the final table
            key = ", ".join(f"{k}={v}" for k, v in fields["series"].items())
            self.console.print(printable(f"failed: {key}: {fields['stage']}: {fields['reason']}"), markup=False,
                               highlight=False)

    def progress(self, done: int, total: int) -> None:
        rate = f"{done / max(time.perf_counter() - self._t0, 1e-9):.1f}"
        if self._task is None:
            self._task = self._progress.add_task(self._description, total=total, rate=rate)
        # a table read block by block: its total is an estimate until the last block is read
        self._progress.update(self._task, completed=done, total=total, rate=rate)


def make_progress(quiet: bool, log_format: LogFormat = "text") -> PlainProgress | JsonProgress | RichProgress:
    """The display for where stderr goes: JSON lines for log_format "json"; for "text" a bar on a terminal,
    plain lines otherwise."""
    if log_format == "json":
        return JsonProgress(quiet=quiet)
    if not quiet and sys.stderr.isatty():
        return RichProgress()
    return PlainProgress(quiet=quiet)
