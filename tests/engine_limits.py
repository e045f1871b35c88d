"""Values just outside each searchable parameter's engine limit, derived from the config
models themselves (so a new limit or parameter brings its own bad-request case)."""

from __future__ import annotations

from typing import Any

import annotated_types as at
from pydantic import BaseModel

from kdsearch.distill.config import RunConfig
from kdsearch.distill.families import get_family
from kdsearch.distill.methods import get_method
from kdsearch.search.space import PARAMS


def _field(target: tuple[str, ...]) -> Any:
    model: type[BaseModel] = RunConfig
    if target[:2] in (("student", "options"), ("distill", "options")):
        owner = get_family if target[0] == "student" else get_method
        options = owner(target[2]).options_model
        assert options is not None
        return options.model_fields[target[3]]
    for name in target[:-1]:
        annotation = model.model_fields[name].annotation
        assert isinstance(annotation, type) and issubclass(annotation, BaseModel)
        model = annotation
    return model.model_fields[target[-1]]


def outside_limits() -> list[tuple[str, Any]]:
    """(parameter, value) pairs, each one step beyond a bound of the engine's config."""
    cases: list[tuple[str, Any]] = []
    for name, d in sorted(PARAMS.items()):
        if d.kind == "categorical":
            continue
        step: float = 1 if d.kind == "int" else 1e-3
        for bound in _field(d.target).metadata:
            if isinstance(bound, at.Gt):
                cases.append((name, bound.gt))
            elif isinstance(bound, at.Ge):
                cases.append((name, bound.ge - step))
            elif isinstance(bound, at.Lt):
                cases.append((name, bound.lt))
            elif isinstance(bound, at.Le):
                cases.append((name, bound.le + step))
    return cases
