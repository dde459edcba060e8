"""The embedded queue's tables: jobs, namespace activity, per-context activity rates,
worker heartbeats and counters.

Queue files made before the queue's tables were migrated (by the queue's own
``CREATE TABLE IF NOT EXISTS`` script) have these tables but no version table: this
revision creates only what is missing, so it adopts them.

Revision ID: 0001_jobs
Revises:
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0001_jobs"
down_revision = None
branch_labels = None
depends_on = None


def _tables() -> dict[str, list[Any]]:
    """name -> columns and constraints (times are Unix seconds)."""
    return {
        "st_jobs": [
            sa.Column("id", sa.Text(), nullable=False),
            sa.Column("namespace", sa.Text(), nullable=False),
            sa.Column("context_id", sa.Text(), nullable=False),
            sa.Column("version", sa.Integer(), nullable=False),
            sa.Column("state", sa.Text(), nullable=False),
            sa.Column("priority", sa.REAL(), nullable=False, server_default=sa.text("0")),
            sa.Column("enqueued_at", sa.REAL(), nullable=False),
            sa.Column("ready_at", sa.REAL(), nullable=False),
            sa.Column("deliveries", sa.Integer(), nullable=False, server_default=sa.text("0")),
            sa.Column("worker", sa.Text(), nullable=True),
            sa.Column("receipt", sa.Text(), nullable=True),
            sa.Column("lease_until", sa.REAL(), nullable=True),
            sa.Column("error", sa.Text(), nullable=True),
            sa.Column("dedup", sa.Text(), nullable=True),
            sa.Column("finished_at", sa.REAL(), nullable=True),
            sa.PrimaryKeyConstraint("id"),
            sa.UniqueConstraint("dedup"),
        ],
        "st_job_activity": [
            sa.Column("namespace", sa.Text(), nullable=False),
            sa.Column("at", sa.REAL(), nullable=False),
            sa.PrimaryKeyConstraint("namespace"),
        ],
        "st_job_rates": [
            sa.Column("ctx", sa.Text(), nullable=False),
            sa.Column("minute", sa.Integer(), nullable=False),
            sa.Column("n", sa.Integer(), nullable=False),
            sa.PrimaryKeyConstraint("ctx", "minute"),
        ],
        "st_job_workers": [
            sa.Column("id", sa.Text(), nullable=False),
            sa.Column("info", sa.Text(), nullable=True),
            sa.Column("expires", sa.REAL(), nullable=True),
            sa.PrimaryKeyConstraint("id"),
        ],
        "st_job_stats": [
            sa.Column("name", sa.Text(), nullable=False),
            sa.Column("n", sa.Integer(), nullable=False),
            sa.PrimaryKeyConstraint("name"),
        ],
    }


def upgrade() -> None:
    inspector = sa.inspect(op.get_bind())
    have = set(inspector.get_table_names())
    for name, parts in _tables().items():
        if name not in have:
            op.create_table(name, *parts)
    indexes = (
        {ix["name"] for ix in inspector.get_indexes("st_jobs")} if "st_jobs" in have else set()
    )
    if "ix_st_jobs_state" not in indexes:
        op.create_index("ix_st_jobs_state", "st_jobs", ["state", "ready_at"])


def downgrade() -> None:
    op.drop_index("ix_st_jobs_state", table_name="st_jobs")
    for name in reversed(list(_tables())):
        op.drop_table(name)
