"""Inference over a split: logits in the split's order, and measured latency."""

from __future__ import annotations

import contextlib
import statistics
import time
from collections.abc import Iterator

import torch

from .batching import Batch, EncodedSplit, eval_batches
from .device import autocast
from .families.base import EXITS, ModelOutputs, StudentModel


@contextlib.contextmanager
def eval_mode(model: torch.nn.Module) -> Iterator[None]:
    """Eval mode inside; afterwards every submodule gets its own earlier mode back.

    ``model.train(was_training)`` would set *every* submodule to the wrapper's mode: a
    wrapper left in train mode around a frozen teacher would switch the teacher's dropout on.
    """
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for m, training in modes:
            m.training = training


def _eval_passes(
    model: StudentModel,
    split: EncodedSplit,
    batch_size: int,
    pad_id: int,
    device: torch.device,
    bf16: bool,
    needs: frozenset[str] = frozenset(),
) -> Iterator[tuple[Batch, ModelOutputs]]:
    """The model's outputs for each length-sorted batch of ``split``, in eval mode (its
    training mode is restored afterwards); no gradient."""
    with eval_mode(model):
        for batch in eval_batches(split, batch_size, pad_id):
            b = batch.to(device)
            with torch.no_grad(), autocast(device, bf16):
                result = model(b.input_ids, b.attention_mask, needs, b.token_type_ids)
            yield batch, result


@torch.no_grad()
def predict_outputs(
    model: StudentModel,
    split: EncodedSplit,
    batch_size: int,
    pad_id: int,
    device: torch.device,
    bf16: bool = True,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Logits (n, C) as float32 on the CPU, rows in the split's order, and for a student
    with early exits the 1-based layer each row left at (else None)."""
    out: torch.Tensor | None = None
    layers: torch.Tensor | None = None
    for batch, result in _eval_passes(model, split, batch_size, pad_id, device, bf16):
        logits = result.logits.float().cpu()
        if out is None:
            out = torch.empty((len(split), logits.shape[-1]), dtype=torch.float32)
        out[batch.index] = logits
        if result.exit_layer is not None:
            if layers is None:
                layers = torch.zeros(len(split), dtype=torch.long)
            layers[batch.index] = result.exit_layer.cpu()
    assert out is not None, "empty split"
    return out, layers


def predict_logits(
    model: StudentModel,
    split: EncodedSplit,
    batch_size: int,
    pad_id: int,
    device: torch.device,
    bf16: bool = True,
) -> torch.Tensor:
    """Logits (n, C) as float32 on the CPU, rows in the split's order."""
    return predict_outputs(model, split, batch_size, pad_id, device, bf16)[0]


@torch.no_grad()
def all_exit_logits(
    model: StudentModel,
    split: EncodedSplit,
    batch_size: int,
    pad_id: int,
    device: torch.device,
    bf16: bool = True,
) -> torch.Tensor:
    """Every exit's logits ``(L, n, C)`` of a student with early exits (float32, CPU)."""
    out: torch.Tensor | None = None
    needs = frozenset({EXITS})
    for batch, result in _eval_passes(model, split, batch_size, pad_id, device, bf16, needs):
        exits = result.exits
        assert exits is not None, f"{type(model).__name__} has no early exits"
        stacked = torch.stack([e.float().cpu() for e in exits])
        if out is None:
            out = torch.empty((stacked.shape[0], len(split), stacked.shape[-1]))
        out[:, batch.index] = stacked
    assert out is not None, "empty split"
    return out


def exit_metrics(layers: torch.Tensor | None) -> dict[str, float]:
    """``mean_exit_layer`` when the student answered from early exits."""
    return {} if layers is None else {"mean_exit_layer": round(float(layers.float().mean()), 4)}


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
                model(b.input_ids, b.attention_mask, frozenset(), b.token_type_ids)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return time.perf_counter() - start

    with eval_mode(model):
        one_pass()  # warm-up: allocator, kernels, caches
        timings = sorted(one_pass() for _ in range(max(1, repeats)))
    return 1000.0 * statistics.median(timings) / max(1, n_examples)
