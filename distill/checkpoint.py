"""Student checkpoints: one folder per student, whatever its family.

- ``transformer``: a plain Hugging Face folder (config with labels, safetensors, tokenizer)
  that ``from_pretrained`` and ``pipeline`` load as is;
- ``bilstm``, ``textcnn``: ``model.safetensors`` plus ``kdsearch_student.json``, read back by
  kdsearch's own code (never a pickle, never remote code);
- a student with early exits (``distill.method early_exit``): the transformer folder plus
  ``exits.safetensors`` and the exits' ONNX graphs (see :mod:`distill.early_exit`);
- every family: ``labels.json``, the teacher's tokenizer files and ``model.onnx`` (see
  :mod:`distill.export`), so the student serves with onnxruntime alone.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from transformers import AutoTokenizer

from .errors import ModelError
from .families import StudentModel, get_family
from .families.base import LABELS_JSON, STUDENT_JSON, read_student_json

RUN_JSON = "kdsearch.json"


def save_student(
    student: StudentModel,
    tokenizer: Any,
    out_dir: str | Path,
    label_names: list[str],
    extra: dict[str, Any] | None = None,
    *,
    onnx: bool = True,
    max_length: int = 512,
    pair: bool = False,
    multi_label: bool = False,
) -> Path:
    """Write a student folder (see the module doc); ``extra`` goes to ``kdsearch.json``.
    ``pair``: the student reads sentence pairs; ``multi_label``: a sigmoid per label."""
    from .early_exit import EARLY_EXIT_KEY, EarlyExitModel
    from .export import export_onnx
    from .export_exits import export_exit_graphs

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    student.set_labels(label_names)
    student.save_weights(out)
    tokenizer.save_pretrained(out)
    if not (out / STUDENT_JSON).is_file():
        (out / STUDENT_JSON).write_text(json.dumps({"family": student.family}, indent=2))
    labels: dict[str, Any] = {
        "id2label": dict(enumerate(label_names)),
        "family": student.family,
        "max_length": max_length,
        "text_pair": pair,
        "multi_label": multi_label,
    }
    if extra:
        (out / RUN_JSON).write_text(json.dumps(extra, indent=2, sort_keys=True))
    if onnx:
        export_onnx(student, out, tokenizer, max_length=max_length, pair=pair)
    if isinstance(student, EarlyExitModel):
        graphs = (
            export_exit_graphs(student, out, tokenizer, max_length=max_length, pair=pair)
            if onnx
            else []
        )
        labels[EARLY_EXIT_KEY] = {**student.meta(), "graphs": graphs}
    (out / LABELS_JSON).write_text(json.dumps(labels, indent=2))
    return out


def checkpoint_family(folder: Path) -> str:
    """The family a saved student belongs to (a bare Hugging Face folder is a transformer)."""
    meta = read_student_json(folder)
    if meta is not None and "family" in meta:
        return str(meta["family"])
    if (folder / "config.json").is_file():
        return "transformer"
    raise ModelError(
        f"{folder} is not a kdsearch student checkpoint (no {STUDENT_JSON} or config.json)"
    )


def load_student(path: str | Path) -> tuple[StudentModel, Any]:
    """Load a saved student of any family and its tokenizer (safetensors only)."""
    folder = Path(path)
    if not folder.is_dir():
        raise ModelError(f"checkpoint folder {folder} does not exist")
    from .early_exit import EarlyExitModel, has_exits

    family = checkpoint_family(folder)
    student: StudentModel = (
        EarlyExitModel.load(folder)
        if family == "transformer" and has_exits(folder)
        else get_family(family).load(folder)
    )
    student.eval()
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=False)
    except (OSError, ValueError) as exc:
        raise ModelError(f"cannot load the tokenizer saved in {folder}: {exc}") from exc
    return student, tokenizer
