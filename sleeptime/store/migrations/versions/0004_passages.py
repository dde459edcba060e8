"""The passage index, and the cold-prompt size of each answered query.

Each long context version is split into passages (whole sentences
or exchanges) and indexed by the database's own full-text engine, so a learned answer
can bring back the passages a question needs instead of the whole text.

SQLite: an external-content FTS5 table (porter stemming) kept in step by triggers.
PostgreSQL: a generated ``tsvector`` column (english) with a GIN index.

Revision ID: 0004_passages
Revises: 0003_outbox
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004_passages"
down_revision = "0003_outbox"
branch_labels = None
depends_on = None

SQLITE = (
    "CREATE VIRTUAL TABLE IF NOT EXISTS st_passages_fts USING fts5("
    "text, content='st_passages', content_rowid='id', tokenize='porter unicode61')",
    "CREATE TRIGGER IF NOT EXISTS st_passages_ai AFTER INSERT ON st_passages BEGIN "
    "INSERT INTO st_passages_fts(rowid, text) VALUES (new.id, new.text); END",
    "CREATE TRIGGER IF NOT EXISTS st_passages_ad AFTER DELETE ON st_passages BEGIN "
    "INSERT INTO st_passages_fts(st_passages_fts, rowid, text) "
    "VALUES ('delete', old.id, old.text); END",
)
POSTGRESQL = (
    "ALTER TABLE st_passages ADD COLUMN IF NOT EXISTS tsv tsvector "
    "GENERATED ALWAYS AS (to_tsvector('english', text)) STORED",
    "CREATE INDEX IF NOT EXISTS ix_st_passages_tsv ON st_passages USING GIN (tsv)",
)


def upgrade() -> None:
    bind = op.get_bind()
    if "st_passages" not in set(sa.inspect(bind).get_table_names()):
        op.create_table(
            "st_passages",
            sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
            sa.Column("namespace", sa.String(128), nullable=False),
            sa.Column("context_id", sa.String(256), nullable=False),
            sa.Column("version", sa.Integer(), nullable=False),
            sa.Column("idx", sa.Integer(), nullable=False),
            sa.Column("start_char", sa.Integer(), nullable=False),
            sa.Column("end_char", sa.Integer(), nullable=False),
            sa.Column("n_tokens", sa.Integer(), nullable=False),
            sa.Column("text", sa.Text(), nullable=False),
            sa.Column("embedding", sa.JSON(), nullable=True),
            sa.PrimaryKeyConstraint("id"),
            sa.ForeignKeyConstraint(
                ["namespace", "context_id", "version"],
                ["st_contexts.namespace", "st_contexts.context_id", "st_contexts.version"],
                ondelete="CASCADE",
            ),
        )
        op.create_index(
            "ix_st_passages_version",
            "st_passages",
            ["namespace", "context_id", "version", "idx"],
            unique=True,
        )
    columns = {c["name"] for c in sa.inspect(bind).get_columns("st_queries")}
    if "cold_prompt_tokens" not in columns:
        op.add_column(
            "st_queries",
            sa.Column("cold_prompt_tokens", sa.Integer(), nullable=False, server_default="0"),
        )
    for stmt in {"sqlite": SQLITE, "postgresql": POSTGRESQL}.get(bind.dialect.name, ()):
        op.execute(stmt)


def downgrade() -> None:
    bind = op.get_bind()
    with op.batch_alter_table("st_queries") as batch:
        batch.drop_column("cold_prompt_tokens")
    if bind.dialect.name == "sqlite":
        for name in ("st_passages_ai", "st_passages_ad"):
            op.execute(f"DROP TRIGGER IF EXISTS {name}")
        op.execute("DROP TABLE IF EXISTS st_passages_fts")
    op.drop_index("ix_st_passages_version", table_name="st_passages")
    op.drop_table("st_passages")
