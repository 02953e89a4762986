"""How fast does `forecast check` profile and triage a large catalogue, and what does vectorising buy?

Question: can 30,000 series x 2,000 rows (60 million rows) be profiled and triaged in seconds, with no per-series
Python loop? The table is generated in memory (reading a 60M-row file is io.read_table's cost, measured by the
run benchmarks, not this one): daily series ending on the same day, Poisson demand, with a share of
intermittent, gappy and stale series so every rule has work. The baseline in the same run is the obvious
per-series loop (split the table into series, then numpy and freq.infer_freq per series) on a subset, reported
in series/s. Profiling is single-process, so cores do not enter, but the machine may be shared: say so.

usage: python benchmarks/bench_check.py [--series 30000] [--rows 2000] [--repeat 3] [--baseline-series 1000]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import pandas as pd

from forecast.config import TriageRules
from forecast.core import usable_cores
from forecast.freq import infer_freq
from forecast.profile import profile_table, triage
from forecast.sources import split_series
from forecast.types import SeriesProblem

from common import write_rows


def make_table(n_series: int, rows: int, seed: int = 0) -> pd.DataFrame:
    """n_series daily series of `rows` rows each, built with array operations (no per-series frames)."""
    rng = np.random.default_rng(seed)
    end = np.datetime64("2025-12-31", "ns")
    day = np.timedelta64(1, "D").astype("timedelta64[ns]")
    sid = np.repeat(np.arange(n_series), rows)
    step = np.tile(np.arange(rows - 1, -1, -1), n_series)
    stale = rng.random(n_series) < 0.05  # 5% stopped 60 days before the end
    ds = end - (step + np.where(stale[sid], 60, 0)) * day
    level = rng.uniform(0.2, 200, n_series)[sid]  # low levels are intermittent (mostly zeros)
    weekly = 1 + 0.25 * np.sin(2 * np.pi * step / 7)
    y = rng.poisson(level * weekly).astype(float)
    keep = rng.random(len(sid)) > np.where(rng.random(n_series) < 0.05, 0.3, 0.0)[sid]  # 5% lose 30% of days
    keys = pd.array(np.char.add("S", np.char.zfill(np.arange(n_series).astype(str), 5)), dtype="str")
    return pd.DataFrame({"unique_id": keys[sid[keep]], "ds": ds[keep], "y": y[keep]})


def profile_vectorised(table: pd.DataFrame) -> pd.DataFrame:
    return triage(profile_table(table, ["unique_id"]), TriageRules())


def profile_loop(table: pd.DataFrame) -> list[tuple]:
    """The per-series loop that profile_table replaces (a subset of its columns)."""
    rows = []
    for s in split_series(table, ["unique_id"]):
        ok = ~np.isnan(s.y)
        try:
            freq = infer_freq(s.ds)
        except SeriesProblem:
            freq = ""
        rows.append((s.key, len(s.ds), int(ok.sum()), s.ds[0], s.ds[-1], freq, float(np.mean(s.y[ok] == 0)),
                     int((s.y < 0).sum()), bool(np.nanmin(s.y) == np.nanmax(s.y))))
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--series", type=int, default=30_000)
    p.add_argument("--rows", type=int, default=2_000)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--baseline-series", type=int, default=1_000)
    args = p.parse_args()

    t0 = time.perf_counter()
    table = make_table(args.series, args.rows)
    print(f"generated {len(table):,} rows, {args.series:,} series in {time.perf_counter() - t0:.1f} s")

    times = []
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        profile = profile_vectorised(table)
        times.append(time.perf_counter() - t0)
    vec = statistics.median(times)
    print(f"vectorised profile + triage: median {vec:.2f} s of {args.repeat} "
          f"({', '.join(f'{t:.2f}' for t in times)}), {args.series / vec:,.0f} series/s, "
          f"{len(table) / vec / 1e6:.1f} M rows/s")
    print("verdicts:", profile["verdict"].value_counts().to_dict())

    subset = table[table["unique_id"].isin(table["unique_id"].unique()[:args.baseline_series])]
    t0 = time.perf_counter()
    profile_loop(subset)
    loop = time.perf_counter() - t0
    print(f"per-series loop on {args.baseline_series:,} series: {loop:.2f} s, {args.baseline_series / loop:,.0f} "
          f"series/s (vectorised is {args.series / vec / (args.baseline_series / loop):.0f}x faster per series)")

    cores = usable_cores()
    write_rows("bench_check", [
        {"case": "vectorised", "series": args.series, "rows": len(table), "seconds": round(vec, 3),
         "series_per_second": round(args.series / vec, 1), "cores": cores, "backend": "in-process", "n_jobs": 1},
        {"case": "per-series-loop", "series": args.baseline_series, "rows": len(subset), "seconds": round(loop, 3),
         "series_per_second": round(args.baseline_series / loop, 1), "cores": cores, "backend": "in-process",
         "n_jobs": 1},
    ], append=True)


if __name__ == "__main__":
    main()
