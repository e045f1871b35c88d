"""Distillation throughput: kdsearch's loop against the Hugging Face Trainer a user would write.

Same teacher, student initialisation, data, batch size, lr, warmup, weight decay and grad
clipping; the two contenders differ in how they get the teacher's signal and pad batches:

- ``kdsearch``: ``run_distillation(cfg, ctx=ctx)``; teacher logits computed once into the
  context (that one-off cost is reported apart and in an amortised figure), dynamic padding.
- ``baseline``: a ``transformers.Trainer`` subclass whose ``compute_loss`` runs the teacher
  every step under ``torch.no_grad()``; data tokenized with ``padding="max_length"``.

Each contender runs in a fresh child process (this script with ``--only``), so each child's
peak RSS (or CUDA peak allocation) belongs to that contender alone.

    .venv/bin/python bench/distill_throughput.py --case pred inter --write bench/RESULTS.md
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import platform
import resource
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
import transformers  # noqa: E402
from transformers import Trainer, TrainingArguments  # noqa: E402

from bench._report import cpu_model, write_section  # noqa: E402
from distill.config import RunConfig  # noqa: E402

SECTION = "## Distillation throughput"
CHILD_FLAGS = (
    "n_train n_eval max_length batch_size lr epochs teacher_epochs seed warmup_steps threads"
)
CONTENDERS = ("kdsearch", "baseline")
# Loss weights per case, on top of the default prediction loss (T=2, alpha=0.5, KL).
CASES: dict[str, dict[str, float]] = {
    "pred": {},
    "inter": {"hidden_weight": 1.0, "attention_weight": 1.0},
}


def build_config(args: argparse.Namespace, case: str, layers: int) -> RunConfig:
    return RunConfig.model_validate(
        {
            "data": {
                "source": "builtin:rotten_tomatoes",
                "max_train": args.n_train,
                "max_eval": args.n_eval,
                "max_length": args.max_length,
            },
            # Small recipe: the teacher's quality does not matter for throughput.
            "teacher": {"model": "builtin:minilm-l6", "recipe": {"epochs": args.teacher_epochs}},
            "student": {"kind": "truncate", "num_layers": layers},
            "distill": {"mode": "one_stage", "temperature": 2.0, "alpha": 0.5, **CASES[case]},
            "train": {
                "epochs": args.epochs,
                "batch_size": args.batch_size,
                "lr": args.lr,
                "seed": args.seed,
                "device": args.device,
            },
        }
    )


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _examples_in(steps: int, n: int, batch_size: int) -> int:
    """Rows seen in ``steps`` batches cycling over epochs of ``n`` rows (short last batch kept)."""
    per_epoch = math.ceil(n / batch_size)
    full, rest = divmod(steps, per_epoch)
    return full * n + min(rest * batch_size, n)


def _memory(device: torch.device) -> dict[str, float | None]:
    """This process's peak memory. VmHWM, not ru_maxrss: Linux carries a parent's peak RSS
    into ru_maxrss across fork+exec, so a child would report max(parent, itself)."""
    try:
        status = Path("/proc/self/status").read_text().splitlines()
        rss_kib = next(int(x.split()[1]) for x in status if x.startswith("VmHWM:"))
    except (OSError, StopIteration):
        rss_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    cuda = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None
    return {"peak_rss_mib": rss_kib / 1024, "cuda_peak_mib": cuda}


# ---------------------------------------------------------------- contender 1: kdsearch


def run_kdsearch(cfg: RunConfig, warmup_steps: int) -> dict[str, Any]:
    from distill.batching import steps_per_epoch
    from distill.context import prepare_context
    from distill.evaluate import predict_logits
    from distill.run import run_distillation

    ctx = prepare_context(cfg)  # teacher and its logits come from the parent's warm cache
    per_epoch = steps_per_epoch(len(ctx.train), cfg.train.batch_size)
    if warmup_steps:
        warm = cfg.model_copy(deep=True)
        warm.train.epochs = warmup_steps / per_epoch
        run_distillation(warm, ctx=ctx)
    # The one-off cost kdsearch pays instead of a teacher forward per step (train split).
    _sync(ctx.device)
    started = time.perf_counter()
    predict_logits(ctx.teacher.model, ctx.train, 128, ctx.pad_id, ctx.device, ctx.bf16)
    _sync(ctx.device)
    logits_s = time.perf_counter() - started
    if ctx.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(ctx.device)

    step_done: list[float] = []
    eval_gaps: list[tuple[int, float]] = []  # (step, seconds) of each evaluation

    def progress(step: int, total: int, message: str) -> None:
        _sync(ctx.device)
        step_done.append(time.perf_counter())

    def callback(event: Any) -> None:
        eval_gaps.append((event.step, time.perf_counter() - step_done[-1]))

    started = time.perf_counter()
    result = run_distillation(cfg, ctx=ctx, callback=callback, progress=progress)
    total_s = time.perf_counter() - started
    # Training only: up to the last optimiser step, minus evaluations in between.
    train_s = step_done[-1] - started - sum(s for k, s in eval_gaps if k < result.steps)
    return {
        "examples": result.examples_seen,
        "steps": result.steps,
        "train_s": train_s,
        "run_distillation_s": total_s,
        "teacher_logits_s": logits_s,
        "optimizer": "AdamW (fused kernel, distill/optim.py)",
        "device": str(ctx.device),
        **_memory(ctx.device),
    }


# ---------------------------------------------------------------- contender 2: HF Trainer


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
    from distill.data import load_dataset
    from distill.device import resolve_device, seed_everything
    from distill.mapping import resolve_mapping
    from distill.student import truncate_teacher, truncated_layers
    from distill.teacher import prepare_teacher

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
    _sync(device)
    started = time.perf_counter()
    measured.train()
    _sync(device)
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
        **_memory(device),
    }


def run_prepare(cfg: RunConfig, warmup_steps: int) -> dict[str, Any]:
    """Fine-tune the teacher and cache its logits (first run only), off the parent's memory."""
    from distill.context import prepare_context

    started = time.perf_counter()
    ctx = prepare_context(cfg)
    return {"device": str(ctx.device), "seconds": time.perf_counter() - started}


CHILDREN: dict[str, Callable[[RunConfig, int], dict[str, Any]]] = {
    "kdsearch": run_kdsearch,
    "baseline": run_baseline,
    "prepare": run_prepare,
}


# ---------------------------------------------------------------- parent: spawn, collect, report


def spawn(args: argparse.Namespace, job: str, case: str, layers: int) -> dict[str, Any]:
    """Run one job (a contender, or ``prepare``) in a fresh process; return its JSON record."""
    with tempfile.TemporaryDirectory(prefix="kd-bench-") as tmp:
        out = Path(tmp) / "result.json"
        cmd = [sys.executable, str(Path(__file__).resolve()), "--only", job, "--case", case]
        cmd += ["--student-layers", str(layers), "--child-out", str(out), "--device", args.device]
        for flag in CHILD_FLAGS.split():
            cmd += [f"--{flag.replace('_', '-')}", str(getattr(args, flag))]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0 or not out.is_file():
            sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-4000:])
            raise SystemExit(f"{job} child failed ({case}, {layers} layers)")
        record: dict[str, Any] = json.loads(out.read_text())
    if job != "prepare":
        record["examples_per_s"] = record["examples"] / record["train_s"]
        spent = record["train_s"] + record["teacher_logits_s"]
        record["amortised_per_s"] = record["examples"] / spent
    return {"contender": job, "case": case, "student_layers": layers, **record}


def summarise(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Median over repeats per (case, layers, contender), with ratios against the baseline."""
    groups: dict[tuple[str, int, str], list[dict[str, Any]]] = {}
    for r in runs:
        groups.setdefault((r["case"], r["student_layers"], r["contender"]), []).append(r)
    rows: list[dict[str, Any]] = []
    for (case, layers, contender), rs in groups.items():
        row: dict[str, Any] = {"case": case, "student_layers": layers, "contender": contender}
        for k in ("examples_per_s", "amortised_per_s", "train_s", "teacher_logits_s"):
            row[k] = statistics.median(r[k] for r in rs)
        row["peak_mib"] = statistics.median(r["cuda_peak_mib"] or r["peak_rss_mib"] for r in rs)
        row.update(repeats=len(rs), examples=rs[0]["examples"], optimizer=rs[0]["optimizer"])
        rows.append(row)
    base = {(r["case"], r["student_layers"]): r for r in rows if r["contender"] == "baseline"}
    for row in rows:
        ref = base[(row["case"], row["student_layers"])]["examples_per_s"]
        row["ratio"] = row["examples_per_s"] / ref
        row["amortised_ratio"] = row["amortised_per_s"] / ref
    return rows


def machine(device: str) -> str:
    cpu = cpu_model()
    gpu = f", {torch.cuda.get_device_name(0)}" if device.startswith("cuda") else ""
    return (
        f"{cpu}, {os.cpu_count()} cores (torch threads {torch.get_num_threads()}){gpu}; "
        f"device {device}; torch {torch.__version__}; transformers {transformers.__version__}; "
        f"Python {platform.python_version()}"
    )


def section(rows: list[dict[str, Any]], device: str, args: argparse.Namespace) -> str:
    """The markdown section: when, where, the exact command, the table, how it was run."""
    cuda = device.startswith("cuda")
    exe = os.path.relpath(sys.executable) if sys.executable.startswith(os.getcwd()) else "python"
    optim = {r["contender"]: r["optimizer"] for r in rows}
    lines = [
        SECTION,
        "",
        f"Date: {dt.datetime.now().astimezone().isoformat(timespec='seconds')}  ",
        f"Machine: {machine(device)}  ",
        f"Command: `{shlex.join([exe, *sys.argv])}`",
        "",
        "| case | student layers | contender | examples/s | vs baseline | examples/s incl. "
        f"teacher logits | vs baseline | peak {'CUDA' if cuda else 'RSS'} MiB | train s | "
        "teacher logits s |",
        "|" + " --- |" * 10,
    ]
    for r in rows:
        lines.append(
            f"| {r['case']} | {r['student_layers']} | {r['contender']} | "
            f"{r['examples_per_s']:.1f} | {r['ratio']:.2f}x | {r['amortised_per_s']:.1f} | "
            f"{r['amortised_ratio']:.2f}x | {r['peak_mib']:.0f} | {r['train_s']:.2f} | "
            f"{r['teacher_logits_s']:.2f} |"
        )
    lines += [
        "",
        f"Each contender trains {args.epochs:g} epoch(s) over the same {rows[0]['examples']} "
        f"examples (batch {args.batch_size}, max_length {args.max_length}, lr {args.lr:g}) "
        f"after {args.warmup_steps} unmeasured warm-up steps, each in its own child process; "
        f"median of {args.repeats} repeat(s). kdsearch: `run_distillation` with teacher logits "
        "cached in the context, dynamic padding; 'incl. teacher logits' adds the one-off "
        "teacher pass over the training split to its time. baseline: a `transformers.Trainer` "
        "subclass running the teacher every step, `padding='max_length'`. Optimizers: "
        f"kdsearch {optim.get('kdsearch')}, baseline {optim.get('baseline')}. "
        + ("bf16 autocast on CUDA." if cuda else "float32 on CPU."),
        "",
    ]
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--case", nargs="+", choices=sorted(CASES), default=["pred"])
    p.add_argument("--student-layers", nargs="+", type=int, default=[2, 3])
    p.add_argument("--n-train", type=int, default=1024)
    p.add_argument("--n-eval", type=int, default=256, help="kdsearch evaluates once per epoch")
    p.add_argument("--max-length", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--epochs", type=float, default=1.0)
    p.add_argument("--teacher-epochs", type=float, default=1.0)
    p.add_argument("--warmup-steps", type=int, default=2, help="unmeasured steps first")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument(
        "--threads", type=int, default=0, help="torch threads per contender (0: torch's default)"
    )
    p.add_argument("--write", type=Path, help="markdown file to put the section in")
    p.add_argument("--json", type=Path, help="dump raw per-run results here")
    p.add_argument("--only", choices=sorted(CHILDREN), help=argparse.SUPPRESS)
    p.add_argument("--child-out", type=Path, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.only:  # child: one job, one case, one student size
        cfg = build_config(args, args.case[0], args.student_layers[0])
        args.child_out.write_text(json.dumps(CHILDREN[args.only](cfg, args.warmup_steps)))
        return
    prepared = spawn(args, "prepare", args.case[0], args.student_layers[0])
    device = str(prepared["device"])
    print(f"teacher and logits ready in {prepared['seconds']:.1f}s on {device}", file=sys.stderr)
    runs = []
    for case in args.case:
        for layers in args.student_layers:
            for _ in range(args.repeats):
                for contender in CONTENDERS:
                    run = spawn(args, contender, case, layers)
                    print(
                        f"{case} L{layers} {contender}: {run['examples_per_s']:.1f} ex/s, "
                        f"{run['train_s']:.2f}s, peak RSS {run['peak_rss_mib']:.0f} MiB",
                        file=sys.stderr,
                    )
                    runs.append(run)
    rows = summarise(runs)
    body = section(rows, device, args)
    print(body)
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "runs": runs}, indent=2))
    if args.write:
        write_section(args.write, SECTION, body)


if __name__ == "__main__":
    main()
