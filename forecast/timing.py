"""Run-level timing: wall and CPU clocks for the run and its stages, and the figures derived from per-series times.

Per-series seconds are measured inside the workers (model.py, backtest.py) and only added up here.
"""

from __future__ import annotations

import heapq
import numbers
import resource
import time
from contextlib import contextmanager
from typing import Iterator, Literal, Sequence

# The stages a job's clock times (summary.json's stage seconds); the map is fit_predict for a run, backtest for a
# backtest.
ClockStage = Literal["read", "triage", "fit_predict", "backtest", "fallback", "write"]


def cpu_seconds() -> float:
    """CPU time of this process and of its finished children (workers, and the Stan processes they waited for)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def series_cpu() -> float:
    """This process's CPU time to the nanosecond (time.process_time), plus that of its finished children (the Stan
    processes a fit waited for): what one series cost a worker. os.times alone counts in clock ticks (10 ms), as
    much as a whole series of the fast engine."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)  # 0.6 us a call; os.times takes 8
    return time.process_time() + children.ru_utime + children.ru_stime


class Clock:
    """Wall and CPU time of a run, with named stages: `with clock.stage("read"): ...`."""

    def __init__(self) -> None:
        self._wall0 = time.perf_counter()
        self._cpu0 = cpu_seconds()
        self.stages: dict[str, float] = {}

    @contextmanager
    def stage(self, name: ClockStage) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.stages[name] = self.stages.get(name, 0.0) + time.perf_counter() - t0

    @property
    def wall(self) -> float:
        return time.perf_counter() - self._wall0

    @property
    def cpu(self) -> float:
        return cpu_seconds() - self._cpu0


def throughput(n_series: int, task_cpu: float, task_wall: float, wall_seconds: float,
               n_jobs: int) -> dict[str, float]:
    """series_per_second; speedup (the series' CPU seconds per second of wall time) and parallel_efficiency
    (speedup per job); and the same from the series' wall seconds, named as such.

    The CPU figures are the honest ones: on a busy machine a worker waiting for a core still counts its series'
    wall time, so a run whose workers got 70 % of the CPU reported a wall-based efficiency of 0.94.
    """
    wall = max(wall_seconds, 1e-9)
    jobs = max(n_jobs, 1)
    return {
        "series_per_second": n_series / wall,
        "speedup": task_cpu / wall,
        "parallel_efficiency": task_cpu / wall / jobs,
        "speedup_wall": task_wall / wall,
        "parallel_efficiency_wall": task_wall / wall / jobs,
    }


def _key_value(v: object) -> int | str:
    """A key value for JSON: an integer key stays an integer, anything else is text."""
    if isinstance(v, numbers.Integral) and not isinstance(v, bool):
        return int(v)
    return str(v)


class Tally:
    """The timing figures of a job's series, counted as each is written: totals and the slowest few, so that a run
    of any size holds a few numbers here, not a record per series."""

    keep = 5  # the slowest series a summary names

    def __init__(self) -> None:
        self.n = 0  # series counted
        self.n_counted = 0  # of which this run did the work (the throughput counts only those)
        self.task_cpu = 0.0
        self.task_wall = 0.0
        self._slowest: list[tuple[float, int, tuple]] = []  # a min-heap of (seconds, -order, key)

    def add(self, key: tuple, fit_seconds: float, predict_seconds: float, cpu_seconds: float, counted: bool) -> None:
        seconds = fit_seconds + predict_seconds
        self.n += 1
        item = (seconds, -self.n, key)  # a tie: the earlier series first, as a stable sort has it
        if len(self._slowest) < self.keep:
            heapq.heappush(self._slowest, item)
        elif item[:2] > self._slowest[0][:2]:
            heapq.heapreplace(self._slowest, item)
        if counted:
            self.n_counted += 1
            self.task_cpu += cpu_seconds
            self.task_wall += seconds

    @classmethod
    def of(cls, results: Sequence, counted: Sequence) -> Tally:
        """The tally of `results` (anything with key, fit_seconds, predict_seconds, cpu_seconds), counting the
        work of those also in `counted`."""
        tally, mine = cls(), {id(r) for r in counted}
        for r in results:
            tally.add(r.key, r.fit_seconds, r.predict_seconds, r.cpu_seconds, id(r) in mine)
        return tally

    def slowest(self, id_cols: Sequence[str]) -> list[dict]:
        """The slowest series, as {id_col: value, ..., "seconds": s}, slowest first."""
        order = sorted(self._slowest, key=lambda item: item[:2], reverse=True)
        return [dict(zip(id_cols, (_key_value(v) for v in key)), seconds=round(seconds, 4))
                for seconds, _, key in order]


def run_timing(clock: Clock, tally: Tally, n_jobs: int, id_cols: Sequence[str]) -> dict:
    """The timing part of a summary, read off one wall-clock instant so its figures agree with each other.

    Args:
        clock: the run's clock.
        tally: the series' figures (see Tally).
        n_jobs: workers.
        id_cols: the key columns, to name the slowest series.
    """
    wall = clock.wall
    return timing_fields(wall, clock.cpu, dict(clock.stages), tally.n_counted, tally.task_cpu, tally.task_wall,
                         n_jobs, tally.slowest(id_cols))


def timing_fields(wall: float, cpu: float, stages: dict[str, float], n_counted: int, task_cpu: float,
                  task_wall: float, n_jobs: int, slowest_series: list[dict]) -> dict:
    """The timing part of a summary from its figures: a local run's (`run_timing`) or a Spark run's aggregates."""
    return {
        "wall_seconds": wall,
        "cpu_seconds": cpu,
        "stage_seconds": stages,
        "task_cpu_seconds": task_cpu,
        "task_wall_seconds": task_wall,
        **throughput(n_counted, task_cpu, task_wall, wall, n_jobs),
        "slowest_series": slowest_series,
    }
