"""Classify texts with a saved student of any family (torch), or its ONNX export."""

from __future__ import annotations

import tarfile
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch

from .checkpoint import load_student
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


def predict_torch(folder: Path, texts: list[str], batch_size: int = 64) -> list[Prediction]:
    student, tokenizer = load_student(folder)
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
            logits = student(enc["input_ids"], enc["attention_mask"]).logits
        out += predictions(chunk, logits.float().numpy(), names)
    return out


def predict(path: str | Path, texts: list[str], *, onnx: bool = False) -> list[Prediction]:
    """Labels and per-class probabilities for ``texts``."""
    with checkpoint_folder(path) as folder:
        if not (folder / "labels.json").is_file():
            raise ModelError(f"{folder} has no labels.json: not a kdsearch student folder")
        if onnx:
            try:
                return OnnxStudent(folder).predict(texts)
            except FileNotFoundError as exc:
                raise ModelError(str(exc)) from None
        return predict_torch(folder, texts)
