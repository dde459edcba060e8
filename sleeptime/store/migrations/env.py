"""Alembic environment, used programmatically: :func:`sleeptime.store.migrate.upgrade`
passes the connection (already holding the migration lock) in
``config.attributes["connection"]``; no ``alembic.ini`` is needed.

For authoring a revision with the ``alembic`` command, point ``sqlalchemy.url`` (or
``SLEEPTIME_DATABASE_URL``) at a database and ``script_location`` at this folder.
"""

from __future__ import annotations

import os

from alembic import context
from sqlalchemy import create_engine

from sleeptime.store.schema import Base

config = context.config
target_metadata = Base.metadata


def run(connection: object) -> None:
    context.configure(
        connection=connection,  # type: ignore[arg-type]
        target_metadata=target_metadata,
        # One transaction for the whole upgrade, on SQLite too (it has transactional
        # DDL): a failed upgrade leaves the previous revision, never half of one.
        transactional_ddl=True,
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


connection = config.attributes.get("connection")
if connection is not None:
    run(connection)
else:
    url = config.get_main_option("sqlalchemy.url") or os.environ.get(
        "SLEEPTIME_DATABASE_URL", "sqlite:///sleeptime.db"
    )
    engine = create_engine(url)
    with engine.begin() as conn:
        run(conn)
    engine.dispose()
