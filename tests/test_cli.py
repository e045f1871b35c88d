"""The kdsearch CLI, run as a real subprocess: outputs, and one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from .conftest import TINY
from .proc_helpers import run_cli

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def write_config(path: Path, data: object) -> Path:
    path.write_text(yaml.safe_dump(data))
    return path


def test_distill_writes_metrics_checkpoint_and_plots(tiny_ctx, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    cfg = write_config(tmp_path / "c.yaml", TINY)  # same teacher as tiny_ctx: cached
    out = tmp_path / "out"
    proc = run_cli("distill", "--config", str(cfg), "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((out / "metrics.json").read_text())
    m = summary["metrics"]
    assert 0.0 <= m["accuracy"] <= 1.0 and m["params"] > 0
    assert f"accuracy             {m['accuracy']:.4f}" in proc.stdout
    assert (out / "checkpoint" / "model.safetensors").is_file()
    assert (out / "plots" / "reliability.png").stat().st_size > 1000
    assert (out / "plots" / "confidence_scatter.png").stat().st_size > 1000
    assert "distill" in proc.stderr  # the progress bar
    assert "teacher fine-tune" not in proc.stderr  # the cached teacher was reused


def test_teacher_command_reuses_cache(tiny_ctx, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps(TINY))
    proc = run_cli("teacher", "--config", str(cfg), "--no-progress")
    assert proc.returncode == 0, proc.stderr
    assert str(tiny_ctx.teacher.path) in proc.stdout
    assert "validation accuracy" in proc.stdout


def test_quick_example_is_valid() -> None:
    from kdsearch.distill.config import RunConfig
    from kdsearch.distill.configfile import load_model

    cfg = load_model(RunConfig, EXAMPLES / "distill_quick.yaml")
    assert cfg.student.kind == "truncate" and cfg.student.num_layers == 2
    assert cfg.data.source == "builtin:rotten_tomatoes"
    assert cfg.teacher.model == "builtin:minilm-l6" and cfg.teacher.finetune


BAD_CONFIGS = [
    ({"distill": {"temperature": -1}}, "distill.temperature: Input should be greater than 0"),
    (
        {"distill": {"mode": "three_stage"}},
        "distill.mode: must be one of 'one_stage' or 'two_stage'",
    ),
    ({"distill": {"temprature": 2}}, "distill.temprature: unknown field"),
    ({"student": {"kind": "pretrained"}}, "student.path is required"),
    ({"data": {"source": "s3://bucket/x"}}, "unknown data source 's3://bucket/x'"),
    ({"data": {"source": "csv:/no/such/file.csv"}}, "/no/such/file.csv"),
    ({"distill": {"soft_loss": "mse"}}, "unknown distill.soft_loss 'mse'"),
    ({"distill": {"layer_mapping": "middle"}}, "unknown distill.layer_mapping 'middle'"),
    ({"train": {"device": "tpu"}}, "train.device 'tpu' is not one of auto, cpu, cuda, cuda:N"),
]


@pytest.mark.parametrize(("override", "message"), BAD_CONFIGS)
def test_bad_config_is_one_clear_line(
    tmp_path: Path, override: dict[str, dict[str, object]], message: str
) -> None:
    data = {k: dict(v) for k, v in TINY.items()}
    for section, values in override.items():
        data[section].update(values)
    cfg = write_config(tmp_path / "bad.yaml", data)
    proc = run_cli("distill", "--config", str(cfg), "--out", str(tmp_path / "o"), "--no-progress")
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("kdsearch: error: ")
    assert message in lines[0]


def test_missing_column_in_csv(tmp_path: Path) -> None:
    csv = tmp_path / "d.csv"
    csv.write_text("sentence,label\nok,1\nbad,0\n")
    data = {k: dict(v) for k, v in TINY.items()}
    data["data"].update({"source": f"csv:{csv}"})
    proc = run_cli(
        "distill",
        "--config",
        str(write_config(tmp_path / "c.yaml", data)),
        "--out",
        str(tmp_path / "o"),
        "--no-progress",
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "text" in proc.stderr and "data.text_field" in proc.stderr


def test_missing_and_malformed_config_file(tmp_path: Path) -> None:
    proc = run_cli("distill", "--config", str(tmp_path / "nope.yaml"), "--out", str(tmp_path))
    assert proc.returncode == 2
    assert (
        proc.stderr.strip()
        == f"kdsearch: error: config file {tmp_path / 'nope.yaml'} does not exist"
    )
    bad = tmp_path / "bad.yaml"
    bad.write_text("data: [unclosed\n")
    proc = run_cli("distill", "--config", str(bad), "--out", str(tmp_path))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "is not valid yaml" in proc.stderr
    bad.write_text("- just\n- a list\n")
    proc = run_cli("teacher", "--config", str(bad))
    assert "must hold a mapping at the top level" in proc.stderr


def test_usage_error_without_arguments() -> None:
    proc = run_cli()
    assert proc.returncode == 2
    assert "usage: kdsearch" in proc.stderr


def test_data_examples_writes_a_pair_and_a_multilabel_task(tmp_path: Path) -> None:
    import csv

    proc = run_cli("data", "examples", str(tmp_path / "ex"), "--rows", "40")
    assert proc.returncode == 0, proc.stderr
    with (tmp_path / "ex" / "pairs.csv").open() as fh:
        pairs = list(csv.DictReader(fh))
    with (tmp_path / "ex" / "multilabel.csv").open() as fh:
        posts = list(csv.DictReader(fh))
    assert len(pairs) == len(posts) == 40
    assert {r["label"] for r in pairs} == {"entailment", "contradiction"}
    assert all(r["text"] and r["text_pair"] for r in pairs)
    assert set(posts[0]) == {"text", "rotten", "fresh", "plot"}
    assert all({r[k] for k in ("rotten", "fresh", "plot")} <= {"0", "1"} for r in posts)
    assert all(any(r[k] == "1" for k in ("rotten", "fresh", "plot")) for r in posts)
    bad = run_cli("data", "examples", str(tmp_path / "ex"), "--rows", "9000")
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert "--rows must be between 10 and 3000 (got 9000)" in bad.stderr
