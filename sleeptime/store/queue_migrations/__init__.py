"""Alembic migrations of the embedded job queue's tables (run by
:func:`sleeptime.store.migrate.upgrade_queue` whenever a queue file is opened)."""
