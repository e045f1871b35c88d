"""Classify texts with a saved student of any family (torch), or its ONNX export."""

from __future__ import annotations

import tarfile
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch

from .checkpoint import load_student
from .early_exit import set_speed
from .errors import ModelError
from .onnx_runtime import OnnxStudent, Prediction, predictions, read_labels


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
    folder: Path, texts: list[str], batch_size: int = 64, speed: float | None = None
) -> list[Prediction]:
    student, tokenizer = load_student(folder)
    set_speed(student, speed)
    names, max_length = read_labels(folder)
    out: list[Prediction] = []
    for start in range(0, len(texts), batch_size):
        chunk = texts[start : start + batch_size]
        enc = tokenizer(
            chunk,
            padding=True,
            truncation=True,
            max_length=max_length,
            return_tensors="pt",
            return_token_type_ids=False,
        )
        with torch.no_grad():
            result = student(enc["input_ids"], enc["attention_mask"])
        layers = None if result.exit_layer is None else result.exit_layer.numpy()
        out += predictions(chunk, result.logits.float().numpy(), names, layers)
    return out


def predict(
    path: str | Path, texts: list[str], *, onnx: bool = False, speed: float | None = None
) -> list[Prediction]:
    """Labels and per-class probabilities for ``texts``. An early-exit student leaves early
    at ``speed`` (None: the speed it was trained for) and names the layer that answered."""
    with checkpoint_folder(path) as folder:
        if not (folder / "labels.json").is_file():
            raise ModelError(f"{folder} has no labels.json: not a kdsearch student folder")
        if onnx:
            try:
                return OnnxStudent(folder).predict(texts, speed=speed)
            except (FileNotFoundError, ValueError) as exc:
                raise ModelError(str(exc)) from None
        return predict_torch(folder, texts, speed=speed)
