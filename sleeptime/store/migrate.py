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
"""

from __future__ import annotations

import hashlib
import logging
from functools import cache
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, inspect, text

log = logging.getLogger("sleeptime.store")

MIGRATIONS = Path(__file__).with_name("migrations")

VERSION_TABLE = "alembic_version"

#: The advisory lock key of sleeptime migrations (any fixed 64-bit number works).
LOCK_KEY = int.from_bytes(hashlib.sha256(b"sleeptime.migrations").digest()[:8], "big", signed=True)


def config(connection: Connection | None = None) -> Config:
    """An Alembic config without ``alembic.ini``: the scripts ship in the package."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


@cache
def _scripts() -> ScriptDirectory:
    return ScriptDirectory.from_config(config())


def head() -> str:
    """The newest revision shipped with this version of sleeptime."""
    found = _scripts().get_current_head()
    assert found is not None, "no migration scripts found"
    return found


def _known(revision: str) -> bool:
    return any(script.revision == revision for script in _scripts().walk_revisions())


def current(engine: Engine) -> str | None:
    """The database's revision (None: never migrated)."""
    with engine.connect() as conn:
        return _revision(conn)


def _revision(conn: Connection) -> str | None:
    # A plain query: Alembic's MigrationContext would log two INFO lines on every start.
    if not inspect(conn).has_table(VERSION_TABLE):
        return None
    found = conn.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).scalar()
    return str(found) if found is not None else None


def upgrade(engine: Engine) -> tuple[str | None, str]:
    """Upgrade to :func:`head` under the database's lock; returns (before, after)."""
    target = head()
    before = current(engine)
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
                conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": LOCK_KEY})
            before = _revision(conn)
            if before is not None and not _known(before):
                # A newer sleeptime migrated this database (a rolling deploy): its
                # revisions are additive, so this older code keeps working without them.
                log.warning(
                    "database schema revision %s is newer than this sleeptime's (%s)",
                    before,
                    target,
                )
            elif before != target:
                command.upgrade(config(conn), "head")
            conn.commit()
        except BaseException:
            conn.rollback()
            raise
        finally:
            if raw is not None:
                raw.isolation_level = saved
    return before, target


#: What the full-text engines keep beside ``st_passages`` (migration 0004), outside the
#: ORM because neither is portable: SQLite's FTS5 table and its shadow tables, and
#: PostgreSQL's generated ``tsvector`` column with its GIN index.
FULL_TEXT_TABLE = "st_passages_fts"
FULL_TEXT_COLUMN = "tsv"
FULL_TEXT_INDEX = "ix_st_passages_tsv"


def include_name(name: str | None, type_: str, parent_names: dict[str, str | None]) -> bool:
    """Alembic's ``include_name`` hook: compare everything but the full-text objects."""
    if type_ == "table":
        return not (name or "").startswith(FULL_TEXT_TABLE)
    if type_ == "column":
        return not (name == FULL_TEXT_COLUMN and parent_names.get("table_name") == "st_passages")
    if type_ == "index":
        return name != FULL_TEXT_INDEX
    return True

