"""Teacher logits for a list of encoded rows, cached on disk by content hash.

The key is (teacher weights, the exact texts, max_length, precision), so the same rows are
soft-labelled once however many trials, workers or studies ask for them.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from .batching import EncodedSplit
from .errors import TrainingError
from .evaluate import predict_logits
from .paths import home
from .teacher import Teacher


def outputs_dir() -> Path:
    return home() / "teacher_outputs"


def precision_tag(device: torch.device, bf16: bool) -> str:
    return "bf16" if bf16 and device.type == "cuda" else "fp32"


def check_finite(logits: torch.Tensor, name: str) -> None:
    if not torch.isfinite(logits).all():
        bad = int((~torch.isfinite(logits)).any(-1).sum())
        raise TrainingError(
            f"the teacher produced NaN/inf logits on {bad} {name} examples: "
            "check the teacher weights"
        )


def cached_logits(
    teacher: Teacher,
    split: EncodedSplit,
    content_hash: str,
    name: str,
    max_length: int,
    device: torch.device,
    bf16: bool,
    batch_size: int = 128,
) -> torch.Tensor:
    """The teacher's logits for ``split`` (whose texts hash to ``content_hash``)."""
    precision = precision_tag(device, bf16)
    key = hashlib.sha256(
        f"{teacher.fingerprint}|{content_hash}|{max_length}|{precision}".encode()
    ).hexdigest()[:24]
    path = outputs_dir() / f"{name}-{key}.safetensors"
    if path.is_file():
        return load_file(str(path))["logits"]
    pad_id = int(teacher.tokenizer.pad_token_id or 0)
    logits = predict_logits(teacher.module, split, batch_size, pad_id, device, bf16)
    check_finite(logits, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{torch.randint(0, 1 << 30, ()).item()}.tmp")
    save_file({"logits": logits.contiguous()}, str(tmp))
    tmp.replace(path)
    return logits
