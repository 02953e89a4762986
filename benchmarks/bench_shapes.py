"""Does any series shape take the default engine long? Issue 13's bar: none over 0.5 s.

Fits generated series of many shapes with the default settings (`fit_series`, in-process, one after another) and
prints, per shape, how many series, the engine and model that served them, and the slowest fit-and-forecast time
(CPU seconds: the machine may be busy), and the slowest but the first of the shape (the first pays once per
process for what later series share: an import, a country's holiday table). Shapes: 1 to 60 points daily, every third day and weekly (sparse weekly
series that span years turn yearly seasonality on); constants; long daily (1,941 days, yearly on); hourly (a year);
multiplicative; intermittent (mostly zeros); negative random walks; a seasonality forced on over less than one
period (served by stan); holidays; logistic growth with a cap and floor.

usage: python benchmarks/bench_shapes.py
"""

import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # this checkout's forecast

from forecast.config import ModelOptions  # noqa: E402
from forecast.model import fit_series  # noqa: E402
from forecast.models.prophet import quiet_logs  # noqa: E402
from forecast.types import SeriesData  # noqa: E402


def shapes(rng):
    """(shape name, SeriesData, ModelOptions) of every case."""
    opts = ModelOptions(horizon=28, seed=0)
    for n in list(range(2, 21)) + [30, 40, 60]:
        for name, step in (("daily", 1), ("every 3rd day", 3), ("weekly", 7), ("every 7th week", 49)):
            ds = pd.Timestamp("2022-01-07") + pd.to_timedelta(np.arange(n) * step, unit="D")
            yield f"{name}, 2-60 points", SeriesData(("s",), ds.to_numpy(), rng.poisson(8, n).astype(float)), opts
    for n in (3, 30, 300):
        ds = pd.date_range("2022-01-01", periods=n, freq="D").to_numpy()
        yield "constant", SeriesData(("c",), ds, np.full(n, 5.0)), opts
    t = np.arange(1941)
    for seed in range(5):
        y = 20 + 0.01 * t + 5 * np.sin(2 * np.pi * t / 7) + 4 * np.sin(2 * np.pi * t / 365.25) + rng.normal(0, 2, 1941)
        ds = pd.date_range("2019-01-01", periods=1941, freq="D").to_numpy()
        yield "daily, 1941 days", SeriesData(("l",), ds, y), opts
        yield "multiplicative, 1941 days", SeriesData(("m",), ds, np.abs(y)), ModelOptions(
            horizon=28, seed=0, seasonality_mode="multiplicative")
        yield "intermittent, 1941 days", SeriesData(("i",), ds, rng.poisson(0.2, 1941).astype(float)), opts
        yield "negative walk, 730 days", SeriesData(("n",), ds[:730], -50 + rng.normal(0, 3, 730).cumsum()), opts
        yield "US holidays, 730 days", SeriesData(("h",), ds[:730], y[:730]), ModelOptions(
            horizon=28, seed=0, holidays="US")
        yield "yearly forced on, 200 days", SeriesData(("f",), ds[:200], y[:200]), ModelOptions(
            horizon=28, seed=0, yearly_seasonality="on")
        hours = pd.date_range("2023-01-01", periods=24 * 365, freq="h").to_numpy()
        th = np.arange(len(hours))
        yield "hourly, a year", SeriesData(("hh",), hours, 10 + 3 * np.sin(2 * np.pi * th / 24)
                                           + rng.normal(0, 1, len(hours))), ModelOptions(horizon=48, seed=0)
        cap = np.full(1941 + 28, 100.0)
        s_curve = 10 + 85 / (1 + np.exp(-(t - 900) / 150)) + rng.normal(0, 3, 1941)
        future = pd.date_range(pd.Timestamp(ds[-1]), periods=29, freq="D")[1:].to_numpy()
        yield "logistic with cap and floor, 1941 days", SeriesData(
            ("g",), ds, s_curve, extra={"cap": cap[:1941], "floor": np.full(1941, 5.0)}, future_ds=future,
            future_extra={"cap": cap[1941:], "floor": np.full(28, 5.0)}), ModelOptions(
            horizon=28, seed=0, growth="logistic", cap_col="cap", floor_col="floor")


def main() -> None:
    quiet_logs()
    rng = np.random.default_rng(0)
    rows = defaultdict(lambda: {"n": 0, "worst": 0.0, "later": 0.0, "served": defaultdict(int)})
    for shape, series, opts in shapes(rng):
        t0 = time.process_time()
        result = fit_series(series, opts)
        seconds = time.process_time() - t0
        row = rows[shape]
        row["n"] += 1
        row["worst"] = max(row["worst"], seconds)
        if row["n"] > 1:
            row["later"] = max(row["later"], seconds)
        row["served"][f"{result.status} {result.engine or '-'} {result.model or '-'}"] += 1
    print(f"{'shape':40s} {'series':>6s} {'slowest':>8s} {'but 1st':>8s}  served by (status engine model: count)")
    for shape, row in rows.items():
        served = ", ".join(f"{k}: {v}" for k, v in sorted(row["served"].items()))
        print(f"{shape:40s} {row['n']:6d} {row['worst']:8.3f} {row['later']:8.3f}  {served}")
    print(f"slowest of all: {max(r['worst'] for r in rows.values()):.3f} s; but the first of each shape: "
          f"{max(r['later'] for r in rows.values()):.3f} s")


if __name__ == "__main__":
    main()
