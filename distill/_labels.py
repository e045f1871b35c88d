"""Raw label values as label ids: one class per row, or a 0/1 vector per row (multi-label).

Single-label: names sorted (numerically when all are integers), ids ``0..C-1``.
Multi-label: one 0/1 column per label (the columns, in the given order, are the label
names), or one column of labels joined by a delimiter (the names sorted as above).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

from .errors import DataError

_INT_RE = re.compile(r"[+-]?\d+")


def _label_name(value: object, where: str) -> str:
    """A raw label as its name: ints as decimal strings, strings stripped."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isfinite(value) and value.is_integer():
            return str(int(value))
        raise DataError(
            f"label {value!r} in {where} is not a class: classification needs discrete labels "
            "(strings or integers)"
        )
    if isinstance(value, str):
        name = value.strip()
        if name:
            return name
    raise DataError(
        f"label {value!r} in {where} is not usable: labels must be non-empty strings or integers"
    )


def encode_labels(raw: Sequence[object], where: str) -> tuple[list[int], list[str]]:
    """Map raw labels to ids ``0..C-1``: names sorted (numerically when all are integers)."""
    names = [_label_name(v, where) for v in raw]
    ordered = _ordered(set(names))
    index = {n: i for i, n in enumerate(ordered)}
    return [index[n] for n in names], ordered


def _ordered(distinct: set[str]) -> list[str]:
    if all(_INT_RE.fullmatch(n) for n in distinct):
        return sorted(distinct, key=lambda n: (int(n), n))
    return sorted(distinct)


_TRUE = {"1", "1.0", "true", "yes"}
_FALSE = {"0", "0.0", "false", "no"}


def _binary(value: object, column: str, where: str) -> int:
    """A 0/1 cell of a label column (true/false and yes/no too)."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, (int, float)) and value in (0, 1):
        return int(value)
    if isinstance(value, str):
        text = value.strip().lower()
        if text in _TRUE or text in _FALSE:
            return int(text in _TRUE)
    raise DataError(
        f"label column {column!r} in {where} holds {value!r}: each data.label_fields column "
        "must be 0 or 1 (true/false) per row"
    )


def encode_label_columns(
    rows: Sequence[Sequence[object]], columns: Sequence[str], where: str
) -> tuple[list[tuple[int, ...]], list[str]]:
    """Multi-label rows from one 0/1 value per label column; the names are the columns."""
    ids = [tuple(_binary(v, c, where) for v, c in zip(row, columns, strict=True)) for row in rows]
    return ids, [str(c) for c in columns]


def encode_label_lists(
    raw: Sequence[object], delimiter: str, where: str
) -> tuple[list[tuple[int, ...]], list[str]]:
    """Multi-label rows from one cell per row: labels joined by ``delimiter`` (a string)
    or a list of labels (JSON or hub data); empty means that no label applies."""
    per_row: list[set[str]] = []
    for value in raw:
        if isinstance(value, (list, tuple)):
            parts = [_label_name(v, where) for v in value]
        elif value is None or (isinstance(value, str) and not value.strip()):
            parts = []
        elif isinstance(value, str):
            parts = [p.strip() for p in value.split(delimiter) if p.strip()]
        else:
            parts = [_label_name(value, where)]
        per_row.append(set(parts))
    names = _ordered(set().union(*per_row) if per_row else set())
    ids = [tuple(int(n in row) for n in names) for row in per_row]
    return ids, names
