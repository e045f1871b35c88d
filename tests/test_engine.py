"""End-to-end distillation on real tiny data with the real offline backbone."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from kdsearch.distill.context import prepare_context
from kdsearch.distill.errors import ConfigError, ModelError
from kdsearch.distill.metric_registry import computed_names
from kdsearch.distill.metrics import accuracy, softmax
from kdsearch.distill.run import run_distillation
from kdsearch.distill.teacher import prepare_teacher
from kdsearch.distill.train import EvalEvent, plan_stages

from .conftest import tiny_config

ALL_METRICS = {*computed_names(), "params", "latency_ms", "speedup_vs_teacher"}


def test_one_stage_run_reports_every_metric(tiny_ctx) -> None:  # type: ignore[no-untyped-def]
    events: list[EvalEvent] = []
    cfg = tiny_config(train={"epochs": 2, "batch_size": 32})
    result = run_distillation(cfg, ctx=tiny_ctx, callback=events.append)
    m = result.metrics
    assert set(m) == ALL_METRICS
    json.dumps(m, allow_nan=False)
    # one evaluation per epoch, handed to the callback in order
    assert [e.epoch for e in events] == [1.0, 2.0]
    assert [e.step for e in events] == [10, 20]  # 320 examples / 32 per batch
    assert [e.final for e in events] == [False, True]
    assert events[-1].metrics == {k: v for k, v in m.items() if k in computed_names()}
    # the metrics agree with the logits they were computed from
    labels = tiny_ctx.eval.labels.numpy()
    assert m["accuracy"] == pytest.approx(accuracy(labels, softmax(result.eval_student_logits)))
    t_acc = accuracy(labels, softmax(tiny_ctx.teacher_outputs.eval_logits.numpy()))
    assert m["teacher_accuracy"] == pytest.approx(t_acc)
    assert 0.0 <= m["agreement"] <= 1.0 and m["kl_teacher_student"] >= 0.0
    assert m["params"] == sum(p.numel() for p in result.student.parameters())
    assert m["params"] < sum(p.numel() for p in tiny_ctx.teacher.model.parameters())
    assert m["latency_ms"] > 0
    assert result.student_info["kept_teacher_layers"] == [3, 6]
    assert result.layer_mapping == [3, 6]


def test_eval_every_n_steps(tiny_ctx) -> None:  # type: ignore[no-untyped-def]
    events: list[EvalEvent] = []
    cfg = tiny_config(train={"epochs": 1, "eval_every_steps": 2})
    run_distillation(cfg, ctx=tiny_ctx, callback=events.append)
    assert [e.step for e in events] == [2, 4, 6, 8, 10]


def test_deterministic_on_cpu(tiny_ctx) -> None:  # type: ignore[no-untyped-def]
    cfg = tiny_config(train={"epochs": 0.5, "seed": 3})
    a = run_distillation(cfg, ctx=tiny_ctx)
    b = run_distillation(cfg, ctx=tiny_ctx)
    assert np.array_equal(a.eval_student_logits, b.eval_student_logits)
    c = run_distillation(tiny_config(train={"epochs": 0.5, "seed": 4}), ctx=tiny_ctx)
    assert not np.array_equal(a.eval_student_logits, c.eval_student_logits)


def test_distillation_moves_student_towards_teacher(tiny_ctx) -> None:  # type: ignore[no-untyped-def]
    """Pure KD (alpha 0) for a few epochs lowers KL(teacher || student) a lot: well under
    the untrained (truncated-teacher) student's."""
    from kdsearch.distill.evaluate import predict_logits
    from kdsearch.distill.metrics import kl_teacher_student
    from kdsearch.distill.student import build_student

    events: list[EvalEvent] = []
    cfg = tiny_config(
        distill={"alpha": 0.0, "temperature": 1.0},
        train={"epochs": 4, "lr": 2e-4, "eval_every_steps": 4},
    )
    untrained, _ = build_student(
        cfg.student, tiny_ctx.teacher, tiny_ctx.splits, cfg.distill.layer_mapping, cfg.train.seed
    )
    logits = predict_logits(untrained, tiny_ctx.eval, 64, tiny_ctx.pad_id, tiny_ctx.device)
    kl_start = kl_teacher_student(tiny_ctx.teacher_outputs.eval_logits.numpy(), logits.numpy())
    run_distillation(cfg, ctx=tiny_ctx, callback=events.append)
    kl = [e.metrics["kl_teacher_student"] for e in events]
    # measured: 0.240 untrained -> 0.111 after 4 epochs (46%); noisy between evaluations
    assert kl[-1] < kl[0] and kl[-1] < 0.6 * kl_start


def test_two_stage_runs_both_stages(tiny_ctx) -> None:  # type: ignore[no-untyped-def]
    cfg = tiny_config(
        distill={"mode": "two_stage"},
        train={"stage1": {"epochs": 2, "lr": 5e-4}, "stage2": {"epochs": 1, "lr": 1e-4}},
    )
    stages = plan_stages(cfg)
    assert [(s.name, s.epochs, s.lr) for s in stages] == [
        ("intermediate", 2, 5e-4),
        ("prediction", 1, 1e-4),
    ]
    events: list[EvalEvent] = []
    result = run_distillation(cfg, ctx=tiny_ctx, callback=events.append)
    assert [(e.stage, e.step, e.final) for e in events] == [
        (1, 10, False),
        (1, 20, False),
        (2, 30, True),
    ]
    # stage 1 learns the intermediate targets: its training loss falls
    assert events[1].train_loss < events[0].train_loss
    assert set(result.metrics) == ALL_METRICS


def test_two_stage_needs_an_intermediate_loss() -> None:
    with pytest.raises(ValueError, match="two_stage' needs an intermediate loss"):
        tiny_config(
            distill={
                "mode": "two_stage",
                "hidden_weight": 0,
                "attention_weight": 0,
                "embedding_weight": 0,
            }
        )


def test_teacher_stays_in_eval_mode_so_intermediate_runs_repeat(tiny_ctx) -> None:  # type: ignore[no-untyped-def]
    """Timing the teacher once switched its dropout on for every later trial (the wrapper's
    train flag was restored onto the whole model), so a study's first trial with an
    intermediate loss differed from the same config later. The teacher stays in eval mode."""
    tiny_ctx._teacher_latency.clear()
    tiny_ctx.teacher_latency_ms(32, 1, 1)
    assert not any(m.training for m in tiny_ctx.teacher.model.modules())
    cfg = tiny_config(
        distill={"hidden_weight": 1.0, "attention_weight": 1.0}, train={"epochs": 0.5}
    )
    a = run_distillation(cfg, ctx=tiny_ctx)
    assert not any(m.training for m in tiny_ctx.teacher.model.modules())
    b = run_distillation(cfg, ctx=tiny_ctx)
    assert np.array_equal(a.eval_student_logits, b.eval_student_logits)


def test_one_stage_with_all_intermediate_losses(tiny_ctx) -> None:  # type: ignore[no-untyped-def]
    cfg = tiny_config(
        distill={
            "hidden_weight": 1.0,
            "attention_weight": 1.0,
            "embedding_weight": 1.0,
            "layer_mapping": "last",
        },
        train={"epochs": 0.5},
    )
    result = run_distillation(cfg, ctx=tiny_ctx)
    assert result.layer_mapping == [5, 6]
    assert math.isfinite(result.history[-1].train_loss)


def test_fresh_student_with_other_width_uses_projection(tiny_ctx) -> None:  # type: ignore[no-untyped-def]
    cfg = tiny_config(
        student={
            "kind": "fresh",
            "num_layers": 2,
            "hidden_size": 128,
            "num_heads": 4,
            "intermediate_size": 256,
        },
        distill={"hidden_weight": 1.0, "attention_weight": 1.0, "embedding_weight": 1.0},
        train={"epochs": 0.5},
    )
    result = run_distillation(cfg, ctx=tiny_ctx)
    assert result.student.hidden_size == 128
    assert result.student_info["num_layers"] == 2
    # a 128-wide, 2-layer BERT is far smaller than the 384-wide teacher
    assert result.metrics["params"] < 0.4 * sum(
        p.numel() for p in tiny_ctx.teacher.model.parameters()
    )


def test_pretrained_student(tiny_ctx, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from kdsearch.distill.checkpoint import save_student

    first = run_distillation(tiny_config(train={"epochs": 0.5}), ctx=tiny_ctx)
    save_student(
        first.student, tiny_ctx.teacher.tokenizer, tmp_path / "s", tiny_ctx.splits.label_names
    )
    cfg = tiny_config(
        student={"kind": "pretrained", "path": str(tmp_path / "s")}, train={"epochs": 0.5}
    )
    second = run_distillation(cfg, ctx=tiny_ctx)
    assert second.student_info["kind"] == "pretrained"
    assert second.student.num_layers == 2


def test_teacher_cache_reuses_the_fine_tuned_teacher(tiny_ctx) -> None:  # type: ignore[no-untyped-def]
    steps: list[int] = []
    cfg = tiny_config()
    again = prepare_teacher(
        cfg.teacher,
        tiny_ctx.splits,
        cfg.data.max_length,
        torch.device("cpu"),
        on_step=lambda s, t, loss: steps.append(s),
    )
    assert steps == []  # loaded, not trained again
    assert again.path == tiny_ctx.teacher.path
    assert again.fingerprint == tiny_ctx.teacher.fingerprint
    for a, b in zip(again.model.parameters(), tiny_ctx.teacher.model.parameters(), strict=True):
        assert torch.equal(a, b)
    # a different recipe is a different teacher
    other = tiny_config(teacher={"recipe": {"epochs": 1, "batch_size": 16, "lr": 1.5e-4}})
    from kdsearch.distill.teacher import finetune_key, resolve_model_location, weights_fingerprint

    fp = weights_fingerprint(resolve_model_location("builtin:minilm-l6", role="teacher"))
    assert (
        finetune_key(fp, tiny_ctx.splits, other.teacher.recipe, 48) != tiny_ctx.teacher.fingerprint
    )


def test_fine_tuned_teacher_beats_majority() -> None:
    """The teacher really learns: above the majority class on held-out data."""
    ctx = prepare_context(tiny_config())
    labels = ctx.eval.labels.numpy()
    majority = max(np.bincount(labels)) / len(labels)
    t_acc = accuracy(labels, softmax(ctx.teacher_outputs.eval_logits.numpy()))
    assert t_acc > majority + 0.05


def test_local_teacher_with_wrong_head_is_refused(tiny_ctx, tmp_path) -> None:  # type: ignore[no-untyped-def]
    three = tiny_ctx.teacher.model.__class__.from_pretrained(
        tiny_ctx.teacher.path, num_labels=3, ignore_mismatched_sizes=True
    )
    three.save_pretrained(tmp_path / "t3")
    tiny_ctx.teacher.tokenizer.save_pretrained(tmp_path / "t3")
    cfg = tiny_config(teacher={"model": str(tmp_path / "t3"), "finetune": False})
    with pytest.raises(ModelError, match="predicts 3 classes but the data has 2"):
        prepare_teacher(cfg.teacher, tiny_ctx.splits, 48, torch.device("cpu"))


def test_missing_teacher_folder_and_hub_offline(tiny_ctx, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    cfg = tiny_config(teacher={"model": "/nonexistent/teacher", "finetune": False})
    with pytest.raises(
        ModelError, match="teacher.model folder /nonexistent/teacher does not exist"
    ):
        prepare_teacher(cfg.teacher, tiny_ctx.splits, 48, torch.device("cpu"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    cfg = tiny_config(teacher={"model": "bert-base-uncased", "finetune": False})
    with pytest.raises(ModelError, match="hub downloads are off"):
        prepare_teacher(cfg.teacher, tiny_ctx.splits, 48, torch.device("cpu"))


def test_cuda_device_without_cuda_is_a_clear_error() -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    from kdsearch.distill.device import resolve_device

    with pytest.raises(ConfigError, match="no CUDA device is visible"):
        resolve_device("cuda:0")
    assert resolve_device("auto").type == "cpu"


def test_pkd_loss_uses_the_intermediate_layers_of_its_mapping(tiny_ctx) -> None:  # type: ignore[no-untyped-def]
    """With pkd_weight alone, the method's loss is beta * PKD over student layers 1..M-1
    against their mapped teacher layers (PKD-Skip: 2, 4), and a short run trains."""
    from kdsearch.distill.batching import train_batches
    from kdsearch.distill.families.base import HIDDEN_STATES
    from kdsearch.distill.losses import pkd_loss
    from kdsearch.distill.mapping import resolve_mapping
    from kdsearch.distill.methods.base import StepInputs
    from kdsearch.distill.methods.kd import KnowledgeDistillation
    from kdsearch.distill.student import build_student

    cfg = tiny_config(
        student={"num_layers": 3},
        distill={"pkd_weight": 2.5, "layer_mapping": "pkd_skip", "alpha": 0.5},
        train={"epochs": 0.5},
    )
    assert cfg.distill.uses_intermediate
    student, _ = build_student(
        cfg.student, tiny_ctx.teacher, tiny_ctx.splits, cfg.distill.layer_mapping, 0
    )
    mapping = resolve_mapping("pkd_skip", 3, tiny_ctx.teacher.num_layers)
    assert mapping == [2, 4, 6]
    method = KnowledgeDistillation(cfg, student, tiny_ctx.teacher, mapping)
    (stage,) = method.stages()
    assert method.student_needs(stage) == {HIDDEN_STATES}
    gen = torch.Generator().manual_seed(0)
    batch = next(iter(train_batches(tiny_ctx.train, 8, tiny_ctx.pad_id, gen, False)))
    s_out = student(batch.input_ids, batch.attention_mask, {HIDDEN_STATES})
    with torch.no_grad():
        t_out = tiny_ctx.teacher.module(batch.input_ids, batch.attention_mask, {HIDDEN_STATES})
    step = StepInputs(batch, s_out, tiny_ctx.teacher_outputs.train_logits[batch.index], t_out)
    expected = 2.5 * pkd_loss(
        [s_out.hidden_states[1][:, 0], s_out.hidden_states[2][:, 0]],
        [t_out.hidden_states[2][:, 0], t_out.hidden_states[4][:, 0]],
    )
    got = method._intermediate_loss(step)
    assert got.item() == pytest.approx(expected.item(), rel=1e-6) and got.item() > 0
    result = run_distillation(cfg, ctx=tiny_ctx)
    assert 0.0 <= result.metrics["accuracy"] <= 1.0
