"""What the benchmark scripts share: where things are, the reference input, one `forecast run` of it, the CSV of
results, and a process's resident memory. Imported by the scripts beside it (`python benchmarks/bench_*.py` puts
this folder on sys.path)."""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT.parent / "shared" / "bench"
RESULTS = ROOT / "outputs" / "benchmarks"


def env() -> dict:
    """The environment for a `forecast` subprocess: this checkout's package first on the path."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + [p for p in [env.get("PYTHONPATH")] if p])
    return env


def workload_parser(doc: str, series: int = 1000, days: int = 730,
                    horizon: int = 28) -> argparse.ArgumentParser:
    """A script's argument parser (described by the first line of its docstring) with the size of the generated
    workload: --series, --days and --horizon, defaulting to the standard workload's."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--series", type=int, default=series)
    parser.add_argument("--days", type=int, default=days)
    parser.add_argument("--horizon", type=int, default=horizon)
    return parser


def make_retail(path: Path, series: int, days: int, seed: int = 0) -> Path:
    """The reference workload (../shared/bench/make_retail.py) written to `path`."""
    subprocess.run([sys.executable, str(BENCH / "make_retail.py"), str(path), "--series", str(series),
                    "--days", str(days), "--seed", str(seed)], check=True, capture_output=True)
    return path


def reference(data: Path, horizon: int, mode: str) -> float:
    """Series/s of ../shared/bench/reference_loop.py (mode "loop": stock Prophet in a loop; "pool": Pool.map)."""
    out = subprocess.run([sys.executable, str(BENCH / "reference_loop.py"), str(data), "--horizon", str(horizon),
                          "--mode", mode], capture_output=True, text=True, check=True).stdout
    return float(re.search(r"= ([0-9.]+) series/s", out).group(1))


def forecast_cmd(data: Path, horizon: int, out: Path, *extra: str) -> list[str]:
    """`forecast run` of a make_retail table (series_id, date, sales) into `out`, quietly, with `extra` flags."""
    return [sys.executable, "-m", "forecast", "run", str(data), "--id-col", "series_id", "--time-col", "date",
            "--target-col", "sales", "--horizon", str(horizon), "--out", str(out), "--quiet", *extra]


def forecast_run(data: Path, horizon: int, out: Path, *extra: str) -> dict:
    """Run `forecast_cmd` to the end and return its summary.json."""
    subprocess.run(forecast_cmd(data, horizon, out, *extra), check=True, capture_output=True, text=True, cwd=ROOT,
                   env=env())
    return json.loads((out / "summary.json").read_text())


def write_rows(name: str, rows: list[dict], append: bool = False) -> Path:
    """Write (or add to) outputs/benchmarks/NAME.csv, one row per dict."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.csv"
    new = not append or not path.exists() or path.stat().st_size == 0
    with open(path, "a" if append else "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        if new:
            writer.writeheader()
        writer.writerows(rows)
    return path


def rss_mb(pid: int) -> float | None:
    """The resident memory of a process in MB, None when it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None
