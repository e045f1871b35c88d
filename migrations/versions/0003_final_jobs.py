"""End-of-study jobs (test scoring, confirmation re-runs) and each study's final results.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "kdsearch_jobs",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("study_name", sa.String(255), nullable=False, index=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("trial_number", sa.Integer, nullable=False),
        sa.Column("seed", sa.Integer, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("worker", sa.String(255), nullable=True),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("result_json", sa.Text, nullable=True),
        sa.Column("error", sa.Text, nullable=True),
        sa.UniqueConstraint("study_name", "kind", "trial_number", "seed", name="uq_kdsearch_job"),
    )
    with op.batch_alter_table("kdsearch_study_runs") as batch:
        batch.add_column(sa.Column("results_json", sa.Text, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("kdsearch_study_runs") as batch:
        batch.drop_column("results_json")
    op.drop_table("kdsearch_jobs")
