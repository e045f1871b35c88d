"""Fixtures for the fault tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from ..search_helpers import pg_available, pg_database


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh PostgreSQL database, dropped afterwards; skips when PostgreSQL is down."""
    if not pg_available():
        pytest.skip("PostgreSQL on 127.0.0.1:5432 is down")
    with pg_database() as url:
        yield url


@pytest.fixture(scope="session")
def fault_teacher(kd_home: Path, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A local teacher folder made in seconds: the builtin backbone with a fresh, seeded
    2-class head (safetensors + tokenizer). The fault tests exercise the machinery, not the
    science, so they skip the minutes-long teacher fine-tune the other tests share."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from kdsearch.distill.teacher import resolve_model_location

    source = resolve_model_location("builtin:minilm-l6", role="teacher")
    folder = tmp_path_factory.mktemp("models") / "teacher"
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(source, num_labels=2)
    model.save_pretrained(folder)
    AutoTokenizer.from_pretrained(source).save_pretrained(folder)
    return str(folder)
