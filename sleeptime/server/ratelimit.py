"""Per-key request rate limits (``SLEEPTIME_RATE_LIMIT``) with the ``limits`` library.

A fixed window per API key: ``100/second`` lets a key make 100 requests in each
second. The counters live in Redis when ``SLEEPTIME_REDIS_URL`` is set (shared by every
server process and host), else in this process's memory; never in the database. A
request over the limit raises :class:`~sleeptime.errors.RateLimited`: 429 with
``Retry-After`` (the seconds until the key's window resets).

A Redis outage does not refuse requests: the key is counted in this process until
Redis answers again (a warning, at most once a minute).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from typing import Any

from limits.storage import MemoryStorage

from sleeptime.errors import InvalidInput, RateLimited
from sleeptime.settings import Settings

log = logging.getLogger("sleeptime.server")


class _LocalStorage(MemoryStorage):
    """The ``limits`` library's in-process storage, counting fixed windows without its
    expiry timer: ``MemoryStorage`` starts a thread every 10 ms while keys are live
    to drop expired ones, which cost the server more CPU than the count itself. Here
    an expired window is reset when its key is counted (as ``MemoryStorage.get``
    does), and the expired keys of others are dropped at most once a second."""

    def __init__(self, clock: Callable[[], float]) -> None:
        super().__init__()
        self.clock = clock
        self._count_lock = threading.Lock()
        self._next_sweep = 0.0

    def incr(self, key: str, expiry: float, amount: int = 1) -> int:
        now = self.clock()
        with self._count_lock:
            if now >= self._next_sweep:
                self._next_sweep = now + 1.0
                for old in [k for k, at in self.expirations.items() if at <= now]:
                    self.storage.pop(old, None)
                    self.expirations.pop(old, None)
                    self.locks.pop(old, None)
            if self.expirations.get(key, 0.0) <= now:
                self.storage.pop(key, None)
                self.expirations.pop(key, None)
            count = self.storage[key] + amount
            self.storage[key] = count
            if count == amount:
                self.expirations[key] = now + expiry
            return count


def _storage_uri(redis_url: str) -> str:
    """The ``limits`` storage URI of a redis-py URL (``unix://`` is ``redis+unix://``)."""
    if redis_url.startswith("unix://"):
        return "redis+unix://" + redis_url[len("unix://") :]
    return redis_url


class RateLimit:
    """A per-key limit: :meth:`hit` counts one request of ``key`` and raises
    :class:`RateLimited` when it is over."""

    def __init__(
        self,
        limit: str,
        *,
        redis_url: str | None = None,
        prefix: str = "sleeptime",
        clock: Callable[[], float] | None = None,
    ) -> None:
        try:
            from limits import parse
            from limits.storage import storage_from_string
            from limits.strategies import FixedWindowRateLimiter
        except ImportError as exc:  # pragma: no cover - the server extra has it
            raise InvalidInput(
                "SLEEPTIME_RATE_LIMIT needs the limits package: pip install 'sleeptime[server]'"
            ) from exc
        try:
            self.item = parse(limit)
        except ValueError:
            raise InvalidInput(
                f"SLEEPTIME_RATE_LIMIT {limit!r} is not a rate limit: use 100/second, "
                "1000/minute or 10 per 5 minutes"
            ) from None
        self.limit = limit
        #: Epoch seconds, for Retry-After (the limits library keeps its own windows).
        self.clock: Callable[[], float] = clock or time.time
        self._memory = _LocalStorage(self.clock)
        self._local = FixedWindowRateLimiter(self._memory)
        self._shared: Any = None
        self.storage = "memory"
        if redis_url:
            storage = storage_from_string(
                _storage_uri(redis_url), key_prefix=f"{prefix}:ratelimit", wrap_exceptions=True
            )
            self._shared = FixedWindowRateLimiter(storage)
            self.storage = "redis"
        self._warned = 0.0

    @classmethod
    def from_settings(cls, settings: Settings) -> RateLimit | None:
        """The limit ``settings`` configure, or None without ``rate_limit``."""
        if not settings.rate_limit:
            return None
        return cls(settings.rate_limit, redis_url=settings.redis_url, prefix=settings.redis_prefix)

    def hit(self, key: str) -> None:
        """Count one request of ``key``; :class:`RateLimited` when it is over the limit."""
        limiter = self._local
        if self._shared is not None:
            try:
                if self._shared.hit(self.item, key):
                    return
                limiter = self._shared
            except Exception as exc:  # an outage counts in this process
                self._warn(exc)
                limiter = self._local
                if limiter.hit(self.item, key):
                    return
        elif limiter.hit(self.item, key):
            return
        raise RateLimited(self.limit, self._retry_after(limiter, key))

    def _retry_after(self, limiter: Any, key: str) -> int:
        try:
            reset = float(limiter.get_window_stats(self.item, key).reset_time)
        except Exception:  # the window's length is the safe answer
            return max(1, int(self.item.get_expiry()))
        return max(1, math.ceil(reset - self.clock()))

    def _warn(self, exc: BaseException) -> None:
        now = time.monotonic()
        if now - self._warned >= 60.0:
            self._warned = now
            log.warning(
                "rate limit: Redis unavailable (%s); counting in this process", type(exc).__name__
            )
