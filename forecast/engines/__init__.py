"""Engines: ways of getting Prophet's MAP fit and forecast for one series faster than stock Prophet.

- "fast" (the default): an in-process MAP solver (engines/fast.py) for every growth (linear, flat, logistic with a
  cap and floor), additive or multiplicative seasonality, holidays and regressors, with fewer terms for a series too
  short for Prophet's model; what it does not cover (a seasonality longer than the history, a logistic fit that
  does not converge) goes to "stan".
- "stan": Prophet's compiled Stan optimizer run directly on Stan data built in numpy (engines/stan.py): the same
  parameters as stock Prophet, without cmdstanpy, stanio and pandas around it.
- "prophet": stock `Prophet().fit().predict()` (models/prophet.py), for stock Prophet's answer exactly.

No pools and no files here, apart from the Stan binary's own input and output.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from ..config import ENGINES, ModelOptions
from ..types import Engine
from . import fast, stan
from .blas import one_blas_thread
from .model import (
    TREND_INDICATOR,
    Params,
    StanData,
    constant_params,
    free_parameters,
    is_constant,
    predict_bands,
    reduced,
    stan_data,
)


@dataclass
class EngineForecast:
    """One series' forecast by an engine, and which engine served it."""

    yhat: np.ndarray
    yhat_lower: np.ndarray
    yhat_upper: np.ndarray
    engine: Engine
    fit_seconds: float
    predict_seconds: float
    params: dict  # params_dict: what a later run can warm-start from
    reduced: str = ""  # how the model was reduced for a series too short for Prophet's (Fit.reduced)
    bands: dict[str, np.ndarray] = field(default_factory=dict)  # --level and --quantile columns, same paths


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
    # a logistic trend's k, m and deltas live inside the logit (rates and a time): they do not scale with y
    rt = 1.0 if data.trend_indicator == TREND_INDICATOR["logistic"] else r
    return Params(k=saved["k"] * rt, m=saved["m"] * rt, delta=np.asarray(saved["delta"], dtype=float) * rt,
                  sigma_obs=max(saved["sigma_obs"] * r, 1e-9), beta=beta)


@dataclass
class Fit:
    """One series' MAP fit: the parameters, the data (the model) they belong to, the engine that fitted them, and
    how the model was reduced from Prophet's when the series is too short for it ("" when it was not)."""

    params: Params
    data: StanData
    engine: Engine
    reduced: str = ""


def fit_params(data: StanData, engine: Engine, init: Params | None = None) -> Fit:
    """MAP parameters for one series by `engine` ("stan" or "fast").

    `init` (a warm start) changes where the optimizers start: for "fast" not the optimum it reaches; for "stan"
    the point where L-BFGS stops may move within its tolerances.

    Under "fast", a series with as many free parameters as points (a few weeks of a new item, or a sparse one
    whose few points span the years that turn yearly seasonality on) has no posterior maximum: the fit can pass
    through every point, and as sigma_obs goes to 0 the posterior grows without bound. Stan then runs to its
    iteration limit (5 to 12 s a series) for a forecast that is noise. Such a series gets Prophet's model with
    fewer terms (model.reduced): at most half as many free parameters as points, so that at least as many points
    as parameters are left to tell the noise by; the fit says what was reduced.
    """
    if is_constant(data):  # Prophet does not fit a constant series either
        return Fit(constant_params(data), data, engine)
    if engine == "fast":
        if data.T <= free_parameters(data):
            small = reduced(data, max(2, data.T // 2))
            if small is not None:
                small_data, what = small
                params = fast.fit_map(small_data)
                return Fit(_fold_dummy_changepoint(params, small_data), small_data, "fast",
                           f"{data.T} points for Prophet's {free_parameters(data)} parameters: fitted with {what}")
            raise fast.NotCovered(f"{data.T} points are too few for any Prophet model with these options (a "
                                  "trend and the holiday and regressor columns); lower --min-obs no further")
        if not fast.unsupported_reason(data):
            try:
                params = fast.fit_map(data, init=init)
                return Fit(_fold_dummy_changepoint(params, data), data, "fast")
            except fast.NotCovered:  # a logistic fit that did not converge: Stan's own optimizer takes it
                pass
    params, _ = stan.fit(data, init=init)
    return Fit(_fold_dummy_changepoint(params, data), data, "stan")


def random_stream(engine: Engine, seed: int | None) -> np.random.RandomState | np.random.Generator:
    """The uncertainty simulation's random numbers for a series fitted by `engine`, from its seed (None: fresh).

    "stan" draws from numpy's legacy RandomState, seeded as models/prophet.py seeds stock Prophet's global one, so its
    intervals equal stock Prophet's draw for draw. "fast" fits other (higher-posterior) parameters anyway, so its
    intervals cannot be stock Prophet's: it draws from numpy's Generator (PCG64, ziggurat normals), which takes
    about a fifth off the fast engine's whole cost per series (0.9 of 4.3 ms of prediction at 1,456 days).
    """
    return np.random.RandomState(seed) if engine == "stan" else np.random.default_rng(seed)


def fit_forecast(ds: np.ndarray, y: np.ndarray, future: np.ndarray, opts: ModelOptions, engine: Engine,
                 seed: int | None, warm: dict | None = None,
                 extra: dict[str, np.ndarray] | None = None,
                 future_extra: dict[str, np.ndarray] | None = None) -> EngineForecast:
    """Fit one series (ds ascending, y without NaN) and forecast at `future`.

    `seed`: the series' seed for the intervals (see `random_stream`); None for fresh randomness.
    `warm`: this series' parameters from a previous run (params_dict), to start from.
    `extra`, `future_extra`: each of opts.regressors' values at `ds` and at `future`, by name (and the cap's
    and floor's columns, with logistic growth).

    Raises:
        stan.StanFailed: when the Stan optimizer fails on this series.
        ValueError: for a cap not above the floor.
    """
    with one_blas_thread():
        t0 = time.perf_counter()
        data = stan_data(ds, y, opts, extra)
        fit = fit_params(data, engine, warm_params(warm, data))
        t1 = time.perf_counter()
        yhat, lower, upper, bands = predict_bands(fit.params, fit.data, future, opts,
                                                  random_stream(fit.engine, seed), future_extra)
    return EngineForecast(yhat, lower, upper, fit.engine, t1 - t0, time.perf_counter() - t1,
                          params_dict(fit.params, fit.data), fit.reduced, bands)


__all__ = ["ENGINES", "EngineForecast", "Fit", "fit_forecast", "fit_params", "params_dict", "random_stream",
           "warm_params"]
