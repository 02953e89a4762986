"""The chunk-and-map core: split items into chunks, map a function over them on a backend, gather in order.

This is the classic `parallelize(data, func)` recipe (np.array_split into one part per core, Pool.map, concat)
grown up: chunks are balanced by a cost weight, there are a few chunks per worker so one long item cannot leave a
core idle, results come back in input order whatever order they finish in, an item that raises becomes a
`Failed` in its place, and a worker that dies costs only the item it was working on (see backends/).

It knows nothing of what the items are or what the function does; every command that works per series uses it.
"""

from __future__ import annotations

import heapq
import math
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterable, Literal, Sequence

if TYPE_CHECKING:
    from .backends.base import Backend

FailedKind = Literal["error", "worker-died", "timeout", "not-run"]


@dataclass(frozen=True)
class Failed:
    """Stands in the results for an item whose function raised or whose worker died.

    Attributes:
        reason: one line saying what happened, e.g. "ValueError: bad" or "worker died (signal SIGKILL) twice".
        kind: "error" when the function raised, "worker-died" when the process running it died,
            "timeout" when it ran past the backend's per-item timeout (its worker was stopped),
            "not-run" when the run stopped before the item was done.
    """

    reason: str
    kind: FailedKind = "error"


class MapInterrupted(KeyboardInterrupt):
    """Raised by `map_chunks` on Ctrl-C or SIGTERM; `partial` holds the results finished so far by item index,
    `workers` the label of the worker that ran each."""

    def __init__(self, partial: dict[int, Any], workers: dict[int, str] | None = None) -> None:
        super().__init__("interrupted")
        self.partial = partial
        self.workers = workers if workers is not None else {}


def usable_cores() -> int:
    """The cores this process may use: CPU affinity, then a cgroup CPU quota (containers), at least 1."""
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        n = os.cpu_count() or 1
    quota = _cgroup_cpu_quota()
    if quota is not None:
        n = min(n, max(1, int(quota)))
    return max(1, n)


def _cgroup_cpu_quota() -> float | None:
    """CPUs allowed by a container's CFS quota (cgroup v2 cpu.max, else v1 cfs_quota_us), or None if unlimited."""
    try:
        quota, period = open("/sys/fs/cgroup/cpu.max").read().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        quota = int(open("/sys/fs/cgroup/cpu/cpu.cfs_quota_us").read())
        period = int(open("/sys/fs/cgroup/cpu/cpu.cfs_period_us").read())
        return None if quota <= 0 else quota / period
    except (OSError, ValueError):
        return None


def effective_n_jobs(n_jobs: int) -> int:
    """Resolve n_jobs as joblib does: -1 means all usable cores, -2 all but one, and so on; at least 1."""
    if n_jobs == 0:
        raise ValueError("n_jobs must not be 0")
    if n_jobs < 0:
        return max(1, usable_cores() + 1 + n_jobs)
    return n_jobs


def chunk_count(weights: Sequence[float], n_jobs: int, chunks_per_job: int = 4,
                max_chunk_weight: float | None = None) -> int:
    """How many chunks to split items into: `chunks_per_job` per worker, and more when a chunk would weigh more
    than `max_chunk_weight`, so what one chunk carries to a worker (and holds there) stays bounded however many
    items there are."""
    n = max(1, n_jobs * chunks_per_job)
    if max_chunk_weight is not None and max_chunk_weight > 0:
        n = max(n, math.ceil(sum(weights) / max_chunk_weight))
    return n


def plan_chunks(weights: Sequence[float], n_jobs: int, chunks_per_job: int = 4,
                max_chunk_weight: float | None = None) -> list[list[int]]:
    """The chunks to map items of these weights over `n_jobs` workers: `split_into_chunks` into `chunk_count`."""
    return split_into_chunks(weights, chunk_count(weights, n_jobs, chunks_per_job, max_chunk_weight))


def split_into_chunks(weights: Sequence[float], n_chunks: int) -> list[list[int]]:
    """Split item indices into at most `n_chunks` chunks of near-equal total weight.

    Greedy longest-processing-time: heaviest item first, each into the lightest chunk so far. Chunks come back
    heaviest first (so a scheduler that hands them out in order starts the long work early), and the indices
    inside a chunk are ascending. Every index appears exactly once; no chunk is empty.

    Args:
        weights: one non-negative cost per item (e.g. the series length).
        n_chunks: how many chunks at most; fewer when there are fewer items.

    Returns:
        A list of chunks, each a list of item indices.
    """
    n = len(weights)
    n_chunks = max(1, min(n_chunks, n))
    if n == 0:
        return []
    order = sorted(range(n), key=lambda i: (-weights[i], i))
    heap = [(0.0, c) for c in range(n_chunks)]
    chunks: list[list[int]] = [[] for _ in range(n_chunks)]
    totals = [0.0] * n_chunks
    for i in order:
        total, c = heapq.heappop(heap)
        chunks[c].append(i)
        totals[c] = total + weights[i]
        heapq.heappush(heap, (totals[c], c))
    ranked = sorted(range(n_chunks), key=lambda c: -totals[c])
    return [sorted(chunks[c]) for c in ranked if chunks[c]]


def map_chunks(
    func: Callable[[Any], Any],
    items: Sequence[Any],
    backend: Backend,
    *,
    chunks: list[list[int]] | None = None,
    weights: Sequence[float] | None = None,
    chunks_per_job: int = 4,
    progress: Callable[[int, int], None] | None = None,
    on_result: Callable[[int, Any, str], None] | None = None,
) -> list[Any]:
    """Apply `func` to every item on `backend`, chunk by chunk, and return the results in input order.

    Args:
        func: a module-level (picklable) function of one item.
        items: the items; each must be picklable for a process backend.
        backend: an open backend (`with open_backend(...) as backend:`; see backends/base.py).
        chunks: the item indices of each chunk, from `plan_chunks`; made from `weights` when omitted.
        weights: cost per item for balancing; all equal when omitted.
        chunks_per_job: chunks per worker, when the chunks are made here.
        progress: called as progress(done, total) after each finished item.
        on_result: called as on_result(index, result, worker) as each item finishes, before `progress`, with the
            label of the worker that ran it; e.g. to checkpoint results while the map is still running.

    Returns:
        One entry per item: func(item), or a `Failed` if it raised or its worker died twice on it.

    Raises:
        MapInterrupted: on KeyboardInterrupt, with the results finished so far.
    """
    total = len(items)
    if chunks is None:
        weights = [1.0] * total if weights is None else weights
        chunks = plan_chunks(weights, backend.n_jobs, chunks_per_job)
    results: dict[int, Any] = {}
    workers: dict[int, str] = {}
    try:
        for index, result, worker in backend.map(func, [[(i, items[i]) for i in c] for c in chunks]):
            results[index] = result
            workers[index] = worker
            if on_result is not None:
                on_result(index, result, worker)
            if progress is not None:
                progress(len(results), total)
    except KeyboardInterrupt:
        raise MapInterrupted(results, workers) from None
    missing = [i for i in range(total) if i not in results]
    if missing:  # a backend bug, not a user's problem: say so rather than return a short list
        raise RuntimeError(f"backend {type(backend).__name__} returned no result for items {missing[:5]}")
    return [results[i] for i in range(total)]


def map_stream(func: Callable[[Any], Any], chunks: Iterable[list[tuple[int, Any]]], backend: Backend,
               on_result: Callable[[int, Any, str], None]) -> None:
    """Apply `func` to the items of `chunks`, (index, item) pairs made as the backend asks for them (a generator
    that reads as it goes), handing each result to on_result(index, result, worker) as it finishes. Nothing is
    gathered here, so what is held is what the caller keeps.

    Raises:
        MapInterrupted: on KeyboardInterrupt (every result finished so far has been handed over).
    """
    try:
        for index, result, worker in backend.map(func, chunks):
            on_result(index, result, worker)
    except KeyboardInterrupt:
        raise MapInterrupted({}, {}) from None
