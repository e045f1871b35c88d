"""Fault: a local teacher whose classifier weights are NaN (a corrupt or diverged model)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from kdsearch.search import tables

from ..proc_helpers import run_cli
from ..search_helpers import ready_engine
from ._support import fault_spec

pytestmark = pytest.mark.faults


def test_nan_teacher_fails_the_study_before_any_trial(fault_teacher: str, tmp_path: Path) -> None:
    folder = tmp_path / "models" / "nan-teacher"
    model = AutoModelForSequenceClassification.from_pretrained(fault_teacher)
    with torch.no_grad():
        model.classifier.weight.fill_(float("nan"))
    model.save_pretrained(folder)  # safetensors, as a user's fine-tuned teacher would be
    AutoTokenizer.from_pretrained(fault_teacher).save_pretrained(folder)
    spec = fault_spec(str(folder), n_trials=5)
    spec_path = tmp_path / "spec.yaml"
    spec_path.write_text(yaml.safe_dump(spec.model_dump(mode="json")))
    url = f"sqlite:///{tmp_path / 'kd.db'}"
    ran = run_cli(
        "study", "run", "--spec", str(spec_path), "--database-url", url,
        "--artifact-dir", str(tmp_path / "art"),
    )  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    assert "Traceback" not in ran.stderr, ran.stderr
    name = next(
        ln.split()[1].rstrip(":") for ln in ran.stdout.splitlines() if ln.startswith("study ")
    )
    expected = "the teacher produced NaN/inf logits on 320 train examples"
    run = tables.get(ready_engine(url), name)
    assert run is not None and run.status == "failed"
    assert run.error == f"preparing the study failed: {expected}: check the teacher weights"
    assert f"study {name}: failed (no trials)" in ran.stdout  # no budget burnt
    assert f"error: preparing the study failed: {expected}" in ran.stdout
