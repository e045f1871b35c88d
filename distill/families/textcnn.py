"""The ``textcnn`` family (Kim 2014): embeddings -> parallel 1-D convolutions -> max-pool.

Each kernel slides over the zero-padded sequence; windows that only cover padding are
dropped before the max, so a row scores the same alone or in any batch. Sentence pairs are
encoded by the same convolutions each, and ``[u; v; u*v; |u-v|]`` feeds the classifier.
"""

from __future__ import annotations

import torch
from pydantic import Field, field_validator
from torch import nn

from ._native import EMBEDDING_DIM_HELP, TRAIN_EMBEDDINGS_HELP, NativeOptions, NativeStudent
from .registry import register_family


class TextCNNOptions(NativeOptions):
    embedding_dim: int = Field(default=300, ge=8, le=4096, description=EMBEDDING_DIM_HELP)
    kernel_sizes: list[int] = Field(
        default_factory=lambda: [3, 4, 5],
        min_length=1,
        max_length=8,
        description="one convolution per entry, each this many tokens wide (1 to 32), "
        "max-pooled over the text",
    )
    channels: int = Field(
        default=100,
        ge=1,
        le=4096,
        description="output channels of each convolution; the text's vector has "
        "`channels * len(kernel_sizes)` entries",
    )
    dropout: float = Field(
        default=0.5,
        ge=0.0,
        lt=1.0,
        description="dropout probability on the pooled features before the classifier",
    )
    train_embeddings: bool = Field(default=True, description=TRAIN_EMBEDDINGS_HELP)

    @field_validator("kernel_sizes")
    @classmethod
    def _kernels(cls, v: list[int]) -> list[int]:
        if any(k < 1 or k > 32 for k in v):
            raise ValueError(f"kernel sizes must lie in 1..32; got {v}")
        return v


@register_family
class TextCNNStudent(NativeStudent):
    family = "textcnn"
    options_model = TextCNNOptions

    def __init__(
        self,
        options: TextCNNOptions,
        vocab_size: int,
        num_labels: int,
        pad_id: int,
        pair: bool = False,
    ) -> None:
        super().__init__(options, vocab_size, num_labels, pad_id, pair)
        o = options
        self.embedding = nn.Embedding(vocab_size, o.embedding_dim, padding_idx=pad_id)
        self.convs = nn.ModuleList(
            nn.Conv1d(o.embedding_dim, o.channels, k, padding=k - 1) for k in o.kernel_sizes
        )
        self.dropout = nn.Dropout(o.dropout)
        self.classifier = nn.Linear(
            self.feature_width(o.channels * len(o.kernel_sizes)), num_labels
        )

    @property
    def hidden_size(self) -> int:
        return int(self.options.channels * len(self.options.kernel_sizes))

    def encode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Each kernel's max-pooled channels, concatenated: (B, channels * kernels)."""
        lengths = attention_mask.sum(1, keepdim=True).clamp_min(1)  # (B, 1)
        x = self._masked_embeddings(self.embedding, input_ids, attention_mask).transpose(1, 2)
        pooled = []
        for k, conv in zip(self.options.kernel_sizes, self.convs, strict=True):
            out = torch.relu(conv(x))  # (B, C, L + k - 1); window t ends at token t
            positions = torch.arange(out.shape[2], device=out.device).unsqueeze(0)
            valid = (positions <= lengths + (k - 2)).unsqueeze(1).to(out.dtype)
            # ReLU outputs are >= 0, so zeroing the padding-only windows leaves the max intact
            pooled.append((out * valid).amax(dim=2))
        return torch.cat(pooled, dim=1)

    def head(self, features: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.dropout(features))
