"""The summary's speed figures: speed-up from the series' CPU time, the wall-based figures beside it."""

import json
import time
from types import SimpleNamespace

import pandas as pd
from conftest import make_table
from typer.testing import CliRunner

from forecast.cli import app
from forecast.timing import Clock, Tally, run_timing, series_cpu


def test_a_run_that_got_half_the_cpu_reports_half_the_efficiency_not_the_wall_figure():
    # two workers whose series each waited for a core half the time: 1 s of wall each, 0.5 s of CPU
    results = [SimpleNamespace(key=(f"S{i}",), fit_seconds=0.9, predict_seconds=0.1, cpu_seconds=0.5)
               for i in range(20)]
    clock = Clock()
    clock._wall0 = time.perf_counter() - 10.0  # the run took 10 s of wall time
    figures = run_timing(clock, Tally.of(results, results), n_jobs=2, id_cols=("unique_id",))
    assert abs(figures["speedup"] - 1.0) < 0.01 and abs(figures["parallel_efficiency"] - 0.5) < 0.01
    assert abs(figures["speedup_wall"] - 2.0) < 0.01 and abs(figures["parallel_efficiency_wall"] - 1.0) < 0.01
    assert figures["task_cpu_seconds"] == 10.0 and figures["task_wall_seconds"] == 20.0


def test_series_cpu_counts_work_finer_than_a_clock_tick():
    t0 = series_cpu()
    x = 0
    while series_cpu() - t0 < 0.002:  # 2 ms of work, a fifth of a clock tick
        x += 1
    assert 0.002 <= series_cpu() - t0 < 0.01


def test_run_reports_each_series_cpu_time_and_the_speed_up_from_it(tmp_path, write_csv):
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["run", str(write_csv(make_table(n_series=6, days=200))), "--horizon", "7",
                                      "--n-jobs", "1", "--out", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    timings = pd.read_csv(out / "timings.csv")
    assert (timings["cpu_seconds"] > 0).all()
    # in-process, one thread: a series cannot use more CPU than the wall time it took (plus timer resolution)
    assert (timings["cpu_seconds"] <= timings["fit_seconds"] + timings["predict_seconds"] + 0.02).all()
    summary = json.loads((out / "summary.json").read_text())
    assert abs(summary["task_cpu_seconds"] - timings["cpu_seconds"].sum()) < 1e-6
    assert abs(summary["speedup"] - summary["task_cpu_seconds"] / summary["wall_seconds"]) < 0.01
