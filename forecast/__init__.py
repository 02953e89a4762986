"""forecast: many-series Prophet forecasting on every core.

Library use::

    import forecast
    fc = forecast.forecast(df, horizon=28, id_cols=["store", "item"], time_col="date", target_col="sales")

    from forecast import ForecastConfig, ModelOptions, run_forecast
    result = run_forecast("data/sample.csv", ForecastConfig(id_cols=("store", "item"), time_col="date",
                          target_col="sales", model=ModelOptions(horizon=28)))
    result.out_dir, result.summary["series_per_second"]
"""

from typing import Any

__version__ = "0.1.0"

# The names below are loaded on first use (PEP 562), so that a worker process, which imports forecast.backends and
# forecast.model only, does not pay for pandas, pyarrow and the rest of the run machinery it never uses: that import
# is most of a worker's start-up time.
_EXPORTS = {
    "ForecastConfig": "config", "ModelOptions": "config", "TriageRules": "config",
    "BackendError": "errors", "ConfigError": "errors", "ForecastError": "errors", "InputError": "errors",
    "OutputExistsError": "errors", "RunStoppedError": "errors",
    "CheckResult": "profile", "run_check": "profile",
    "RunResult": "runner", "run_forecast": "runner",
    "ForecastRecords": "api", "forecast": "api", "forecast_with_records": "api",
    "Source": "sources", "open_source": "sources", "register_source": "sources",
}


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'forecast' has no attribute {name!r}")
    from importlib import import_module

    value = getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))


__all__ = [
    "BackendError",
    "CheckResult",
    "ConfigError",
    "ForecastConfig",
    "ForecastError",
    "ForecastRecords",
    "InputError",
    "ModelOptions",
    "OutputExistsError",
    "RunResult",
    "RunStoppedError",
    "Source",
    "TriageRules",
    "forecast",
    "forecast_with_records",
    "open_source",
    "register_source",
    "run_check",
    "run_forecast",
]
