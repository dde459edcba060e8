"""Durable background queue for sleep-time jobs: Redis Streams, or embedded SQLite.

:func:`open_queue` picks the backend from the settings (``SLEEPTIME_REDIS_URL`` set ->
Redis, else a SQLite file), :func:`attach` wires a :class:`~sleeptime.SleepTime` to it
(new versions are enqueued, activity postpones idle work, the Redis hot cache fronts
the online path), and :func:`missing_versions` finds current versions that have no
complete artifacts and no job (the worker's startup sweep), so a context ingested
while the queue was unreachable is not forgotten.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import and_, exists, func, select

from sleeptime.queue.base import (
    FailOutcome,
    Job,
    JobNotFound,
    JobQueue,
    QueueConfig,
    QueueUnavailable,
    short_error,
)
from sleeptime.queue.keys import Keys
from sleeptime.queue.scheduler import ActivityRecorder, TokenWindow, due, retry_delay
from sleeptime.settings import Settings
from sleeptime.store.schema import ArtifactRow, ContextRow
from sleeptime.store.sql import MANIFEST, SQLStore

if TYPE_CHECKING:
    from sleeptime.api import SleepTime

log = logging.getLogger("sleeptime.queue")

__all__ = [
    "ActivityRecorder",
    "FailOutcome",
    "Job",
    "JobNotFound",
    "JobQueue",
    "Keys",
    "QueueConfig",
    "QueueUnavailable",
    "TokenWindow",
    "attach",
    "due",
    "missing_versions",
    "open_queue",
    "queue_config",
    "retry_delay",
    "short_error",
]


def queue_config(settings: Settings) -> QueueConfig:
    return QueueConfig(
        idle_after=settings.idle_after,
        max_delay=settings.max_delay,
        lease_s=settings.lease_s,
        max_deliveries=settings.max_deliveries,
    )


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
    config = queue_config(settings)
    if settings.redis_url:
        from sleeptime.queue.redis_streams import RedisStreamsQueue

        return RedisStreamsQueue(settings.redis_url, config, prefix=settings.redis_prefix)
    from sleeptime.queue.sqlite import SQLiteQueue

    return SQLiteQueue(embedded_queue_path(settings, database_url), config)


def attach(st: SleepTime, queue: JobQueue | None = None) -> JobQueue:
    """Enqueue every new version of ``st``'s contexts and feed its activity to the
    idle-time scheduler; with Redis, also put the hot cache in front of SQL."""
    settings = st.settings
    queue = queue or open_queue(settings, st.store.url)
    st.queue = queue
    if settings.redis_url and st.cache is None:
        from sleeptime.cache import HotCache

        st.cache = HotCache(
            settings.redis_url,
            prefix=settings.redis_prefix,
            ttl_s=settings.cache_ttl_s,
            timeout_s=settings.cache_timeout_s,
        )
        st.artifact_source = st.cache.wrap(st.artifact_source)
    cache = st.cache

    recorder = ActivityRecorder(queue.touch, interval=settings.activity_flush_s)

    def on_new_version(ctx: object) -> None:
        ns, cid, version = ctx.namespace, ctx.context_id, ctx.version  # type: ignore[attr-defined]
        if cache is not None:
            cache.invalidate(ns, cid, version)
        recorder.flush()  # this ingest is activity: record it before the job can be claimed
        try:
            queue.enqueue(ns, cid, version)
        except QueueUnavailable as exc:  # the worker's sweep enqueues it later
            log.warning(
                "could not enqueue %s/%s v%s (a worker sweep will): %s", ns, cid, version, exc
            )

    st.activity_recorder = recorder
    st.on_new_version.append(on_new_version)
    st.on_activity.append(recorder)
    return queue


def missing_versions(store: SQLStore, limit: int = 10_000) -> list[tuple[str, str, int]]:
    """Current versions without a complete artifact set (one query)."""
    latest = (
        select(
            ContextRow.namespace.label("ns"),
            ContextRow.context_id.label("cid"),
            func.max(ContextRow.version).label("v"),
        )
        .group_by(ContextRow.namespace, ContextRow.context_id)
        .subquery()
    )
    done = exists().where(
        and_(
            ArtifactRow.namespace == latest.c.ns,
            ArtifactRow.context_id == latest.c.cid,
            ArtifactRow.version == latest.c.v,
            ArtifactRow.kind == MANIFEST,
        )
    )
    stmt = select(latest.c.ns, latest.c.cid, latest.c.v).where(~done).limit(limit)
    with store.session() as s:
        return [(ns, cid, int(v)) for ns, cid, v in s.execute(stmt).all()]
