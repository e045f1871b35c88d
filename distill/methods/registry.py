"""The distillation-method registry: ``distill.method`` picks a class by name."""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import ValidationError

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


def method_options(name: str, raw: dict[str, Any] | None) -> Any:
    """The method's validated options (its defaults filled in), or None when it has none."""
    model = get_method(name).options_model
    if model is None:
        if raw:
            raise ConfigError(f"distill.options.{name}: the {name} method takes no options")
        return None
    try:
        return model.model_validate(raw or {})
    except ValidationError as exc:
        from ..configfile import describe_validation_error

        raise ConfigError(f"distill.options.{name}: {describe_validation_error(exc)}") from None


def method_option_fields(name: str) -> dict[str, Any]:
    """Field name -> pydantic FieldInfo of a method's options (for the search space)."""
    model = get_method(name).options_model
    return dict(model.model_fields) if model is not None else {}
