"""Do the stan and fast engines forecast as well as stock Prophet on every data set in ../shared/data?

Each data set is declared once, in SETS (a loader each); --sets chooses among them, in this order:
- store_item_demand: all 500 daily series (--store-item-series N keeps the first N), horizon 28.
- au_tourism: 304 quarterly series (Region/Purpose), horizon 8.
- m5_dense, m5_nonzero: the two 10-series M5 subsets, daily, horizon 28.
- prophet_examples: Prophet's single-series example CSVs (ds,y) as one data set of 6 series, each with a horizon
  fitting its frequency: 12 for the two monthly ones, 28 for the three daily ones, 288 (one day) for the 5-minute
  Yosemite temperatures. example_pedestrians_multivariate.csv is left out: it is wide (ds, location_4,
  location_41), not ds,y.
- m4_weekly, m4_hourly: the M4 train files (359 and 414 series), wide and without timestamps, so each series gets
  a synthetic index (weekly W-MON from 1970-01-05, hourly from 2015-01-01 00:00); horizons 13 and 48, M4's. The
  M4 test files are not used: like every other set's, each train series' last H rows are held out.

Rows with a missing y are dropped (stock Prophet drops them too). Each series' last H rows are held out, the rest
fitted with stock Prophet (default settings) and with --engine stan and fast, and the H-step forecast on the
series' grid scored where it meets the held-out rows (a series with gaps, as in m5_nonzero, has fewer than H
rows scored). For each set and engine it prints the series count, mean MASE (scaled by the in-sample one-step naive
error), pooled WAPE (sum |error| / sum |actual| over all held-out rows), the difference from stock Prophet in
percent and the fit seconds; then, on sets with at least 100 series, issue 13's bar: fast's WAPE and mean MASE no
worse than stock Prophet's by more than 0.5 % (PASS/FAIL). Series an engine fails on are counted and left out of
every engine's scores. Runs in-process, one series after another.

Where fast's forecasts differ from stock Prophet's, the question is which fit is the better answer to Prophet's
own problem. So for every series it also evaluates the Stan model's objective (the log posterior, as Stan's
lp__) at stock Prophet's parameters (--engine stan's, which equal them) and at fast's, and prints the share of
series where fast's is at least as high (to 1e-9 relative), the worst shortfall and the largest gain; then
fast's difference from stock Prophet split in two: over the series where stock Prophet's optimizer stopped short
of fast's optimum (a log posterior lower by more than 1e-6 relative), and over the rest. Series that fast fits
with a reduced model (too few points for Prophet's) have no comparable log posterior and are counted apart.
(Running Stan's L-BFGS further, with tighter tolerances, is no reference: near the lasso prior's kink at
delta = 0 its line search fails, and where it stops its log posterior is lower than fast's.)

usage: python benchmarks/bench_accuracy.py [--sets NAME ...] [--store-item-series N] [--out FILE.json]
"""

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # this checkout's forecast

from forecast.config import ModelOptions  # noqa: E402
from forecast.engines.model import Params, log_posterior, stan_data  # noqa: E402
from forecast.model import fit_series  # noqa: E402
from forecast.models.prophet import quiet_logs  # noqa: E402
from forecast.types import SeriesData  # noqa: E402

DATA = ROOT.parent / "shared" / "data"
ENGINES = ("prophet", "stan", "fast")
BAR_SERIES, BAR_PCT = 100, 0.5  # issue 13: on sets of at least 100 series, fast no worse than stock by 0.5 %

# A data set is a list of parts: (frame with key, ds, y; horizon; freq), one part per horizon and frequency.
Part = tuple[pd.DataFrame, int, str]


def store_item_demand(args: argparse.Namespace) -> list[Part]:
    df = pd.read_csv(DATA / "store_item_demand" / "train.csv.gz", parse_dates=["date"])
    df["key"] = df["store"].astype(str) + "/" + df["item"].astype(str)
    keep = df["key"].drop_duplicates().iloc[:args.store_item_series]
    df = df[df["key"].isin(keep)].rename(columns={"date": "ds", "sales": "y"})
    return [(df[["key", "ds", "y"]], 28, "D")]


def au_tourism(args: argparse.Namespace) -> list[Part]:
    df = pd.read_csv(DATA / "au_tourism" / "tourism.csv")
    df["key"] = df["Region"] + "/" + df["Purpose"]
    df["ds"] = pd.to_datetime(df["Quarter"])
    return [(df.rename(columns={"Trips": "y"})[["key", "ds", "y"]], 8, "QS")]


def m5(file: str):
    def load(args: argparse.Namespace) -> list[Part]:
        df = pd.read_csv(DATA / "m5_subset" / file, parse_dates=["date"])
        return [(df.rename(columns={"id": "key", "date": "ds", "sales": "y"})[["key", "ds", "y"]], 28, "D")]
    return load


# Prophet's examples: file, horizon, freq (example_pedestrians_multivariate.csv is wide, not ds,y: left out)
EXAMPLES = (("example_retail_sales.csv", 12, "MS"), ("example_air_passengers.csv", 12, "MS"),
            ("example_wp_log_peyton_manning.csv", 28, "D"), ("example_wp_log_R.csv", 28, "D"),
            ("example_pedestrians_covid.csv", 28, "D"), ("example_yosemite_temps.csv", 288, "5min"))


def prophet_examples(args: argparse.Namespace) -> list[Part]:
    parts = []
    for file, horizon, freq in EXAMPLES:
        df = pd.read_csv(DATA / "prophet_examples" / file, parse_dates=["ds"])  # air passengers: CR line ends
        parts.append((df.assign(key=file.removeprefix("example_").removesuffix(".csv"))[["key", "ds", "y"]],
                      horizon, freq))
    return parts


def m4(file: str, horizon: int, freq: str, start: str):
    """Loader of an M4 train file: wide (V1 the id, then the values, right-padded with blanks), no timestamps,
    so each series is put on a synthetic index of `freq` from `start`."""
    def load(args: argparse.Namespace) -> list[Part]:
        wide = pd.read_csv(DATA / file, index_col="V1")
        frames = []
        for key, row in wide.iterrows():
            y = row.dropna().to_numpy(float)
            frames.append(pd.DataFrame({"key": key, "ds": pd.date_range(start, periods=len(y), freq=freq), "y": y}))
        return [(pd.concat(frames, ignore_index=True), horizon, freq)]
    return load


SETS = {  # name: loader
    "store_item_demand": store_item_demand,
    "au_tourism": au_tourism,
    "m5_dense": m5("m5_subset_dense_10x115.csv"),
    "m5_nonzero": m5("m5_subset_nonzero_only_10series.csv"),
    "prophet_examples": prophet_examples,
    "m4_weekly": m4("m4_weekly/Weekly-train.csv.gz", 13, "W-MON", "1970-01-05"),
    "m4_hourly": m4("m4_hourly/Hourly-train.csv.gz", 48, "h", "2015-01-01 00:00"),
}


def evaluate(parts: list[Part], engine: str) -> tuple[dict, float, dict, dict, list]:
    """One engine on one set: (by key: (MASE or None, sum |error|, sum |actual|) of its held-out rows; seconds;
    log posterior by key (stan/fast only); by key the reason for each failed series; keys fitted with a reduced
    model)."""
    scores, seconds, lps, failed, reduced = {}, 0.0, {}, {}, []
    for df, horizon, freq in parts:
        opts = ModelOptions(horizon=horizon, freq=freq, engine=engine, seed=0)
        for key, g in df.dropna(subset=["y"]).sort_values("ds").groupby("key", sort=True):
            train, test = g.iloc[:-horizon], g.iloc[-horizon:]
            if len(train) < 3:
                failed[key] = f"{len(train)} rows before the held-out {horizon}"
                continue
            s = SeriesData(key=(key,), ds=train["ds"].to_numpy(dtype="datetime64[ns]"),
                           y=train["y"].to_numpy(float))
            t0 = time.perf_counter()
            r = fit_series(s, opts)
            seconds += time.perf_counter() - t0
            if r.status != "ok":
                failed[key] = f"{r.stage}: {r.error}"
                continue
            if r.model == "prophet:reduced":
                reduced.append(key)  # its parameters belong to a smaller model than stan_data's
            elif r.params is not None:
                p = r.params
                lps[key] = log_posterior(Params(k=p["k"], m=p["m"], delta=np.array(p["delta"]),
                                                sigma_obs=p["sigma_obs"], beta=np.array(p["beta"])),
                                         stan_data(s.ds, s.y, opts))
            fc = pd.Series(r.yhat, index=pd.DatetimeIndex(r.ds))
            actual = test.set_index("ds")["y"]
            both = actual.index.intersection(fc.index)
            err = np.abs(actual[both].to_numpy() - fc[both].to_numpy())
            scale = np.mean(np.abs(np.diff(train["y"].to_numpy())))
            scores[key] = (err.mean() / scale if len(both) and scale > 0 else None, err.sum(),
                           np.abs(actual[both].to_numpy()).sum())
    return scores, seconds, lps, failed, reduced


def mase_wape(scores: dict, keys) -> tuple[float, float]:
    """Mean MASE and WAPE over `keys` of one engine's scores."""
    mases = [scores[k][0] for k in keys if scores[k][0] is not None]
    return float(np.mean(mases)), sum(scores[k][1] for k in keys) / sum(scores[k][2] for k in keys)


def pct(new: float, base: float) -> float:
    return 100 * (new / base - 1)


def run_set(name: str, args: argparse.Namespace) -> dict:
    """Evaluate the three engines on one data set, print its lines and return its figures."""
    parts = SETS[name](args)
    runs = {engine: evaluate(parts, engine) for engine in ENGINES}
    scores = {e: runs[e][0] for e in ENGINES}
    keys = sorted(set.intersection(*(set(scores[e]) for e in ENGINES)))
    out = {"series": len(keys), "horizons": sorted({h for _, h, _ in parts}), "engines": {}}
    base = mase_wape(scores["prophet"], keys)
    for engine in ENGINES:
        (mase, wape), (_, seconds, _, failed, _) = mase_wape(scores[engine], keys), runs[engine]
        d_mase, d_wape = pct(mase, base[0]), pct(wape, base[1])
        out["engines"][engine] = {"mase": mase, "wape": wape, "dmase_pct": d_mase, "dwape_pct": d_wape,
                                  "seconds": seconds, "failed": failed}
        print(f"{name:18s} {engine:8s} {len(keys):6d} {mase:8.4f} {wape:8.4f} {d_mase:+8.2f} {d_wape:+8.2f} "
              f"{seconds:8.1f}", flush=True)
        for key, why in failed.items():
            print(f"{name:18s} {engine} failed on {key}: {why}", flush=True)
    fast = out["engines"]["fast"]
    if len(keys) >= BAR_SERIES:
        ok = fast["dmase_pct"] <= BAR_PCT and fast["dwape_pct"] <= BAR_PCT
        out["bar"] = "PASS" if ok else "FAIL"
        print(f"{name:18s} bar: fast dMASE {fast['dmase_pct']:+.2f} %, dWAPE {fast['dwape_pct']:+.2f} % vs "
              f"+{BAR_PCT} %: {out['bar']}", flush=True)
    else:
        out["bar"] = None
        print(f"{name:18s} bar: n/a ({len(keys)} series, fewer than {BAR_SERIES})", flush=True)

    lps, reduced = {e: runs[e][2] for e in ENGINES}, runs["fast"][4]
    both = sorted(set(lps["stan"]) & set(lps["fast"]) & set(keys))
    gain = np.array([lps["fast"][k] - lps["stan"][k] for k in both])
    rel = gain / np.array([abs(lps["stan"][k]) for k in both])
    at_least = int((rel >= -1e-9).sum())
    worst = int(np.argmin(rel)) if len(both) else None
    out["lp"] = {"compared": len(both), "fast_at_least_stan": at_least, "reduced_not_compared": len(reduced),
                 "smallest_gain": float(gain[worst]) if worst is not None else None,  # < 0: a shortfall
                 "smallest_gain_rel": float(rel[worst]) if worst is not None else None,
                 "smallest_gain_key": both[worst] if worst is not None else None,
                 "largest_gain": float(gain.max()) if len(both) else None,
                 "median_gain": float(np.median(gain)) if len(both) else None}
    if len(both):
        shortfall = f"worst shortfall {-gain[worst]:.4g} ({-rel[worst]:.3g} relative, {both[worst]})" \
            if rel[worst] < 0 else f"no shortfall (smallest gain {gain[worst]:.3g})"
        print(f"{name:18s} log posterior: fast >= stan (1e-9 relative) on {at_least}/{len(both)} series, "
              f"{shortfall}, largest gain {gain.max():.4g}, median {np.median(gain):.3g}"
              + (f"; {len(reduced)} fitted reduced, not compared" if reduced else ""), flush=True)
    # where do fast's forecasts differ? split the series by whether stock Prophet's L-BFGS stopped short of
    # fast's optimum (by more than the 1e-6 relative tolerance on the log posterior)
    short = {k for k, r in zip(both, rel) if r > 1e-6}
    out["split"] = {}
    same = [k for k in both if k not in short]
    for label, part in (("stock stopped short", sorted(short)), ("same optimum", same)):
        if part:
            (fm, fw), (pm, pw) = mase_wape(scores["fast"], part), mase_wape(scores["prophet"], part)
            out["split"][label] = {"series": len(part), "dmase_pct": pct(fm, pm), "dwape_pct": pct(fw, pw)}
            print(f"{name:18s} fast vs stock where {label} ({len(part)} series): dMASE % dWAPE % "
                  f"{pct(fm, pm):+8.2f} {pct(fw, pw):+8.2f}", flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", nargs="+", choices=list(SETS), default=list(SETS), metavar="NAME",
                        help=f"data sets to run (default: all): {', '.join(SETS)}")
    parser.add_argument("--store-item-series", type=int, default=500, help="store_item_demand's first N series")
    parser.add_argument("--out", type=Path, help="also write the figures to this JSON file (after each set)")
    args = parser.parse_args()
    quiet_logs()
    print(f"{'data set':18s} {'engine':8s} {'series':>6s} {'MASE':>8s} {'WAPE':>8s} {'dMASE %':>8s} {'dWAPE %':>8s} "
          f"{'seconds':>8s}", flush=True)
    figures, t0 = {}, time.perf_counter()
    for name in [s for s in SETS if s in args.sets]:
        figures[name] = run_set(name, args)
        if args.out:
            args.out.write_text(json.dumps(figures, indent=1, default=str) + "\n")
    print(f"wall time {time.perf_counter() - t0:.0f} s", flush=True)


if __name__ == "__main__":
    main()
