"""An eager attention that returns pre-softmax scores, for TinyBERT's attention loss.

Hugging Face's eager attention hands back softmax probabilities; TinyBERT matches the
raw scores ``QK^T / sqrt(d)``. Registering this function under ``kd_scores`` (with the
eager mask builder) makes ``output_attentions=True`` return those scores instead.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from transformers import AttentionInterface
from transformers.masking_utils import AttentionMaskInterface, eager_mask

SCORES_IMPL = "kd_scores"


def _scores_attention(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float | None = None,
    dropout: float = 0.0,
    **kwargs: Any,
) -> tuple[torch.Tensor, torch.Tensor]:
    if scaling is None:
        scaling = query.size(-1) ** -0.5
    scores = torch.matmul(query, key.transpose(2, 3)) * scaling
    masked = scores + attention_mask if attention_mask is not None else scores
    probs = nn.functional.softmax(masked, dim=-1)
    probs = nn.functional.dropout(probs, p=dropout, training=module.training)
    out = torch.matmul(probs, value).transpose(1, 2).contiguous()
    return out, scores


AttentionInterface.register(SCORES_IMPL, _scores_attention)
AttentionMaskInterface.register(SCORES_IMPL, eager_mask)


def use_attention(model: nn.Module, implementation: str) -> None:
    """Switch a loaded model's attention (``kd_scores`` for attention loss, else sdpa)."""
    setter = getattr(model, "set_attn_implementation", None)
    if setter is not None:
        setter(implementation)
    else:  # pragma: no cover - very old transformers
        config: Any = model.config
        config._attn_implementation = implementation
