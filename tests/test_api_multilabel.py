"""A REST study on a multi-label CSV: it completes, scores every trial per label, and its
best student downloads as a checkpoint that ``transformers.pipeline`` reads with one
sigmoid score per label."""

from __future__ import annotations

import json
import math
import tarfile
from collections.abc import Iterator

import pytest

from kdsearch.distill.example_tasks import KINDS, multilabel_rows, write_csv

from .search_helpers import tiny_spec
from .test_api import Server, alice_server


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    yield from alice_server(tmp_path_factory.mktemp("api_multilabel"))


def test_multilabel_study_checkpoint_gives_per_label_scores(server: Server) -> None:
    from kdsearch.search.runner import run_study

    posts = write_csv(multilabel_rows(300, seed=3), server.root / "posts.csv")
    spec = tiny_spec(
        n_trials=2,
        data={
            "source": f"csv:{posts}",
            "label_fields": list(KINDS),
            "max_train": 200,
            "max_eval": 80,
            "max_test": 60,
            "max_length": 64,
        },
        teacher={"recipe": {"epochs": 2, "lr": 1.5e-4, "batch_size": 16}},
        metrics={"latency_repeats": 1, "decision_class": 2, "decision_thresholds": [0.6, 0.9]},
        objectives=[{"metric": "accuracy"}, {"metric": "decision_flip_rate"}],
    ).model_dump(mode="json")
    with server.client() as c:
        r = c.post("/v1/studies", json=spec)
        assert r.status_code == 201, r.text
        sid = r.json()["id"]
        run_study(tiny_spec(**spec), server.database_url, str(server.artifact_dir), study_name=sid)
        study = c.get(f"/v1/studies/{sid}").json()
        assert study["status"] == "completed" and study["trials"]["COMPLETE"] == 2, study
        board = c.get(f"/v1/studies/{sid}/trials").json()["items"]
        for row in board:
            m = row["metrics"]
            assert 0.0 <= m["accuracy"] <= 1.0 and 0.0 <= m["decision_flip_rate"] <= 1.0
            assert row["values"] == [m["accuracy"], m["decision_flip_rate"]]
            detail = c.get(f"/v1/studies/{sid}/trials/{row['number']}").json()
            per = detail["per_label"]
            assert set(per) == set(KINDS)  # each label's own numbers, kept
            sigmas = [v["conf_sigma"] for v in per.values() if v["conf_sigma"] is not None]
            assert m["conf_sigma"] == pytest.approx(sum(sigmas) / len(sigmas))
            f1s = [v["f1_macro"] for v in per.values() if v["f1_macro"] is not None]
            assert m["f1_macro"] == pytest.approx(sum(f1s) / len(f1s))
        # the trials scored on the test rows carry bootstrap intervals around their numbers
        scored = [row for row in board if row["test"]]
        assert scored, board
        for row in scored:
            for name in ("accuracy", "conf_sigma"):
                ci = row["intervals"][name]
                assert ci["low"] <= row["test"][name] <= ci["high"], (name, row)
        ck = c.get(f"/v1/studies/{sid}/checkpoint")
        assert ck.status_code == 200, ck.text
    archive = server.root / f"{sid}.tar.gz"
    archive.write_bytes(ck.content)
    folder = server.root / "unpacked"
    with tarfile.open(archive) as tar:
        tar.extractall(folder, filter="data")
    checkpoint = folder / "checkpoint"
    config = json.loads((checkpoint / "config.json").read_text())
    assert config["problem_type"] == "multi_label_classification"
    assert sorted(config["id2label"].values()) == sorted(KINDS)

    from transformers import AutoModelForSequenceClassification, AutoTokenizer, pipeline

    texts = ["A tedious, overlong mess.", "In 1920s Paris, a young painter meets a stranger."]
    clf = pipeline("text-classification", model=str(checkpoint), top_k=None, device="cpu")
    rows = clf(texts)
    model = AutoModelForSequenceClassification.from_pretrained(checkpoint)
    tok = AutoTokenizer.from_pretrained(checkpoint)
    logits = model(**tok(texts, padding=True, return_tensors="pt")).logits.detach()
    for scores, row_logits in zip(rows, logits, strict=True):
        by_label = {s["label"]: s["score"] for s in scores}
        assert set(by_label) == set(KINDS)
        for i, name in config["id2label"].items():  # each label's own sigmoid
            sigmoid = 1 / (1 + math.exp(-float(row_logits[int(i)])))
            assert by_label[name] == pytest.approx(sigmoid, abs=1e-5)
