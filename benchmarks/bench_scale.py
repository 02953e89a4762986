"""Does `forecast run` hold the M5 scale in time and memory? Wall time and peak RSS of the whole process tree.

Runs `forecast run` once, end to end (read, fit, write), on a table from ../shared/bench/make_retail.py (made
here unless --data names one) and samples, every --interval seconds, the memory of the main process and of every
worker it started (PSS: resident pages, a shared page counted once over all of them), summed: the peak of that
sum is what the machine must have. Prints the wall
time, series/s, the peak RSS (total, the main process alone, and its workers together), the core count, and
writes them to outputs/benchmarks/bench_scale.csv.

The issue's target (2-core machine): 30,490 series x 1,941 days (make_retail.py --series 30490 --days 1941) in
at most 10 minutes with a peak RSS of at most 4 GB:

    python benchmarks/bench_scale.py --series 30490 --days 1941 --engine fast --n-jobs 2

usage: python benchmarks/bench_scale.py [--series 2000] [--days 730] [--engine fast] [--n-jobs 2] [--data FILE]
"""

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import ROOT, env, forecast_cmd, make_retail, rss_mb, workload_parser, write_rows


def _children(pid: int) -> list[int]:
    out = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            out += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
    return out


def _tree(pid: int) -> list[int]:
    pids, todo = [], [pid]
    while todo:
        p = todo.pop()
        pids.append(p)
        todo += _children(p)
    return pids


def pss_mb(pid: int) -> float | None:
    """A process's proportional set size in MB: its resident memory with each page shared with other processes
    counted as its share. Summed over processes this is what they take together; summed RSS counts a page shared
    by two twice (a worker sampled between fork and exec shows all of the main process's memory as its own)."""
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return rss_mb(pid)
    return rss_mb(pid)


def measure(cmd: list[str], interval: float, env: dict) -> tuple[float, float, float, float, int]:
    """(wall seconds, peak total memory MB of the tree, of the main process, and of its workers together, exit
    code); memory is PSS (see pss_mb)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    peak_total = peak_main = peak_workers = 0.0
    while proc.poll() is None:
        main = pss_mb(proc.pid) or 0.0
        workers = sum(pss_mb(p) or 0.0 for p in set(_tree(proc.pid)) - {proc.pid})  # a pid may be listed twice
        peak_total, peak_main = max(peak_total, main + workers), max(peak_main, main)
        peak_workers = max(peak_workers, workers)
        time.sleep(interval)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr.read())
    return wall, peak_total, peak_main, peak_workers, proc.returncode


def main() -> None:
    parser = workload_parser(__doc__, series=2000)
    parser.add_argument("--engine", default="fast")
    parser.add_argument("--n-jobs", type=int, default=2)
    parser.add_argument("--data", type=Path, help="an existing make_retail.py table (skips making one)")
    parser.add_argument("--interval", type=float, default=0.2, help="seconds between memory samples")
    parser.add_argument("--block-rows", type=int, help="forecast run's --block-rows (default: its own)")
    args = parser.parse_args()
    cores = os.cpu_count()
    with tempfile.TemporaryDirectory() as tmp:
        data = args.data
        if data is None:
            data = make_retail(Path(tmp) / "retail.csv", args.series, args.days)
        out = Path(tmp) / "run"
        more = ["--block-rows", str(args.block_rows)] if args.block_rows is not None else []
        cmd = forecast_cmd(data, args.horizon, out, "--engine", args.engine, "--n-jobs", str(args.n_jobs), *more)
        wall, peak_total, peak_main, peak_workers, code = measure(cmd, args.interval, env())
        if code not in (0, 3):
            raise SystemExit(f"forecast run exited {code}")
        summary = json.loads((out / "summary.json").read_text())
    row = {"series": summary["series_total"], "rows": summary["rows"], "engine": args.engine, "n_jobs": args.n_jobs,
           "cores": cores, "wall_seconds": round(wall, 1),
           "series_per_second": round(summary["series_total"] / wall, 2), "series_ok": summary["series_ok"],
           "stage_seconds": {k: round(v, 1) for k, v in summary["stage_seconds"].items()},
           "block_rows": args.block_rows, "peak_rss_mb": round(peak_total), "peak_rss_main_mb": round(peak_main),
           "peak_rss_workers_mb": round(peak_workers)}
    for k, v in row.items():
        print(f"{k:20s} {v}")
    write_rows("bench_scale", [row], append=True)


if __name__ == "__main__":
    main()
