"""Input safety for submitted specs: local paths under the configured roots, hub ids only
when allowed, and the server's limits. Each check raises a 4xx naming the field."""

from __future__ import annotations

from pathlib import Path

from fastapi import HTTPException

from kdsearch.search import tables
from kdsearch.search.spec import StudySpec

from ..settings import Settings


def _reject(field: str, message: str, status: int = 422) -> HTTPException:
    return HTTPException(status, f"{field}: {message}")


def _resolve(field: str, path: str) -> Path:
    try:
        if not path or "\x00" in path:
            raise ValueError
        return Path(path).expanduser().resolve()
    except (ValueError, RuntimeError, OSError):
        raise _reject(field, f"{path!r} is not a usable path: give an absolute path") from None


def _under(field: str, path: str, roots: list[Path]) -> bool:
    resolved = _resolve(field, path)
    return any(resolved.is_relative_to(Path(r).expanduser().resolve()) for r in roots)


def _roots_text(roots: list[Path]) -> str:
    return ", ".join(str(Path(r).expanduser().resolve()) for r in roots)


def _looks_local(name: str) -> bool:
    # The same rule as distill.teacher.resolve_model_location: what is not local is a hub id.
    return name.startswith((".", "/", "~")) or name.count("/") > 1 or Path(name).exists()


def check_model(field: str, name: str, settings: Settings) -> None:
    if name.startswith("builtin:"):
        from kdsearch.distill.teacher import BUILTIN_BACKBONES

        if name not in BUILTIN_BACKBONES:
            raise _reject(
                field, f"unknown builtin model {name!r}: use {', '.join(BUILTIN_BACKBONES)}"
            )
        return
    if _looks_local(name):
        if not _under(field, name, settings.model_roots):
            raise _reject(
                field,
                f"local folder {name!r} is outside the allowed model roots "
                f"({_roots_text(settings.model_roots)}): move it there or set KDSEARCH_MODEL_ROOTS",
            )
        return
    if not settings.allow_hub:
        raise _reject(
            field,
            f"hub model {name!r} is not allowed on this server: use builtin:minilm-l6 or a "
            "folder under the model roots (an operator can set KDSEARCH_ALLOW_HUB=true)",
        )


def check_data(source: str, settings: Settings, field: str = "data.source") -> None:
    scheme, _, rest = source.partition(":")
    if scheme in {"csv", "jsonl"}:
        if not _under(field, rest, settings.data_roots):
            raise _reject(
                field,
                f"file {rest!r} is outside the allowed data roots "
                f"({_roots_text(settings.data_roots)}): move it there or set KDSEARCH_DATA_ROOTS",
            )
    elif scheme == "hub" and not settings.allow_hub:
        raise _reject(
            "data.source",
            f"hub dataset {rest!r} is not allowed on this server: use a builtin: source or a "
            "csv:/jsonl: file under the data roots (an operator can set KDSEARCH_ALLOW_HUB=true)",
        )


def check_spec(spec: StudySpec, settings: Settings) -> None:
    if spec.n_trials > settings.max_trials:
        raise _reject(
            "n_trials",
            f"{spec.n_trials} is above this server's limit of {settings.max_trials}: "
            "ask for fewer trials (KDSEARCH_MAX_TRIALS sets the limit)",
        )
    check_data(spec.data.source, settings)
    if spec.data.transfer is not None:
        check_data(spec.data.transfer, settings, "data.transfer")
    check_model("teacher.model", spec.teacher.model, settings)
    if spec.student.path is not None:
        check_model("student.path", spec.student.path, settings)


def quota_error(exc: tables.QuotaExceeded) -> HTTPException:
    return HTTPException(
        429,
        f"owner {exc.owner!r} already has {exc.active} queued or running studies (limit "
        f"{exc.limit}): wait for one to finish or cancel one with POST /v1/studies/{{id}}/cancel",
    )
