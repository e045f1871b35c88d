"""Device choice and mixed precision."""

from __future__ import annotations

import contextlib
import os
import random
from collections.abc import Iterator

import numpy as np
import torch

from .errors import ConfigError


def resolve_device(spec: str) -> torch.device:
    """``auto`` = the first visible CUDA device (``CUDA_VISIBLE_DEVICES`` applies), else CPU."""
    if spec == "auto":
        return torch.device("cuda:0" if torch.cuda.is_available() else "cpu")
    if spec.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(f"train.device is {spec!r} but no CUDA device is visible: use 'cpu'")
        index = int(spec.split(":", 1)[1]) if ":" in spec else 0
        if index >= torch.cuda.device_count():
            raise ConfigError(
                f"train.device {spec!r}: only {torch.cuda.device_count()} CUDA device(s) visible"
            )
        return torch.device(f"cuda:{index}")
    return torch.device("cpu")


def autocast(device: torch.device, bf16: bool) -> contextlib.AbstractContextManager[object]:
    """bf16 autocast on CUDA; a no-op elsewhere (CPU stays float32 for determinism)."""
    if device.type == "cuda" and bf16:
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


@contextlib.contextmanager
def deterministic(device: torch.device) -> Iterator[None]:
    """Deterministic kernels on CPU; on CUDA only cuDNN determinism (speed matters there)."""
    previous = torch.are_deterministic_algorithms_enabled()
    if device.type == "cpu":
        torch.use_deterministic_algorithms(True, warn_only=True)
    else:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.backends.cudnn.deterministic = True
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous)


def to_device(module: torch.nn.Module, device: torch.device) -> None:
    """Move a module in place (typed as nn.Module: transformers' ``to`` confuses mypy)."""
    module.to(device)
