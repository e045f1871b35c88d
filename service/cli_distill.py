"""``kdsearch distill``, ``kdsearch teacher``, ``kdsearch data fetch`` and ``data examples``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from kdsearch.distill.config import RunConfig
from kdsearch.distill.configfile import load_model
from kdsearch.distill.metric_registry import display_names, format_value


def register(sub: Any) -> None:
    p = sub.add_parser("distill", help="distill one student from a config file")
    p.add_argument("--config", required=True, type=Path, help="YAML or JSON run config")
    p.add_argument("--out", required=True, type=Path, help="output folder")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    p.set_defaults(handler=cmd_distill)

    t = sub.add_parser("teacher", help="prepare (fine-tune and cache) the teacher of a config")
    t.add_argument("--config", required=True, type=Path)
    t.add_argument("--no-progress", action="store_true")
    t.set_defaults(handler=cmd_teacher)

    d = sub.add_parser("data", help="offline datasets")
    dsub = d.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    f = dsub.add_parser("fetch", help="fetch the builtin datasets' source archives")
    f.set_defaults(handler=cmd_data_fetch)
    e = dsub.add_parser(
        "examples",
        help="write pairs.csv (a sentence-pair task) and multilabel.csv (a multi-label task) "
        "built from the builtin rotten tomatoes corpus",
    )
    e.add_argument("folder", type=Path, help="where to write the two CSV files")
    e.add_argument("--rows", type=int, default=2000, help="rows per file (default 2000)")
    e.add_argument("--seed", type=int, default=0)
    e.set_defaults(handler=cmd_data_examples)


@contextmanager
def _bar(enabled: bool, desc: str) -> Iterator[Callable[[int, int, str], None]]:
    """A tqdm progress callback ``(step, total, note)``; silent when disabled."""
    if not enabled:
        yield lambda step, total, note: None
        return
    from tqdm import tqdm

    bar: Any = None

    def update(step: int, total: int, note: str) -> None:
        nonlocal bar
        if bar is None:
            bar = tqdm(total=total, desc=desc, unit="step", file=sys.stderr, dynamic_ncols=True)
        bar.set_postfix_str(note, refresh=False)
        bar.update(step - bar.n)

    try:
        yield update
    finally:
        if bar is not None:
            bar.close()


def _teacher_bar(update: Callable[[int, int, str], None]) -> Callable[[int, int, float], None]:
    return lambda step, total, loss: update(step, total, f"loss {loss:.4f}")


def cmd_distill(args: argparse.Namespace) -> int:
    from kdsearch.distill.context import prepare_context
    from kdsearch.distill.run import run_distillation, write_outputs

    cfg = load_model(RunConfig, args.config)
    show = not args.no_progress
    with _bar(show, "teacher fine-tune") as tbar:
        ctx = prepare_context(cfg, on_teacher_step=_teacher_bar(tbar))
    with _bar(show, "distill") as bar:
        result = run_distillation(cfg, ctx=ctx, progress=bar)
    paths = write_outputs(result, cfg, args.out)
    info = result.student_info
    shape = f"{info['num_layers']} layers" if info.get("num_layers") else info["family"]
    print(f"student: {info['family']}, {shape}, {result.metrics['params']:,} params")
    for name in display_names():
        if name not in result.metrics:
            continue  # e.g. mean_exit_layer: early-exit students only
        value = result.metrics.get(name)
        text = "n/a" if value is None else format_value(name, value)
        print(f"  {name:<20} {text}")
    if not result.metrics.get("conf_sigma_defined", True):
        print("  (conf_sigma undefined: fewer than 2 examples both models classify correctly)")
    for name, path in paths.items():
        print(f"{name}: {path}")
    return 0


def cmd_teacher(args: argparse.Namespace) -> int:
    from kdsearch.distill.context import prepare_context

    cfg = load_model(RunConfig, args.config)
    with _bar(not args.no_progress, "teacher fine-tune") as tbar:
        ctx = prepare_context(cfg, on_teacher_step=_teacher_bar(tbar))
    labels = ctx.eval.labels
    acc = float((ctx.teacher_outputs.eval_logits.argmax(-1) == labels).float().mean())
    print(f"teacher: {ctx.teacher.path}")
    print(f"  validation accuracy {acc:.4f} on {len(labels)} examples")
    return 0


def cmd_data_fetch(args: argparse.Namespace) -> int:
    from kdsearch.distill.fetch import fetch_datasets

    for path in fetch_datasets():
        print(path)
    return 0


def cmd_data_examples(args: argparse.Namespace) -> int:
    from kdsearch.distill.errors import ConfigError
    from kdsearch.distill.example_tasks import write_examples

    if not 10 <= args.rows <= 3000:  # the corpus has 1,097 plot summaries to draw on
        raise ConfigError(f"--rows must be between 10 and 3000 (got {args.rows})")
    for name, path in write_examples(args.folder, args.rows, args.seed).items():
        print(f"{name}: {path}")
    return 0
