"""The student-family registry: a name in the config picks a :class:`StudentModel` class."""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import ValidationError

from ..errors import ConfigError
from .base import StudentModel

S = TypeVar("S", bound=type[StudentModel])
_FAMILIES: dict[str, type[StudentModel]] = {}


def register_family(cls: S) -> S:
    """Class decorator: make ``cls.family`` a name that ``student.family`` may use."""
    _FAMILIES[cls.family] = cls
    return cls


def available_families() -> list[str]:
    return sorted(_FAMILIES)


def get_family(name: str) -> type[StudentModel]:
    try:
        return _FAMILIES[name]
    except KeyError:
        raise ConfigError(
            f"unknown student.family {name!r}: use one of {', '.join(available_families())}"
        ) from None


def family_options(name: str, raw: dict[str, Any] | None) -> Any:
    """The family's validated options model (its defaults filled in), or None."""
    model = get_family(name).options_model
    if model is None:
        if raw:
            raise ConfigError(
                f"student.options.{name}: the {name} family takes no options (it has "
                "top-level student fields instead)"
            )
        return None
    try:
        return model.model_validate(raw or {})
    except ValidationError as exc:
        from ..configfile import describe_validation_error

        raise ConfigError(f"student.options.{name}: {describe_validation_error(exc)}") from None


def option_fields(name: str) -> dict[str, Any]:
    """Field name -> pydantic FieldInfo of a family's options (for the search space)."""
    model = get_family(name).options_model
    return dict(model.model_fields) if model is not None else {}
