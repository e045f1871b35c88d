"""FastBERT-style early exits (Liu et al. 2020): a classifier after every student layer.

:class:`EarlyExitModel` wraps a transformer student (its *backbone*) and adds an exit head
after each layer but the last; the last layer's exit is the backbone's own classifier, so
the backbone alone still loads and answers as a plain Hugging Face model.

At inference an example leaves at the first exit whose **normalised entropy**
``H(p) / log(C)`` (in [0, 1]) is at most ``speed``; ``speed = 0`` never leaves early (the
final layer answers every row) and ``speed = 1`` leaves at layer 1 for every row. Rows that
left are dropped from the batch, so later layers run on fewer rows: that is the speed-up.
The logits returned are those of the exit each row took (``ModelOutputs.exit_layer`` says
which), so every metric is judged at the exit that answered.

Saved: the backbone's Hugging Face folder, the exit heads in ``exits.safetensors`` and an
``early_exit`` block in ``kdsearch_student.json`` (layers, head width, trained speed).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from .errors import ModelError
from .families.base import EXITS, STUDENT_JSON, ModelOutputs, StudentModel
from .families.transformer import HFClassifier, encoder_layers

EXITS_FILE = "exits.safetensors"
EARLY_EXIT_KEY = "early_exit"  # the block in kdsearch_student.json and labels.json


def normalized_entropy(logits: torch.Tensor) -> torch.Tensor:
    """FastBERT's uncertainty: entropy of softmax(logits) over log(C), clipped to [0, 1]."""
    logp = torch.log_softmax(logits.float(), dim=-1)
    h = -(logp.exp() * logp).sum(-1) / math.log(logits.shape[-1])
    return h.clamp(0.0, 1.0)


def leaves(logits: torch.Tensor, speed: float) -> torch.Tensor:
    """Which rows leave at an exit with these logits (bool, per row)."""
    if speed <= 0.0:
        return torch.zeros(logits.shape[0], dtype=torch.bool, device=logits.device)
    return normalized_entropy(logits) <= speed


def take_exits(exits: torch.Tensor, speed: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Offline early exit from every exit's logits ``(L, n, C)``: the logits of the exit each
    row takes and its 1-based layer. Equal to what :class:`EarlyExitModel` does in one pass."""
    n_exits, n = exits.shape[0], exits.shape[1]
    layer = torch.full((n,), n_exits, dtype=torch.long)
    undecided = torch.ones(n, dtype=torch.bool)
    for i in range(n_exits - 1):
        go = undecided & leaves(exits[i], speed).cpu()
        layer[go] = i + 1
        undecided &= ~go
    return exits[layer - 1, torch.arange(n)], layer


class ExitHead(nn.Module):
    """One early exit: [[CLS]; masked mean of the tokens] -> dense -> tanh -> dropout ->
    classes. The mean matters: in an early layer [CLS] has gathered little of the sentence
    yet (FastBERT's exits attend over every token for the same reason)."""

    def __init__(self, hidden: int, width: int, num_labels: int, dropout: float) -> None:
        super().__init__()
        self.dense = nn.Linear(2 * hidden, width)
        self.dropout = nn.Dropout(dropout)
        self.out = nn.Linear(width, num_labels)

    def forward(self, hidden_states: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        keep = attention_mask[:, :, None].to(hidden_states.dtype)
        mean = (hidden_states * keep).sum(1) / keep.sum(1).clamp(min=1.0)
        pooled = torch.cat([hidden_states[:, 0], mean], dim=-1)
        return self.out(self.dropout(torch.tanh(self.dense(pooled))))


def additive_mask(attention_mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """(batch, seq) 0/1 -> (batch, 1, 1, seq) additive mask for the encoder layers."""
    keep = attention_mask[:, None, None, :].to(dtype)
    return (1.0 - keep) * torch.finfo(dtype).min


def layer_mask(
    attention_mask: torch.Tensor, dtype: torch.dtype, implementation: str
) -> torch.Tensor:
    """The mask an encoder layer takes: boolean (True = attend) for sdpa, which then works
    whatever dtype autocast gives the queries; additive for eager-style kernels."""
    if implementation == "sdpa":
        return attention_mask[:, None, None, :].bool()
    return additive_mask(attention_mask, dtype)


class EarlyExitModel(StudentModel):
    """A transformer student with an exit after every layer (see the module doc)."""

    family = "transformer"
    provides = HFClassifier.provides | {EXITS}

    def __init__(self, backbone: HFClassifier, width: int = 128, speed: float = 0.0) -> None:
        super().__init__()
        self.backbone = backbone
        cfg = backbone.model.config
        dropout = float(getattr(cfg, "hidden_dropout_prob", 0.1) or 0.0)
        self.width = width
        self.exits = nn.ModuleList(
            ExitHead(backbone.hidden_size, width, int(cfg.num_labels or 0), dropout)
            for _ in range(backbone.num_layers - 1)
        )
        self.speed = speed

    # ------------------------------------------------------------------ pieces
    @property
    def num_layers(self) -> int:
        return self.backbone.num_layers

    @property
    def hidden_size(self) -> int:
        return self.backbone.hidden_size

    def _layers(self) -> nn.ModuleList:
        return encoder_layers(self.backbone.model)

    def _embed(
        self, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None = None
    ) -> torch.Tensor:
        base: Any = self.backbone.model.base_model
        segments = token_type_ids if self.backbone.takes_segments() else None
        out: torch.Tensor = base.embeddings(input_ids=input_ids, token_type_ids=segments)
        return out

    def _mask(self, attention_mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        impl = str(getattr(self.backbone.model.config, "_attn_implementation", "eager"))
        return layer_mask(attention_mask, dtype, impl)

    def _layer(self, i: int, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        out = self._layers()[i](hidden, mask)
        return out[0] if isinstance(out, tuple) else out

    def _final(self, hidden: torch.Tensor) -> torch.Tensor:
        """The backbone's own classification head on the last layer's output."""
        model: Any = self.backbone.model
        pooler = getattr(model.base_model, "pooler", None)
        if pooler is None:  # RoBERTa/ELECTRA-style heads take the whole sequence
            out: torch.Tensor = model.classifier(hidden)
            return out
        pooled = pooler(hidden)
        dropout = getattr(model, "dropout", None)
        logits: torch.Tensor = model.classifier(dropout(pooled) if dropout else pooled)
        return logits

    def exit_logits(
        self, i: int, hidden: torch.Tensor, attention_mask: torch.Tensor
    ) -> torch.Tensor:
        """Exit ``i`` (0-based layer index)'s logits for that layer's output."""
        if i == self.num_layers - 1:
            return self._final(hidden)
        out: torch.Tensor = self.exits[i](hidden, attention_mask)
        return out

    # ------------------------------------------------------------------ forward
    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        needs: frozenset[str] = frozenset(),
        token_type_ids: torch.Tensor | None = None,
    ) -> ModelOutputs:
        if EXITS in needs:
            return self.all_exits(input_ids, attention_mask, token_type_ids)
        if self.training or self.speed <= 0.0:
            out = self.backbone(input_ids, attention_mask, needs, token_type_ids)
            if not self.training:
                out.exit_layer = torch.full(
                    (input_ids.shape[0],), self.num_layers, dtype=torch.long
                )
            return out
        return self.early(input_ids, attention_mask, self.speed, token_type_ids)

    def all_exits(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
    ) -> ModelOutputs:
        """Every exit's logits for every row. The backbone runs frozen (no gradient, no
        dropout): this is how the exits are trained, by self-distillation."""
        was_training = self.backbone.training
        self.backbone.eval()
        try:
            with torch.no_grad():
                hidden = self._embed(input_ids, token_type_ids)
                mask = self._mask(attention_mask, hidden.dtype)
                states = []
                for i in range(self.num_layers):
                    hidden = self._layer(i, hidden, mask)
                    states.append(hidden)
                final = self._final(hidden)
        finally:
            self.backbone.train(was_training)
        exits = (
            *(self.exits[i](h, attention_mask) for i, h in enumerate(states[:-1])),
            final,
        )
        return ModelOutputs(final, exits=exits)

    def early(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        speed: float,
        token_type_ids: torch.Tensor | None = None,
    ) -> ModelOutputs:
        """Layer by layer; a row leaves at its first exit with uncertainty <= ``speed``."""
        n = input_ids.shape[0]
        hidden = self._embed(input_ids, token_type_ids)
        mask = self._mask(attention_mask, hidden.dtype)
        active = torch.arange(n, device=input_ids.device)
        logits: torch.Tensor | None = None
        layer = torch.full((n,), self.num_layers, dtype=torch.long, device=input_ids.device)
        for i in range(self.num_layers):
            hidden = self._layer(i, hidden, mask)
            here = self.exit_logits(i, hidden, attention_mask)
            if logits is None:
                logits = here.new_empty((n, here.shape[-1]))
            if i == self.num_layers - 1:
                logits[active] = here
                break
            go = leaves(here, speed)
            logits[active[go]] = here[go]
            layer[active[go]] = i + 1
            stay = ~go
            if not bool(stay.any()):
                break
            hidden, mask, active = hidden[stay], mask[stay], active[stay]
            attention_mask = attention_mask[stay]
        assert logits is not None
        return ModelOutputs(logits, exit_layer=layer.cpu())

    # ------------------------------------------------------------------ family duties
    def describe(self) -> dict[str, Any]:
        return {
            **self.backbone.describe(),
            "params": self.count_parameters(),
            EARLY_EXIT_KEY: self.meta(),
        }

    def meta(self) -> dict[str, Any]:
        return {"layers": self.num_layers, "width": self.width, "speed": self.speed}

    def set_attention(self, implementation: str) -> None:
        self.backbone.set_attention(implementation)

    def set_labels(self, label_names: list[str]) -> None:
        self.backbone.set_labels(label_names)

    def onnx_module(self) -> nn.Module:
        """``model.onnx`` is the backbone alone (the final layer's answer, ``speed = 0``);
        the per-layer graphs that exit early are written beside it (:mod:`distill.export`)."""
        return self.backbone.onnx_module()

    def save_weights(self, folder: Path) -> None:
        self.backbone.save_weights(folder)
        state = {k: v.detach().cpu().contiguous() for k, v in self.exits.state_dict().items()}
        save_file(state, str(folder / EXITS_FILE))
        meta = {"family": self.family, EARLY_EXIT_KEY: self.meta()}
        (folder / STUDENT_JSON).write_text(json.dumps(meta, indent=2))

    @classmethod
    def build(cls, *args: Any, **kwargs: Any) -> tuple[StudentModel, dict[str, Any]]:
        raise ModelError(
            "early exits are added by distill.method early_exit, not built as a student family"
        )

    @classmethod
    def load(cls, folder: Path) -> EarlyExitModel:
        from .families.base import read_student_json

        meta = (read_student_json(folder) or {}).get(EARLY_EXIT_KEY)
        if not isinstance(meta, dict) or not (folder / EXITS_FILE).is_file():
            raise ModelError(f"{folder} holds no early exits ({EXITS_FILE} and its metadata)")
        model = cls(HFClassifier.load(folder), int(meta["width"]), float(meta["speed"]))
        if int(meta["layers"]) != model.num_layers:
            raise ModelError(
                f"{folder}: the exits were saved for {meta['layers']} layers, the model has "
                f"{model.num_layers}"
            )
        model.exits.load_state_dict(load_file(str(folder / EXITS_FILE)))
        return model


def has_exits(folder: Path) -> bool:
    from .families.base import read_student_json

    return EARLY_EXIT_KEY in (read_student_json(folder) or {})


def set_speed(student: StudentModel, speed: float | None) -> None:
    """Use ``speed`` at inference (None: the trained one). Only early-exit students have one."""
    if speed is None:
        return
    if not isinstance(student, EarlyExitModel):
        raise ModelError(
            "--speed needs a student trained with distill.method early_exit; this one has no "
            "early exits"
        )
    if not 0.0 <= speed <= 1.0:
        raise ModelError(f"speed must be between 0 and 1 (got {speed})")
    student.speed = speed
