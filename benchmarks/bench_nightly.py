"""Does a long nightly run stay clean: after N fits (default 5,000) is the system temporary directory as it was,
and how much does a worker's memory (RSS) grow between its first and its last fits?

Runs `python -m forecast run` as a scheduler would, with TMPDIR pointed at a fresh directory, samples the RSS of
every worker process once a second from /proc (Linux), and writes one CSV row per worker to
outputs/benchmarks/nightly.csv (cores, n_jobs, fits, RSS a tenth into its life (after its imports), peak and
last, temp dir entries left). The machine may be shared, so the wall time is only indicative; the RSS and temp-dir figures are not.

    python benchmarks/bench_nightly.py --series 5000 --days 60 --n-jobs 2
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from common import ROOT, rss_mb, write_rows


def make_table(n_series: int, days: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    t = np.arange(days)
    ds = np.tile(pd.date_range("2024-01-01", periods=days, freq="D").to_numpy(), n_series)
    level = np.repeat(20 + rng.uniform(0, 50, n_series), days)
    y = level + np.tile(0.05 * t + 3 * np.sin(2 * np.pi * t / 7), n_series) + rng.normal(0, 1, n_series * days)
    return pd.DataFrame({"unique_id": np.repeat([f"S{i:05d}" for i in range(n_series)], days), "ds": ds, "y": y})


def _workers(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid and \
                    b"spawn_main" in (stat.parent / "cmdline").read_bytes():
                found.append(int(stat.parent.name))
        except (OSError, ValueError, IndexError):
            continue
    return found


def run(n_series: int, days: int, n_jobs: int, work: Path) -> list[dict]:
    table = work / "table.parquet"
    make_table(n_series, days).to_parquet(table, index=False)
    tmp = work / "tmp"
    tmp.mkdir()
    out = work / "out"
    env = {**os.environ, "TMPDIR": str(tmp)}
    cmd = [sys.executable, "-m", "forecast", "run", str(table), "--horizon", "14", "--n-jobs", str(n_jobs),
           "--out", str(out), "--uncertainty-samples", "100", "--log-format", "json"]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    samples: dict[int, list[float]] = {}
    while proc.poll() is None:
        for pid in _workers(proc.pid):
            rss = rss_mb(pid)
            if rss is not None:
                samples.setdefault(pid, []).append(rss)
        time.sleep(1.0)
    wall = time.perf_counter() - t0
    summary = json.loads((out / "summary.json").read_text())
    timings = pd.read_csv(out / "timings.csv")
    fits = timings["worker"].str.split(":").str[-1].astype(int).value_counts().to_dict()
    left = sorted(os.listdir(tmp))
    return [{
        "cores": summary["cores"], "n_jobs": n_jobs, "series": n_series, "days": days, "status": summary["status"],
        "exit_code": proc.returncode, "wall_seconds": round(wall, 1), "worker_pid": pid,
        "worker_fits": fits.get(pid, 0), "rss_early_mb": round(rss[len(rss) // 10], 1),
        "rss_peak_mb": round(max(rss), 1),
        "rss_last_mb": round(rss[-1], 1), "samples": len(rss), "tmp_entries_left": len(left),
    } for pid, rss in samples.items()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", type=int, default=5000)
    parser.add_argument("--days", type=int, default=60)
    parser.add_argument("--n-jobs", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work:
        rows = run(args.series, args.days, args.n_jobs, Path(work))
    dest = write_rows("nightly", rows)
    for row in rows:
        print(", ".join(f"{k}={v}" for k, v in row.items()))
    print(f"written to {dest}")


if __name__ == "__main__":
    main()
