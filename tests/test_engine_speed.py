"""The fast engine's speed-ups keep its answers: the same solves and active-set steps (to the bit), the same
design matrix, the same optimum, and interval simulations drawn from Prophet's distribution.

Each cheaper form is checked against the plain form it replaced, written out here: numpy's own solve, the
active-set method that always runs its line search, the stacked design columns, and Prophet's own layout of
the trend's change points (a uniform per step and path) for the simulation.
"""

import numpy as np
import pandas as pd
import pytest
from test_engines import series

from forecast.config import ModelOptions
from forecast.engines import fast, fit_params
from forecast.engines.model import change_sizes, log_posterior, predict, stan_data


def _problem(p: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A lasso problem shaped like the engine's: k and m free, then penalised deltas, then ridge-only betas."""
    rng = np.random.default_rng(seed)
    A = rng.normal(size=(3 * p, p))
    G = A.T @ A + np.diag(rng.uniform(0, 0.1, p))
    b = A.T @ rng.normal(size=3 * p) * rng.uniform(0.5, 5)
    lam = np.zeros(p)
    lam[2:2 + p // 2] = rng.uniform(0.1, 3.0) * rng.uniform(0.5, 1.5, p // 2)
    return G, b, lam


def _lasso_with_line_search(G: np.ndarray, b: np.ndarray, lam: np.ndarray, x0: np.ndarray | None = None,
                            max_iter: int = 500) -> np.ndarray:
    """The feature-sign active-set method as it was before the fast path: the line search at every step."""
    p = len(b)
    l1 = lam > 0
    x = np.zeros(p) if x0 is None else x0.copy()
    theta = np.sign(x) * l1
    active = ~l1 | (x != 0)
    tol = 1e-12 * max(1.0, float(np.abs(b).max()))
    for _ in range(max_iter):
        idx = np.flatnonzero(active)
        if len(idx):
            xa = np.linalg.solve(G[idx][:, idx], b[idx] - lam[idx] * theta[idx])
            cur = x[idx]
            d = np.zeros(p)
            d[idx] = xa - cur
            flips = l1[idx] & (np.sign(xa) != theta[idx]) & (cur != 0)
            j_flip = idx[flips]
            a_flip = cur[flips] / (cur[flips] - xa[flips])
            keep = (a_flip > 0) & (a_flip < 1)
            steps = np.concatenate([[1.0], a_flip[keep]])
            zeroed = np.concatenate([[-1], j_flip[keep]])
            c1, c2 = (G @ x - b) @ d, d @ (G @ d)
            f = c1 * steps + 0.5 * c2 * steps**2 + np.abs(x[None, :] + steps[:, None] * d[None, :]) @ lam
            best = int(np.argmin(f))
            x = x + steps[best] * d
            if zeroed[best] >= 0:
                x[zeroed[best]] = 0.0
            consistent = zeroed[best] < 0 and not np.any(l1[idx] & (np.sign(xa) != theta[idx]))
            theta = np.sign(x) * l1
            active = ~l1 | (x != 0)
            if not consistent:
                continue
        grad = G @ x - b
        zero = l1 & ~active
        if not zero.any():
            return x
        viol = np.where(zero, np.abs(grad) - lam, -np.inf)
        j = int(np.argmax(viol))
        if viol[j] <= tol:
            return x
        theta[j] = -np.sign(grad[j])
        active[j] = True
    return x


def test_solve_gives_numpys_numbers_and_numpys_error_for_a_singular_matrix():
    for p, seed in [(1, 0), (5, 1), (33, 2), (53, 3)]:
        G, b, _ = _problem(p, seed)
        np.testing.assert_array_equal(fast.solve(G, b), np.linalg.solve(G, b))
    singular = np.ones((3, 3))
    with np.errstate(invalid="ignore"), pytest.raises(np.linalg.LinAlgError):
        fast.solve(singular, np.ones(3))


def test_active_set_steps_are_those_of_the_method_with_the_line_search_every_step():
    for seed in range(60):
        p = 8 + seed % 30
        G, b, lam = _problem(p, seed)
        x0 = None
        if seed % 3 == 0:  # a warm start with some signs wrong, so that coefficients cross zero on the way
            x0 = np.random.default_rng(seed).normal(size=p)
        np.testing.assert_array_equal(fast.lasso_qp(G, b, lam, x0=x0), _lasso_with_line_search(G, b, lam, x0=x0))


@pytest.mark.parametrize("opts", [ModelOptions(), ModelOptions(growth="flat"),
                                  ModelOptions(seasonality_mode="multiplicative")])
def test_design_matrix_is_the_stacked_columns(opts):
    ds, y = series("break", 500, seed=2)
    data = stan_data(ds, y, opts)
    D, _, _ = fast._design(data)
    flat = opts.growth == "flat"
    hinge = np.maximum(data.t[:, None] - data.t_change[None, :], 0.0) * (data.t[:, None] >= data.t_change[None, :])
    stacked = np.column_stack([0 * data.t if flat else data.t, np.ones_like(data.t), 0 * hinge if flat else hinge,
                               data.X * data.s_a])
    np.testing.assert_array_equal(D, stacked)


def test_fit_map_is_fits_optimum_and_the_engine_keeps_it():
    for kind, n in [("break", 400), ("zeros", 300), ("negative", 120)]:
        ds, y = series(kind, n, seed=4)
        data = stan_data(ds, y, ModelOptions())
        params, lp = fast.fit(data)
        alone = fast.fit_map(data)
        assert lp == log_posterior(alone, data)
        np.testing.assert_array_equal(fit_params(data, "fast").params.delta, alone.delta)


def test_change_points_are_a_bernoulli_sequence_with_laplace_sizes():
    rng = np.random.default_rng(11)
    steps, paths, rate, scale = 28, 1000, 0.04, 0.3
    draws = np.stack([change_sizes(rng, steps, paths, rate, scale) for _ in range(40)])
    # batches of one gap at a time: the same sequence goes on batch after batch
    small = np.stack([change_sizes(rng, steps, paths, rate, scale, batch=1) for _ in range(10)])
    for sample in (draws, small):
        hit = sample != 0
        n = hit.size
        assert abs(hit.mean() - rate) <= 4 * np.sqrt(rate * (1 - rate) / n)  # the rate, to 4 standard errors
        per_step = hit.mean(axis=(0, 2))  # every step as likely as any other (no edge effect at the batch ends)
        assert np.abs(per_step - rate).max() <= 5 * np.sqrt(rate * (1 - rate) / (n / steps))
    hit = draws != 0
    per_path = hit.sum(axis=1).ravel()  # changes per path: binomial(steps, rate), so its variance too
    assert per_path.var() == pytest.approx(steps * rate * (1 - rate), rel=0.08)
    size = draws[hit]
    assert np.abs(size).mean() == pytest.approx(scale, rel=0.03)  # Laplace: E|x| is the scale
    assert abs(size.mean()) <= 4 * np.sqrt(2) * scale / np.sqrt(len(size))
    assert (change_sizes(rng, 3, 4, 1.0, scale) != 0).all()  # a rate of 1 or more: a change at every step
    assert not change_sizes(rng, 3, 4, 0.0, scale).any()


def _bands_over_seeds(params, data, future, opts, stream, seeds, extra=None) -> np.ndarray:
    return np.stack([np.stack(predict(params, data, future, opts, stream(s), extra)[1:]) for s in seeds])


@pytest.mark.parametrize("growth", ["linear", "logistic"])
def test_interval_bounds_over_many_seeds_are_those_of_prophets_draws(growth):
    # fast's draws (geometric gaps, time x sample) against Prophet's layout (a uniform per step and path), 120
    # seeds each at the default 1,000 samples: each bound's mean over the seeds agrees to 4.5 standard errors,
    # and so does its spread from seed to seed
    if growth == "linear":
        ds, y = series("break", 300, seed=8)
        extra = ahead = None
        opts = ModelOptions(horizon=40)
    else:
        # half way up an S-curve at the end of the history, where the trend's changes still move the forecast
        t = np.arange(200)
        ds = pd.date_range("2021-03-01", periods=200, freq="D").to_numpy()
        y = 10 + 85 / (1 + np.exp(-(t - 200) / 40)) + np.random.default_rng(8).normal(0, 2, 200)
        extra, ahead = {"cap": np.full(200, 100.0)}, {"cap": np.full(40, 100.0)}
        opts = ModelOptions(horizon=40, growth="logistic", cap_col="cap", changepoint_prior_scale=0.5)
    data = stan_data(ds, y, opts, extra)
    params = fast.fit_map(data)
    future = pd.date_range(pd.Timestamp(ds[-1]), periods=41, freq="D")[1:].to_numpy()
    seeds = range(120)
    fast_bands = _bands_over_seeds(params, data, future, opts, np.random.default_rng, seeds, ahead)
    prophet_bands = _bands_over_seeds(params, data, future, opts, np.random.RandomState, seeds, ahead)
    se = np.sqrt((fast_bands.var(axis=0) + prophet_bands.var(axis=0)) / len(seeds))
    assert (np.abs(fast_bands.mean(axis=0) - prophet_bands.mean(axis=0)) <= 4.5 * se).all()
    ratio = fast_bands.std(axis=0)[:, -10:] / prophet_bands.std(axis=0)[:, -10:]  # where the trend's part is largest
    assert (ratio > 0.7).all() and (ratio < 1.4).all()
    width = prophet_bands[:, 1] - prophet_bands[:, 0]
    assert width.mean(axis=0)[-1] > 1.05 * width.mean(axis=0)[0]  # the trend's uncertainty is in the bounds
