"""What every trial of a study shares: data, teacher, tokens and the teacher's logits.

Preparing it costs a teacher fine-tune (first time only) and one teacher pass over the
data; a worker prepares it once per study and reuses it for every trial.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from .batching import EncodedSplit, encode
from .config import RunConfig
from .data import DatasetSplits, load_dataset
from .device import resolve_device
from .errors import TrainingError
from .evaluate import predict_logits
from .paths import home
from .teacher import Teacher, prepare_teacher


@dataclass
class TeacherOutputs:
    """Teacher logits for every train and eval row (float32, CPU), computed once."""

    train_logits: torch.Tensor
    eval_logits: torch.Tensor


@dataclass
class RunContext:
    splits: DatasetSplits
    teacher: Teacher
    train: EncodedSplit
    eval: EncodedSplit
    teacher_outputs: TeacherOutputs
    device: torch.device
    max_length: int
    bf16: bool

    @property
    def pad_id(self) -> int:
        return int(self.teacher.tokenizer.pad_token_id or 0)


def context_key(cfg: RunConfig) -> str:
    """Trials whose configs share this key can share one context."""
    parts = [cfg.data.model_dump_json(), cfg.teacher.model_dump_json(), cfg.train.device]
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]


def teacher_outputs(
    teacher: Teacher,
    splits: DatasetSplits,
    train: EncodedSplit,
    eval_split: EncodedSplit,
    max_length: int,
    device: torch.device,
    bf16: bool,
    batch_size: int = 128,
) -> TeacherOutputs:
    """Teacher logits, cached on disk by (teacher weights, data, max_length, precision)."""
    precision = "bf16" if bf16 and device.type == "cuda" else "fp32"
    key = hashlib.sha256(
        f"{teacher.fingerprint}|{splits.fingerprint()}|{max_length}|{precision}".encode()
    ).hexdigest()[:24]
    path: Path = home() / "teacher_outputs" / f"{key}.safetensors"
    if path.is_file():
        stored = load_file(str(path))
        return TeacherOutputs(stored["train_logits"], stored["eval_logits"])
    pad_id = int(teacher.tokenizer.pad_token_id or 0)
    out = TeacherOutputs(
        predict_logits(teacher.model, train, batch_size, pad_id, device, bf16),
        predict_logits(teacher.model, eval_split, batch_size, pad_id, device, bf16),
    )
    for name, logits in (("train", out.train_logits), ("eval", out.eval_logits)):
        if not torch.isfinite(logits).all():
            bad = int((~torch.isfinite(logits)).any(-1).sum())
            raise TrainingError(
                f"the teacher produced NaN/inf logits on {bad} {name} examples: "
                "check the teacher weights"
            )
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    save_file({"train_logits": out.train_logits, "eval_logits": out.eval_logits}, str(tmp))
    tmp.replace(path)
    return out


def prepare_context(
    cfg: RunConfig, on_teacher_step: Callable[[int, int, float], None] | None = None
) -> RunContext:
    device = resolve_device(cfg.train.device)
    splits = load_dataset(cfg.data)
    teacher = prepare_teacher(
        cfg.teacher,
        splits,
        cfg.data.max_length,
        device,
        bf16=cfg.train.bf16,
        on_step=on_teacher_step,
    )
    train = encode(teacher.tokenizer, splits.train, cfg.data.max_length)
    eval_split = encode(teacher.tokenizer, splits.eval, cfg.data.max_length)
    outputs = teacher_outputs(
        teacher, splits, train, eval_split, cfg.data.max_length, device, cfg.train.bf16
    )
    return RunContext(
        splits, teacher, train, eval_split, outputs, device, cfg.data.max_length, cfg.train.bf16
    )
