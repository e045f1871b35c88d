"""Every distillation method trains a tiny student end to end on the real tiny teacher, and
the saved checkpoint loads back into a model that gives the same answers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from kdsearch.distill.batching import eval_batches
from kdsearch.distill.checkpoint import load_student, save_student
from kdsearch.distill.early_exit import EarlyExitModel
from kdsearch.distill.families.transformer import HFClassifier
from kdsearch.distill.run import run_distillation

from .conftest import tiny_config

STAGES = {"stage1": {"epochs": 0.25, "lr": 2e-4}, "stage2": {"epochs": 0.25, "lr": 1e-4}}
METHODS: dict[str, dict[str, Any]] = {
    "kd": {"distill": {"method": "kd"}},
    "pkd": {"distill": {"method": "kd", "pkd_weight": 10.0, "layer_mapping": "pkd_skip"}},
    "theseus": {"distill": {"method": "theseus"}},
    "early_exit": {"distill": {"method": "early_exit", "options": {"early_exit": {"speed": 0.5}}}},
}


@pytest.mark.parametrize("name", list(METHODS))
def test_each_method_trains_and_its_checkpoint_round_trips(
    name: str,
    tiny_ctx,
    tmp_path: Path,  # type: ignore[no-untyped-def]
) -> None:
    cfg = tiny_config(
        student={"num_layers": 3},
        train={"epochs": 0.25, "lr": 2e-4, **STAGES},
        **METHODS[name],
    )
    result = run_distillation(cfg, ctx=tiny_ctx)
    assert result.steps >= 3 and 0.0 <= result.metrics["accuracy"] <= 1.0
    assert result.metrics["params"] == result.student.count_parameters()
    folder = save_student(
        result.student,
        tiny_ctx.teacher.tokenizer,
        tmp_path / name,
        tiny_ctx.splits.label_names,
        onnx=False,
    )
    loaded, _ = load_student(folder)
    kind = EarlyExitModel if name == "early_exit" else HFClassifier
    assert type(loaded) is kind and type(result.student) is kind
    assert loaded.num_layers == 3
    batch = next(iter(eval_batches(tiny_ctx.eval, 16, tiny_ctx.pad_id)))
    result.student.eval()
    with torch.no_grad():
        want = result.student(batch.input_ids, batch.attention_mask)
        got = loaded(batch.input_ids, batch.attention_mask)
    torch.testing.assert_close(got.logits, want.logits, atol=1e-5, rtol=0)
    if name == "early_exit":
        assert got.exit_layer is not None and want.exit_layer is not None
        assert got.exit_layer.tolist() == want.exit_layer.tolist()
