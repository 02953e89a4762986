"""What does a K-window backtest cost compared with one forecast run on the same series?

A backtest fits K models per series (one per origin) on histories a little shorter than the run's, so it should
cost about K times a run. Runs `forecast run` and `forecast backtest --windows K` on the same generated input,
in one go, with the same --n-jobs, and prints the wall seconds of each and their ratio, with the core count.
Writes a CSV row per case to outputs/benchmarks/bench_backtest.csv. The machines are shared: compare ratios.

usage: python benchmarks/bench_backtest.py [--series 100] [--days 365] [--horizon 28] [--windows 3] [--n-jobs -1]
    [--repeats 1]
"""

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from common import ROOT, workload_parser, write_rows


def make_input(path: Path, n_series: int, days: int) -> None:
    """Daily series with a trend, a weekly cycle and noise (seeded)."""
    rng = np.random.default_rng(0)
    t = np.arange(days)
    ds = pd.date_range("2024-01-01", periods=days)
    frames = [pd.DataFrame({"unique_id": f"S{i}", "ds": ds,
                            "y": 50 + 0.05 * t * (i % 5) + 8 * np.sin(2 * np.pi * t / 7) + rng.normal(0, 2, days)})
              for i in range(n_series)]
    pd.concat(frames).to_csv(path, index=False)


def wall(args: list[str], out: Path) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "forecast", *args, "--out", str(out), "--quiet"], cwd=ROOT,
                          capture_output=True, text=True)
    if proc.returncode not in (0, 3):
        raise SystemExit(proc.stderr)
    seconds = time.perf_counter() - t0
    json.loads((out / "summary.json").read_text())  # the run finished and wrote its summary
    return seconds


def main() -> None:
    parser = workload_parser(__doc__, series=100, days=365)
    parser.add_argument("--windows", type=int, default=3)
    parser.add_argument("--n-jobs", type=int, default=-1)
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    cores = os.cpu_count()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data = tmp / "input.csv"
        make_input(data, args.series, args.days)
        common = [str(data), "--horizon", str(args.horizon), "--n-jobs", str(args.n_jobs)]
        for repeat in range(args.repeats):
            for case, extra in (("run", ["run"]), ("backtest", ["backtest", "--windows", str(args.windows)])):
                seconds = wall([extra[0], *common, *extra[1:]], tmp / f"{case}-{repeat}")
                rows.append({"case": case, "repeat": repeat, "series": args.series, "days": args.days,
                             "windows": args.windows if case == "backtest" else 0, "cores": cores,
                             "n_jobs": args.n_jobs, "wall_seconds": round(seconds, 2)})
                print(f"{case:9s} repeat {repeat}: {seconds:7.1f} s  (cores={cores}, n_jobs={args.n_jobs})", flush=True)
    med = {c: statistics.median(r["wall_seconds"] for r in rows if r["case"] == c) for c in ("run", "backtest")}
    print(f"ratio backtest / run (medians) = {med['backtest'] / med['run']:.2f} for {args.windows} windows "
          f"on {cores} cores")
    write_rows("bench_backtest", rows)


if __name__ == "__main__":
    main()
