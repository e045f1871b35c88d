"""FastBERT early exits on the real tiny teacher: the exit rule, training, saving, serving."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from kdsearch.distill.attention import SCORES_IMPL
from kdsearch.distill.batching import train_batches
from kdsearch.distill.checkpoint import load_student
from kdsearch.distill.early_exit import EarlyExitModel, normalized_entropy, take_exits
from kdsearch.distill.errors import ModelError
from kdsearch.distill.held_out import score_on_test
from kdsearch.distill.methods.early_exit import EXIT_STAGE, EarlyExit
from kdsearch.distill.onnx_runtime import normalized_entropy as np_entropy
from kdsearch.distill.predict import predict
from kdsearch.distill.run import run_distillation, write_outputs
from kdsearch.distill.student import build_student
from kdsearch.distill.train import EvalEvent, plan_stages

from .conftest import tiny_config
from .proc_helpers import run_cli

TEXTS = [
    "a moving, beautifully acted film",
    "dull, lifeless and far too long",
    "it has its moments",
    "the worst thing i have seen this year, a chore",
]


def test_normalized_entropy_and_the_exit_rule() -> None:
    logits = torch.tensor([[0.0, 0.0], [10.0, -10.0], [1.0, 0.0]])
    h = normalized_entropy(logits)
    p = 1 / (1 + math.exp(-1.0))
    by_hand = -(p * math.log(p) + (1 - p) * math.log(1 - p)) / math.log(2)
    assert h.tolist() == pytest.approx([1.0, 0.0, by_hand], abs=1e-6)
    assert np_entropy(logits.numpy()).tolist() == pytest.approx(h.tolist(), abs=1e-6)
    # three exits, three rows: row 0 is sure at exit 1, row 1 at exit 2, row 2 never
    exits = torch.tensor(
        [
            [[9.0, -9.0], [0.0, 0.0], [0.0, 0.0]],
            [[0.0, 0.0], [-9.0, 9.0], [0.1, 0.0]],
            [[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]],
        ]
    )
    logits, layer = take_exits(exits, 0.1)
    assert layer.tolist() == [1, 2, 3]
    assert logits.tolist() == [[9.0, -9.0], [-9.0, 9.0], [5.0, 6.0]]
    assert take_exits(exits, 0.0)[1].tolist() == [3, 3, 3]  # speed 0: the final layer
    assert take_exits(exits, 1.0)[1].tolist() == [1, 1, 1]  # speed 1: the first exit


def _wrapped(tiny_ctx, layers: int = 3) -> EarlyExitModel:  # type: ignore[no-untyped-def]
    cfg = tiny_config(student={"num_layers": layers})
    student, _ = build_student(
        cfg.student, tiny_ctx.teacher, tiny_ctx.splits, cfg.distill.layer_mapping, 0
    )
    model = EarlyExitModel(student, width=16)  # type: ignore[arg-type]
    model.eval()
    return model


@pytest.mark.parametrize("attention", ["sdpa", SCORES_IMPL])
def test_the_exit_pass_equals_the_backbone_and_the_offline_rule(tiny_ctx, attention: str) -> None:  # type: ignore[no-untyped-def]
    model = _wrapped(tiny_ctx)
    model.set_attention(attention)  # the kd method's attention loss uses the scores kernel
    gen = torch.Generator().manual_seed(0)
    batch = next(iter(train_batches(tiny_ctx.train, 16, tiny_ctx.pad_id, gen, False)))
    ids, mask = batch.input_ids, batch.attention_mask
    with torch.no_grad():
        plain = model.backbone(ids, mask).logits
        every = model.all_exits(ids, mask).exits
        assert every is not None and len(every) == 3
        # the layer-by-layer pass reproduces the Hugging Face forward at the last exit
        torch.testing.assert_close(every[-1], plain, atol=1e-5, rtol=0)
        model.speed = 0.0
        out = model(ids, mask)
        torch.testing.assert_close(out.logits, plain)
        assert out.exit_layer is not None and out.exit_layer.tolist() == [3] * 16
        model.speed = 1.0
        out = model(ids, mask)
        assert out.exit_layer is not None and out.exit_layer.tolist() == [1] * 16
        torch.testing.assert_close(out.logits, every[0], atol=1e-5, rtol=0)
        # a middle speed: the one-pass answer (rows dropped as they leave) equals the rule
        # applied to every exit's logits
        stacked = torch.stack(every)
        speed = float(normalized_entropy(every[0]).median())
        model.speed = speed
        out = model(ids, mask)
        want_logits, want_layer = take_exits(stacked, speed)
        assert out.exit_layer is not None
        assert out.exit_layer.tolist() == want_layer.tolist()
        assert 1 in want_layer.tolist() and len(set(want_layer.tolist())) >= 2
        torch.testing.assert_close(out.logits, want_logits, atol=1e-5, rtol=0)


def test_config_rules() -> None:
    with pytest.raises(ValueError, match="early_exit.*student.family transformer"):
        tiny_config(student={"family": "bilstm"}, distill={"method": "early_exit"})
    with pytest.raises(ValueError, match="at least 2 layers"):
        tiny_config(student={"num_layers": 1}, distill={"method": "early_exit"})
    with pytest.raises(ValueError, match=r"distill.options.early_exit: speed"):
        tiny_config(distill={"method": "early_exit", "options": {"early_exit": {"speed": 2}}})
    cfg = tiny_config(
        distill={"method": "early_exit", "mode": "two_stage"},
        train={"stage1": {"epochs": 1, "lr": 1e-4}, "stage2": {"epochs": 1, "lr": 1e-4}},
    )
    assert [s.name for s in plan_stages(cfg)] == ["intermediate", "prediction", EXIT_STAGE]


@pytest.fixture(scope="module")
def trained(tiny_ctx, tmp_path_factory):  # type: ignore[no-untyped-def]
    """A 3-layer early-exit student, its stage-boundary snapshots and its saved folder."""
    cfg = tiny_config(
        student={"num_layers": 3},
        distill={
            "method": "early_exit",
            "options": {"early_exit": {"speed": 0.4, "epochs": 2, "lr": 2e-3, "width": 32}},
        },
        train={"epochs": 1, "lr": 2e-4},
    )
    snapshots: dict[str, dict[str, torch.Tensor]] = {}
    holder: dict[str, EarlyExitModel] = {}

    def on_eval(event: EvalEvent) -> None:
        if event.stage_name != EXIT_STAGE:
            model = holder["model"]
            snapshots["after_backbone"] = {
                k: v.detach().clone() for k, v in model.state_dict().items()
            }

    original_init = EarlyExit.__init__

    def spy_init(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        original_init(self, *args, **kwargs)
        holder["model"] = self.model
        snapshots["initial"] = {k: v.detach().clone() for k, v in self.model.state_dict().items()}

    EarlyExit.__init__ = spy_init  # type: ignore[method-assign]
    try:
        result = run_distillation(cfg, ctx=tiny_ctx, callback=on_eval)
    finally:
        EarlyExit.__init__ = original_init  # type: ignore[method-assign]
    out = tmp_path_factory.mktemp("early_exit")
    paths = write_outputs(result, cfg, out)
    return cfg, result, snapshots, paths


def test_training_freezes_the_right_part_in_each_stage(trained) -> None:  # type: ignore[no-untyped-def]
    _, result, snapshots, _ = trained
    model = result.student
    assert isinstance(model, EarlyExitModel)
    final = model.state_dict()
    first, mid = snapshots["initial"], snapshots["after_backbone"]
    heads = [k for k in final if k.startswith("exits.")]
    backbone = [k for k in final if k.startswith("backbone.")]
    assert len(heads) == 2 * 4  # two exit heads (layers 1 and 2), two linears each
    # backbone stage: the exits do not move, the backbone does
    assert all(torch.equal(first[k], mid[k]) for k in heads)
    assert any(not torch.equal(first[k], mid[k]) for k in backbone)
    # exit stage: the backbone (final classifier included) does not move, every exit does
    assert all(torch.equal(mid[k], final[k]) for k in backbone)
    assert all(not torch.equal(mid[k], final[k]) for k in heads if k.endswith("weight"))
    stages = [e.stage_name for e in result.history]
    assert stages[0] == "one_stage" and stages[-1] == EXIT_STAGE


def test_metrics_are_judged_at_the_exit_taken(trained, tiny_ctx) -> None:  # type: ignore[no-untyped-def]
    _, result, _, paths = trained
    m = result.metrics
    assert 1.0 <= m["mean_exit_layer"] <= 3.0
    assert m["params"] == result.student.count_parameters() == result.student_info["params"]
    assert result.student_info["early_exit"] == {"layers": 3, "width": 32, "speed": 0.4}
    sweep = {row["speed"]: row for row in result.speed_sweep}
    assert sweep[0.0]["mean_exit_layer"] == 3.0
    assert sweep[1.0]["mean_exit_layer"] == 1.0
    assert sweep[0.4]["trained"] and not sweep[0.0]["trained"]
    # the trained speed's row (offline rule) is the trial's own metrics (one-pass model)
    for key in ("accuracy", "conf_sigma", "agreement", "mean_exit_layer"):
        assert sweep[0.4][key] == pytest.approx(m[key], abs=1e-9), key
    # the evaluation used the exit each row took: with speed 0 the answer is the final
    # layer's, and at 0.4 it differs when rows left early
    eval_logits = result.eval_student_logits
    student = result.student
    student.speed = 0.0
    from kdsearch.distill.evaluate import predict_logits

    final_logits = predict_logits(student, tiny_ctx.eval, 64, tiny_ctx.pad_id, tiny_ctx.device)
    student.speed = 0.4
    if m["mean_exit_layer"] < 3.0:
        assert not np.allclose(eval_logits, final_logits.numpy())
    sweep_png = paths["speed_sweep"]
    assert sweep_png.is_file() and sweep_png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    saved = json.loads(paths["metrics"].read_text())
    assert [r["speed"] for r in saved["speed_sweep"]] == sorted(sweep)


def test_the_checkpoint_keeps_every_exit_and_round_trips(trained, tiny_ctx) -> None:  # type: ignore[no-untyped-def]
    cfg, result, _, paths = trained
    folder = paths["checkpoint"]
    assert (folder / "exits.safetensors").is_file()
    assert sorted(p.name for p in (folder / "exits").iterdir()) == [
        "layer_1.onnx",
        "layer_2.onnx",
        "layer_3.onnx",
    ]
    loaded, _ = load_student(folder)
    assert isinstance(loaded, EarlyExitModel) and loaded.speed == 0.4
    for k, v in result.student.state_dict().items():
        assert torch.equal(loaded.state_dict()[k].cpu(), v.cpu()), k
    # the folder is also a plain Hugging Face model: the final layer's answer (speed 0)
    plain = AutoModelForSequenceClassification.from_pretrained(folder, use_safetensors=True)
    tok = AutoTokenizer.from_pretrained(folder)
    enc = tok(TEXTS, padding=True, return_tensors="pt", return_token_type_ids=False)
    with torch.no_grad():
        want = torch.softmax(plain(**enc).logits, -1).numpy()
    at_zero = predict(folder, TEXTS, speed=0.0)
    assert [p.exit_layer for p in at_zero] == [3] * 4
    got = np.array([list(p.scores.values()) for p in at_zero])
    np.testing.assert_allclose(got, want, atol=1e-5)
    assert [p.exit_layer for p in predict(folder, TEXTS, speed=1.0)] == [1] * 4
    # ONNX (per-layer graphs, numpy runtime) gives the torch answers and exit layers
    for speed in (0.0, 0.3, 0.4, 1.0):
        t = predict(folder, TEXTS, speed=speed)
        o = predict(folder, TEXTS, onnx=True, speed=speed)
        assert [p.exit_layer for p in o] == [p.exit_layer for p in t], speed
        for a, b in zip(t, o, strict=True):
            assert a.label == b.label
            assert list(a.scores.values()) == pytest.approx(list(b.scores.values()), abs=1e-4)
    # the test split is scored at the trained speed, exits included
    metrics, _ = score_on_test(loaded, tiny_ctx, cfg)
    assert 1.0 <= metrics["mean_exit_layer"] <= 3.0


def test_predict_cli_speed_and_its_errors(trained, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    folder = trained[3]["checkpoint"]
    run = run_cli("predict", str(folder), "--json", "--speed", "1", "--onnx", *TEXTS[:2])
    assert run.returncode == 0, run.stderr
    rows = [json.loads(line) for line in run.stdout.splitlines()]
    assert [r["exit_layer"] for r in rows] == [1, 1]
    bad = run_cli("predict", str(folder), "--speed", "1.5", "x")
    assert bad.returncode == 2 and "--speed must be between 0 and 1" in bad.stderr
    assert "Traceback" not in bad.stderr
    with pytest.raises(ModelError, match="no early exits"):
        from kdsearch.distill.early_exit import set_speed

        set_speed(trained[1].student.backbone, 0.5)


def test_a_plain_checkpoint_refuses_a_speed(tiny_ctx, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from kdsearch.distill.checkpoint import save_student

    cfg = tiny_config()
    student, _ = build_student(
        cfg.student, tiny_ctx.teacher, tiny_ctx.splits, cfg.distill.layer_mapping, 0
    )
    folder = save_student(
        student,
        tiny_ctx.teacher.tokenizer,
        tmp_path / "plain",
        tiny_ctx.splits.label_names,
        onnx=False,
    )
    with pytest.raises(ModelError, match="early_exit"):
        predict(folder, TEXTS, speed=0.5)
    assert all(p.exit_layer is None for p in predict(folder, TEXTS))
