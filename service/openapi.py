"""The OpenAPI document, with the study spec's JSON schema published for ``POST /v1/studies``.

That route reads its body itself (to enforce the size limit before parsing), so FastAPI
cannot infer the schema; the route points at ``#/components/schemas/StudySpec`` and this
module puts the spec's schema, and every model it nests, into the components.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from kdsearch.search.spec import StudySpec

SPEC_REF = "#/components/schemas/StudySpec"


def spec_request_body() -> dict[str, Any]:
    """``openapi_extra`` for the route that takes a study spec as its JSON body."""
    return {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"$ref": SPEC_REF}}},
        }
    }


def spec_schemas() -> dict[str, Any]:
    schema = StudySpec.model_json_schema(ref_template="#/components/schemas/{model}")
    nested = schema.pop("$defs", {})
    return {**nested, "StudySpec": schema}


def install(app: FastAPI) -> None:
    """Replace ``app.openapi`` with one that also carries the study spec's schema."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            doc = get_openapi(
                title=app.title,
                version=app.version,
                summary=app.summary,
                description=app.description,
                routes=app.routes,
            )
            components = doc.setdefault("components", {}).setdefault("schemas", {})
            for name, sub in spec_schemas().items():
                components.setdefault(name, sub)
            app.openapi_schema = doc
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
