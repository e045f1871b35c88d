"""Datasets: read labelled texts from a builtin corpus, a CSV/JSONL file or the hub, and split them.

Every source ends up as texts with integer label ids ``0..C-1`` and a list of label names.
The split into train and validation is stratified by label and fully determined by
``DataConfig`` (seed included), and :meth:`DatasetSplits.fingerprint` hashes the exact
content so fine-tuned teachers and teacher outputs can be cached by it. The readers for
each source live in ``distill._sources`` (builtin corpora, hub) and ``distill._files``
(CSV/JSONL); their public names are re-exported here.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
from collections import Counter, defaultdict
from dataclasses import dataclass, field

from ._files import read_labeled_file
from ._sources import (
    BUILTIN_SOURCES,
    ROTTEN_TOMATOES_LABELS,
    VADER_LABELS,
    encode_labels,
    load_source,
)
from .config import DataConfig
from .errors import DataError
from .transfer import text_key

__all__ = [
    "BUILTIN_SOURCES",
    "ROTTEN_TOMATOES_LABELS",
    "VADER_LABELS",
    "DatasetSplits",
    "Example",
    "encode_labels",
    "load_dataset",
    "read_labeled_file",
]

_FINGERPRINT_VERSION = "kdsearch-data-v1"


@dataclass(frozen=True)
class Example:
    text: str
    label: int


@dataclass
class DatasetSplits:
    """Train, validation and (held-out) test splits with shared label ids ``0..C-1``.

    ``test`` is empty when ``data.test_fraction`` is 0.
    """

    train: list[Example]
    eval: list[Example]
    label_names: list[str]
    source: str
    test: list[Example] = field(default_factory=list)

    @property
    def num_labels(self) -> int:
        return len(self.label_names)

    @property
    def id2label(self) -> dict[int, str]:
        return dict(enumerate(self.label_names))

    @property
    def label2id(self) -> dict[str, int]:
        return {name: i for i, name in enumerate(self.label_names)}

    def fingerprint(self) -> str:
        """sha256 hex of the exact content: source, label names, every example in order.

        The test split counts only when there is one, so splits made without it keep their
        fingerprint (and the teachers and teacher outputs cached under it).
        """
        h = hashlib.sha256()
        h.update(_FINGERPRINT_VERSION.encode() + b"\n")
        h.update(json.dumps([self.source, self.label_names], ensure_ascii=False).encode() + b"\n")
        parts = [("train", self.train), ("eval", self.eval)]
        if self.test:
            parts.append(("test", self.test))
        for split_name, split in parts:
            h.update(json.dumps([split_name, len(split)]).encode() + b"\n")
            for ex in split:
                # One JSON array per line: newlines inside texts are escaped, so it is unambiguous.
                h.update(json.dumps([ex.text, ex.label], ensure_ascii=False).encode() + b"\n")
        return h.hexdigest()


# --------------------------------------------------------------------------- splitting


def _cap(groups: dict[int, list[int]], cap: int | None) -> dict[int, list[int]]:
    """Keep at most ``cap`` items, each class in proportion (largest-remainder rounding).

    The lists are already shuffled, so taking their heads is a seeded random subsample.
    """
    total = sum(len(v) for v in groups.values())
    if cap is None or total <= cap:
        return groups
    quotas = {c: cap * len(v) / total for c, v in groups.items()}
    take = {c: math.floor(q) for c, q in quotas.items()}
    left = cap - sum(take.values())
    by_remainder = sorted(groups, key=lambda c: (-(quotas[c] - take[c]), -len(groups[c]), c))
    for c in by_remainder[:left]:
        take[c] += 1
    return {c: v[: take[c]] for c, v in groups.items()}


def _test_count(n: int, fraction: float) -> int:
    """Test rows of a class of ``n``: ``round(fraction * n)``, at least 1 when the fraction
    is above 0 and the class has 3 or more, always leaving 2 for training and validation."""
    if fraction <= 0 or n < 3:
        return 0
    return min(max(round(fraction * n), 1), n - 2)


def _split(ids: list[int], cfg: DataConfig) -> tuple[list[int], list[int], list[int]]:
    """Stratified, seeded split of row indices into (train, eval, test), capped, shuffled.

    Per class, the test rows are carved first (the tail of the shuffled class), then the
    rest is split into train and validation exactly as it would be without a test split.
    """
    rng = random.Random(cfg.seed)
    by_class: dict[int, list[int]] = defaultdict(list)
    for i, y in enumerate(ids):
        by_class[y].append(i)
    train_by: dict[int, list[int]] = {}
    eval_by: dict[int, list[int]] = {}
    test_by: dict[int, list[int]] = {}
    for c in sorted(by_class):
        rows = by_class[c]
        rng.shuffle(rows)
        t = _test_count(len(rows), cfg.test_fraction)
        test_by[c] = rows[len(rows) - t :]
        rows = rows[: len(rows) - t]
        n = len(rows)
        k = round(cfg.eval_fraction * n)
        # At least one validation example per class, and at least one left for training.
        k = min(max(k, 1), n - 1) if n >= 2 else min(k, n)
        eval_by[c] = rows[:k]
        train_by[c] = rows[k:]
    train_by = _cap(train_by, cfg.max_train)
    eval_by = _cap(eval_by, cfg.max_eval)
    test_by = _cap(test_by, cfg.max_test)
    train = [i for c in sorted(train_by) for i in train_by[c]]
    evals = [i for c in sorted(eval_by) for i in eval_by[c]]
    test = [i for c in sorted(test_by) for i in test_by[c]]
    rng.shuffle(train)
    rng.shuffle(evals)
    rng.shuffle(test)
    return train, evals, test


def _unseen(
    test_idx: list[int], seen_idx: list[int], texts: list[str], ids: list[int]
) -> list[Example]:
    """The test rows whose text (whitespace and case aside) is in no train or validation row
    and not repeated in the test split: corpora repeat texts, and a test row that is also
    trained on is not held out."""
    seen = {text_key(texts[i]) for i in seen_idx}
    out = []
    for i in test_idx:
        key = text_key(texts[i])
        if key not in seen:
            seen.add(key)
            out.append(Example(texts[i], ids[i]))
    return out


def load_dataset(cfg: DataConfig) -> DatasetSplits:
    """Load ``cfg.source`` and split it into stratified, seeded train/validation/test sets.

    Label ids: ``builtin:rotten_tomatoes`` → ``["rotten", "fresh"]`` (id 0 = rotten, the
    negative class first); ``builtin:vader_tweets`` → ``["negative", "positive"]``;
    ``csv:``/``jsonl:`` → the label values sorted (numerically when all are integers,
    otherwise lexicographically), kept as strings; ``hub:`` → the ClassLabel names when the
    label column has them.

    Per class, ``round(test_fraction * n)`` shuffled examples are held out as the test split
    first (at least 1 when the fraction is above 0 and the class has 3 or more); of the
    rest, ``round(eval_fraction * m)`` (at least 1 when 2 or more are left) go to
    validation; then ``max_train``/``max_eval``/``max_test`` cap the splits keeping class
    proportions. A test row whose text equals a train or validation row (whitespace and case
    aside) is dropped from the test split. With ``test_fraction: 0`` train and validation
    are what they were before the test split existed. The same config always gives the
    same splits, in the same order.

    Raises DataError (missing file/column, no usable rows, a single class, validation labels
    with no training examples, malformed or non-UTF-8 files, hub without network).
    """
    texts, ids, names, where = load_source(cfg)
    if not texts:
        raise DataError(
            f"no usable examples in {where} (every row was empty or filtered out); "
            "check data.source, data.text_field and (for vader_tweets) data.vader_threshold"
        )
    present = Counter(ids)
    if len(present) < 2:
        only = names[next(iter(present))]
        raise DataError(
            f"classification needs at least 2 classes, found only {only!r} in {where} "
            f"({len(texts)} examples); check data.label_field or add examples of other classes"
        )
    train_idx, eval_idx, test_idx = _split(ids, cfg)
    train = [Example(texts[i], ids[i]) for i in train_idx]
    evals = [Example(texts[i], ids[i]) for i in eval_idx]
    test = _unseen(test_idx, train_idx + eval_idx, texts, ids)
    train_labels = {ex.label for ex in train}
    orphan = sorted({ex.label for ex in evals} - train_labels)
    if orphan:
        orphan_names = ", ".join(repr(names[c]) for c in orphan)
        cap = f" after capping to data.max_train={cfg.max_train}" if cfg.max_train else ""
        raise DataError(
            f"validation labels {orphan_names} have no training examples{cap} in {where}; "
            "raise data.max_train or add more examples of those classes"
        )
    if not evals:
        raise DataError(
            f"no validation examples in {where}: every class has a single example; add more "
            "data (at least 2 examples per class) or raise data.eval_fraction"
        )
    if not train:
        raise DataError(f"no training examples in {where}; add more data")
    return DatasetSplits(
        train=train, eval=evals, label_names=list(names), source=cfg.source, test=test
    )
