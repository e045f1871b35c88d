"""A REST study over student families: it completes on SQLite, and its best student (a
BiLSTM or TextCNN) downloads and predicts with ``kdsearch predict``, in torch and ONNX."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from kdsearch.service.cli import main as cli_main

from .search_helpers import tiny_spec
from .test_api import Server, alice_server

SPACE = {
    "family": {"choices": ["bilstm", "textcnn"]},
    "bilstm_lr": {"low": 2e-3, "high": 5e-3, "log": True},
    "textcnn_lr": 3e-3,
    "bilstm_embedding_dim": 64,
    "bilstm_hidden_size": {"choices": [32, 64]},
    "textcnn_embedding_dim": 64,
    "textcnn_channels": 32,
    "temperature": {"low": 1.0, "high": 4.0},
    "alpha": 0.2,
    "epochs": 2,
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    yield from alice_server(tmp_path_factory.mktemp("api_families"))


def test_unknown_family_is_a_422_naming_the_known_ones(server: Server) -> None:
    spec = tiny_spec(n_trials=2).model_dump(mode="json")
    spec["search_space"]["family"] = {"choices": ["transformer", "gru"]}
    with server.client() as c:
        r = c.post("/v1/studies", json=spec)
    assert r.status_code == 422
    assert "unknown student.family 'gru': use one of bilstm, textcnn, transformer" in r.text


def test_transfer_file_outside_the_data_roots_is_refused(server: Server, tmp_path: Path) -> None:
    spec = tiny_spec(n_trials=2).model_dump(mode="json")
    spec["data"]["transfer"] = f"csv:{tmp_path / 'posts.csv'}"
    with server.client() as c:
        r = c.post("/v1/studies", json=spec)
    assert r.status_code in (400, 403, 422), r.text
    assert "data.transfer" in r.text and "outside the allowed data roots" in r.text


def test_family_study_completes_and_its_student_predicts(
    server: Server,
    tiny_ctx,
    capsys: pytest.CaptureFixture[str],  # type: ignore[no-untyped-def]
) -> None:
    from kdsearch.search.runner import run_study

    spec = tiny_spec(
        n_trials=2,
        search_space=SPACE,
        keep={"onnx": True},
        objectives=[{"metric": "accuracy"}, {"metric": "conf_sigma"}, {"metric": "latency_ms"}],
        constraints=[{"metric": "speedup_vs_teacher", "min": 1.5}],
    ).model_dump(mode="json")
    with server.client() as c:
        r = c.post("/v1/studies", json=spec)
        assert r.status_code == 201, r.text
        sid = r.json()["id"]
        run_study(tiny_spec(**spec), server.database_url, str(server.artifact_dir), study_name=sid)
        study = c.get(f"/v1/studies/{sid}").json()
        assert study["status"] == "completed" and study["trials"]["COMPLETE"] == 2
        best = study["recommended"]
        family = best["params"]["family"]
        assert family in {"bilstm", "textcnn"}
        assert "student_layers" not in best["params"] and "lr" not in best["params"]
        assert best["metrics"]["speedup_vs_teacher"] >= 1.5  # the constraint held
        assert study["objectives"] == ["accuracy", "conf_sigma", "latency_ms"]
        board = c.get(f"/v1/studies/{sid}/trials").json()["items"]
        for row in board:
            assert row["feasible"] == (row["metrics"]["speedup_vs_teacher"] >= 1.5)
            assert row["values"][2] == row["metrics"]["latency_ms"]
        assert best["metrics"]["params"] < 0.7 * tiny_ctx.teacher.module.count_parameters()
        ck = c.get(f"/v1/studies/{sid}/checkpoint")
        assert ck.status_code == 200, ck.text
    archive = server.root / f"{sid}.tar.gz"
    archive.write_bytes(ck.content)

    texts = ["a warm, funny and moving film", "a dull, lifeless mess"]
    answers = {}
    for flags in ([], ["--onnx"]):
        # options may come before, between or after the texts
        assert cli_main(["predict", str(archive), texts[0], "--json", *flags, texts[1]]) == 0
        lines = capsys.readouterr().out.strip().splitlines()
        answers[bool(flags)] = [json.loads(line) for line in lines]
    torch_rows, onnx_rows = answers[False], answers[True]
    assert [r["text"] for r in torch_rows] == texts
    assert [r["label"] for r in torch_rows] == [r["label"] for r in onnx_rows]
    for a, b in zip(torch_rows, onnx_rows, strict=True):
        assert set(a["scores"]) == {"rotten", "fresh"}
        for name in a["scores"]:
            assert abs(a["scores"][name] - b["scores"][name]) < 1e-4
    # the checkpoint says which family it is
    import tarfile

    with tarfile.open(archive) as tar:
        meta = json.load(tar.extractfile("checkpoint/kdsearch_student.json"))  # type: ignore[arg-type]
    assert meta["family"] == family


def test_predict_refuses_what_is_not_a_checkpoint(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    assert cli_main(["predict", str(tmp_path), "text"]) == 2
    assert "no labels.json: not a kdsearch student folder" in capsys.readouterr().err
    bogus = tmp_path / "x.tar.gz"
    bogus.write_bytes(b"not a tarball")
    assert cli_main(["predict", str(bogus), "text"]) == 2
    assert "neither a student folder nor a checkpoint .tar.gz" in capsys.readouterr().err


def test_every_engine_limit_is_a_422_naming_the_parameter(server: Server) -> None:
    from .engine_limits import outside_limits

    cases = outside_limits()
    assert len(cases) >= 15
    assert {"temperature", "alpha", "batch_size", "bilstm_layers", "augment_copies"} <= {
        n for n, _ in cases
    }
    with server.client() as c:
        for name, value in cases:
            for given in (value, {"choices": [value]}):
                spec = tiny_spec(n_trials=2).model_dump(mode="json")
                spec["search_space"] = {name: given}
                r = c.post("/v1/studies", json=spec)
                assert r.status_code == 422, (name, given, r.text)
                assert f"search_space.{name}: the value" in r.text, (name, r.text)
