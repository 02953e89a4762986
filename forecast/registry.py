"""What the registries of backends, models and sources share: a target named as "package.module:attribute".

Each registry maps a name to its class or object, or to such a string, imported only when that name is first
used: so an optional part (Dask, a database driver) costs nothing to a run that does not use it, and importing
forecast stays cheap for the worker processes.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any


def resolve(target: Any) -> Any:
    """`target` itself, or the attribute a "package.module:attribute" string names, imported now."""
    if not isinstance(target, str):
        return target
    module, _, attribute = target.partition(":")
    return getattr(import_module(module), attribute)
