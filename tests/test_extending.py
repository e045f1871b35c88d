"""docs/extending.md's metric walk-through, done exactly as the page says.

The code block headed ``# brier_gap.py`` is saved as that module, named in
``KDSEARCH_PLUGINS``, and used as an objective and a constraint: by the command line in a
fresh process, and by a real one-trial study in this one.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from kdsearch.distill import metric_registry
from kdsearch.distill.errors import ConfigError
from kdsearch.distill.plugins import load_plugins
from kdsearch.search.spec import StudySpec

from .proc_helpers import run_cli

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "extending.md"


def page_block(first_line: str) -> str:
    blocks = re.findall(r"```python\n(.*?)```", PAGE.read_text(encoding="utf-8"), re.S)
    (block,) = [b for b in blocks if b.startswith(first_line + "\n")]
    return block


@pytest.fixture
def plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    folder = tmp_path / "plugins"
    folder.mkdir()
    (folder / "brier_gap.py").write_text(page_block("# brier_gap.py"))
    monkeypatch.syspath_prepend(str(folder))
    monkeypatch.setenv("KDSEARCH_PLUGINS", "brier_gap")
    yield folder
    metric_registry.unregister_metric("brier_gap")
    sys.modules.pop("brier_gap", None)


def spec_with_brier(**extra: object) -> dict[str, object]:
    return {
        "teacher": {"model": "builtin:minilm-l6", "finetune": False},
        "data": {
            "source": "builtin:rotten_tomatoes",
            "max_train": 64,
            "max_eval": 48,
            "max_test": 48,
            "max_length": 32,
        },
        "student": {"kind": "truncate", "num_layers": 1},
        "search_space": {"temperature": {"low": 1.0, "high": 4.0}, "epochs": 1},
        "metrics": {"latency_repeats": 1},
        "keep": {"onnx": False},
        "objectives": [{"metric": "accuracy"}, {"metric": "brier_gap"}],
        "constraints": [{"metric": "brier_gap", "max": 0.5}],
        "n_trials": 1,
        **extra,
    }


def test_the_metric_plug_in_works_as_the_page_says(plugin: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown metric 'brier_gap'"):
        StudySpec.model_validate(spec_with_brier())  # not loaded yet
    assert load_plugins() == ["brier_gap"]
    # its function, on a hand-made pair: squared distances 0.02 and 0.18, mean 0.1
    teacher = np.log(np.array([[0.9, 0.1], [0.2, 0.8]]))
    student = np.log(np.array([[0.8, 0.2], [0.5, 0.5]]))
    m = metric_registry.confidence_metrics(teacher, student, np.array([0, 1]))
    assert m["brier_gap"] == pytest.approx(0.1)
    assert metric_registry.worst_value("brier_gap") == 2.0
    assert metric_registry.format_value("brier_gap", 0.123456) == "0.1235"
    spec = StudySpec.model_validate(spec_with_brier())
    assert [o.direction for o in spec.objectives] == ["maximize", "minimize"]

    # a real study records it for every trial and uses it as objective and constraint
    import kdsearch

    study = kdsearch.Study.create(
        spec, storage=f"sqlite:///{tmp_path / 'kd.db'}", artifacts=tmp_path / "art"
    )
    assert study.run().status == "completed"
    (row,) = study.leaderboard(sort="brier_gap")
    assert row["state"] == "COMPLETE"
    value = row["metrics"]["brier_gap"]
    assert isinstance(value, float) and 0.0 <= value <= 2.0
    assert row["feasible"] is (value <= 0.5)


def test_the_command_line_loads_the_plug_in(plugin: Path, tmp_path: Path) -> None:
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps(spec_with_brier()))
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    env = {"PYTHONPATH": str(plugin), "KDSEARCH_PLUGINS": "brier_gap"}
    made = run_cli("study", "create", "--spec", str(spec), "--database-url", url, env=env)
    assert made.returncode == 0, made.stderr
    # without the plug-in the same spec is refused, naming the metric, without a traceback
    env["KDSEARCH_PLUGINS"] = ""
    refused = run_cli("study", "create", "--spec", str(spec), "--database-url", url, env=env)
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert "unknown metric 'brier_gap'" in refused.stderr
    # and a plug-in that cannot be imported is a clear error
    env["KDSEARCH_PLUGINS"] = "no_such_plugin"
    broken = run_cli("study", "create", "--spec", str(spec), "--database-url", url, env=env)
    assert broken.returncode == 2 and "Traceback" not in broken.stderr
    assert "KDSEARCH_PLUGINS: cannot import plug-in 'no_such_plugin'" in broken.stderr


def test_a_missing_plug_in_names_the_variable() -> None:
    with pytest.raises(ConfigError, match="KDSEARCH_PLUGINS: cannot import plug-in 'nope'"):
        load_plugins("nope")
    assert load_plugins(" , ") == []
