"""The chunk-and-map core and its backends, with tiny fake functions instead of Prophet."""

import fakes
import pytest

from forecast.backends import backend_class, open_backend
from forecast.backends.process import ProcessBackend
from forecast.backends.sequential import SequentialBackend
from forecast.config import ForecastConfig
from forecast.core import Failed, chunk_count, effective_n_jobs, map_chunks, split_into_chunks, usable_cores
from forecast.errors import BackendError


@pytest.mark.parametrize("n_items,n_chunks", [(0, 4), (1, 1), (1, 8), (10, 3), (10, 10), (5, 50), (100, 7)])
def test_every_item_exactly_once_and_no_empty_chunk(n_items, n_chunks):
    chunks = split_into_chunks([1.0 + i % 3 for i in range(n_items)], n_chunks)
    flat = sorted(i for c in chunks for i in c)
    assert flat == list(range(n_items))
    assert all(chunks)
    assert len(chunks) == min(n_chunks, n_items)


def test_chunks_are_balanced_by_weight():
    # one long series and many short ones: a count-based split would put the long one beside many others
    weights = [1000] + [10] * 100
    chunks = split_into_chunks(weights, 4)
    totals = sorted(sum(weights[i] for i in c) for c in chunks)
    assert chunks[0] == [0]  # the heavy item alone, handed out first
    assert totals[-1] == 1000
    assert totals[1] - totals[0] <= 10  # the short ones spread evenly over the other chunks


def test_effective_n_jobs():
    assert effective_n_jobs(3) == 3
    assert effective_n_jobs(-1) == usable_cores()
    assert effective_n_jobs(-100) == 1
    with pytest.raises(ValueError):
        effective_n_jobs(0)


@pytest.mark.parametrize("chunks_per_job", [1, 3, 100])
def test_process_equals_sequential_in_input_order(chunks_per_job):
    items = list(range(23))
    weights = [(i * 7) % 5 + 1 for i in items]
    with SequentialBackend() as seq:
        expected = map_chunks(fakes.add_one, items, seq, weights=weights, chunks_per_job=chunks_per_job)
    with ProcessBackend(n_jobs=2) as pool:
        got = map_chunks(fakes.add_one, items, pool, weights=weights, chunks_per_job=chunks_per_job)
    assert got == expected == [i + 1 for i in items]


@pytest.mark.slow
def test_work_is_spread_over_workers():
    with ProcessBackend(n_jobs=2) as pool:
        pids = map_chunks(fakes.sleep_then_pid, [0.3] * 8, pool, chunks_per_job=4)
    assert len(set(pids)) == 2


@pytest.mark.parametrize("backend", [SequentialBackend, ProcessBackend])
def test_one_item_raising_fails_only_that_item(backend):
    with backend(n_jobs=2) as b:
        results = map_chunks(fakes.raise_on_7, list(range(10)), b)
    assert results[7] == Failed("ValueError: seven is not allowed", "error")
    assert [r for i, r in enumerate(results) if i != 7] == [i * 10 for i in range(10) if i != 7]


def test_progress_reports_every_item():
    seen = []
    with SequentialBackend() as b:
        map_chunks(fakes.add_one, [1, 2, 3], b, progress=lambda done, total: seen.append((done, total)))
    assert seen == [(1, 3), (2, 3), (3, 3)]


def test_killed_worker_item_is_retried_on_a_fresh_worker(tmp_path):
    marker = tmp_path / "killed-once"
    items = [(i, str(marker) if i == 5 else None) for i in range(12)]
    with ProcessBackend(n_jobs=2) as pool:
        results = map_chunks(fakes.kill_once, items, pool, chunks_per_job=2)
    assert marker.exists()  # a worker really was killed
    assert results == list(range(12))


def test_item_that_kills_its_worker_twice_is_recorded_as_failed():
    items = [(i, i == 3) for i in range(10)]
    with ProcessBackend(n_jobs=2) as pool:
        results = map_chunks(fakes.kill_always, items, pool, chunks_per_job=1)
    assert isinstance(results[3], Failed)
    assert results[3].kind == "worker-died"
    assert "SIGKILL" in results[3].reason and "2 times" in results[3].reason
    assert [r for i, r in enumerate(results) if i != 3] == [i for i in range(10) if i != 3]


def test_a_result_that_cannot_be_sent_back_fails_only_its_item():
    # the worker sends finished items in batches: the one unpicklable result must not take its batch with it
    with ProcessBackend(n_jobs=2) as pool:
        results = map_chunks(fakes.unpicklable_on_2, list(range(8)), pool, chunks_per_job=1)
    assert isinstance(results[2], Failed) and results[2].reason.startswith("result cannot be sent back")
    assert [r for i, r in enumerate(results) if i != 2] == [i for i in range(8) if i != 2]


def test_workers_that_cannot_start_give_a_clear_error():
    with pytest.raises(BackendError, match="could not start: ImportError: no module named prophet_for_test"):
        with ProcessBackend(n_jobs=2, initializer=fakes.failing_init) as pool:
            map_chunks(fakes.add_one, [1, 2], pool)


def test_a_worker_killed_while_starting_is_replaced_but_a_set_up_that_kills_every_worker_is_an_error(tmp_path):
    # once or twice is the OOM killer or an operator: the run goes on with a fresh worker
    (tmp_path / "twice").mkdir()
    with ProcessBackend(n_jobs=1, initializer=fakes.die_while_starting, initargs=(tmp_path / "twice", 2)) as pool:
        assert map_chunks(fakes.add_one, [1, 2, 3], pool) == [2, 3, 4]
    (tmp_path / "always").mkdir()
    with pytest.raises(BackendError, match=r"died while starting \(signal SIGKILL\), 3 workers in a row"):
        with ProcessBackend(n_jobs=1, initializer=fakes.die_while_starting,
                            initargs=(tmp_path / "always", 99)) as pool:
            map_chunks(fakes.add_one, [1, 2, 3], pool)


def test_unknown_backend():
    with pytest.raises(BackendError, match="unknown backend 'gpu'; expected one of local, dask"):
        backend_class("gpu")


def test_the_local_backend_is_this_process_for_one_job_and_a_pool_otherwise():
    assert isinstance(open_backend(ForecastConfig(n_jobs=1)), SequentialBackend)
    assert isinstance(open_backend(ForecastConfig(n_jobs=2)), ProcessBackend)
    # a timeout can only be enforced by stopping a worker process
    assert isinstance(open_backend(ForecastConfig(n_jobs=1, fit_timeout=5)), ProcessBackend)


def test_backends_label_each_result_with_its_worker():
    import os
    import socket

    with SequentialBackend() as seq:
        assert {w for _, _, w in seq.map(fakes.add_one, [[(0, 1), (1, 2)]])} == {f"{socket.gethostname()}:{os.getpid()}"}
    with ProcessBackend(n_jobs=2) as pool:
        labelled = list(pool.map(fakes.sleep_then_pid, [[(0, 0.2)], [(1, 0.2)]]))
    assert {w for _, _, w in labelled} == {f"{socket.gethostname()}:{pid}" for _, pid, _ in labelled}


def test_chunk_count_keeps_chunks_per_job_for_small_inputs_and_caps_chunk_weight_for_large():
    assert chunk_count([10.0] * 100, n_jobs=2, chunks_per_job=4, max_chunk_weight=1_000) == 8
    # 100 items of 1,000 rows with at most 10,000 rows a chunk: 10 chunks, more than 2 x 4
    assert chunk_count([1_000.0] * 100, n_jobs=2, chunks_per_job=4, max_chunk_weight=10_000) == 10
    chunks = split_into_chunks([1_000.0] * 100, chunk_count([1_000.0] * 100, 2, 4, 10_000))
    assert max(len(c) for c in chunks) * 1_000 <= 10_000
