"""A REST study over ``method`` (kd, theseus, early_exit) on SQLite: every trial names its
method on the leaderboard, the report shows the early-exit speed sweep and renders in
Chromium, and importances name ``method`` while setting a method's own options aside."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.trial import create_trial

from kdsearch.search.report import param_importances

from .search_helpers import tiny_spec
from .test_api import Server, alice_server
from .test_report import probe_in_chromium

SPACE = {
    "method": {"choices": ["kd", "theseus", "early_exit"]},
    "temperature": 2.0,
    "alpha": 0.5,
    "lr": 2e-4,
    "epochs": 0.5,
    "stage1_epochs": 0.5,
    "stage1_lr": 2e-4,
    "stage2_epochs": 0.25,
    "stage2_lr": 1e-4,
    "theseus_p0": 0.6,
    "early_exit_speed": 0.3,
    "early_exit_epochs": 1.0,
    "early_exit_lr": 2e-3,
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    yield from alice_server(tmp_path_factory.mktemp("api_methods"))


def test_a_method_that_cannot_run_with_the_family_is_a_422(server: Server) -> None:
    spec = tiny_spec(n_trials=2).model_dump(mode="json")
    spec["search_space"]["method"] = {"choices": ["kd", "early_exit"]}
    spec["search_space"]["student_layers"] = {"choices": [1, 2]}
    with server.client() as c:
        r = c.post("/v1/studies", json=spec)
    assert r.status_code == 422, r.text
    assert "search_space.method: method 'early_exit'" in r.text
    assert "of 1 layers (search_space.student_layers)" in r.text and "at least 2" in r.text


def test_a_study_over_methods_completes_and_its_report_renders(
    server: Server,
    tiny_ctx,
    tmp_path: Path,  # type: ignore[no-untyped-def]
) -> None:
    from kdsearch.search.runner import run_study

    spec = tiny_spec(
        n_trials=3,
        sampler="grid",
        search_space=SPACE,
        student={"kind": "truncate", "num_layers": 3},
        objectives=[{"metric": "accuracy"}, {"metric": "conf_sigma"}],
    ).model_dump(mode="json")
    with server.client() as c:
        r = c.post("/v1/studies", json=spec)
        assert r.status_code == 201, r.text
        sid = r.json()["id"]
        run_study(tiny_spec(**spec), server.database_url, str(server.artifact_dir), study_name=sid)
        study = c.get(f"/v1/studies/{sid}").json()
        assert study["status"] == "completed" and study["trials"]["COMPLETE"] == 3, study
        board = c.get(f"/v1/studies/{sid}/trials").json()["items"]
        methods = {row["method"]: row for row in board}
        assert set(methods) == {"kd", "theseus", "early_exit"}
        for name, row in methods.items():
            assert row["params"]["method"] == name
        # each method's own options reached only its trials' configs
        stored = optuna.load_study(study_name=sid, storage=server.database_url)
        options = {
            t.user_attrs["method"]: t.user_attrs["config"]["distill"]["options"]
            for t in stored.get_trials()
        }
        assert options["theseus"] == {"theseus": {"p0": 0.6}}
        assert options["kd"] == {}
        assert options["early_exit"] == {"early_exit": {"speed": 0.3, "epochs": 1.0, "lr": 2e-3}}
        exit_metrics = methods["early_exit"]["metrics"]
        assert 1.0 <= exit_metrics["mean_exit_layer"] <= 3.0
        assert "mean_exit_layer" not in methods["kd"]["metrics"]
        page = c.get(f"/v1/studies/{sid}/report")
        assert page.status_code == 200, page.text
    html = page.text
    exit_number = methods["early_exit"]["number"]
    assert f"Early exit: speed sweep of trial {exit_number}" in html
    table = re.search(r'<table id="speed-sweep-table">(.*?)</table>', html, re.S)
    assert table is not None and table.group(1).count("<tr") == 1 + 10  # header + 10 speeds
    assert 'id="plot-speed_sweep"' in html
    for name in ("kd", "theseus", "early_exit"):
        assert f">{name}<" in html  # the leaderboard's method column
    report = tmp_path / "report.html"
    report.write_text(html)
    result = probe_in_chromium(
        report,
        tmp_path,
        "sweep: doc.getElementById('speed-sweep') !== null"
        " && doc.getElementById('speed-sweep').getBoundingClientRect().height > 100",
    )
    assert result["sweep"] is True
    assert len(result["loaded"]) >= 2 and all(result["loaded"])


def test_importances_name_the_method_and_set_its_own_options_aside() -> None:
    method = CategoricalDistribution(["kd", "theseus"])
    temp = FloatDistribution(1.0, 4.0)
    p0 = FloatDistribution(0.0, 1.0)
    trials = []
    for i in range(12):
        name = "kd" if i % 2 else "theseus"
        params = {"method": name, "temperature": 1.0 + (i % 3)}
        dists = {"method": method, "temperature": temp}
        if name == "theseus":
            params["theseus_p0"], dists["theseus_p0"] = 0.1 * (i % 5), p0
        value = 0.8 if name == "kd" else 0.6  # the method decides the metric
        trials.append(
            create_trial(
                params=params,
                distributions=dists,
                value=value + 0.001 * i,
                user_attrs={"metric:accuracy": value + 0.001 * i},
            )
        )
    imp = param_importances(trials, "accuracy", "maximize")
    assert set(imp.values) == {"method", "temperature"}
    assert imp.values["method"] > 0.1  # named and ranked (the estimator is Optuna's default)
    assert imp.note is not None and "theseus_p0" in imp.note
