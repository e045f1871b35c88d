"""Student checkpoints: a Hugging Face folder (config with labels, safetensors, tokenizer)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from transformers import AutoModelForSequenceClassification, AutoTokenizer, PreTrainedModel

from .attention import use_attention
from .errors import ModelError

WEIGHTS = "model.safetensors"


def save_student(
    model: PreTrainedModel,
    tokenizer: Any,
    out_dir: str | Path,
    label_names: list[str],
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write a folder that ``from_pretrained`` and ``pipeline`` load as is."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.config.id2label = dict(enumerate(label_names))
    model.config.label2id = {name: i for i, name in enumerate(label_names)}
    use_attention(model, "sdpa")  # the kd_scores attention is a training-time device
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    if extra:
        (out / "kdsearch.json").write_text(json.dumps(extra, indent=2, sort_keys=True))
    if not (out / WEIGHTS).is_file():
        raise ModelError(f"saving the student to {out} wrote no {WEIGHTS}")
    return out


def load_student(path: str | Path) -> tuple[PreTrainedModel, Any]:
    """Load a saved student (safetensors only, never remote code)."""
    folder = Path(path)
    if not (folder / WEIGHTS).is_file():
        raise ModelError(f"{folder} is not a kdsearch student checkpoint (no {WEIGHTS})")
    model = AutoModelForSequenceClassification.from_pretrained(
        folder, use_safetensors=True, trust_remote_code=False
    )
    tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=False)
    return model, tokenizer
