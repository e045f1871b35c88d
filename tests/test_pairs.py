"""Sentence-pair tasks: reading pairs, GLUE names, pair tokenisation for every family,
distillation, checkpoints, ONNX and prediction."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from kdsearch.distill.batching import collate, encode
from kdsearch.distill.checkpoint import load_student, save_student
from kdsearch.distill.config import DataConfig
from kdsearch.distill.data import Example, load_dataset
from kdsearch.distill.errors import DataError, ModelError
from kdsearch.distill.example_tasks import pair_rows, write_csv
from kdsearch.distill.families._native import split_pair
from kdsearch.distill.glue import hub_location
from kdsearch.distill.predict import predict
from kdsearch.distill.run import run_distillation
from kdsearch.distill.student import build_student

from .conftest import tiny_config
from .proc_helpers import run_cli

FAMILIES = ["transformer", "bilstm", "textcnn"]
SMALL: dict[str, dict[str, Any]] = {
    "transformer": {},
    "bilstm": {"bilstm": {"embedding_dim": 64, "hidden_size": 32, "fc_size": 32}},
    "textcnn": {"textcnn": {"embedding_dim": 64, "channels": 16, "kernel_sizes": [2, 3]}},
}


def pair_data(path: Path, **extra: object) -> dict[str, object]:
    return {
        "source": f"csv:{path}",
        "text_pair_field": "text_pair",
        "max_train": 160,
        "max_eval": 64,
        "max_test": 64,
        "max_length": 64,
        **extra,
    }


def pair_config(path: Path, family: str = "transformer", **sections: dict[str, object]):  # type: ignore[no-untyped-def]
    return tiny_config(
        data=pair_data(path),
        teacher={"recipe": {"epochs": 1, "lr": 1e-4, "batch_size": 16}},
        student={"family": family, "num_layers": 1, "options": SMALL[family]},
        **sections,
    )


@pytest.fixture(scope="module")
def pair_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_csv(pair_rows(300, seed=1), tmp_path_factory.mktemp("pairs") / "pairs.csv")


@pytest.fixture(scope="module")
def pair_ctx(pair_csv: Path):  # type: ignore[no-untyped-def]
    from kdsearch.distill.context import prepare_context

    return prepare_context(pair_config(pair_csv))


# --------------------------------------------------------------------------- data


def test_pair_rows_keep_their_second_text(tmp_path: Path) -> None:
    csv = tmp_path / "p.csv"
    rows = ["q,a,label"] + [f"first {i},second {i},{i % 2}" for i in range(12)]
    rows.append("lonely,,1")  # no second text: not a usable pair
    csv.write_text("\n".join(rows) + "\n")
    cfg = DataConfig(source=f"csv:{csv}", text_field="q", text_pair_field="a", test_fraction=0)
    splits = load_dataset(cfg)
    every = splits.train + splits.eval
    assert len(every) == 12 and splits.is_pair
    assert all(ex.text_pair == ex.text.replace("first", "second") for ex in every)
    # the second text is part of the content hash (teacher and logits caches key on it)
    single = load_dataset(DataConfig(source=f"csv:{csv}", text_field="q", test_fraction=0))
    assert single.fingerprint() != splits.fingerprint() and not single.is_pair
    jsonl = tmp_path / "p.jsonl"
    jsonl.write_text(
        "\n".join(json.dumps({"q": f"x{i}", "a": f"y{i}", "label": i % 2}) for i in range(8))
    )
    js = load_dataset(DataConfig(source=f"jsonl:{jsonl}", text_field="q", text_pair_field="a"))
    assert {(e.text, e.text_pair) for e in js.train + js.eval + js.test} == {
        (f"x{i}", f"y{i}") for i in range(8)
    }


def test_missing_pair_column_names_the_setting(tmp_path: Path) -> None:
    csv = tmp_path / "p.csv"
    csv.write_text("text,label\na,0\nb,1\n")
    with pytest.raises(DataError, match=r"column 'hypothesis' not found.*set data.text_pair_field"):
        load_dataset(DataConfig(source=f"csv:{csv}", text_pair_field="hypothesis"))


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"text_pair_field": "b"}, "holds single texts; data.text_pair_field needs a csv:"),
        (
            {"source": "csv:x.csv", "text_pair_field": "text"},
            "data.text_pair_field must differ from data.text_field",
        ),
        (
            {"source": "csv:x.csv", "text_pair_field": "b", "transfer": "csv:t.csv"},
            "they do not apply to sentence-pair data",
        ),
        ({"source": "hub:glue/stsb"}, "unknown GLUE task 'hub:glue/stsb': use one of"),
    ],
)
def test_pair_configs_that_cannot_work_are_refused(data: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        DataConfig.model_validate(data)


def test_glue_names_fill_their_columns_and_validation_split() -> None:
    mrpc = DataConfig(source="hub:glue/mrpc")
    assert (mrpc.text_field, mrpc.text_pair_field, mrpc.hub_eval_split) == (
        "sentence1",
        "sentence2",
        "validation",
    )
    mnli = DataConfig(source="hub:glue/mnli")
    assert (mnli.text_pair_field, mnli.hub_eval_split) == ("hypothesis", "validation_matched")
    sst2 = DataConfig(source="hub:glue/sst2")
    assert (sst2.text_field, sst2.text_pair_field) == ("sentence", None)
    mine = DataConfig(source="hub:glue/qnli", text_field="question", hub_eval_split="train")
    assert (mine.text_pair_field, mine.hub_eval_split) == ("sentence", "train")
    again = DataConfig.model_validate(mrpc.model_dump())  # a stored spec reads back the same
    assert again == mrpc
    assert hub_location("glue/rte") == "nyu-mll/glue:rte"
    assert hub_location("nyu-mll/glue:rte") == "nyu-mll/glue:rte"


def test_hub_pair_task_validates_on_its_own_split(monkeypatch: pytest.MonkeyPatch) -> None:
    """The hub reader on real (in-memory) ``datasets`` objects: ClassLabel names kept,
    unlabelled rows (-1) dropped, the validation split used as given."""
    datasets = pytest.importorskip("datasets")
    features = datasets.Features(
        {
            "sentence1": datasets.Value("string"),
            "sentence2": datasets.Value("string"),
            "label": datasets.ClassLabel(names=["not_equivalent", "equivalent"]),
            "idx": datasets.Value("int32"),
        }
    )

    def split(prefix: str, n: int) -> Any:
        return datasets.Dataset.from_dict(
            {
                "sentence1": [f"{prefix} a {i}" for i in range(n)],
                "sentence2": [f"{prefix} b {i}" for i in range(n)],
                "label": [-1 if i == 0 else i % 2 for i in range(n)],
                "idx": list(range(n)),
            },
            features=features,
        )

    asked: list[tuple[str, str | None, str]] = []

    def load_dataset_stub(path: str, name: str | None = None, *, split: str) -> Any:
        asked.append((path, name, split))
        return {"train": split_rows["train"], "validation": split_rows["validation"]}[split]

    split_rows = {"train": split("train", 41), "validation": split("dev", 13)}
    monkeypatch.setattr(datasets, "load_dataset", load_dataset_stub)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    splits = load_dataset(DataConfig(source="hub:glue/mrpc", test_fraction=0.25))
    assert asked == [("nyu-mll/glue", "mrpc", "train"), ("nyu-mll/glue", "mrpc", "validation")]
    assert splits.label_names == ["not_equivalent", "equivalent"]
    assert sorted(e.text for e in splits.eval) == sorted(f"dev a {i}" for i in range(1, 13))
    assert all(e.text_pair == e.text.replace(" a ", " b ") for e in splits.eval)
    trained = {e.text for e in splits.train} | {e.text for e in splits.test}
    assert trained == {f"train a {i}" for i in range(1, 41)} and len(splits.test) == 10


def test_hub_needs_the_network() -> None:
    with pytest.raises(DataError, match="hub datasets need network access; HF_HUB_OFFLINE"):
        load_dataset(DataConfig(source="hub:glue/rte"))


# --------------------------------------------------------------------------- tokens


def test_pair_tokenisation_marks_the_second_segment(pair_ctx) -> None:  # type: ignore[no-untyped-def]
    tok = pair_ctx.teacher.tokenizer
    rows = [Example("a fine film", 1, "it was good"), Example("dull", 0, "a long and dull film")]
    split = encode(tok, rows, max_length=64)
    assert split.token_type_ids is not None
    for ex, ids, types in zip(rows, split.input_ids, split.token_type_ids, strict=True):
        assert ids == tok(ex.text, ex.text_pair)["input_ids"]
        first_sep = ids.index(tok.sep_token_id)
        assert types == [0] * (first_sep + 1) + [1] * (len(ids) - first_sep - 1)
        assert tok.decode(ids[first_sep + 1 : -1]) == ex.text_pair
    batch = collate(split, [0, 1], pair_ctx.pad_id)
    assert batch.token_type_ids is not None and batch.token_type_ids.shape == batch.input_ids.shape
    assert int(batch.token_type_ids[(batch.attention_mask == 0)].sum()) == 0  # padding: type 0
    # a long pair is cut to max_length, the longer text first
    long = encode(tok, [Example("word " * 40, 0, "short one")], max_length=16)
    assert len(long.input_ids[0]) == 16
    assert tok.decode(long.input_ids[0]).endswith("short one [SEP]")


def test_split_pair_left_aligns_the_second_segment() -> None:
    ids = torch.tensor([[101, 5, 6, 102, 7, 8, 102, 0], [101, 9, 102, 3, 102, 0, 0, 0]])
    mask = (ids != 0).long()
    types = torch.tensor([[0, 0, 0, 0, 1, 1, 1, 0], [0, 0, 0, 1, 1, 0, 0, 0]])
    (a_ids, a_mask), (b_ids, b_mask) = split_pair(ids, mask, types)
    assert a_mask.tolist() == [[1, 1, 1, 1, 0, 0, 0, 0], [1, 1, 1, 0, 0, 0, 0, 0]]
    assert torch.equal(a_ids, ids)
    assert b_mask.tolist() == [[1, 1, 1, 0, 0, 0, 0, 0], [1, 1, 0, 0, 0, 0, 0, 0]]
    assert (b_ids * b_mask).tolist() == [[7, 8, 102, 0, 0, 0, 0, 0], [3, 102, 0, 0, 0, 0, 0, 0]]


@pytest.mark.parametrize("family", FAMILIES)
def test_every_family_reads_both_texts(family: str, pair_ctx, pair_csv: Path) -> None:  # type: ignore[no-untyped-def]
    student, _ = build_student(
        pair_config(pair_csv, family).student, pair_ctx.teacher, pair_ctx.splits, "uniform", 0
    )
    student.eval()
    tok = pair_ctx.teacher.tokenizer
    rows = [
        Example("a fine film", 1, "it was good"),
        Example("a fine film", 1, "it was awful and far too long"),
        Example("it was good", 1, "a fine film"),
    ]
    batch = collate(encode(tok, rows, 64), [0, 1, 2], pair_ctx.pad_id)
    with torch.no_grad():
        out = student(batch.input_ids, batch.attention_mask, frozenset(), batch.token_type_ids)
        alone = student(
            batch.input_ids[:1, : int(batch.attention_mask[0].sum())],
            batch.attention_mask[:1, : int(batch.attention_mask[0].sum())],
            frozenset(),
            batch.token_type_ids[:1, : int(batch.attention_mask[0].sum())],
        )
    logits = out.logits
    assert logits.shape == (3, 2)
    assert not torch.allclose(logits[0], logits[1])  # the second text counts
    assert not torch.allclose(logits[0], logits[2])  # and which text is which
    torch.testing.assert_close(alone.logits[0], logits[0], atol=1e-5, rtol=1e-5)  # padding-free
    if family == "transformer":
        with torch.no_grad():
            untyped = student(batch.input_ids, batch.attention_mask).logits
        assert not torch.allclose(untyped, logits)  # the segment ids reach the model
    else:
        assert student.pair
        first = student.classifier if family == "textcnn" else student.fc
        assert (
            first.in_features == 4 * student.encode(batch.input_ids, batch.attention_mask).shape[1]
        )
        with pytest.raises(ModelError, match="reads sentence pairs: give token_type_ids"):
            student(batch.input_ids, batch.attention_mask)


@pytest.mark.parametrize("family", FAMILIES)
def test_pair_student_saves_exports_and_predicts(
    family: str, pair_ctx, pair_csv: Path, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    cfg = pair_config(pair_csv, family, train={"epochs": 1, "batch_size": 32, "lr": 1e-3})
    result = run_distillation(cfg, ctx=pair_ctx)
    assert 0.0 <= result.metrics["accuracy"] <= 1.0
    assert 0.0 <= result.metrics["decision_flip_rate"] <= 1.0
    folder = save_student(
        result.student,
        pair_ctx.teacher.tokenizer,
        tmp_path / family,
        pair_ctx.splits.label_names,
        max_length=64,
        pair=True,
    )
    assert json.loads((folder / "labels.json").read_text())["text_pair"] is True
    loaded, _ = load_student(folder)
    rows = pair_ctx.splits.eval[:20]
    texts, seconds = [e.text for e in rows], [e.text_pair for e in rows]
    by_torch = predict(folder, texts, pairs=seconds)
    by_onnx = predict(folder, texts, pairs=seconds, onnx=True)
    assert [p.label for p in by_torch] == [p.label for p in by_onnx]
    for a, b in zip(by_torch, by_onnx, strict=True):
        assert a.text_pair == b.text_pair and a.text_pair is not None
        np.testing.assert_allclose(list(a.scores.values()), list(b.scores.values()), atol=1e-4)
    # the stored predictions on the validation rows are the run's own
    expected = result.eval_student_logits.argmax(-1)
    order = {(e.text, e.text_pair): i for i, e in enumerate(pair_ctx.splits.eval)}
    names = pair_ctx.splits.label_names
    assert [p.label for p in by_torch] == [
        names[int(expected[order[(t, s)]])] for t, s in zip(texts, seconds, strict=True)
    ]
    with pytest.raises(ModelError, match="is a sentence-pair student: give a second text"):
        predict(folder, texts)
    assert type(loaded).__name__ == type(result.student).__name__


def test_cli_predicts_tab_separated_pairs(pair_ctx, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    student, _ = build_student(
        tiny_config(student={"family": "textcnn", "options": SMALL["textcnn"]}).student,
        pair_ctx.teacher,
        pair_ctx.splits,
        "uniform",
        0,
    )
    folder = save_student(
        student.eval(),
        pair_ctx.teacher.tokenizer,
        tmp_path / "s",
        pair_ctx.splits.label_names,
        max_length=64,
        pair=True,
        onnx=False,
    )
    proc = run_cli("predict", str(folder), "--json", "a fine film\tit was good")
    assert proc.returncode == 0, proc.stderr
    row = json.loads(proc.stdout)
    assert (row["text"], row["text_pair"]) == ("a fine film", "it was good")
    assert set(row["scores"]) == set(pair_ctx.splits.label_names)
    bad = run_cli("predict", str(folder), "a fine film\tit was good", "no tab here")
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert "text 2 has no tab" in bad.stderr
