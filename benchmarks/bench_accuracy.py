"""Do the stan and fast engines forecast as well as stock Prophet on real data?

For each data set in ../shared/data (store_item_demand: the first --store-item-series series; au_tourism; both m5
subsets), holds out each series' last H rows (28 for daily, 8 for quarterly), fits the rest with stock Prophet
(default settings) and with --engine stan and fast, and prints MASE (scaled by the in-sample one-step naive
error, averaged over series) and WAPE (sum |error| / sum |actual| over all held-out rows) per engine, and each
engine's difference from stock Prophet in percent. Runs in-process, one series after another.

A fourth row, "converged", is stock Prophet with its optimizer run further (L-BFGS with tolerances tightened as far as
its line search gets, see CONVERGED_LEVELS): stock Prophet stops L-BFGS on its default tolerances, short of the
maximum the fast engine solves for exactly; "fast vs conv" says how far the fast engine is from that reference.

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
from forecast.model import SeriesData, fit_series, quiet_logs  # noqa: E402

DATA = ROOT.parent / "shared" / "data"
ENGINES = ("prophet", "stan", "fast", "converged")
# L-BFGS run further than stock Prophet runs it, whatever the series length (stock Prophet uses Newton below
# 100 rows): cmdstan's stopping tolerances (defaults tol_obj 1e-12, tol_rel_obj 1e4 and tol_rel_grad 1e7 in units
# of epsilon, tol_grad 1e-8, tol_param 1e-8) tightened as far as its line search gets: at the tightest level it
# often ends in "line search failed" (the lasso prior's kink at delta = 0 has no gradient to converge on), and
# then the next looser level is run.
CONVERGED_LEVELS = [
    dict(tol_obj=1e-14, tol_rel_obj=1, tol_grad=1e-14, tol_rel_grad=1, tol_param=1e-14),
    dict(tol_obj=1e-13, tol_rel_obj=10, tol_grad=1e-12, tol_rel_grad=1e2, tol_param=1e-12),
    dict(tol_obj=1e-12, tol_rel_obj=1e2, tol_grad=1e-10, tol_rel_grad=1e4, tol_param=1e-10),
]


def converged_prophet(s: SeriesData, opts: ModelOptions):
    """Stock Prophet, default settings, with L-BFGS run to convergence; the forecast at opts.horizon steps."""
    from prophet import Prophet

    train = pd.DataFrame({"ds": s.ds, "y": s.y})
    for level in CONVERGED_LEVELS:
        m = Prophet(uncertainty_samples=0)
        m.stan_backend.newton_fallback = False
        try:
            m.fit(train, algorithm="LBFGS", iter=100_000, **level)
            break
        except RuntimeError:
            continue
    else:
        m = Prophet(uncertainty_samples=0).fit(train)
    future = pd.DataFrame({"ds": pd.date_range(train["ds"].iloc[-1], periods=opts.horizon + 1, freq=opts.freq)[1:]})
    fc = m.predict(future)
    return fc["ds"].to_numpy(dtype="datetime64[ns]"), fc["yhat"].to_numpy()


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


def evaluate(df: pd.DataFrame, horizon: int, freq: str, engine: str) -> tuple[float, float, float, int]:
    """(mean MASE, WAPE, seconds, series fitted) of one engine on one data set."""
    mases, abs_err, abs_act, seconds, n = [], 0.0, 0.0, 0.0, 0
    opts = ModelOptions(horizon=horizon, freq=freq, engine="prophet" if engine == "converged" else engine, seed=0)
    for key, g in df.sort_values("ds").groupby("key", sort=True):
        train, test = g.iloc[:-horizon], g.iloc[-horizon:]
        if len(train) < 3:
            continue
        s = SeriesData(key=(key,), ds=train["ds"].to_numpy(dtype="datetime64[ns]"), y=train["y"].to_numpy(float))
        t0 = time.perf_counter()
        if engine == "converged":
            ds, yhat = converged_prophet(s, opts)
        else:
            r = fit_series(s, opts)
            if r.status != "ok":
                continue
            ds, yhat = r.ds, r.yhat
        seconds += time.perf_counter() - t0
        fc = pd.Series(yhat, index=pd.DatetimeIndex(ds))
        actual = test.set_index("ds")["y"]
        both = actual.index.intersection(fc.index)
        err = np.abs(actual[both].to_numpy() - fc[both].to_numpy())
        scale = np.mean(np.abs(np.diff(train["y"].to_numpy())))
        if len(both) and scale > 0:
            mases.append(err.mean() / scale)
        abs_err += err.sum()
        abs_act += np.abs(actual[both].to_numpy()).sum()
        n += 1
    return float(np.mean(mases)), abs_err / abs_act, seconds, n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store-item-series", type=int, default=50)
    args = parser.parse_args()
    quiet_logs()
    print(f"{'data set':18s} {'engine':8s} {'series':>6s} {'MASE':>8s} {'WAPE':>8s} {'dMASE %':>8s} {'dWAPE %':>8s} "
          f"{'seconds':>8s}")
    for name in ("store_item_demand", "au_tourism", "m5_dense", "m5_nonzero"):
        df, horizon, freq = load(name, args.store_item_series)
        scores = {}
        for engine in ENGINES:
            mase, wape, secs, n = evaluate(df, horizon, freq, engine)
            scores[engine] = (mase, wape)
            base = scores["prophet"]
            print(f"{name:18s} {engine:8s} {n:6d} {mase:8.4f} {wape:8.4f} {100 * (mase / base[0] - 1):+8.2f} "
                  f"{100 * (wape / base[1] - 1):+8.2f} {secs:8.1f}", flush=True)
        (fm, fw), (cm, cw) = scores["fast"], scores["converged"]
        print(f"{name:18s} {'fast vs conv':>15s} {'':8s} {'':8s} {100 * (fm / cm - 1):+8.2f} {100 * (fw / cw - 1):+8.2f}",
              flush=True)


if __name__ == "__main__":
    main()
