"""The ``transformer`` family: BERT-family encoders (truncated teacher, fresh, pretrained).

:class:`HFClassifier` adapts a Hugging Face sequence classifier to the family interface; the
teacher is wrapped the same way, so the loop never reads Hugging Face output fields. A saved
transformer student is a plain Hugging Face folder that ``from_pretrained`` and ``pipeline``
load as is.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn
from transformers import AutoConfig, AutoModelForSequenceClassification, PreTrainedModel

from ..attention import use_attention
from ..config import StudentConfig
from ..errors import ModelError
from ..mapping import resolve_mapping
from .base import ATTENTIONS, HIDDEN_STATES, ModelOutputs, StudentModel
from .registry import register_family

if TYPE_CHECKING:
    from ..data import DatasetSplits
    from ..teacher import Teacher

WEIGHTS = "model.safetensors"


@register_family
class HFClassifier(StudentModel):
    """A Hugging Face ``*ForSequenceClassification`` model behind the family interface."""

    family = "transformer"
    provides = frozenset({HIDDEN_STATES, ATTENTIONS})

    def __init__(self, model: PreTrainedModel) -> None:
        super().__init__()
        self.model = model

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        needs: frozenset[str] = frozenset(),
        token_type_ids: torch.Tensor | None = None,
    ) -> ModelOutputs:
        hidden, attn = HIDDEN_STATES in needs, ATTENTIONS in needs
        segments = {}
        if token_type_ids is not None and self.takes_segments():
            segments["token_type_ids"] = token_type_ids
        out = self.model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            **segments,
            output_hidden_states=hidden,
            output_attentions=attn,
        )
        return ModelOutputs(
            out.logits,
            tuple(out.hidden_states) if hidden else None,
            tuple(out.attentions) if attn else None,
        )

    def takes_segments(self) -> bool:
        """Whether the model has segment (token type) embeddings to feed pairs into."""
        return int(getattr(self.model.config, "type_vocab_size", 0) or 0) >= 2

    @property
    def num_layers(self) -> int:
        return int(self.model.config.num_hidden_layers)

    @property
    def hidden_size(self) -> int:
        return int(self.model.config.hidden_size)

    def describe(self) -> dict[str, Any]:
        return {
            **super().describe(),
            "num_layers": self.num_layers,
            "hidden_size": self.hidden_size,
        }

    def set_attention(self, implementation: str) -> None:
        use_attention(self.model, implementation)

    def set_labels(self, label_names: list[str]) -> None:
        self.model.config.id2label = dict(enumerate(label_names))
        self.model.config.label2id = {name: i for i, name in enumerate(label_names)}

    def save_weights(self, folder: Path) -> None:
        self.set_attention("sdpa")  # the kd_scores attention is a training-time device
        self.model.save_pretrained(folder, safe_serialization=True)
        if not (folder / WEIGHTS).is_file():
            raise ModelError(f"saving the student to {folder} wrote no {WEIGHTS}")

    @classmethod
    def load(cls, folder: Path) -> HFClassifier:
        if not (folder / WEIGHTS).is_file():
            raise ModelError(f"{folder} is not a kdsearch student checkpoint (no {WEIGHTS})")
        model = AutoModelForSequenceClassification.from_pretrained(
            folder, use_safetensors=True, trust_remote_code=False
        )
        return cls(model)

    @classmethod
    def build(
        cls,
        cfg: StudentConfig,
        teacher: Teacher,
        splits: DatasetSplits,
        mapping: str | list[int],
    ) -> tuple[HFClassifier, dict[str, Any]]:
        """Truncate the teacher, build a fresh BERT, or load a pretrained student."""
        info: dict[str, Any] = {"kind": cfg.kind}
        if cfg.kind == "truncate":
            keep = truncated_layers(cfg, teacher.num_layers, mapping)
            model = truncate_teacher(teacher.model, keep)
            info["kept_teacher_layers"] = keep
        elif cfg.kind == "fresh":
            model = fresh_student(cfg, teacher, splits)
        else:
            model = pretrained_student(cfg, teacher, splits)
        model.config.id2label = splits.id2label
        model.config.label2id = splits.label2id
        if splits.multi_label:
            model.config.problem_type = "multi_label_classification"
        return cls(model), info


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
    from ..teacher import problem_type

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
        problem_type=problem_type(splits),
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
    from ..teacher import problem_type, resolve_model_location

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
            problem_type=problem_type(splits),
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
