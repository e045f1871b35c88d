"""``make demo`` (service/demo.py): its pieces, without running the demo itself."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path

import pytest

from kdsearch.search.spec import StudySpec
from kdsearch.service.demo import (
    DemoError,
    extract_checkpoint,
    fmt_duration,
    format_leaderboard,
    format_params,
    format_progress,
    format_recommended,
    verify_checksum,
)

ROOT = Path(__file__).resolve().parents[1]


def _archive(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def test_quickstart_spec_is_valid() -> None:
    spec = StudySpec.model_validate(json.loads((ROOT / "examples/quickstart.json").read_text()))
    assert spec.data.source == "builtin:rotten_tomatoes" and spec.teacher.finetune
    assert spec.student.kind == "truncate" and spec.student.num_layers == 2
    assert [o.metric for o in spec.objectives] == ["accuracy", "conf_sigma"]
    assert [c.metric for c in spec.constraints] == ["conf_sigma"]
    assert spec.n_trials <= 6


def test_progress_line() -> None:
    detail = {
        "status": "running",
        "n_trials": 5,
        "trials": {"COMPLETE": 2, "PRUNED": 1, "FAIL": 0, "RUNNING": 1, "WAITING": 0},
    }
    line = format_progress(detail, 83.4)
    assert line.startswith("running")
    assert "3/5 trials done (2 complete, 1 pruned, 0 failed, 1 running)" in line
    assert "elapsed 1m23s" in line and "\n" not in line
    first = format_progress({"status": "queued", "n_trials": 5, "trials": {}}, 5)
    assert "0/5" in first and "teacher" in first
    ending = dict(detail, end_jobs={"total": 4, "done": 1})
    assert "test scoring / confirmation: 1/4 jobs done" in format_progress(ending, 1)
    assert fmt_duration(0) == "0m00s" and fmt_duration(3599.9) == "59m59s"


def test_leaderboard_table() -> None:
    rows = [
        {
            "number": 3,
            "state": "COMPLETE",
            "metrics": {"accuracy": 0.72, "conf_sigma": 0.0634, "ece_gap": None},
            "test": {"accuracy": 0.7, "conf_sigma": 0.07},
            "pareto": True,
            "feasible": True,
        },
        {"number": 1, "state": "PRUNED", "metrics": {}, "pareto": False, "feasible": False},
    ]
    lines = format_leaderboard(rows).splitlines()
    assert lines[0].split() == [
        "#",
        "state",
        "accuracy",
        "conf_sigma",
        "ece_gap",
        "test:accuracy",
        "test:conf_sigma",
        "pareto",
        "feasible",
    ]
    assert lines[2].split() == [
        "3",
        "COMPLETE",
        "0.7200",
        "0.0634",
        "-",
        "0.7000",
        "0.0700",
        "yes",
        "yes",
    ]
    assert lines[3].split() == ["1", "PRUNED", "-", "-", "-", "-", "-", "no"]
    assert len(format_leaderboard(rows * 10, limit=4).splitlines()) == 2 + 4
    assert "(no trials)" in format_leaderboard([])
    assert format_params({"lr": 0.000230612, "epochs": 1}) == "epochs=1, lr=0.0002306"


def test_recommended_lines_show_validation_test_and_confirmation() -> None:
    best = {
        "metrics": {"accuracy": 0.72, "conf_sigma": 0.0634},
        "test_metrics": {"accuracy": 0.7, "conf_sigma": 0.071},
        "confirmed": {
            "seeds": [1, 2],
            "test_mean": {"accuracy": 0.69, "conf_sigma": 0.075},
            "test_std": {"accuracy": 0.01, "conf_sigma": 0.004},
            "ci": {"accuracy": {"low": 0.66, "high": 0.72}},
        },
    }
    lines = format_recommended(best)
    assert lines[0].split() == [
        "validation",
        "(selected",
        "on):",
        "accuracy=0.7200",
        "conf_sigma=0.0634",
    ]
    assert lines[1].endswith("accuracy=0.7000  conf_sigma=0.0710")
    assert lines[2].endswith("accuracy=0.6900±0.0100  conf_sigma=0.0750±0.0040")
    assert lines[3].endswith("accuracy [0.6600, 0.7200]")
    assert format_recommended({"metrics": {}}) == [
        "validation (selected on):  accuracy=-  conf_sigma=-"
    ]


def test_checksum_and_extract(tmp_path: Path) -> None:
    data = _archive({"checkpoint/config.json": b"{}", "checkpoint/model.safetensors": b"x"})
    digest = hashlib.sha256(data).hexdigest()
    assert verify_checksum(data, digest.upper()) == digest
    with pytest.raises(DemoError, match="checksum mismatch"):
        verify_checksum(data + b"!", digest)
    with pytest.raises(DemoError, match="no X-Checksum-SHA256"):
        verify_checksum(data, None)

    dest = tmp_path / "student"
    (dest / "old").mkdir(parents=True)
    model = extract_checkpoint(data, dest)
    assert model == dest / "checkpoint" and (model / "model.safetensors").read_bytes() == b"x"
    assert not (dest / "old").exists()
    with pytest.raises(DemoError, match="no config.json"):
        extract_checkpoint(_archive({"readme.txt": b"hi"}), dest)
    with pytest.raises(DemoError, match="could not be unpacked"):
        extract_checkpoint(b"not a tarball", dest)
