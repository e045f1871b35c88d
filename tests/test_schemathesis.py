"""schemathesis against the live /openapi.json: no request makes the server answer 5xx.

Two passes: one with ``{study_id}`` pinned to a real study holding finished trials (so the
study, leaderboard, trial, plot, checkpoint and cancel routes are exercised past their
404s, with bodies generated from the published StudySpec schema), then ``DELETE`` on it.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import optuna
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial

from kdsearch.search import study as study_mod
from kdsearch.search.storage import make_storage
from kdsearch.service.keys import create_key
from kdsearch.service.settings import Settings

from .search_helpers import ready_engine, tiny_spec
from .test_api import _serve

SCHEMATHESIS = Path(sys.executable).parent / "schemathesis"
DISTS = {
    "temperature": FloatDistribution(1.0, 4.0),
    "alpha": FloatDistribution(0.0, 1.0),
    "lr": FloatDistribution(5e-5, 3e-4, log=True),
}


def _seed(url: str) -> str:
    """A study with two COMPLETE trials (one infeasible) and one FAIL, as workers leave them."""
    engine = ready_engine(url)
    storage = make_storage(url, engine)
    spec = tiny_spec(constraints=[{"metric": "conf_sigma", "max": 0.1}])
    name = study_mod.create(engine, storage, spec, study_name="kd-seeded", owner="fuzzer")
    study = optuna.load_study(study_name=name, storage=storage)
    for acc, sigma in [(0.74, 0.08), (0.78, 0.13)]:
        study.add_trial(
            create_trial(
                values=[acc, sigma],
                params={"temperature": 2.0, "alpha": 0.5, "lr": 1e-4},
                distributions=DISTS,
                user_attrs={"metric:accuracy": acc, "metric:conf_sigma": sigma},
                constraints={"conf_sigma": sigma - 0.1},
            )
        )
    study.add_trial(
        create_trial(
            state=TrialState.FAIL,
            params={"temperature": 3.0, "alpha": 0.1, "lr": 2e-4},
            distributions=DISTS,
            user_attrs={"error": "RuntimeError: out of memory"},
        )
    )
    engine.dispose()
    return name


def _schemathesis(base: str, key: str, cwd: Path, *args: str) -> int:
    proc = subprocess.run(
        [
            str(SCHEMATHESIS),
            *(("--config-file", str(cwd / "schemathesis.toml")) if "--pinned" in args else ()),
            "run",
            f"{base}/openapi.json",
            "--checks",
            "not_a_server_error",
            "--generation-deterministic",
            "-H",
            f"Authorization: Bearer {key}",
            *(a for a in args if a != "--pinned"),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        cwd=cwd,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    found = re.search(r"(\d+) generated, (\d+) passed", proc.stdout)
    assert found is not None, proc.stdout[-2000:]
    generated, passed = map(int, found.groups())
    assert generated == passed, proc.stdout[-2000:]
    return generated


def test_no_server_errors_under_generated_requests(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'kd.db'}"
    key = create_key(ready_engine(url), "fuzzer")
    sid = _seed(url)
    (tmp_path / "schemathesis.toml").write_text(f'[parameters]\nstudy_id = "{sid}"\n')
    settings = Settings(database_url=url, artifact_dir=str(tmp_path / "art"), max_trials=5)
    for base in _serve(settings):
        pinned = _schemathesis(
            base,
            key,
            tmp_path,
            "--pinned",
            "--exclude-method",
            "DELETE",
            "--max-examples",
            "25",
            "--phases",
            "examples,coverage,fuzzing",
        )
        assert pinned > 200
        # The seeded study was really reached: its leaderboard answered, it still exists.
        import httpx

        with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {key}"}) as c:
            rows = c.get(f"/v1/studies/{sid}/trials?limit=10").json()["items"]
            assert sorted(r["state"] for r in rows) == ["COMPLETE", "COMPLETE", "FAIL"]
        deleting = _schemathesis(
            base, key, tmp_path, "--pinned", "--include-method", "DELETE", "--max-examples", "5"
        )
        assert deleting >= 1
        unpinned = _schemathesis(
            base, key, tmp_path, "--max-examples", "10", "--phases", "examples,coverage,fuzzing"
        )
        assert unpinned > 50
