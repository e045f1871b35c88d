"""``kdsearch predict CHECKPOINT TEXT...``: classify with a student of any family."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any


def register(sub: Any) -> None:
    p = sub.add_parser(
        "predict",
        help="classify texts with a student checkpoint (folder or downloaded .tar.gz)",
    )
    p.add_argument("checkpoint", type=Path, help="student folder or checkpoint .tar.gz")
    p.add_argument(
        "texts",
        nargs="*",
        help="texts to classify (default: one per stdin line); for a sentence-pair student "
        "each is the two texts separated by a tab",
    )
    p.add_argument("--onnx", action="store_true", help="run model.onnx with onnxruntime")
    p.add_argument("--json", action="store_true", help="one JSON object per text")
    p.add_argument(
        "--speed",
        type=float,
        default=None,
        help="early-exit students: leave at the first exit whose normalised entropy is at "
        "most this (0 = always the last layer, 1 = always the first; default: the trained "
        "speed)",
    )
    p.set_defaults(handler=cmd_predict, trailing_texts=True)


def cmd_predict(args: argparse.Namespace) -> int:
    from kdsearch.distill.errors import ConfigError
    from kdsearch.distill.predict import predict

    rows = list(args.texts) or [line.rstrip("\n") for line in sys.stdin if line.strip()]
    if not rows:
        raise ConfigError("give texts to classify as arguments or on standard input")
    if args.speed is not None and not 0.0 <= args.speed <= 1.0:
        raise ConfigError(f"--speed must be between 0 and 1 (got {args.speed})")
    texts, pairs = split_pairs(rows)
    for p in predict(args.checkpoint, texts, onnx=args.onnx, speed=args.speed, pairs=pairs):
        extra: dict[str, Any] = {} if p.exit_layer is None else {"exit_layer": p.exit_layer}
        if p.text_pair is not None:
            extra["text_pair"] = p.text_pair
        if p.labels is not None:
            extra["labels"] = p.labels
        if args.json:
            print(json.dumps({"text": p.text, "label": p.label, "scores": p.scores, **extra}))
        else:
            shown = ",".join(p.labels) if p.labels is not None else p.label
            scores = "  ".join(f"{k}={v:.4f}" for k, v in p.scores.items())
            where = "" if p.exit_layer is None else f"exit={p.exit_layer}\t"
            second = "" if p.text_pair is None else f"\t{p.text_pair}"
            print(f"{shown or '-'}\t{scores}\t{where}{p.text}{second}")
    return 0


def split_pairs(rows: list[str]) -> tuple[list[str], list[str] | None]:
    """Rows with a tab are sentence pairs (text, second text); all or none must have one."""
    from kdsearch.distill.errors import ConfigError

    tabbed = ["\t" in r for r in rows]
    if not any(tabbed):
        return rows, None
    if not all(tabbed):
        missing = tabbed.index(False) + 1
        raise ConfigError(
            f"text {missing} has no tab: for a sentence-pair student give every text as the "
            "two texts separated by a tab"
        )
    halves = [r.split("\t", 1) for r in rows]
    return [h[0] for h in halves], [h[1] for h in halves]
