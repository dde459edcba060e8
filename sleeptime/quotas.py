"""Per-namespace daily token quotas: test-time (answers) and sleep-time.

One object, :class:`Quotas`, holds both. Days are UTC days: a namespace's count
starts again at 00:00 UTC, and a refusal (:class:`~sleeptime.errors.QuotaExceeded`)
carries the seconds until then (``Retry-After`` over HTTP).

- **Test-time** (``SLEEPTIME_QUOTA_TEST_TOKENS``): the tokens of each answer are
  added to a counter per namespace and day: in Redis when ``SLEEPTIME_REDIS_URL`` is
  set (one ``INCRBY`` per answer that used tokens, shared by every server process),
  else in this process. A zero-token answer adds nothing. Never a database write.
- **Sleep-time** (``SLEEPTIME_QUOTA_SLEEP_TOKENS``): counted from the ledger, which
  books every sleep-time call already (one indexed read of the day's sleep rows,
  :meth:`sleeptime.store.ledger.LedgerRepo.tokens_since`), so workers on any host
  spend the same budget without a counter of their own.

:meth:`Quotas.sleep_left` is the namespace's daily sleep-time budget: what the HTTP
server checks before an explicit sleep, and what a demand-aware sleep policy spends
(one budget, built once). ``None`` means unlimited.

A Redis outage does not refuse answers: the count falls back to this process (a
warning, at most once a minute) until Redis answers again.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from sleeptime.errors import QuotaExceeded

if TYPE_CHECKING:
    from sleeptime.settings import Settings
    from sleeptime.store.ledger import LedgerRepo

log = logging.getLogger("sleeptime.quotas")

#: A day's Redis counter lives this long after its last increment (then expires).
_COUNTER_TTL_S = 2 * 86400


def day_start(now: float) -> datetime:
    """00:00 UTC of the day ``now`` (epoch seconds) falls in."""
    at = datetime.fromtimestamp(now, UTC)
    return at.replace(hour=0, minute=0, second=0, microsecond=0)


def seconds_to_midnight(now: float) -> int:
    """Whole seconds until the next 00:00 UTC (at least 1): a quota's Retry-After."""
    end = day_start(now) + timedelta(days=1)
    return max(1, int(-(-(end.timestamp() - now) // 1)))


class Quotas:
    """Daily token quotas of each namespace (see the module docstring).

    ``test_tokens`` / ``sleep_tokens``: the limits (None: unlimited). ``ledger``: the
    store's ledger (for the sleep-time count). ``redis``: a redis-py client for the
    test-time counters (None: counted in this process). ``clock``: epoch seconds;
    tests pass their own instead of waiting for midnight.
    """

    def __init__(
        self,
        *,
        test_tokens: int | None = None,
        sleep_tokens: int | None = None,
        ledger: LedgerRepo | None = None,
        redis: Any = None,
        prefix: str = "sleeptime",
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.test_tokens = test_tokens
        self.sleep_tokens = sleep_tokens
        self.ledger = ledger
        self.redis = redis
        self.prefix = prefix
        self.clock: Callable[[], float] = clock or time.time
        self._local: dict[tuple[str, str], int] = {}
        self._lock = threading.Lock()
        self._warned = 0.0

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        ledger: LedgerRepo | None,
        *,
        clock: Callable[[], float] | None = None,
    ) -> Quotas:
        """The quotas ``settings`` configure; test-time counters in Redis when
        ``redis_url`` is set (and a test-time quota is)."""
        redis = None
        if settings.redis_url and settings.quota_test_tokens is not None:
            from sleeptime.queue.redis_streams import connect

            redis = connect(settings.redis_url, timeout=settings.cache_timeout_s, retries=0)
        return cls(
            test_tokens=settings.quota_test_tokens,
            sleep_tokens=settings.quota_sleep_tokens,
            ledger=ledger,
            redis=redis,
            prefix=settings.redis_prefix,
            clock=clock,
        )

    @property
    def enabled(self) -> bool:
        return self.test_tokens is not None or self.sleep_tokens is not None

    def _now(self, now: float | None) -> float:
        return self.clock() if now is None else now

    @staticmethod
    def _day(now: float) -> str:
        return day_start(now).strftime("%Y%m%d")

    def _key(self, namespace: str, day: str) -> str:
        return f"{self.prefix}:quota:test:{day}:{namespace}"

    # -- test-time ----------------------------------------------------------------------

    def test_used(self, namespace: str, now: float | None = None) -> int:
        """Answer tokens ``namespace`` used today (UTC)."""
        day = self._day(self._now(now))
        if self.redis is not None:
            try:
                raw = self.redis.get(self._key(namespace, day))
                return int(raw or 0) + self._local.get((namespace, day), 0)
            except Exception as exc:  # an outage counts locally
                self._warn(exc)
        return self._local.get((namespace, day), 0)

    def test_left(self, namespace: str, now: float | None = None) -> int | None:
        """Answer tokens ``namespace`` may still use today; None: no quota."""
        if self.test_tokens is None:
            return None
        return max(0, self.test_tokens - self.test_used(namespace, now))

    def check_test(self, namespace: str, now: float | None = None) -> None:
        """Raise :class:`QuotaExceeded` when the namespace's test-time quota is spent."""
        if self.test_tokens is None:
            return
        at = self._now(now)
        used = self.test_used(namespace, at)
        if used >= self.test_tokens:
            raise QuotaExceeded(namespace, "test", used, self.test_tokens, seconds_to_midnight(at))

    def add_test(self, namespace: str, tokens: int, now: float | None = None) -> int | None:
        """Count ``tokens`` of an answer against today's test-time quota; returns the
        namespace's count after it (None: no quota, or nothing to count)."""
        if self.test_tokens is None or tokens <= 0:
            return None
        day = self._day(self._now(now))
        if self.redis is not None:
            try:
                key = self._key(namespace, day)
                pipe = self.redis.pipeline(transaction=False)
                pipe.incrby(key, tokens)
                pipe.expire(key, _COUNTER_TTL_S)
                total, _ = pipe.execute()
                return int(total) + self._local.get((namespace, day), 0)
            except Exception as exc:  # an outage counts locally
                self._warn(exc)
        with self._lock:
            for old in [k for k in self._local if k[1] != day]:
                del self._local[old]  # yesterday's counts are of no use
            total = self._local.get((namespace, day), 0) + tokens
            self._local[(namespace, day)] = total
            return total

    # -- sleep-time ---------------------------------------------------------------------

    def sleep_used(self, namespace: str, now: float | None = None) -> int:
        """Sleep-time tokens the ledger booked for ``namespace`` today (UTC)."""
        if self.ledger is None:
            return 0
        return self.ledger.tokens_since(namespace, day_start(self._now(now)), "sleep")

    def sleep_left(self, namespace: str, now: float | None = None) -> int | None:
        """The namespace's sleep-time budget left today: ``SLEEPTIME_QUOTA_SLEEP_TOKENS``
        less the sleep tokens the ledger booked since 00:00 UTC, never below 0. None
        when no sleep-time quota is set (unlimited). The one daily sleep budget: the
        HTTP server refuses an explicit sleep at 0, and a sleep policy spends it."""
        if self.sleep_tokens is None:
            return None
        return max(0, self.sleep_tokens - self.sleep_used(namespace, now))

    def check_sleep(self, namespace: str, now: float | None = None) -> None:
        """Raise :class:`QuotaExceeded` when the namespace's sleep-time quota is spent."""
        if self.sleep_tokens is None:
            return
        at = self._now(now)
        used = self.sleep_used(namespace, at)
        if used >= self.sleep_tokens:
            raise QuotaExceeded(
                namespace, "sleep", used, self.sleep_tokens, seconds_to_midnight(at)
            )

    # -- use --------------------------------------------------------------------------

    def usage(self, namespace: str, now: float | None = None) -> dict[str, Any]:
        """Today's use of both quotas: ``{"day", "resets_in_s", "test": {"used",
        "limit", "left"}, "sleep": {...}}`` (limit and left None: unlimited)."""
        at = self._now(now)
        test_used = self.test_used(namespace, at)
        sleep_used = self.sleep_used(namespace, at)

        def part(used: int, limit: int | None) -> dict[str, int | None]:
            return {
                "used": used,
                "limit": limit,
                "left": None if limit is None else max(0, limit - used),
            }

        return {
            "namespace": namespace,
            "day": day_start(at).date().isoformat(),
            "resets_in_s": seconds_to_midnight(at),
            "test": part(test_used, self.test_tokens),
            "sleep": part(sleep_used, self.sleep_tokens),
        }

    def _warn(self, exc: BaseException) -> None:
        now = time.monotonic()
        if now - self._warned >= 60.0:
            self._warned = now
            log.warning(
                "quota counters: Redis unavailable (%s); counting in this process",
                type(exc).__name__,
            )

    def close(self) -> None:
        if self.redis is not None:
            with contextlib.suppress(Exception):
                self.redis.close()
