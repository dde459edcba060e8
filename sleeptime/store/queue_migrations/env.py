"""Alembic environment of the embedded queue's tables, used programmatically:
:func:`sleeptime.store.migrate.upgrade` passes the connection (already holding the
file's write lock) in ``config.attributes["connection"]``.

The queue's file may be the store's SQLite database, so its place on this line of
revisions is kept in a version table of its own, and only the queue's tables are
compared when authoring a revision with the ``alembic`` command (point
``sqlalchemy.url`` at a queue file and ``script_location`` at this folder).
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from sleeptime.store.migrate import QUEUE, include_queue_name
from sleeptime.store.schema import queue_metadata

config = context.config


def run(connection: object) -> None:
    context.configure(
        connection=connection,  # type: ignore[arg-type]
        target_metadata=queue_metadata,
        version_table=QUEUE.version_table,
        include_name=include_queue_name,
        # one transaction for the whole upgrade (SQLite has transactional DDL)
        transactional_ddl=True,
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


connection = config.attributes.get("connection")
if connection is not None:
    run(connection)
else:
    engine = create_engine(config.get_main_option("sqlalchemy.url") or "sqlite:///queue.db")
    with engine.begin() as conn:
        run(conn)
    engine.dispose()
