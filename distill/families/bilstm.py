"""The ``bilstm`` family (Tang et al. 2019): embeddings -> BiLSTM -> ReLU layer -> classifier.

Sentence pairs go through the one (shared) BiLSTM each, and ``[u; v; u*v; |u-v|]`` of the
two sentence vectors feeds the ReLU layer, as in the paper.

Padding never changes a row's result: the backward direction reads each row reversed within
its own length, and the features are the final states at each row's last real token. So a
row scores the same alone or in any batch, in torch and in the ONNX export alike.
"""

from __future__ import annotations

import torch
from pydantic import Field
from torch import nn

from ._native import EMBEDDING_DIM_HELP, TRAIN_EMBEDDINGS_HELP, NativeOptions, NativeStudent
from .registry import register_family


class BiLSTMOptions(NativeOptions):
    embedding_dim: int = Field(default=300, ge=8, le=4096, description=EMBEDDING_DIM_HELP)
    hidden_size: int = Field(
        default=300, ge=8, le=4096, description="LSTM units per direction in each layer"
    )
    layers: int = Field(default=1, ge=1, le=4, description="stacked LSTM layers")
    bidirectional: bool = Field(
        default=True,
        description="add a backward LSTM to each layer (the text's vector holds both "
        "directions' final states); false: forward only",
    )
    fc_size: int = Field(
        default=400,
        ge=8,
        le=8192,
        description="width of the ReLU layer between the LSTM and the classifier",
    )
    dropout: float = Field(
        default=0.1,
        ge=0.0,
        lt=1.0,
        description="dropout probability on the embeddings, between LSTM layers and before "
        "the classifier",
    )
    train_embeddings: bool = Field(default=True, description=TRAIN_EMBEDDINGS_HELP)


def reverse_within_length(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Reverse each row's first ``length`` positions; padding stays at the end."""
    positions = torch.arange(x.shape[1], device=x.device).unsqueeze(0)  # (1, L)
    last = (lengths - 1).unsqueeze(1)  # (B, 1)
    index = torch.where(positions <= last, last - positions, positions)  # (B, L)
    return x.gather(1, index.unsqueeze(-1).expand(-1, -1, x.shape[2]))


def at_position(x: torch.Tensor, position: torch.Tensor) -> torch.Tensor:
    """Row b's vector at ``position[b]``: (B, L, D) -> (B, D)."""
    index = position.view(-1, 1, 1).expand(-1, 1, x.shape[2])
    return x.gather(1, index).squeeze(1)


@register_family
class BiLSTMStudent(NativeStudent):
    family = "bilstm"
    options_model = BiLSTMOptions

    def __init__(
        self,
        options: BiLSTMOptions,
        vocab_size: int,
        num_labels: int,
        pad_id: int,
        pair: bool = False,
    ) -> None:
        super().__init__(options, vocab_size, num_labels, pad_id, pair)
        o = options
        self.embedding = nn.Embedding(vocab_size, o.embedding_dim, padding_idx=pad_id)
        directions = 2 if o.bidirectional else 1
        self.forward_layers = nn.ModuleList()
        self.backward_layers = nn.ModuleList()
        width = o.embedding_dim
        for _ in range(o.layers):
            self.forward_layers.append(nn.LSTM(width, o.hidden_size, batch_first=True))
            if o.bidirectional:
                self.backward_layers.append(nn.LSTM(width, o.hidden_size, batch_first=True))
            width = directions * o.hidden_size
        self.dropout = nn.Dropout(o.dropout)
        self.fc = nn.Linear(self.feature_width(width), o.fc_size)
        self.classifier = nn.Linear(o.fc_size, num_labels)

    @property
    def num_layers(self) -> int:
        return 0  # no layer a transformer layer mapping could address

    @property
    def hidden_size(self) -> int:
        return int(self.options.hidden_size)

    def encode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """The final states at each row's last real token, both directions: (B, width)."""
        lengths = attention_mask.sum(1).clamp_min(1)
        last = lengths - 1
        x = self.dropout(self._masked_embeddings(self.embedding, input_ids, attention_mask))
        features: list[torch.Tensor] = []
        for i, fwd in enumerate(self.forward_layers):
            out_f, _ = fwd(x)
            features = [at_position(out_f, last)]
            outputs = [out_f]
            if self.options.bidirectional:
                out_b, _ = self.backward_layers[i](reverse_within_length(x, lengths))
                features.append(at_position(out_b, last))
                outputs.append(reverse_within_length(out_b, lengths))
            x = self.dropout(torch.cat(outputs, dim=-1))
        return torch.cat(features, dim=-1)

    def head(self, features: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.dropout(torch.relu(self.fc(features))))
