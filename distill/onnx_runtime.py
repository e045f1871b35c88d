"""Serve an exported student with onnxruntime, the ``tokenizers`` library and numpy only.

No torch and no transformers are imported here: this is how a student runs in a slim
serving image. ``OnnxStudent(folder).predict(["a fine film"])`` gives labels and
probabilities, the same as the torch student to within float rounding.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

ONNX_FILE = "model.onnx"
LABELS_FILE = "labels.json"
TOKENIZER_FILE = "tokenizer.json"


@dataclass
class Prediction:
    text: str
    label: str
    scores: dict[str, float]


def read_labels(folder: Path) -> tuple[list[str], int]:
    """Label names in id order and the max_length the student was trained with."""
    meta: dict[str, Any] = json.loads((folder / LABELS_FILE).read_text())
    names = [str(meta["id2label"][str(i)]) for i in range(len(meta["id2label"]))]
    return names, int(meta.get("max_length") or 512)


def predictions(texts: list[str], logits: np.ndarray, labels: list[str]) -> list[Prediction]:
    """One :class:`Prediction` per text from its logits (softmax in float64)."""
    probs = softmax(np.asarray(logits, dtype=np.float64))
    return [
        Prediction(text, labels[int(p.argmax())], dict(zip(labels, map(float, p), strict=True)))
        for text, p in zip(texts, probs, strict=True)
    ]


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    out: np.ndarray = e / e.sum(axis=-1, keepdims=True)
    return out


class OnnxStudent:
    """A student folder's ``model.onnx`` with its tokenizer and label names."""

    def __init__(self, folder: str | Path, threads: int | None = None) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        self.folder = Path(folder)
        for name in (ONNX_FILE, LABELS_FILE, TOKENIZER_FILE):
            if not (self.folder / name).is_file():
                raise FileNotFoundError(
                    f"{self.folder} has no {name}: it is not an exported kdsearch student"
                )
        self.labels, self.max_length = read_labels(self.folder)
        self.tokenizer = Tokenizer.from_file(str(self.folder / TOKENIZER_FILE))
        self.tokenizer.enable_truncation(self.max_length)
        pad = self.tokenizer.padding or {}
        self.tokenizer.enable_padding(
            pad_id=int(pad.get("pad_id", 0)), pad_token=str(pad.get("pad_token", "[PAD]"))
        )
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        self.session = ort.InferenceSession(
            str(self.folder / ONNX_FILE), options, providers=["CPUExecutionProvider"]
        )

    def encode(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        batch = self.tokenizer.encode_batch(texts)
        ids = np.array([e.ids for e in batch], dtype=np.int64)
        mask = np.array([e.attention_mask for e in batch], dtype=np.int64)
        return ids, mask

    def logits(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        feeds = {"input_ids": input_ids, "attention_mask": attention_mask}
        (out,) = self.session.run(["logits"], feeds)
        return np.asarray(out, dtype=np.float32)

    def predict(self, texts: list[str], batch_size: int = 64) -> list[Prediction]:
        results: list[Prediction] = []
        for start in range(0, len(texts), batch_size):
            chunk = texts[start : start + batch_size]
            results += predictions(chunk, self.logits(*self.encode(chunk)), self.labels)
        return results
