"""Engines: ways of getting Prophet's MAP fit and forecast for one series faster than stock Prophet.

- "prophet": stock `Prophet().fit().predict()` (model.py; the default).
- "stan": Prophet's compiled Stan optimizer run directly on Stan data built in numpy (engines/stan.py): the same
  parameters as stock Prophet, without cmdstanpy, stanio and pandas around it.
- "fast": an in-process MAP solver (engines/fast.py) for linear/flat growth with additive or multiplicative
  seasonality, holidays and regressors; what it does not cover (series with as many parameters as points) goes
  to "stan".

Options the numpy model does not reproduce (logistic growth, a cap or floor: model.covered) are served by stock
Prophet: the caller checks `covered` first, and the series' engine says so.
No pools and no files here, apart from the Stan binary's own input and output.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from ..config import ModelOptions
from . import fast, stan
from .blas import one_blas_thread
from .model import Params, StanData, constant_params, covered, is_constant, predict, stan_data

ENGINES = ("prophet", "stan", "fast")


@dataclass
class EngineForecast:
    """One series' forecast by an engine, and which engine served it."""

    yhat: np.ndarray
    yhat_lower: np.ndarray
    yhat_upper: np.ndarray
    engine: str
    fit_seconds: float
    predict_seconds: float
    params: dict  # params_dict: what a later run can warm-start from


def _fold_dummy_changepoint(params: Params, data: StanData) -> Params:
    """Prophet, for a series too short for changepoints, folds the dummy changepoint's delta into k."""
    if data.S == 1 and data.t_change[0] == 0.0:
        params.k = float(params.k + params.delta[0])
        params.delta = np.zeros(1)
    return params


def params_dict(params: Params, data: StanData) -> dict:
    """Compact, JSON/Parquet-ready parameters of one fit, with the scale they are on (for a later warm start)."""
    return {"y_scale": data.y_scale, "k": float(params.k), "m": float(params.m),
            "sigma_obs": float(params.sigma_obs), "delta": np.asarray(params.delta, dtype=float).tolist(),
            "beta": np.asarray(params.beta, dtype=float).tolist()}


def warm_params(saved: dict | None, data: StanData) -> Params | None:
    """A previous fit's parameters (params_dict) as a start for `data`: rescaled to its y_scale; None when the
    shapes differ (another number of changepoints or features), which means a cold start."""
    if not saved or len(saved["delta"]) != data.S or len(saved["beta"]) != data.K:
        return None
    r = float(saved["y_scale"]) / data.y_scale  # trend, noise and additive terms scale with y; multiplicative not
    beta = np.asarray(saved["beta"], dtype=float) * np.where(data.s_m != 0, 1.0, r)
    return Params(k=saved["k"] * r, m=saved["m"] * r, delta=np.asarray(saved["delta"], dtype=float) * r,
                  sigma_obs=max(saved["sigma_obs"] * r, 1e-9), beta=beta)


def fit_params(data: StanData, engine: str, init: Params | None = None) -> tuple[Params, str]:
    """MAP parameters for one series by `engine` ("stan" or "fast"), and the engine that produced them.

    `init` (a warm start) changes where the optimizers start: for "fast" not the optimum it reaches; for "stan"
    the point where L-BFGS stops may move within its tolerances.
    """
    if is_constant(data):  # Prophet does not fit a constant series either
        return constant_params(data), engine
    if engine == "fast" and not fast.supports(data):
        try:
            params, _ = fast.fit(data, init=init)
            return _fold_dummy_changepoint(params, data), "fast"
        except fast.NotCovered:
            pass
    params, _ = stan.fit(data, init=init)
    return _fold_dummy_changepoint(params, data), "stan"


def random_stream(engine: str, seed: int | None):
    """The uncertainty simulation's random numbers for a series fitted by `engine`, from its seed (None: fresh).

    "stan" draws from numpy's legacy RandomState, seeded as model.py seeds stock Prophet's global one, so its
    intervals equal stock Prophet's draw for draw. "fast" fits other (higher-posterior) parameters anyway, so its
    intervals cannot be stock Prophet's: it draws from numpy's Generator (PCG64, ziggurat normals), which takes
    about a fifth off the fast engine's whole cost per series (0.9 of 4.3 ms of prediction at 1,456 days).
    """
    return np.random.RandomState(seed) if engine == "stan" else np.random.default_rng(seed)


def fit_forecast(ds: np.ndarray, y: np.ndarray, future: np.ndarray, opts: ModelOptions, engine: str,
                 seed: int | None, warm: dict | None = None,
                 extra: dict[str, np.ndarray] | None = None,
                 future_extra: dict[str, np.ndarray] | None = None) -> EngineForecast:
    """Fit one series (ds ascending, y without NaN) and forecast at `future`, for options the numpy model covers
    (model.covered; the caller sends the others to stock Prophet).

    `seed`: the series' seed for the intervals (see `random_stream`); None for fresh randomness.
    `warm`: this series' parameters from a previous run (params_dict), to start from.
    `extra`, `future_extra`: each of opts.regressors' values at `ds` and at `future`, by name.

    Raises:
        stan.StanFailed: when the Stan optimizer fails on this series.
        ValueError: for options the numpy model does not cover (it would fit another model than asked for).
    """
    why = covered(opts)
    if why:
        raise ValueError(f"the {engine} engine does not cover {why}; stock Prophet serves it")
    with one_blas_thread():
        t0 = time.perf_counter()
        data = stan_data(ds, y, opts, extra)
        params, used = fit_params(data, engine, warm_params(warm, data))
        t1 = time.perf_counter()
        yhat, lower, upper = predict(params, data, future, opts, random_stream(used, seed), future_extra)
    return EngineForecast(yhat, lower, upper, used, t1 - t0, time.perf_counter() - t1, params_dict(params, data))


__all__ = ["ENGINES", "EngineForecast", "fit_forecast", "fit_params", "params_dict", "random_stream",
           "warm_params"]
