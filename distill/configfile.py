"""Read a run configuration from YAML or JSON, with one-line errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from .errors import ConfigError

M = TypeVar("M", bound=BaseModel)


def read_mapping(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file {p} does not exist")
    text = p.read_text(encoding="utf-8")
    try:
        data = json.loads(text) if p.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        first = str(exc).strip().splitlines()[0]
        kind = p.suffix.lstrip(".") or "YAML"
        raise ConfigError(f"config file {p} is not valid {kind}: {first}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {p} must hold a mapping at the top level")
    return data


def describe_validation_error(exc: ValidationError) -> str:
    """``field.path: message`` for each problem, joined on one line."""
    parts = []
    for err in exc.errors():
        loc = ".".join(str(x) for x in err["loc"])
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown field (check the spelling against the documented fields)"
        if err["type"] == "literal_error" and "expected" in err.get("ctx", {}):
            msg = f"must be one of {err['ctx']['expected']}"
        parts.append(f"{loc or 'config'}: {msg}")
    return "; ".join(parts)


def parse_model(model: type[M], data: dict[str, Any], origin: str = "config") -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"invalid {origin}: {describe_validation_error(exc)}") from None


def load_model(model: type[M], path: str | Path) -> M:
    return parse_model(model, read_mapping(path), origin=f"config {path}")
