"""Tokenize once, then batch with dynamic padding (each batch padded to its longest row)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from .data import Example


@dataclass
class EncodedSplit:
    """Token ids of one split, unpadded; ``labels[i]`` belongs to ``input_ids[i]``."""

    input_ids: list[list[int]]
    labels: torch.Tensor

    def __len__(self) -> int:
        return len(self.input_ids)


@dataclass
class Batch:
    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    labels: torch.Tensor
    index: torch.Tensor  # rows of the split, to look up cached teacher outputs

    def to(self, device: torch.device) -> Batch:
        return Batch(
            self.input_ids.to(device, non_blocking=True),
            self.attention_mask.to(device, non_blocking=True),
            self.labels.to(device, non_blocking=True),
            self.index,
        )

    def model_inputs(self) -> dict[str, torch.Tensor]:
        return {"input_ids": self.input_ids, "attention_mask": self.attention_mask}


# The label of a row that has none (transfer and augmented rows): no hard loss there.
UNLABELLED = -1


def encode(
    tokenizer: Any, examples: Sequence[Example] | Sequence[str], max_length: int
) -> EncodedSplit:
    """Tokenize texts once (truncated, not padded); plain strings are unlabelled rows."""
    texts = [e if isinstance(e, str) else e.text for e in examples]
    if not texts:
        return EncodedSplit(input_ids=[], labels=torch.zeros(0, dtype=torch.long))
    enc = tokenizer(
        texts,
        truncation=True,
        max_length=max_length,
        padding=False,
        return_attention_mask=False,
        return_token_type_ids=False,
    )
    labels = torch.tensor(
        [UNLABELLED if isinstance(e, str) else e.label for e in examples], dtype=torch.long
    )
    return EncodedSplit(input_ids=[list(x) for x in enc["input_ids"]], labels=labels)


def concat_splits(splits: Sequence[EncodedSplit]) -> EncodedSplit:
    """One split holding the rows of ``splits`` in order."""
    return EncodedSplit(
        input_ids=[ids for s in splits for ids in s.input_ids],
        labels=torch.cat([s.labels for s in splits]),
    )


def collate(split: EncodedSplit, rows: Sequence[int], pad_id: int) -> Batch:
    width = max(len(split.input_ids[i]) for i in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for j, i in enumerate(rows):
        seq = split.input_ids[i]
        ids[j, : len(seq)] = torch.tensor(seq, dtype=torch.long)
        mask[j, : len(seq)] = 1
    index = torch.tensor(list(rows), dtype=torch.long)
    return Batch(ids, mask, split.labels[index], index)


def train_batches(
    split: EncodedSplit,
    batch_size: int,
    pad_id: int,
    generator: torch.Generator,
    group_by_length: bool = False,
) -> Iterator[Batch]:
    """One epoch in a seeded random order; the last short batch is kept.

    ``group_by_length``: shuffle, cut into mega-batches of 16 batches, sort each by length,
    then shuffle the batches. Rows of a batch have similar lengths, so dynamic padding
    pads little, while the order stays random at the batch level.
    """
    order = torch.randperm(len(split), generator=generator).tolist()
    if group_by_length:
        mega = 16 * batch_size
        lengths = [len(x) for x in split.input_ids]
        grouped: list[list[int]] = []
        for start in range(0, len(order), mega):
            chunk = sorted(order[start : start + mega], key=lambda i: -lengths[i])
            grouped.extend(chunk[j : j + batch_size] for j in range(0, len(chunk), batch_size))
        perm = torch.randperm(len(grouped), generator=generator).tolist()
        for k in perm:
            yield collate(split, grouped[k], pad_id)
        return
    for start in range(0, len(order), batch_size):
        yield collate(split, order[start : start + batch_size], pad_id)


def eval_batches(split: EncodedSplit, batch_size: int, pad_id: int) -> Iterator[Batch]:
    """Length-sorted batches (little padding); ``Batch.index`` restores the order."""
    order = sorted(range(len(split)), key=lambda i: len(split.input_ids[i]))
    for start in range(0, len(order), batch_size):
        yield collate(split, order[start : start + batch_size], pad_id)


def steps_per_epoch(n: int, batch_size: int) -> int:
    return max(1, -(-n // batch_size))
