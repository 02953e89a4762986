"""Executors for the chunk-and-map core, by name: the `Backend` protocol (base.py), one module per backend, and a
registry from the name a user gives `--backend` to the class that builds it.

A new backend is a module with a class that has `from_config` and the protocol's methods, plus one line:

    register_backend("spark", "forecast.backends.spark:SparkBackend")

A target given as "module:Class" is imported only when that backend is opened, as joblib registers its Dask
backend, so importing forecast never imports an optional cluster library (the worker processes import this
package: it must stay cheap).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

from ..errors import BackendError
from ..registry import resolve
from .base import Backend, Chunk, Labelled, WorkerSetup

if TYPE_CHECKING:
    from ..config import ForecastConfig

__all__ = ["Backend", "Chunk", "Labelled", "WorkerSetup", "backend_class", "backend_help", "backend_names",
           "open_backend", "register_backend"]

_REGISTRY: dict[str, type | str] = {}
_HELP: dict[str, str] = {}


def register_backend(name: str, target: type | str, help: str = "") -> None:
    """Make `name` a backend: `target` is its class, or "module:Class" to import when it is first opened; `help`
    says in a few words where it runs, for --backend's help.

    Registering a name again replaces it.
    """
    if not isinstance(target, (type, str)) or (isinstance(target, str) and ":" not in target):
        raise ValueError(f"a backend is a class or a 'module:Class' string; got {target!r}")
    _REGISTRY[name] = target
    _HELP[name] = help


def backend_help() -> str:
    """What --backend's help says: each backend's name and where it runs."""
    return "; ".join(f"{name}: {text}" if text else name for name, text in _HELP.items()) + "."


def backend_names() -> tuple[str, ...]:
    """The names `--backend` accepts, in registration order."""
    return tuple(_REGISTRY)


def backend_class(name: str) -> type[Backend]:
    """The class registered as `name`, imported now if it was registered as a string.

    Raises:
        BackendError: no backend has that name.
    """
    try:
        target = _REGISTRY[name]
    except KeyError:
        raise BackendError(f"unknown backend {name!r}; expected one of {', '.join(_REGISTRY)}") from None
    target = _REGISTRY[name] = resolve(target)
    return target


def open_backend(config: ForecastConfig, setup: WorkerSetup = WorkerSetup(),
                 notify: Callable[[str], None] | None = None) -> Backend:
    """The backend config.backend names, built from the configuration; enter it (`with`) to start its workers.

    Args:
        config: the run's configuration (backend, n_jobs, and what that backend reads from it).
        setup: what each worker runs once before any work.
        notify: called with one-line messages for the user (a local Dask cluster's dashboard link).
    """
    return backend_class(config.backend).from_config(config, setup, notify)


register_backend("local", "forecast.backends.local:LocalBackend", "this machine's cores")
register_backend("dask", "forecast.backends.dask:DaskBackend", "a Dask cluster (--scheduler, or a local one)")
register_backend("spark", "forecast.backends.spark:SparkBackend", "a Spark cluster (--master; `forecast run` only)")
