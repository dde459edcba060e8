"""The initial schema: namespaces, context versions, artifacts, ledger, query log,
KV-prefill blob index.

Databases created before migrations existed (by ``metadata.create_all``) have these
tables but no ``alembic_version``: this revision creates only what is missing, so it
adopts them (and completes one whose creation was interrupted) instead of failing.

Revision ID: 0001_initial
Revises:
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0001_initial"
down_revision = None
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


#: columns and constraints, indexes as (name, columns)
Table = tuple[list[sa.Column[Any] | sa.Constraint], list[tuple[str, list[str]]]]


def _tables() -> dict[str, Table]:
    """name -> (columns and constraints, indexes as (name, columns))."""
    return {
        "st_namespaces": (
            [
                sa.Column("name", sa.String(128), nullable=False),
                sa.Column("created_at", TS, nullable=False),
                sa.PrimaryKeyConstraint("name"),
            ],
            [],
        ),
        "st_contexts": (
            [
                sa.Column("namespace", sa.String(128), nullable=False),
                sa.Column("context_id", sa.String(256), nullable=False),
                sa.Column("version", sa.Integer(), nullable=False),
                sa.Column("content_hash", sa.String(64), nullable=False),
                sa.Column("text", sa.Text(), nullable=False),
                sa.Column("created_at", TS, nullable=False),
                sa.PrimaryKeyConstraint("namespace", "context_id", "version"),
            ],
            [],
        ),
        "st_artifacts": (
            [
                sa.Column("namespace", sa.String(128), nullable=False),
                sa.Column("context_id", sa.String(256), nullable=False),
                sa.Column("version", sa.Integer(), nullable=False),
                sa.Column("kind", sa.String(32), nullable=False),
                sa.Column("key", sa.String(128), nullable=False),
                sa.Column("payload", sa.JSON(), nullable=False),
                sa.Column("model", sa.String(256), nullable=False),
                sa.Column("prompt_tokens", sa.Integer(), nullable=False),
                sa.Column("completion_tokens", sa.Integer(), nullable=False),
                sa.Column("created_at", TS, nullable=False),
                sa.ForeignKeyConstraint(
                    ["namespace", "context_id", "version"],
                    ["st_contexts.namespace", "st_contexts.context_id", "st_contexts.version"],
                    ondelete="CASCADE",
                ),
                sa.PrimaryKeyConstraint("namespace", "context_id", "version", "kind", "key"),
            ],
            [],
        ),
        "st_ledger": (
            [
                sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
                sa.Column("namespace", sa.String(128), nullable=False),
                sa.Column("context_id", sa.String(256), nullable=False),
                sa.Column("version", sa.Integer(), nullable=False),
                sa.Column("phase", sa.String(8), nullable=False),
                sa.Column("step", sa.String(32), nullable=False),
                sa.Column("model", sa.String(256), nullable=False),
                sa.Column("prompt_tokens", sa.Integer(), nullable=False),
                sa.Column("completion_tokens", sa.Integer(), nullable=False),
                sa.Column("latency_ms", sa.Double(), nullable=False),
                sa.Column("created_at", TS, nullable=False),
                sa.PrimaryKeyConstraint("id"),
            ],
            [("ix_st_ledger_ctx", ["namespace", "context_id"])],
        ),
        "st_queries": (
            [
                sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
                sa.Column("namespace", sa.String(128), nullable=False),
                sa.Column("context_id", sa.String(256), nullable=False),
                sa.Column("version", sa.Integer(), nullable=False),
                sa.Column("question", sa.Text(), nullable=False),
                sa.Column("answer", sa.Text(), nullable=False),
                sa.Column("source", sa.String(16), nullable=False),
                sa.Column("prompt_tokens", sa.Integer(), nullable=False),
                sa.Column("completion_tokens", sa.Integer(), nullable=False),
                sa.Column("latency_ms", sa.Double(), nullable=False),
                sa.Column("created_at", TS, nullable=False),
                sa.PrimaryKeyConstraint("id"),
            ],
            [("ix_st_queries_ctx", ["namespace", "context_id"])],
        ),
        "st_kv_blobs": (
            [
                sa.Column("namespace", sa.String(128), nullable=False),
                sa.Column("model_key", sa.String(128), nullable=False),
                sa.Column("prefix_hash", sa.String(64), nullable=False),
                sa.Column("n_tokens", sa.Integer(), nullable=False),
                sa.Column("context_id", sa.String(256), nullable=False),
                sa.Column("version", sa.Integer(), nullable=False),
                sa.Column("file", sa.String(256), nullable=False),
                sa.Column("size_bytes", sa.BigInteger(), nullable=False),
                sa.Column("created_at", TS, nullable=False),
                sa.Column("last_used_at", TS, nullable=False),
                sa.PrimaryKeyConstraint("namespace", "model_key", "prefix_hash"),
            ],
            [("ix_st_kv_blobs_lookup", ["model_key", "namespace", "n_tokens"])],
        ),
    }


def upgrade() -> None:
    inspector = sa.inspect(op.get_bind())
    existing = set(inspector.get_table_names())
    for name, (columns, indexes) in _tables().items():  # dict order: referenced first
        if name not in existing:
            op.create_table(name, *columns)
            have: set[str | None] = set()
        else:
            have = {ix["name"] for ix in inspector.get_indexes(name)}
        for index, cols in indexes:
            if index not in have:
                op.create_index(index, name, cols)


def downgrade() -> None:
    for name, (_columns, indexes) in reversed(list(_tables().items())):
        for index, _cols in indexes:
            op.drop_index(index, table_name=name)
        op.drop_table(name)
