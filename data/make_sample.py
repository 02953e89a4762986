"""Make data/sample.csv: 50 daily demand series (5 stores x 10 items) over two years, in long format.

Synthetic, so it can be shipped with no licence question: weekly and yearly seasonality, a trend per item, a
December lift and Poisson noise, like a small grocery chain's unit sales. Deterministic for a given seed.

usage: python data/make_sample.py [--out data/sample.csv] [--seed 7]
"""

import argparse

import numpy as np
import pandas as pd


def make_sample(stores: int = 5, items: int = 10, days: int = 730, seed: int = 7) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    dates = pd.date_range(end="2025-12-31", periods=days, freq="D")
    t = np.arange(days)
    doy = dates.day_of_year.to_numpy()
    frames = []
    for store in range(1, stores + 1):
        store_level = rng.uniform(0.6, 1.6)
        for item in range(1, items + 1):
            level = rng.uniform(8, 60) * store_level
            weekly = 1 + rng.uniform(0.1, 0.35) * np.sin(2 * np.pi * (t + rng.integers(7)) / 7)
            yearly = 1 + rng.uniform(0.1, 0.4) * np.sin(2 * np.pi * (doy - rng.integers(365)) / 365.25)
            trend = 1 + rng.normal(0, 0.0005) * t
            december = np.where(dates.month == 12, 1.25, 1.0)
            mean = np.clip(level * weekly * yearly * trend * december, 0.1, None)
            frames.append(pd.DataFrame({
                "store": f"S{store:02d}", "item": f"I{item:03d}", "date": dates.strftime("%Y-%m-%d"),
                "sales": rng.poisson(mean),
            }))
    return pd.concat(frames, ignore_index=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="data/sample.csv")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    make_sample(seed=args.seed).to_csv(args.out, index=False)
