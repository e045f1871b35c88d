"""Every student family: build, learn, save/load, ONNX parity; and the registries."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from kdsearch.distill.batching import collate, eval_batches
from kdsearch.distill.checkpoint import load_student, save_student
from kdsearch.distill.errors import ConfigError
from kdsearch.distill.export import run_onnx
from kdsearch.distill.families import available_families, get_family
from kdsearch.distill.losses import prediction_loss
from kdsearch.distill.methods import available_methods
from kdsearch.distill.onnx_runtime import OnnxStudent
from kdsearch.distill.student import build_student

from .conftest import tiny_config

FAMILIES = ["transformer", "bilstm", "textcnn"]
SMALL = {
    "bilstm": {"embedding_dim": 64, "hidden_size": 48, "fc_size": 32},
    "textcnn": {"embedding_dim": 64, "channels": 16, "kernel_sizes": [2, 3]},
}


def _student(family: str, ctx):  # type: ignore[no-untyped-def]
    cfg = tiny_config(
        student={"family": family, "num_layers": 1, "options": {family: SMALL[family]}}
        if family in SMALL
        else {"family": family, "num_layers": 1}
    )
    return build_student(cfg.student, ctx.teacher, ctx.splits, "uniform", seed=0)


def test_registries_list_the_builtin_names() -> None:
    assert available_families() == ["bilstm", "textcnn", "transformer"]
    assert "kd" in available_methods()


@pytest.mark.parametrize(
    ("student", "distill", "match"),
    [
        ({"family": "lstm"}, {}, "unknown student.family 'lstm': use one of bilstm, textcnn"),
        ({}, {"method": "pkd2"}, "unknown distill.method 'pkd2': use one of early_exit, kd"),
        ({"family": "bilstm", "options": {"bilstm": {"layers": 9}}}, {}, "bilstm: layers"),
        ({"options": {"cnn": {}}}, {}, "unknown student.family 'cnn'"),
        ({"family": "textcnn"}, {"hidden_weight": 1.0}, "distill.hidden_weight needs the"),
        ({"family": "bilstm"}, {"mode": "two_stage"}, "bilstm family does not produce"),
    ],
)
def test_bad_family_or_method_is_refused_with_the_known_names(
    student: dict[str, object], distill: dict[str, object], match: str
) -> None:
    with pytest.raises(ValueError, match=match):
        tiny_config(student=student, distill=distill)


def test_get_family_error_lists_names() -> None:
    with pytest.raises(ConfigError, match="bilstm, textcnn, transformer"):
        get_family("gru")


@pytest.mark.parametrize("family", FAMILIES)
def test_build_and_a_few_steps_lower_the_loss(family: str, tiny_ctx) -> None:  # type: ignore[no-untyped-def]
    student, info = _student(family, tiny_ctx)
    assert info["family"] == family and info["params"] == student.count_parameters()
    assert student.count_parameters() < tiny_ctx.teacher.module.count_parameters()
    torch.manual_seed(0)
    batch = collate(tiny_ctx.train, list(range(16)), tiny_ctx.pad_id)
    t_logits = tiny_ctx.teacher_outputs.train_logits[batch.index]
    params = [p for p in student.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=5e-3 if family != "transformer" else 1e-4)
    student.train()
    losses = []
    for _ in range(12):
        out = student(batch.input_ids, batch.attention_mask)
        assert out.logits.shape == (16, 2)
        loss = prediction_loss(
            out.logits,
            t_logits,
            batch.labels,
            soft_loss="kl",
            temperature=2.0,
            alpha=0.5,
            t2_scaling=True,
        )
        loss.backward()
        opt.step()
        opt.zero_grad()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.7 * losses[0], losses


@pytest.mark.parametrize("family", ["bilstm", "textcnn"])
def test_a_row_scores_the_same_alone_or_padded_in_a_batch(family: str, tiny_ctx) -> None:  # type: ignore[no-untyped-def]
    student, _ = _student(family, tiny_ctx)
    student.eval()
    lengths = [len(x) for x in tiny_ctx.eval.input_ids]
    short, long_ = int(np.argmin(lengths)), int(np.argmax(lengths))
    assert lengths[short] < lengths[long_]
    together = collate(tiny_ctx.eval, [short, long_], tiny_ctx.pad_id)
    alone = collate(tiny_ctx.eval, [short], tiny_ctx.pad_id)
    with torch.no_grad():
        a = student(together.input_ids, together.attention_mask).logits[0]
        b = student(alone.input_ids, alone.attention_mask).logits[0]
    assert torch.allclose(a, b, atol=1e-5), (a, b)


def test_embeddings_start_from_the_teacher(tiny_ctx) -> None:  # type: ignore[no-untyped-def]
    table = tiny_ctx.teacher.model.get_input_embeddings().weight.detach()
    same, _ = build_student(
        tiny_config(
            student={"family": "textcnn", "options": {"textcnn": {"embedding_dim": 384}}}
        ).student,
        tiny_ctx.teacher,
        tiny_ctx.splits,
        "uniform",
        seed=0,
    )
    assert torch.equal(same.embedding.weight.detach(), table)
    small, _ = _student("bilstm", tiny_ctx)
    projected = small.embedding.weight.detach()
    assert projected.shape == (table.shape[0], 64)
    # a projection keeps the geometry: neighbours in the teacher stay close
    cos = torch.nn.functional.cosine_similarity
    ids = torch.tensor(tiny_ctx.teacher.tokenizer.convert_tokens_to_ids(["good", "great", "awful"]))
    t, p = table[ids], projected[ids]
    assert cos(t[0], t[1], dim=0) > cos(t[0], t[2], dim=0)
    assert cos(p[0], p[1], dim=0) > cos(p[0], p[2], dim=0)


@pytest.mark.parametrize("family", FAMILIES)
def test_save_load_and_onnx_parity(family: str, tiny_ctx, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    student, _ = _student(family, tiny_ctx)
    student.eval()
    folder = save_student(
        student,
        tiny_ctx.teacher.tokenizer,
        tmp_path / family,
        tiny_ctx.splits.label_names,
        max_length=tiny_ctx.max_length,
    )
    names = {p.name for p in folder.iterdir()}
    assert {"model.safetensors", "model.onnx", "labels.json", "tokenizer.json"} <= names
    assert not any(n.endswith((".bin", ".pt", ".pkl")) for n in names)
    loaded, tokenizer = load_student(folder)
    assert type(loaded) is type(student)
    worst = 0.0
    for batch in eval_batches(tiny_ctx.eval, 32, tiny_ctx.pad_id):
        with torch.no_grad():
            original = student(batch.input_ids, batch.attention_mask).logits.numpy()
            again = loaded(batch.input_ids, batch.attention_mask).logits.numpy()
        np.testing.assert_array_equal(original, again)
        exported = run_onnx(
            folder / "model.onnx", batch.input_ids.numpy(), batch.attention_mask.numpy()
        )
        worst = max(worst, float(np.abs(exported - original).max()))
    assert worst <= 1e-4, worst
    # onnxruntime + tokenizers alone (no torch) reproduce the torch student's labels
    texts = [e.text for e in tiny_ctx.splits.eval[:24]]
    served = OnnxStudent(folder).predict(texts)
    enc = tokenizer(
        texts,
        padding=True,
        truncation=True,
        max_length=tiny_ctx.max_length,
        return_tensors="pt",
        return_token_type_ids=False,
    )
    with torch.no_grad():
        torch_pred = loaded(enc["input_ids"], enc["attention_mask"]).logits.argmax(-1).tolist()
    assert [tiny_ctx.splits.label_names.index(p.label) for p in served] == torch_pred
    assert all(abs(sum(p.scores.values()) - 1.0) < 1e-5 for p in served)
