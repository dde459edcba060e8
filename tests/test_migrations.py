"""Schema migrations: Alembic revisions equal the models, run once when many processes
start together on a fresh database, and adopt databases made by ``create_all``."""

from __future__ import annotations

import multiprocessing as mp
import sqlite3
import traceback
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, inspect, text
from typer.testing import CliRunner

from sleeptime.cli import app
from sleeptime.queue.sqlite import SQLiteQueue
from sleeptime.store import migrate
from sleeptime.store.schema import Base, queue_metadata
from sleeptime.store.sql import SQLStore

PROCESSES = 15


def _open_store(url: str, start: Any, errors: Any) -> None:
    """A process that opens the store when all of them are ready (imports done)."""
    try:
        start.wait(120)
        store = SQLStore(url)
        store.put_context("acme", f"doc-{mp.current_process().name}", "text")
        store.dispose()
        if url.startswith("sqlite"):  # the embedded queue's tables live in the same file
            SQLiteQueue(url).close()
    except BaseException:
        errors.put(traceback.format_exc(limit=3))
        raise SystemExit(1) from None


def test_many_processes_start_on_a_fresh_database(database_url: str) -> None:
    ctx = mp.get_context("spawn")
    start = ctx.Barrier(PROCESSES)
    errors = ctx.Queue()
    procs = [
        ctx.Process(target=_open_store, args=(database_url, start, errors), name=f"p{i}")
        for i in range(PROCESSES)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    failed = [p.name for p in procs if p.exitcode != 0]
    found = []
    while not errors.empty():
        found.append(errors.get())
    assert not failed, f"{len(failed)} of {PROCESSES} processes failed:\n" + "\n".join(found)
    store = SQLStore(database_url, create=False)
    assert migrate.current(store.engine) == migrate.head()
    with store.engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM alembic_version")).scalar() == 1
    assert all(store.current_version("acme", f"doc-p{i}") == 1 for i in range(PROCESSES))
    store.dispose()


def test_revisions_match_the_models(database_url: str) -> None:
    store = SQLStore(database_url)
    with store.engine.connect() as conn:
        diff = compare_metadata(
            MigrationContext.configure(
                conn, opts={"compare_type": True, "include_name": migrate.include_name}
            ),
            Base.metadata,
        )
    store.dispose()
    assert diff == [], "schema.py changed without a migration: add a revision\n" + repr(diff)


def test_a_create_all_database_is_adopted(database_url: str) -> None:
    engine = create_engine(database_url)
    Base.metadata.create_all(engine)  # what sleeptime did before migrations existed
    engine.dispose()
    old = SQLStore(database_url, create=False)
    old.put_context("acme", "doc-1", "kept")
    assert migrate.current(old.engine) is None
    old.dispose()

    store = SQLStore(database_url)
    assert migrate.current(store.engine) == migrate.head()
    ctx = store.get_context("acme", "doc-1")
    assert ctx is not None and ctx.text == "kept"
    assert store.put_context("acme", "doc-1", "new").version == 2
    store.dispose()


def test_a_half_created_database_is_completed(sqlite_url: str) -> None:
    engine = create_engine(sqlite_url)
    Base.metadata.tables["st_namespaces"].create(engine)
    engine.dispose()
    store = SQLStore(sqlite_url)
    assert store.put_context("acme", "doc-1", "text").version == 1
    store.dispose()


def test_an_up_to_date_database_is_not_locked_again(sqlite_url: str) -> None:
    store = SQLStore(sqlite_url)
    assert store.migrate() == (migrate.head(), migrate.head())
    store.dispose()


def test_a_newer_schema_is_left_alone(sqlite_url: str, caplog: pytest.LogCaptureFixture) -> None:
    store = SQLStore(sqlite_url)
    with store.engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '9999_future'"))
    with caplog.at_level("WARNING", logger="sleeptime.store"):
        again = SQLStore(sqlite_url)
    assert "newer than this sleeptime" in caplog.text
    assert again.put_context("acme", "doc-1", "text").version == 1
    again.dispose()
    store.dispose()


def test_cli_db_upgrade(sqlite_url: str) -> None:
    runner = CliRunner()
    out = runner.invoke(app, ["db", "upgrade", "--database-url", sqlite_url])
    assert out.exit_code == 0, out.output
    assert f"-> {migrate.head()}" in out.output
    out = runner.invoke(app, ["db", "current", "--database-url", sqlite_url])
    assert out.exit_code == 0 and migrate.head() in out.output
    engine = create_engine(sqlite_url)
    with engine.connect() as conn:
        assert MigrationContext.configure(conn).get_current_revision() == migrate.head()
    engine.dispose()


# -- the embedded queue's tables: their own line of revisions ---------------------------

#: The queue's tables as its own script made them before they were migrated.
OLD_QUEUE_SCHEMA = """
CREATE TABLE IF NOT EXISTS st_jobs (
    id TEXT PRIMARY KEY, namespace TEXT NOT NULL, context_id TEXT NOT NULL,
    version INTEGER NOT NULL, state TEXT NOT NULL, priority REAL NOT NULL DEFAULT 0,
    enqueued_at REAL NOT NULL, ready_at REAL NOT NULL,
    deliveries INTEGER NOT NULL DEFAULT 0, worker TEXT, receipt TEXT, lease_until REAL,
    error TEXT, dedup TEXT UNIQUE, finished_at REAL
);
CREATE INDEX IF NOT EXISTS ix_st_jobs_state ON st_jobs (state, ready_at);
CREATE TABLE IF NOT EXISTS st_job_activity (namespace TEXT PRIMARY KEY, at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS st_job_rates (
    ctx TEXT NOT NULL, minute INTEGER NOT NULL, n INTEGER NOT NULL,
    PRIMARY KEY (ctx, minute)
);
CREATE TABLE IF NOT EXISTS st_job_workers (id TEXT PRIMARY KEY, info TEXT, expires REAL);
CREATE TABLE IF NOT EXISTS st_job_stats (name TEXT PRIMARY KEY, n INTEGER NOT NULL);
"""


def _diff(url: str, metadata: Any, include_name: Any) -> list[Any]:
    engine = create_engine(url)
    with engine.connect() as conn:
        found = compare_metadata(
            MigrationContext.configure(
                conn, opts={"compare_type": True, "include_name": include_name}
            ),
            metadata,
        )
    engine.dispose()
    return list(found)


@pytest.mark.parametrize("shared", [False, True], ids=["own-file", "store-file"])
def test_queue_revisions_match_the_queue_tables(tmp_path: Path, shared: bool) -> None:
    """On a queue file of its own (``SLEEPTIME_QUEUE_PATH``) only the queue's tables and
    version table are made; in the store's SQLite file both lines of revisions live
    side by side, and neither check sees the other's tables."""
    path = tmp_path / "sleeptime.db"
    url = f"sqlite:///{path}"
    if shared:
        SQLStore(url).dispose()
    SQLiteQueue(str(path)).close()
    engine = create_engine(url)
    assert migrate.current(engine, migrate.QUEUE) == migrate.head(migrate.QUEUE)
    tables = set(inspect(engine).get_table_names())
    engine.dispose()
    assert _diff(url, queue_metadata, migrate.include_queue_name) == []
    if shared:
        assert _diff(url, Base.metadata, migrate.include_name) == []
    else:
        assert tables == {*queue_metadata.tables, migrate.QUEUE.version_table}


def test_a_queue_file_made_before_migrations_is_adopted(tmp_path: Path) -> None:
    path = tmp_path / "queue.db"
    raw = sqlite3.connect(path)
    raw.executescript(OLD_QUEUE_SCHEMA)
    raw.execute(
        "INSERT INTO st_jobs (id, namespace, context_id, version, state, enqueued_at, "
        "ready_at, dedup) VALUES ('j1', 'acme', 'doc', 1, 'waiting', 0, 0, 'acme/doc/1')"
    )
    raw.commit()
    raw.close()
    q = SQLiteQueue(str(path))
    assert q.counts()["waiting"] == 1  # the job survived
    assert q.enqueue("acme", "doc", 1) is None  # its dedup key too
    q.close()
    url = f"sqlite:///{path}"
    engine = create_engine(url)
    assert migrate.current(engine, migrate.QUEUE) == migrate.head(migrate.QUEUE)
    engine.dispose()
    # the old tables are kept as they were; they differ only in that SQLite let their
    # TEXT primary keys be NULL (never written so)
    changes = [c for group in _diff(url, queue_metadata, migrate.include_queue_name) for c in group]
    assert {(c[0], c[3]) for c in changes} == {
        ("modify_nullable", "id"),
        ("modify_nullable", "namespace"),
        ("modify_nullable", "name"),
    }


def test_an_in_memory_queue_is_migrated_on_its_own_connection() -> None:
    q = SQLiteQueue(":memory:")
    assert q.enqueue("acme", "doc", 1) is not None
    assert q.counts()["waiting"] == 1
    q.close()
