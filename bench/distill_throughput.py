"""Distillation throughput: kdsearch's loop against the Hugging Face Trainer a user would write.

Same teacher, student initialisation, data, batch size, lr, warmup, weight decay and grad
clipping; the two contenders differ in how they get the teacher's signal and pad batches:

- ``kdsearch``: ``run_distillation(cfg, ctx=ctx)``; teacher logits computed once into the
  context (that one-off cost is reported apart and in an amortised figure), dynamic padding.
- ``baseline``: a ``transformers.Trainer`` subclass whose ``compute_loss`` runs the teacher
  every step under ``torch.no_grad()``; data tokenized with ``padding="max_length"``
  (``bench/_hf_baseline.py``).

Each contender runs in a fresh child process (this script with ``--only``), so each child's
peak RSS (or CUDA peak allocation) belongs to that contender alone.

    .venv/bin/python bench/distill_throughput.py --case pred inter --write bench/RESULTS.md
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench.*, this checkout first
from bench._env import bench_env

bench_env("TOKENIZERS_PARALLELISM")  # the contenders' child processes inherit it
import torch  # noqa: E402
import transformers  # noqa: E402

from bench._hf_baseline import peak_memory, run_baseline, sync  # noqa: E402
from bench._report import add_output_args, header, machine, publish, versions  # noqa: E402
from kdsearch.distill.config import RunConfig  # noqa: E402

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


# ---------------------------------------------------------------- contender 1: kdsearch


def run_kdsearch(cfg: RunConfig, warmup_steps: int) -> dict[str, Any]:
    from kdsearch.distill.batching import steps_per_epoch
    from kdsearch.distill.context import prepare_context
    from kdsearch.distill.evaluate import predict_logits
    from kdsearch.distill.run import run_distillation

    ctx = prepare_context(cfg)  # teacher and its logits come from the parent's warm cache
    per_epoch = steps_per_epoch(len(ctx.train), cfg.train.batch_size)
    if warmup_steps:
        warm = cfg.model_copy(deep=True)
        warm.train.epochs = warmup_steps / per_epoch
        run_distillation(warm, ctx=ctx)
    # The one-off cost kdsearch pays instead of a teacher forward per step (train split).
    sync(ctx.device)
    started = time.perf_counter()
    predict_logits(ctx.teacher.model, ctx.train, 128, ctx.pad_id, ctx.device, ctx.bf16)
    sync(ctx.device)
    logits_s = time.perf_counter() - started
    if ctx.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(ctx.device)

    step_done: list[float] = []
    eval_gaps: list[tuple[int, float]] = []  # (step, seconds) of each evaluation

    def progress(step: int, total: int, message: str) -> None:
        sync(ctx.device)
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
        **peak_memory(ctx.device),
    }


def run_prepare(cfg: RunConfig, warmup_steps: int) -> dict[str, Any]:
    """Fine-tune the teacher and cache its logits (first run only), off the parent's memory."""
    from kdsearch.distill.context import prepare_context

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


def section(rows: list[dict[str, Any]], device: str, args: argparse.Namespace) -> str:
    """The markdown section: when, where, the exact command, the table, how it was run."""
    cuda = device.startswith("cuda")
    optim = {r["contender"]: r["optimizer"] for r in rows}
    cores = f" (torch threads {torch.get_num_threads()})"
    cores += f", {torch.cuda.get_device_name(0)}" if cuda else ""
    where = machine(cores, f"device {device}", *versions(torch, transformers))
    lines = [
        *header(SECTION, where),
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
    add_output_args(p, "dump raw per-run results here")
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
    publish(SECTION, body, args.write, args.json, {"rows": rows, "runs": runs})


if __name__ == "__main__":
    main()
