"""Durable background queue for sleep-time jobs: Redis Streams, or embedded SQLite.

:func:`open_queue` picks the backend from the settings (``SLEEPTIME_REDIS_URL`` set ->
Redis, else a SQLite file). :mod:`sleeptime.background` opens it together with the hot
cache and the activity recorder for a client.
"""

from __future__ import annotations

from pathlib import Path

from sleeptime.errors import JobNotFound, QueueUnavailable
from sleeptime.queue.base import DeferOutcome, FailOutcome, Job, JobQueue, QueueConfig, short_error
from sleeptime.queue.keys import Keys
from sleeptime.queue.scheduler import ActivityRecorder, TokenWindow, due, retry_delay
from sleeptime.settings import Settings

__all__ = [
    "ActivityRecorder",
    "DeferOutcome",
    "FailOutcome",
    "Job",
    "JobNotFound",
    "JobQueue",
    "Keys",
    "QueueConfig",
    "QueueUnavailable",
    "TokenWindow",
    "due",
    "open_queue",
    "retry_delay",
    "short_error",
]


def embedded_queue_path(settings: Settings, database_url: str | None = None) -> str:
    """Where the SQLite queue lives: ``SLEEPTIME_QUEUE_PATH``, else next to a SQLite
    database (same file, own tables), else ``.sleeptime/queue.db``."""
    if settings.queue_path:
        return settings.queue_path
    url = database_url or settings.database_url
    if url.startswith("sqlite"):
        from sleeptime.queue.sqlite import sqlite_path

        return sqlite_path(url)
    return str(Path(".sleeptime") / "queue.db")


def open_queue(settings: Settings, database_url: str | None = None) -> JobQueue:
    """The Redis queue when ``redis_url`` is set, else the embedded SQLite queue."""
    config = QueueConfig.from_settings(settings)
    if settings.redis_url:
        from sleeptime.queue.redis_streams import RedisStreamsQueue

        return RedisStreamsQueue(settings.redis_url, config, prefix=settings.redis_prefix)
    from sleeptime.queue.sqlite import SQLiteQueue

    return SQLiteQueue(embedded_queue_path(settings, database_url), config)
