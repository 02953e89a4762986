"""forecast: many-series Prophet forecasting on every core.

Library use::

    from forecast import ForecastConfig, ModelOptions, run_forecast
    result = run_forecast("data/sample.csv", ForecastConfig(id_cols=("store", "item"), time_col="date",
                          target_col="sales", model=ModelOptions(horizon=28)))
    result.out_dir, result.summary["series_per_second"]
"""

__version__ = "0.1.0"

from .config import ForecastConfig, ModelOptions, TriageRules  # noqa: E402
from .errors import BackendError, ConfigError, ForecastError, InputError, OutputExistsError  # noqa: E402
from .profile import CheckResult, run_check  # noqa: E402
from .runner import RunResult, run_forecast  # noqa: E402

__all__ = [
    "BackendError",
    "CheckResult",
    "ConfigError",
    "ForecastConfig",
    "ForecastError",
    "InputError",
    "ModelOptions",
    "OutputExistsError",
    "RunResult",
    "TriageRules",
    "run_check",
    "run_forecast",
]
