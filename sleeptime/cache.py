"""Redis hot cache in front of the SQL store, on the online ``ask`` path.

``HotCache.wrap(fallback)`` returns an :data:`~sleeptime.online.ArtifactSource`
that answers from one Redis round trip (``MGET`` of the cached artifacts and the
newest known version), falls back to SQL on a miss and fills the cache with complete
artifact sets (they are immutable per version).

The cache cannot go back in time. The version key only moves forward (a Lua
compare-and-set, :data:`_BUMP`), artifacts are written together with it by another
compare-and-set (:data:`_PUT`) that refuses a version older than the key, and a read
serves cached artifacts only when they are exactly the version the key names: with no
version key (Redis restarted without persistence, or evicted) the read falls back to
SQL, which knows the current version, and re-creates the key from it. A client that
ingested a version also never serves an older one (:meth:`HotCache.never_serve_below`,
in memory), even before the relay has moved the key.

Redis is not the only writer's channel: a process without Redis, or one whose relay
lost the race for the outbox row to a relay without Redis, never moves the version
key. So a hit is served only while this process confirmed its version against SQL's
current version less than ``confirm_s`` (the relay interval) ago; a confirmation that
finds a newer version moves the key forward for every process. That bounds how long
any process with Redis serves a replaced version's answers: about one relay interval
after the ingest returned, whoever ingested (docs/reliability.md).
When Redis is down the online path keeps answering from SQL: one warning log line,
then Redis is skipped for ``cooldown`` seconds so no request waits on a dead socket.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from redis.exceptions import RedisError

from sleeptime.errors import StoreUnavailable
from sleeptime.models import Artifacts
from sleeptime.queue.keys import Keys
from sleeptime.queue.redis_streams import connect
from sleeptime.redact import redact_text
from sleeptime.settings import default

if TYPE_CHECKING:
    from sleeptime.online import ArtifactSource

log = logging.getLogger("sleeptime.cache")

_BUMP = """
local cur = tonumber(redis.call('GET', KEYS[1]) or '0')
local v = tonumber(ARGV[1])
if v >= cur then
  redis.call('SET', KEYS[1], v, 'PX', ARGV[2])
  redis.call('DEL', KEYS[2])
end
return cur
"""

#: Cache a complete artifact set unless the version key already names a newer version;
#: moves the version key forward to it. KEYS: version, artifacts; ARGV: version,
#: payload, artifacts TTL ms, version TTL ms, '1' if a missing version key may be
#: created (only a reader that just read the current version from SQL). Returns 1 if
#: written.
_PUT = """
local raw = redis.call('GET', KEYS[1])
if not raw and ARGV[5] ~= '1' then return 0 end
local cur = tonumber(raw or '0')
local v = tonumber(ARGV[1])
if v < cur then return 0 end
redis.call('SET', KEYS[1], v, 'PX', ARGV[4])
redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3])
return 1
"""


#: What :meth:`HotCache._current_in_sql` returns when the database did not answer.
_UNKNOWN = -1


class HotCache:
    def __init__(
        self,
        url: str,
        *,
        prefix: str = default("redis_prefix"),
        ttl_s: float = default("cache_ttl_s"),
        timeout_s: float = default("cache_timeout_s"),
        cooldown_s: float = default("cache_cooldown_s"),
        confirm_s: float = default("relay_s"),
        current: Callable[[str, str], int | None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.url = url
        self.keys = Keys(prefix)
        self.ttl_ms = max(1, int(ttl_s * 1000))
        self.cooldown_s = cooldown_s
        #: A hit is served while its version was confirmed against SQL this recently,
        #: by ``current`` (SQL's current version: one indexed read; default: the
        #: fallback of :meth:`wrap`).
        self.confirm_s = confirm_s
        self.current = current
        #: Measures the cool-down after a Redis error and the age of a confirmation
        #: (tests step it instead of sleeping).
        self.clock = clock
        self.r: Any = connect(url, timeout=timeout_s, retries=0)  # str responses
        self._bump = self.r.register_script(_BUMP)
        self._put = self.r.register_script(_PUT)
        #: Per context, the oldest version servable: the newest this process committed.
        self._servable_from: dict[tuple[str, str], int] = {}
        self._tracked_max = 100_000
        #: Per context: (the version SQL named as current, when it was read).
        self._confirmed: OrderedDict[tuple[str, str], tuple[int, float]] = OrderedDict()
        self._store_warned_until = 0.0
        self._down_until = 0.0
        self._lock = threading.Lock()
        #: Invalidations that failed while Redis was down, replayed when it is back.
        self._pending: dict[tuple[str, str], int] = {}
        self._parsed: OrderedDict[tuple[str, str], tuple[str, Artifacts]] = OrderedDict()
        self._memo_size = 1024
        self.hits = 0
        self.misses = 0

    # -- health -------------------------------------------------------------------

    def _available(self) -> bool:
        return self.clock() >= self._down_until

    def _failed(self, exc: Exception) -> None:
        with self._lock:
            first = self._down_until <= self.clock()
            self._down_until = self.clock() + self.cooldown_s
        if first:
            log.warning(
                "Redis hot cache unavailable (%s); serving artifacts from SQL for the next %.0f s",
                redact_text(exc, self.url),
                self.cooldown_s,
            )

    # -- reads ----------------------------------------------------------------------

    def get(self, namespace: str, context_id: str) -> tuple[int | None, Artifacts | None]:
        """(newest known version, cached artifacts if fresh); raises RedisError."""
        raw, ver = self.r.mget(
            [self.keys.artifacts(namespace, context_id), self.keys.version(namespace, context_id)]
        )
        newest = int(ver) if ver else None
        if not raw or newest is None:  # no version key: nothing says the entry is current
            return newest, None
        arts = self._parse(namespace, context_id, raw)
        if arts.namespace != namespace or arts.context_id != context_id:  # never cross tenants
            return newest, None
        if arts.version != newest or arts.version < self._servable_from.get(
            (namespace, context_id), 0
        ):
            return newest, None
        return newest, arts

    def _parse(self, namespace: str, context_id: str, raw: str) -> Artifacts:
        """JSON -> Artifacts, memoised on the exact payload (parsing is most of a hit's cost)."""
        key = (namespace, context_id)
        with self._lock:
            memo = self._parsed.get(key)
            if memo is not None and memo[0] == raw:
                self._parsed.move_to_end(key)
                return memo[1]
        arts = Artifacts.model_validate_json(raw)
        with self._lock:
            self._parsed[key] = (raw, arts)
            while len(self._parsed) > self._memo_size:
                self._parsed.popitem(last=False)
        return arts

    def put(self, arts: Artifacts, *, create: bool = True) -> bool:
        """Cache a complete artifact set (incomplete ones change as sleep-time runs) as
        the current version, unless Redis already knows a newer one. Only a caller that
        read the current version from SQL may call this: it moves the version key.
        ``create=False``: only if the version key exists (a worker warming the cache
        after a Redis restart must not be the one that re-creates it)."""
        if not arts.complete:
            return False
        written = self._put(
            keys=[
                self.keys.version(arts.namespace, arts.context_id),
                self.keys.artifacts(arts.namespace, arts.context_id),
            ],
            args=[
                arts.version,
                arts.model_dump_json(),
                self.ttl_ms,
                self.ttl_ms * 2,
                "1" if create else "0",
            ],
        )
        return bool(int(written))

    def never_serve_below(self, namespace: str, context_id: str, version: int) -> None:
        """This process committed ``version``: never serve an older one (no I/O)."""
        key = (namespace, context_id)
        with self._lock:
            if version > self._servable_from.get(key, 0):
                self._servable_from[key] = version
                if len(self._servable_from) > self._tracked_max:  # the version key guards too
                    del self._servable_from[next(iter(self._servable_from))]

    def confirm(self, namespace: str, context_id: str, version: int) -> None:
        """SQL named ``version`` as the current one just now (no I/O)."""
        key = (namespace, context_id)
        with self._lock:
            self._confirmed[key] = (version, self.clock())
            self._confirmed.move_to_end(key)
            while len(self._confirmed) > self._tracked_max:  # unconfirmed: read SQL again
                self._confirmed.popitem(last=False)

    def _confirmed_recently(self, namespace: str, context_id: str, version: int) -> bool:
        with self._lock:
            seen = self._confirmed.get((namespace, context_id))
        return seen is not None and seen[0] == version and self.clock() - seen[1] < self.confirm_s

    def _current_in_sql(
        self, current: Callable[[str, str], int | None], namespace: str, context_id: str
    ) -> int | None:
        """SQL's current version; :data:`_UNKNOWN` when the database did not answer (the
        hit is then served unconfirmed, with one warning per cool-down)."""
        try:
            return current(namespace, context_id)
        except StoreUnavailable as exc:
            now = self.clock()
            if now >= self._store_warned_until:
                self._store_warned_until = now + self.cooldown_s
                log.warning(
                    "cannot confirm cached versions against the database (%s); serving "
                    "the hot cache unconfirmed",
                    exc,
                )
            return _UNKNOWN

    def wrap(
        self,
        fallback: ArtifactSource,
        current: Callable[[str, str], int | None] | None = None,
    ) -> ArtifactSource:
        """The online path's artifact source: Redis, else ``fallback`` (SQL). A hit is
        served only while its version was confirmed current in SQL (``current``, else
        the cache's, else the fallback) within ``confirm_s``."""

        def current_version(namespace: str, context_id: str) -> int | None:
            from_sql = fallback(namespace, context_id)
            return None if from_sql is None else from_sql[0]

        read_current = current or self.current or current_version

        def source(namespace: str, context_id: str) -> tuple[int, Artifacts] | None:
            newest: int | None = None
            if self._available():
                try:
                    if self._pending:
                        self._replay()
                    newest, arts = self.get(namespace, context_id)
                    if arts is not None:
                        if self._confirmed_recently(namespace, context_id, arts.version):
                            self.hits += 1
                            return arts.version, arts
                        in_sql = self._current_in_sql(read_current, namespace, context_id)
                        if in_sql == arts.version:
                            self.confirm(namespace, context_id, in_sql)
                        if in_sql in (arts.version, _UNKNOWN):
                            self.hits += 1
                            return arts.version, arts
                        # SQL moved on and nothing told Redis (a writer without Redis,
                        # or whose relay lost the outbox row to one): a miss
                except RedisError as exc:
                    self._failed(exc)
            self.misses += 1
            from_sql = fallback(namespace, context_id)
            fresh = from_sql is not None and (newest is None or from_sql[0] >= newest)
            if from_sql is not None:
                self.never_serve_below(namespace, context_id, from_sql[0])
                self.confirm(namespace, context_id, from_sql[0])
            if from_sql is not None and fresh and self._available():
                try:
                    if from_sql[1].complete:
                        self.put(from_sql[1])
                    elif newest is not None and from_sql[0] > newest:
                        # move the key on for every process (what the relay does)
                        self._invalidate(namespace, context_id, from_sql[0])
                except RedisError as exc:
                    self._failed(exc)
            return from_sql

        return source

    # -- invalidation ---------------------------------------------------------------

    def invalidate(self, namespace: str, context_id: str, version: int) -> None:
        """A new version exists: older cached artifacts must not be served any more.

        If Redis is down the invalidation is kept and replayed by this process; other
        processes may serve the older version until the entry's TTL ends."""
        try:
            self._invalidate(namespace, context_id, version)
        except RedisError as exc:
            with self._lock:
                key = (namespace, context_id)
                self._pending[key] = max(version, self._pending.get(key, 0))
            self._failed(exc)

    def _invalidate(self, namespace: str, context_id: str, version: int) -> None:
        self._bump(
            keys=[
                self.keys.version(namespace, context_id),
                self.keys.artifacts(namespace, context_id),
            ],
            args=[version, self.ttl_ms * 2],
        )

    def _replay(self) -> None:
        with self._lock:
            pending, self._pending = self._pending, {}
        for i, ((ns, cid), version) in enumerate(pending.items()):
            try:
                self._invalidate(ns, cid, version)
            except RedisError:
                with self._lock:
                    for key, v in list(pending.items())[i:]:
                        self._pending[key] = max(v, self._pending.get(key, 0))
                raise

    def forget(
        self, namespace: str, last_versions: dict[str, int], context_id: str | None = None
    ) -> int:
        """Drop the cached artifacts of deleted contexts (``last_versions``: context id ->
        its last version), or of every context of a namespace (``context_id`` None);
        returns the entries invalidated. The version key moves past the deleted
        version instead of vanishing, so a fill from a read that raced the delete is a
        miss on every later read. Raises RedisError: a delete must not report success
        with the entries still there."""
        with self._lock:
            self._pending = {
                k: v
                for k, v in self._pending.items()
                if k[0] != namespace or (context_id is not None and k[1] != context_id)
            }
            for key in [k for k in self._parsed if k[0] == namespace]:
                if context_id is None or key[1] == context_id:
                    del self._parsed[key]
            for key in [k for k in self._confirmed if k[0] == namespace]:
                if context_id is None or key[1] == context_id:
                    del self._confirmed[key]
        for cid, version in last_versions.items():
            self._invalidate(namespace, cid, version + 1)
        done = len(last_versions)
        if context_id is None:  # entries of contexts the SQL store no longer names
            pattern = self.keys.cache_patterns(namespace)[0]
            stray = list(self.r.scan_iter(match=pattern, count=500))
            for i in range(0, len(stray), 500):
                done += int(self.r.delete(*stray[i : i + 500]) or 0)
        return done

    def close(self) -> None:
        self.r.close()
