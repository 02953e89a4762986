"""Per-series CPU time of the default (fast) engine, split into the Stan data, the fit and the forecast.

Calls the engine's functions on each series of a generated table in this process (no pool, no files), timing
each phase with time.process_time, so a busy machine changes the figures less than wall time would. Two
workloads: SW (../shared/bench/make_retail.py, 1000 series of 365 to 730 days with the default --days, horizon 28) and M5-length
series (the same generator's shapes cut to 1,941 days each, yearly seasonality on). Also prints each series'
log posterior sum, so two checkouts' answers can be compared (same optimum: the sums agree to rounding).

usage: PYTHONPATH=<checkout> python benchmarks/bench_series_cpu.py [--series 1000] [--days 730] [--long-series 200]
       [--repeat 3]
"""

from __future__ import annotations

import sys
import time

import numpy as np

from common import BENCH, workload_parser


def workload(series: int, days: int, seed: int, cut: int | None) -> list[tuple[np.ndarray, np.ndarray]]:
    """(ds, y) per series of make_retail's table; with `cut`, each series' last `cut` days (series generated
    twice as long, so each has at least that many)."""
    sys.path.insert(0, str(BENCH))
    from make_retail import make

    df = make(series, 2 * cut if cut else days, seed)
    out = []
    for _, g in df.groupby("series_id", sort=True):
        ds, y = g["date"].to_numpy(dtype="datetime64[ns]"), g["sales"].to_numpy(dtype=float)
        if cut:
            ds, y = ds[-cut:], y[-cut:]
        out.append((ds, y))
    return out


def run(series: list[tuple[np.ndarray, np.ndarray]], horizon: int) -> tuple[float, float, float, float]:
    """(stan data, fit, forecast) CPU seconds over all series, and the sum of the fits' log posteriors."""
    from forecast.config import ModelOptions
    from forecast.engines import fit_params, random_stream
    from forecast.engines.blas import one_blas_thread
    from forecast.engines.model import log_posterior, predict_bands, stan_data

    opts = ModelOptions()
    day = np.timedelta64(1, "D")
    prep = fit_s = pred = lp = 0.0
    with one_blas_thread():
        for i, (ds, y) in enumerate(series):
            future = ds[-1] + day * np.arange(1, horizon + 1)
            t0 = time.process_time()
            data = stan_data(ds, y, opts)
            t1 = time.process_time()
            fit = fit_params(data, opts.engine)
            t2 = time.process_time()
            predict_bands(fit.params, fit.data, future, opts, random_stream(fit.engine, i))
            t3 = time.process_time()
            prep, fit_s, pred = prep + t1 - t0, fit_s + t2 - t1, pred + t3 - t2
            lp += log_posterior(fit.params, fit.data)
    return prep, fit_s, pred, lp


def main() -> None:
    parser = workload_parser(__doc__)
    parser.add_argument("--long-series", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    import forecast

    print(f"forecast from {forecast.__file__}")
    sets = {f"SW {args.days // 2}-{args.days} days": workload(args.series, args.days, 0, None),
            "1,941 days": workload(args.long_series, 1941, 1, 1941)}
    for name, series in sets.items():
        run(series[:20], args.horizon)  # warm: imports, the shared feature grid
        best = None
        for _ in range(args.repeat):
            prep, fit_s, pred, lp = run(series, args.horizon)
            total = prep + fit_s + pred
            if best is None or total < best[0]:
                best = (total, prep, fit_s, pred, lp)
        total, prep, fit_s, pred, lp = best
        n = len(series)
        print(f"{name:16s} {n:5d} series  ms/series: data {1e3 * prep / n:.3f}  fit {1e3 * fit_s / n:.3f}  "
              f"forecast {1e3 * pred / n:.3f}  total {1e3 * total / n:.3f}  (lp sum {lp:.10f})")


if __name__ == "__main__":
    main()
