"""API keys of the HTTP server (only their SHA-256) and the tombstones of deleted
contexts (the last version number, so a context ingested again never reuses one).

Revision ID: 0002_keys_tombstones
Revises: 0001_initial
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002_keys_tombstones"
down_revision = "0001_initial"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    existing = set(sa.inspect(op.get_bind()).get_table_names())
    if "st_tombstones" not in existing:  # a database made by create_all may have it
        op.create_table(
            "st_tombstones",
            sa.Column("namespace", sa.String(128), nullable=False),
            sa.Column("context_id", sa.String(256), nullable=False),
            sa.Column("version", sa.Integer(), nullable=False),
            sa.Column("deleted_at", TS, nullable=False),
            sa.PrimaryKeyConstraint("namespace", "context_id"),
        )
    if "st_api_keys" not in existing:
        op.create_table(
            "st_api_keys",
            sa.Column("key_hash", sa.String(64), nullable=False),
            sa.Column("key_id", sa.String(16), nullable=False),
            sa.Column("namespace", sa.String(128), nullable=False),
            sa.Column("admin", sa.Boolean(), nullable=False),
            sa.Column("created_at", TS, nullable=False),
            sa.PrimaryKeyConstraint("key_hash"),
            sa.UniqueConstraint("key_id"),
        )


def downgrade() -> None:
    op.drop_table("st_api_keys")
    op.drop_table("st_tombstones")
