"""Tiny module-level functions for testing the chunk-and-map core without Prophet (workers import them)."""

import io
import os
import signal
from pathlib import Path

from forecast.progress import JsonProgress


def add_one(x):
    return x + 1


def raise_on_7(x):
    if x == 7:
        raise ValueError("seven is not allowed")
    return x * 10


def kill_once(item):
    """item = (value, marker): the first call with a marker path kills its own process, the second returns."""
    value, marker = item
    if marker is not None and not Path(marker).exists():
        Path(marker).write_text("killed")
        os.kill(os.getpid(), signal.SIGKILL)
    return value


def kill_always(item):
    value, doomed = item
    if doomed:
        os.kill(os.getpid(), signal.SIGKILL)
    return value



def failing_init():
    raise ImportError("no module named prophet_for_test")


def sleep_then_pid(seconds):
    import time

    time.sleep(seconds)
    return os.getpid()


def sleep_in_child(item):
    """item = (seconds, pid_file): sleep in a child process (as Prophet waits for Stan), its pid written first."""
    import subprocess

    seconds, pid_file = item
    child = subprocess.Popen(["sleep", str(seconds)])
    Path(pid_file).write_text(str(child.pid))
    child.wait()
    return seconds


def unpicklable_on_2(x):
    """x, except for 2: a lambda, which cannot be pickled back to the main process."""
    return (lambda: x) if x == 2 else x


def die_while_starting(marker_dir, times):
    """An initializer whose first `times` calls (counted by files in marker_dir) kill their own worker."""
    done = len(list(Path(marker_dir).iterdir()))
    if done < times:
        Path(marker_dir, str(done)).write_text("killed")
        os.kill(os.getpid(), signal.SIGKILL)


class StopAfter(JsonProgress):
    """A reporter whose progress raises KeyboardInterrupt, as Ctrl-C would, once `n` series are done."""

    def __init__(self, n: int):
        super().__init__(io.StringIO())
        self.n = n

    def progress(self, done: int, total: int) -> None:
        if done >= self.n:
            raise KeyboardInterrupt
