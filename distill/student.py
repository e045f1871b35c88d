"""Students: a truncated copy of the teacher, a pretrained checkpoint, or a fresh TinyBERT."""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn
from transformers import (
    AutoConfig,
    AutoModelForSequenceClassification,
    PreTrainedModel,
)

from .config import StudentConfig
from .data import DatasetSplits
from .device import seed_everything
from .errors import ModelError
from .mapping import resolve_mapping
from .teacher import Teacher, resolve_model_location


def encoder_layers(model: PreTrainedModel) -> nn.ModuleList:
    """The transformer block list of a BERT-family encoder."""
    base = getattr(model, "base_model", model)
    encoder = getattr(base, "encoder", None)
    layers = getattr(encoder, "layer", None)
    if not isinstance(layers, nn.ModuleList):
        raise ModelError(
            f"{type(model).__name__} is not a BERT-family encoder (no encoder.layer list): "
            "truncation and layer mapping need BERT, RoBERTa, ELECTRA or similar"
        )
    return layers


def truncated_layers(
    cfg: StudentConfig, teacher_layers: int, mapping: str | list[int]
) -> list[int]:
    """Teacher layers (1..N) the truncated student keeps, in order."""
    if cfg.keep_layers is not None:
        bad = [x for x in cfg.keep_layers if x > teacher_layers]
        if bad:
            raise ModelError(
                f"student.keep_layers {bad} exceed the teacher's {teacher_layers} layers"
            )
        return list(cfg.keep_layers)
    return resolve_mapping(mapping, cfg.num_layers, teacher_layers)


def truncate_teacher(teacher: PreTrainedModel, keep: list[int]) -> PreTrainedModel:
    """A deep copy of the teacher with only the listed layers (1-based), in that order."""
    student = copy.deepcopy(teacher)
    layers = encoder_layers(student)
    kept = nn.ModuleList([layers[i - 1] for i in keep])
    for new_idx, layer in enumerate(kept):
        attn = getattr(getattr(layer, "attention", None), "self", None)
        if attn is not None and hasattr(attn, "layer_idx"):
            attn.layer_idx = new_idx
    base: Any = student.base_model
    base.encoder.layer = kept
    student.config.num_hidden_layers = len(keep)
    return student


def fresh_student(cfg: StudentConfig, teacher: Teacher, splits: DatasetSplits) -> PreTrainedModel:
    """A new BERT of the given shape; embeddings copied from the teacher when widths agree."""
    tcfg = teacher.model.config
    config = AutoConfig.for_model(
        "bert",
        vocab_size=tcfg.vocab_size,
        hidden_size=cfg.hidden_size,
        num_hidden_layers=cfg.num_layers,
        num_attention_heads=cfg.num_heads,
        intermediate_size=cfg.intermediate_size,
        max_position_embeddings=tcfg.max_position_embeddings,
        type_vocab_size=getattr(tcfg, "type_vocab_size", 2),
        pad_token_id=getattr(tcfg, "pad_token_id", 0),
        num_labels=splits.num_labels,
        id2label=splits.id2label,
        label2id=splits.label2id,
    )
    student = AutoModelForSequenceClassification.from_config(config)
    if cfg.hidden_size == teacher.hidden_size:
        t_base: Any = teacher.model.base_model
        s_base: Any = student.base_model
        s_base.embeddings.load_state_dict(t_base.embeddings.state_dict())
    return student


def pretrained_student(
    cfg: StudentConfig, teacher: Teacher, splits: DatasetSplits
) -> PreTrainedModel:
    assert cfg.path is not None
    location = resolve_model_location(cfg.path, role="student.path")
    try:
        student = AutoModelForSequenceClassification.from_pretrained(
            location,
            num_labels=splits.num_labels,
            id2label=splits.id2label,
            label2id=splits.label2id,
            ignore_mismatched_sizes=True,
            trust_remote_code=False,
        )
    except (OSError, ValueError) as exc:
        raise ModelError(f"cannot load student from {location}: {exc}") from exc
    if int(student.config.vocab_size) != int(teacher.model.config.vocab_size):
        raise ModelError(
            f"student vocabulary ({student.config.vocab_size}) differs from the teacher's "
            f"({teacher.model.config.vocab_size}): distillation feeds both the same tokens, "
            "so use a student with the teacher's tokenizer"
        )
    return student


def build_student(
    cfg: StudentConfig,
    teacher: Teacher,
    splits: DatasetSplits,
    mapping: str | list[int],
    seed: int,
) -> tuple[PreTrainedModel, dict[str, Any]]:
    """Build the student and say how: returns (model, description)."""
    seed_everything(seed)
    info: dict[str, Any] = {"kind": cfg.kind}
    if cfg.kind == "truncate":
        keep = truncated_layers(cfg, teacher.num_layers, mapping)
        student = truncate_teacher(teacher.model, keep)
        info["kept_teacher_layers"] = keep
    elif cfg.kind == "fresh":
        student = fresh_student(cfg, teacher, splits)
    else:
        student = pretrained_student(cfg, teacher, splits)
    student.config.id2label = splits.id2label
    student.config.label2id = splits.label2id
    info["num_layers"] = int(student.config.num_hidden_layers)
    info["hidden_size"] = int(student.config.hidden_size)
    info["params"] = count_parameters(student)
    return student, info


def count_parameters(model: nn.Module) -> int:
    return int(sum(p.numel() for p in model.parameters()))


class HiddenProjection(nn.Module):
    """TinyBERT's learned W_h: student width -> teacher width, shared by all layers."""

    def __init__(self, student_width: int, teacher_width: int) -> None:
        super().__init__()
        self.linear = nn.Linear(student_width, teacher_width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x)
