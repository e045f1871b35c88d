"""Tokenize once, then batch with dynamic padding (each batch padded to its longest row)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from .data import Example


@dataclass
class EncodedSplit:
    """Token ids of one split, unpadded; ``labels[i]`` belongs to ``input_ids[i]``.

    ``labels`` holds class ids (N,), or for multi-label rows a float 0/1 matrix (N, C).
    ``token_type_ids`` (sentence pairs only) marks each token's segment: 0 for the first
    text (with its special tokens), 1 for the second.
    """

    input_ids: list[list[int]]
    labels: torch.Tensor
    token_type_ids: list[list[int]] | None = None

    def __len__(self) -> int:
        return len(self.input_ids)


@dataclass
class Batch:
    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    labels: torch.Tensor
    index: torch.Tensor  # rows of the split, to look up cached teacher outputs
    token_type_ids: torch.Tensor | None = None  # sentence pairs only

    def to(self, device: torch.device) -> Batch:
        types = self.token_type_ids
        return Batch(
            self.input_ids.to(device, non_blocking=True),
            self.attention_mask.to(device, non_blocking=True),
            self.labels.to(device, non_blocking=True),
            self.index,
            types.to(device, non_blocking=True) if types is not None else None,
        )

    def model_inputs(self) -> dict[str, torch.Tensor]:
        inputs = {"input_ids": self.input_ids, "attention_mask": self.attention_mask}
        if self.token_type_ids is not None:
            inputs["token_type_ids"] = self.token_type_ids
        return inputs


# The label of a row that has none (transfer and augmented rows): no hard loss there.
UNLABELLED = -1


def _labels(examples: Sequence[Example] | Sequence[str]) -> torch.Tensor:
    values = [UNLABELLED if isinstance(e, str) else e.label for e in examples]
    if any(isinstance(v, tuple) for v in values):
        width = next(len(v) for v in values if isinstance(v, tuple))
        rows = [list(v) if isinstance(v, tuple) else [UNLABELLED] * width for v in values]
        return torch.tensor(rows, dtype=torch.float32)
    return torch.tensor(values, dtype=torch.long)


def encode(
    tokenizer: Any, examples: Sequence[Example] | Sequence[str], max_length: int
) -> EncodedSplit:
    """Tokenize rows once (truncated, not padded); plain strings are unlabelled rows.

    Pair rows are tokenized as tokenizer pairs (``[CLS] a [SEP] b [SEP]`` for BERT, the
    longer text truncated first) and keep their segment ids.
    """
    texts = [e if isinstance(e, str) else e.text for e in examples]
    if not texts:
        return EncodedSplit(input_ids=[], labels=torch.zeros(0, dtype=torch.long))
    pairs = [None if isinstance(e, str) else e.text_pair for e in examples]
    paired = any(p is not None for p in pairs)
    if paired and any(p is None for p in pairs):
        raise ValueError("a split mixes sentence pairs and single texts")
    enc = tokenizer(
        texts,
        pairs if paired else None,
        truncation=True,
        max_length=max_length,
        padding=False,
        return_attention_mask=False,
        return_token_type_ids=paired,
    )
    input_ids = [list(x) for x in enc["input_ids"]]
    types = None
    if paired:
        types = [list(t) for t in enc["token_type_ids"]] if "token_type_ids" in enc else None
        if types is None or not any(1 in t for t in types):
            types = [_segments(tokenizer, ids) for ids in input_ids]
    return EncodedSplit(input_ids, _labels(examples), types)


def _segments(tokenizer: Any, ids: list[int]) -> list[int]:
    """Segment ids of a pair for a tokenizer that gives none (RoBERTa-style): 0 up to and
    including the first separator run, 1 after it."""
    sep = tokenizer.sep_token_id
    out, segment, seen_sep = [], 0, False
    for token in ids:
        if token == sep:
            seen_sep = True
        elif seen_sep:
            segment = 1
        out.append(segment)
    return out


def concat_splits(splits: Sequence[EncodedSplit]) -> EncodedSplit:
    """One split holding the rows of ``splits`` in order."""
    labels = [s.labels for s in splits]
    if any(x.dim() == 2 for x in labels):  # multi-label: unlabelled rows become -1 rows
        width = next(x.shape[1] for x in labels if x.dim() == 2)
        labels = [
            x if x.dim() == 2 else torch.full((len(x), width), float(UNLABELLED)) for x in labels
        ]
    types = None
    if any(s.token_type_ids is not None for s in splits):
        types = [
            t for s in splits for t in (s.token_type_ids or [[0] * len(x) for x in s.input_ids])
        ]
    return EncodedSplit(
        input_ids=[ids for s in splits for ids in s.input_ids],
        labels=torch.cat(labels),
        token_type_ids=types,
    )


def collate(split: EncodedSplit, rows: Sequence[int], pad_id: int) -> Batch:
    width = max(len(split.input_ids[i]) for i in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    types = torch.zeros((len(rows), width), dtype=torch.long) if split.token_type_ids else None
    for j, i in enumerate(rows):
        seq = split.input_ids[i]
        ids[j, : len(seq)] = torch.tensor(seq, dtype=torch.long)
        mask[j, : len(seq)] = 1
        if types is not None and split.token_type_ids is not None:
            types[j, : len(seq)] = torch.tensor(split.token_type_ids[i], dtype=torch.long)
    index = torch.tensor(list(rows), dtype=torch.long)
    return Batch(ids, mask, split.labels[index], index, types)


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
