"""schemathesis against the live /openapi.json: no request makes the server answer 5xx."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from search.storage import make_engine
from service.keys import create_key
from service.settings import Settings

from .test_api import _serve

SCHEMATHESIS = Path(sys.executable).parent / "schemathesis"


def test_no_server_errors_under_generated_requests(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'kd.db'}"
    key = create_key(make_engine(url), "fuzzer")
    settings = Settings(database_url=url, artifact_dir=str(tmp_path / "art"), max_trials=5)
    for base in _serve(settings):
        proc = subprocess.run(
            [
                str(SCHEMATHESIS),
                "run",
                f"{base}/openapi.json",
                "--checks",
                "not_a_server_error",
                "--max-examples",
                "25",
                "--generation-deterministic",
                "-H",
                f"Authorization: Bearer {key}",
                "--phases",
                "examples,coverage,fuzzing",
            ],
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
            cwd=tmp_path,
        )
        assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
        found = re.search(r"(\d+) generated, (\d+) passed", proc.stdout)
        assert found is not None, proc.stdout[-2000:]
        generated, passed = map(int, found.groups())
        assert generated == passed and generated > 200
