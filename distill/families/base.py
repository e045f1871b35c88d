"""The student-family interface: what the loop, the metrics and the exporters rely on.

A student is an ``nn.Module`` whose ``forward(input_ids, attention_mask, needs,
token_type_ids)`` returns a
:class:`ModelOutputs`: logits always, and the intermediate outputs a distillation method
asked for in ``needs`` when the family can produce them. Nothing outside a family reads
Hugging Face output fields. A family also knows its size, how to save and load itself, and
which module to hand the ONNX exporter.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from pydantic import BaseModel
from torch import nn

if TYPE_CHECKING:
    from ..config import StudentConfig
    from ..data import DatasetSplits
    from ..teacher import Teacher

HIDDEN_STATES = "hidden_states"
ATTENTIONS = "attentions"
EXITS = "exits"  # every early exit's logits (students with exits only)

# kdsearch's own description of a saved student, beside its weights (never a pickle).
STUDENT_JSON = "kdsearch_student.json"
LABELS_JSON = "labels.json"


@dataclass
class ModelOutputs:
    """What a forward pass returns.

    ``hidden_states[0]`` is the embedding output and ``hidden_states[m]`` layer m's output,
    each (batch, seq, width); ``attentions[m - 1]`` holds layer m's pre-softmax attention
    scores (batch, heads, seq, seq). Both are ``None`` unless asked for. A student with early
    exits also gives ``exits`` (exit m's logits at ``exits[m - 1]``, the last one being
    ``logits``) when asked for, and, when it answered from early exits, ``exit_layer``: the
    1-based layer each row left at (``logits`` are then the logits of the exit taken).
    """

    logits: torch.Tensor
    hidden_states: tuple[torch.Tensor, ...] | None = None
    attentions: tuple[torch.Tensor, ...] | None = None
    exits: tuple[torch.Tensor, ...] | None = None
    exit_layer: torch.Tensor | None = None


class LogitsOnly(nn.Module):
    """``(input_ids, attention_mask[, token_type_ids]) -> logits``: the graph the ONNX
    exporter traces (segment ids for sentence-pair students only)."""

    def __init__(self, student: StudentModel) -> None:
        super().__init__()
        self.student = student

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        return self.student(input_ids, attention_mask, frozenset(), token_type_ids).logits


class StudentModel(nn.Module, ABC):
    """Base class of every student family (and of the teacher's adapter).

    Subclasses set ``family``, ``provides`` (the intermediate outputs they can return) and
    ``options_model`` (their shape options, a pydantic model, or None), implement
    ``forward``, ``set_labels``, ``save_weights`` and the ``build`` and ``load``
    classmethods, and are registered with :func:`distill.families.register_family`.
    """

    family: ClassVar[str]
    provides: ClassVar[frozenset[str]] = frozenset()
    options_model: ClassVar[type[BaseModel] | None] = None

    @abstractmethod
    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        needs: frozenset[str] = frozenset(),
        token_type_ids: torch.Tensor | None = None,
    ) -> ModelOutputs: ...

    @property
    def num_layers(self) -> int:
        """Layers a layer mapping can address (0 when the family has no such layers)."""
        return 0

    @property
    def hidden_size(self) -> int:
        return 0

    def count_parameters(self) -> int:
        return int(sum(p.numel() for p in self.parameters()))

    def describe(self) -> dict[str, Any]:
        """JSON-ready facts about this student (family, shape, parameter count)."""
        return {"family": self.family, "params": self.count_parameters()}

    def set_attention(self, implementation: str) -> None:
        """Switch the attention kernel (transformers only; others ignore it)."""

    def onnx_module(self) -> nn.Module:
        """The module the ONNX exporter traces: ``(input_ids, attention_mask) -> logits``."""
        return LogitsOnly(self)

    @classmethod
    @abstractmethod
    def build(
        cls,
        cfg: StudentConfig,
        teacher: Teacher,
        splits: DatasetSplits,
        mapping: str | list[int],
    ) -> tuple[StudentModel, dict[str, Any]]:
        """A new student for this teacher and data, and a JSON-ready note on how it was made."""

    @abstractmethod
    def set_labels(self, label_names: list[str]) -> None:
        """Record the label names (id order) so a saved student names its classes."""

    @abstractmethod
    def save_weights(self, folder: Path) -> None:
        """Write this student's weights and config into ``folder`` (safetensors + JSON)."""

    @classmethod
    @abstractmethod
    def load(cls, folder: Path) -> StudentModel:
        """Load a student that :meth:`save_weights` wrote (safetensors only, no remote code)."""


def read_student_json(folder: Path) -> dict[str, Any] | None:
    path = folder / STUDENT_JSON
    if not path.is_file():
        return None
    data: dict[str, Any] = json.loads(path.read_text())
    return data
