"""Engines: ways of getting Prophet's MAP fit and forecast for one series faster than stock Prophet.

- "prophet": stock `Prophet().fit().predict()` (model.py; the default).
- "stan": Prophet's compiled Stan optimizer run directly on Stan data built in numpy (engines/stan.py): the same
  parameters as stock Prophet, without cmdstanpy, stanio and pandas around it.
- "fast": an in-process MAP solver (engines/fast.py) for linear/flat growth, additive or multiplicative
  seasonality; what it does not cover (series with as many parameters as points) goes to "stan".

Options the numpy model does not reproduce (none of forecast's options today; logistic growth and extra regressors
once they exist) are served by stock Prophet: `fit_forecast` returns None.
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
    params: Params


def _fold_dummy_changepoint(params: Params, data: StanData) -> Params:
    """Prophet, for a series too short for changepoints, folds the dummy changepoint's delta into k."""
    if data.S == 1 and data.t_change[0] == 0.0:
        params.k = float(params.k + params.delta[0])
        params.delta = np.zeros(1)
    return params


def fit_params(data: StanData, engine: str) -> tuple[Params, str]:
    """MAP parameters for one series by `engine` ("stan" or "fast"), and the engine that produced them."""
    if is_constant(data):  # Prophet does not fit a constant series either
        return constant_params(data), engine
    if engine == "fast" and not fast.supports(data):
        try:
            params, _ = fast.fit(data)
            return _fold_dummy_changepoint(params, data), "fast"
        except fast.NotCovered:
            pass
    params, _ = stan.fit(data)
    return _fold_dummy_changepoint(params, data), "stan"


def fit_forecast(ds: np.ndarray, y: np.ndarray, future: np.ndarray, opts: ModelOptions, engine: str,
                 rng: np.random.RandomState | None) -> EngineForecast | None:
    """Fit one series (ds ascending, y without NaN) and forecast at `future`; None when stock Prophet must serve it.

    Raises:
        stan.StanFailed: when the Stan optimizer fails on this series.
    """
    if covered(opts):
        return None
    with one_blas_thread():
        t0 = time.perf_counter()
        data = stan_data(ds, y, opts)
        params, used = fit_params(data, engine)
        t1 = time.perf_counter()
        yhat, lower, upper = predict(params, data, future, opts, rng)
    return EngineForecast(yhat, lower, upper, used, t1 - t0, time.perf_counter() - t1, params)


__all__ = ["ENGINES", "EngineForecast", "fit_forecast", "fit_params"]
