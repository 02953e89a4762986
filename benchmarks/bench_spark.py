"""Does running on Spark cost throughput? One Spark worker with 2 cores on loopback vs the local backend.

On the same make_retail table and in one go: `forecast run --n-jobs 2` (the local process pool) and `forecast run
--backend spark --master spark://127.0.0.1:PORT` against a standalone master and one 2-core worker started here
from the scripts inside the pyspark package. Prints series/s for each (from summary.json: series over the run's
wall time, the Spark session's start, reading and writing included), the ratio spark / local (goal: at least 0.7),
and the driver's peak resident memory (the `forecast` process and its JVM together), which must not grow with the
table: with --memory-factor K, two more Spark runs of the table and of one K times larger (its series repeated
under other keys), both with --driver-memory (spark.driver.memory) and every series below --min-obs (served by
the fallback, so the table goes through Spark's read, shuffle and the executors' checks in minutes, and only the
driver's memory is in question). Writes a CSV row per case to outputs/benchmarks/bench_spark.csv.

usage: python benchmarks/bench_spark.py [--series 10000] [--days 730] [--horizon 28] [--memory-factor 0]
       [--driver-memory 128m] [--skip-throughput]
"""

import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

from common import ROOT, env, forecast_cmd, make_retail, rss_mb, workload_parser, write_rows


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def spark_env() -> dict:
    import pyspark

    e = env()
    e.update(PYSPARK_PYTHON=sys.executable, PYSPARK_DRIVER_PYTHON=sys.executable, SPARK_LOCAL_IP="127.0.0.1",
             SPARK_HOME=str(Path(pyspark.__file__).parent))
    return e


def start_cluster(workdir: Path, cores: int) -> tuple[str, list[subprocess.Popen]]:
    """A standalone master and one worker of `cores` cores on 127.0.0.1; returns once the worker is registered."""
    import pyspark

    spark_class = str(Path(pyspark.__file__).parent / "bin" / "spark-class")
    port, ui = _free_port(), _free_port()
    url = f"spark://127.0.0.1:{port}"
    quiet = dict(stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=spark_env(), cwd=workdir)
    procs = [subprocess.Popen([spark_class, "org.apache.spark.deploy.master.Master", "--host", "127.0.0.1",
                               "--port", str(port), "--webui-port", str(ui)], **quiet)]
    procs.append(subprocess.Popen([spark_class, "org.apache.spark.deploy.worker.Worker", url, "--host", "127.0.0.1",
                                   "--cores", str(cores), "--memory", "4g", "--webui-port", str(_free_port()),
                                   "--work-dir", str(workdir / "work")], **quiet))
    deadline = time.monotonic() + 120
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{ui}/json/", timeout=2) as r:
                if json.load(r).get("aliveworkers", 0) >= 1:
                    return url, procs
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError("the Spark worker did not register")
        time.sleep(0.5)


def stop_cluster(procs: list[subprocess.Popen]) -> None:
    for p in reversed(procs):
        p.terminate()
    for p in procs:
        p.wait(timeout=30)


def _tree(pid: int) -> list[int]:
    """pid and its descendants."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def timed_run(cmd: list[str], run_env: dict) -> tuple[dict, float]:
    """Run `forecast run` to the end; its summary and the peak resident MB of its process tree (polled)."""
    proc = subprocess.Popen(cmd, env=run_env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    peak = [0.0]

    def poll() -> None:
        while proc.poll() is None:
            peak[0] = max(peak[0], sum(rss_mb(p) or 0.0 for p in _tree(proc.pid)))
            time.sleep(0.2)

    watcher = threading.Thread(target=poll, daemon=True)
    watcher.start()
    _, err = proc.communicate()
    watcher.join()
    if proc.returncode != 0:
        raise RuntimeError(err[-2000:])
    out = Path(cmd[cmd.index("--out") + 1])
    return json.loads((out / "summary.json").read_text()), peak[0]


def repeated(base: Path, path: Path, times: int) -> Path:
    """The table `times` times over, each copy's series under keys of their own (k1-S00000, ...)."""
    with open(base) as src, open(path, "w") as out:
        header = src.readline()
        out.write(header)
        body = src.read()
        for k in range(times):
            out.write("".join(f"k{k}-{line}\n" for line in body.splitlines()))
    return path


def main() -> None:
    parser = workload_parser(__doc__, series=10_000)
    parser.add_argument("--memory-factor", type=int, default=0,
                        help="also run Spark on a table this many times larger (0: not)")
    parser.add_argument("--driver-memory", default="128m", help="spark.driver.memory of the memory runs")
    parser.add_argument("--skip-throughput", action="store_true", help="only the memory runs")
    args = parser.parse_args()
    cores = os.cpu_count()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data = make_retail(tmp / "retail.csv", args.series, args.days)
        url, procs = start_cluster(tmp, 2)
        try:
            cases = [] if args.skip_throughput else [
                ("local", data, ("--n-jobs", "2"), env()),
                ("spark", data, ("--backend", "spark", "--master", url), spark_env())]
            if args.memory_factor > 1:
                big = repeated(data, tmp / "retail-big.csv", args.memory_factor)
                small_driver = {**spark_env(), "PYSPARK_SUBMIT_ARGS": f"--driver-memory {args.driver_memory} "
                                                                      "pyspark-shell"}
                fallback_only = ("--backend", "spark", "--master", url, "--min-obs", str(10**9))
                for case, table in (("spark-mem-1x", data), (f"spark-mem-{args.memory_factor}x", big)):
                    cases.append((case, table, fallback_only, small_driver))
                print(f"memory runs: tables of {data.stat().st_size / 1e6:.0f} and {big.stat().st_size / 1e6:.0f} "
                      f"MB, spark.driver.memory {args.driver_memory}", flush=True)
            for case, table, extra, run_env in cases:
                summary, peak = timed_run(forecast_cmd(table, args.horizon, tmp / f"run-{case}", *extra), run_env)
                rate = summary["series_per_second"]
                rows.append({"case": case, "series": summary["series_total"], "rows": summary["rows"],
                             "days": args.days, "cores": cores, "threads": summary["n_jobs"],
                             "wall_seconds": round(summary["wall_seconds"], 1),
                             "series_per_second": round(rate, 2), "driver_peak_mb": round(peak)})
                print(f"{case:9s} {summary['series_total']:6d} series: {rate:7.2f} series/s, wall "
                      f"{summary['wall_seconds']:.0f} s, driver peak {peak:.0f} MB (cores={cores}), stages "
                      f"{ {k: round(v, 1) for k, v in summary['stage_seconds'].items()} }", flush=True)
        finally:
            stop_cluster(procs)
    rate = {r["case"]: r["series_per_second"] for r in rows}
    if "spark" in rate:
        print(f"ratio spark / local = {rate['spark'] / rate['local']:.2f} on {cores} cores")
    write_rows("bench_spark", rows)


if __name__ == "__main__":
    main()
