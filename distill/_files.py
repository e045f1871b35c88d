"""Reading labelled CSV/JSONL files (optionally .gz/.bz2) into texts and raw labels."""

from __future__ import annotations

import bz2
import csv
import gzip
import json
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


def _read_csv(path: Path, text_field: str, label_field: str) -> tuple[list[str], list[object]]:
    texts: list[str] = []
    labels: list[object] = []
    with _open_text(path) as fh:
        reader = csv.DictReader(fh)
        try:
            header = reader.fieldnames
        except csv.Error as e:
            raise DataError(f"{path} is not a readable CSV file: {e}") from e
        if not header:
            return texts, labels  # empty file: reported as "no usable rows" by the caller
        fields = [str(f) for f in header]
        if text_field not in fields:
            raise _missing_field(text_field, "data.text_field", path, fields)
        if label_field not in fields:
            raise _missing_field(label_field, "data.label_field", path, fields)
        try:
            for row in reader:
                text = row.get(text_field)
                if text is None or not text.strip():
                    continue
                label = row.get(label_field)
                if label is None or not str(label).strip():
                    raise DataError(
                        f"{path} line {reader.line_num}: empty value in label column "
                        f"{label_field!r}; fill it in or remove the row"
                    )
                texts.append(text)
                labels.append(label)
        except csv.Error as e:
            raise DataError(f"{path} line {reader.line_num}: malformed CSV ({e})") from e
    return texts, labels


def _read_jsonl(path: Path, text_field: str, label_field: str) -> tuple[list[str], list[object]]:
    texts: list[str] = []
    labels: list[object] = []
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
            where = f" (line {lineno})"
            if text_field not in obj:
                raise _missing_field(text_field, "data.text_field", path, keys, where)
            if label_field not in obj:
                raise _missing_field(label_field, "data.label_field", path, keys, where)
            text = obj[text_field]
            if text is None:
                continue
            if not isinstance(text, str):
                raise DataError(
                    f"{path} line {lineno}: {text_field!r} must be a string, got "
                    f"{type(text).__name__}; check data.text_field"
                )
            if not text.strip():
                continue
            label = obj[label_field]
            if label is None or (isinstance(label, str) and not label.strip()):
                raise DataError(
                    f"{path} line {lineno}: empty value for label key {label_field!r}; "
                    "fill it in or remove the line"
                )
            texts.append(text)
            labels.append(label)
    return texts, labels


def read_labeled_file(
    path: str | Path,
    fmt: Literal["csv", "jsonl"],
    text_field: str = "text",
    label_field: str = "label",
) -> tuple[list[str], list[object]]:
    """Read ``(texts, raw labels)`` from a CSV (with a header) or JSONL file.

    Rows whose text is empty or whitespace are skipped; labels are returned as found
    (strings for CSV; whatever JSON holds for JSONL). ``.gz``/``.bz2`` files are decompressed.
    Relative paths resolve against the current directory. Raises DataError.
    """
    if fmt not in ("csv", "jsonl"):
        raise DataError(f"unknown file format {fmt!r}; use csv or jsonl")
    resolved = _resolve(path, f"data.source {fmt}:{path}")
    reader = _read_csv if fmt == "csv" else _read_jsonl
    try:
        return reader(resolved, text_field, label_field)
    except UnicodeDecodeError as e:
        raise DataError(
            f"{resolved} is not UTF-8 text (byte {e.start}: {e.reason}); re-save it as UTF-8"
        ) from e
    except (OSError, EOFError) as e:  # e.g. a corrupt .gz/.bz2
        raise DataError(f"cannot read {resolved}: {e}") from e
