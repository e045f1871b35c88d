"""The Hugging Face Trainer baseline of ``distill_throughput.py``, and the measurement
helpers both contenders share.

What a user typically writes: a ``transformers.Trainer`` subclass whose ``compute_loss`` runs
the teacher every step under ``torch.no_grad()`` and mixes ``(1-alpha)*KL_T*T^2 + alpha*CE``
(plus hidden-state and attention MSE for the ``inter`` case) as kdsearch does; the data is
tokenized with ``padding="max_length"``.
"""

from __future__ import annotations

import math
import resource
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from transformers import Trainer, TrainingArguments

from kdsearch.distill.config import RunConfig


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _examples_in(steps: int, n: int, batch_size: int) -> int:
    """Rows seen in ``steps`` batches cycling over epochs of ``n`` rows (short last batch kept)."""
    per_epoch = math.ceil(n / batch_size)
    full, rest = divmod(steps, per_epoch)
    return full * n + min(rest * batch_size, n)


def peak_memory(device: torch.device) -> dict[str, float | None]:
    """This process's peak memory. VmHWM, not ru_maxrss: Linux carries a parent's peak RSS
    into ru_maxrss across fork+exec, so a child would report max(parent, itself)."""
    try:
        status = Path("/proc/self/status").read_text().splitlines()
        rss_kib = next(int(x.split()[1]) for x in status if x.startswith("VmHWM:"))
    except (OSError, StopIteration):
        rss_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    cuda = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None
    return {"peak_rss_mib": rss_kib / 1024, "cuda_peak_mib": cuda}


class ListDataset(torch.utils.data.Dataset[dict[str, torch.Tensor]]):
    def __init__(self, rows: list[dict[str, torch.Tensor]]) -> None:
        self.rows = rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return self.rows[i]


class DistillTrainer(Trainer):
    """What a user writes: the teacher runs in every step, losses as in kdsearch's defaults."""

    def __init__(
        self,
        *args: Any,
        teacher: torch.nn.Module,
        temperature: float,
        alpha: float,
        mapping: list[int],
        hidden_weight: float,
        attention_weight: float,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.teacher = teacher.to(self.args.device).eval()
        self.temperature, self.alpha, self.mapping = temperature, alpha, mapping
        self.hidden_weight, self.attention_weight = hidden_weight, attention_weight

    def compute_loss(
        self,
        model: torch.nn.Module,
        inputs: dict[str, Any],
        return_outputs: bool = False,
        num_items_in_batch: torch.Tensor | int | None = None,
    ) -> torch.Tensor | tuple[torch.Tensor, Any]:
        labels = inputs.pop("labels")
        inter = bool(self.hidden_weight or self.attention_weight)
        extra = {"output_hidden_states": inter, "output_attentions": inter}
        out = model(**inputs, **extra)
        on_cuda = self.args.device.type == "cuda" and self.args.bf16
        with torch.no_grad(), torch.autocast("cuda", torch.bfloat16, enabled=on_cuda):
            t_out = self.teacher(**inputs, **extra)
        t = self.temperature
        soft = F.kl_div(
            F.log_softmax(out.logits.float() / t, dim=-1),
            F.log_softmax(t_out.logits.float() / t, dim=-1),
            reduction="batchmean",
            log_target=True,
        )
        hard = F.cross_entropy(out.logits.float(), labels)
        loss = (1 - self.alpha) * soft * t * t + self.alpha * hard
        if inter:  # mean over real tokens / real (query, key) pairs, per mapped layer
            valid = inputs["attention_mask"].bool()
            pairs = valid[:, None, :, None] & valid[:, None, None, :]
            n = len(self.mapping)
            for m, g in enumerate(self.mapping, start=1):
                s_h, t_h = out.hidden_states[m], t_out.hidden_states[g]
                loss = loss + self.hidden_weight * F.mse_loss(s_h[valid], t_h[valid]) / n
                s_a, t_a = out.attentions[m - 1], t_out.attentions[g - 1]
                keep = pairs.expand_as(s_a)
                loss = loss + self.attention_weight * F.mse_loss(s_a[keep], t_a[keep]) / n
        return (loss, out) if return_outputs else loss


def run_baseline(cfg: RunConfig, warmup_steps: int) -> dict[str, Any]:
    from kdsearch.distill.data import load_dataset
    from kdsearch.distill.device import resolve_device, seed_everything
    from kdsearch.distill.families.transformer import truncate_teacher, truncated_layers
    from kdsearch.distill.mapping import resolve_mapping
    from kdsearch.distill.teacher import prepare_teacher

    device = resolve_device(cfg.train.device)
    splits = load_dataset(cfg.data)
    teacher = prepare_teacher(cfg.teacher, splits, cfg.data.max_length, device)
    d, tr = cfg.distill, cfg.train
    if d.uses_intermediate:  # sdpa returns no attentions
        teacher.model.set_attn_implementation("eager")
    keep = truncated_layers(cfg.student, teacher.num_layers, d.layer_mapping)
    mapping = resolve_mapping(d.layer_mapping, len(keep), teacher.num_layers)
    enc = teacher.tokenizer(
        [e.text for e in splits.train],
        padding="max_length",
        truncation=True,
        max_length=cfg.data.max_length,
    )
    rows = [
        {**{k: torch.tensor(v[i]) for k, v in enc.items()}, "labels": torch.tensor(ex.label)}
        for i, ex in enumerate(splits.train)
    ]
    dataset = ListDataset(rows)
    steps = max(1, math.ceil(tr.epochs * math.ceil(len(rows) / tr.batch_size)))
    workdir = tempfile.mkdtemp(prefix="kd-bench-")

    def trainer(max_steps: int) -> DistillTrainer:
        seed_everything(tr.seed)
        student = truncate_teacher(teacher.model, keep)  # as kdsearch's build_student does
        args = TrainingArguments(
            output_dir=workdir,
            per_device_train_batch_size=tr.batch_size,
            learning_rate=tr.lr,
            max_steps=max_steps,
            # kdsearch rounds warmup_ratio * steps; an int here is taken as exact steps
            warmup_steps=round(tr.warmup_ratio * max_steps),
            lr_scheduler_type="linear",
            weight_decay=tr.weight_decay,
            max_grad_norm=tr.max_grad_norm,
            seed=tr.seed,
            bf16=device.type == "cuda" and tr.bf16,
            use_cpu=device.type == "cpu",
            save_strategy="no",
            eval_strategy="no",
            logging_strategy="no",
            report_to=[],
            disable_tqdm=True,
            dataloader_num_workers=0,
            dataloader_pin_memory=device.type == "cuda",
        )
        return DistillTrainer(
            model=student,
            args=args,
            train_dataset=dataset,
            teacher=teacher.model,
            temperature=d.temperature,
            alpha=d.alpha,
            mapping=mapping,
            hidden_weight=float(d.hidden_weight or 0.0),
            attention_weight=float(d.attention_weight or 0.0),
        )

    if warmup_steps:
        trainer(warmup_steps).train()
    measured = trainer(steps)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    sync(device)
    started = time.perf_counter()
    measured.train()
    sync(device)
    train_s = time.perf_counter() - started
    shutil.rmtree(workdir, ignore_errors=True)
    return {
        "examples": _examples_in(steps, len(rows), tr.batch_size),
        "steps": steps,
        "train_s": train_s,
        "run_distillation_s": None,
        "teacher_logits_s": 0.0,
        "optimizer": f"AdamW ({getattr(measured.args.optim, 'value', measured.args.optim)})",
        "device": str(device),
        **peak_memory(device),
    }
