"""Alembic revisions of the queue's tables, oldest first: ``0001_jobs``, ..."""
