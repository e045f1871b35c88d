"""The service's settings: one pydantic-settings class, read from ``KDSEARCH_*`` variables.

Lists take JSON, e.g. ``KDSEARCH_DATA_ROOTS='["/data", "/srv/corpora"]'``.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from kdsearch.search.storage import DEFAULT_URL


class Settings(BaseSettings):
    """Everything the REST service reads from its environment."""

    model_config = SettingsConfigDict(env_prefix="KDSEARCH_", extra="ignore")

    database_url: str = Field(default=DEFAULT_URL, description="Optuna's and kdsearch's tables")
    db_pool_size: int = Field(
        default=5, ge=1, description="PostgreSQL connections kept per pool (two pools)"
    )
    db_max_overflow: int = Field(
        default=10, ge=0, description="extra PostgreSQL connections per pool under load"
    )
    artifact_dir: str = Field(default="./kdsearch-artifacts", description="folder or s3://bucket")
    max_trials: int = Field(default=200, ge=1, description="largest n_trials a study may ask for")
    max_spec_bytes: int = Field(default=65536, ge=256, description="largest POST /v1/studies body")
    max_active_studies_per_key: int = Field(
        default=5, ge=1, description="queued + running studies one owner may have at once"
    )
    open_mode: bool = Field(default=False, description="requests without a key act as 'anonymous'")
    allow_hub: bool = Field(
        default=False, description="accept Hugging Face hub models and datasets"
    )
    data_roots: list[Path] = Field(
        default_factory=lambda: [Path(".")], description="csv:/jsonl: files must lie below"
    )
    model_roots: list[Path] = Field(
        default_factory=lambda: [Path(".")], description="local teacher/student folders"
    )
