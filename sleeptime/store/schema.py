"""SQL schema (SQLAlchemy 2.x typed ORM).

Artifacts are immutable rows keyed by (namespace, context id, version, kind, key):
re-running sleep-time on a version inserts nothing twice, and a new version never
mutates old rows, it only makes them unservable.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    REAL,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    ForeignKeyConstraint,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    pass


class NamespaceRow(Base):
    __tablename__ = "st_namespaces"

    name: Mapped[str] = mapped_column(String(128), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class ContextRow(Base):
    """One version of a context. The newest version is the current one."""

    __tablename__ = "st_contexts"

    namespace: Mapped[str] = mapped_column(String(128), primary_key=True)
    context_id: Mapped[str] = mapped_column(String(256), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    content_hash: Mapped[str] = mapped_column(String(64))
    text: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class ArtifactRow(Base):
    """Something sleep-time compute produced for one context version."""

    __tablename__ = "st_artifacts"
    __table_args__ = (
        ForeignKeyConstraint(
            ["namespace", "context_id", "version"],
            ["st_contexts.namespace", "st_contexts.context_id", "st_contexts.version"],
            ondelete="CASCADE",
        ),
    )

    namespace: Mapped[str] = mapped_column(String(128), primary_key=True)
    context_id: Mapped[str] = mapped_column(String(256), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(32), primary_key=True)
    key: Mapped[str] = mapped_column(String(128), primary_key=True)
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    model: Mapped[str] = mapped_column(String(256), default="")
    prompt_tokens: Mapped[int] = mapped_column(Integer, default=0)
    completion_tokens: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class PassageRow(Base):
    """One passage of a context version (whole sentences or exchanges), indexed in the
    database's full-text engine: an FTS5 table beside it on SQLite, a generated
    ``tsvector`` column with a GIN index on PostgreSQL (both made by migration 0004,
    outside the ORM, since neither is portable)."""

    __tablename__ = "st_passages"
    __table_args__ = (
        ForeignKeyConstraint(
            ["namespace", "context_id", "version"],
            ["st_contexts.namespace", "st_contexts.context_id", "st_contexts.version"],
            ondelete="CASCADE",
        ),
        Index("ix_st_passages_version", "namespace", "context_id", "version", "idx", unique=True),
    )

    # an INTEGER PRIMARY KEY is SQLite's rowid, which the FTS5 table points at
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    namespace: Mapped[str] = mapped_column(String(128))
    context_id: Mapped[str] = mapped_column(String(256))
    version: Mapped[int] = mapped_column(Integer)
    idx: Mapped[int] = mapped_column(Integer)
    start_char: Mapped[int] = mapped_column(Integer)
    end_char: Mapped[int] = mapped_column(Integer)
    n_tokens: Mapped[int] = mapped_column(Integer)
    text: Mapped[str] = mapped_column(Text)
    #: the passage's embedding when the client has a LangChain ``Embeddings`` (else NULL)
    embedding: Mapped[list[float] | None] = mapped_column(JSON, nullable=True)


class LedgerRow(Base):
    """One model call: which phase paid for it and how many tokens it used."""

    __tablename__ = "st_ledger"
    __table_args__ = (Index("ix_st_ledger_ctx", "namespace", "context_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    namespace: Mapped[str] = mapped_column(String(128))
    context_id: Mapped[str] = mapped_column(String(256))
    version: Mapped[int] = mapped_column(Integer)
    phase: Mapped[str] = mapped_column(String(8))
    step: Mapped[str] = mapped_column(String(32))
    model: Mapped[str] = mapped_column(String(256), default="")
    prompt_tokens: Mapped[int] = mapped_column(Integer, default=0)
    completion_tokens: Mapped[int] = mapped_column(Integer, default=0)
    latency_ms: Mapped[float] = mapped_column(default=0.0)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class QueryRow(Base):
    """One answered query (the online path's log)."""

    __tablename__ = "st_queries"
    __table_args__ = (Index("ix_st_queries_ctx", "namespace", "context_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    namespace: Mapped[str] = mapped_column(String(128))
    context_id: Mapped[str] = mapped_column(String(256))
    version: Mapped[int] = mapped_column(Integer)
    question: Mapped[str] = mapped_column(Text)
    answer: Mapped[str] = mapped_column(Text)
    source: Mapped[str] = mapped_column(String(16))
    prompt_tokens: Mapped[int] = mapped_column(Integer, default=0)
    completion_tokens: Mapped[int] = mapped_column(Integer, default=0)
    #: what a cold answer's prompt would have been (0: unknown), for the savings sum
    cold_prompt_tokens: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    latency_ms: Mapped[float] = mapped_column(default=0.0)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class KVBlobRow(Base):
    """A saved llama.cpp KV state of one exact token prefix (KV-prefill). The bytes live
    in a file under ``settings.kv_dir``; this row is the index and the LRU clock."""

    __tablename__ = "st_kv_blobs"
    __table_args__ = (Index("ix_st_kv_blobs_lookup", "model_key", "namespace", "n_tokens"),)

    namespace: Mapped[str] = mapped_column(String(128), primary_key=True)
    model_key: Mapped[str] = mapped_column(String(128), primary_key=True)
    prefix_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    n_tokens: Mapped[int] = mapped_column(Integer)
    context_id: Mapped[str] = mapped_column(String(256), default="")
    version: Mapped[int] = mapped_column(Integer, default=0)
    file: Mapped[str] = mapped_column(String(256))
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    last_used_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class TombstoneRow(Base):
    """The last version number of a deleted context. A context ingested again after a
    delete continues from here, so a (namespace, id, version) key that other processes
    may still hold in their in-process caches never names different text."""

    __tablename__ = "st_tombstones"

    namespace: Mapped[str] = mapped_column(String(128), primary_key=True)
    context_id: Mapped[str] = mapped_column(String(256), primary_key=True)
    version: Mapped[int] = mapped_column(Integer)
    deleted_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class ApiKeyRow(Base):
    """An HTTP API key: only its SHA-256 is stored. ``namespace`` is empty for an admin
    key (operator routes, every namespace)."""

    __tablename__ = "st_api_keys"

    key_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    key_id: Mapped[str] = mapped_column(String(16), unique=True)
    namespace: Mapped[str] = mapped_column(String(128), default="")
    admin: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class OutboxRow(Base):
    """Sleep-time work to hand to the job queue: written in the same transaction as the
    context version it is for, so a committed version always has its job recorded, and
    relayed to the queue (Redis or the embedded one) off the online path."""

    __tablename__ = "st_outbox"
    __table_args__ = (Index("ix_st_outbox_unsent", "sent_at", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    namespace: Mapped[str] = mapped_column(String(128))
    context_id: Mapped[str] = mapped_column(String(256))
    version: Mapped[int] = mapped_column(Integer)
    #: The ingest was activity: the relay marks the namespace busy before it enqueues.
    activity: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


#: The embedded job queue's tables (:mod:`sleeptime.queue.sqlite`). Their own metadata
#: and revisions (``store/queue_migrations/``, version table ``alembic_version_queue``):
#: the queue lives in a SQLite file, the store's or one of its own
#: (``SLEEPTIME_QUEUE_PATH``), so these tables are never made in a server database and
#: the store's tables never in a queue-only file. Times are Unix seconds.
queue_metadata = MetaData()

Table(
    "st_jobs",
    queue_metadata,
    Column("id", Text, primary_key=True),
    Column("namespace", Text, nullable=False),
    Column("context_id", Text, nullable=False),
    Column("version", Integer, nullable=False),
    Column("state", Text, nullable=False),
    Column("priority", REAL, nullable=False, server_default=text("0")),
    Column("enqueued_at", REAL, nullable=False),
    Column("ready_at", REAL, nullable=False),
    Column("deliveries", Integer, nullable=False, server_default=text("0")),
    Column("worker", Text),
    Column("receipt", Text),
    Column("lease_until", REAL),
    Column("error", Text),
    Column("dedup", Text, unique=True),
    Column("finished_at", REAL),
    Index("ix_st_jobs_state", "state", "ready_at"),
)
#: The last activity of each namespace (idle-time scheduling).
Table(
    "st_job_activity",
    queue_metadata,
    Column("namespace", Text, primary_key=True),
    Column("at", REAL, nullable=False),
)
#: Activity (ingests, asks) per context and minute: busy contexts are claimed first.
Table(
    "st_job_rates",
    queue_metadata,
    Column("ctx", Text, primary_key=True),
    Column("minute", Integer, primary_key=True),
    Column("n", Integer, nullable=False),
)
#: Each worker's last heartbeat (its info expires unless renewed).
Table(
    "st_job_workers",
    queue_metadata,
    Column("id", Text, primary_key=True),
    Column("info", Text),
    Column("expires", REAL),
)
#: Counters kept after the rows they count are gone (done, retried).
Table(
    "st_job_stats",
    queue_metadata,
    Column("name", Text, primary_key=True),
    Column("n", Integer, nullable=False),
)
