"""Shared by env.py and the schema tests: which database objects are kdsearch's."""

from __future__ import annotations

from typing import Any

from kdsearch.migrations import TABLE_PREFIX, VERSION_TABLE


def include_object(
    obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any
) -> bool:
    """Only ``kdsearch_*`` tables (and their columns/indexes); never Optuna's."""
    if type_ == "table":
        return bool(name and name.startswith(TABLE_PREFIX) and name != VERSION_TABLE)
    table = getattr(obj, "table", None)
    if table is not None and getattr(table, "name", None):
        return bool(str(table.name).startswith(TABLE_PREFIX))
    return True
