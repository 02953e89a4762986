"""The process backend's per-item timeout and worker recycling, with tiny fakes instead of Prophet."""

import os
import time
from pathlib import Path

import fakes
import pytest

from forecast.backends.process import ProcessBackend
from forecast.backends.sequential import SequentialBackend
from forecast.core import Failed, map_chunks


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    # a zombie still answers kill(0); it is gone for our purpose once it no longer runs
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"
    except OSError:
        return True


@pytest.mark.slow
def test_item_past_the_timeout_fails_and_its_chunk_goes_on(tmp_path):
    pid_file = tmp_path / "child.pid"
    # one chunk of five: the hanging item is in the middle, so the rest of its chunk must be requeued
    items = [(0.01, str(tmp_path / f"p{i}")) for i in range(5)]
    items[2] = (300, str(pid_file))
    with ProcessBackend(n_jobs=1, item_timeout=1.5) as pool:
        results = map_chunks(fakes.sleep_in_child, items, pool, chunks_per_job=1)
        assert pool.n_jobs == 1 and len(pool._workers) == 1  # a fresh worker took the killed one's place
    assert results[2] == Failed("ran longer than 1.5 s; its worker was stopped", "timeout")
    assert [r for i, r in enumerate(results) if i != 2] == [0.01] * 4
    # the process the hung item started (as Prophet starts Stan) was stopped with its worker
    child = int(pid_file.read_text())
    for _ in range(50):
        if _gone(child):
            break
        time.sleep(0.1)
    assert _gone(child)


@pytest.mark.slow
def test_no_timeout_by_default_for_slow_items():
    with ProcessBackend(n_jobs=2) as pool:
        pids = map_chunks(fakes.sleep_then_pid, [0.5, 0.5, 0.5], pool)
    assert all(isinstance(p, int) for p in pids)


@pytest.mark.slow
def test_the_timeout_is_per_item_not_per_chunk():
    # one chunk of 30 quick items takes well over the timeout; no single item does, so none may time out
    with ProcessBackend(n_jobs=1, item_timeout=0.5) as pool:
        pids = map_chunks(fakes.sleep_then_pid, [0.04] * 30, pool, chunks_per_job=1)
    assert all(isinstance(p, int) for p in pids) and len(set(pids)) == 1


def test_sequential_backend_cannot_take_a_timeout():
    with pytest.raises(TypeError):
        SequentialBackend(1, item_timeout=5)


def test_workers_are_recycled_between_chunks_after_max_items():
    items = [0.0] * 12
    with ProcessBackend(n_jobs=1, max_items_per_worker=3, life_per_start=0.0) as pool:
        pids = map_chunks(fakes.sleep_then_pid, items, pool, chunks=[[i, i + 1] for i in range(0, 12, 2)])
        recycled = pool.recycled
    assert recycled == 2  # after chunks 2 and 4 (4 items each time); not after the last, nothing is left
    assert len(set(pids)) == 3
    # items of one chunk ran on one worker: pids change only at chunk boundaries
    assert all(pids[i] == pids[i + 1] for i in range(0, 12, 2))


def test_a_worker_of_quick_items_is_not_recycled_before_its_start_is_paid_for():
    # 12 instant items would pass max_items 3 times over, but the worker has not yet lived 1,000 times its own
    # start: replacing it would cost more than its items (fast-engine fits of ~2 ms against a ~1 s start)
    items = [0.0] * 12
    with ProcessBackend(n_jobs=1, max_items_per_worker=3, life_per_start=1000.0) as pool:
        pids = map_chunks(fakes.sleep_then_pid, items, pool, chunks=[[i, i + 1] for i in range(0, 12, 2)])
        recycled = pool.recycled
    assert recycled == 0
    assert len(set(pids)) == 1
