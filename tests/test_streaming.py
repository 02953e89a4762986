"""Reading the table by series blocks (--block-rows): a table read in blocks much smaller than itself gives what a
run that reads it whole gives, for a sorted CSV, an unsorted one and a multi-file Parquet dataset; a series cut by
a block boundary is one series; an interrupted run by blocks resumes; errors name the table's row."""

import dataclasses
import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import make_table
from fakes import StopAfter

from forecast.config import ForecastConfig, ModelOptions
from forecast.errors import InputError
from forecast.progress import SilentReporter
from forecast.runner import LiveOutputs, run_forecast
from forecast.sources import open_source
from forecast.sources.table import StreamPlan, read_table, split_series, stream_series

MODEL = ModelOptions(horizon=7, seed=3, uncertainty_samples=50)
# timings.csv's columns that depend on the machine, not on the series
_CLOCKS = ["fit_seconds", "predict_seconds", "cpu_seconds", "worker"]
# summary fields that say what was read and served, which reading by blocks must not change
_SAME = ["status", "rows", "series_total", "series_done", "series_ok", "series_failed", "series_fallback",
         "series_below_min_obs", "series_skipped", "table_freq", "series_own_freq", "key_types", "verdicts"]


def _table(n_series: int = 12, days: int = 60) -> pd.DataFrame:
    """Store/item series with integer store keys, two short series (--min-obs sends them to the fallback) and one
    with no values (it fails, and is recorded)."""
    frame = make_table(n_series=n_series, days=days, id_cols=("store", "item"))
    frame["store"] = frame["store"].str.removeprefix("store").astype(int)
    short = frame["item"] == "item1"
    frame = frame[~short | (frame["ds"] >= frame["ds"].max() - pd.Timedelta(days=9))]
    frame.loc[(frame["item"] == "item2") & (frame["store"] == 0), "y"] = np.nan
    return frame.sort_values(["store", "item", "ds"]).reset_index(drop=True)


def _run(path, out, **options) -> dict:
    config = ForecastConfig(model=MODEL, id_cols=["store", "item"], out_dir=out, fallback="naive",
                            max_failed_frac=0.2, run_id="r", **{"n_jobs": 1, **options})
    result = run_forecast(path, config)
    assert result.exit_code == 0, result.summary
    return result.summary


def _same_run(a, b) -> None:
    """Two runs' outputs are the same: forecasts and params bit for bit, timings and errors but for the clocks."""
    pd.testing.assert_frame_equal(pd.read_parquet(a / "forecasts.parquet"), pd.read_parquet(b / "forecasts.parquet"))
    pd.testing.assert_frame_equal(pd.read_parquet(a / "params.parquet"), pd.read_parquet(b / "params.parquet"))
    pd.testing.assert_frame_equal(pd.read_csv(a / "timings.csv").drop(columns=_CLOCKS),
                                  pd.read_csv(b / "timings.csv").drop(columns=_CLOCKS))
    pd.testing.assert_frame_equal(pd.read_csv(a / "errors.csv"), pd.read_csv(b / "errors.csv"))
    sa, sb = (json.loads((d / "summary.json").read_text()) for d in (a, b))
    assert {k: sa[k] for k in _SAME} == {k: sb[k] for k in _SAME}


@pytest.fixture(autouse=True)
def small_live_writes(monkeypatch):
    """Outputs written during the map a few series at a time, as a large table's are (LiveOutputs.batch at a
    time)."""
    monkeypatch.setattr(LiveOutputs, "batch", 3)


@pytest.fixture
def whole(tmp_path):
    """The table as a sorted CSV, and the outputs of a run that reads it whole."""
    path = tmp_path / "sorted.csv"
    _table().to_csv(path, index=False)
    _run(path, tmp_path / "whole", block_rows=0)
    return path, tmp_path / "whole"


def test_a_sorted_csv_read_in_small_blocks_gives_what_a_whole_read_gives(tmp_path, whole):
    path, whole_out = whole
    summary = _run(path, tmp_path / "blocks", block_rows=100, n_jobs=2)  # ~7 blocks, fed to two workers
    _same_run(tmp_path / "blocks", whole_out)
    assert summary["key_types"] == {"store": "int", "item": "text"}
    assert summary["series_below_min_obs"] == 2 and summary["series_failed"] == 1


def test_an_unsorted_csv_is_partitioned_and_gives_what_a_whole_read_gives(tmp_path, whole):
    path, whole_out = whole
    shuffled = tmp_path / "shuffled.csv"
    pd.read_csv(path).sample(frac=1.0, random_state=1).to_csv(shuffled, index=False)
    summary = _run(shuffled, tmp_path / "blocks", block_rows=150)
    _same_run(tmp_path / "blocks", whole_out)
    assert any("partitioned into buckets" in note for note in summary["notes"])
    assert not list((tmp_path / "blocks").rglob("b0*.parquet"))  # the buckets were in the run's temp dir


def test_a_table_sorted_at_first_and_not_later_is_read_again_partitioned(tmp_path, whole):
    path, whole_out = whole
    frame = pd.read_csv(path, parse_dates=["ds"])
    late = tmp_path / "late.parquet"  # sorted, but for one row of the first series moved to the end
    moved = frame.index[(frame["store"] == 0) & (frame["item"] == "item0")][-1]
    pq.write_table(pa.Table.from_pandas(pd.concat([frame.drop(index=moved), frame.loc[[moved]]]),
                                        preserve_index=False), late, row_group_size=50)
    summary = _run(late, tmp_path / "blocks", block_rows=100)
    _same_run(tmp_path / "blocks", whole_out)
    assert any("set aside" in note for note in summary["notes"])


def test_a_table_grouped_by_series_in_another_order_is_read_once(tmp_path, whole):
    path, whole_out = whole
    frame = pd.read_csv(path)
    grouped = tmp_path / "grouped.csv"  # each series' rows together, the series in reverse key order
    frame.iloc[::-1].to_csv(grouped, index=False)
    summary = _run(grouped, tmp_path / "blocks", block_rows=100)
    _same_run(tmp_path / "blocks", whole_out)
    assert not any("partitioned" in note for note in summary["notes"])


def test_a_key_column_of_integers_that_turns_to_text_in_a_later_block_is_text_throughout(tmp_path):
    # the first blocks' store keys are integers, the last block's a code: as a whole read, the column is text
    frame = _table()
    frame["store"] = frame["store"].astype(str).replace({"1": "S1"})
    path = tmp_path / "codes.csv"
    frame.to_csv(path, index=False)
    _run(path, tmp_path / "whole", block_rows=0)
    summary = _run(path, tmp_path / "blocks", block_rows=100)
    _same_run(tmp_path / "blocks", tmp_path / "whole")
    assert summary["key_types"] == {"store": "text", "item": "text"}
    stores = pd.read_parquet(tmp_path / "blocks" / "forecasts.parquet")["store"]
    assert stores.unique().tolist() == ["0", "S1"]


def test_a_partitioned_parquet_dataset_is_one_table(tmp_path, whole):
    path, whole_out = whole
    dataset = tmp_path / "dataset"
    pq.write_to_dataset(pa.Table.from_pandas(pd.read_csv(path, parse_dates=["ds"]), preserve_index=False),
                        dataset, partition_cols=["store"])
    assert len(list(dataset.rglob("*.parquet"))) == 2
    _run(dataset, tmp_path / "blocks", block_rows=100)
    _same_run(tmp_path / "blocks", whole_out)


def test_a_series_cut_by_a_block_boundary_is_still_one_series(tmp_path):
    frame = make_table(n_series=3, days=50)
    path = tmp_path / "t.csv"
    frame.to_csv(path, index=False)
    plan = StreamPlan(("unique_id",), "ds", (("target", "--target-col", "y"),), ("y",), (), "error", 70)
    blocks = list(stream_series(open_source(path), plan, tmp_path / "spill"))
    assert len(blocks) > 1
    got = [s for b in blocks for s in b.series]
    want = split_series(read_table(path, ["unique_id"], "ds", "y")[0], ["unique_id"])
    assert [s.key for s in got] == [s.key for s in want] == [("S0",), ("S1",), ("S2",)]
    for a, b in zip(got, want):
        assert np.array_equal(a.ds, b.ds) and np.array_equal(a.y, b.y)
    assert [b.start for b in blocks] == list(np.cumsum([0] + [len(b.series) for b in blocks[:-1]]))


@pytest.mark.slow
def test_an_interrupted_run_by_blocks_resumes_to_what_a_whole_read_gives(tmp_path, whole):
    path, whole_out = whole
    out = tmp_path / "out"
    config = ForecastConfig(model=MODEL, id_cols=["store", "item"], out_dir=out, fallback="naive", n_jobs=1,
                            max_failed_frac=0.2, run_id="r", block_rows=100)
    stopped = run_forecast(path, config, reporter=StopAfter(5))
    assert stopped.exit_code == 130 and list((out / "parts").glob("part-*.parquet"))
    resumed = run_forecast(path, dataclasses.replace(config, resume=True))
    assert resumed.exit_code == 0 and resumed.summary["series_resumed"] >= 5
    _same_run(out, whole_out)


def test_a_bad_value_in_a_later_block_names_its_row_in_the_table(tmp_path):
    frame = make_table(n_series=4, days=40)
    frame["y"] = frame["y"].astype(object)
    frame.loc[130, "y"] = "n/a?"
    path = tmp_path / "t.csv"
    frame.to_csv(path, index=False)
    config = ForecastConfig(model=MODEL, out_dir=tmp_path / "out", n_jobs=1, block_rows=50)
    with pytest.raises(InputError, match=r"'n/a\?' at row 131 "):
        run_forecast(path, config)
    assert not (tmp_path / "out").exists()  # the series of the blocks before it are not kept: nothing written


class _Heard(SilentReporter):
    def __init__(self):
        self.progress_calls, self.events = [], []

    def progress(self, done, total):
        self.progress_calls.append((done, total))

    def event(self, name, fields):
        self.events.append((name, fields))


def test_progress_estimates_the_series_total_until_the_table_is_read(tmp_path, whole):
    path, _ = whole
    heard = _Heard()
    config = ForecastConfig(model=MODEL, id_cols=["store", "item"], out_dir=tmp_path / "out", fallback="naive",
                            max_failed_frac=0.2, n_jobs=1, block_rows=100)
    run_forecast(path, config, reporter=heard)
    start = dict(heard.events)["start"]
    assert start["series_total_estimated"] and 6 <= start["series_total"] <= 24  # the table has 12
    assert heard.progress_calls[-1] == (12, 12)
    assert all(done <= total for done, total in heard.progress_calls)


def test_repeated_rows_found_by_a_run_name_the_forgotten_key_column(tmp_path):
    frame = make_table(n_series=4, days=20, id_cols=("store", "item"))  # store0/1 x item0/1
    path = tmp_path / "t.csv"
    frame.to_csv(path, index=False)
    config = ForecastConfig(model=MODEL, id_cols=["store"], out_dir=tmp_path / "out", n_jobs=1, block_rows=30)
    with pytest.raises(InputError, match=r"every row is unique with --id-col item added to the key"):
        run_forecast(path, config)


class _Outputs:
    """What LiveOutputs writes into: the indices of each write, and whether it was aborted."""

    def __init__(self):
        self.writes, self.aborted = [], False

    def write(self, group, done):
        self.writes.append([i for i, _ in group])

    def abort(self):
        self.aborted = True


def _result(key):
    return type("R", (), {"key": key})()


def test_results_are_written_in_index_order_once_every_series_before_them_is_settled(monkeypatch):
    monkeypatch.setattr(LiveOutputs, "batch", 2)
    outputs = _Outputs()
    live = LiveOutputs(outputs)
    for i in (1, 2, 4):  # series 0 is still being fitted: nothing can be written
        live.add(i, _result(("a", i)))
    assert outputs.writes == []
    live.add(0, _result(("a", 0)))  # 0, 1, 2 are settled; 4 waits for 3
    assert outputs.writes == [[0, 1, 2]] and live.next == 3
    assert live.usable(True) and outputs.writes == [[0, 1, 2]]  # the end takes 3 onwards from the parts
    assert not outputs.aborted


def test_live_outputs_stop_when_a_key_column_changes_type_or_too_much_is_held(monkeypatch):
    outputs = _Outputs()
    live = LiveOutputs(outputs)
    live.add(0, _result((1, "x")))
    live.add(1, _result(("00123", "x")))  # integers, then text: the column becomes text at the end
    assert outputs.aborted and not live.usable(True)

    monkeypatch.setattr(LiveOutputs, "limit", 3)
    outputs = _Outputs()
    live = LiveOutputs(outputs)
    for i in range(1, 6):  # series 0 is stuck in a long fit
        live.add(i, _result(("a",)))
    assert outputs.aborted and not live.usable(True)


def test_an_interrupted_run_writes_every_series_it_finished_and_no_other(tmp_path):
    path = tmp_path / "t.csv"
    _table(n_series=12).to_csv(path, index=False)
    out = tmp_path / "out"
    stopped = run_forecast(path, ForecastConfig(model=MODEL, id_cols=["store", "item"], out_dir=out, n_jobs=1,
                                                fallback="naive", max_failed_frac=0.2, block_rows=100),
                           reporter=StopAfter(5))
    assert stopped.exit_code == 130
    timings = pd.read_csv(out / "timings.csv")
    forecasts = pd.read_parquet(out / "forecasts.parquet")
    done = stopped.summary["series_done"]
    assert 5 <= done < 12 and len(timings) == done and not timings.duplicated(["store", "item"]).any()
    served = timings[timings["status"] != "failed"]  # the series with no values has no forecast
    assert len(forecasts) == len(served) * MODEL.horizon
    assert set(map(tuple, forecasts[["store", "item"]].drop_duplicates().values)) == set(
        map(tuple, served[["store", "item"]].values))
    assert list(timings.sort_values(["store", "item"]).index) == list(range(done))  # in key order


def test_a_killed_runs_half_written_outputs_are_removed_by_the_next_run(tmp_path, whole):
    path, whole_out = whole
    out = tmp_path / "out"
    out.mkdir()
    left = [out / ".forecasts.parquet.k1ll3d.tmp", out / ".timings.csv.k1ll3d.tmp"]
    for f in left:
        f.write_bytes(b"half a file")
    _run(path, out, block_rows=100)
    assert not any(f.exists() for f in left)
    assert not list(out.glob(".*.tmp"))
    _same_run(out, whole_out)
