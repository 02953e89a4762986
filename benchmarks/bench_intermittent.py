"""How do the intermittent-demand models score and cost against Prophet and seasonal-naive on M5's intermittent series?

Two tables from ../shared/data/m5_subset (the same 10 FOODS_3 items at store CA_1):
- m5_filled: m5_subset_nonzero_only_10series.csv with its missing days filled with 0 (the file dropped the zero-sales
  days), each series from its first sale to 2016-04-24: 466 to 1,913 days of true daily sales;
- m5_dense: m5_subset_dense_10x115.csv, the last 115 days of the same items as they are.
The intermittent series are those `forecast check` calls intermittent (its default --max-zero-share). Each model
is backtested on them as the first (and only) --model, so its intervals are scored too (coverage of the default
80 % band): `forecast backtest --horizon 28 --windows 3 --n-jobs 1 --seed 0` (the last 84 days, 3 origins 28
days apart; Prophet's simulated intervals seeded, so the scores repeat).
WAPE and coverage pool every scored point; MASE is the mean of the per-series MASE (see docs/backtests-plots-
report.md).

Cost per series: each model's `forecast` (the Model interface the workers call: fit and forecast 28 days) on
every intermittent series' whole history, in this process, the median of --repeats calls per series, then the
mean over the series; in milliseconds of wall time on one core. The machine is shared: compare ratios.

Writes outputs/benchmarks/bench_intermittent.csv and prints a Markdown table.

usage: python benchmarks/bench_intermittent.py [--models prophet,seasonal-naive,croston-sba,tsb,adida]
    [--windows 3] [--horizon 28] [--repeats 5]
"""

from __future__ import annotations

import argparse
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

from common import ROOT, env, write_rows

DATA = ROOT.parent / "shared" / "data" / "m5_subset"
MODELS = ("prophet", "seasonal-naive", "croston-sba", "tsb", "adida")


def m5_tables(tmp: Path) -> dict[str, Path]:
    """The two M5 tables as (id, date, sales) CSVs in `tmp`; see the module docstring."""
    dense = pd.read_csv(DATA / "m5_subset_dense_10x115.csv", usecols=["id", "date", "sales"])
    sparse = pd.read_csv(DATA / "m5_subset_nonzero_only_10series.csv", usecols=["id", "date", "sales"],
                         parse_dates=["date"])
    end = pd.Timestamp("2016-04-24")
    filled = []
    for key, part in sparse.groupby("id"):
        days = pd.date_range(part["date"].min(), end, freq="D")
        sales = part.set_index("date")["sales"].reindex(days, fill_value=0)
        filled.append(pd.DataFrame({"id": key, "date": days, "sales": sales.to_numpy()}))
    paths = {"m5_filled": tmp / "m5_filled.csv", "m5_dense": tmp / "m5_dense.csv"}
    pd.concat(filled).to_csv(paths["m5_filled"], index=False)
    dense.to_csv(paths["m5_dense"], index=False)
    return paths


def forecast(*args: str) -> None:
    """One `forecast` command of this checkout, to its end."""
    proc = subprocess.run([sys.executable, "-m", "forecast", *args, "--id-col", "id", "--time-col", "date",
                           "--target-col", "sales"], cwd=ROOT, env=env(), capture_output=True, text=True)
    if proc.returncode not in (0, 3):
        raise SystemExit(f"forecast {' '.join(args)} failed:\n{proc.stderr}")


def intermittent_only(path: Path, tmp: Path) -> tuple[Path, int]:
    """The table cut to the series `forecast check` calls intermittent (their first rule), and how many."""
    out = tmp / f"{path.stem}-check"
    forecast("check", str(path), "--out", str(out))
    profile = pd.read_csv(out / "profile.csv")
    keep = profile.loc[profile["rules"].fillna("").str.split(";").str[0] == "intermittent", "id"]
    table = pd.read_csv(path)
    cut = tmp / f"{path.stem}-intermittent.csv"
    table[table["id"].isin(set(keep))].to_csv(cut, index=False)
    return cut, len(keep)


def backtest(path: Path, model: str, args: argparse.Namespace, out: Path) -> dict:
    """`forecast backtest` of one model; its overall scores and wall seconds."""
    t0 = time.perf_counter()
    forecast("backtest", str(path), "--model", model, "--horizon", str(args.horizon), "--windows",
             str(args.windows), "--n-jobs", "1", "--seed", "0", "--out", str(out), "--quiet")
    wall = time.perf_counter() - t0
    summary = json.loads((out / "summary.json").read_text())
    scores = summary["overall"][model.replace("-", "_")]
    return {**scores, "wall_seconds": wall, "series_ok": summary["series_ok"]}


def cost_ms(path: Path, model: str, args: argparse.Namespace) -> float:
    """Mean over the series of the median wall milliseconds of one model's fit-and-forecast; see the docstring."""
    sys.path.insert(0, str(ROOT))
    from forecast.config import ModelOptions
    from forecast.freq import horizon_dates
    from forecast.models import get_model
    from forecast.types import SeriesData

    table = pd.read_csv(path, parse_dates=["date"])
    opts = ModelOptions(horizon=args.horizon)
    fitter = get_model(model)
    per_series = []
    for key, part in table.groupby("id"):
        series = SeriesData(key=(key,), ds=part["date"].to_numpy(dtype="datetime64[ns]"),
                            y=part["sales"].to_numpy(dtype=float), freq="D")
        future = horizon_dates(series.ds[-1], "D", args.horizon)
        fitter.forecast(series, future, opts)  # warm: imports, compiled code, caches
        times = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            fitter.forecast(series, future, opts)
            times.append(time.perf_counter() - t0)
        per_series.append(statistics.median(times))
    return 1000 * float(np.mean(per_series))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--windows", type=int, default=3)
    parser.add_argument("--horizon", type=int, default=28)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    models = args.models.split(",")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for name, path in m5_tables(tmp).items():
            cut, n = intermittent_only(path, tmp)
            print(f"\n{name}: {n} intermittent series; backtest --horizon {args.horizon} --windows {args.windows}, "
                  f"cost on {os.cpu_count()} cores (one used)\n")
            print("| model | WAPE | MASE | coverage (80 %) | ms per series (fit + forecast) | x prophet's cost |")
            print("|---|---|---|---|---|---|")
            costs = {m: cost_ms(cut, m, args) for m in models}
            for model in models:
                s = backtest(cut, model, args, tmp / f"{name}-{model}")
                row = {"table": name, "series": n, "model": model, "windows": args.windows, "horizon": args.horizon,
                       "wape": round(s["wape"], 4), "mase": round(s["mase"], 4),
                       "coverage": None if s["coverage"] is None else round(s["coverage"], 4),
                       "ms_per_series": round(costs[model], 3), "backtest_wall_seconds": round(s["wall_seconds"], 2),
                       "cores": os.cpu_count()}
                rows.append(row)
                ratio = f"{costs[model] / costs['prophet']:.3f}" if "prophet" in costs else "-"
                print(f"| {model} | {row['wape']:.3f} | {row['mase']:.3f} | {row['coverage']} | "
                      f"{row['ms_per_series']:.2f} | {ratio} |", flush=True)
    write_rows("bench_intermittent", rows)


if __name__ == "__main__":
    main()
