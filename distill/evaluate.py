"""Inference over a split: logits in the split's order, and measured latency."""

from __future__ import annotations

import statistics
import time

import torch

from .batching import EncodedSplit, eval_batches
from .device import autocast
from .families.base import StudentModel


@torch.no_grad()
def predict_logits(
    model: StudentModel,
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
            logits = model(b.input_ids, b.attention_mask).logits
        logits = logits.float().cpu()
        if out is None:
            out = torch.empty((len(split), logits.shape[-1]), dtype=torch.float32)
        out[batch.index] = logits
    model.train(was_training)
    assert out is not None, "empty split"
    return out


@torch.no_grad()
def measure_latency_ms(
    model: StudentModel,
    split: EncodedSplit,
    batch_size: int,
    pad_id: int,
    device: torch.device,
    batches: int = 3,
    bf16: bool = True,
    repeats: int = 5,
) -> float:
    """Milliseconds per example of batched inference: the median over ``repeats`` timed
    passes, after one untimed warm-up pass.

    Every model (teacher and every student family) is timed the same way: the same rows
    (``batches`` length-sorted batches from the middle of the length distribution), the
    same batch size, in the calling process with its thread settings.
    """
    was_training = model.training
    model.eval()
    it = list(eval_batches(split, batch_size, pad_id))
    # Measure on the middle of the length distribution, not only the shortest rows.
    picked = [b.to(device) for b in (it[len(it) // 2 :][:batches] or it)]
    n_examples = sum(len(b.index) for b in picked)

    def one_pass() -> float:
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        for b in picked:
            with autocast(device, bf16):
                model(b.input_ids, b.attention_mask)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return time.perf_counter() - start

    one_pass()  # warm-up: allocator, kernels, caches
    timings = sorted(one_pass() for _ in range(max(1, repeats)))
    model.train(was_training)
    return 1000.0 * statistics.median(timings) / max(1, n_examples)
