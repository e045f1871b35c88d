"""The ``theseus`` method: BERT-of-Theseus (Xu et al. 2020), progressive module replacing.

The teacher (the *predecessor*, N layers) is cut into M contiguous modules, as even as
possible (k = N/M layers each when M divides N). The student (the *successor*) is a
truncated copy of the teacher with M layers, one per module, each initialised from a
teacher layer by ``distill.layer_mapping`` (``uniform``: the last layer of its module; the
paper's code copies the first M layers, ``first``). Two phases, ``train.stage1`` and
``train.stage2``:

1. **replacing**: at each step every module is replaced by its successor layer with
   probability p, drawn independently (a seeded generator); p follows
   ``p = min(1, p0 + rate * step)`` (``rate: 0`` keeps it constant). The predecessor's
   layers are frozen copies; the successor's embeddings, pooler and classifier (copies of
   the teacher's) are frozen too, so only the successor layers learn to stand in;
2. **successor fine-tuning**: the successor alone, every parameter trained.

Both phases use the prediction loss (``alpha = 1`` is the paper's plain cross-entropy). The
saved student is the successor alone: a plain truncated Hugging Face model.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from ..errors import ConfigError
from ..families.base import ModelOutputs
from .base import DistillationMethod, Stage, StepInputs
from .registry import method_options, register_method

if TYPE_CHECKING:
    from ..batching import Batch
    from ..config import RunConfig
    from ..families.base import StudentModel
    from ..teacher import Teacher

REPLACE, SUCCESSOR = "replace", "successor"


class TheseusOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    p0: float = Field(
        default=0.5, ge=0.0, le=1.0, description="replacement probability at the first step"
    )
    rate: float = Field(
        default=0.0, ge=0.0, le=1.0, description="curriculum: p grows by this much per step"
    )


def module_groups(teacher_layers: int, modules: int) -> list[list[int]]:
    """Teacher layer indices (0-based) of each of ``modules`` contiguous, near-even modules."""
    base, extra = divmod(teacher_layers, modules)
    groups, start = [], 0
    for i in range(modules):
        size = base + (1 if i < extra else 0)
        groups.append(list(range(start, start + size)))
        start += size
    return groups


def replacement_probability(p0: float, rate: float, step: int) -> float:
    """The curriculum: ``min(1, p0 + rate * step)`` (step counted from 0)."""
    return min(1.0, p0 + rate * step)


@register_method
class Theseus(DistillationMethod):
    name = "theseus"
    options_model = TheseusOptions

    def __init__(
        self, cfg: RunConfig, student: StudentModel, teacher: Teacher, mapping: list[int]
    ) -> None:
        super().__init__(cfg, student, teacher, mapping)
        from ..families.transformer import HFClassifier, encoder_layers

        assert isinstance(student, HFClassifier), "check_config admits transformers only"
        self.options: TheseusOptions = method_options(self.name, cfg.distill.options.get(self.name))
        self.encoder = getattr(student.model.base_model, "encoder")  # noqa: B009 - typed Any
        self.successor = encoder_layers(student.model)
        teacher_layers = encoder_layers(teacher.model)
        self.groups = module_groups(len(teacher_layers), len(self.successor))
        # frozen copies: the teacher itself is shared with the other trials of a study
        self.predecessor = nn.ModuleList(copy.deepcopy(layer) for layer in teacher_layers)
        for p in self.predecessor.parameters():
            p.requires_grad_(False)
        self.steps = 0
        self.generator = torch.Generator().manual_seed(cfg.train.seed)
        student.set_attention("sdpa")
        teacher.module.set_attention("sdpa")

    @classmethod
    def check_config(cls, cfg: RunConfig, student_provides: frozenset[str]) -> None:
        s = cfg.student
        if s.family != "transformer" or s.kind != "truncate":
            raise ConfigError(
                "distill.method 'theseus' replaces teacher modules with layers copied from the "
                f"teacher: it needs student.family transformer with kind truncate (got "
                f"{s.family}" + (f", kind {s.kind})" if s.family == "transformer" else ")")
            )
        d = cfg.distill
        if d.uses_intermediate:
            raise ConfigError(
                "distill.method 'theseus' trains on the prediction loss only: set "
                "distill.hidden_weight, attention_weight, embedding_weight and pkd_weight to 0"
            )

    @classmethod
    def plan(cls, cfg: RunConfig) -> list[Stage]:
        t = cfg.train
        return [
            Stage(1, REPLACE, t.stage1.epochs, t.stage1.lr),
            Stage(2, SUCCESSOR, t.stage2.epochs, t.stage2.lr),
        ]

    def extra_modules(self) -> list[nn.Module]:
        """The frozen predecessor: moved to the device with the student, never trained."""
        return [self.predecessor]

    def begin_stage(self, stage: Stage) -> None:
        """Replacing: only the successor layers learn. Fine-tuning: everything does."""
        successor = {id(p) for p in self.successor.parameters()}
        for p in self.student.parameters():
            p.requires_grad_(stage.name == SUCCESSOR or id(p) in successor)

    def probability(self) -> float:
        return replacement_probability(self.options.p0, self.options.rate, self.steps)

    def forward(
        self, stage: Stage, student: StudentModel, batch: Batch, needs: frozenset[str]
    ) -> ModelOutputs:
        if stage.name != REPLACE or not student.training:
            return student(batch.input_ids, batch.attention_mask, needs, batch.token_type_ids)
        p = self.probability()
        self.steps += 1
        draws = torch.rand(len(self.groups), generator=self.generator) < p
        return self.mixed_forward(student, batch, [bool(d) for d in draws], needs)

    def mixed_forward(
        self, student: StudentModel, batch: Batch, replaced: list[bool], needs: frozenset[str]
    ) -> ModelOutputs:
        """The student's embeddings and head around module i's successor layer where
        ``replaced[i]``, else the predecessor's layers of module i."""
        self.predecessor.train(student.training)  # dropout as in the rest of the model
        layers: list[nn.Module] = []
        for i, group in enumerate(self.groups):
            if replaced[i]:
                layers.append(self.successor[i])
            else:
                layers.extend(self.predecessor[j] for j in group)
        self.encoder.layer = nn.ModuleList(layers)
        try:
            return student(batch.input_ids, batch.attention_mask, needs, batch.token_type_ids)
        finally:
            self.encoder.layer = self.successor

    def loss(self, stage: Stage, step: StepInputs) -> torch.Tensor:
        return self.prediction_loss(step)
