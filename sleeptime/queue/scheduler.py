"""Idle-time scheduling policy, activity recording, backoff and the token cap.

A job is *due* when its namespace has been idle for ``idle_after`` seconds, or when it
has waited ``max_delay`` seconds (a busy namespace is never starved); ``idle_after=0``
runs jobs at once. Among due jobs, higher priority (recent activity on that context:
queries predict more queries) goes first. The SQLite backend calls :func:`due`; the
Redis backend's claim script runs :data:`DUE_LUA`, the same rule in Lua, kept here next
to it and given the same parameters (``tests/test_scheduler.py`` checks that both
decide alike on a table of cases).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable, Mapping
from dataclasses import replace

from tenacity import RetryCallState, Retrying, wait_exponential, wait_random

from sleeptime.queue.base import Job, QueueConfig
from sleeptime.queue.keys import ctx_key
from sleeptime.settings import default

log = logging.getLogger("sleeptime.queue")


def due(
    now: float, enqueued_at: float, last_activity: float, idle_after: float, max_delay: float
) -> bool:
    """True when sleep-time work may start (see the module docstring)."""
    return idle_after <= 0 or now - last_activity >= idle_after or now - enqueued_at >= max_delay


#: :func:`due` in Lua, for the Redis claim script (:mod:`sleeptime.queue.redis_lua`);
#: change both together.
DUE_LUA = """
local function due(now, enqueued_at, last_activity, idle_after, max_delay)
  return idle_after <= 0 or now - last_activity >= idle_after
    or now - enqueued_at >= max_delay
end
"""


def eta(
    ready_at: float, enqueued_at: float, last_activity: float, idle_after: float, max_delay: float
) -> float:
    """The earliest time a waiting job can be claimed if its namespace sees no more
    activity: its backoff (``ready_at``) and the idle rule of :func:`due` both passed.
    More activity moves it later, up to ``enqueued_at + max_delay``. Computed where
    jobs are listed, from the stored values, so nothing is rewritten to show it."""
    if idle_after <= 0:
        return ready_at
    return max(ready_at, min(last_activity + idle_after, enqueued_at + max_delay))


def with_eta(
    jobs: list[Job],
    config: QueueConfig,
    last_activity: Callable[[list[str]], Mapping[str, float]],
) -> list[Job]:
    """``jobs`` with each waiting job's ``ready_at`` its earliest start (its backoff
    and the idle rule, :func:`eta`); the stored backoff time is untouched. Both backends
    list jobs through this; ``last_activity(namespaces)`` is the backend's read of the
    namespaces' last activity (epoch seconds; a namespace it does not know: none yet),
    asked only when a job is waiting."""
    namespaces = sorted({j.namespace for j in jobs if j.state == "waiting"})
    if not namespaces:
        return jobs
    last = last_activity(namespaces)
    return [
        replace(
            j,
            ready_at=eta(
                j.ready_at,
                j.enqueued_at,
                float(last.get(j.namespace) or 0.0),
                config.idle_after,
                config.max_delay,
            ),
        )
        if j.state == "waiting"
        else j
        for j in jobs
    ]


def retry_delay(
    deliveries: int, initial: float, maximum: float, jitter: float | None = None
) -> float:
    """Exponential backoff with jitter before redelivering a failed job: tenacity's
    ``wait_exponential(initial, max=maximum) + wait_random(0, jitter)`` (jitter default
    ``initial``) after ``deliveries`` attempts, i.e. ``min(initial * 2 ** (deliveries -
    1), maximum)`` plus a uniform ``[0, jitter]``, asked of a real retry state."""
    spread = initial if jitter is None else jitter
    wait = wait_exponential(multiplier=initial, max=maximum) + wait_random(0, spread)
    state = RetryCallState(Retrying(), fn=None, args=(), kwargs={})
    state.attempt_number = max(1, deliveries)
    return float(wait(state))


class ActivityRecorder:
    """Turns ``on_activity`` calls into queue activity without slowing the online path.

    A call only bumps a counter in a dict (about a microsecond); a daemon thread sends
    the batch to the queue every ``interval`` seconds, so idle detection is accurate to
    ``interval``. A failing queue (Redis down) is logged at most once a minute and
    never reaches the caller.
    """

    def __init__(
        self,
        flush: Callable[[dict[str, int]], None],
        interval: float = default("activity_flush_s"),
    ) -> None:
        self._flush = flush
        self.interval = interval
        self._pending: dict[str, int] = defaultdict(int)
        self._lock = threading.Lock()
        self._flushing = threading.Lock()  # one flush at a time, so flush() is a barrier
        self._wake = threading.Event()
        self._closed = False
        self._thread: threading.Thread | None = None
        self._last_warning = 0.0

    def __call__(self, namespace: str, context_id: str) -> None:
        with self._lock:
            self._pending[ctx_key(namespace, context_id)] += 1
            if self._thread is None and not self._closed:
                self._thread = threading.Thread(
                    target=self._loop, name="sleeptime-activity", daemon=True
                )
                self._thread.start()

    def _loop(self) -> None:
        while not self._closed:
            self._wake.wait(self.interval)
            self.flush()

    def flush(self) -> None:
        """Send what was recorded so far. When this returns, every activity recorded
        before the call is in the queue, even a batch the background thread took a
        moment earlier: an ingest flushes before it enqueues, so its own job can never
        be claimed as if the namespace were idle."""
        with self._flushing:
            with self._lock:
                batch, self._pending = dict(self._pending), defaultdict(int)
            if not batch:
                return
            try:
                self._flush(batch)
            except Exception as exc:  # the online path must not fail because of the queue
                now = time.monotonic()
                if now - self._last_warning > 60:
                    self._last_warning = now
                    log.warning(
                        "could not record activity (idle scheduling is approximate): %s", exc
                    )

    def close(self) -> None:
        self._closed = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.flush()


class TokenWindow:
    """Per-worker cap on sleep-time tokens per minute (0 = no cap).

    Jobs are admitted while the tokens spent in the last 60 s are under the cap; a
    job's cost is only known when it ends, so one job may overshoot by its own size.
    """

    def __init__(
        self, per_minute: int, window: float = 60.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.per_minute = per_minute
        self.window = window
        self.clock = clock
        self._spent: deque[tuple[float, int]] = deque()
        self._lock = threading.Lock()

    def add(self, tokens: int) -> None:
        with self._lock:
            self._spent.append((self.clock(), tokens))

    def used(self) -> int:
        cutoff = self.clock() - self.window
        with self._lock:
            while self._spent and self._spent[0][0] < cutoff:
                self._spent.popleft()
            return sum(t for _, t in self._spent)

    def allows(self) -> bool:
        return self.per_minute <= 0 or self.used() < self.per_minute

    def wait_s(self) -> float:
        """Seconds until the oldest spend leaves the window (0 when allowed now)."""
        if self.allows():
            return 0.0
        with self._lock:
            oldest = self._spent[0][0] if self._spent else self.clock()
        return max(0.0, oldest + self.window - self.clock())
