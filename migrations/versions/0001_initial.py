"""kdsearch's own tables: study runs (spec, budget, status, owner), artifacts, API keys.

Revision ID: 0001
Revises:
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "kdsearch_study_runs",
        sa.Column("study_name", sa.String(255), primary_key=True),
        sa.Column("spec_json", sa.Text, nullable=False),
        sa.Column("n_trials", sa.Integer, nullable=False),
        sa.Column("claimed", sa.Integer, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("owner", sa.String(255), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("deadline_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_table(
        "kdsearch_artifacts",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("study_name", sa.String(255), nullable=False),
        sa.Column("trial_number", sa.Integer, nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("artifact_id", sa.String(64), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=True),
        sa.Column("size_bytes", sa.BigInteger, nullable=True),
        sa.Column("deleted", sa.Boolean, nullable=False),
        sa.UniqueConstraint("study_name", "trial_number", "name", name="uq_kdsearch_artifact"),
    )
    op.create_index("ix_kdsearch_artifacts_study_name", "kdsearch_artifacts", ["study_name"])


def downgrade() -> None:
    op.drop_index("ix_kdsearch_artifacts_study_name", table_name="kdsearch_artifacts")
    op.drop_table("kdsearch_artifacts")
    op.drop_table("kdsearch_study_runs")
