"""Reading labelled CSV/JSONL files (optionally .gz/.bz2) into texts and raw labels."""

from __future__ import annotations

import bz2
import csv
import gzip
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Literal

from .errors import DataError


def _open_text(path: Path) -> IO[str]:
    """Open a UTF-8 text file (a BOM is skipped), transparently decompressing .gz/.bz2."""
    suffix = path.suffix.lower()
    if suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8-sig", newline="")
    if suffix == ".bz2":
        return bz2.open(path, "rt", encoding="utf-8-sig", newline="")
    return open(path, encoding="utf-8-sig", newline="")


def _resolve(path: str | Path, what: str) -> Path:
    raw = str(path).strip()
    if not raw:
        raise DataError(f"{what}: empty path; use e.g. csv:data/train.csv")
    resolved = Path(raw).expanduser()
    if not resolved.is_absolute():
        resolved = Path.cwd() / resolved
    resolved = resolved.resolve()
    if not resolved.is_file():
        kind = "a folder, not a file" if resolved.is_dir() else "not found"
        raise DataError(
            f"data file {kind}: {resolved} ({what}; relative paths resolve against the current "
            f"directory {Path.cwd()})"
        )
    return resolved


def _missing_field(
    field: str, config_field: str, path: str | Path, available: list[str], where: str = ""
) -> DataError:
    listed = ", ".join(repr(a) for a in available) if available else "(none)"
    return DataError(
        f"column {field!r} not found in {path}{where}; available columns: {listed}; "
        f"set {config_field} to one of them"
    )


@dataclass(frozen=True)
class Columns:
    """Which columns a labelled file is read from, and the config fields that named them.

    ``labels``: one column (a class, or ``delimiter``-joined labels) or one 0/1 column per
    label (multi-label). With ``empty_label_ok`` an empty label value is kept (no label
    applies) instead of being an error.
    """

    text: str
    labels: tuple[str, ...]
    text_pair: str | None = None
    label_config: str = "data.label_field"
    empty_label_ok: bool = False

    def named(self) -> list[tuple[str, str]]:
        """(column, config field) for every column the reader needs."""
        out = [(self.text, "data.text_field")]
        if self.text_pair is not None:
            out.append((self.text_pair, "data.text_pair_field"))
        return out + [(c, self.label_config) for c in self.labels]


@dataclass
class FileRows:
    """The usable rows of a file: texts, second texts (pair tasks) and raw label values
    (one per label column)."""

    texts: list[str] = field(default_factory=list)
    pairs: list[str] | None = None
    labels: list[list[object]] = field(default_factory=list)


def _text_value(value: object, column: str, where: str) -> str | None:
    """A text cell as a string, or None when the row has no usable text there."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise DataError(
            f"{where}: {column!r} must be a string, got {type(value).__name__}; check the "
            "data's text columns"
        )
    return value if value.strip() else None


def _add_row(rows: FileRows, get: dict[str, object], columns: Columns, where: str) -> None:
    text = _text_value(get.get(columns.text), columns.text, where)
    pair = None
    if columns.text_pair is not None:
        pair = _text_value(get.get(columns.text_pair), columns.text_pair, where)
        if pair is None:
            return
    if text is None:
        return
    values: list[object] = []
    for column in columns.labels:
        value = get.get(column)
        blank = value is None or (isinstance(value, str) and not value.strip())
        if blank and not columns.empty_label_ok:
            raise DataError(
                f"{where}: empty value in label column {column!r}; fill it in or remove the row"
            )
        values.append("" if blank else value)
    rows.texts.append(text)
    if pair is not None:
        assert rows.pairs is not None
        rows.pairs.append(pair)
    rows.labels.append(values)


def _read_csv(path: Path, columns: Columns) -> FileRows:
    rows = FileRows(pairs=[] if columns.text_pair is not None else None)
    with _open_text(path) as fh:
        reader = csv.DictReader(fh)
        try:
            header = reader.fieldnames
        except csv.Error as e:
            raise DataError(f"{path} is not a readable CSV file: {e}") from e
        if not header:
            return rows  # empty file: reported as "no usable rows" by the caller
        fields = [str(f) for f in header]
        for column, config_field in columns.named():
            if column not in fields:
                raise _missing_field(column, config_field, path, fields)
        try:
            for row in reader:
                _add_row(rows, dict(row), columns, f"{path} line {reader.line_num}")
        except csv.Error as e:
            raise DataError(f"{path} line {reader.line_num}: malformed CSV ({e})") from e
    return rows


def _read_jsonl(path: Path, columns: Columns) -> FileRows:
    rows = FileRows(pairs=[] if columns.text_pair is not None else None)
    with _open_text(path) as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(
                    f"{path} line {lineno}: malformed JSON ({e.msg}); each line must be one "
                    "JSON object"
                ) from e
            if not isinstance(obj, dict):
                raise DataError(
                    f"{path} line {lineno}: expected a JSON object, got {type(obj).__name__}"
                )
            keys = [str(k) for k in obj]
            for column, config_field in columns.named():
                if column not in obj:
                    raise _missing_field(column, config_field, path, keys, f" (line {lineno})")
            _add_row(rows, obj, columns, f"{path} line {lineno}")
    return rows


def read_rows(path: str | Path, fmt: Literal["csv", "jsonl"], columns: Columns) -> FileRows:
    """Read the rows of a CSV (with a header) or JSONL file that ``columns`` names.

    Rows whose text (or second text) is empty or whitespace are skipped; label values are
    returned as found (strings for CSV; whatever JSON holds for JSONL). ``.gz``/``.bz2``
    files are decompressed. Relative paths resolve against the current directory.
    Raises DataError.
    """
    if fmt not in ("csv", "jsonl"):
        raise DataError(f"unknown file format {fmt!r}; use csv or jsonl")
    resolved = _resolve(path, f"data.source {fmt}:{path}")
    reader = _read_csv if fmt == "csv" else _read_jsonl
    try:
        return reader(resolved, columns)
    except UnicodeDecodeError as e:
        raise DataError(
            f"{resolved} is not UTF-8 text (byte {e.start}: {e.reason}); re-save it as UTF-8"
        ) from e
    except (OSError, EOFError) as e:  # e.g. a corrupt .gz/.bz2
        raise DataError(f"cannot read {resolved}: {e}") from e


def read_labeled_file(
    path: str | Path,
    fmt: Literal["csv", "jsonl"],
    text_field: str = "text",
    label_field: str = "label",
) -> tuple[list[str], list[object]]:
    """``(texts, raw labels)`` of a single-text, single-label CSV or JSONL file."""
    rows = read_rows(path, fmt, Columns(text_field, (label_field,)))
    return rows.texts, [values[0] for values in rows.labels]
