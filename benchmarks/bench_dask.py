"""Does running on Dask cost throughput? Dask with 2 single-thread workers on loopback vs the local backend.

On the same input and in one go: `forecast run --n-jobs 2` (the local process pool) and `forecast run --backend
dask --scheduler ...` against a `dask scheduler` and two `dask worker --nthreads 1` processes on 127.0.0.1,
started here. Prints series/s for each (from summary.json: series over the run's wall time, reading and
writing included) and the ratio dask / local, with the machine's core count. The goal is a ratio of at least
0.85 on a 2-core machine. Writes a CSV row per case to outputs/benchmarks/bench_dask.csv.

usage: python benchmarks/bench_dask.py [--series 1000] [--days 730] [--horizon 28] [--repeats 1]
"""

import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import env, forecast_run, make_retail, workload_parser, write_rows


def start_cluster(workdir: Path, n_workers: int) -> tuple[str, list[subprocess.Popen]]:
    """A scheduler and n single-thread workers on 127.0.0.1; returns once every worker is connected."""
    from distributed import Client

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    address = f"tcp://127.0.0.1:{port}"
    quiet = dict(stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env(), cwd=workdir)
    procs = [subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1",
                               "--port", str(port), "--no-dashboard"], **quiet)]
    for i in range(n_workers):
        procs.append(subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_worker", address, "--nthreads", "1",
                                       "--host", "127.0.0.1", "--no-dashboard", "--local-directory",
                                       str(workdir / f"worker{i}")], **quiet))
    with Client(address, timeout=60) as client:
        client.wait_for_workers(n_workers, timeout=120)
    return address, procs


def stop_cluster(procs: list[subprocess.Popen]) -> None:
    for p in reversed(procs):
        p.terminate()
    for p in procs:
        p.wait(timeout=30)


def main() -> None:
    parser = workload_parser(__doc__)
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    cores = os.cpu_count()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data = make_retail(tmp / "retail.csv", args.series, args.days)
        address, procs = start_cluster(tmp, 2)
        try:
            for repeat in range(args.repeats):
                for case, backend, extra in (("local", "process", ("--n-jobs", "2")),
                                             ("dask", "dask", ("--backend", "dask", "--scheduler", address))):
                    rate = forecast_run(data, args.horizon, tmp / f"run-{time.time_ns()}", *extra)["series_per_second"]
                    rows.append({"case": case, "backend": backend, "n_jobs": 2, "repeat": repeat,
                                 "series": args.series, "days": args.days, "cores": cores,
                                 "series_per_second": round(rate, 3)})
                    print(f"{case:6s} repeat {repeat}: {rate:7.2f} series/s  (n_jobs=2, cores={cores})", flush=True)
        finally:
            stop_cluster(procs)
    med = {c: statistics.median(r["series_per_second"] for r in rows if r["case"] == c) for c in ("local", "dask")}
    print(f"ratio dask / local (medians) = {med['dask'] / med['local']:.2f} on {cores} cores")
    write_rows("bench_dask", rows)


if __name__ == "__main__":
    main()
