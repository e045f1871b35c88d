"""Datasets: read labelled texts from a builtin corpus, a CSV/JSONL file or the hub, and split them.

Every source ends up as texts (with a second text each for sentence pairs) with integer
label ids ``0..C-1`` (a 0/1 tuple per row for multi-label data) and a list of label names.
The split into train and validation is stratified by label (by label set for multi-label
data) and fully determined by
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
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

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
    """One labelled row: a text (and a second text in pair tasks) and its label: a class
    id, or a 0/1 tuple with one entry per label in multi-label tasks."""

    text: str
    label: Any
    text_pair: str | None = None

    def key(self) -> str:
        """The form two rows are compared in (whitespace collapsed, case folded)."""
        if self.text_pair is None:
            return text_key(self.text)
        return text_key(self.text) + "\x1f" + text_key(self.text_pair)

    def content(self) -> str:
        """The texts as one string, for content hashes."""
        if self.text_pair is None:
            return self.text
        return json.dumps([self.text, self.text_pair], ensure_ascii=False)


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
    multi_label: bool = False

    @property
    def num_labels(self) -> int:
        return len(self.label_names)

    @property
    def is_pair(self) -> bool:
        """Sentence-pair rows (each has a second text)."""
        return bool(self.train) and self.train[0].text_pair is not None

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
        head: list[Any] = [self.source, self.label_names]
        if self.multi_label:
            head.append("multi_label")
        h.update(json.dumps(head, ensure_ascii=False).encode() + b"\n")
        parts = [("train", self.train), ("eval", self.eval)]
        if self.test:
            parts.append(("test", self.test))
        for split_name, split in parts:
            h.update(json.dumps([split_name, len(split)]).encode() + b"\n")
            for ex in split:
                # One JSON array per line: newlines inside texts are escaped, so it is unambiguous.
                row = (
                    [ex.text, ex.label]
                    if ex.text_pair is None
                    else [ex.text, ex.text_pair, ex.label]
                )
                h.update(json.dumps(row, ensure_ascii=False).encode() + b"\n")
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


def _split(
    ids: list[int], cfg: DataConfig, carve_eval: bool = True
) -> tuple[list[int], list[int], list[int]]:
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
        k = round(cfg.eval_fraction * n) if carve_eval else 0
        # At least one validation example per class, and at least one left for training.
        k = min(max(k, 1), n - 1) if n >= 2 and carve_eval else min(k, n)
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


def _unseen(test: list[Example], seen: list[Example]) -> list[Example]:
    """The test rows whose text (whitespace and case aside) is in no train or validation row
    and not repeated in the test split: corpora repeat texts, and a test row that is also
    trained on is not held out."""
    keys = {ex.key() for ex in seen}
    out = []
    for ex in test:
        key = ex.key()
        if key not in keys:
            keys.add(key)
            out.append(ex)
    return out


def _groups(labels: list[Any], multi_label: bool) -> list[int]:
    """The strata of the split: the class, or the exact set of labels of a multi-label row."""
    if not multi_label:
        return [int(y) for y in labels]
    index: dict[Any, int] = {}
    return [index.setdefault(tuple(y), len(index)) for y in labels]


def load_dataset(cfg: DataConfig) -> DatasetSplits:
    """Load ``cfg.source`` and split it into stratified, seeded train/validation/test sets.

    Label ids: ``builtin:rotten_tomatoes`` → ``["rotten", "fresh"]`` (id 0 = rotten, the
    negative class first); ``builtin:vader_tweets`` → ``["negative", "positive"]``;
    ``csv:``/``jsonl:`` → the label values sorted (numerically when all are integers,
    otherwise lexicographically), kept as strings; ``hub:`` → the ClassLabel names when the
    label column has them. Multi-label data (``data.label_fields`` or
    ``data.label_delimiter``) gives each row a 0/1 tuple over the label names, and the
    split is stratified by each row's set of labels.

    Per class, ``round(test_fraction * n)`` shuffled examples are held out as the test split
    first (at least 1 when the fraction is above 0 and the class has 3 or more); of the
    rest, ``round(eval_fraction * m)`` (at least 1 when 2 or more are left) go to
    validation; then ``max_train``/``max_eval``/``max_test`` cap the splits keeping class
    proportions. A hub validation split named by ``data.hub_eval_split`` is validated on as
    given (capped by ``max_eval``) instead. A test row whose text equals a train or
    validation row (whitespace and case aside) is dropped from the test split. With
    ``test_fraction: 0`` train and validation are what they were before the test split
    existed. The same config always gives the same splits, in the same order.

    Raises DataError (missing file/column, no usable rows, a single class, validation labels
    with no training examples, malformed or non-UTF-8 files, hub without network).
    """
    src = load_source(cfg)
    names, where = src.names, src.where
    if not src.texts:
        raise DataError(
            f"no usable examples in {where} (every row was empty or filtered out); "
            "check data.source, data.text_field, data.text_pair_field and (for vader_tweets) "
            "data.vader_threshold"
        )
    rows = [
        Example(t, y, src.pairs[i] if src.pairs is not None else None)
        for i, (t, y) in enumerate(zip(src.texts, src.labels, strict=True))
    ]
    _check_labels(rows, names, where, src.multi_label)
    groups = _groups(src.labels, src.multi_label)
    given = src.given_eval if src.given_eval is not None else len(rows)
    train_idx, eval_idx, test_idx = _split(groups[:given], cfg, carve_eval=given == len(rows))
    if given < len(rows):
        rng = random.Random(cfg.seed)
        by_group: dict[int, list[int]] = defaultdict(list)
        for i in range(given, len(rows)):
            by_group[groups[i]].append(i)
        capped = _cap(by_group, cfg.max_eval)
        eval_idx = sorted(i for c in capped for i in capped[c])
        rng.shuffle(eval_idx)
    train = [rows[i] for i in train_idx]
    evals = [rows[i] for i in eval_idx]
    test = _unseen([rows[i] for i in test_idx], train + evals)
    _check_split(train, evals, names, where, cfg, src.multi_label)
    return DatasetSplits(
        train=train,
        eval=evals,
        label_names=list(names),
        source=cfg.source,
        test=test,
        multi_label=src.multi_label,
    )


def _positives(rows: list[Example], multi_label: bool) -> set[int]:
    """The labels with at least one example among ``rows``."""
    if not multi_label:
        return {int(ex.label) for ex in rows}
    return {c for ex in rows for c, v in enumerate(ex.label) if v}


def _check_labels(rows: list[Example], names: list[str], where: str, multi_label: bool) -> None:
    present = _positives(rows, multi_label)
    if multi_label:
        absent = [names[c] for c in range(len(names)) if c not in present]
        if not names or absent:
            raise DataError(
                f"multi-label data needs at least one example of every label; "
                f"{', '.join(repr(n) for n in absent) or 'no label'} never applies in {where} "
                f"({len(rows)} examples): drop those columns from data.label_fields or add data"
            )
        always = [names[c] for c in range(len(names)) if all(ex.label[c] for ex in rows)]
        if always:
            raise DataError(
                f"labels {', '.join(repr(n) for n in always)} apply to every example in "
                f"{where}: a label needs negative examples too"
            )
        return
    if len(present) < 2:
        only = names[next(iter(present))]
        raise DataError(
            f"classification needs at least 2 classes, found only {only!r} in {where} "
            f"({len(rows)} examples); check data.label_field or add examples of other classes"
        )


def _check_split(
    train: list[Example],
    evals: list[Example],
    names: list[str],
    where: str,
    cfg: DataConfig,
    multi_label: bool,
) -> None:
    orphan = sorted(_positives(evals, multi_label) - _positives(train, multi_label))
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
