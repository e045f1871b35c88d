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
    p.set_defaults(handler=cmd_predict, trailing_texts=True)


def cmd_predict(args: argparse.Namespace) -> int:
    from distill.errors import ConfigError
    from distill.predict import predict

    texts = list(args.texts) or [line.rstrip("\n") for line in sys.stdin if line.strip()]
    if not texts:
        raise ConfigError("give texts to classify as arguments or on standard input")
    for p in predict(args.checkpoint, texts, onnx=args.onnx):
        if args.json:
            print(json.dumps({"text": p.text, "label": p.label, "scores": p.scores}))
        else:
            scores = "  ".join(f"{k}={v:.4f}" for k, v in p.scores.items())
            print(f"{p.label}\t{scores}\t{p.text}")
    return 0
