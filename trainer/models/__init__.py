"""VSR++ model registry: `build(name, **kwargs)`; models add themselves with `@register(name)`."""

from __future__ import annotations

import importlib
from collections.abc import Callable

from torch import nn

__all__ = ["MODEL_INFO", "build", "register", "known_models"]

ModelFactory = Callable[..., nn.Module]

_FACTORIES: dict[str, ModelFactory] = {}
MODEL_INFO: dict[str, dict] = {}


def register(name: str, *, many_to_many: bool = False) -> Callable[[ModelFactory], ModelFactory]:
    """Decorator: make `factory(**kwargs) -> nn.Module` buildable as `build(name, ...)`.

    many_to_many: the model maps T frames to T frames ([B,T,3,sH,sW]) instead of the centre one.
    """

    def add(factory: ModelFactory) -> ModelFactory:
        if name in _FACTORIES and _FACTORIES[name] is not factory:
            raise ValueError(f"model {name!r} is registered twice")
        _FACTORIES[name] = factory
        MODEL_INFO[name] = {"many_to_many": many_to_many}
        return factory

    return add


def known_models() -> list[str]:
    return sorted(_FACTORIES)


def build(name: str, **kwargs) -> nn.Module:
    """Build a registered model; unknown names and bad arguments give a ValueError saying why."""
    if name not in _FACTORIES:
        raise ValueError(f"unknown model {name!r}; known models: {', '.join(known_models())}")
    try:
        return _FACTORIES[name](**kwargs)
    except TypeError as exc:  # unexpected keyword
        raise ValueError(f"bad arguments for model {name!r}: {exc}") from exc


def _import_optional(module: str) -> None:
    """Import a model module that may not exist (yet); real errors inside it still surface."""
    try:
        importlib.import_module(f"{__name__}.{module}")
    except ModuleNotFoundError as exc:
        if exc.name != f"{__name__}.{module}":
            raise


# Model modules register themselves on import (one line each).
from . import vsrpp  # noqa: E402, F401

_import_optional("basicvsrpp")
