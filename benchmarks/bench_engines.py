"""How much faster than the known ways of running Prophet are `--engine stan` and `--engine fast`?

On one generated input (../shared/bench/make_retail.py, default the standard workload: 1000 series x 730 days,
seed 0, horizon 28) and in one go, runs:
  - the stock loop, one Prophet().fit().predict() per series, on a subset (--loop-series) of the input;
  - the textbook pool (../shared/bench/reference_loop.py --mode pool);
  - prophet-batch's forecast_many(..., n_jobs=2, include_history=False), when prophet_batch is installed;
  - `forecast run --engine stan` and `--engine fast` at --n-jobs 1 and 2 (end to end: read, fit, write);
  - Prophet's Stan binary alone on the stock loop's series, one after another: only the optimizer's runs are
    timed (its input files are written beforehand). No engine that runs this binary once per series can beat
    that rate on one core, so its ratio to the stock loop bounds `--engine stan`'s;
and a nightly rerun: `--engine fast -j1` on the input without each series' last day, then on the full input
with --warm-start from that run (cold figure: the -j1 run above);
and prints series/s for each, its ratio to the stock loop and to the pool, and the machine's core count.
Writes the table to outputs/benchmarks/bench_engines.csv.

usage: python benchmarks/bench_engines.py [--series 1000] [--days 730] [--horizon 28] [--loop-series 50]
"""

import importlib.util
import os
import sys
import tempfile
import time
from pathlib import Path

from common import ROOT, make_retail, reference, workload_parser, write_rows
from common import forecast_run as run_summary


def subset(data: Path, n: int, out: Path) -> Path:
    import pandas as pd

    df = pd.read_csv(data)
    keep = sorted(df["series_id"].unique())[:n]
    df[df["series_id"].isin(keep)].to_csv(out, index=False)
    return out


def prophet_batch(data: Path, horizon: int) -> float | None:
    if importlib.util.find_spec("prophet_batch") is None:
        return None
    import pandas as pd
    import prophet_batch

    df = pd.read_csv(data, parse_dates=["date"]).rename(columns={"series_id": "unique_id", "date": "ds", "sales": "y"})
    t0 = time.perf_counter()
    prophet_batch.forecast_many(df, periods=horizon, n_jobs=2, include_history=False)
    return df["unique_id"].nunique() / (time.perf_counter() - t0)


def stan_binary_alone(data: Path) -> float:
    """Series/s of Prophet's Stan optimizer alone, on each series of `data` in turn, with the stan engine's input
    (data and Prophet's init, as `--engine stan` writes them) and arguments; building the input is not timed."""
    import shutil
    import tempfile

    import pandas as pd

    sys.path.insert(0, str(ROOT))  # this checkout's forecast
    from forecast.config import ModelOptions
    from forecast.engines import model, stan

    df = pd.read_csv(data, parse_dates=["date"])
    opts = ModelOptions(horizon=1, engine="stan")
    exe, seconds, n = stan.binary_path(), 0.0, 0
    for _, g in df.sort_values("date").groupby("series_id", sort=True):
        g = g[g["sales"].notna()]
        d = model.stan_data(g["date"].to_numpy(dtype="datetime64[ns]"), g["sales"].to_numpy(dtype=float), opts)
        if model.is_constant(d):  # the engine does not run the binary for these
            continue
        workdir = tempfile.mkdtemp(prefix="stan-bench-")
        try:
            Path(workdir, "data.json").write_text(stan.data_json(d))
            Path(workdir, "init.json").write_text(stan.init_json(model.initial_params(d)))
            t0 = time.perf_counter()
            proc = stan.run_binary(exe, workdir, stan.algorithm_for(d))
            seconds += time.perf_counter() - t0
            proc.check_returncode()
            n += 1
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
    return n / seconds


def drop_last_day(data: Path, out: Path) -> Path:
    import pandas as pd

    df = pd.read_csv(data)
    last = df.groupby("series_id")["date"].transform("max")
    df[df["date"] != last].to_csv(out, index=False)
    return out


def forecast_run(data: Path, horizon: int, engine: str, n_jobs: int, workdir: Path, out: Path | None = None,
                 extra: tuple = ()) -> tuple[float, dict]:
    out = out or workdir / f"run-{engine}-{n_jobs}-{time.time_ns()}"
    summary = run_summary(data, horizon, out, "--engine", engine, "--n-jobs", str(n_jobs), *extra)
    import pandas as pd

    served = pd.read_csv(out / "timings.csv")["engine"].value_counts().to_dict()
    return summary["series_per_second"], served


def main() -> None:
    parser = workload_parser(__doc__)
    parser.add_argument("--loop-series", type=int, default=50)
    args = parser.parse_args()
    cores = os.cpu_count()
    rows = []

    def report(case: str, rate: float | None, note: str = "") -> None:
        rows.append({"case": case, "series_per_second": None if rate is None else round(rate, 3), "note": note})
        shown = "skipped" if rate is None else f"{rate:8.2f} series/s"
        print(f"{case:32s} {shown}  {note}", flush=True)

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data = make_retail(tmp / "retail.csv", args.series, args.days)
        small = subset(data, min(args.loop_series, args.series), tmp / "subset.csv")
        report("stock loop", reference(small, args.horizon, "loop"), f"first {min(args.loop_series, args.series)} series")
        report("stan binary alone", stan_binary_alone(small),
               f"first {min(args.loop_series, args.series)} series, optimizer runs only: bounds --engine stan")
        report("textbook pool", reference(data, args.horizon, "pool"), f"Pool({cores})")
        report("prophet-batch n_jobs=2", prophet_batch(data, args.horizon),
               "" if importlib.util.find_spec("prophet_batch") else "not installed")
        for engine in ("stan", "fast"):
            for n_jobs in (1, 2):
                rate, served = forecast_run(data, args.horizon, engine, n_jobs, tmp)
                report(f"forecast --engine {engine} -j{n_jobs}", rate, f"served by {served}")
        yesterday = drop_last_day(data, tmp / "yesterday.csv")
        forecast_run(yesterday, args.horizon, "fast", 1, tmp, out=tmp / "yesterday-run")
        rate, served = forecast_run(data, args.horizon, "fast", 1, tmp, extra=("--warm-start", str(tmp / "yesterday-run")))
        report("forecast --engine fast -j1 warm", rate, "rerun with one more day, --warm-start")

    rate = {r["case"]: r["series_per_second"] for r in rows}
    loop, pool = rate["stock loop"], rate["textbook pool"]
    print(f"\n{args.series} series x {args.days} days, horizon {args.horizon}, {cores} cores")
    print(f"{'case':32s} {'series/s':>9s} {'x loop':>7s} {'x pool':>7s}")
    for r in rows:
        if r["series_per_second"] is None:
            continue
        print(f"{r['case']:32s} {r['series_per_second']:9.2f} {r['series_per_second'] / loop:7.2f} "
              f"{r['series_per_second'] / pool:7.2f}")
    for engine in ("stan", "fast"):
        one, two = rate[f"forecast --engine {engine} -j1"], rate[f"forecast --engine {engine} -j2"]
        print(f"--engine {engine}: 2 workers / 1 worker = {two / one:.2f}")
    batch = rate["prophet-batch n_jobs=2"]
    if batch:  # the default settings (--engine fast) at -j2 against prophet-batch on as many workers
        print(f"forecast run (default, fast) -j2 / prophet-batch n_jobs=2 = {rate['forecast --engine fast -j2'] / batch:.2f}")
    write_rows("bench_engines", [{"case": r["case"], "series": args.series, "days": args.days, "cores": cores,
                                  "series_per_second": r["series_per_second"], "note": r["note"]} for r in rows])


if __name__ == "__main__":
    main()
