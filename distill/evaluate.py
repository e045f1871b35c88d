"""Inference over a split: logits in the split's order, and measured latency."""

from __future__ import annotations

import time

import torch
from torch import nn

from .batching import EncodedSplit, eval_batches
from .device import autocast


@torch.no_grad()
def predict_logits(
    model: nn.Module,
    split: EncodedSplit,
    batch_size: int,
    pad_id: int,
    device: torch.device,
    bf16: bool = True,
) -> torch.Tensor:
    """Logits (n, C) as float32 on the CPU, rows in the split's order."""
    was_training = model.training
    model.eval()
    out: torch.Tensor | None = None
    for batch in eval_batches(split, batch_size, pad_id):
        b = batch.to(device)
        with autocast(device, bf16):
            logits = model(**b.model_inputs()).logits
        logits = logits.float().cpu()
        if out is None:
            out = torch.empty((len(split), logits.shape[-1]), dtype=torch.float32)
        out[batch.index] = logits
    model.train(was_training)
    assert out is not None, "empty split"
    return out


@torch.no_grad()
def measure_latency_ms(
    model: nn.Module,
    split: EncodedSplit,
    batch_size: int,
    pad_id: int,
    device: torch.device,
    batches: int = 3,
    bf16: bool = True,
) -> float:
    """Milliseconds per example of batched inference (one warm-up batch not counted)."""
    was_training = model.training
    model.eval()
    it = list(eval_batches(split, batch_size, pad_id))
    # Measure on the middle of the length distribution, not only the shortest rows.
    picked = it[len(it) // 2 :][: batches + 1] or it
    n_examples, elapsed = 0, 0.0
    for k, batch in enumerate(picked):
        b = batch.to(device)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        with autocast(device, bf16):
            model(**b.model_inputs())
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        if k == 0 and len(picked) > 1:
            continue  # warm-up
        elapsed += time.perf_counter() - start
        n_examples += len(batch.index)
    model.train(was_training)
    return 1000.0 * elapsed / max(1, n_examples)
