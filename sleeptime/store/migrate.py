"""Schema migrations (Alembic), safe when many processes start at once.

:func:`upgrade` brings a database to the newest revision exactly once, however many
processes call it at the same moment on a fresh database:

- PostgreSQL: the upgrade runs in one transaction that first takes a transaction
  level advisory lock (``pg_advisory_xact_lock``); the others wait for it, then see
  the new revision and do nothing. DDL is transactional, so a failed upgrade leaves
  the previous revision.
- SQLite: the upgrade runs in one ``BEGIN IMMEDIATE`` transaction (the database
  file's write lock; the others wait up to the busy timeout).
- other databases: no lock; run ``sleeptime db upgrade`` once before starting
  processes.

The common case, a database already at the newest revision, costs one query and
takes no lock. Databases created before migrations existed are adopted by the
initial revision (it creates only missing tables).

Two lines of revisions (:class:`Chain`): the store's (:data:`STORE`) and the embedded
job queue's (:data:`QUEUE`), each with its own version table, since the queue's SQLite
file may be the store's or one of its own.
"""

from __future__ import annotations

import hashlib
import logging
import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, create_engine, inspect, text
from sqlalchemy.pool import StaticPool

from sleeptime.store.schema import queue_metadata

log = logging.getLogger("sleeptime.store")

MIGRATIONS = Path(__file__).with_name("migrations")

VERSION_TABLE = "alembic_version"

#: The advisory lock key of sleeptime migrations (any fixed 64-bit number works).
LOCK_KEY = int.from_bytes(hashlib.sha256(b"sleeptime.migrations").digest()[:8], "big", signed=True)


@dataclass(frozen=True)
class Chain:
    """One line of revisions: its scripts and the table that records a database's
    place on it."""

    folder: Path
    version_table: str
    lock_key: int


#: The store's tables (``store/schema.py``'s ORM models).
STORE = Chain(MIGRATIONS, VERSION_TABLE, LOCK_KEY)
#: The embedded queue's tables (``schema.queue_metadata``), in whichever SQLite file
#: holds the queue.
QUEUE = Chain(
    Path(__file__).with_name("queue_migrations"),
    "alembic_version_queue",
    int.from_bytes(hashlib.sha256(b"sleeptime.queue").digest()[:8], "big", signed=True),
)


def config(connection: Connection | None = None, chain: Chain = STORE) -> Config:
    """An Alembic config without ``alembic.ini``: the scripts ship in the package."""
    cfg = Config()
    cfg.set_main_option("script_location", str(chain.folder))
    cfg.attributes["version_table"] = chain.version_table
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


@cache
def _scripts(chain: Chain = STORE) -> ScriptDirectory:
    return ScriptDirectory.from_config(config(chain=chain))


def head(chain: Chain = STORE) -> str:
    """The newest revision shipped with this version of sleeptime."""
    head = _scripts(chain).get_current_head()
    assert head is not None, "no migration scripts found"
    return head


def _known(revision: str, chain: Chain) -> bool:
    return any(script.revision == revision for script in _scripts(chain).walk_revisions())


def current(engine: Engine, chain: Chain = STORE) -> str | None:
    """The database's revision (None: never migrated)."""
    with engine.connect() as conn:
        return _revision(conn, chain)


def _revision(conn: Connection, chain: Chain) -> str | None:
    # A plain query: Alembic's MigrationContext would log two INFO lines on every start.
    if not inspect(conn).has_table(chain.version_table):
        return None
    stamped = conn.execute(text(f"SELECT version_num FROM {chain.version_table}")).scalar()
    return str(stamped) if stamped is not None else None


def upgrade(engine: Engine, chain: Chain = STORE) -> tuple[str | None, str]:
    """Upgrade to :func:`head` under the database's lock; returns (before, after)."""
    target = head(chain)
    before = current(engine, chain)
    if before == target:
        return before, target
    dialect = engine.dialect.name
    with engine.connect() as conn:
        raw = conn.connection.driver_connection if dialect == "sqlite" else None
        saved = getattr(raw, "isolation_level", None)
        try:
            if dialect == "sqlite":
                # The driver must not open transactions of its own around ours.
                raw.isolation_level = None  # type: ignore[union-attr]
                conn.exec_driver_sql("BEGIN IMMEDIATE")
            elif dialect == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": chain.lock_key})
            before = _revision(conn, chain)
            if before is not None and not _known(before, chain):
                # A newer sleeptime migrated this database (a rolling deploy): its
                # revisions are additive, so this older code keeps working without them.
                log.warning(
                    "database schema revision %s is newer than this sleeptime's (%s)",
                    before,
                    target,
                )
            elif before != target:
                command.upgrade(config(conn, chain), "head")
            conn.commit()
        except BaseException:
            conn.rollback()
            raise
        finally:
            if raw is not None:
                raw.isolation_level = saved
    return before, target


def upgrade_queue(raw: sqlite3.Connection) -> tuple[str | None, str]:
    """Bring the embedded queue's tables to the newest :data:`QUEUE` revision, on the
    queue's own sqlite3 connection (an in-memory queue exists only on it)."""
    # StaticPool hands out this one connection; the engine is never disposed, since
    # disposing would close the queue's connection.
    engine = create_engine("sqlite://", creator=lambda: raw, poolclass=StaticPool)
    return upgrade(engine, QUEUE)


#: What the full-text engines keep beside ``st_passages`` (migration 0004), outside the
#: ORM because neither is portable: SQLite's FTS5 table and its shadow tables, and
#: PostgreSQL's generated ``tsvector`` column with its GIN index.
FULL_TEXT_TABLE = "st_passages_fts"
FULL_TEXT_COLUMN = "tsv"
FULL_TEXT_INDEX = "ix_st_passages_tsv"


#: The queue's tables and version table: in a SQLite file the store may share.
QUEUE_TABLES = frozenset({*queue_metadata.tables, QUEUE.version_table})


def include_name(name: str | None, type_: str, parent_names: dict[str, str | None]) -> bool:
    """Alembic's ``include_name`` hook for the store: compare everything but the
    full-text objects and the queue's tables."""
    if type_ == "table":
        return not (name or "").startswith(FULL_TEXT_TABLE) and name not in QUEUE_TABLES
    if type_ == "column":
        return not (name == FULL_TEXT_COLUMN and parent_names.get("table_name") == "st_passages")
    if type_ == "index":
        return name != FULL_TEXT_INDEX
    return True


def include_queue_name(name: str | None, type_: str, parent_names: Mapping[Any, Any]) -> bool:
    """Alembic's ``include_name`` hook for the queue: only the queue's tables."""
    return type_ != "table" or name in queue_metadata.tables
