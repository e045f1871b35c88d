"""ONNX export of any student family: ``(input_ids, attention_mask) -> logits``.

A sentence-pair student's graph takes ``token_type_ids`` (the segment ids) as a third input.

The graph has dynamic batch and sequence axes and sits next to the tokenizer files and
``labels.json``, so onnxruntime alone (no torch) can serve it. The exported logits are
checked against torch's on a probe batch before the file is kept.
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .errors import ModelError
from .families import StudentModel

ONNX_FILE = "model.onnx"
INPUT_NAMES = ["input_ids", "attention_mask"]
OUTPUT_NAME = "logits"
OPSET = 18


def input_names(pair: bool) -> list[str]:
    return [*INPUT_NAMES, "token_type_ids"] if pair else list(INPUT_NAMES)


def probe_batch(tokenizer: Any, max_length: int, pair: bool = False) -> dict[str, torch.Tensor]:
    """Two rows of different lengths, padded: the exporter sees real padding. Pair
    students get two text pairs and their segment ids."""
    from .batching import collate, encode
    from .data import Example

    texts = ["a short one", "a somewhat longer example sentence, so the batch has padding"]
    seconds = ["and a second text, longer than the first", "short"]
    rows = [Example(t, 0, s if pair else None) for t, s in zip(texts, seconds, strict=True)]
    batch = collate(encode(tokenizer, rows, max_length), [0, 1], int(tokenizer.pad_token_id or 0))
    return batch.model_inputs()


def export_onnx(
    student: StudentModel,
    folder: Path,
    tokenizer: Any,
    *,
    max_length: int = 512,
    atol: float = 1e-4,
    pair: bool = False,
) -> Path:
    """Write ``folder/model.onnx`` and check it against torch (max abs diff <= ``atol``)."""
    path = folder / ONNX_FILE
    was_training = student.training
    device = next(student.parameters()).device
    student.set_attention("sdpa")
    student.eval()
    module = student.onnx_module().cpu()
    probe = probe_batch(tokenizer, max_length, pair)
    args = tuple(probe.values())
    try:
        trace_to_onnx(module, args, path, input_names(pair), [OUTPUT_NAME])
        with torch.no_grad():
            expected = module(*args).float().numpy()
    finally:
        student.to(device)
        student.train(was_training)
    got = run_onnx(path, *(a.numpy() for a in args))
    diff = float(np.max(np.abs(got - expected)))
    if diff > atol:
        path.unlink(missing_ok=True)
        raise ModelError(
            f"the ONNX export of this {student.family} student differs from torch by {diff:.2e} "
            f"(> {atol}); the export was not kept"
        )
    return path


def trace_to_onnx(
    module: nn.Module,
    args: tuple[torch.Tensor, ...],
    path: Path,
    input_names: list[str],
    output_names: list[str],
) -> None:
    """torch.export-based ONNX export; every input's first two axes (batch, sequence) are
    dynamic and shared."""
    # the exporter warns about torchvision ops it cannot register: irrelevant here
    for name in ("torch.onnx", "onnxscript", "onnx_ir"):
        logging.getLogger(name).setLevel(logging.ERROR)
    batch, sequence = torch.export.Dim("batch"), torch.export.Dim("sequence")
    dynamic = tuple({0: batch, 1: sequence} for _ in input_names)
    # torch.export's exporter: the TorchScript one mis-traces transformers' masks
    with warnings.catch_warnings(), torch.no_grad(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            args,
            str(path),
            input_names=input_names,
            output_names=output_names,
            dynamic_shapes=dynamic,
            opset_version=OPSET,
            dynamo=True,
            external_data=False,
            verbose=False,
        )


def run_onnx(
    path: Path,
    input_ids: np.ndarray,
    attention_mask: np.ndarray,
    token_type_ids: np.ndarray | None = None,
) -> np.ndarray:
    """Logits from an exported student with onnxruntime on the CPU."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feeds = {
        "input_ids": input_ids.astype(np.int64),
        "attention_mask": attention_mask.astype(np.int64),
    }
    if token_type_ids is not None:
        feeds["token_type_ids"] = token_type_ids.astype(np.int64)
    (logits,) = session.run([OUTPUT_NAME], feeds)
    return np.asarray(logits, dtype=np.float32)
