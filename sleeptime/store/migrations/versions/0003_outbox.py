"""The outbox: the sleep-time job of each new context version, written in the same
transaction as the version and relayed to the job queue off the online path.

Revision ID: 0003_outbox
Revises: 0002_keys_tombstones
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_outbox"
down_revision = "0002_keys_tombstones"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    inspector = sa.inspect(op.get_bind())
    if "st_outbox" not in set(inspector.get_table_names()):
        op.create_table(
            "st_outbox",
            sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
            sa.Column("namespace", sa.String(128), nullable=False),
            sa.Column("context_id", sa.String(256), nullable=False),
            sa.Column("version", sa.Integer(), nullable=False),
            sa.Column("activity", sa.Boolean(), nullable=False),
            sa.Column("created_at", TS, nullable=False),
            sa.Column("sent_at", TS, nullable=True),
            sa.PrimaryKeyConstraint("id"),
        )
        have: set[str | None] = set()
    else:
        have = {ix["name"] for ix in inspector.get_indexes("st_outbox")}
    if "ix_st_outbox_unsent" not in have:
        op.create_index("ix_st_outbox_unsent", "st_outbox", ["sent_at", "id"])


def downgrade() -> None:
    op.drop_index("ix_st_outbox_unsent", table_name="st_outbox")
    op.drop_table("st_outbox")
