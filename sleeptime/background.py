"""The background parts of a :class:`~sleeptime.SleepTime` client, opened together.

:func:`open_background` returns the job queue (Redis Streams when ``redis_url`` is set,
else the embedded SQLite queue), the Redis hot cache (with Redis only), the activity
recorder that feeds idle-time scheduling and the outbox relay. The client wires them
into itself; nothing here reaches into a client.

The online path never waits on the queue: ``ingest`` commits a new version and its
outbox row in one SQL transaction, and :class:`OutboxRelay` (a thread of the client,
and every worker's loop) moves outbox rows to the queue. A queue outage delays the
job; it cannot lose it, and it costs an ingest nothing.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

from sleeptime.cache import HotCache
from sleeptime.models import ContextVersion
from sleeptime.queue import open_queue
from sleeptime.queue.base import JobQueue
from sleeptime.queue.keys import ctx_key
from sleeptime.queue.scheduler import ActivityRecorder
from sleeptime.settings import Settings
from sleeptime.store.sql import SQLStore

log = logging.getLogger("sleeptime.queue")


def relay_outbox(
    store: SQLStore,
    queue: JobQueue,
    cache: HotCache | None = None,
    recorder: ActivityRecorder | None = None,
    limit: int = 500,
) -> int:
    """Move unsent outbox rows to ``queue`` and mark them sent; returns how many.

    Per batch: activity first (the namespace that just ingested must look busy before
    its job can be claimed), then the cache's version keys (older cached artifacts stop
    being served), then the jobs. Raises QueueUnavailable / StoreUnavailable; rows not
    marked are relayed again later (enqueueing is idempotent)."""
    rows = store.unsent_outbox(limit)
    if not rows:
        return 0
    if recorder is not None:
        recorder.flush()
    busy = Counter(ctx_key(ns, cid) for _, ns, cid, _, activity in rows if activity)
    if busy:
        queue.touch(dict(busy))
    if cache is not None:
        for _, ns, cid, v, _ in rows:
            cache.invalidate(ns, cid, v)
    for _, ns, cid, v, _ in rows:
        queue.enqueue(ns, cid, v)
    store.mark_outbox_sent([row_id for row_id, *_ in rows])
    return len(rows)


@dataclass
class OutboxRelay:
    """A daemon thread that relays the outbox every ``interval`` seconds, and at once
    when woken (by an ingest). Failures are logged (at most once a minute) and retried."""

    store: SQLStore
    queue: JobQueue
    cache: HotCache | None
    recorder: ActivityRecorder | None
    interval: float
    relayed: int = 0
    _wake: threading.Event = field(default_factory=threading.Event)
    _idle: threading.Event = field(default_factory=threading.Event)
    _closed: bool = False
    _thread: threading.Thread | None = None
    _last_warning: float = 0.0

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="sleeptime-outbox", daemon=True)
            self._thread.start()

    def wake(self) -> None:
        self._idle.clear()
        self._wake.set()

    def _loop(self) -> None:
        backoff = 0.0
        while not self._closed:
            self._wake.wait(backoff or self.interval)
            self._wake.clear()
            if self._closed:
                break
            try:
                while (n := relay_outbox(self.store, self.queue, self.cache, self.recorder)) > 0:
                    self.relayed += n
                backoff = 0.0
                if not self._wake.is_set():
                    self._idle.set()
            except Exception as exc:  # QueueUnavailable, StoreUnavailable: retried
                backoff = min(self.interval, max(0.05, backoff * 2))
                now = time.monotonic()
                if now - self._last_warning > 60:
                    self._last_warning = now
                    log.warning("outbox relay: %s (retrying; nothing is lost)", exc)

    def wait_idle(self, timeout: float) -> bool:
        """Block until the relay has nothing left to send (tests, benchmarks)."""
        self.wake()
        return self._idle.wait(timeout)

    def close(self) -> None:
        """Stop the thread after one last pass, so a clean shutdown leaves nothing
        for a worker to pick up later (what a failed pass leaves stays in the outbox)."""
        self._closed = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        try:
            while (n := relay_outbox(self.store, self.queue, self.cache, self.recorder)) > 0:
                self.relayed += n
        except Exception as exc:  # the rows stay in the outbox: a worker relays them
            log.warning("outbox relay at close: %s (a worker will relay the rest)", exc)


@dataclass
class Background:
    """A client's queue, hot cache, activity recorder and outbox relay."""

    queue: JobQueue
    cache: HotCache | None
    recorder: ActivityRecorder
    relay: OutboxRelay

    def new_version(self, ctx: ContextVersion) -> None:
        """A new version was committed with its outbox row: never serve an older one
        from this process again (in memory, no I/O) and wake the relay."""
        if self.cache is not None:
            self.cache.never_serve_below(ctx.namespace, ctx.context_id, ctx.version)
        self.relay.wake()

    def close(self) -> None:
        self.relay.close()
        self.recorder.close()
        self.queue.close()
        if self.cache is not None:
            self.cache.close()


def open_background(settings: Settings, store: SQLStore) -> Background:
    """Open the queue (and, with Redis, the hot cache) for a client of ``store``."""
    queue = open_queue(settings, store.url)
    cache = None
    if settings.redis_url:
        cache = HotCache(
            settings.redis_url,
            prefix=settings.redis_prefix,
            ttl_s=settings.cache_ttl_s,
            timeout_s=settings.cache_timeout_s,
            cooldown_s=settings.cache_cooldown_s,
            confirm_s=settings.relay_s,
            current=store.current_version,
        )
    recorder = ActivityRecorder(queue.touch, interval=settings.activity_flush_s)
    relay = OutboxRelay(store, queue, cache, recorder, settings.relay_s)
    relay.start()
    return Background(queue=queue, cache=cache, recorder=recorder, relay=relay)
