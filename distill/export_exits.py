"""ONNX export of an early-exit student: one graph per layer, so the runtime can exit early.

``exits/layer_1.onnx`` takes ``(input_ids, attention_mask)``; ``exits/layer_m.onnx`` takes
``(previous_hidden, attention_mask)``. Each returns the layer's output ``hidden`` and its exit's
``logits``. A runtime runs them in order, drops the rows whose exit is sure enough (see
:func:`distill.onnx_runtime.early_exit_logits`) and feeds the rest on, so the speed
threshold is a runtime argument and the per-row exit layer comes out. Each exit's logits
are checked against torch on a probe batch before the graphs are kept.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .early_exit import EarlyExitModel
from .errors import ModelError
from .export import probe_batch, trace_to_onnx

EXITS_DIR = "exits"


def graph_name(layer: int) -> str:
    """The graph of 1-based ``layer``, relative to the student folder."""
    return f"{EXITS_DIR}/layer_{layer}.onnx"


class LayerGraph(nn.Module):
    """Layer ``i`` (0-based) of an early-exit student and its exit."""

    def __init__(self, model: EarlyExitModel, i: int) -> None:
        super().__init__()
        self.model, self.i = model, i

    def forward(
        self,
        x: torch.Tensor,
        attention_mask: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        m = self.model
        hidden = m._embed(x, token_type_ids) if self.i == 0 else x
        hidden = m._layer(self.i, hidden, m._mask(attention_mask, hidden.dtype))
        return hidden, m.exit_logits(self.i, hidden, attention_mask)


def export_exit_graphs(
    model: EarlyExitModel,
    folder: Path,
    tokenizer: Any,
    *,
    max_length: int,
    atol: float = 1e-4,
    pair: bool = False,
) -> list[str]:
    """Write every layer's graph under ``folder/exits/``; the names, relative to ``folder``."""
    from .onnx_runtime import run_exit_graphs

    was_training, device = model.training, next(model.parameters()).device
    model.set_attention("sdpa")
    model.eval()
    model.cpu()
    (folder / EXITS_DIR).mkdir(exist_ok=True)
    probe = probe_batch(tokenizer, max_length, pair)
    ids, mask, types = probe["input_ids"], probe["attention_mask"], probe.get("token_type_ids")
    names = [graph_name(i + 1) for i in range(model.num_layers)]
    try:
        x = ids
        for i, name in enumerate(names):
            inputs = ["input_ids" if i == 0 else "previous_hidden", "attention_mask"]
            args: tuple[torch.Tensor, ...] = (x, mask)
            if i == 0 and types is not None:
                inputs, args = [*inputs, "token_type_ids"], (x, mask, types)
            graph = LayerGraph(model, i)
            trace_to_onnx(graph, args, folder / name, inputs, ["hidden", "logits"])
            with torch.no_grad():
                x, _ = graph(*args)
        with torch.no_grad():
            expected = [e.float().numpy() for e in model.all_exits(ids, mask, types).exits or ()]
    finally:
        model.to(device)
        model.train(was_training)
    got = run_exit_graphs(
        [str(folder / n) for n in names],
        ids.numpy(),
        mask.numpy(),
        types.numpy() if types is not None else None,
    )
    diff = max(float(np.max(np.abs(g - e))) for g, e in zip(got, expected, strict=True))
    if diff > atol:
        shutil.rmtree(folder / EXITS_DIR, ignore_errors=True)
        raise ModelError(
            f"the ONNX export of the early exits differs from torch by {diff:.2e} (> {atol}); "
            "the export was not kept"
        )
    return names
