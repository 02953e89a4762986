"""Do the stan and fast engines forecast as well as stock Prophet on real data?

For each data set in ../shared/data (store_item_demand: the first --store-item-series series; au_tourism; both m5
subsets), holds out each series' last H rows (28 for daily, 8 for quarterly), fits the rest with stock Prophet
(default settings) and with --engine stan and fast, and prints MASE (scaled by the in-sample one-step naive
error, averaged over series) and WAPE (sum |error| / sum |actual| over all held-out rows) per engine, and each
engine's difference from stock Prophet in percent. Runs in-process, one series after another.

Where fast's forecasts differ from stock Prophet's, the question is which fit is the better answer to Prophet's
own problem. So for every series it also evaluates the Stan model's objective (the log posterior, as Stan's
lp__) at stock Prophet's parameters (--engine stan's, which equal them) and at fast's, and prints the share of
series where fast's is at least as high (to 1e-9 relative) and the largest gain; then fast's difference from
stock Prophet split in two: over the series where stock Prophet's optimizer stopped short of fast's optimum (a
log posterior lower by more than 1e-6 relative), and over the rest. (Running Stan's L-BFGS further,
with tighter tolerances, is no reference: near the lasso prior's kink at delta = 0 its line search fails, and
where it stops its log posterior is lower than fast's.)

usage: python benchmarks/bench_accuracy.py [--store-item-series 50]
"""

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # this checkout's forecast

from forecast.config import ModelOptions  # noqa: E402
from forecast.engines.model import Params, log_posterior, stan_data  # noqa: E402
from forecast.model import SeriesData, fit_series, quiet_logs  # noqa: E402

DATA = ROOT.parent / "shared" / "data"
ENGINES = ("prophet", "stan", "fast")


def load(name: str, store_item_series: int) -> tuple[pd.DataFrame, int, str]:
    """(frame with key, ds, y; horizon; freq) of one data set."""
    if name == "store_item_demand":
        df = pd.read_csv(DATA / name / "train.csv.gz", parse_dates=["date"])
        df["key"] = df["store"].astype(str) + "/" + df["item"].astype(str)
        keep = df["key"].drop_duplicates().iloc[:store_item_series]
        df = df[df["key"].isin(keep)].rename(columns={"date": "ds", "sales": "y"})
        return df[["key", "ds", "y"]], 28, "D"
    if name == "au_tourism":
        df = pd.read_csv(DATA / name / "tourism.csv")
        df["key"] = df["Region"] + "/" + df["Purpose"]
        df["ds"] = pd.to_datetime(df["Quarter"])
        return df.rename(columns={"Trips": "y"})[["key", "ds", "y"]], 8, "QS"
    file = {"m5_dense": "m5_subset_dense_10x115.csv", "m5_nonzero": "m5_subset_nonzero_only_10series.csv"}[name]
    df = pd.read_csv(DATA / "m5_subset" / file, parse_dates=["date"])
    return df.rename(columns={"id": "key", "date": "ds", "sales": "y"})[["key", "ds", "y"]], 28, "D"


def evaluate(df: pd.DataFrame, horizon: int, freq: str, engine: str) -> tuple[dict, float, dict]:
    """One engine on one set: (by key: (MASE or None, sum |error|, sum |actual|) of its held-out rows; seconds;
    log posterior by key (stan/fast only))."""
    scores, seconds, lps = {}, 0.0, {}
    opts = ModelOptions(horizon=horizon, freq=freq, engine=engine, seed=0)
    for key, g in df.sort_values("ds").groupby("key", sort=True):
        train, test = g.iloc[:-horizon], g.iloc[-horizon:]
        if len(train) < 3:
            continue
        s = SeriesData(key=(key,), ds=train["ds"].to_numpy(dtype="datetime64[ns]"), y=train["y"].to_numpy(float))
        t0 = time.perf_counter()
        r = fit_series(s, opts)
        seconds += time.perf_counter() - t0
        if r.status != "ok":
            continue
        if r.params is not None:
            p = r.params
            data = stan_data(s.ds, s.y, opts)
            lps[key] = log_posterior(Params(k=p["k"], m=p["m"], delta=np.array(p["delta"]), sigma_obs=p["sigma_obs"],
                                            beta=np.array(p["beta"])), data)
        fc = pd.Series(r.yhat, index=pd.DatetimeIndex(r.ds))
        actual = test.set_index("ds")["y"]
        both = actual.index.intersection(fc.index)
        err = np.abs(actual[both].to_numpy() - fc[both].to_numpy())
        scale = np.mean(np.abs(np.diff(train["y"].to_numpy())))
        scores[key] = (err.mean() / scale if len(both) and scale > 0 else None, err.sum(),
                       np.abs(actual[both].to_numpy()).sum())
    return scores, seconds, lps


def mase_wape(scores: dict, keys) -> tuple[float, float]:
    """Mean MASE and WAPE over `keys` of one engine's scores."""
    mases = [scores[k][0] for k in keys if scores[k][0] is not None]
    return float(np.mean(mases)), sum(scores[k][1] for k in keys) / sum(scores[k][2] for k in keys)


def change(new: tuple[float, float], base: tuple[float, float]) -> str:
    return f"{100 * (new[0] / base[0] - 1):+8.2f} {100 * (new[1] / base[1] - 1):+8.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store-item-series", type=int, default=50)
    args = parser.parse_args()
    quiet_logs()
    print(f"{'data set':18s} {'engine':8s} {'series':>6s} {'MASE':>8s} {'WAPE':>8s} {'dMASE %':>8s} {'dWAPE %':>8s} "
          f"{'seconds':>8s}")
    for name in ("store_item_demand", "au_tourism", "m5_dense", "m5_nonzero"):
        df, horizon, freq = load(name, args.store_item_series)
        scores, seconds, lps = {}, {}, {}
        for engine in ENGINES:
            scores[engine], seconds[engine], lps[engine] = evaluate(df, horizon, freq, engine)
        keys = sorted(set.intersection(*(set(scores[e]) for e in ENGINES)))
        base = mase_wape(scores["prophet"], keys)
        for engine in ENGINES:
            mase, wape = mase_wape(scores[engine], keys)
            print(f"{name:18s} {engine:8s} {len(keys):6d} {mase:8.4f} {wape:8.4f} {change((mase, wape), base)} "
                  f"{seconds[engine]:8.1f}", flush=True)
        both = sorted(set(lps["stan"]) & set(lps["fast"]) & set(keys))
        gain = np.array([lps["fast"][k] - lps["stan"][k] for k in both])
        at_least = np.array([lps["fast"][k] >= lps["stan"][k] - 1e-9 * abs(lps["stan"][k]) for k in both])
        print(f"{name:18s} log posterior: fast >= stock Prophet's on {int(at_least.sum())}/{len(both)} series, "
              f"largest gain {gain.max():.4g}, median {np.median(gain):.3g}", flush=True)
        # where do fast's forecasts differ? split the series by whether stock Prophet's L-BFGS stopped short of
        # fast's optimum (by more than the 1e-6 relative tolerance on the log posterior)
        short = [k for k in both if lps["fast"][k] - lps["stan"][k] > 1e-6 * abs(lps["stan"][k])]
        same = [k for k in both if k not in set(short)]
        for label, part in (("stock stopped short", short), ("same optimum", same)):
            if part:
                shown = change(mase_wape(scores["fast"], part), mase_wape(scores["prophet"], part))
                print(f"{name:18s} fast vs stock where {label} ({len(part)} series): dMASE % dWAPE % {shown}",
                      flush=True)


if __name__ == "__main__":
    main()
