"""Models: what forecasts one series, behind one small interface, and the registry that names them.

A model is fitted to one series and forecasts it at the dates it is given, with its intervals (`Model`). Prophet
(through its engines) is the model a run fits; the simple methods (naive, seasonal-naive, mean, zero) and the
intermittent-demand ones (croston-sba, tsb, adida) are models of their own, so a fallback is a second model, and
a backtest scores any model against any other. Models know nothing of pools or files: a series in, a `Forecast`
out.

A new model is one new file holding it and one `register_model` line below.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Protocol

from ..errors import ConfigError
from ..registry import resolve

if TYPE_CHECKING:
    import numpy as np

    from ..config import ModelOptions
    from ..types import Forecast, SeriesData


class Model(Protocol):
    """One forecasting method. Instances are stateless: `forecast` fits and forecasts in one call, so one
    instance serves every series of a run, in any process."""

    name: str

    def check(self, series: SeriesData, opts: ModelOptions) -> None:
        """Raise SeriesProblem (stage "validate") for a series this model cannot fit.

        Called before the frequency is worked out, so a series' first problem is the one it reports.
        """

    def forecast(self, series: SeriesData, future: np.ndarray, opts: ModelOptions, *,
                 season_length: int | None = None, source: str = "--future") -> Forecast:
        """Fit the series and forecast it at `future` (datetime64[ns], after its last timestamp).

        Args:
            series: the history (and, in `series.future_*`, regressor values past it).
            future: the dates to forecast.
            opts: model options (interval_width and non_negative apply to every model).
            season_length: the seasonal period in grid steps; None takes it from the frequency (freq.season_length).
            source: where the future regressor values come from, for the reason of a missing one.

        Raises:
            SeriesProblem: with the stage ("frequency", "future", "fit", "predict") and the reason.
        """


# name -> the model, or "module:attribute" to import on first use (so that naming the models imports none)
_REGISTRY: dict[str, Model | str] = {}
# the models that may serve a series its run's model did not (--fallback): cheap, and need no more than one value
_FALLBACKS: list[str] = []


def register_model(name: str, model: Model | str, *, fallback: bool = False) -> None:
    """Make a model available by `name`.

    Args:
        name: what options and outputs call it (backtest --models, --fallback, timings' model column).
        model: the model, or "package.module:attribute" naming it (a `Model` instance or a class taking no
            arguments), imported on first use.
        fallback: whether it is among the --fallback choices.
    """
    _REGISTRY[name] = model
    if fallback and name not in _FALLBACKS:
        _FALLBACKS.append(name)


def get_model(name: str) -> Model:
    """The model registered as `name`.

    Raises:
        ConfigError: for a name no model is registered under.
    """
    try:
        model = _REGISTRY[name]
    except KeyError:
        raise ConfigError(f"unknown model {name!r}; expected one of {', '.join(model_names())}") from None
    if isinstance(model, str):
        model = resolve(model)
        if isinstance(model, type):
            model = model()
        _REGISTRY[name] = model
    return model


def model_names() -> tuple[str, ...]:
    """Every registered model's name, in registration order."""
    return tuple(_REGISTRY)


def fallback_names() -> tuple[str, ...]:
    """The models a series can fall back to (config's --fallback choices, after "none")."""
    return tuple(_FALLBACKS)


def check_options(opts: ModelOptions) -> None:
    """Checks of the model options that need the models' own dependencies (a --holidays country), run once before
    any worker starts.

    Raises:
        ConfigError: one line naming the option.
    """
    from .prophet import check_options as check_prophet_options

    check_prophet_options(opts)


def worker_init(opts: ModelOptions, countries: bool = False) -> tuple[Callable[..., None], tuple]:
    """What every worker runs once before its first series, for these options: (function, its arguments after the
    worker's temp root). Prophet itself is imported up front only where a series will need it (stock Prophet, or
    a country's holidays: the run's, or with `countries` each series' own); the engines do without."""
    from .prophet import init_worker

    return init_worker, (opts.engine == "prophet" or bool(opts.holidays) or countries,)


def unknown_country(code: str) -> str | None:
    """None for a country whose built-in holidays the models know (a --holidays-col value), else the hint to give:
    the closest code, or what a code looks like."""
    from .prophet import unknown_country as prophet_unknown_country

    return prophet_unknown_country(code)


register_model("prophet", "forecast.models.prophet:ProphetModel")
register_model("naive", "forecast.models.simple:NAIVE", fallback=True)
register_model("seasonal-naive", "forecast.models.simple:SEASONAL_NAIVE", fallback=True)
register_model("mean", "forecast.models.simple:MEAN", fallback=True)
register_model("zero", "forecast.models.simple:ZERO", fallback=True)
register_model("croston-sba", "forecast.models.intermittent:CROSTON_SBA", fallback=True)
register_model("tsb", "forecast.models.intermittent:TSB", fallback=True)
register_model("adida", "forecast.models.intermittent:ADIDA", fallback=True)

__all__ = ["Model", "fallback_names", "get_model", "model_names", "register_model"]
