"""Multi-label tasks: reading label columns, the per-label losses and metrics on known
tensors, a sigmoid teacher and student, and checkpoints that ``pipeline`` reads."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from kdsearch.distill.config import DataConfig
from kdsearch.distill.data import load_dataset
from kdsearch.distill.errors import DataError
from kdsearch.distill.example_tasks import multilabel_rows, write_csv
from kdsearch.distill.losses import (
    binary_kl_divergence,
    binary_soft_cross_entropy,
    hard_cross_entropy,
    prediction_loss,
)
from kdsearch.distill.metric_registry import confidence_metrics, evaluation, per_label_metrics
from kdsearch.distill.predict import predict
from kdsearch.distill.run import run_distillation, write_outputs

from .conftest import tiny_config

LABELS = ["rotten", "fresh", "plot"]


def logit(p: float) -> float:
    return math.log(p / (1 - p))


def ml_config(path: Path, **sections: dict[str, object]):  # type: ignore[no-untyped-def]
    return tiny_config(
        data={
            "source": f"csv:{path}",
            "label_fields": LABELS,
            "max_train": 200,
            "max_eval": 80,
            "max_test": 60,
            "max_length": 64,
        },
        teacher={"recipe": {"epochs": 2, "lr": 1.5e-4, "batch_size": 16}},
        **sections,
    )


@pytest.fixture(scope="module")
def ml_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_csv(multilabel_rows(400, seed=2), tmp_path_factory.mktemp("ml") / "posts.csv")


@pytest.fixture(scope="module")
def ml_ctx(ml_csv: Path):  # type: ignore[no-untyped-def]
    from kdsearch.distill.context import prepare_context

    return prepare_context(ml_config(ml_csv))


# --------------------------------------------------------------------------- data


def test_label_columns_make_label_vectors(tmp_path: Path) -> None:
    csv = tmp_path / "posts.csv"
    lines = ["text,toxic,insult"] + [f"post {i},{i % 2},{int(i % 3 == 0)}" for i in range(30)]
    csv.write_text("\n".join(lines) + "\n")
    cfg = DataConfig(source=f"csv:{csv}", label_fields=["toxic", "insult"], test_fraction=0.2)
    assert DataConfig.model_validate(cfg.model_dump()) == cfg  # stored specs read back
    splits = load_dataset(cfg)
    assert splits.multi_label and splits.label_names == ["toxic", "insult"]
    every = splits.train + splits.eval + splits.test
    assert len(every) == 30
    for ex in every:
        i = int(ex.text.split()[1])
        assert ex.label == (i % 2, int(i % 3 == 0))
    assert load_dataset(cfg).fingerprint() == splits.fingerprint()  # seeded, repeatable
    # the split is stratified by label set: each of the 4 sets reaches validation
    assert len({ex.label for ex in splits.eval}) == 4


def test_delimited_labels_and_json_lists(tmp_path: Path) -> None:
    csv = tmp_path / "posts.csv"
    csv.write_text(
        "text,tags\n"
        + "".join(
            f"a{i},toxic|insult\nb{i},\nc{i},threat\nd{i}, insult | toxic \n" for i in range(4)
        )
    )
    splits = load_dataset(
        DataConfig(source=f"csv:{csv}", label_field="tags", label_delimiter="|", test_fraction=0)
    )
    assert splits.label_names == ["insult", "threat", "toxic"]  # sorted
    got = {ex.text: ex.label for ex in splits.train + splits.eval}
    assert got["a0"] == got["d0"] == (1, 0, 1)
    assert got["b0"] == (0, 0, 0)  # an empty cell: no label applies
    assert got["c0"] == (0, 1, 0)
    jsonl = tmp_path / "posts.jsonl"
    jsonl.write_text(
        "\n".join(
            json.dumps({"text": f"t{i}", "labels": [["spam"], [], ["spam", "ad"]][i % 3]})
            for i in range(12)
        )
    )
    js = load_dataset(
        DataConfig(source=f"jsonl:{jsonl}", label_field="labels", label_delimiter=",")
    )
    assert js.label_names == ["ad", "spam"]
    assert {ex.label for ex in js.train + js.eval + js.test} == {(0, 1), (0, 0), (1, 1)}


@pytest.mark.parametrize(
    ("content", "fields", "message"),
    [
        ("text,a,b\nx,1,2\ny,0,1\n", ["a", "b"], "label column 'b' in .* holds '2': each"),
        ("text,a,b\nx,1,0\ny,0,0\nz,1,0\n", ["a", "b"], "'b' never applies"),
        ("text,a,b\nx,1,0\ny,1,1\nz,1,0\n", ["a", "b"], "labels 'a' apply to every example"),
        ("text,a\nx,1\n", ["a", "b"], "column 'b' not found .* set data.label_fields"),
    ],
)
def test_bad_label_columns_are_named(
    tmp_path: Path, content: str, fields: list[str], message: str
) -> None:
    csv = tmp_path / "d.csv"
    csv.write_text(content)
    with pytest.raises(DataError, match=message):
        load_dataset(DataConfig(source=f"csv:{csv}", label_fields=fields))


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"label_fields": ["a"], "label_delimiter": "|"}, "set one of them"),
        ({"label_fields": ["a"], "label_field": "y"}, "remove data.label_field"),
        ({"label_fields": ["a", "a"]}, "repeats a column"),
        ({"source": "builtin:rotten_tomatoes", "label_fields": ["a"]}, "single-label data"),
    ],
)
def test_contradictory_multilabel_configs_are_refused(
    data: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        DataConfig.model_validate({"source": "csv:d.csv", **data})


def test_early_exit_is_refused_for_multilabel(ml_csv: Path) -> None:
    with pytest.raises(ValueError, match="multi-label data .* has no such uncertainty"):
        ml_config(ml_csv, distill={"method": "early_exit"})


# --------------------------------------------------------------------------- losses


def test_binary_soft_losses_on_known_tensors() -> None:
    teacher = torch.tensor([[math.log(3.0), math.log(3.0)]])  # p_teacher = 0.75 twice
    student = torch.zeros(1, 2)  # p_student = 0.5 twice
    # per label: -(0.75 ln 0.5 + 0.25 ln 0.5) = ln 2; summed over the 2 labels
    ce = binary_soft_cross_entropy(student, teacher, 1.0, True)
    assert ce.item() == pytest.approx(2 * math.log(2), abs=1e-6)
    # KL = 0.75 ln(0.75/0.5) + 0.25 ln(0.25/0.5) = 0.1308121 per label
    kl = binary_kl_divergence(student, teacher, 1.0, True)
    assert kl.item() == pytest.approx(2 * 0.1308121, abs=1e-6)
    entropy = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))
    assert ce.item() - kl.item() == pytest.approx(2 * entropy, abs=1e-6)
    # at T = 2 the teacher logit 2 ln 3 softens to p = 0.75; T^2 scales the loss by 4
    hot = binary_soft_cross_entropy(student, 2 * teacher, 2.0, True)
    assert hot.item() == pytest.approx(4 * 2 * math.log(2), abs=1e-5)
    assert binary_kl_divergence(teacher, teacher, 3.0, True).item() == pytest.approx(0, abs=1e-7)


def test_hard_loss_skips_unlabelled_rows_and_dispatches_on_label_shape() -> None:
    logits = torch.tensor([[0.0, 0.0], [5.0, -5.0]])
    labels = torch.tensor([[1.0, 0.0], [-1.0, -1.0]])  # the second row is a transfer row
    assert hard_cross_entropy(logits, labels).item() == pytest.approx(2 * math.log(2), abs=1e-6)
    teacher = torch.tensor([[math.log(3.0), math.log(3.0)], [0.0, 0.0]])
    mixed = prediction_loss(
        logits, teacher, labels, soft_loss="soft_ce", temperature=1.0, alpha=0.5, t2_scaling=True
    )
    soft = binary_soft_cross_entropy(logits, teacher, 1.0, True)
    assert mixed.item() == pytest.approx(0.5 * soft.item() + 0.5 * 2 * math.log(2), abs=1e-6)
    # the same logits with class ids take the softmax losses
    single = prediction_loss(
        logits,
        teacher,
        torch.tensor([0, 1]),
        soft_loss="soft_ce",
        temperature=1.0,
        alpha=1.0,
        t2_scaling=True,
    )
    expected = (math.log(2) + -torch.log_softmax(torch.tensor([5.0, -5.0]), 0)[1].item()) / 2
    assert single.item() == pytest.approx(expected, abs=1e-5)


# --------------------------------------------------------------------------- metrics


def _hand_case() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    y = np.array([[1, 0], [1, 1], [0, 0], [0, 1]])
    pt = [[0.9, 0.2], [0.8, 0.7], [0.3, 0.1], [0.4, 0.6]]
    ps = [[0.7, 0.4], [0.6, 0.4], [0.2, 0.3], [0.55, 0.6]]
    to_logits = np.vectorize(logit)
    return to_logits(np.array(pt)), to_logits(np.array(ps)), y


def test_multilabel_metrics_by_their_registered_names() -> None:
    """Hand-computed (docs/metrics.md walks through the same numbers)."""
    tl, sl, y = _hand_case()
    m = confidence_metrics(tl, sl, y, decision_class=1, decision_thresholds=(0.6, 0.9))
    # student predictions [[1,0],[1,0],[0,0],[1,1]]: rows 0 and 2 exactly right
    assert m["accuracy"] == pytest.approx(0.5)
    assert m["teacher_accuracy"] == pytest.approx(1.0)
    # label 0: tp 2, fp 1, fn 0 -> 0.8; label 1: tp 1, fp 0, fn 1 -> 2/3
    assert m["f1_macro"] == pytest.approx((0.8 + 2 / 3) / 2)
    # sigma, label 0: diffs 0.2, 0.2, 0.1 (rows 0-2) -> 0.0471405
    #        label 1: diffs -0.2, -0.2, 0.0 (rows 0, 2, 3) -> 0.0942809
    assert m["conf_sigma"] == pytest.approx((0.0471405 + 0.0942809) / 2, abs=1e-6)
    assert m["conf_sigma_defined"] is True and m["n_both_correct"] == 6
    assert m["agreement"] == pytest.approx(0.75)
    # label 1's bands at 0.6/0.9: teacher [0, 1, 0, 1], student [0, 0, 0, 1]
    assert m["decision_flip_rate"] == pytest.approx(0.25)
    assert m["conf_mae"] == pytest.approx((0.1625 + 0.175) / 2)
    assert m["kl_teacher_student"] > 0 and m["ece_student"] is not None
    per = per_label_metrics(evaluation(tl, sl, y, decision_class=1), ["toxic", "insult"])
    assert per["toxic"]["conf_sigma"] == pytest.approx(0.0471405, abs=1e-6)
    assert per["insult"]["conf_sigma"] == pytest.approx(0.0942809, abs=1e-6)
    assert per["toxic"]["f1_macro"] == pytest.approx(0.8)


def test_decision_class_must_exist_among_the_labels() -> None:
    tl, sl, y = _hand_case()
    with pytest.raises(ValueError, match="decision_class is 2 but the data has 2 labels"):
        confidence_metrics(tl, sl, y, decision_class=2)


# --------------------------------------------------------------------------- end to end


def test_sigmoid_teacher_and_student_checkpoint_that_pipeline_reads(
    ml_ctx, ml_csv: Path, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    teacher = ml_ctx.teacher.model
    assert teacher.config.problem_type == "multi_label_classification"
    assert ml_ctx.teacher_outputs.eval_logits.shape == (len(ml_ctx.splits.eval), 3)
    assert ml_ctx.eval.labels.shape == (len(ml_ctx.splits.eval), 3)
    cfg = ml_config(ml_csv, train={"epochs": 2, "batch_size": 16, "lr": 2e-4})
    result = run_distillation(cfg, ctx=ml_ctx)
    m = result.metrics
    # the fine-tuned teacher learnt the review labels (F1 of its own predictions)
    t_logits = ml_ctx.teacher_outputs.eval_logits.numpy()
    own = per_label_metrics(evaluation(t_logits, t_logits, ml_ctx.eval.labels.numpy()), LABELS)
    assert own["rotten"]["f1_macro"] > 0.6 and own["fresh"]["f1_macro"] > 0.6
    assert result.per_label is not None and set(result.per_label) == set(LABELS)
    assert min(v["agreement"] for v in result.per_label.values()) > 0.8
    assert m["conf_sigma"] == pytest.approx(
        np.mean([v["conf_sigma"] for v in result.per_label.values() if v["conf_sigma"] is not None])
    )
    paths = write_outputs(result, cfg, tmp_path / "run")
    folder = paths["checkpoint"]
    config = json.loads((folder / "config.json").read_text())
    assert config["problem_type"] == "multi_label_classification"
    assert json.loads((folder / "labels.json").read_text())["multi_label"] is True
    assert "per_label" in json.loads(paths["metrics"].read_text())
    assert (tmp_path / "run" / "plots" / "reliability.png").stat().st_size > 1000

    from transformers import pipeline

    texts = [e.text for e in ml_ctx.splits.eval[:6]]
    clf = pipeline("text-classification", model=str(folder), top_k=None, device="cpu")
    by_pipeline = clf(texts, truncation=True, max_length=64)  # as the student was trained
    ours = predict(folder, texts)
    served = predict(folder, texts, onnx=True)
    for rows, mine, onnx in zip(by_pipeline, ours, served, strict=True):
        scores = {r["label"]: r["score"] for r in rows}
        assert set(scores) == set(LABELS)
        for name in LABELS:  # a sigmoid per label, the same in pipeline, torch and ONNX
            assert scores[name] == pytest.approx(mine.scores[name], abs=1e-5)
            assert onnx.scores[name] == pytest.approx(mine.scores[name], abs=1e-4)
        assert mine.labels == [n for n in LABELS if mine.scores[n] >= 0.5]
    assert any(abs(sum(p.scores.values()) - 1.0) > 0.05 for p in ours)  # not a softmax


@pytest.mark.parametrize("family", ["bilstm", "textcnn"])
def test_native_students_learn_multilabel(family: str, ml_ctx, ml_csv: Path) -> None:  # type: ignore[no-untyped-def]
    options = {"embedding_dim": 64, "hidden_size": 32, "fc_size": 32}
    if family == "textcnn":
        options = {"embedding_dim": 64, "channels": 16, "kernel_sizes": [2, 3]}
    cfg = ml_config(
        ml_csv,
        student={"family": family, "options": {family: options}},
        train={"epochs": 3, "batch_size": 16, "lr": 3e-3},
        distill={"soft_loss": "kl", "temperature": 2.0, "alpha": 0.3},
    )
    result = run_distillation(cfg, ctx=ml_ctx)
    history = result.history
    assert result.eval_student_logits.shape == (len(ml_ctx.splits.eval), 3)
    assert history[-1].metrics["agreement"] >= history[0].metrics["agreement"] - 0.05
    assert result.metrics["agreement"] > 0.6


def test_a_study_that_could_draw_early_exits_on_multilabel_data_is_refused(ml_csv: Path) -> None:
    from kdsearch.search.spec import StudySpec

    with pytest.raises(ValueError, match="method 'early_exit' cannot run with student family "):
        StudySpec.model_validate(
            {
                "data": {"source": f"csv:{ml_csv}", "label_fields": LABELS},
                "search_space": {"method": {"choices": ["kd", "early_exit"]}},
                "n_trials": 2,
            }
        )
