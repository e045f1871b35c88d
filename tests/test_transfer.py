"""Transfer data and augmentation: no evaluation row leaks in, logits cached and reused."""

from __future__ import annotations

import csv
import random
from pathlib import Path

import pytest
import torch

from kdsearch.distill.batching import UNLABELLED
from kdsearch.distill.config import AugmentConfig, DataConfig
from kdsearch.distill.context import prepare_context
from kdsearch.distill.data import load_dataset
from kdsearch.distill.errors import DataError
from kdsearch.distill.evaluate import predict_logits
from kdsearch.distill.losses import hard_cross_entropy
from kdsearch.distill.run import run_distillation
from kdsearch.distill.soft_labels import outputs_dir
from kdsearch.distill.transfer import (
    augment_copy,
    augment_one,
    dedupe_transfer,
    load_transfer,
    text_key,
)

from .conftest import TINY, tiny_config


def test_dedupe_drops_eval_labelled_and_repeated_texts() -> None:
    kept = dedupe_transfer(
        ["A fine film", "a  FINE film ", "new one", "New one", "train row", "", "another"],
        labelled=["Train row"],
        held_out=["a fine film"],
    )
    assert kept == ["new one", "another"]


def test_builtin_unlabelled_is_the_rest_of_the_corpus() -> None:
    cfg = DataConfig(**{**TINY["data"], "transfer": "builtin:rotten_tomatoes_unlabelled"})  # type: ignore[arg-type]
    splits = load_dataset(cfg)
    train = [e.text for e in splits.train]
    held = [e.text for e in splits.eval]
    transfer = load_transfer(cfg, train, held)
    keys = {text_key(t) for t in transfer}
    assert len(keys) == len(transfer) > 10_000
    assert not keys & {text_key(t) for t in held}
    assert not keys & {text_key(t) for t in train}


def test_csv_transfer_is_deduplicated_and_capped(tmp_path: Path) -> None:
    cfg = DataConfig(**TINY["data"])  # type: ignore[arg-type]
    splits = load_dataset(cfg)
    held = [e.text for e in splits.eval]
    rows = [held[0], "  " + held[1].upper() + " ", *[f"unlabelled post {i}" for i in range(40)]]
    path = tmp_path / "posts.csv"
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["body", "other"])
        w.writerows([[r, "x"] for r in rows])
    base = {**TINY["data"], "transfer": f"csv:{path}", "transfer_text_field": "body"}
    full = load_transfer(DataConfig(**base), [], held)  # type: ignore[arg-type]
    assert full == [f"unlabelled post {i}" for i in range(40)]
    capped = load_transfer(DataConfig(**{**base, "max_transfer": 10}), [], held)  # type: ignore[arg-type]
    again = load_transfer(DataConfig(**{**base, "max_transfer": 10}), [], held)  # type: ignore[arg-type]
    assert capped == again and len(capped) == 10 and set(capped) < set(full)
    with pytest.raises(DataError, match="column 'text' not found"):
        load_transfer(DataConfig(**{**base, "transfer_text_field": None}), [], held)  # type: ignore[arg-type]


def test_bad_transfer_source_is_refused_at_validation() -> None:
    with pytest.raises(ValueError, match="unknown transfer source 'hub:imdb'"):
        DataConfig(transfer="hub:imdb")


def test_augmentation_is_seeded_and_follows_tang() -> None:
    text = "the acting is wonderful but the plot drags in the middle"
    words = text.split()
    masked = augment_one(
        text, random.Random(0), "[MASK]", AugmentConfig(mask_prob=1.0, ngram_prob=0)
    )
    assert masked.split() == ["[MASK]"] * len(words)
    for seed in range(20):
        gram = augment_one(
            text, random.Random(seed), "[MASK]", AugmentConfig(mask_prob=0, ngram_prob=1)
        )
        n = len(gram.split())
        assert 1 <= n <= 5 and gram in {" ".join(words[i : i + n]) for i in range(len(words))}
    aug = AugmentConfig(copies=2, mask_prob=0.3, ngram_prob=0.3, seed=1)
    texts = [f"{text} {i}" for i in range(30)]
    a = augment_copy(texts, 1, "[MASK]", aug, set())
    assert a == augment_copy(texts, 1, "[MASK]", aug, set())
    assert a != augment_copy(texts, 2, "[MASK]", aug, set())
    assert a != augment_copy(texts, 1, "[MASK]", AugmentConfig(seed=2, mask_prob=0.3), set())


def test_augmentation_never_reproduces_an_excluded_text() -> None:
    held = "a film i loved"
    # no masking, no n-grams: every copy equals its source, so all are dropped
    out = augment_copy(
        [held, "Another"],
        1,
        "[MASK]",
        AugmentConfig(mask_prob=0, ngram_prob=0),
        {text_key(held), text_key("another")},
    )
    assert out == []


def test_hard_loss_only_where_a_label_exists() -> None:
    logits = torch.tensor([[2.0, 0.0], [0.0, 3.0], [1.0, 1.0]])
    labels = torch.tensor([0, UNLABELLED, 1])
    expected = torch.nn.functional.cross_entropy(logits[[0, 2]], torch.tensor([0, 1]))
    assert torch.isclose(hard_cross_entropy(logits, labels), expected)
    none = hard_cross_entropy(logits, torch.full((3,), UNLABELLED))
    assert float(none) == 0.0


@pytest.fixture(scope="module")
def transfer_ctx(tiny_ctx, tmp_path_factory):  # type: ignore[no-untyped-def]
    held = [e.text for e in tiny_ctx.splits.eval]
    path = tmp_path_factory.mktemp("transfer") / "posts.jsonl"
    rows = [held[3], *[f"an unlabelled post about film number {i}" for i in range(60)]]
    path.write_text("".join(f'{{"text": "{r}"}}\n' for r in rows))
    cfg = tiny_config(data={"transfer": f"jsonl:{path}", "augment": {"copies": 0}})
    return cfg, prepare_context(cfg)


def test_transfer_logits_are_the_teachers_cached_and_reused(transfer_ctx, tiny_ctx) -> None:  # type: ignore[no-untyped-def]
    cfg, ctx = transfer_ctx
    assert len(ctx.transfer_texts) == 60  # the validation row was dropped
    assert ctx.transfer_logits.shape == (60, 2)
    assert bool((ctx.transfer.labels == UNLABELLED).all())
    fresh = predict_logits(tiny_ctx.teacher.module, ctx.transfer, 32, ctx.pad_id, ctx.device)
    assert torch.allclose(fresh, ctx.transfer_logits, atol=1e-5)
    stamps = {f: f.stat().st_mtime_ns for f in outputs_dir().glob("transfer-*.safetensors")}
    assert stamps
    again = prepare_context(cfg)
    assert torch.equal(again.transfer_logits, ctx.transfer_logits)
    # read back, not recomputed: no file was added or rewritten
    assert {f: f.stat().st_mtime_ns for f in outputs_dir().glob("transfer-*.safetensors")} == stamps


def test_training_rows_add_transfer_and_augmented_copies(transfer_ctx) -> None:  # type: ignore[no-untyped-def]
    _, ctx = transfer_ctx
    base, base_logits = ctx.training_rows(0)
    assert len(base) == len(ctx.train) + 60 == base_logits.shape[0]
    rows, logits = ctx.training_rows(2)
    copies = ctx._augmented[:2]
    assert len(rows) == len(base) + sum(len(c.texts()) for c in copies) == logits.shape[0]
    assert len(copies[0].texts()) > 0.5 * len(base)
    assert len(copies[0].transfer.texts) > 30
    assert torch.equal(rows.labels[: len(ctx.train)], ctx.train.labels)
    assert bool((rows.labels[len(ctx.train) :] == UNLABELLED).all())
    held = {text_key(e.text) for e in ctx.splits.eval}
    made = ctx.transfer_texts + [t for c in copies for t in c.texts()]
    assert not {text_key(t) for t in made} & held
    assert len({text_key(t) for t in made}) == len(made)
    # a trial asking for 1 copy reuses copy 1
    one, _ = ctx.training_rows(1)
    assert len(one) == len(base) + len(copies[0].texts())
    # without transfer: the labelled rows and the copies made from them only
    plain, plain_logits = ctx.training_rows(1, use_transfer=False)
    assert len(plain) == len(ctx.train) + len(copies[0].labelled.texts) == len(plain_logits)


def test_a_run_trains_on_transfer_and_augmented_rows(transfer_ctx) -> None:  # type: ignore[no-untyped-def]
    cfg, ctx = transfer_ctx
    cfg = cfg.model_copy(
        update={"data": cfg.data.model_copy(update={"augment": AugmentConfig(copies=1)})}
    )
    result = run_distillation(cfg, ctx=ctx)
    assert result.n_train_rows == len(ctx.training_rows(1)[0]) > len(ctx.train) + 60
    assert result.summary()["data"]["n_transfer"] == 60
    assert 0.0 <= result.metrics["accuracy"] <= 1.0
