"""Dynamic padding and length-grouped batches."""

from __future__ import annotations

import random

import torch

from kdsearch.distill.batching import EncodedSplit, collate, eval_batches, train_batches


def _split(n: int = 200, seed: int = 0) -> EncodedSplit:
    rng = random.Random(seed)
    ids = [
        [101] + [rng.randint(1000, 2000) for _ in range(rng.randint(1, 60))] + [102]
        for _ in range(n)
    ]
    return EncodedSplit(ids, torch.tensor([i % 2 for i in range(n)]))


def test_collate_pads_to_the_longest_row() -> None:
    split = EncodedSplit([[1, 2, 3], [4, 5], [6]], torch.tensor([0, 1, 0]))
    b = collate(split, [1, 0], pad_id=0)
    assert b.input_ids.tolist() == [[4, 5, 0], [1, 2, 3]]
    assert b.attention_mask.tolist() == [[1, 1, 0], [1, 1, 1]]
    assert b.labels.tolist() == [1, 0] and b.index.tolist() == [1, 0]


def _padding(batches: list) -> int:  # type: ignore[type-arg]
    return sum(int((b.attention_mask == 0).sum()) for b in batches)


def test_grouped_batches_cover_every_row_once_with_less_padding() -> None:
    split = _split()
    plain = list(train_batches(split, 16, 0, torch.Generator().manual_seed(1)))
    grouped = list(train_batches(split, 16, 0, torch.Generator().manual_seed(1), True))
    for batches in (plain, grouped):
        rows = sorted(i for b in batches for i in b.index.tolist())
        assert rows == list(range(200))
    assert _padding(grouped) < 0.5 * _padding(plain)
    again = list(train_batches(split, 16, 0, torch.Generator().manual_seed(1), True))
    assert [b.index.tolist() for b in again] == [b.index.tolist() for b in grouped]  # seeded


def test_eval_batches_sorted_and_complete() -> None:
    split = _split(50)
    batches = list(eval_batches(split, 8, 0))
    assert sorted(i for b in batches for i in b.index.tolist()) == list(range(50))
    widths = [b.input_ids.shape[1] for b in batches]
    assert widths == sorted(widths)
