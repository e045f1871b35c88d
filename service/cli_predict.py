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
    p.add_argument("texts", nargs="*", help="texts to classify (default: one per stdin line)")
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

    texts = list(args.texts) or [line.rstrip("\n") for line in sys.stdin if line.strip()]
    if not texts:
        raise ConfigError("give texts to classify as arguments or on standard input")
    if args.speed is not None and not 0.0 <= args.speed <= 1.0:
        raise ConfigError(f"--speed must be between 0 and 1 (got {args.speed})")
    for p in predict(args.checkpoint, texts, onnx=args.onnx, speed=args.speed):
        exit_layer = {} if p.exit_layer is None else {"exit_layer": p.exit_layer}
        if args.json:
            print(json.dumps({"text": p.text, "label": p.label, "scores": p.scores, **exit_layer}))
        else:
            scores = "  ".join(f"{k}={v:.4f}" for k, v in p.scores.items())
            where = "" if p.exit_layer is None else f"exit={p.exit_layer}\t"
            print(f"{p.label}\t{scores}\t{where}{p.text}")
    return 0
