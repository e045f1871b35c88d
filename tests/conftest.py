"""Shared fixtures: an isolated KDSEARCH_HOME and one tiny prepared context per session."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("MPLBACKEND", "Agg")

import transformers

transformers.logging.set_verbosity_error()
transformers.utils.logging.disable_progress_bar()

from kdsearch.distill import paths  # noqa: E402
from kdsearch.distill.config import RunConfig  # noqa: E402

TINY = {
    "data": {
        "source": "builtin:rotten_tomatoes",
        "max_train": 320,
        "max_eval": 96,
        "max_test": 120,
        "max_length": 48,
    },
    "teacher": {
        "model": "builtin:minilm-l6",
        "recipe": {"epochs": 3, "lr": 1.5e-4, "batch_size": 16},
    },
    "student": {"kind": "truncate", "num_layers": 2},
    "distill": {"temperature": 2.0, "alpha": 0.5},
    "train": {"epochs": 1, "batch_size": 32, "lr": 1e-4},
    # latency is a benchmark figure; tests only need it measured, not measured well
    "metrics": {"latency_repeats": 2},
}


@pytest.fixture(scope="session", autouse=True)
def kd_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Each test session gets its own cache root; fetched datasets are shared, not re-fetched."""
    default_datasets = paths.datasets_dir()
    home = tmp_path_factory.mktemp("kdsearch_home")
    if default_datasets.is_dir():
        (home / "datasets").symlink_to(default_datasets, target_is_directory=True)
    old = os.environ.get("KDSEARCH_HOME")
    os.environ["KDSEARCH_HOME"] = str(home)
    yield home
    if old is None:
        os.environ.pop("KDSEARCH_HOME", None)
    else:
        os.environ["KDSEARCH_HOME"] = old


def tiny_config(**overrides: dict[str, object]) -> RunConfig:
    """The tiny config with per-section overrides, e.g. ``tiny_config(distill={...})``."""
    data: dict[str, dict[str, object]] = {k: dict(v) for k, v in TINY.items()}  # type: ignore[call-overload]
    for section, values in overrides.items():
        data.setdefault(section, {}).update(values)
    return RunConfig.model_validate(data)


@pytest.fixture(scope="session")
def tiny_ctx(kd_home: Path):  # type: ignore[no-untyped-def]
    """A prepared context (teacher fine-tuned on 192 snippets, logits cached), shared."""
    from kdsearch.distill.context import prepare_context

    return prepare_context(tiny_config())
