"""How does `forecast run` compare with the textbook way of running Prophet over many series?

Runs, on the same input and in one go, `../shared/bench/reference_loop.py --mode pool` (stock Prophet,
np.array_split into cpu_count() parts, Pool.map) and `forecast run` with all cores, and prints series/s for
each and their ratio, with the machine's core count. Writes a CSV row per case to outputs/benchmarks/.

usage: python benchmarks/bench_run.py [--series 1000] [--days 730] [--horizon 28] [--repeats 1]
"""

import argparse
import csv
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT.parent / "shared" / "bench"


def reference_pool(data: Path, horizon: int) -> float:
    out = subprocess.run([sys.executable, str(BENCH / "reference_loop.py"), str(data), "--horizon", str(horizon),
                          "--mode", "pool"], capture_output=True, text=True, check=True).stdout
    return float(re.search(r"= ([0-9.]+) series/s", out).group(1))


def forecast_run(data: Path, horizon: int, workdir: Path) -> float:
    out = workdir / f"run-{time.time_ns()}"
    subprocess.run([sys.executable, "-m", "forecast", "run", str(data), "--id-col", "series_id", "--time-col", "date",
                    "--target-col", "sales", "--horizon", str(horizon), "--out", str(out), "--quiet"],
                   check=True, capture_output=True, text=True)
    return json.loads((out / "summary.json").read_text())["series_per_second"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", type=int, default=1000)
    parser.add_argument("--days", type=int, default=730)
    parser.add_argument("--horizon", type=int, default=28)
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    cores = os.cpu_count()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data = tmp / "retail.csv"
        subprocess.run([sys.executable, str(BENCH / "make_retail.py"), str(data), "--series", str(args.series),
                        "--days", str(args.days), "--seed", "0"], check=True)
        for repeat in range(args.repeats):
            for case, fn in (("reference_pool", lambda: reference_pool(data, args.horizon)),
                             ("forecast_run", lambda: forecast_run(data, args.horizon, tmp))):
                rate = fn()
                rows.append({"case": case, "repeat": repeat, "series": args.series, "days": args.days,
                             "cores": cores, "series_per_second": round(rate, 3)})
                print(f"{case:15s} repeat {repeat}: {rate:7.2f} series/s  (cores={cores})", flush=True)
    med = {c: statistics.median(r["series_per_second"] for r in rows if r["case"] == c)
           for c in ("reference_pool", "forecast_run")}
    print(f"ratio forecast_run / reference_pool (medians) = {med['forecast_run'] / med['reference_pool']:.2f} "
          f"on {cores} cores")
    out_dir = ROOT / "outputs" / "benchmarks"
    out_dir.mkdir(parents=True, exist_ok=True)
    with open(out_dir / "bench_run.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


if __name__ == "__main__":
    main()
