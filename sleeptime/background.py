"""The background parts of a :class:`~sleeptime.SleepTime` client, opened together.

:func:`open_background` returns the job queue (Redis Streams when ``redis_url`` is set,
else the embedded SQLite queue), the Redis hot cache (with Redis only) and the activity
recorder that feeds idle-time scheduling. The client wires them into itself; nothing
here reaches into a client.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sleeptime.cache import HotCache
from sleeptime.errors import QueueUnavailable
from sleeptime.models import ContextVersion
from sleeptime.queue import open_queue
from sleeptime.queue.base import JobQueue
from sleeptime.queue.scheduler import ActivityRecorder
from sleeptime.settings import Settings

log = logging.getLogger("sleeptime.queue")


@dataclass
class Background:
    """A client's queue, hot cache and activity recorder."""

    queue: JobQueue
    cache: HotCache | None
    recorder: ActivityRecorder

    def new_version(self, ctx: ContextVersion) -> None:
        """Enqueue sleep-time work for a new context version (and retire the cached
        artifacts of older versions). A queue outage is logged, not raised: the
        worker's sweep enqueues versions that have no artifacts."""
        ns, cid, version = ctx.namespace, ctx.context_id, ctx.version
        if self.cache is not None:
            self.cache.invalidate(ns, cid, version)
        self.recorder.flush()  # this ingest is activity: record it before the job can be claimed
        try:
            self.queue.enqueue(ns, cid, version)
        except QueueUnavailable as exc:
            log.warning(
                "could not enqueue %s/%s v%s (a worker sweep will): %s", ns, cid, version, exc
            )

    def close(self) -> None:
        self.recorder.close()
        self.queue.close()
        if self.cache is not None:
            self.cache.close()


def open_background(settings: Settings, database_url: str | None = None) -> Background:
    """Open the queue (and, with Redis, the hot cache) for a client of ``database_url``."""
    queue = open_queue(settings, database_url)
    cache = None
    if settings.redis_url:
        cache = HotCache(
            settings.redis_url,
            prefix=settings.redis_prefix,
            ttl_s=settings.cache_ttl_s,
            timeout_s=settings.cache_timeout_s,
            cooldown_s=settings.cache_cooldown_s,
        )
    recorder = ActivityRecorder(queue.touch, interval=settings.activity_flush_s)
    return Background(queue=queue, cache=cache, recorder=recorder)
