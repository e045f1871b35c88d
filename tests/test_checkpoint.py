"""The student checkpoint is a Hugging Face folder that reproduces the reported accuracy."""

from __future__ import annotations

import json

import numpy as np
import pytest
from transformers import AutoModelForSequenceClassification, pipeline

from kdsearch.distill.checkpoint import load_student
from kdsearch.distill.errors import ModelError
from kdsearch.distill.run import run_distillation, write_outputs

from .conftest import tiny_config


@pytest.fixture(scope="module")
def written(tiny_ctx, tmp_path_factory):  # type: ignore[no-untyped-def]
    cfg = tiny_config(train={"epochs": 2})
    result = run_distillation(cfg, ctx=tiny_ctx)
    out = tmp_path_factory.mktemp("run")
    paths = write_outputs(result, cfg, out)
    return result, out, paths


def test_folder_layout(written) -> None:  # type: ignore[no-untyped-def]
    result, out, paths = written
    ckpt = out / "checkpoint"
    names = {p.name for p in ckpt.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"} <= names
    assert not any(n.endswith((".bin", ".pt", ".pkl")) for n in names)  # safetensors only
    config = json.loads((ckpt / "config.json").read_text())
    assert config["id2label"] == {"0": "rotten", "1": "fresh"}
    assert config["label2id"] == {"rotten": 0, "fresh": 1}
    assert config["num_hidden_layers"] == 2
    summary = json.loads((out / "metrics.json").read_text())
    assert summary["metrics"] == result.metrics
    assert summary["layer_mapping"] == [3, 6]
    for plot in ("reliability", "confidence_scatter"):
        assert paths[plot].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_from_pretrained_reproduces_reported_accuracy(written, tiny_ctx) -> None:  # type: ignore[no-untyped-def]
    import torch

    result, out, _ = written
    model = AutoModelForSequenceClassification.from_pretrained(out / "checkpoint").eval()
    correct = 0
    with torch.no_grad():
        for ids, label in zip(tiny_ctx.eval.input_ids, tiny_ctx.eval.labels.tolist(), strict=True):
            logits = model(input_ids=torch.tensor([ids])).logits
            correct += int(logits.argmax(-1).item() == label)
    assert correct / len(tiny_ctx.eval) == pytest.approx(result.metrics["accuracy"])


def test_pipeline_reproduces_reported_accuracy(written, tiny_ctx) -> None:  # type: ignore[no-untyped-def]
    result, out, _ = written
    clf = pipeline("text-classification", model=str(out / "checkpoint"), device="cpu")
    texts = [e.text for e in tiny_ctx.splits.eval]
    preds = clf(texts, truncation=True, max_length=tiny_ctx.max_length, batch_size=16)
    names = tiny_ctx.splits.label_names
    predicted = np.array([names.index(p["label"]) for p in preds])
    labels = np.array([e.label for e in tiny_ctx.splits.eval])
    assert float((predicted == labels).mean()) == pytest.approx(result.metrics["accuracy"])
    assert {p["label"] for p in preds} <= {"rotten", "fresh"}


def test_load_student_round_trip(written) -> None:  # type: ignore[no-untyped-def]
    result, out, _ = written
    model, tokenizer = load_student(out / "checkpoint")
    for a, b in zip(model.state_dict().values(), result.student.state_dict().values(), strict=True):
        assert (a == b).all()
    assert tokenizer("a fine film")["input_ids"][0] == tokenizer.cls_token_id


def test_load_student_refuses_folder_without_safetensors(tmp_path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "pytorch_model.bin").write_bytes(b"not loaded")
    with pytest.raises(ModelError, match="no model.safetensors"):
        load_student(tmp_path)
