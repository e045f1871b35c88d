"""What every trial of a study shares: data, teacher, tokens and the teacher's logits.

Preparing it costs a teacher fine-tune (first time only) and one teacher pass over the
data (transfer rows included); a worker prepares it once per study and reuses it for every
trial. Augmented copies are made and soft-labelled on first use, one copy at a time, so
trials that sample a different ``data.augment.copies`` share them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from .batching import EncodedSplit, concat_splits, encode
from .config import DataConfig, RunConfig
from .data import DatasetSplits, load_dataset
from .device import resolve_device
from .evaluate import measure_latency_ms, predict_logits
from .paths import home
from .soft_labels import cached_logits, check_finite
from .teacher import Teacher, prepare_teacher
from .transfer import augment_copy, load_transfer, text_key, texts_hash


@dataclass
class TeacherOutputs:
    """Teacher logits for every train and eval row (float32, CPU), computed once."""

    train_logits: torch.Tensor
    eval_logits: torch.Tensor


@dataclass
class Rows:
    """Unlabelled rows made here: their texts, tokens and the teacher's logits."""

    texts: list[str]
    split: EncodedSplit
    logits: torch.Tensor


@dataclass
class AugmentedCopy:
    """One augmented copy, kept apart by origin so a trial can leave out the transfer part."""

    labelled: Rows
    transfer: Rows

    def texts(self) -> list[str]:
        return self.labelled.texts + self.transfer.texts


@dataclass
class RunContext:
    splits: DatasetSplits
    teacher: Teacher
    train: EncodedSplit
    eval: EncodedSplit
    teacher_outputs: TeacherOutputs
    device: torch.device
    max_length: int
    bf16: bool
    data: DataConfig = field(default_factory=DataConfig)
    transfer_texts: list[str] = field(default_factory=list)
    transfer: EncodedSplit | None = None
    transfer_logits: torch.Tensor | None = None
    # augmented copies, in order (copy k = _augmented[k - 1])
    _augmented: list[AugmentedCopy] = field(default_factory=list)
    _teacher_latency: dict[tuple[int, int, int], float] = field(default_factory=dict)
    _test: tuple[EncodedSplit, torch.Tensor] | None = None

    @property
    def pad_id(self) -> int:
        return int(self.teacher.tokenizer.pad_token_id or 0)

    def training_rows(
        self, copies: int = 0, use_transfer: bool = True
    ) -> tuple[EncodedSplit, torch.Tensor]:
        """Labelled train rows + transfer rows + ``copies`` augmented copies, with the
        teacher's logits for each. Unlabelled rows carry label -1 (no hard loss).

        ``use_transfer=False`` leaves out the transfer rows and the copies made from them.
        """
        parts = [(self.train, self.teacher_outputs.train_logits)]
        with_transfer = use_transfer and self.transfer is not None
        if with_transfer and self.transfer is not None and self.transfer_logits is not None:
            parts.append((self.transfer, self.transfer_logits))
        for copy in self._augmented_copies(copies):
            parts.append((copy.labelled.split, copy.labelled.logits))
            if with_transfer:
                parts.append((copy.transfer.split, copy.transfer.logits))
        parts = [p for p in parts if len(p[0])]
        if len(parts) == 1:
            return parts[0]
        return concat_splits([p[0] for p in parts]), torch.cat([p[1] for p in parts])

    def _augmented_copies(self, copies: int) -> list[AugmentedCopy]:
        labelled = [e.text for e in self.splits.train]
        exclude = {text_key(t) for t in labelled + self.transfer_texts}
        exclude |= {text_key(e.text) for e in self.splits.eval + self.splits.test}
        for done in self._augmented:
            exclude |= {text_key(t) for t in done.texts()}
        while len(self._augmented) < copies:
            k = len(self._augmented) + 1
            made = AugmentedCopy(
                self._soft_labelled(labelled, k, "labelled", exclude),
                self._soft_labelled(self.transfer_texts, k, "transfer", exclude),
            )
            self._augmented.append(made)
        return self._augmented[:copies]

    def _soft_labelled(self, source: list[str], k: int, stream: str, exclude: set[str]) -> Rows:
        mask_token = str(self.teacher.tokenizer.mask_token or "[MASK]")
        texts = augment_copy(source, k, mask_token, self.data.augment, exclude, stream)
        split = encode(self.teacher.tokenizer, texts, self.max_length)
        logits = (
            cached_logits(
                self.teacher,
                split,
                texts_hash(texts),
                "augmented",
                self.max_length,
                self.device,
                self.bf16,
            )
            if texts
            else torch.zeros((0, self.teacher_outputs.eval_logits.shape[1]))
        )
        return Rows(texts, split, logits)

    def has_test(self) -> bool:
        return bool(self.splits.test)

    def test_rows(self) -> tuple[EncodedSplit, torch.Tensor]:
        """The held-out test rows and the teacher's logits on them, made on first use.

        Only the end-of-study scoring calls this: no trial, no sampler and no teacher
        fine-tune ever reads the test split.
        """
        if not self.splits.test:
            raise ValueError("this study has no test split (data.test_fraction is 0)")
        if self._test is None:
            split = encode(self.teacher.tokenizer, self.splits.test, self.max_length)
            texts = [e.content() for e in self.splits.test]
            logits = cached_logits(
                self.teacher,
                split,
                texts_hash(texts),
                "test",
                self.max_length,
                self.device,
                self.bf16,
            )
            self._test = (split, logits)
        return self._test

    def teacher_latency_ms(self, batch_size: int, batches: int, repeats: int) -> float:
        """The teacher's latency, measured as every student's is; once per setting."""
        key = (batch_size, batches, repeats)
        if key not in self._teacher_latency:
            self.teacher.module.set_attention("sdpa")
            self._teacher_latency[key] = measure_latency_ms(
                self.teacher.module,
                self.eval,
                batch_size,
                self.pad_id,
                self.device,
                batches,
                self.bf16,
                repeats,
            )
        return self._teacher_latency[key]


def context_key(cfg: RunConfig) -> str:
    """Trials whose configs share this key can share one context (the number of augmented
    copies and whether transfer rows are used are not part of it: a context makes copies
    on demand and keeps the transfer rows apart)."""
    data = cfg.data.model_dump_json(exclude={"augment": {"copies"}, "use_transfer": True})
    parts = [data, cfg.teacher.model_dump_json(), cfg.train.device]
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]


def teacher_outputs(
    teacher: Teacher,
    splits: DatasetSplits,
    train: EncodedSplit,
    eval_split: EncodedSplit,
    max_length: int,
    device: torch.device,
    bf16: bool,
    batch_size: int = 128,
) -> TeacherOutputs:
    """Teacher logits, cached on disk by (teacher weights, data, max_length, precision)."""
    precision = "bf16" if bf16 and device.type == "cuda" else "fp32"
    key = hashlib.sha256(
        f"{teacher.fingerprint}|{splits.fingerprint()}|{max_length}|{precision}".encode()
    ).hexdigest()[:24]
    path: Path = home() / "teacher_outputs" / f"{key}.safetensors"
    if path.is_file():
        stored = load_file(str(path))
        return TeacherOutputs(stored["train_logits"], stored["eval_logits"])
    pad_id = int(teacher.tokenizer.pad_token_id or 0)
    out = TeacherOutputs(
        predict_logits(teacher.module, train, batch_size, pad_id, device, bf16),
        predict_logits(teacher.module, eval_split, batch_size, pad_id, device, bf16),
    )
    for name, logits in (("train", out.train_logits), ("eval", out.eval_logits)):
        check_finite(logits, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    save_file({"train_logits": out.train_logits, "eval_logits": out.eval_logits}, str(tmp))
    tmp.replace(path)
    return out


def prepare_context(
    cfg: RunConfig, on_teacher_step: Callable[[int, int, float], None] | None = None
) -> RunContext:
    device = resolve_device(cfg.train.device)
    splits = load_dataset(cfg.data)
    teacher = prepare_teacher(
        cfg.teacher,
        splits,
        cfg.data.max_length,
        device,
        bf16=cfg.train.bf16,
        on_step=on_teacher_step,
    )
    max_length = cfg.data.max_length
    train = encode(teacher.tokenizer, splits.train, max_length)
    eval_split = encode(teacher.tokenizer, splits.eval, max_length)
    outputs = teacher_outputs(
        teacher, splits, train, eval_split, max_length, device, cfg.train.bf16
    )
    ctx = RunContext(
        splits, teacher, train, eval_split, outputs, device, max_length, cfg.train.bf16, cfg.data
    )
    if cfg.data.transfer is not None:
        held_out = [e.text for e in splits.eval + splits.test]
        texts = load_transfer(cfg.data, [e.text for e in splits.train], held_out)
        ctx.transfer_texts = texts
        ctx.transfer = encode(teacher.tokenizer, texts, max_length)
        ctx.transfer_logits = cached_logits(
            teacher, ctx.transfer, texts_hash(texts), "transfer", max_length, device, ctx.bf16
        )
    return ctx
