"""What the non-Hugging-Face families share: teacher-initialised embeddings, save and load.

A native student's checkpoint is ``model.safetensors`` plus ``kdsearch_student.json`` (family,
options, vocabulary size, labels), read back by kdsearch's own code: never a pickle, never
remote code.
"""

from __future__ import annotations

import json
from abc import abstractmethod
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from pydantic import BaseModel, ConfigDict
from safetensors.torch import load_file, save_file
from torch import nn

from ..config import StudentConfig
from ..errors import ModelError
from .base import STUDENT_JSON, ModelOutputs, StudentModel, read_student_json
from .registry import family_options

if TYPE_CHECKING:
    from ..data import DatasetSplits
    from ..teacher import Teacher

WEIGHTS = "model.safetensors"


# The option fields every native family has, described once.
EMBEDDING_DIM_HELP = (
    "width of the token embeddings, initialised from the teacher's input embeddings "
    "(projected onto their top principal axes when narrower; at most the teacher's width)"
)
TRAIN_EMBEDDINGS_HELP = (
    "train the embedding table; false keeps it frozen at its teacher-initialised values"
)


class NativeOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")


def teacher_embeddings(teacher: Teacher, width: int) -> torch.Tensor:
    """The teacher's input embedding table, projected onto its top ``width`` principal axes
    when the widths differ (a fixed, deterministic projection: no network, no training)."""
    embeddings: Any = teacher.model.get_input_embeddings()
    table: torch.Tensor = embeddings.weight.detach().float().cpu()
    if width == table.shape[1]:
        return table.clone()
    if width > table.shape[1]:
        raise ModelError(
            f"embedding_dim {width} is wider than the teacher's embeddings "
            f"({table.shape[1]}): use embedding_dim <= {table.shape[1]}"
        )
    centred = table - table.mean(0, keepdim=True)
    _, _, vh = torch.linalg.svd(centred, full_matrices=False)
    projected = centred @ vh[:width].T
    # keep the teacher table's overall scale, so the initial activations are familiar
    return projected * (table.std() / projected.std().clamp_min(1e-12))


def split_pair(
    input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor
) -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    """A batch of tokenizer pairs as two left-aligned batches, ``(ids, mask)`` each: segment
    0 (the first text with its special tokens) and segment 1, shifted to start at 0."""
    first_mask = attention_mask * (token_type_ids == 0).to(attention_mask.dtype)
    second_mask = attention_mask * (token_type_ids != 0).to(attention_mask.dtype)
    width = input_ids.shape[1]
    start = first_mask.sum(1, keepdim=True)  # (B, 1): where segment 1 begins
    source = torch.arange(width, device=input_ids.device).unsqueeze(0) + start
    inside = (source < width).to(attention_mask.dtype)
    source = source.clamp(max=width - 1)
    second_ids = input_ids.gather(1, source)
    second_mask = second_mask.gather(1, source) * inside
    return (input_ids, first_mask), (second_ids, second_mask)


class NativeStudent(StudentModel):
    """Base of the families built here from torch layers (BiLSTM, TextCNN).

    A family implements ``encode`` (token ids and mask to one vector per row) and ``head``
    (features to logits). A sentence-pair student (``pair``) encodes both texts with the
    one encoder and classifies ``[u; v; u*v; |u-v|]`` (Tang et al. 2019).
    """

    options_model: ClassVar[type[BaseModel]]

    def __init__(
        self, options: Any, vocab_size: int, num_labels: int, pad_id: int, pair: bool = False
    ) -> None:
        super().__init__()
        self.options = options
        self.vocab_size, self.num_labels, self.pad_id = vocab_size, num_labels, pad_id
        self.pair = pair
        self.label_names: list[str] = [str(i) for i in range(num_labels)]

    def feature_width(self, width: int) -> int:
        """The head's input width for sentence vectors of ``width``."""
        return 4 * width if self.pair else width

    @abstractmethod
    def encode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """One feature vector per row: (batch, width)."""

    @abstractmethod
    def head(self, features: torch.Tensor) -> torch.Tensor:
        """Logits from the (pair-combined) features."""

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        needs: frozenset[str] = frozenset(),
        token_type_ids: torch.Tensor | None = None,
    ) -> ModelOutputs:
        if not self.pair:
            return ModelOutputs(self.head(self.encode(input_ids, attention_mask)))
        if token_type_ids is None:
            raise ModelError(
                f"this {self.family} student reads sentence pairs: give token_type_ids "
                "(the tokenizer's segment ids for text and text_pair)"
            )
        first, second = split_pair(input_ids, attention_mask, token_type_ids)
        u, v = self.encode(*first), self.encode(*second)
        return ModelOutputs(self.head(torch.cat([u, v, u * v, (u - v).abs()], dim=-1)))

    def _masked_embeddings(
        self, embedding: nn.Embedding, input_ids: torch.Tensor, attention_mask: torch.Tensor
    ) -> torch.Tensor:
        """Token embeddings with padded positions zeroed (padding never carries signal)."""
        return embedding(input_ids) * attention_mask.unsqueeze(-1).to(embedding.weight.dtype)

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), **self.options.model_dump()}

    def set_labels(self, label_names: list[str]) -> None:
        self.label_names = list(label_names)

    def config_dict(self) -> dict[str, Any]:
        return {
            "family": self.family,
            "options": self.options.model_dump(mode="json"),
            "vocab_size": self.vocab_size,
            "num_labels": self.num_labels,
            "pad_id": self.pad_id,
            "text_pair": self.pair,
            "id2label": dict(enumerate(self.label_names)),
        }

    def save_weights(self, folder: Path) -> None:
        state = {k: v.detach().contiguous().cpu() for k, v in self.state_dict().items()}
        save_file(state, str(folder / WEIGHTS), metadata={"family": self.family})
        (folder / STUDENT_JSON).write_text(json.dumps(self.config_dict(), indent=2))

    @classmethod
    def load(cls, folder: Path) -> NativeStudent:
        meta = read_student_json(folder)
        if meta is None or not (folder / WEIGHTS).is_file():
            raise ModelError(
                f"{folder} is not a kdsearch {cls.family} checkpoint "
                f"(needs {WEIGHTS} and {STUDENT_JSON})"
            )
        options = family_options(cls.family, meta.get("options"))
        model = cls(
            options,
            int(meta["vocab_size"]),
            int(meta["num_labels"]),
            int(meta["pad_id"]),
            bool(meta.get("text_pair", False)),
        )
        try:
            model.load_state_dict(load_file(str(folder / WEIGHTS)))
        except RuntimeError as exc:
            raise ModelError(
                f"{folder}/{WEIGHTS} does not match its {STUDENT_JSON}: {exc}"
            ) from exc
        id2label = meta.get("id2label") or {}
        model.set_labels([str(id2label[str(i)]) for i in range(model.num_labels)])
        model.eval()
        return model

    @classmethod
    def build(
        cls,
        cfg: StudentConfig,
        teacher: Teacher,
        splits: DatasetSplits,
        mapping: str | list[int],
    ) -> tuple[NativeStudent, dict[str, Any]]:
        options = family_options(cls.family, cfg.options.get(cls.family))
        vocab = int(teacher.model.config.vocab_size)
        pad_id = int(teacher.tokenizer.pad_token_id or 0)
        model = cls(options, vocab, splits.num_labels, pad_id, splits.is_pair)
        model.init_embeddings(teacher_embeddings(teacher, options.embedding_dim))
        model.set_labels(splits.label_names)
        return model, {"kind": "teacher_embeddings"}

    def init_embeddings(self, table: torch.Tensor) -> None:
        embedding: Any = self.embedding
        with torch.no_grad():
            embedding.weight.copy_(table)
        embedding.weight.requires_grad_(bool(self.options.train_embeddings))
