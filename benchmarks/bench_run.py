"""How does `forecast run` compare with the textbook way of running Prophet over many series?

Runs, on the same input and in one go, `../shared/bench/reference_loop.py --mode pool` (stock Prophet,
np.array_split into cpu_count() parts, Pool.map) and `forecast run` with all cores, and prints series/s for
each and their ratio, with the machine's core count. Writes a CSV row per case to outputs/benchmarks/.

usage: python benchmarks/bench_run.py [--series 1000] [--days 730] [--horizon 28] [--repeats 1]
"""

import os
import statistics
import tempfile
import time
from pathlib import Path

from common import forecast_run, make_retail, reference, workload_parser, write_rows


def main() -> None:
    parser = workload_parser(__doc__)
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    cores = os.cpu_count()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data = make_retail(tmp / "retail.csv", args.series, args.days)
        for repeat in range(args.repeats):
            for case, fn in (("reference_pool", lambda: reference(data, args.horizon, "pool")),
                             ("forecast_run", lambda: forecast_run(data, args.horizon, tmp / f"run-{time.time_ns()}")
                              ["series_per_second"])):
                rate = fn()
                rows.append({"case": case, "repeat": repeat, "series": args.series, "days": args.days,
                             "cores": cores, "series_per_second": round(rate, 3)})
                print(f"{case:15s} repeat {repeat}: {rate:7.2f} series/s  (cores={cores})", flush=True)
    med = {c: statistics.median(r["series_per_second"] for r in rows if r["case"] == c)
           for c in ("reference_pool", "forecast_run")}
    print(f"ratio forecast_run / reference_pool (medians) = {med['forecast_run'] / med['reference_pool']:.2f} "
          f"on {cores} cores")
    write_rows("bench_run", rows)


if __name__ == "__main__":
    main()
