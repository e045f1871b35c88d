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

from .multilabel_metrics import sigmoid  # numpy only, like this module

ONNX_FILE = "model.onnx"
LABELS_FILE = "labels.json"
TOKENIZER_FILE = "tokenizer.json"


@dataclass
class Prediction:
    """One row's answer. ``scores``: softmax probabilities over the classes, or for a
    multi-label student each label's own sigmoid probability; ``labels`` (multi-label only)
    names the labels at 0.5 or above, and ``label`` is always the top-scoring one."""

    text: str
    label: str
    scores: dict[str, float]
    exit_layer: int | None = None  # early-exit students: the 1-based layer that answered
    text_pair: str | None = None
    labels: list[str] | None = None


def read_meta(folder: Path) -> dict[str, Any]:
    meta: dict[str, Any] = json.loads((folder / LABELS_FILE).read_text())
    return meta


def task_shape(folder: Path) -> tuple[bool, bool]:
    """``(text_pair, multi_label)`` of a saved student: what it reads and how it scores."""
    meta = read_meta(folder)
    return bool(meta.get("text_pair", False)), bool(meta.get("multi_label", False))


def read_labels(folder: Path) -> tuple[list[str], int]:
    """Label names in id order and the max_length the student was trained with."""
    meta = read_meta(folder)
    names = [str(meta["id2label"][str(i)]) for i in range(len(meta["id2label"]))]
    return names, int(meta.get("max_length") or 512)


def predictions(
    texts: list[str],
    logits: np.ndarray,
    labels: list[str],
    exit_layers: np.ndarray | None = None,
    *,
    pairs: list[str] | None = None,
    multi_label: bool = False,
) -> list[Prediction]:
    """One :class:`Prediction` per text from its logits (softmax, or a sigmoid per label
    when ``multi_label``, in float64)."""
    z = np.asarray(logits, dtype=np.float64)
    probs = sigmoid(z) if multi_label else softmax(z)
    layers = [None] * len(texts) if exit_layers is None else [int(x) for x in exit_layers]
    seconds: list[str | None] = list(pairs) if pairs is not None else [None] * len(texts)
    out = []
    for text, second, p, layer in zip(texts, seconds, probs, layers, strict=True):
        applied = [n for n, v in zip(labels, p, strict=True) if v >= 0.5] if multi_label else None
        scores = dict(zip(labels, map(float, p), strict=True))
        out.append(Prediction(text, labels[int(p.argmax())], scores, layer, second, applied))
    return out


def normalized_entropy(logits: np.ndarray) -> np.ndarray:
    """Entropy of softmax(logits) over log(C), in [0, 1] (as :mod:`distill.early_exit`)."""
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=-1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=-1, keepdims=True))
    h = -(np.exp(logp) * logp).sum(-1) / np.log(z.shape[-1])
    out: np.ndarray = np.clip(h, 0.0, 1.0)
    return out


def _feeds(
    i: int, x: np.ndarray, mask: np.ndarray, types: np.ndarray | None = None
) -> dict[str, np.ndarray]:
    """Graph ``i``'s inputs; the first layer's graph of a pair student takes segment ids."""
    feeds = {
        "input_ids" if i == 0 else "previous_hidden": x,
        "attention_mask": mask.astype(np.int64),
    }
    if i == 0 and types is not None:
        feeds["token_type_ids"] = types.astype(np.int64)
    return feeds


def run_exit_graphs(
    paths: list[str], input_ids: np.ndarray, mask: np.ndarray, types: np.ndarray | None = None
) -> list[np.ndarray]:
    """Every exit's logits for every row (no early exit): the export check."""
    import onnxruntime as ort

    x, out = input_ids.astype(np.int64), []
    for i, path in enumerate(paths):
        session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        x, logits = session.run(["hidden", "logits"], _feeds(i, x, mask, types))
        out.append(np.asarray(logits, dtype=np.float32))
    return out


def early_exit_logits(
    sessions: list[Any],
    input_ids: np.ndarray,
    mask: np.ndarray,
    speed: float,
    types: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Run the per-layer graphs in order; a row leaves at its first exit whose normalised
    entropy is at most ``speed`` (``speed = 0``: never early). The logits of the exit each
    row took, and that exit's 1-based layer."""
    n, last = input_ids.shape[0], len(sessions) - 1
    layer = np.full(n, last + 1, dtype=np.int64)
    active = np.arange(n)
    x, m = input_ids.astype(np.int64), mask
    out: np.ndarray | None = None
    for i, session in enumerate(sessions):
        x, logits = session.run(["hidden", "logits"], _feeds(i, x, m, types))
        if out is None:
            out = np.empty((n, logits.shape[-1]), dtype=np.float32)
        if i == last:
            out[active] = logits
            break
        go = normalized_entropy(logits) <= speed if speed > 0 else np.zeros(len(active), bool)
        out[active[go]] = logits[go]
        layer[active[go]] = i + 1
        if go.all():
            break
        stay = ~go
        x, m, active = x[stay], m[stay], active[stay]
    assert out is not None
    return out, layer


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
        self.pair, self.multi_label = task_shape(self.folder)
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
        exits = read_meta(self.folder).get("early_exit") or {}
        self.speed: float | None = float(exits["speed"]) if exits.get("graphs") else None
        self.exit_sessions = [
            ort.InferenceSession(str(self.folder / g), options, providers=["CPUExecutionProvider"])
            for g in exits.get("graphs") or []
        ]

    def encode(
        self, texts: list[str], pairs: list[str] | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """Token ids, attention mask and (pair students) segment ids, padded."""
        if pairs is not None:
            batch = self.tokenizer.encode_batch(list(zip(texts, pairs, strict=True)))
        else:
            batch = self.tokenizer.encode_batch(texts)
        ids = np.array([e.ids for e in batch], dtype=np.int64)
        mask = np.array([e.attention_mask for e in batch], dtype=np.int64)
        types = np.array([e.type_ids for e in batch], dtype=np.int64) if pairs else None
        return ids, mask, types

    def logits(
        self,
        input_ids: np.ndarray,
        attention_mask: np.ndarray,
        token_type_ids: np.ndarray | None = None,
    ) -> np.ndarray:
        """The full model's logits (an early-exit student's final layer)."""
        feeds = {"input_ids": input_ids, "attention_mask": attention_mask}
        if token_type_ids is not None:
            feeds["token_type_ids"] = token_type_ids
        (out,) = self.session.run(["logits"], feeds)
        return np.asarray(out, dtype=np.float32)

    def predict(
        self,
        texts: list[str],
        batch_size: int = 64,
        speed: float | None = None,
        pairs: list[str] | None = None,
    ) -> list[Prediction]:
        """Labels and probabilities. An early-exit student exits early at ``speed`` (None:
        the speed it was trained for) and says which layer answered each text. A pair
        student needs ``pairs`` (the second text of each row)."""
        check_pairs(self.pair, texts, pairs, str(self.folder))
        if speed is not None and not self.exit_sessions:
            raise ValueError(
                f"{self.folder} has no early exits: a speed applies only to students trained "
                "with distill.method early_exit"
            )
        if speed is not None and not 0.0 <= speed <= 1.0:
            raise ValueError(f"speed must be between 0 and 1 (got {speed})")
        results: list[Prediction] = []
        for start in range(0, len(texts), batch_size):
            chunk = texts[start : start + batch_size]
            seconds = pairs[start : start + batch_size] if pairs is not None else None
            ids, mask, types = self.encode(chunk, seconds)
            layers = None
            if self.exit_sessions:
                use = float((self.speed if speed is None else speed) or 0)
                logits, layers = early_exit_logits(self.exit_sessions, ids, mask, use, types)
            else:
                logits = self.logits(ids, mask, types)
            results += predictions(
                chunk, logits, self.labels, layers, pairs=seconds, multi_label=self.multi_label
            )
        return results


def check_pairs(pair: bool, texts: list[str], pairs: list[str] | None, where: str) -> None:
    """A pair student needs one second text per text; a single-text student takes none."""
    if pair and pairs is None:
        raise ValueError(f"{where} is a sentence-pair student: give a second text for every text")
    if not pair and pairs is not None:
        raise ValueError(f"{where} reads single texts: it takes no second texts")
    if pairs is not None and len(pairs) != len(texts):
        raise ValueError(f"{len(texts)} texts but {len(pairs)} second texts: give one per text")
