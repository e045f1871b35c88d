"""Classify texts with a saved student of any family (torch), or its ONNX export."""

from __future__ import annotations

import tarfile
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch

from .batching import collate, encode
from .checkpoint import load_student
from .data import Example
from .early_exit import set_speed
from .errors import ModelError
from .onnx_runtime import (
    OnnxStudent,
    Prediction,
    check_pairs,
    predictions,
    read_labels,
    task_shape,
)


@contextmanager
def checkpoint_folder(path: str | Path) -> Iterator[Path]:
    """A student folder: ``path`` itself, or a ``.tar.gz`` from the REST API unpacked into a
    temporary folder (members must stay inside it)."""
    p = Path(path)
    if p.is_dir():
        yield p
        return
    if not p.is_file() or not tarfile.is_tarfile(p):
        raise ModelError(f"{p} is neither a student folder nor a checkpoint .tar.gz")
    with tempfile.TemporaryDirectory() as tmp, tarfile.open(p) as tar:
        tar.extractall(tmp, filter="data")  # refuses absolute paths, links out, devices
        inner = Path(tmp) / "checkpoint"
        yield inner if inner.is_dir() else Path(tmp)


def predict_torch(
    folder: Path,
    texts: list[str],
    batch_size: int = 64,
    speed: float | None = None,
    pairs: list[str] | None = None,
) -> list[Prediction]:
    pair, multi_label = task_shape(folder)
    try:
        check_pairs(pair, texts, pairs, str(folder))
    except ValueError as exc:
        raise ModelError(str(exc)) from None
    student, tokenizer = load_student(folder)
    set_speed(student, speed)
    names, max_length = read_labels(folder)
    pad_id = int(tokenizer.pad_token_id or 0)
    out: list[Prediction] = []
    for start in range(0, len(texts), batch_size):
        chunk = texts[start : start + batch_size]
        seconds = pairs[start : start + batch_size] if pairs is not None else None
        rows = [Example(t, 0, seconds[i] if seconds else None) for i, t in enumerate(chunk)]
        split = encode(tokenizer, rows, max_length)
        b = collate(split, list(range(len(rows))), pad_id)
        with torch.no_grad():
            result = student(b.input_ids, b.attention_mask, frozenset(), b.token_type_ids)
        layers = None if result.exit_layer is None else result.exit_layer.numpy()
        logits = result.logits.float().numpy()
        out += predictions(chunk, logits, names, layers, pairs=seconds, multi_label=multi_label)
    return out


def predict(
    path: str | Path,
    texts: list[str],
    *,
    onnx: bool = False,
    speed: float | None = None,
    pairs: list[str] | None = None,
) -> list[Prediction]:
    """Labels and per-class probabilities for ``texts`` (and, for a sentence-pair student,
    the second text of each in ``pairs``). An early-exit student leaves early at ``speed``
    (None: the speed it was trained for) and names the layer that answered."""
    with checkpoint_folder(path) as folder:
        if not (folder / "labels.json").is_file():
            raise ModelError(f"{folder} has no labels.json: not a kdsearch student folder")
        if onnx:
            try:
                return OnnxStudent(folder).predict(texts, speed=speed, pairs=pairs)
            except (FileNotFoundError, ValueError) as exc:
                raise ModelError(str(exc)) from None
        return predict_torch(folder, texts, speed=speed, pairs=pairs)
