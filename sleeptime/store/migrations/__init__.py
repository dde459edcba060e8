"""Alembic migrations of the SQL schema (run by :mod:`sleeptime.store.migrate`)."""
