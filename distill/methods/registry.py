"""The distillation-method registry: ``distill.method`` picks a class by name."""

from __future__ import annotations

from typing import TypeVar

from ..errors import ConfigError
from .base import DistillationMethod

M = TypeVar("M", bound=type[DistillationMethod])
_METHODS: dict[str, type[DistillationMethod]] = {}


def register_method(cls: M) -> M:
    _METHODS[cls.name] = cls
    return cls


def available_methods() -> list[str]:
    return sorted(_METHODS)


def get_method(name: str) -> type[DistillationMethod]:
    try:
        return _METHODS[name]
    except KeyError:
        raise ConfigError(
            f"unknown distill.method {name!r}: use one of {', '.join(available_methods())}"
        ) from None
