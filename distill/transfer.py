"""Transfer data: unlabelled text the teacher soft-labels, plus Tang et al.'s augmentation.

Transfer rows never overlap validation (or test) rows: every text is compared after
normalising whitespace and case, and a transfer or augmented row equal to an evaluation row
is dropped, as are duplicates of labelled training rows and of each other.
"""

from __future__ import annotations

import csv
import hashlib
import json
import random
from collections.abc import Iterable
from pathlib import Path

from ._files import _missing_field, _open_text, _resolve
from ._sources import _load_rotten_tomatoes
from .config import AugmentConfig, DataConfig
from .errors import DataError

BUILTIN_UNLABELLED = "builtin:rotten_tomatoes_unlabelled"
MAX_NGRAM = 5


def text_key(text: str) -> str:
    """The form two texts are compared in: whitespace collapsed, case folded."""
    return " ".join(text.split()).casefold()


def texts_hash(texts: Iterable[str]) -> str:
    h = hashlib.sha256(b"kdsearch-texts-v1\n")
    for t in texts:
        h.update(json.dumps(t, ensure_ascii=False).encode() + b"\n")
    return h.hexdigest()


def _read_texts(path: Path, fmt: str, field: str, config_field: str) -> list[str]:
    texts: list[str] = []
    with _open_text(path) as fh:
        if fmt == "csv":
            reader = csv.DictReader(fh)
            header = [str(f) for f in (reader.fieldnames or [])]
            if header and field not in header:
                raise _missing_field(field, config_field, path, header)
            try:
                texts = [str(row.get(field) or "") for row in reader]
            except csv.Error as e:
                raise DataError(f"{path} line {reader.line_num}: malformed CSV ({e})") from e
        else:
            for lineno, line in enumerate(fh, start=1):
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as e:
                    raise DataError(f"{path} line {lineno}: malformed JSON ({e.msg})") from e
                if not isinstance(obj, dict) or field not in obj:
                    keys = list(obj) if isinstance(obj, dict) else []
                    raise _missing_field(field, config_field, path, keys, f" (line {lineno})")
                value = obj[field]
                if value is not None and not isinstance(value, str):
                    raise DataError(
                        f"{path} line {lineno}: {field!r} must be a string, got "
                        f"{type(value).__name__}; check {config_field}"
                    )
                texts.append(value or "")
    return [t for t in texts if t.strip()]


def read_transfer_source(cfg: DataConfig) -> list[str]:
    """The raw transfer texts named by ``data.transfer`` (before de-duplication)."""
    spec = cfg.transfer
    if spec is None:
        return []
    if spec == BUILTIN_UNLABELLED:
        texts, _, _ = _load_rotten_tomatoes()
        return texts
    fmt, _, raw_path = spec.partition(":")
    field = cfg.transfer_text_field or cfg.text_field
    path = _resolve(raw_path, f"data.transfer {spec}")
    try:
        return _read_texts(path, fmt, field, "data.transfer_text_field")
    except UnicodeDecodeError as e:
        raise DataError(f"{path} is not UTF-8 text (byte {e.start}): re-save it as UTF-8") from e


def dedupe_transfer(
    texts: Iterable[str], labelled: Iterable[str], held_out: Iterable[str]
) -> list[str]:
    """Texts that equal no held-out row, no labelled row and no earlier transfer row."""
    seen = {text_key(t) for t in held_out} | {text_key(t) for t in labelled}
    kept: list[str] = []
    for text in texts:
        key = text_key(text)
        if key and key not in seen:
            seen.add(key)
            kept.append(text)
    return kept


def load_transfer(cfg: DataConfig, labelled: list[str], held_out: list[str]) -> list[str]:
    """``data.transfer`` de-duplicated against ``held_out`` and ``labelled``, seeded-capped."""
    texts = dedupe_transfer(read_transfer_source(cfg), labelled, held_out)
    if cfg.transfer is not None and not texts:
        raise DataError(
            f"data.transfer {cfg.transfer} has no usable rows once the labelled and "
            "validation texts are removed; give a file with other texts"
        )
    if cfg.max_transfer is not None and len(texts) > cfg.max_transfer:
        rng = random.Random(f"transfer-{cfg.seed}")
        picked = sorted(rng.sample(range(len(texts)), cfg.max_transfer))
        texts = [texts[i] for i in picked]
    return texts


# --------------------------------------------------------------------------- augmentation


def augment_one(text: str, rng: random.Random, mask_token: str, aug: AugmentConfig) -> str:
    """Tang et al.: mask each word with ``mask_prob``, then with ``ngram_prob`` keep a random
    n-gram (n uniform in 1..5) of the result."""
    words = text.split()
    words = [mask_token if rng.random() < aug.mask_prob else w for w in words]
    if words and rng.random() < aug.ngram_prob:
        n = rng.randint(1, min(MAX_NGRAM, len(words)))
        start = rng.randint(0, len(words) - n)
        words = words[start : start + n]
    return " ".join(words)


def augment_copy(
    texts: list[str],
    copy: int,
    mask_token: str,
    aug: AugmentConfig,
    exclude: set[str],
    stream: str = "",
) -> list[str]:
    """Augmented copy number ``copy`` (1-based) of ``texts``, seeded by (seed, copy, stream).

    Rows equal to any key in ``exclude`` (held-out and already-present texts) are dropped;
    ``exclude`` grows with what is kept, so copies never repeat each other.
    """
    rng = random.Random(f"augment-{aug.seed}-{copy}{stream}")
    out: list[str] = []
    for text in texts:
        new = augment_one(text, rng, mask_token, aug)
        key = text_key(new)
        if key and key not in exclude:
            exclude.add(key)
            out.append(new)
    return out
